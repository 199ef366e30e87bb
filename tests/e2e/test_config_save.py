"""config/set in OVS's spellings, then config/save: the change survives a restart."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from .conftest import TEST_CONFIG
from .test_lifecycle import wait_for

COMMENTED = (
    "# lab switch: keep this comment\n"
    + TEST_CONFIG
    + '  [[bridge.port]]\n  name = "p0"\n  type = "dummy-pmd"\n'
)


def test_set_in_ovs_spelling_save_and_restart(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(COMMENTED)
    assert d.ovs_appctl("config/set", "other_config:pmd-cpu-mask=0x3").returncode == 0
    assert d.appctl("config/set", "bridge:br0:other_config:mac-aging-time=60").returncode == 0
    assert "pmd thread numa_id 0 core_id 1:" in d.call("dpif-netdev/pmd-rxq-show")
    r = d.ovs_appctl("config/save")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    text = d.config_path.read_text()
    assert text.startswith("# lab switch: keep this comment\n")
    assert 'pmd-cpu-mask = "0x3"\n' in text and 'mac-aging-time = "60"' in text
    assert f"|daemon|INFO|configuration saved to {d.config_path} (generation 3)" in (
        d.log_path.read_text()
    )
    assert d.stop() == 0
    (tmp_path / "again").mkdir()
    again = start_daemon(d.config_path.read_text(), rundir=tmp_path / "again")
    assert "pmd thread numa_id 0 core_id 1:" in again.call("dpif-netdev/pmd-rxq-show")
    assert "  mac-aging-time=60\n" in again.call("config/show")


def test_save_errors(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon()
    r = d.appctl("config/save", str(tmp_path / "no" / "such" / "dir.toml"))
    assert r.returncode == 2
    assert "configuration not saved: " in r.stderr and "cannot write" in r.stderr
    r = d.appctl("config/set", "pmd-cpu-msk=0x3")
    assert 'unknown key "pmd-cpu-msk" (did you mean "pmd-cpu-mask"?)' in r.stderr


def test_save_without_a_file_on_the_built_in_default(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyvswitchd", "--rundir", str(tmp_path),
         "--syslog-method=null", "--metrics-address=none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any(p.suffix == ".ctl" for p in tmp_path.iterdir()), 20)
        ctl = next(p for p in tmp_path.iterdir() if p.suffix == ".ctl")
        r = subprocess.run(
            [sys.executable, "-m", "pyappctl", "-t", str(ctl), "config/save"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert r.returncode == 2
        assert "the daemon runs on the built-in default configuration; name a file" in r.stderr
        saved = tmp_path / "saved.toml"
        r = subprocess.run(
            [sys.executable, "-m", "pyappctl", "-t", str(ctl), "config/save", str(saved)],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        check = subprocess.run(
            [sys.executable, "-m", "pyvswitchd", "--check-config", str(saved)],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
