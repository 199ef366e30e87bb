"""Config schema: OVS key names, validation messages, shipped defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyvswitchd import config
from pyvswitchd.config.assignments import with_settings

ROOT = Path(__file__).resolve().parents[2]


def test_packaged_default_is_the_demo() -> None:
    cfg = config.load_default()
    assert cfg.other_config.pmd_cpu_mask == 1
    assert [b.name for b in cfg.bridges] == ["br0"]
    assert [p.type for p in cfg.bridges[0].ports] == ["traffic-source", "dummy-pmd"]


def test_file_to_install_is_inert() -> None:
    """etc/pyvswitchd.toml is the demo with its ports commented out, nothing else.

    Installed next to real interfaces, the demo's traffic source would flood
    their networks.
    """
    text = (ROOT / "etc" / "pyvswitchd.toml").read_text()
    cfg = config.loads(text)
    assert [b.name for b in cfg.bridges] == ["br0"] and cfg.bridges[0].ports == ()
    demo = config.load_default()
    assert config.to_dict(cfg)["other_config"] == config.to_dict(demo)["other_config"]
    assert cfg.daemon == demo.daemon
    # The demo's ports are there, commented out, with the reason.
    assert '#type = "traffic-source"' in text and '#type = "dummy-pmd"' in text
    assert "floods" in text


def test_default_metrics_port_is_not_a_known_exporters() -> None:
    # 9475 is greenpau/ovs_exporter's; 9100 node_exporter's.
    address = config.loads('[[bridge]]\nname = "br0"\n').daemon.metrics_address
    assert address == "127.0.0.1:10099"
    assert config.load_default().daemon.metrics_address == address


def test_ovsdb_strings_and_toml_natives_both_work() -> None:
    cfg = config.loads(
        """
        [other_config]
        pmd-cpu-mask = "0x3"
        pmd-perf-metrics = "true"
        pmd-maxsleep = 50
        tx-flush-interval = "100"
        dummy-numa = "0,0,1,1"
        [[bridge]]
        name = "br0"
          [[bridge.port]]
          name = "p0"
          type = "dummy-pmd"
          options = { n_rxq = 2 }
          other_config = { pmd-rxq-affinity = "0:1", flag = true }
        """
    )
    oc = cfg.other_config
    assert (oc.pmd_cpu_mask, oc.pmd_perf_metrics, oc.pmd_maxsleep, oc.tx_flush_interval) == (
        3,
        True,
        50,
        100,
    )
    assert oc.dummy_numa == (0, 0, 1, 1)
    port = cfg.bridges[0].ports[0]
    assert port.options == {"n_rxq": "2"}
    assert port.other_config == {"pmd-rxq-affinity": "0:1", "flag": "true"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # OVS's own keys are never refused (see test_ovs_values.py); ours are.
        (
            '[other_config]\ndummy-numa = "0,x"',
            'other_config:dummy-numa: invalid value "0,x": expected a list of NUMA ids',
        ),
        ("[other_config]\npmd-cpu-mask = { a = 1 }", "expected a string or number"),
        ("[other_config]\npmd-cpu-msk = 1", 'other_config: unknown key "pmd-cpu-msk"'),
        ('[daemon]\nmetrics-address = "9475"', 'daemon:metrics-address: invalid value "9475"'),
        ('[daemon]\nctl-mode = "999"', "octal file mode"),
        ("[nonsense]\n", 'unknown table "nonsense"'),
        ("[[bridge]]\nname = 5", "bridge[0]: name: invalid value 5"),
        ('[[bridge]]\nname = "br0"\n[[bridge]]\nname = "br0"', "duplicate bridge name"),
        (
            '[[bridge]]\nname = "br0"\n[[bridge.port]]\nname = "p0"\nmtu = 1',
            'bridge "br0" port "p0": unknown key "mtu"',
        ),
        (
            '[[bridge]]\nname = "br0"\n[[bridge.port]]\nname = "p0"\n[[bridge.port]]\nname = "p0"',
            "duplicate port name",
        ),
        (
            '[[bridge]]\nname = "br0"\n[[bridge.port]]\nname = "p0"\noptions = { a = [1] }',
            'bridge "br0" port "p0" options:a: invalid value [1]',
        ),
        ("this is = not toml =", "not valid TOML"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.loads(text)
    assert message in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(str(tmp_path / "missing.toml"))


def test_metrics_none_disables() -> None:
    assert config.loads('[daemon]\nmetrics-address = "none"').daemon.metrics_address is None


def test_every_key_is_documented() -> None:
    rows = config.describe_keys()
    assert all(doc for *_, doc in rows)
    assert ("other_config", "pmd-cpu-mask") in {(t, k) for t, k, _, _ in rows}


def test_to_dict_round_trips() -> None:
    text = (ROOT / "etc" / "pyvswitchd.toml").read_text()
    cfg = config.loads(text)
    assert config.from_dict(config.to_dict(cfg), cfg.source) == cfg


def test_with_settings_applies_and_validates() -> None:
    cfg = config.loads('[other_config]\npmd-cpu-mask = "0x1"\n[[bridge]]\nname = "br0"\n')
    new = with_settings(
        cfg, ["pmd-cpu-mask=0x3", "daemon:metrics-address=none", "bridge:br0:mac-aging-time=60"]
    )
    assert new.other_config.pmd_cpu_mask == 3
    assert new.daemon.metrics_address is None
    assert new.bridges[0].other_config == {"mac-aging-time": "60"}
    # Setting another key keeps "none": it must not come back as the default listener.
    assert with_settings(new, ["max-idle=5000"]).daemon.metrics_address is None
    assert with_settings(new, ["pmd-cpu-mask="]).other_config.pmd_cpu_mask is None
    assert config.to_dict(new)["daemon"]["metrics-address"] == "none"
    for bad, text in [
        (["daemon:ctl-mode=999"], 'daemon:ctl-mode: invalid value "999"'),
        (["nope=1"], 'unknown key "nope"'),
        (["pmd-cpu-mask"], "expected KEY=VALUE"),
        (["bridge:br9:x=1"], 'bridge "br9": no such bridge'),
        (["a:b:c:d=1"], "expected KEY, other_config:KEY, daemon:KEY, bridge:NAME"),
    ]:
        with pytest.raises(config.ConfigError) as info:
            with_settings(cfg, bad)
        assert text in str(info.value)
    assert cfg.other_config.pmd_cpu_mask == 1  # the original is untouched


@pytest.mark.parametrize(
    "text", [config.default_text(), (ROOT / "etc" / "pyvswitchd.toml").read_text()]
)
def test_every_key_is_documented_in_the_shipped_files(text: str) -> None:
    for table, key, _, _ in config.describe_keys():
        assert f"\n{key} = " in text or f"\n#{key} = " in text, (table, key)


@pytest.mark.parametrize("text", ["", "\n\n", "# all commented out\n#[[bridge]]\n"])
def test_a_file_with_nothing_in_it_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "empty.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match="holds no settings"):
        config.load(str(path))
    path.write_text("bridge = []\n" + text)
    cfg = config.load(str(path))
    assert cfg.bridges == () and cfg.declares_bridges


def test_reload_may_drop_every_bridge_only_when_the_file_says_so() -> None:
    running = config.loads('[[bridge]]\nname = "br0"\n[[bridge]]\nname = "br1"\n')
    assert running.declares_bridges
    cut = config.loads('[other_config]\npmd-cpu-mask = "0x1"\n', "f.toml")
    with pytest.raises(config.ConfigError) as info:
        config.check_reload(running, cut)
    assert "f.toml: no [[bridge]]: reloading it would remove every bridge (br0, br1)" in str(
        info.value
    )
    assert config.no_bridge_warning(cut) is not None
    config.check_reload(running, config.loads("bridge = []\n"))
    config.check_reload(running, config.loads('[[bridge]]\nname = "br1"\n'))
    config.check_reload(config.loads(""), cut)  # nothing to drop
    assert config.no_bridge_warning(config.loads("bridge = []")) is None


def test_with_settings_takes_ovs_vsctl_spellings() -> None:
    cfg = config.loads(
        '[[bridge]]\nname = "br0"\n  [[bridge.port]]\n  name = "p0"\n  type = "dummy-pmd"\n'
    )
    new = with_settings(
        cfg,
        [
            "other_config:pmd-cpu-mask=0x3",
            "bridge:br0:other_config:mac-aging-time=60",
            "interface:p0:options:n_rxq=2",
            "interface:p0:other_config:pmd-rxq-affinity=0:0",
        ],
    )
    assert new.other_config.pmd_cpu_mask == 3
    assert new.bridges[0].other_config == {"mac-aging-time": "60"}
    port = new.bridges[0].ports[0]
    assert port.options == {"n_rxq": "2"}
    assert port.other_config == {"pmd-rxq-affinity": "0:0"}
    back = with_settings(new, ["interface:p0:options:n_rxq=", "other_config:pmd-cpu-mask="])
    assert back.bridges[0].ports[0].options == {} and back.other_config.pmd_cpu_mask is None
    for bad, text in [
        (["interface:p9:options:n_rxq=2"], 'interface "p9": no such interface'),
        (["interface:p0:n_rxq=2"], "expected KEY, other_config:KEY"),
        (["bridge:br0:options:x=1"], "expected KEY, other_config:KEY"),
    ]:
        with pytest.raises(config.ConfigError) as info:
            with_settings(cfg, bad)
        assert text in str(info.value)


def test_ofport_request_is_an_openflow_port_number() -> None:
    port = '[[bridge]]\nname = "br0"\n  [[bridge.port]]\n  name = "p0"\n'
    cfg = config.loads(port + "  ofport_request = 7\n")
    assert cfg.bridges[0].ports[0].ofport_request == 7
    assert config.to_dict(cfg)["bridge"][0]["port"][0]["ofport_request"] == 7
    assert "ofport_request" not in config.to_dict(config.loads(port))["bridge"][0]["port"][0]
    for bad in ("0", "65280", '"7"', "true", "-1"):
        with pytest.raises(config.ConfigError) as info:
            config.loads(port + f"  ofport_request = {bad}\n")
        assert str(info.value).startswith(
            'bridge "br0" port "p0":ofport_request: invalid value '
        ) and str(info.value).endswith("expected an OpenFlow port number 1..65279")
    # config/set spells it as ovs-vsctl's Interface column; "" withdraws it.
    moved = with_settings(cfg, ["interface:p0:ofport_request=9"])
    assert moved.bridges[0].ports[0].ofport_request == 9
    none = with_settings(cfg, ["interface:p0:ofport_request="])
    assert none.bridges[0].ports[0].ofport_request is None
    with pytest.raises(config.ConfigError, match="expected an OpenFlow port number"):
        with_settings(cfg, ["interface:p0:ofport_request=x"])


def test_unknown_keys_suggest_the_likely_one() -> None:
    for text, message in [
        (
            '[other_config]\npmd-cpu-msk = "0x1"\n',
            'unknown key "pmd-cpu-msk" (did you mean "pmd-cpu-mask"?)',
        ),
        ('[daemon]\nctl-mod = "0770"\n', 'unknown key "ctl-mod" (did you mean "ctl-mode"?)'),
        ('[[bridge]]\nname = "b"\nprots = []\n', 'unknown key "prots" (did you mean "port"?)'),
        (
            '[[bridge]]\nname = "b"\n[[bridge.port]]\nname = "p"\noption = {}\n',
            '(did you mean "options"?)',
        ),
        ('[other_config]\nzzz = "1"\n', 'unknown key "zzz" (known keys: dummy-numa, '),
    ]:
        with pytest.raises(config.ConfigError) as info:
            config.loads(text)
        assert message in str(info.value), str(info.value)


def test_bridges_share_one_datapath_type() -> None:
    cfg = config.loads('[[bridge]]\nname = "br0"\ndatapath_type = "dummy"\n')
    assert cfg.bridges[0].datapath_type == "dummy"
    assert config.to_dict(cfg)["bridge"][0]["datapath_type"] == "dummy"
    assert (
        "datapath_type" not in config.to_dict(config.loads('[[bridge]]\nname = "b"\n'))["bridge"][0]
    )
    with pytest.raises(config.ConfigError, match='datapath_type: invalid value "system"'):
        config.loads('[[bridge]]\nname = "br0"\ndatapath_type = "system"\n')
    with pytest.raises(config.ConfigError, match="one datapath runs every bridge"):
        config.loads(
            '[[bridge]]\nname = "br0"\ndatapath_type = "dummy"\n[[bridge]]\nname = "br1"\n'
        )
