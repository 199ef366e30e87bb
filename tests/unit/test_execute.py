"""Executing datapath actions: compiled executors, frame edits and checksums."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvswitchd.datapath.execute import compile_actions
from pyvswitchd.datapath.perf import PmdPerf
from pyvswitchd.datapath.pmd import Pmd, TxPort
from pyvswitchd.datapath.port import Port
from pyvswitchd.netdev.dummy import DummyPmdNetdev
from pyvswitchd.observe.coverage import Counter
from pyvswitchd.odp.actions import Action, Output, PopVlan, PushVlan, SetEth, SetIpv4
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.key_text import parse_odp_key
from pyvswitchd.odp.packet import Packet

MAC5, MAC7, MAC9 = 0x505400000005, 0x505400000007, 0x505400000009
ETH = "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07)"
u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)


def ip(text: str) -> int:
    return int.from_bytes(bytes(int(part) for part in text.split(".")), "big")


def frame(key: str) -> bytes:
    """The frame a flow key describes, checksums computed from scratch."""
    return compose_packet(parse_odp_key(key))


def ipv4_key(
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    proto: int = 17,
    tos: int = 0,
    ttl: int = 64,
    frag: str = "no",
    l4: str | None = None,
    eth: str = ETH,
) -> str:
    if l4 is None:
        l4 = {6: "tcp(src=80,dst=8080)", 17: "udp(src=1234,dst=5678)"}.get(
            proto, "icmp(type=8,code=0)"
        )
    return (
        f"{eth},eth_type(0x0800),ipv4(src={src},dst={dst},proto={proto},tos={tos},"
        f"ttl={ttl},frag={frag}),{l4}"
    )


class Recorder:
    """A stand-in PMD that records what it is asked to output."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, Packet]] = []

    def output(self, port_no: int, packet: Packet) -> None:
        self.calls.append((port_no, packet))

    def output_batch(self, port_no: int, packets: list[Packet]) -> None:
        self.calls.extend((port_no, p) for p in packets)

    def to(self, port: int) -> list[Packet]:
        return [packet for port_no, packet in self.calls if port_no == port]


def run(actions: Sequence[Action], batch: list[Packet]) -> tuple[int, Recorder]:
    sink = Recorder()
    return compile_actions(actions)(sink, batch), sink


def apply(actions: Sequence[Action], data: bytes) -> bytes:
    """The frame the single output at the end of ``actions`` sends."""
    n, sink = run([*actions, Output(9)], [Packet(data)])
    assert n == 1
    return sink.calls[0][1].data


def packet(data: bytes, mark: int | None = None, vnet: bytes | None = None) -> Packet:
    return Packet(data, mark, vnet)


# -- checksums recomputed from scratch --------------------------------------------------


def ones_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def assert_checksums_valid(data: bytes, l3: int = 14) -> None:
    """The IPv4 header, and a TCP/UDP segment if whole, verify (sum to 0xffff)."""
    ihl = (data[l3] & 0xF) * 4
    assert ones_sum(data[l3 : l3 + ihl]) == 0xFFFF, "IPv4 header checksum"
    proto = data[l3 + 9]
    total_len = struct.unpack_from("!H", data, l3 + 2)[0]
    segment = data[l3 + ihl : l3 + total_len]
    more_fragments = data[l3 + 6] & 0x20
    if proto not in (6, 17) or more_fragments or struct.unpack_from("!H", data, l3 + 6)[0]:
        return
    if proto == 17 and segment[6:8] == b"\0\0":
        return
    pseudo = data[l3 + 12 : l3 + 20] + struct.pack("!xBH", proto, len(segment))
    assert ones_sum(pseudo + segment) == 0xFFFF, "L4 checksum"


# -- compiled execution -----------------------------------------------------------------


def batch_of(n: int) -> list[Packet]:
    return [packet(frame(ipv4_key(src=f"10.0.0.{i + 1}")), mark=i) for i in range(n)]


def test_drop_and_only_modifications_output_nothing() -> None:
    batch = batch_of(4)
    cases: list[list[Action]] = [[], [SetEth(src=MAC9)], [PushVlan(1), PopVlan(), SetIpv4(ttl=1)]]
    for actions in cases:
        n, sink = run(actions, batch)
        assert n == 0 and sink.calls == []


def test_single_output_batch() -> None:
    batch = batch_of(32)
    n, sink = run([Output(2)], batch)
    assert n == 32
    assert [port for port, _ in sink.calls] == [2] * 32
    assert all(sent is sent_in for (_, sent), sent_in in zip(sink.calls, batch, strict=True))


def test_flood_sends_each_packet_to_every_port_in_order() -> None:
    batch = batch_of(5)
    n, sink = run([Output(3), Output(1), Output(100)], batch)
    assert n == 15
    for port in (3, 1, 100):
        # The very same packet objects: frames are immutable, sharing is safe.
        assert [id(p) for p in sink.to(port)] == [id(p) for p in batch]


def test_output_then_modify_then_output() -> None:
    original = frame(ipv4_key())
    batch = [packet(original, mark=7, vnet=bytes(10))]
    n, sink = run([Output(1), SetIpv4(src=ip("10.9.9.9"), ttl=5), Output(2)], batch)
    assert n == 2
    (first,), (second,) = sink.to(1), sink.to(2)
    # The first output is the received packet, untouched by the later set.
    assert first is batch[0] and first.data == original
    assert second is not first
    assert second.data == frame(ipv4_key(src="10.9.9.9", ttl=5))
    assert (second.mark, second.vnet) == (7, bytes(10))


def test_modifications_accumulate_between_outputs() -> None:
    batch = batch_of(3)
    actions: list[Action] = [
        SetEth(dst=MAC9),
        Output(1),
        PushVlan(10),
        Output(2),
        Output(3),
        SetIpv4(ttl=9),
        PopVlan(),
        Output(4),
        SetEth(src=MAC9),  # after the last output: nobody sees it
    ]
    n, sink = run(actions, batch)
    assert n == 3 * 4
    eth9 = "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:09)"
    vlan = "eth_type(0x8100),vlan(vid=10,pcp=0),encap({})"
    for i, received in enumerate(batch):
        src = f"10.0.0.{i + 1}"
        assert received.data == frame(ipv4_key(src=src)), "received packets are never modified"
        tagged = frame(f"{eth9},{vlan.format(ipv4_key(src=src, eth='')[1:])}")
        assert sink.to(1)[i].data == frame(ipv4_key(src=src, eth=eth9))
        assert sink.to(2)[i].data == tagged
        assert sink.to(3)[i] is sink.to(2)[i]
        assert sink.to(4)[i].data == frame(ipv4_key(src=src, ttl=9, eth=eth9))
        assert sink.to(4)[i].mark == i
    # Packets go out in batch order on every port.
    assert [p.data[26:30] for p in sink.to(4)] == [bytes([10, 0, 0, i + 1]) for i in range(3)]


def test_noop_modification_keeps_the_packet() -> None:
    untagged = batch_of(2)
    n, sink = run([PopVlan(), Output(1)], untagged)
    assert n == 2 and [p for _, p in sink.calls] == untagged
    n, sink = run([Output(2), PopVlan(), Output(1)], untagged)
    assert sink.to(1) == untagged


def test_received_packets_are_never_modified() -> None:
    cases: list[list[Action]] = [
        [SetIpv4(ttl=1), Output(1)],
        [Output(2), SetIpv4(ttl=1), Output(1)],
    ]
    for actions in cases:
        batch = batch_of(3)
        frames = [p.data for p in batch]
        _, sink = run(actions, batch)
        assert [p.data for p in batch] == frames
        assert all(p.data[22] == 1 and p not in batch for p in sink.to(1))


def test_compiled_once_runs_many_batches() -> None:
    compiled = compile_actions([SetIpv4(ttl=1), Output(1)])
    sink = Recorder()
    for n in (1, 32, 0, 7):
        assert compiled(sink, batch_of(n)) == n
    assert len(sink.calls) == 40
    assert all(p.data[22] == 1 for _, p in sink.calls)


def test_compiled_actions_on_a_real_pmd() -> None:
    @attrs.define
    class Settings:
        tx_flush_interval_us: int = 0
        perf_metrics: bool = False

    pmd = Pmd(
        0,
        0,
        Settings(),
        None,  # type: ignore[arg-type]  # no rx in this test
        PmdPerf(),
        sent_counter=Counter("netdev_sent"),
        received_counter=Counter("netdev_received"),
        drop_counter=Counter("datapath_drop_invalid_port"),
    )
    txports = {n: TxPort(Port(n, DummyPmdNetdev(f"p{n}"), "br0"), 0) for n in (1, 2)}
    pmd.tx_ports = txports
    batch = batch_of(4)
    assert compile_actions([Output(1), SetEth(src=MAC9), Output(2), Output(5)])(pmd, batch) == 12
    assert txports[1].batch == batch
    assert [p.data[6:12] for p in txports[2].batch] == [MAC9.to_bytes(6, "big")] * 4
    assert pmd.flush_output(force=True) == 8  # port 5 is unknown: the PMD dropped those


# -- frame edits ------------------------------------------------------------------------


def test_set_eth() -> None:
    data = frame(ipv4_key())
    eth95 = "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:05)"
    assert apply([SetEth(src=MAC9, dst=MAC5)], data) == frame(ipv4_key(eth=eth95))
    eth57 = "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:09)"
    assert apply([SetEth(dst=MAC9)], data) == frame(ipv4_key(eth=eth57))
    eth97 = "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:07)"
    assert apply([SetEth(src=MAC9)], data) == frame(ipv4_key(eth=eth97))


def test_vlan_push_pop() -> None:
    plain = frame(ipv4_key())
    inner = ipv4_key(eth="")[1:]
    tagged = frame(f"{ETH},eth_type(0x8100),vlan(vid=10,pcp=3),encap({inner})")
    assert apply([PushVlan(10 | 3 << 13)], plain) == tagged
    assert apply([PopVlan()], tagged) == plain
    assert apply([PushVlan(10 | 3 << 13), PopVlan()], plain) == plain
    # 802.1ad outer tag over an 802.1Q one; pop removes only the outermost.
    qinq = frame(
        f"{ETH},eth_type(0x88a8),vlan(vid=100,pcp=0),encap(eth_type(0x8100),"
        f"vlan(vid=10,pcp=3),encap({inner}))"
    )
    assert apply([PushVlan(100, tpid=0x88A8)], tagged) == qinq
    assert apply([PopVlan()], qinq) == tagged
    assert apply([PopVlan(), PopVlan()], qinq) == plain
    assert apply([PopVlan()], plain) == plain


@pytest.mark.parametrize("proto", [6, 17, 1])
def test_set_ipv4_fields(proto: int) -> None:
    data = frame(ipv4_key(proto=proto))
    cases = [
        (SetIpv4(src=ip("192.168.0.7")), ipv4_key(src="192.168.0.7", proto=proto)),
        (SetIpv4(dst=ip("255.255.255.255")), ipv4_key(dst="255.255.255.255", proto=proto)),
        (SetIpv4(ttl=63), ipv4_key(ttl=63, proto=proto)),
        (SetIpv4(tos=0xB8), ipv4_key(tos=0xB8, proto=proto)),
        (
            SetIpv4(src=0, dst=ip("1.2.3.4"), ttl=0, tos=0xFF),
            ipv4_key(src="0.0.0.0", dst="1.2.3.4", ttl=0, tos=0xFF, proto=proto),
        ),
    ]
    for action, expected_key in cases:
        result = apply([action], data)
        assert result == frame(expected_key), action
        assert_checksums_valid(result)


def test_ttl_and_tos_leave_the_l4_checksum_alone() -> None:
    data = frame(ipv4_key(proto=6))
    result = apply([SetIpv4(ttl=1, tos=4)], data)
    assert result[34:] == data[34:]
    assert result[14:34] != data[14:34]
    assert_checksums_valid(result)


def test_udp_without_checksum_keeps_none() -> None:
    data = bytearray(frame(ipv4_key(proto=17)))
    data[40:42] = b"\0\0"  # the sender computed no UDP checksum
    result = apply([SetIpv4(src=ip("172.16.0.1"), dst=ip("172.16.0.2"))], bytes(data))
    assert result[40:42] == b"\0\0"
    assert result[26:34] == bytes([172, 16, 0, 1, 172, 16, 0, 2])
    assert_checksums_valid(result)


def test_udp_checksum_that_sums_to_zero_is_sent_as_ffff() -> None:
    data = frame(ipv4_key(proto=17, src="10.0.0.1"))
    # Pick the new source so that the updated sum is all ones, i.e. checksum 0.
    old_csum = struct.unpack_from("!H", data, 40)[0]
    partial = (old_csum ^ 0xFFFF) + (0x0A00 ^ 0xFFFF) + (0x0001 ^ 0xFFFF)
    partial = ones_sum(partial.to_bytes(4, "big"))
    new_hi = (0xFFFF - partial) or 0xFFFF
    result = apply([SetIpv4(src=new_hi << 16)], data)
    assert result[40:42] == b"\xff\xff"
    assert_checksums_valid(result)
    assert result == frame(ipv4_key(proto=17, src=".".join(str(b) for b in result[26:30])))


def test_checksum_update_carrying_twice() -> None:
    # A header whose checksum is 0x00ff: raising its TTL by one makes the
    # update's first fold carry into a second.
    base = frame(ipv4_key(src="10.0.0.0"))[14:34]
    partial = ones_sum(base[:10] + b"\0\0" + base[12:])
    low = 0xFF00 - partial if partial <= 0xFF00 else 0xFF00 + 0xFFFF - partial
    src = f"10.0.{low >> 8}.{low & 0xFF}"
    data = frame(ipv4_key(src=src, ttl=64))
    assert data[24:26] == b"\x00\xff"
    assert apply([SetIpv4(ttl=65)], data) == frame(ipv4_key(src=src, ttl=65))


def test_set_ipv4_through_vlan_tag() -> None:
    inner = ipv4_key(eth="")[1:]
    data = frame(f"{ETH},eth_type(0x8100),vlan(vid=10,pcp=0),encap({inner})")
    result = apply([SetIpv4(dst=ip("10.1.1.1"), ttl=3)], data)
    expected_inner = ipv4_key(dst="10.1.1.1", ttl=3, eth="")[1:]
    assert result == frame(f"{ETH},eth_type(0x8100),vlan(vid=10,pcp=0),encap({expected_inner})")
    assert_checksums_valid(result, l3=18)


@pytest.mark.parametrize("proto", [6, 17])
def test_later_fragment_payload_is_not_an_l4_header(proto: int) -> None:
    def fragment(src: str) -> bytes:
        return compose_packet(parse_odp_key(ipv4_key(src=src, proto=proto, frag="later")), 80)

    result = apply([SetIpv4(src=ip("10.7.7.7"))], fragment("10.0.0.1"))
    assert result == fragment("10.7.7.7")
    assert_checksums_valid(result)


@pytest.mark.parametrize(
    "data",
    [
        frame(f"{ETH},eth_type(0x0806),arp(sip=10.0.0.1,tip=10.0.0.2,op=1)"),
        frame(ipv4_key())[:30],  # IPv4 header cut short
        frame(ipv4_key())[:12],
    ],
)
def test_set_ipv4_ignores_frames_without_ipv4(data: bytes) -> None:
    sent = Packet(data)
    _, sink = run([SetIpv4(src=1, ttl=1), Output(1)], [sent])
    assert sink.calls == [(1, sent)]


@given(
    old=st.tuples(u32, u32, u8, u8),
    new=st.tuples(st.none() | u32, st.none() | u32, st.none() | u8, st.none() | u8),
    proto=st.sampled_from([6, 17, 1]),
    frag=st.sampled_from(["no", "first", "later"]),
)
def test_set_ipv4_matches_recomputed_checksums(
    old: tuple[int, int, int, int],
    new: tuple[int | None, int | None, int | None, int | None],
    proto: int,
    frag: str,
) -> None:
    if new == (None,) * 4:
        return

    def dotted(addr: int) -> str:
        return ".".join(str(b) for b in addr.to_bytes(4, "big"))

    def key(src: int, dst: int, tos: int, ttl: int) -> str:
        return ipv4_key(dotted(src), dotted(dst), proto, tos, ttl, frag)

    src, dst, tos, ttl = new
    result = apply([SetIpv4(src=src, dst=dst, ttl=ttl, tos=tos)], frame(key(*old)))
    expected = tuple(o if n is None else n for o, n in zip(old, new, strict=True))
    assert result == frame(key(*expected))
    assert_checksums_valid(result)
