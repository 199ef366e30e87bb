"""Tests for pyvswitchd.datapath.upcall: answering a batch of misses, and the executor cache."""

from __future__ import annotations

import io
import pickle

import pytest

from pyvswitchd.datapath.flow_log import FlowLog, packet_key_text
from pyvswitchd.datapath.mac_learning import MacLearning
from pyvswitchd.datapath.normal import NORMAL_IP_MASK, NormalBridge
from pyvswitchd.datapath.port import Port
from pyvswitchd.datapath.upcall import ExecutorCache, Upcall, exact_mask
from pyvswitchd.netdev.dummy import DummyNetdev
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp import flow_key as fk
from pyvswitchd.odp import protocols as proto
from pyvswitchd.odp.actions import Output
from pyvswitchd.odp.flow_key import FlowKey, masked
from pyvswitchd.odp.flow_text import format_flow

A = 0x5054_0000_0005
B = 0x5054_0000_0007
C = 0x5054_0000_0009


def key(
    in_port: int, src: int, dst: int, *, nw_src: int = 0x0A00_0001, eth_type: int = 0x0800
) -> FlowKey:
    k = [0] * fk.N_FIELDS
    k[fk.IN_PORT] = in_port
    k[fk.ETH_SRC] = src
    k[fk.ETH_DST] = dst
    k[fk.ETH_TYPE] = eth_type
    k[fk.NW_PROTO] = proto.IPPROTO_ICMP
    k[fk.NW_SRC] = nw_src
    k[fk.NW_DST] = 0x0A00_0002
    k[fk.NW_TTL] = 64
    return tuple(k)


class Setup:
    """Bridge br0 over ports 1-3; port 4 in no bridge; port 5 in a bridge that is gone."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.coverage = Coverage(lambda: self.now)
        self.ml = MacLearning(lambda: self.now, self.coverage)
        vlog = Vlog("test", syslog_method="null")
        self.bridge = NormalBridge("br0", self.ml, vlog.module("upcall"), self.coverage)
        self.bridge.set_ports((1, 2, 3))
        self.ports = {no: Port(no, DummyNetdev(f"p{no}"), "br0") for no in (1, 2, 3)}
        self.ports[4] = Port(4, DummyNetdev("p4"), None)
        self.ports[5] = Port(5, DummyNetdev("p5"), "br-gone")
        self.upcall = Upcall(self.ports, {"br0": self.bridge}, self.coverage)

    def count(self, name: str) -> int:
        counter = self.coverage.get(name)
        return 0 if counter is None else counter.total


@pytest.fixture
def s() -> Setup:
    return Setup()


def test_one_answer_per_key_in_order(s: Setup) -> None:
    keys = [key(1, A, B), key(2, B, A), key(3, C, A)]
    answers = s.upcall.answer(keys)
    assert answers == [
        (NORMAL_IP_MASK, (2, 3), "br0"),  # B unknown: flood
        (NORMAL_IP_MASK, (1,), "br0"),  # A learned on 1 by the first key
        (NORMAL_IP_MASK, (1,), "br0"),
    ]
    assert s.upcall.answer([]) == []


def test_covered_keys_get_the_earlier_index(s: Setup) -> None:
    first = key(1, A, B, nw_src=1)
    # Same in_port and MACs, other IP source: outside NORMAL's mask, so covered.
    covered = [key(1, A, B, nw_src=n) for n in (2, 3)]
    other = key(2, B, A)
    answers = s.upcall.answer([first, covered[0], other, covered[1], key(2, B, A, nw_src=9)])
    assert answers[0] == (NORMAL_IP_MASK, (2, 3), "br0")
    assert answers[1] == 0
    assert answers[2] == (NORMAL_IP_MASK, (1,), "br0")
    assert answers[3] == 0  # the index of the answered key, not of another covered one
    assert answers[4] == 2
    assert all(masked(k, NORMAL_IP_MASK) == masked(first, NORMAL_IP_MASK) for k in covered)
    # The bridge decided (and learned) once per answered key only.
    assert s.count("xlate_actions") == 2
    assert s.count("mac_learning_learned") == 2


def test_a_key_outside_the_earlier_mask_is_decided_again(s: Setup) -> None:
    ip = key(1, A, B)
    arp = key(1, A, B, eth_type=proto.ETH_TYPE_ARP)  # eth_type is in every NORMAL mask
    answers = s.upcall.answer([ip, arp])
    assert answers[0] != 0 and answers[1] != 0
    assert isinstance(answers[1], tuple)
    assert s.count("xlate_actions") == 2


def test_keys_of_ports_without_bridge_are_lost_and_counted(s: Setup) -> None:
    keys = [key(4, A, B), key(1, A, B), key(5, A, B), key(99, A, B), key(4, A, B, nw_src=7)]
    answers = s.upcall.answer(keys)
    assert answers[0] is None and answers[2] is None and answers[3] is None
    assert answers[4] is None  # a lost key covers nothing
    assert answers[1] == (NORMAL_IP_MASK, (2, 3), "br0")
    assert s.count("datapath_drop_upcall_error") == 4
    assert s.count("xlate_actions") == 1


def test_answers_follow_the_live_maps(s: Setup) -> None:
    assert s.upcall.answer([key(4, A, B)]) == [None]
    s.ports[4].bridge = "br0"
    s.bridge.set_ports((1, 2, 3, 4))
    assert s.upcall.answer([key(4, A, B)]) == [(NORMAL_IP_MASK, (1, 2, 3), "br0")]


def test_answers_pickle_as_plain_data(s: Setup) -> None:
    answers = s.upcall.answer([key(1, A, B), key(1, A, B, nw_src=5), key(4, A, B)])
    assert pickle.loads(pickle.dumps(answers)) == answers


def test_executor_cache_shares_per_output_list() -> None:
    cache = ExecutorCache()
    actions, execute = cache.get((2, 3))
    assert actions == [Output(2), Output(3)]
    assert cache.get((2, 3)) == (actions, execute)
    assert cache.get((2, 3))[1] is execute
    assert cache.get((3, 2))[1] is not execute
    assert cache.get(())[0] == []

    k1, k2 = key(1, A, B), key(1, C, B)
    f1 = cache.make_flow(k1, (NORMAL_IP_MASK, (2, 3), "br0"))
    f2 = cache.make_flow(k2, (NORMAL_IP_MASK, (2, 3), "br0"))
    assert f1.execute is f2.execute is execute
    assert f1.actions == (Output(2), Output(3))
    assert f1.bridge == "br0"
    assert f1.mask == NORMAL_IP_MASK
    assert f1.key == masked(k1, NORMAL_IP_MASK) and f1.full_key == k1


def test_upcalls_and_their_flows_are_logged_at_dbg_only(s: Setup) -> None:
    out = io.StringIO()
    vlog = Vlog("test", syslog_method="null", console=out)
    vlog.set_pattern(None, "%c|%p|%m")
    upcall = Upcall(s.ports, {"br0": s.bridge}, s.coverage, FlowLog(vlog, "ovs-netdev"))
    keys = [key(1, A, B, nw_src=1), key(1, A, B, nw_src=2), key(4, A, B)]
    upcall.answer(keys)
    assert out.getvalue() == ""
    vlog.set_levels_from_string("dpif_netdev:dbg")
    upcall.answer(keys)
    lines = out.getvalue().splitlines()
    # The covered key makes no upcall; the lost one does, and installs nothing.
    assert [line.split("|")[2].split(":")[0] for line in lines if "|" in line] == [
        "ovs-netdev",
        "flow_add",
        "ovs-netdev",
    ]
    assert lines[1] == packet_key_text(keys[0])
    assert lines[4] == packet_key_text(keys[2])
    assert lines[2].endswith(", actions:2,3")


# -- exact-match flows (upcall/disable-megaflows) ------------------------------------


def fields(mask: fk.FlowMask) -> set[str]:
    return {fk.FIELD_NAMES[i] for i, m in enumerate(mask) if m}


L2 = {"in_port", "recirc_id", "eth_dst", "eth_src", "eth_type", "vlan_tci"}
IPV4 = L2 | {"nw_src", "nw_dst", "nw_proto", "nw_tos", "nw_ttl", "nw_frag"}


def with_fields(base: FlowKey, **values: int) -> FlowKey:
    k = list(base)
    for name, value in values.items():
        k[fk.FIELD_NAMES.index(name)] = value
    return tuple(k)


def test_exact_mask_covers_the_packets_headers_only() -> None:
    icmp = key(1, A, B)
    mask = exact_mask(icmp)
    assert fields(mask) == IPV4 | {"tp_src", "tp_dst"}
    assert mask[fk.NW_SRC] == 0xFFFF_FFFF and mask[fk.TP_SRC] == 0xFF
    assert mask[fk.VLAN_TCI] == 0xFFFF  # PCP too: the very same tag only

    tcp = with_fields(icmp, nw_proto=proto.IPPROTO_TCP, tp_src=80, tp_dst=8080)
    assert fields(exact_mask(tcp)) == IPV4 | {"tp_src", "tp_dst", "tcp_flags"}
    assert exact_mask(tcp)[fk.TP_SRC] == 0xFFFF
    udp = with_fields(icmp, nw_proto=proto.IPPROTO_UDP)
    assert fields(exact_mask(udp)) == IPV4 | {"tp_src", "tp_dst"}
    later = with_fields(tcp, nw_frag=fk.FRAG_ANY | fk.FRAG_LATER)
    assert fields(exact_mask(later)) == IPV4  # no L4 header in a later fragment
    other = with_fields(icmp, nw_proto=47)
    assert fields(exact_mask(other)) == IPV4

    arp = with_fields(icmp, eth_type=proto.ETH_TYPE_ARP, nw_proto=1)
    assert fields(exact_mask(arp)) == L2 | {"nw_src", "nw_dst", "nw_proto", "arp_sha", "arp_tha"}
    assert exact_mask(arp)[fk.NW_DST] == 0xFFFF_FFFF

    v6 = with_fields(icmp, eth_type=proto.ETH_TYPE_IPV6, nw_proto=proto.IPPROTO_ICMPV6)
    assert fields(exact_mask(v6)) == IPV4 | {"ipv6_label", "tp_src", "tp_dst"}
    assert exact_mask(v6)[fk.NW_SRC] == fk.FULL_MASKS[fk.NW_SRC]
    nd = with_fields(v6, tp_src=proto.ND_NEIGHBOR_SOLICIT)
    assert fields(exact_mask(nd)) >= {"nd_target", "arp_sha", "arp_tha"}
    nd_code = with_fields(nd, tp_dst=1)  # not ND with a code other than 0
    assert "nd_target" not in fields(exact_mask(nd_code))

    raw = with_fields(icmp, eth_type=0x1234)
    assert fields(exact_mask(raw)) == L2


def test_exact_mask_prints_every_header_field() -> None:
    text = format_flow(key(1, A, B), exact_mask(key(1, A, B)))
    assert text == (
        "recirc_id(0),in_port(1),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
        "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=0,code=0)"
    )


def test_without_megaflows_answers_carry_exact_masks(s: Setup) -> None:
    s.upcall.megaflows = False
    first, same, other_ttl = key(1, A, B), key(1, A, B), with_fields(key(1, A, B), nw_ttl=9)
    answers = s.upcall.answer([first, same, other_ttl])
    assert answers[0] == (exact_mask(first), (2, 3), "br0")
    assert answers[1] == 0  # the same packet again: the flow just answered covers it
    assert answers[2] == (exact_mask(other_ttl), (2, 3), "br0")  # NORMAL's mask would cover it
    s.upcall.megaflows = True
    assert s.upcall.answer([other_ttl])[0] == (NORMAL_IP_MASK, (2, 3), "br0")
