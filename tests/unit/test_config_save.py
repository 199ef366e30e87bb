"""config/save: the running configuration written back into its file, comments kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyvswitchd import config
from pyvswitchd.config.assignments import with_settings
from pyvswitchd.config.save import merged_text, save

ROOT = Path(__file__).resolve().parents[2]
FILE = """\
# The switch of the lab bench.
[other_config]
# Two cores for PMDs.
pmd-cpu-mask = "0x1"
pmd-sleep-max = "-5"   # OVS caps this; kept as written

[[bridge]]
name = "br0"
other_config = { mac-aging-time = "60" }
  # the generator
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = { flows = "16" }
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
"""


def running(*assignments: str, text: str = FILE) -> config.Config:
    return with_settings(config.loads(text), list(assignments))


def same(a: config.Config, b: config.Config) -> bool:
    return config.to_dict(a) == config.to_dict(b)


def test_unchanged_configuration_leaves_the_file_as_it_is() -> None:
    assert merged_text(FILE, running()) == FILE
    shipped = (ROOT / "etc" / "pyvswitchd.toml").read_text()
    assert merged_text(shipped, config.loads(shipped)) == shipped


def test_changed_keys_only_comments_and_spellings_kept() -> None:
    text = merged_text(FILE, running("other_config:pmd-cpu-mask=0x3", "max-idle=5000"))
    assert '# Two cores for PMDs.\npmd-cpu-mask = "0x3"\n' in text
    assert "max-idle = 5000\n" in text
    assert 'pmd-sleep-max = "-5"   # OVS caps this; kept as written\n' in text
    assert "# The switch of the lab bench.\n" in text and "  # the generator\n" in text
    assert same(config.loads(text), running("pmd-cpu-mask=0x3", "max-idle=5000"))


def test_a_key_back_at_its_default_leaves_the_file() -> None:
    text = merged_text(FILE, running("pmd-cpu-mask=", "bridge:br0:mac-aging-time="))
    assert "pmd-cpu-mask" not in text and "mac-aging-time" not in text
    assert "# Two cores for PMDs.\n" in text


def test_port_options_and_daemon_keys() -> None:
    cfg = running(
        "interface:p0:options:n_rxq=2", "interface:src0:options:flows=", "daemon:ctl-mode=0700"
    )
    text = merged_text(FILE, cfg)
    assert 'options = {n_rxq = "2"}' in text.replace("{ ", "{").replace(" }", "}")
    assert 'name = "src0"\n  type = "traffic-source"\n  [[bridge.port]]' in text
    assert '[daemon]\nctl-mode = "0700"\n' in text
    assert same(config.loads(text), cfg)


def test_ofport_request_is_written_and_withdrawn() -> None:
    cfg = running("interface:p0:ofport_request=7")
    text = merged_text(FILE, cfg)
    assert "ofport_request = 7\n" in text
    assert same(config.loads(text), cfg)
    back = merged_text(text, running())
    assert "ofport_request" not in back and same(config.loads(back), running())


def test_bridges_and_ports_added_and_removed() -> None:
    data = config.to_dict(running())
    data["bridge"][0]["port"] = [p for p in data["bridge"][0]["port"] if p["name"] != "src0"]
    data["bridge"].append(
        {"name": "br1", "other_config": {}, "port": [
            {"name": "p1", "type": "dummy", "options": {"n_rxq": "2"}, "other_config": {}}
        ]}
    )  # fmt: skip
    cfg = config.from_dict(data, "test")
    text = merged_text(FILE, cfg)
    assert "src0" not in text and "# the generator" in text
    assert same(config.loads(text), cfg)
    gone = config.from_dict({**config.to_dict(cfg), "bridge": []}, "test")
    empty = merged_text(text, gone)
    assert empty.startswith("# The switch of the lab bench.\nbridge = []\n")
    assert config.loads(empty).declares_bridges


def test_a_broken_file_is_not_merged_into() -> None:
    with pytest.raises(config.ConfigError, match="does not hold a valid configuration now"):
        merged_text("[other_config]\nnope = 1\n", running(), "f.toml")
    with pytest.raises(config.ConfigError, match="is not TOML now"):
        merged_text("[other_config\n", running(), "f.toml")


def test_save_replaces_the_file_whole_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "pyvswitchd.toml"
    path.write_text(FILE)
    path.chmod(0o640)
    save(str(path), running("pmd-cpu-mask=0x3"))
    assert same(config.load(str(path)), running("pmd-cpu-mask=0x3"))
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["pyvswitchd.toml"]  # no temporary left
    new = tmp_path / "new.toml"
    save(str(new), running())
    assert same(config.load(str(new)), running())
    with pytest.raises(config.ConfigError, match="cannot write"):
        save(str(tmp_path / "missing" / "x.toml"), running())
