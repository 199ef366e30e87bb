"""Unit tests for pyvswitchd.ovsdb.tables: database rows to the configuration document.

The rows are plain objects with the IDL's attribute names and value forms
(optional columns as lists, maps as dicts, references as rows).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pyvswitchd import config
from pyvswitchd.datapath.config_check import check_config
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.ovsdb.tables import fingerprint, read_tables, root_row


def iface(name: str, type_: str = "", **options: str) -> Any:
    return SimpleNamespace(
        name=name, type=type_, options=options, other_config={}, ofport_request=[]
    )


def port(name: str, *interfaces: Any) -> Any:
    return SimpleNamespace(name=name, interfaces=list(interfaces) or [iface(name)])


def bridge(name: str, *ports: Any, datapath_type: str = "netdev", **other: str) -> Any:
    own = port(name, iface(name, "internal"))
    return SimpleNamespace(
        name=name, datapath_type=datapath_type, other_config=other, ports=[own, *ports]
    )


def root(*bridges: Any, next_cfg: int = 3, **other: str) -> Any:
    return SimpleNamespace(other_config=other, bridges=list(bridges), next_cfg=next_cfg)


def check_port(cfg: config.Config) -> object:
    return check_config(cfg, default_registry())


def test_rows_become_the_document_the_loader_takes() -> None:
    p0 = iface("p0", "dummy-pmd", n_rxq="4")
    p0.other_config = {"pmd-rxq-affinity": "0:1"}
    db = read_tables(
        root(
            bridge("br0", port("p0", p0), port("eth1"), **{"mac-aging-time": "60"}),
            **{"pmd-cpu-mask": "0x3", "dpdk-init": "true"},
        ),
        check_port,
    )
    assert db.next_cfg == 3
    assert db.rejected == {} and db.warnings == () and db.foreign_bridges == ()
    # dpdk-init is another OVS feature's key: ignored, as ovs-vswitchd ignores unknown keys.
    assert db.document == {
        "other_config": {"pmd-cpu-mask": "0x3"},
        "bridge": [
            {
                "name": "br0",
                "other_config": {"mac-aging-time": "60"},
                "port": [
                    {"name": "eth1", "type": "system", "options": {}, "other_config": {}},
                    {
                        "name": "p0",
                        "type": "dummy-pmd",
                        "options": {"n_rxq": "4"},
                        "other_config": {"pmd-rxq-affinity": "0:1"},
                    },
                ],
            }
        ],
    }
    cfg = config.from_dict(db.document)
    assert [p.name for p in cfg.bridges[0].ports] == ["eth1", "p0"]
    assert cfg.other_config.pmd_cpu_mask == 0x3


def test_other_datapath_types_are_not_ours() -> None:
    db = read_tables(root(bridge("kbr", port("k0"), datapath_type=""), bridge("br0")))
    assert db.foreign_bridges == ("kbr",)
    assert [b["name"] for b in db.document["bridge"]] == ["br0"]


def test_a_refused_interface_costs_only_itself() -> None:
    db = read_tables(
        root(
            bridge(
                "br0",
                port("bad", iface("bad", "dummy-pmd", n_rxq="lots")),
                port("odd", iface("odd", "nosuchtype")),
                port("waytoolonginterfacename"),
                port("bond0", iface("a"), iface("b")),
                port("good", iface("good", "dummy")),
            )
        ),
        check_port,
    )
    assert [p["name"] for p in db.document["bridge"][0]["port"]] == ["good"]
    assert set(db.rejected) == {"bad", "odd", "waytoolonginterfacename", "a", "b"}
    assert db.rejected["bad"] == (
        'bridge "br0" port "bad": bad n_rxq "lots" (expected an integer 1..1024)'
    )
    assert "nosuchtype" in db.rejected["odd"]
    assert "1-15 characters" in db.rejected["waytoolonginterfacename"]
    assert db.rejected["a"] == "port bond0 has 2 interfaces: bonds are not supported"


def test_a_bad_value_of_our_own_key_is_dropped_with_a_warning() -> None:
    db = read_tables(root(**{"dummy-numa": "zero", "pmd-cpu-mask": "0x1"}))
    assert db.document["other_config"] == {"pmd-cpu-mask": "0x1"}
    assert len(db.warnings) == 1
    assert 'dummy-numa: invalid value "zero"' in db.warnings[0]


def test_ovs_keys_keep_ovs_leniency() -> None:
    # ovs-vswitchd takes any value of its own keys and says what it uses instead.
    db = read_tables(root(**{"pmd-sleep-max": "-5"}))
    assert db.document["other_config"] == {"pmd-sleep-max": "-5"}
    assert config.from_dict(db.document).notes


def test_a_bridge_that_cannot_be_configured_rejects_its_interfaces() -> None:
    db = read_tables(root(bridge("bridge-name-too-long", port("p1"))))
    assert db.document["bridge"] == []
    assert db.rejected == {"p1": "bridge bridge-name-too-long is not configured"}
    assert "bridge-name-too-long" in db.warnings[0]


def test_an_interface_in_two_bridges_is_configured_once() -> None:
    db = read_tables(root(bridge("br0", port("p1")), bridge("br1", port("p1"))))
    assert [len(b["port"]) for b in db.document["bridge"]] == [1, 0]
    assert db.rejected == {"p1": "interface is in more than one bridge"}


def test_fingerprint_sees_configuration_not_order() -> None:
    a = root(bridge("br0", port("p1"), port("p2")), **{"pmd-cpu-mask": "0x1"})
    b = root(bridge("br0", port("p2"), port("p1")), **{"pmd-cpu-mask": "0x1"})
    assert fingerprint(a) == fingerprint(b)
    b.bridges[0].ports[1].interfaces[0].options = {"n_rxq": "2"}
    assert fingerprint(a) != fingerprint(b)
    c = root(bridge("br0", port("p1"), port("p2")), next_cfg=4, **{"pmd-cpu-mask": "0x1"})
    assert fingerprint(a) != fingerprint(c)


def test_root_row() -> None:
    assert root_row([]) is None
    row = root()
    assert root_row([row]) is row


@pytest.mark.parametrize("next_cfg", [[], [7], 7])
def test_next_cfg_in_either_form(next_cfg: object) -> None:
    row = root()
    row.next_cfg = next_cfg
    assert read_tables(row).next_cfg == (0 if next_cfg == [] else 7)


def test_a_bridge_whose_own_port_is_refused_costs_only_itself() -> None:
    db = read_tables(
        root(
            bridge("br0", port("p1"), **{"local-port-type": "nosuchtype"}),
            bridge("br1", port("p2", iface("p2", "dummy"))),
        ),
        check_port,
    )
    assert [b["name"] for b in db.document["bridge"]] == ["br1"]
    assert db.rejected == {"p1": "bridge br0 is not configured"}
    assert "local-port-type" in db.warnings[0]
    config.from_dict(db.document)  # what is left loads


def test_dummy_bridges_are_ours_and_one_datapath_type_runs() -> None:
    db = read_tables(
        root(
            bridge("br0", port("p1", iface("p1", "dummy")), datapath_type="dummy"),
            bridge("br1", port("p2", iface("p2", "dummy"))),
        ),
        check_port,
    )
    assert db.document["bridge"] == [
        {
            "name": "br0",
            "datapath_type": "dummy",
            "other_config": {},
            "port": [{"name": "p1", "type": "dummy", "options": {}, "other_config": {}}],
        }
    ]
    assert db.rejected == {"p2": "bridge br1 is not configured"}
    assert db.warnings == (
        "bridge br1 not configured: datapath_type netdev, but this daemon runs one datapath, "
        "of type dummy",
    )
    assert config.from_dict(db.document).bridges[0].datapath_type == "dummy"


def test_ofport_request_is_read_and_wakes_a_reread() -> None:
    p0 = iface("p0", "dummy-pmd")
    p0.ofport_request = [7]
    plain = root(bridge("br0", port("p0", iface("p0", "dummy-pmd"))))
    asked = root(bridge("br0", port("p0", p0)))
    db = read_tables(asked, check_port)
    assert db.document["bridge"][0]["port"][0]["ofport_request"] == 7
    assert config.from_dict(db.document).bridges[0].ports[0].ofport_request == 7
    assert "ofport_request" not in read_tables(plain, check_port).document["bridge"][0]["port"][0]
    assert fingerprint(asked) != fingerprint(plain)
