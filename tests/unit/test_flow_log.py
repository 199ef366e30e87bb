"""Tests for pyvswitchd.datapath.flow_log: the upcall and flow-install debug lines.

Expected keys are OVS's, from tests/dpif-netdev.at and tests/pmd.at on OVS main.
"""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator

import pytest

from pyvswitchd.datapath.execute import compile_actions
from pyvswitchd.datapath.flow_log import FlowLog, dumped_key_text, packet_key_text
from pyvswitchd.datapath.flow_table import DpFlow, flow_ufid
from pyvswitchd.datapath.upcall import exact_mask
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp.actions import Output
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.flow_extract import parse_key
from pyvswitchd.odp.flow_key import FlowKey
from pyvswitchd.odp.flow_text import parse_match
from pyvswitchd.odp.key_text import parse_odp_key

META = (
    "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0),ct_zone(0),"
    "ct_mark(0),ct_label(0),packet_type(ns=0,id=0),"
)


def packet_key(text: str, in_port: int = 1) -> FlowKey:
    """The key the datapath extracts from the packet ``netdev-dummy/receive TEXT`` makes."""
    key = parse_key(compose_packet(parse_odp_key(text)), in_port)
    assert key is not None
    return key


@pytest.mark.parametrize(
    ("received", "logged"),
    [
        (
            "in_port(1),eth(src=50:54:00:00:00:01,dst=50:54:00:00:02:00),eth_type(0x0800),"
            "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=8,dst=9),"
            "tcp_flags(ack)",
            "eth(src=50:54:00:00:00:01,dst=50:54:00:00:02:00),eth_type(0x0800),"
            "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=8,dst=9),"
            "tcp_flags(ack)",
        ),
        (
            "in_port(7),eth(src=50:54:00:00:00:77,dst=50:54:00:00:01:78),eth_type(0x0800),"
            "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)",
            "eth(src=50:54:00:00:00:77,dst=50:54:00:00:01:78),eth_type(0x0800),"
            "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)",
        ),
        (
            "packet_type(ns=0,id=0),eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),"
            "eth_type(0x8100),vlan(vid=1000,pcp=5),encap(eth_type(0x0800),"
            "ipv4(src=127.0.0.1,dst=127.0.0.1,proto=0,tos=0,ttl=64,frag=no))",
            "eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),eth_type(0x8100),"
            "vlan(vid=1000,pcp=5),encap(eth_type(0x0800),"
            "ipv4(src=127.0.0.1,dst=127.0.0.1,proto=0,tos=0,ttl=64,frag=no))",
        ),
        (
            "packet_type(ns=0,id=0),eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),"
            "eth_type(0x8100),vlan(vid=99,pcp=7),encap(eth_type(0x0800),"
            "ipv4(src=127.0.0.1,dst=127.0.0.1,proto=17,ttl=64,frag=no),udp(src=81,dst=82))",
            "eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),eth_type(0x8100),vlan(vid=99,pcp=7),"
            "encap(eth_type(0x0800),ipv4(src=127.0.0.1,dst=127.0.0.1,proto=17,tos=0,ttl=64,"
            "frag=no),udp(src=81,dst=82))",
        ),
        (
            "packet_type(ns=0,id=0),eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),"
            "eth_type(0x8100),vlan(vid=99,pcp=7),encap(eth_type(0x0806),arp(sip=127.0.0.1,"
            "tip=127.0.0.1,op=1,sha=00:0b:0c:0d:0e:0f,tha=00:00:00:00:00:00))",
            "eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),eth_type(0x8100),vlan(vid=99,pcp=7),"
            "encap(eth_type(0x0806),arp(sip=127.0.0.1,tip=127.0.0.1,op=1,"
            "sha=00:0b:0c:0d:0e:0f,tha=00:00:00:00:00:00))",
        ),
    ],
)
def test_packet_key_is_the_whole_key_ovs_logs(received: str, logged: str) -> None:
    assert packet_key_text(packet_key(received)) == META + logged


def make_log() -> tuple[FlowLog, io.StringIO, Vlog]:
    out = io.StringIO()
    vlog = Vlog("test", syslog_method="null", console=out, clock=lambda: 1000.0)
    vlog.set_pattern(None, "%c|%p|%m")
    log = FlowLog(vlog, "ovs-netdev")
    return log, out, vlog


ICMP_KEY = (
    "in_port(1),eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


def test_nothing_is_logged_or_wanted_below_dbg() -> None:
    log, out, _ = make_log()
    assert not log.wanted()
    match = parse_match("in_port(1),eth_type(0x0800),ipv4(frag=no)")
    log.flow_add(match.key, match.mask, [Output(2)])
    assert out.getvalue() == ""


def test_upcall_lines_as_ovs_tests_read_them() -> None:
    log, out, vlog = make_log()
    vlog.set_levels_from_string("dpif_netdev:console:dbg")
    assert log.wanted()
    key = packet_key(ICMP_KEY)
    mega = parse_match(
        "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,"
        "dst=50:54:00:00:00:0a),eth_type(0x0800),ipv4(frag=no)"
    )
    log.miss_upcall(key)
    log.upcall_flow(key, mega.mask, (2,))
    lines = out.getvalue().splitlines()
    assert lines[0] == "dpif_netdev|DBG|ovs-netdev: miss upcall:"
    assert lines[1] == packet_key_text(key)
    ufid = flow_ufid(key, mega.mask)
    assert lines[2].startswith(f"dpif_netdev|DBG|flow_add: ufid:{ufid} mega_ufid:")
    # What OVS's filter_flow_install and strip_xout leave of it.
    assert lines[2].split(" ", 3)[3] == (
        "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,"
        "dst=50:54:00:00:00:0a),eth_type(0x0800),ipv4(frag=no), actions:2"
    )
    # The ufid is the one the installed flow carries (dpctl/dump-flows -m).
    flow = DpFlow(key, mega.mask, [Output(2)], compile_actions([Output(2)]))
    assert flow.ufid == ufid


def mega_ufid(line: str) -> str:
    return line.split("mega_ufid:")[1].split(" ")[0]


def test_mega_ufid_differs_per_wildcard_set() -> None:
    """OVS's 'mega flow ufid uniqueness for different wildcards'."""
    log, out, vlog = make_log()
    vlog.set_levels_from_string("dpif_netdev:dbg")
    vlog.set_rate_limits(["dpif_netdev"], False)
    a = parse_match(
        "in_port(1),eth(),eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0x20/0,"
        "ttl=64,frag=no),tcp(src=80,dst=8080)"
    )
    b = parse_match(
        "in_port(1),eth(),eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,"
        "ttl=64,frag=no),tcp(src=80,dst=8080)"
    )
    assert a.key == b.key  # the same masked flow...
    log.flow_add(a.key, a.mask, [Output(3)])
    log.flow_add(b.key, b.mask, [Output(3)])
    first, second = (line for line in out.getvalue().splitlines() if "flow_add" in line)
    assert "tcp(src=80,dst=8080)" in first and "tcp(src=80,dst=8080)" in second
    assert mega_ufid(first) != mega_ufid(second)  # ...under two masks
    log.flow_add(b.key, b.mask, [Output(3)])
    assert mega_ufid(out.getvalue().splitlines()[-1]) == mega_ufid(second)


def test_flow_mod_names_the_old_actions() -> None:
    log, out, vlog = make_log()
    vlog.set_levels_from_string("dpif_netdev:dbg")
    m = parse_match("in_port(1),eth_type(0x1234)")
    log.flow_add(m.key, m.mask, [Output(3)], old_actions=[Output(2)], packet_type_exact=False)
    assert out.getvalue().endswith(
        " recirc_id(0),in_port(1),eth(),eth_type(0x1234), old_actions:2, actions:3\n"
    )
    assert "|flow_mod: ufid:" in out.getvalue()


def test_dpif_module_logs_dpctl_operations_at_dbg() -> None:
    log, out, vlog = make_log()
    m = parse_match("in_port(1),eth_type(0x1234)")
    log.dpif_operation("put[create]", m.key, m.mask, [Output(2)])
    assert out.getvalue() == ""
    vlog.set_levels_from_string("dpif:dbg")
    log.dpif_operation("put[create]", m.key, m.mask, [Output(2)])
    log.dpif_operation("flow_del", m.key, m.mask)
    first, second = out.getvalue().splitlines()
    assert first.startswith("dpif|DBG|netdev@ovs-netdev: put[create] ufid:")
    assert first.endswith(",eth_type(0x1234), actions:2")
    assert second.startswith("dpif|DBG|netdev@ovs-netdev: flow_del ufid:")


def test_upcall_lines_share_ovs_rate_limit() -> None:
    log, out, vlog = make_log()
    vlog.set_levels_from_string("dpif_netdev:dbg")
    key = packet_key(ICMP_KEY)
    for _ in range(700):
        log.miss_upcall(key)
    assert out.getvalue().count("miss upcall") == 600
    vlog.set_rate_limits(["dpif_netdev"], False)
    log.miss_upcall(key)
    assert out.getvalue().count("miss upcall") == 601


def test_an_exact_flow_prints_its_metadata_as_ovs_does_without_megaflows() -> None:
    """'miss upcall key matches flow_install' after upcall/disable-megaflows."""
    log, out, vlog = make_log()
    vlog.set_levels_from_string("dpif_netdev:dbg")
    key = packet_key(ICMP_KEY)
    log.upcall_flow(key, exact_mask(key), (2,), exact=True)
    line = out.getvalue().splitlines()[0]
    assert line.split(" ", 3)[3] == (
        "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),"
        "ct_state(-new-est-rel-rpl-inv-trk-snat-dnat),ct_zone(0),ct_mark(0),ct_label(0),"
        "packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),"
        "eth_type(0x0800),ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),"
        "icmp(type=8,code=0), actions:2"
    )


async def _pages(flows: list[DpFlow]) -> AsyncGenerator[list[DpFlow], None]:
    yield flows


MEGA = (
    "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,"
    "dst=50:54:00:00:00:0a),eth_type(0x0800),ipv4(frag=no)"
)


def test_dumped_key_shows_every_field_in_the_datapath_key_order() -> None:
    """'miss upcall key matches flow_dump': a megaflow, then an exact-match flow."""
    key = packet_key(ICMP_KEY)
    mega = DpFlow(key, parse_match(MEGA).mask, [Output(2)], compile_actions([Output(2)]))
    assert dumped_key_text(mega) == (
        "recirc_id(0),dp_hash(0/0),skb_priority(0/0),in_port(1),skb_mark(0/0),ct_state(0/0),"
        "ct_zone(0/0),ct_mark(0/0),ct_label(0/0),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2/0.0.0.0,dst=10.0.0.1/0.0.0.0,proto=1/0,tos=0/0,ttl=64/0,frag=no),"
        "icmp(type=8/0,code=0/0)"
    )
    exact = DpFlow(key, exact_mask(key), [Output(2)], compile_actions([Output(2)]))
    assert dumped_key_text(exact) == (
        "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0/0xff),"
        "ct_zone(0),ct_mark(0),ct_label(0),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
    )


async def test_a_dump_is_logged_at_dbg_whole_or_terse() -> None:
    log, out, vlog = make_log()
    key = packet_key(ICMP_KEY)
    flow = DpFlow(key, parse_match(MEGA).mask, [Output(2)], compile_actions([Output(2)]))
    assert not log.dumping()
    vlog.set_levels_from_string("dpif:dbg")
    assert log.dumping()
    await log.log_dump([_pages([flow])], terse=False, now=10.0)
    flow.packets, flow.bytes, flow.used = 3, 294, 9.5
    await log.log_dump([_pages([flow])], terse=True, now=10.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"dpif|DBG|netdev@ovs-netdev: flow_dump ufid:{flow.ufid} {dumped_key_text(flow)}, "
        "packets:0, bytes:0, used:never, actions:2"
    )
    assert lines[1:3] == [
        "dpif|DBG|netdev@ovs-netdev: dumped all flows",
        "dpif|DBG|netdev@ovs-netdev: flow_dump_destroy success",
    ]
    assert lines[3] == (
        f"dpif|DBG|netdev@ovs-netdev: flow_dump ufid:{flow.ufid} <empty>, "
        "packets:3, bytes:294, used:0.500s"
    )
