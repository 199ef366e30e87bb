"""Tests for pyvswitchd.datapath.dpif_show: dpif/show, dpif/dump-dps, dpctl/dump-dps."""

from __future__ import annotations

from pyvswitchd.control.registry import CommandContext, OutputFormat
from tests.dp_harness import Harness, running_datapath

from .test_pipeline import icmp

TWO_BRIDGES = """\
[other_config]
dummy-numa = "0,0"

[[bridge]]
name = "br1"
[[bridge.port]]
name = "p3"
type = "dummy"

[[bridge]]
name = "br0"
[[bridge.port]]
name = "p2"
type = "dummy-pmd"
[[bridge.port]]
name = "p1"
type = "dummy-pmd"
"""


def status(h: Harness, name: str) -> str:
    port = h.dp.port_by_name(name)
    assert port is not None
    return port.netdev.status()


async def test_dpif_show_text_and_json() -> None:
    async with running_datapath(TWO_BRIDGES) as h:
        text = await h.call("dpif/show")
        # Datapath port numbers in the file's order: br1 1, p3 2, br0 3, p2 4, p1 5.
        assert text == (
            "netdev@ovs-netdev: hit:0 missed:0\n"
            "  br0:\n"
            "    br0 65534/3: (dummy-internal)\n"
            f"    p1 2/5: (dummy-pmd: {status(h, 'p1')})\n"
            f"    p2 1/4: (dummy-pmd: {status(h, 'p2')})\n"
            "  br1:\n"
            "    br1 65534/1: (dummy-internal)\n"
            "    p3 1/2: (dummy)\n"
        )
        reply = await h.registry.invoke(
            CommandContext(name="dpif/show", output_format=OutputFormat.JSON), []
        )
        data = reply.data["netdev@ovs-netdev"]
        assert data["stats"] == {"hit": "0", "missed": "0"}
        assert data["bridges"]["br1"] == {
            "br1": {"ofport": "65534", "port_no": "1", "type": "dummy-internal"},
            "p3": {"ofport": "1", "port_no": "2", "type": "dummy"},
        }
        p1 = data["bridges"]["br0"]["p1"]
        assert (p1["ofport"], p1["port_no"], p1["type"]) == ("2", "5", "dummy-pmd")
        pairs = dict(item.split("=", 1) for item in status(h, "p1").split(", "))
        assert p1["config"] == pairs


async def test_dpif_show_counts_hits_and_misses() -> None:
    text = TWO_BRIDGES.replace('"0,0"', '"0,0"\nemc-insert-inv-prob = 1')
    async with running_datapath(text) as h:
        p2 = h.dp.port_by_name("p2")
        assert p2 is not None
        for n in range(1, 4):  # one at a time: each packet its own batch
            await h.call("netdev-dummy/receive", "p1", icmp(5, 7, in_port=5))
            await h.wait_for(lambda n=n: p2.netdev.stats.tx_packets == n)
        first = (await h.call("dpif/show")).splitlines()[0]
        assert first == "netdev@ovs-netdev: hit:2 missed:1"


async def test_dump_dps() -> None:
    async with running_datapath(TWO_BRIDGES) as h:
        assert await h.call("dpif/dump-dps") == "netdev@br0\nnetdev@br1\n"
        assert await h.call("dpctl/dump-dps") == "netdev@ovs-netdev\n"


DUMMY_BRIDGE = """\
[other_config]
dummy-numa = "0"
[[bridge]]
name = "br0"
datapath_type = "dummy"
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
  [[bridge.port]]
  name = "p7"
  type = "dummy"
"""


async def test_dummy_bridges_run_on_ovs_dummy_numbered_by_name() -> None:
    async with running_datapath(DUMMY_BRIDGE) as h:
        assert await h.call("dpif/show") == (
            "dummy@ovs-dummy: hit:0 missed:0\n"
            "  br0:\n"
            "    br0 65534/100: (dummy-internal)\n"
            "    p0 1/1: (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0)\n"
            "    p7 2/7: (dummy)\n"
        )
        # Back to netdev: the bridge moves to netdev@ovs-netdev, numbered in order.
        await h.reconfig(DUMMY_BRIDGE.replace('datapath_type = "dummy"\n', ""))
        shown = await h.call("dpif/show")
        assert shown.startswith("netdev@ovs-netdev: hit:0 missed:0\n")
        assert "br0 65534/1: (dummy-internal)" in shown
        assert "datapath dummy@ovs-dummy replaced by netdev@ovs-netdev" in h.log()
