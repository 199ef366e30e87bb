"""Tests for pyvswitchd.datapath.dpctl_datapaths: dpctl/add-dp and del-dp (pmd.at 'PMD - dpctl')."""

from __future__ import annotations

from pyvswitchd.datapath.dp_ports import choose_port_no
from pyvswitchd.datapath.dpctl_datapaths import split_dp_name
from tests.dp_harness import running_datapath

from .test_pipeline import bridge

NO_BRIDGE = 'bridge = []\n[other_config]\ndummy-numa = "0,0"\n'
FLOW = "in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x1234)"
LINE = (
    "recirc_id(0),in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),"
    "eth_type(0x1234), packets:0, bytes:0, used:never, actions:2\n"
)


def test_split_dp_name() -> None:
    assert split_dp_name("netdev@dp0") == ("netdev", "dp0")
    assert split_dp_name("dp0") == ("system", "dp0")
    assert split_dp_name("a@b@c") == ("a", "b@c")


async def test_a_datapath_made_by_hand() -> None:
    async with running_datapath(NO_BRIDGE) as h:
        assert await h.call("dpctl/dump-dps") == ""
        assert await h.call("dpctl/add-dp", "netdev@dp0") == ""
        assert await h.call("dpctl/add-if", "netdev@dp0", "p1,type=dummy-pmd") == ""
        assert await h.call("dpctl/add-if", "netdev@dp0", "p2,type=dummy") == ""
        assert h.rxq_layout() == {0: [("p1", 0)]}
        rxq = await h.call("dpif-netdev/pmd-rxq-show", "dp0")
        assert "  port: p1                queue-id:  0 (enabled)" in rxq
        p1 = h.dp.port_by_name("p1")
        assert p1 is not None
        assert await h.call("dpctl/show", "netdev@dp0") == (
            "netdev@dp0:\n"
            "  lookups: hit:0 missed:0 lost:0\n"
            "  flows: 0\n"
            "  port 0: dp0 (dummy-internal)\n"
            f"  port 1: p1 (dummy-pmd: {p1.netdev.status()})\n"
            "  port 2: p2 (dummy)\n"
        )
        assert await h.call("dpctl/dump-dps") == "netdev@dp0\n"
        # No bridge: dpif/show and upcall/show have nothing to show.
        assert await h.call("dpif/show") == await h.call("upcall/show") == ""

        assert await h.call("dpctl/add-flow", "netdev@dp0", FLOW, "2") == ""
        dump = await h.call("dpctl/dump-flows", "netdev@dp0")
        assert sorted(dump.splitlines(keepends=True)) == sorted(
            ["flow-dump from pmd on cpu core: 0\n", "flow-dump from the main thread:\n"]
            + [LINE] * 2
        )
        assert await h.call("dpctl/dump-flows", "netdev@dp0", "pmd=0") == LINE
        assert await h.call("dpctl/dump-flows", "netdev@dp0", "pmd=-1") == LINE
        assert await h.call("dpctl/del-flow", "netdev@dp0", FLOW) == ""
        assert await h.call("dpctl/dump-flows", "netdev@dp0") == ""

        assert await h.call("dpctl/del-dp", "netdev@dp0") == ""
        assert await h.call("dpctl/show") == ""
        assert h.dp.pmds == {} and h.dp.ports == {}
        assert "Port 1 (p1) removed from datapath dp0" in h.log()


async def test_add_dp_with_ports_and_errors() -> None:
    async with running_datapath(NO_BRIDGE) as h:
        err = await h.call_error("dpctl/add-dp", "dp0")
        assert err == "pyvswitchd: add_dp (Address family not supported by protocol)"
        err = await h.call_error("dpctl/del-dp", "netdev@dp0")
        assert err == "pyvswitchd: opening datapath (No such device)"
        await h.call("dpctl/add-dp", "netdev@dp0", "p1,type=dummy-pmd", "p2,type=dummy")
        assert sorted(p.name for p in h.dp.ports.values()) == ["dp0", "p1", "p2"]
        err = await h.call_error("dpctl/add-dp", "netdev@dp0")
        assert err == "pyvswitchd: add_dp (File exists)"
        err = await h.call_error("dpctl/add-dp", "netdev@dp1")
        assert err == "pyvswitchd: add_dp (Device or resource busy)"
        # A reload without bridges leaves it; one with bridges replaces it.
        await h.reconfig(NO_BRIDGE)
        assert h.dp.name == "dp0" and len(h.dp.ports) == 3
        await h.reconfig(bridge(1))
        assert h.dp.name == "ovs-netdev"
        assert sorted(p.name for p in h.dp.ports.values()) == ["br0", "ovs-netdev", "p1"]
        assert "datapath dp0 replaced by the configured bridges" in h.log()


async def test_the_bridges_datapath_is_not_deleted() -> None:
    async with running_datapath(bridge(1)) as h:
        err = await h.call_error("dpctl/del-dp", "netdev@ovs-netdev")
        assert err == "pyvswitchd: del_dp (Device or resource busy)"
        err = await h.call_error("dpctl/add-dp", "netdev@dp0")
        assert err == "pyvswitchd: add_dp (Device or resource busy)"


async def test_a_dummy_datapath_shows_its_type_until_deleted() -> None:
    """OVS's tests make ``dummy@dp0``: the same datapath, named with that type."""
    async with running_datapath(NO_BRIDGE) as h:
        await h.call("dpctl/add-dp", "dummy@dp0", "p1,type=dummy")
        assert await h.call("dpctl/dump-dps") == "dummy@dp0\n"
        assert (await h.call("dpctl/show", "dummy@dp0")).startswith("dummy@dp0:\n")
        assert (await h.call("dpctl/show", "dp0")).startswith("dummy@dp0:\n")
        err = await h.call_error("dpctl/show", "netdev@dp0")
        assert err == "pyvswitchd: opening datapath netdev@dp0 failed (Invalid argument)"
        err = await h.call_error("dpctl/del-dp", "netdev@dp0")
        assert err == "pyvswitchd: opening datapath (Invalid argument)"
        # The dpif layer's debug lines name it in full too.
        h.dp.vlog.set_levels_from_string("dpif:console:dbg")
        await h.call("dpctl/add-flow", "dummy@dp0", FLOW, "2")
        assert "dummy@dp0: put[create] ufid:" in h.log()
        assert await h.call("dpctl/del-dp", "dummy@dp0") == ""
        assert await h.call("dpctl/add-dp", "netdev@dp0") == ""
        assert await h.call("dpctl/dump-dps") == "netdev@dp0\n"


def test_choose_port_no() -> None:
    taken = {0}
    assert choose_port_no("p7", taken, by_name=False) == 1
    assert choose_port_no("p7", taken, by_name=True) == 7
    assert choose_port_no("br0", taken, by_name=True) == 100
    assert choose_port_no("br1", taken, by_name=True) == 101
    assert choose_port_no("p1a2", taken, by_name=True) == 1
    # 0, a taken number or no digits: the lowest free number.
    assert choose_port_no("p0", {0, 1}, by_name=True) == 2
    assert choose_port_no("p2", {0, 1, 2}, by_name=True) == 3
    assert choose_port_no("eth", {0, 1}, by_name=True) == 2


async def test_a_dummy_datapath_numbers_ports_after_their_names() -> None:
    """OVS's dummy class: p7 is port 7, br0 port 100, p0 the lowest free number."""
    async with running_datapath(NO_BRIDGE) as h:
        ports = ("p7,type=dummy", "br0,type=dummy", "p0,type=dummy-pmd")
        await h.call("dpctl/add-dp", "dummy@dp0", *ports)
        assert {p.name: no for no, p in h.dp.ports.items()} == {
            "dp0": 0,
            "p7": 7,
            "br0": 100,
            "p0": 1,
        }
        await h.call("dpctl/del-dp", "dummy@dp0")
        # The netdev class numbers in order, as OVS's does.
        await h.call("dpctl/add-dp", "netdev@dp0", "p7,type=dummy", "br0,type=dummy")
        assert {p.name: no for no, p in h.dp.ports.items()} == {"dp0": 0, "p7": 1, "br0": 2}
