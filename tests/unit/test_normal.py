"""Tests for pyvswitchd.datapath.normal (the bridge's NORMAL decision)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pyvswitchd.datapath.mac_learning import MacLearning
from pyvswitchd.datapath.normal import NormalBridge
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Level, Vlog
from pyvswitchd.odp import flow_key as fk
from pyvswitchd.odp import protocols as proto
from pyvswitchd.odp.flow_key import FlowKey, FlowMask, masked
from pyvswitchd.odp.key_text import parse_odp_key

# ovs-vswitchd 3.1's dpctl/dump-flows replies (see tests/golden/README.md).
CAPTURES = Path(__file__).resolve().parents[1] / "golden" / "dump-flows"

A = 0x5054_0000_0005
B = 0x5054_0000_0007
C = 0x5054_0000_0009
BROADCAST = 0xFFFF_FFFF_FFFF
MULTICAST = 0x0100_5E00_0001
LOCAL = 100
#: The reference sandbox's bridge: p0=1, p2=2, p1=3, br0=100 (dpctl/show).
PORTS = (1, 2, 3, LOCAL)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Setup:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.coverage = Coverage(self.clock)
        self.console = io.StringIO()
        self.vlog = Vlog("test", clock=self.clock, console=self.console, syslog_method="null")
        self.ml = MacLearning(self.clock, self.coverage)
        self.bridge = NormalBridge("br0", self.ml, self.vlog.module("upcall"), self.coverage)
        self.bridge.set_ports(PORTS)


@pytest.fixture
def s() -> Setup:
    return Setup()


def key(
    in_port: int,
    src: int,
    dst: int,
    *,
    eth_type: int = proto.ETH_TYPE_IP,
    vlan_tci: int = 0,
    nw_proto: int = proto.IPPROTO_ICMP,
    nw_src: int = 0x0A00_0001,
    nw_dst: int = 0x0A00_0002,
    frag: int = 0,
) -> FlowKey:
    k = [0] * fk.N_FIELDS
    k[fk.IN_PORT] = in_port
    k[fk.ETH_SRC] = src
    k[fk.ETH_DST] = dst
    k[fk.ETH_TYPE] = eth_type
    k[fk.VLAN_TCI] = vlan_tci
    k[fk.NW_PROTO] = nw_proto
    k[fk.NW_SRC] = nw_src
    k[fk.NW_DST] = nw_dst
    k[fk.NW_TTL] = 64
    k[fk.NW_FRAG] = frag
    k[fk.TP_SRC] = 8
    return tuple(k)


def mask_of(**fields: int) -> FlowMask:
    m = [0] * fk.N_FIELDS
    for name, bits in fields.items():
        m[fk.FIELD_NAMES.index(name)] = bits
    return tuple(m)


FULL = dict(zip(fk.FIELD_NAMES, fk.FULL_MASKS, strict=True))
NORMAL_FIELDS = {
    "in_port": FULL["in_port"],
    "recirc_id": FULL["recirc_id"],
    "eth_src": FULL["eth_src"],
    "eth_dst": FULL["eth_dst"],
    "eth_type": FULL["eth_type"],
    "vlan_tci": 0x1FFF,
}


# -- forwarding ----------------------------------------------------------------------


def test_unknown_destination_floods_to_every_other_port(s: Setup) -> None:
    d = s.bridge.handle(key(3, B, A))
    assert d.outputs == (1, 2, LOCAL)
    assert d.learned is True
    assert d.deps == {(0, B), (0, A)}
    assert s.ml.lookup(0, B) == 3


def test_flood_contents_match_the_reference_capture(s: Setup) -> None:
    # In the capture both NORMAL flows flood: in_port 3 to an unknown
    # unicast, in_port 2 to broadcast.  OVS's order is its bundle list
    # order; ours is ascending, so compare contents.
    text = (CAPTURES / "dpctl_dump-flows.after-traffic.out").read_text()
    expected = {}
    for line in text.splitlines():
        if "eth(" in line:
            in_port = int(line.split("in_port(")[1].split(")")[0])
            expected[in_port] = sorted(int(p) for p in line.split("actions:")[1].split(","))
    assert expected == {2: [1, 3, LOCAL], 3: [1, 2, LOCAL]}
    assert list(s.bridge.handle(key(3, B, A)).outputs) == expected[3]
    assert list(s.bridge.handle(key(2, C, BROADCAST)).outputs) == expected[2]


def test_known_destination_is_unicast(s: Setup) -> None:
    s.bridge.handle(key(1, A, B))
    d = s.bridge.handle(key(3, B, A))
    assert d.outputs == (1,)
    assert d.deps == {(0, A), (0, B)}


def test_known_destination_on_the_input_port_is_dropped(s: Setup) -> None:
    s.bridge.handle(key(2, A, C))
    d = s.bridge.handle(key(2, B, A))
    assert d.outputs == ()
    assert d.learned is True
    assert d.deps == {(0, A), (0, B)}


def test_broadcast_and_multicast_flood_without_a_lookup(s: Setup) -> None:
    s.ml.learn(0, MULTICAST, 1)  # refused, so a lookup could never hit
    for dst in (BROADCAST, MULTICAST):
        d = s.bridge.handle(key(LOCAL, A, dst))
        assert d.outputs == (1, 2, 3)
        assert d.deps == {(0, A)}


def test_multicast_source_is_forwarded_but_not_learned(s: Setup) -> None:
    s.ml.learn(0, B, 2)
    d = s.bridge.handle(key(1, MULTICAST, B))
    assert d.outputs == (2,)
    assert d.learned is False
    assert d.deps == {(0, B)}
    assert s.ml.lookup(0, MULTICAST) is None
    assert len(s.ml) == 1


def test_relearning_an_unchanged_source_is_not_a_change(s: Setup) -> None:
    assert s.bridge.handle(key(1, A, B)).learned is True
    assert s.bridge.handle(key(1, A, C)).learned is False
    assert s.bridge.handle(key(2, A, C)).learned is True  # moved


def test_vlans_are_learned_and_flooded_separately(s: Setup) -> None:
    s.bridge.handle(key(1, A, BROADCAST, vlan_tci=proto.VLAN_CFI | 10))
    # Same MAC looked up in VLAN 20 and untagged: unknown there.
    assert s.bridge.handle(key(2, B, A, vlan_tci=proto.VLAN_CFI | 20)).outputs == (1, 3, LOCAL)
    assert s.bridge.handle(key(2, B, A)).outputs == (1, 3, LOCAL)
    # In VLAN 10 it is known; the PCP bits do not matter.
    d = s.bridge.handle(key(2, B, A, vlan_tci=(5 << proto.VLAN_PCP_SHIFT) | proto.VLAN_CFI | 10))
    assert d.outputs == (1,)
    assert d.deps == {(10, A), (10, B)}
    assert s.ml.lookup(10, B) == 2 and s.ml.lookup(20, B) == 2 and s.ml.lookup(0, B) == 2


@pytest.mark.parametrize("last", [0x0, 0x1, 0x2, 0xE, 0xF])
def test_reserved_destinations_are_dropped_without_learning(s: Setup, last: int) -> None:
    d = s.bridge.handle(key(1, A, 0x0180_C200_0000 | last, eth_type=0x88CC))
    assert d.outputs == ()
    assert d.learned is False
    assert d.deps == frozenset()
    assert len(s.ml) == 0


def test_other_reserved_and_nearby_destinations(s: Setup) -> None:
    assert s.bridge.handle(key(1, A, 0x0100_0CCC_CCCC)).outputs == ()  # Cisco CDP/VTP
    assert s.bridge.handle(key(1, A, 0x00E0_2B00_0000)).outputs == ()  # Extreme EDP
    # Just past the IEEE block: ordinary multicast, flooded.
    assert s.bridge.handle(key(1, A, 0x0180_C200_0010)).outputs == (2, 3, LOCAL)


def test_input_port_not_on_the_bridge_is_dropped(s: Setup) -> None:
    d = s.bridge.handle(key(0, A, BROADCAST))
    assert d.outputs == ()
    assert d.learned is False
    assert len(s.ml) == 0


def test_set_ports_updates_flooding_and_forgets_removed_ports(s: Setup) -> None:
    s.bridge.handle(key(2, A, BROADCAST))
    s.bridge.handle(key(3, B, BROADCAST))
    generation = s.ml.generation
    s.bridge.set_ports([1, 3, LOCAL, 7])
    assert s.bridge.ports == {1, 3, LOCAL, 7}
    assert s.ml.lookup(0, A) is None
    assert s.ml.lookup(0, B) == 3
    assert s.ml.generation > generation
    assert s.bridge.handle(key(1, C, A)).outputs == (3, 7, LOCAL)


def test_decisions_count_xlate_actions_and_learning_is_logged_at_dbg(s: Setup) -> None:
    s.bridge.handle(key(1, A, B))
    s.bridge.revalidate(key(1, A, B), fk.EMPTY_MASK, ())
    counter = s.coverage.get("xlate_actions")
    assert counter is not None and counter.total == 2
    assert s.console.getvalue() == ""
    s.vlog.set_levels(Level.DBG)
    s.bridge.handle(key(1, C, B))
    assert "learned that 50:54:00:00:00:09 is on port 1 in VLAN 0" in s.console.getvalue()


# -- masks ------------------------------------------------------------------------------


def test_ip_mask_matches_the_reference_capture(s: Setup) -> None:
    line = next(
        ln
        for ln in (CAPTURES / "dpctl_dump-flows.after-traffic.out").read_text().splitlines()
        if "in_port(3)" in ln
    )
    attrs_ = parse_odp_key(line.split(", packets:")[0])
    # Datapath attribute field -> (flow key field, its full mask here).
    as_key = {
        ("recirc_id", "value"): "recirc_id",
        ("in_port", "value"): "in_port",
        ("eth", "src"): "eth_src",
        ("eth", "dst"): "eth_dst",
        ("eth_type", "value"): "eth_type",
        ("ipv4", "frag"): "nw_frag",
    }
    printed = {}
    values = {}
    for attr in attrs_:
        if attr.name == "packet_type":  # not part of our flow key
            continue
        for field, value in attr.fields.items():
            name = as_key[(attr.name, field)]
            assert attr.masks[field] == (1 << attr.masks[field].bit_length()) - 1  # exact
            printed[name] = FULL[name]
            values[name] = value
    d = s.bridge.handle(key(values["in_port"], values["eth_src"], values["eth_dst"]))
    # Untagged: OVS matches "no VLAN" (vid and CFI 0) but prints nothing for it.
    assert d.mask == mask_of(**printed, vlan_tci=0x1FFF)
    assert d.outputs == (1, 2, LOCAL)


def test_masks_by_packet_kind(s: Setup) -> None:
    ip = mask_of(**NORMAL_FIELDS, nw_frag=fk.FRAG_ANY | fk.FRAG_LATER)
    non_ip = mask_of(**NORMAL_FIELDS)
    assert s.bridge.handle(key(1, A, B)).mask == ip
    assert s.bridge.handle(key(1, A, B, eth_type=proto.ETH_TYPE_IPV6)).mask == ip
    assert s.bridge.handle(key(1, A, B, frag=fk.FRAG_ANY)).mask == ip
    assert s.bridge.handle(key(1, A, B, vlan_tci=proto.VLAN_CFI | 7)).mask == ip
    assert s.bridge.handle(key(1, A, B, eth_type=0x88B5)).mask == non_ip
    # Drops carry the same mask: OVS unwildcards before deciding.
    assert s.bridge.handle(key(9, A, B)).mask == ip
    assert s.bridge.handle(key(1, A, 0x0180_C200_0000, eth_type=0x88B5)).mask == non_ip


def test_arp_masks_follow_ovs_gratuitous_arp_check(s: Setup) -> None:
    arp = proto.ETH_TYPE_ARP
    unicast = s.bridge.handle(key(1, A, B, eth_type=arp, nw_proto=1))
    assert unicast.mask == mask_of(**NORMAL_FIELDS)
    request = s.bridge.handle(key(1, A, BROADCAST, eth_type=arp, nw_proto=1))
    assert request.mask == mask_of(
        **NORMAL_FIELDS, nw_proto=0xFF, nw_src=0xFFFF_FFFF, nw_dst=0xFFFF_FFFF
    )
    reply = s.bridge.handle(key(1, A, BROADCAST, eth_type=arp, nw_proto=2))
    assert reply.mask == mask_of(**NORMAL_FIELDS, nw_proto=0xFF)


def test_decision_only_reads_masked_fields(s: Setup) -> None:
    s.bridge.handle(key(2, B, A))
    for k in (
        key(1, A, B),
        key(1, A, C),
        key(2, A, B),
        key(1, A, BROADCAST, eth_type=proto.ETH_TYPE_ARP, nw_proto=1),
        key(1, A, B, vlan_tci=proto.VLAN_CFI | 3),
    ):
        d = s.bridge.handle(k)
        assert s.bridge.revalidate(masked(k, d.mask), d.mask, d.outputs) is None


# -- revalidation ----------------------------------------------------------------------


def test_revalidation_unknown_to_learned_to_moved_to_expired(s: Setup) -> None:
    flow = key(1, A, B)
    d = s.bridge.handle(flow)
    assert d.outputs == (2, 3, LOCAL)
    assert (0, B) in d.deps
    assert s.bridge.revalidate(flow, d.mask, d.outputs) is None

    # B shows up on port 2: the flooding flow becomes unicast.
    s.clock.now += 10
    learned = s.bridge.handle(key(2, B, BROADCAST))
    assert learned.learned and (0, B) in learned.deps
    new = s.bridge.revalidate(flow, d.mask, d.outputs)
    assert new is not None
    assert new.outputs == (2,)
    assert new.mask == d.mask
    assert new.learned is False
    assert new.deps == d.deps
    outputs = new.outputs

    # B moves to port 3.
    s.bridge.handle(key(3, B, BROADCAST))
    new = s.bridge.revalidate(flow, d.mask, outputs)
    assert new is not None and new.outputs == (3,)
    outputs = new.outputs

    # B moves to port 1, the flow's own in_port: drop.
    s.bridge.handle(key(1, B, BROADCAST))
    new = s.bridge.revalidate(flow, d.mask, outputs)
    assert new is not None and new.outputs == ()
    s.bridge.handle(key(3, B, BROADCAST))
    new = s.bridge.revalidate(flow, d.mask, ())
    assert new is not None and new.outputs == (3,)
    outputs = new.outputs

    # B ages out (A, learned 10 s earlier, goes first): flood again.
    s.clock.now += 290
    assert [e.mac for e in s.ml.expire()] == [A]
    assert s.bridge.revalidate(flow, d.mask, outputs) is None
    s.clock.now += 10
    assert [e.mac for e in s.ml.expire()] == [B]
    new = s.bridge.revalidate(flow, d.mask, outputs)
    assert new is not None and new.outputs == (2, 3, LOCAL)


def test_revalidation_never_learns(s: Setup) -> None:
    flow = key(1, A, BROADCAST)
    generation = s.ml.generation
    d = s.bridge.revalidate(flow, fk.EMPTY_MASK, ())
    assert d is not None and d.outputs == (2, 3, LOCAL) and d.learned is False
    assert s.ml.lookup(0, A) is None
    assert s.ml.generation == generation


def test_revalidation_reports_a_stale_mask(s: Setup) -> None:
    flow = key(1, A, BROADCAST)
    d = s.bridge.handle(flow)
    new = s.bridge.revalidate(flow, fk.FULL_MASKS, d.outputs)
    assert new is not None and new.mask == d.mask


def test_relearn_keeps_an_active_source_alive(s: Setup) -> None:
    flow = key(1, A, BROADCAST)
    s.bridge.handle(flow)
    s.clock.now += 200
    assert s.bridge.relearn(flow) is False  # refreshed, not changed
    s.clock.now += 200
    assert s.ml.expire() == []
    assert s.ml.lookup(0, A) == 1
    assert s.bridge.relearn(key(2, A, BROADCAST)) is True  # moved
    assert s.bridge.relearn(key(9, B, BROADCAST)) is False  # not a bridge port
    assert s.bridge.relearn(key(1, B, 0x0180_C200_0000)) is False  # reserved dst
    assert s.ml.lookup(0, B) is None
