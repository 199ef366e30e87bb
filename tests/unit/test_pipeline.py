"""The flow pipeline on a real Datapath: EMC, dpcls, upcall to NORMAL, revalidation, dpctl."""

from __future__ import annotations

import re

from pyvswitchd.datapath.perf import Stat
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.key_text import parse_odp_key
from tests.dp_harness import running_datapath


def bridge(ports: int = 3, other: str = "") -> str:
    text = f'[other_config]\ndummy-numa = "0,0"\n{other}\n[[bridge]]\nname = "br0"\n'
    for i in range(1, ports + 1):
        text += f'[[bridge.port]]\nname = "p{i}"\ntype = "dummy-pmd"\n'
    return text


def icmp(src: int, dst: int, in_port: int = 1) -> str:
    return (
        f"in_port({in_port}),eth(src=50:54:00:00:00:{src:02x},dst=50:54:00:00:00:{dst:02x}),"
        "eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),"
        "icmp(type=8,code=0)"
    )


def tx(h, name: str) -> int:  # type: ignore[no-untyped-def]
    return h.dp.port_by_name(name).netdev.stats.tx_packets  # type: ignore[no-any-return]


async def test_learning_switch_forwards_like_normal() -> None:
    async with running_datapath(bridge()) as h:
        # A (on p1) to unknown B: flooded everywhere but p1.
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 1 and tx(h, "p3") == 1 and tx(h, "br0") == 1)
        assert tx(h, "p1") == 0
        # B answers from p2: A is known on p1, so only p1 gets it.
        await h.call("netdev-dummy/receive", "p2", icmp(7, 5))
        await h.wait_for(lambda: tx(h, "p1") == 1)
        # The A→B flood flow (in_port p1 = dp port 2) becomes unicast to p2 (port 3).
        await h.wait_for(
            lambda: re.search(r"in_port\(2\),.*dst=50:54:00:00:00:07.*actions:3\n", h.dp_dump()),
            limit=5,
        )
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 2)
        assert (tx(h, "p3"), tx(h, "br0")) == (1, 1)  # only the very first packet flooded
        fdb = await h.call("fdb/show", "br0")
        assert fdb.splitlines()[0] == " port  VLAN  MAC                Age"
        # The port column shows datapath port numbers: p1 is 2, p2 is 3.
        assert re.search(r"\n\s+2\s+0  50:54:00:00:00:05\s+\d+", fdb), fdb
        assert re.search(r"\n\s+3\s+0  50:54:00:00:00:07\s+\d+", fdb), fdb


async def test_emc_counters_exact() -> None:
    async with running_datapath(bridge(2, "emc-insert-inv-prob = 1")) as h:
        for _ in range(20):
            await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 20)
        out = await h.call("dpif-netdev/pmd-perf-show", "-pmd", "0")
        assert "  Datapath passes:              20  (1.00 passes/pkt)\n" in out
        assert "  - EMC hits:                   19  ( 95.0 %)\n" in out
        assert re.search(r"  - Upcalls:\s+1  \(  5\.0 %, [\d.]+ us/upcall\)\n", out)
        assert "  - Megaflow hits:               0  (  0.0 %, 0.00 subtbl lookups/hit)\n" in out


async def test_megaflow_hits_when_emc_disabled() -> None:
    async with running_datapath(bridge(2, "emc-insert-inv-prob = 0")) as h:
        for _ in range(10):
            await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 10)
        n = h.dp.pmds[0].perf.get_all()
        assert (n[Stat.EXACT_HIT], n[Stat.MASKED_HIT], n[Stat.MISS]) == (0, 9, 1)
        assert n[Stat.MASKED_LOOKUP] == 9
        assert "EMC insertion probability changed to zero" in h.log_lines()


async def test_upcall_installs_the_narrowest_megaflow() -> None:
    async with running_datapath(bridge(2)) as h:
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 1)
        dump = await h.call("dpctl/dump-flows")
        assert dump == (
            "flow-dump from pmd on cpu core: 0\n"
            "recirc_id(0),in_port(2),packet_type(ns=0,id=0),"
            "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),ipv4(frag=no),"
            # The packet that made the upcall is not counted (OVS: pmd.at,
            # 'PMD - same flow multiple threads').
            " packets:0, bytes:0, used:never, actions:1,3\n"
        )


async def test_flow_statistics_leave_out_the_packet_that_made_the_upcall() -> None:
    """OVS counts a packet in its flow's statistics only when it hits the flow:
    the first packet, executed by its upcall, is not counted; a packet of the
    same batch that the upcall's flow covers is (pmd.at 'PMD - same flow
    multiple threads', dpif-netdev.at 'datapath flow modification')."""
    async with running_datapath(bridge(2)) as h:
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 1)
        assert " packets:0, bytes:0, used:never, actions:1,3\n" in h.dp_dump()
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 2)
        assert re.search(r" packets:1, bytes:106, used:0\.\d{3}s, actions:1,3\n", h.dp_dump())
        # Three packets of a new flow in one batch: one upcall, two hits.
        before = h.dp.pmds[0].perf.get_all()
        p1 = h.dp.port_by_name("p1").netdev
        p1.inject([compose_packet(parse_odp_key(icmp(6, 7)))] * 3)  # type: ignore[union-attr]
        await h.wait_for(lambda: tx(h, "p2") == 5)
        after = h.dp.pmds[0].perf.get_all()
        assert after[Stat.MISS] - before[Stat.MISS] == 1
        dump = h.dp_dump()
        assert re.search(r"src=50:54:00:00:00:06,.* packets:2, bytes:212, used:0\.\d{3}s,", dump)


async def test_flows_expire_after_max_idle() -> None:
    async with running_datapath(bridge(2, "max-idle = 500")) as h:
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 1)
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 0, limit=5)
        assert h.coverage.get("revalidate_flow_expired").total == 1  # type: ignore[union-attr]


async def test_dpctl_flow_commands() -> None:
    async with running_datapath(bridge(2)) as h:
        flow = "in_port(2),eth_type(0x0800),ipv4(frag=no)"
        assert await h.call("dpctl/add-flow", flow, "3") == ""
        assert "updating flow table (File exists)" in await h.call_error(
            "dpctl/add-flow", flow, "3"
        )
        dump = await h.call("dpctl/dump-flows")
        assert (
            # Added without packet_type: OVS prints eth() and no packet_type.
            "recirc_id(0),in_port(2),eth(),eth_type(0x0800),ipv4(frag=no),"
            " packets:0, bytes:0, used:never, actions:3\n"
        ) in dump
        assert dump.count("actions:3") == 2  # PMD and main thread both got it
        await h.call("dpctl/mod-flow", flow, "1,3")
        assert "actions:1,3" in await h.call("dpctl/dump-flows", "pmd=0")
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: tx(h, "p2") == 1 and tx(h, "br0") == 1)
        m = await h.call("dpctl/dump-flows", "-m")
        assert re.search(
            r"ufid:[0-9a-f-]{36}, .*in_port\(p1\).* packets:1, bytes:106, "
            r"used:[0-9.]+s, dp:ovs, actions:br0,p2, dp-extra-info:",
            m,
        )
        ufid = re.search(r"ufid:([0-9a-f-]{36})", m)[1]  # type: ignore[index]
        assert ufid in await h.call("dpctl/get-flow", f"ufid:{ufid}")
        await h.call("dpctl/del-flow", flow)
        assert "deleting flow (No such file or directory)" in await h.call_error(
            "dpctl/del-flow", flow
        )
        await h.call("dpctl/del-flows")
        assert await h.call("dpctl/dump-flows") == ""
        assert await h.call_error("dpctl/add-flow", "eth_type(0x0800)", "1") == (
            "pyvswitchd: updating flow table (Invalid argument)"
        )
        assert "failed to put[create] flow: in_port is not an exact match" in h.log_lines()
