"""Unit tests for pyvswitchd.datapath.interface_status: what OVSDB's Interface rows report."""

from __future__ import annotations

from pyvswitchd.datapath.interface_status import (
    InterfaceStatus,
    bridge_datapath_id,
    interface_statistics,
    interface_status,
    simulated_mac,
)
from pyvswitchd.datapath.ofport import OFPP_LOCAL
from tests.dp_harness import running_datapath

FRAME = (
    "eth(src=02:00:00:00:00:02,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
)

CONFIG = """\
[other_config]
dummy-numa = "0"
[[bridge]]
name = "br0"
# A dummy bridge port, even beside a kernel one: a unit test makes no TAP device.
other_config = { local-port-type = "dummy-internal" }
  [[bridge.port]]
  name = "p1"
  type = "dummy-pmd"
  [[bridge.port]]
  name = "p2"
  type = "dummy"
  [[bridge.port]]
  name = "gone0"
  type = "afpacket"
"""


async def test_every_configured_interface_has_a_status() -> None:
    async with running_datapath(CONFIG) as h:
        found = interface_status(h.dp)
        assert set(found) == {"br0", "p1", "p2", "gone0"}
        assert found["br0"].ofport == OFPP_LOCAL
        assert found["p1"] == InterfaceStatus(
            name="p1",
            bridge="br0",
            ofport=found["p1"].ofport,
            link_state="up",
            admin_state="up",
            mtu=1500,
            mac_in_use=simulated_mac("p1"),
            ifindex=0,
        )
        assert {found["p1"].ofport, found["p2"].ofport} == {1, 2}
        # The same numbers dpif/show prints.
        shown = await h.call("dpif/show")
        assert f"p1 {found['p1'].ofport}/" in shown
        # A device that could not be opened: ofport -1 and OVS's wording.
        gone = found["gone0"]
        assert gone.ofport == -1
        assert gone.error is not None
        assert gone.error.startswith("could not open network device gone0")


async def test_statistics_count_what_went_through() -> None:
    async with running_datapath(CONFIG) as h:
        await h.call("netdev-dummy/receive", "p2", FRAME)
        await h.wait_for(lambda: interface_statistics(h.dp)["p1"]["tx_packets"] == 1)  # flooded
        stats = interface_statistics(h.dp)
        assert stats["p2"]["rx_packets"] == 1
        assert set(stats["p1"]) == {"rx_packets", "rx_bytes", "rx_dropped", "rx_errors"} | {
            "tx_packets",
            "tx_bytes",
            "tx_dropped",
            "tx_errors",
        }


def test_simulated_macs_are_stable_and_local() -> None:
    assert simulated_mac("p1") == simulated_mac("p1") != simulated_mac("p2")
    assert int(simulated_mac("p1").split(":")[0], 16) & 0x02  # locally administered
    assert bridge_datapath_id("br0") == "0000" + simulated_mac("br0").replace(":", "")
