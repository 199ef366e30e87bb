"""Unit tests for pyvswitchd.ovsdb.writeback: the columns ovs-vswitchd keeps up to date."""

from __future__ import annotations

from types import SimpleNamespace

from pyvswitchd.datapath.interface_status import InterfaceStatus
from pyvswitchd.ovsdb import writeback


def test_interface_columns_in_the_idl_form() -> None:
    status = InterfaceStatus(
        name="p0",
        bridge="br0",
        ofport=3,
        link_state="up",
        admin_state="up",
        mtu=1500,
        mac_in_use="aa:55:00:00:00:01",
        ifindex=0,
    )
    assert writeback.interface_columns(status) == {
        "ofport": [3],
        "error": [],
        "link_state": ["up"],
        "admin_state": ["up"],
        "mtu": [1500],
        "mac_in_use": ["aa:55:00:00:00:01"],
        "ifindex": [0],
    }
    assert set(writeback.interface_columns(status)) == set(writeback.INTERFACE_COLUMNS)


def test_a_refused_interface_has_ofport_minus_one_and_its_error() -> None:
    columns = writeback.rejected_columns("bad n_rxq")
    assert columns["ofport"] == [-1]
    assert columns["error"] == ["bad n_rxq"]
    assert columns["link_state"] == [] and columns["mtu"] == []


def test_only_what_differs_is_written() -> None:
    row = SimpleNamespace(ofport=[3], error=["old"], mtu=[1500])
    wanted = {"ofport": [3], "error": [], "mtu": [1500], "ifindex": [4]}
    # ifindex is not a column of this (older) schema: left out.
    assert writeback.changed(row, wanted, ["ofport", "error", "mtu"]) == {"error": []}


def test_root_and_bridge_facts() -> None:
    root = writeback.root_columns(iface_types=["tap", "dummy"], version="0.1.0", db_version="8.3.1")
    assert root == {
        "datapath_types": ["netdev"],
        "iface_types": ["dummy", "tap"],
        "dpdk_initialized": False,
        "ovs_version": ["0.1.0"],
        "db_version": ["8.3.1"],
    }
    bridge = writeback.bridge_columns("br0")
    assert bridge["datapath_version"] == "<built-in>"
    (dpid,) = bridge["datapath_id"]
    assert len(dpid) == 16 and int(dpid, 16) >> 48 == 0
