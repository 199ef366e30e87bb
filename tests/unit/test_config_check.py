"""Ports checked against their netdev types before anything is applied (datapath/config_check)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyvswitchd import config
from pyvswitchd.datapath.config_check import check_config
from pyvswitchd.netdev.registry import default_registry


def check(ports: str, bridge_oc: str = "") -> list[str]:
    text = f'[[bridge]]\nname = "br0"\n{bridge_oc}\n{ports}'
    return check_config(config.loads(text), default_registry())


def port(name: str, type_: str, options: str = "", other: str = "") -> str:
    text = f'[[bridge.port]]\nname = "{name}"\ntype = "{type_}"\n'
    if options:
        text += f"options = {{ {options} }}\n"
    if other:
        text += f"other_config = {{ {other} }}\n"
    return text


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        (port("p1", "bogus"), 'bridge "br0" port "p1": unknown netdev type "bogus" (known: '),
        (
            port("p1", "dummy-pmd", "n_rxq = 100000"),
            'bridge "br0" port "p1": bad n_rxq "100000" (expected an integer 1..1024)',
        ),
        (port("p1", "dummy", "colour = 1"), 'bridge "br0" port "p1": unknown option "colour"'),
        (
            port("src", "traffic-source", 'pcap = "/nonexistent/x.pcap"'),
            'bridge "br0" port "src": /nonexistent/x.pcap: ',
        ),
        (
            port("p1", "dummy", 'pcap = "/nonexistent/x.pcap"'),
            "directory /nonexistent does not exist",
        ),
        (port("eth9", "system", 'rx-ring = "v9"'), 'bad rx-ring "v9"'),
        (port("t0", "tap", "n_rxq = 0"), 'bridge "br0" port "t0": bad n_rxq "0"'),
        (port("p1", "dummy", "userspace-tso = true"), 'unknown option "userspace-tso"'),
    ],
)
def test_bad_port_is_an_error_naming_port_option_and_value(ports: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as info:
        check(ports)
    assert message in str(info.value)


def test_bad_local_port_type() -> None:
    with pytest.raises(config.ConfigError, match='local-port-type: invalid value "nope"'):
        check("", 'other_config = { local-port-type = "nope" }')


def test_warnings_are_what_start_would_only_log(tmp_path: Path) -> None:
    warnings = check(
        port("pvsmissing0", "system")
        + port("p0", "dummy-pmd", "n_rxq = 2", 'pmd-rxq-affinity = "0:x"')
        + port("p1", "dummy", f'pcap = "{tmp_path}/out.pcap"')
    )
    assert warnings == [
        'bridge "br0" port "pvsmissing0": no network interface of that name (yet): '
        "the port waits for it",
        'bridge "br0" port "p0" other_config:pmd-rxq-affinity: invalid value "0:x": '
        "invalid pmd-rxq-affinity entry '0:x'; ignored, as OVS does (the queues keep "
        "their pinning)",
    ]
    assert not (tmp_path / "out.pcap").exists()  # checked, not created


def test_good_ports_pass_and_open_nothing() -> None:
    assert check(port("p0", "dummy-pmd", "n_rxq = 2") + port("lo", "system")) == []


def test_pmd_set_warnings() -> None:
    numa = 'dummy-numa = "0,0"\n'
    cfg = config.loads(
        f'[other_config]\n{numa}pmd-cpu-mask = "0x1"\npmd-rxq-isolate = false\n'
        '[[bridge]]\nname = "br0"\n'
        + port("p0", "dummy-pmd", "n_rxq = 2", 'pmd-rxq-affinity = "0:1,1:0"')
    )
    assert check_config(cfg, default_registry()) == [
        "other_config:pmd-rxq-isolate: pmd-rxq-isolate can only be set false when using "
        "pmd-rxq-assign=group; true is used",
        'bridge "br0" port "p0" other_config:pmd-rxq-affinity: rx queue 0 pinned to core 1, '
        "which has no PMD (pmd-cpu-mask): another core is assigned",
    ]
    no_core = config.loads(
        f'[other_config]\n{numa}pmd-cpu-mask = "0x4"\n[[bridge]]\nname = "br0"\n'
        + port("p0", "dummy-pmd")
    )
    assert check_config(no_core, default_registry()) == [
        "other_config:pmd-cpu-mask: 0x4 names no core of this machine: no PMD thread runs, "
        "PMD-polled ports are not polled"
    ]
    # Without a PMD-polled port no PMD is wanted anyway.
    only_main = config.loads(
        f'[other_config]\n{numa}pmd-cpu-mask = "0x4"\n[[bridge]]\nname = "br0"\n'
        + port("p1", "dummy")
    )
    assert check_config(only_main, default_registry()) == []
