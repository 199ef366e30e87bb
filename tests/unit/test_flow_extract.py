"""Flow extraction: parse_key (OVS's miniflow_extract).

Frames come from two independent sources: :func:`compose_packet` (OVS's
flow_compose, built from flow text) for breadth, and hand-packed bytes for
the corner cases compose cannot produce (IPv4 options, IPv6 extension
chains, bad lengths, ND option quirks).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvswitchd.datapath.emc import fast_signature
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.flow_extract import parse_key
from pyvswitchd.odp.flow_key import (
    ETH_TYPE,
    FIELD_BITS,
    FIELD_NAMES,
    N_FIELDS,
    VLAN_TCI,
    FlowKey,
)
from pyvswitchd.odp.flow_text import parse_match
from pyvswitchd.odp.key_text import parse_odp_key
from pyvswitchd.odp.protocols import ETH_TYPE_NONE, VLAN_CFI

MAC_A, MAC_B = "50:54:00:00:00:05", "50:54:00:00:00:07"
ETH = f"eth(src={MAC_A},dst={MAC_B})"
A, B = 0x505400000005, 0x505400000007


def key(**fields: int) -> FlowKey:
    """A flow key with the named fields set (in_port defaults to 1)."""
    values = dict.fromkeys(FIELD_NAMES, 0)
    values["in_port"] = 1
    for name, value in fields.items():
        assert name in values, name
        values[name] = value
    return tuple(values[name] for name in FIELD_NAMES)


def l2(eth_type: int, **fields: int) -> FlowKey:
    return key(eth_dst=B, eth_src=A, eth_type=eth_type, **fields)


def frame(text: str, length: int | None = None) -> bytes:
    return compose_packet(parse_odp_key(text), length)


def eth_header(eth_type: int) -> bytes:
    return bytes.fromhex("505400000007505400000005") + struct.pack("!H", eth_type)


def ipv4(proto: int, l4: bytes, *, options: bytes = b"", frag: int = 0, tot: int = -1) -> bytes:
    """An IPv4 packet (checksum left 0: the parser does not check it)."""
    ihl = 5 + len(options) // 4
    length = 20 + len(options) + len(l4) if tot < 0 else tot
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0x10,
            length,
            7,
            frag,
            64,
            proto,
            0,
            bytes([10, 0, 0, 1]),
            bytes([10, 0, 0, 2]),
        )
        + options
        + l4
    )


def ipv6(next_header: int, payload: bytes, *, plen: int = -1) -> bytes:
    src, dst = (1).to_bytes(16, "big"), (2).to_bytes(16, "big")
    flow = 6 << 28 | 0x20 << 20 | 0x12345
    size = len(payload) if plen < 0 else plen
    return struct.pack("!IHBB16s16s", flow, size, next_header, 255, src, dst) + payload


UDP_HDR = struct.pack("!HHHH", 1234, 5678, 8, 0)
TCP_HDR = struct.pack("!HHIIHHHH", 80, 8080, 1, 2, 5 << 12 | 0x012, 100, 0, 0)


# -- protocols -------------------------------------------------------------------

# Flow text whose every field is given, so the key it describes is the key of
# the frame compose builds from it.
FULL_TEXTS = [
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0x10,ttl=64,frag=no),"
    "udp(src=1234,dst=5678)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=63,frag=no),"
    "tcp(src=80,dst=8080),tcp_flags(syn|ack)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=63,frag=no),"
    "tcp(src=80,dst=8080),tcp_flags(fin|syn|rst|psh|ack|urg|ece|cwr|ns)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),"
    "icmp(type=8,code=0)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),"
    "icmp(type=3,code=1)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=132,tos=0,ttl=64,frag=no),"
    "sctp(src=9,dst=10)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=first),"
    "udp(src=1,dst=2)",
    f"{ETH},eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=later)",
    f"{ETH},eth_type(0x8100),vlan(vid=10,pcp=5),encap(eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2))",
    f"{ETH},eth_type(0x8100),vlan(vid=4095,pcp=7),encap(eth_type(0x0806),"
    f"arp(sip=10.0.0.1,tip=10.0.0.2,op=2,sha={MAC_A},tha={MAC_B}))",
    f"{ETH},eth_type(0x86dd),ipv6(src=2001:db8::1,dst=fe80::2,label=0xabcde,proto=6,"
    "tclass=0xb8,hlimit=1,frag=no),tcp(src=22,dst=65535),tcp_flags(ack)",
    f"{ETH},eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=17,tclass=0,hlimit=64,"
    "frag=first),udp(src=53,dst=53)",
    f"{ETH},eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=58,tclass=0,hlimit=255,"
    "frag=no),icmpv6(type=128,code=0)",
    f"{ETH},eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=58,tclass=0,hlimit=255,"
    f"frag=no),icmpv6(type=135,code=0),nd(target=fe80::2,sll={MAC_A},tll=00:00:00:00:00:00)",
    f"{ETH},eth_type(0x86dd),ipv6(src=::1,dst=::2,label=0,proto=58,tclass=0,hlimit=255,"
    f"frag=no),icmpv6(type=136,code=0),nd(target=fe80::2,sll={MAC_A},tll={MAC_B})",
    f"{ETH},eth_type(0x0806),arp(sip=10.0.0.1,tip=10.0.0.2,op=1,sha={MAC_A},tha=00:00:00:00:00:00)",
    f"{ETH},eth_type(0x8035),arp(sip=10.0.0.1,tip=10.0.0.2,op=2,sha={MAC_A},tha={MAC_B})",
    f"{ETH},eth_type(0x1234)",
]


@pytest.mark.parametrize("text", FULL_TEXTS)
def test_frame_parses_to_the_key_its_text_describes(text: str) -> None:
    expected = parse_match(f"in_port(7),{text}").unmasked_key
    assert parse_key(frame(text), 7) == expected


def test_udp_fields() -> None:
    data = frame(FULL_TEXTS[0], length=64)
    assert len(data) == 64
    assert parse_key(data, 3) == l2(
        0x0800, in_port=3, nw_src=0x0A000001, nw_dst=0x0A000002, nw_proto=17, nw_tos=0x10,
        nw_ttl=64, tp_src=1234, tp_dst=5678,
    )  # fmt: skip


def test_tcp_flags_are_12_bits_and_reserved_bits_count() -> None:
    tcp = struct.pack("!HHIIHHHH", 80, 8080, 1, 2, 5 << 12 | 0xFFF, 100, 0, 0)
    data = eth_header(0x0800) + ipv4(6, tcp)
    assert parse_key(data, 1)[FIELD_NAMES.index("tcp_flags")] == 0xFFF


def test_ipv4_options_are_skipped() -> None:
    for words in range(1, 11):
        data = eth_header(0x0800) + ipv4(17, UDP_HDR, options=bytes(4 * words))
        k = parse_key(data, 1)
        assert k is not None
        assert (k[13], k[14]) == (1234, 5678), words


@pytest.mark.parametrize(
    ("flags_offset", "nw_frag", "has_l4"),
    [
        (0x0000, 0, True),
        (0x4000, 0, True),  # DF alone is not a fragment
        (0x2000, 1, True),  # MF, offset 0: first fragment
        (0x2001, 3, False),  # later fragments have no L4
        (0x0001, 3, False),  # the last fragment (no MF) is a later one too
        (0x1FFF, 3, False),
    ],
)
def test_ipv4_fragments(flags_offset: int, nw_frag: int, has_l4: bool) -> None:
    data = eth_header(0x0800) + ipv4(17, UDP_HDR, frag=flags_offset)
    assert parse_key(data, 1) == l2(
        0x0800, nw_src=0x0A000001, nw_dst=0x0A000002, nw_proto=17, nw_tos=0x10, nw_ttl=64,
        nw_frag=nw_frag, tp_src=1234 if has_l4 else 0, tp_dst=5678 if has_l4 else 0,
    )  # fmt: skip


def test_ipv4_l4_is_read_within_the_total_length_not_the_padding() -> None:
    # The IP packet ends after 4 bytes of UDP; the frame goes on with padding.
    data = eth_header(0x0800) + ipv4(17, UDP_HDR[:4], tot=24) + UDP_HDR[4:] + bytes(20)
    assert parse_key(data, 1) == l2(
        0x0800, nw_src=0x0A000001, nw_dst=0x0A000002, nw_proto=17, nw_tos=0x10, nw_ttl=64
    )


@pytest.mark.parametrize(
    "data",
    [
        eth_header(0x0800) + ipv4(17, UDP_HDR)[:19],  # header cut short
        eth_header(0x0800) + b"\x44" + ipv4(17, UDP_HDR)[1:],  # IHL 4
        eth_header(0x0800) + b"\x4f" + ipv4(17, UDP_HDR)[1:],  # IHL 15 > total length
        eth_header(0x0800) + ipv4(17, UDP_HDR, tot=29),  # total length beyond the frame
        eth_header(0x0800) + ipv4(17, UDP_HDR, tot=19),  # total length below the header
        eth_header(0x0800) + ipv4(17, UDP_HDR) + bytes(0x10000),  # 64 KiB of padding
    ],
)
def test_invalid_ipv4_header_leaves_l2_fields_only(data: bytes) -> None:
    assert parse_key(data, 1) == l2(0x0800)


def test_ipv4_version_is_not_checked() -> None:
    data = eth_header(0x0800) + b"\x65" + ipv4(17, UDP_HDR)[1:]
    assert parse_key(data, 1) == parse_key(eth_header(0x0800) + ipv4(17, UDP_HDR), 1)


def test_igmp_type_and_code_are_kept() -> None:
    data = eth_header(0x0800) + ipv4(2, bytes([0x11, 0x64]) + bytes(6))
    k = parse_key(data, 1)
    assert k is not None and (k[13], k[14]) == (0x11, 0x64)


def test_vlan_tag_and_tci_cfi_mark() -> None:
    data = frame(FULL_TEXTS[8])
    k = parse_key(data, 1)
    assert k is not None
    assert k[VLAN_TCI] == 5 << 13 | VLAN_CFI | 10 and k[ETH_TYPE] == 0x0800
    # On the wire the CFI bit is 0; a set one changes nothing.
    wire = bytearray(data)
    wire[14] |= 0x10
    assert parse_key(bytes(wire), 1) == k


def test_second_tag_and_8021ad_are_not_parsed() -> None:
    inner = eth_header(0x0800)[12:] + ipv4(17, UDP_HDR)
    qinq = eth_header(0x8100) + b"\x00\x0a" + b"\x81\x00\x00\x14" + inner
    assert parse_key(qinq, 1) == l2(0x8100, vlan_tci=VLAN_CFI | 10)
    ad = eth_header(0x88A8) + b"\x00\x0a" + inner
    assert parse_key(ad, 1) == l2(0x88A8)


def test_short_vlan_tag_leaves_the_tpid_as_ethertype() -> None:
    data = eth_header(0x8100) + b"\x00\x0a\x08"  # 17 bytes: tag without a whole next type
    assert parse_key(data, 1) == l2(0x8100)
    assert parse_key(data + b"\x00", 1) == l2(0x0800, vlan_tci=VLAN_CFI | 10)


def test_8023_frames() -> None:
    llc = eth_header(46) + b"\x42\x42\x03" + bytes(43)  # STP-style LLC, no SNAP
    assert parse_key(llc, 1) == l2(ETH_TYPE_NONE)
    snap = eth_header(60) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ipv4(17, UDP_HDR)
    k = parse_key(snap, 1)
    assert k is not None and k[ETH_TYPE] == 0x0800 and (k[13], k[14]) == (1234, 5678)
    snap_small = eth_header(60) + b"\xaa\xaa\x03\x00\x00\x00\x05\xdc" + bytes(40)
    assert parse_key(snap_small, 1) == l2(ETH_TYPE_NONE)
    snap_short = eth_header(60) + b"\xaa\xaa\x03\x00\x00\x00\x08"
    assert parse_key(snap_short, 1) == l2(ETH_TYPE_NONE)
    snap_vlan = eth_header(0x8100) + b"\x00\x05" + b"\x00\x3c" + b"\xaa\xaa\x03\x00\x00\x00\x08\x06"
    assert parse_key(snap_vlan, 1) == l2(0x0806, vlan_tci=VLAN_CFI | 5)


# IPv6 extension headers: (next header, body) with the body's own next header first.
def hop_by_hop(nxt: int) -> bytes:
    return bytes([nxt, 0]) + bytes(6)


def routing(nxt: int) -> bytes:
    return bytes([nxt, 1]) + bytes(14)  # 16 bytes


def authentication(nxt: int) -> bytes:
    return bytes([nxt, 2]) + bytes(14)  # (2 + 2) * 4 = 16 bytes


def fragment(nxt: int, offlg: int) -> bytes:
    return struct.pack("!BxHI", nxt, offlg, 0x1234)


def test_ipv6_extension_chain_is_walked() -> None:
    payload = hop_by_hop(43) + routing(51) + authentication(60) + hop_by_hop(17) + UDP_HDR
    k = parse_key(eth_header(0x86DD) + ipv6(0, payload), 1)
    assert k == l2(
        0x86DD, nw_src=1, nw_dst=2, nw_proto=17, nw_tos=0x20, nw_ttl=255, ipv6_label=0x12345,
        tp_src=1234, tp_dst=5678,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("offlg", "nw_frag", "nw_proto", "has_l4"),
    [
        (0x0000, 0, 17, True),  # atomic fragment: not a fragment
        (0x0001, 1, 17, True),  # M set, offset 0: first
        (0x0006, 1, 17, True),  # reserved bits alone still mark a fragment (OVS)
        (0x0008, 3, 44, False),  # offset 1: later, proto stays IPPROTO_FRAGMENT
        (0xFFF9, 3, 44, False),
    ],
)
def test_ipv6_fragments(offlg: int, nw_frag: int, nw_proto: int, has_l4: bool) -> None:
    k = parse_key(eth_header(0x86DD) + ipv6(44, fragment(17, offlg) + UDP_HDR), 1)
    assert k == l2(
        0x86DD, nw_src=1, nw_dst=2, nw_proto=nw_proto, nw_tos=0x20, nw_ttl=255,
        ipv6_label=0x12345, nw_frag=nw_frag, tp_src=1234 if has_l4 else 0,
        tp_dst=5678 if has_l4 else 0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("next_header", "payload"),
    [
        (0, hop_by_hop(17)[:7]),  # fewer than 8 bytes left
        (43, routing(17)[:12]),  # longer than the payload
        (51, authentication(17)[:15]),
        (0, hop_by_hop(44) + fragment(17, 1)[:7]),
    ],
)
def test_bad_ipv6_extension_header_keeps_the_addresses_only(
    next_header: int, payload: bytes
) -> None:
    k = parse_key(eth_header(0x86DD) + ipv6(next_header, payload), 1)
    assert k == l2(0x86DD, nw_src=1, nw_dst=2)


@pytest.mark.parametrize(
    "data",
    [
        eth_header(0x86DD) + ipv6(17, UDP_HDR)[:39],
        eth_header(0x86DD) + ipv6(17, UDP_HDR, plen=9),
        eth_header(0x86DD) + ipv6(17, UDP_HDR) + bytes(0x10000),
    ],
)
def test_invalid_ipv6_header_leaves_l2_fields_only(data: bytes) -> None:
    assert parse_key(data, 1) == l2(0x86DD)


def nd_body(icmp_type: int, options: bytes, code: int = 0) -> bytes:
    return bytes([icmp_type, code]) + bytes(6) + (0xFE80 << 112 | 2).to_bytes(16, "big") + options


def opt(kind: int, mac: int, units: int = 1) -> bytes:
    return bytes([kind, units]) + mac.to_bytes(6, "big") + bytes(8 * units - 8)


@pytest.mark.parametrize(
    ("options", "sha", "tha", "target"),
    [
        (b"", 0, 0, True),
        (opt(1, A), A, 0, True),
        (opt(2, B) + opt(1, A), A, B, True),
        (opt(3, 7, units=2) + opt(1, A), A, 0, True),  # unknown options are skipped
        (opt(1, A, units=2), 0, 0, True),  # an SLL must be 8 bytes to count
        (opt(1, A) + opt(1, B), 0, 0, False),  # repeated: the whole ND body is void
        (opt(1, 0) + opt(1, B), B, 0, True),  # ... unless the first one was zero
        (opt(1, A) + bytes([2, 0]) + bytes(6) + opt(2, B), A, 0, True),  # zero length stops
        (opt(1, A) + opt(2, B)[:7], A, 0, True),  # a short tail is ignored
    ],
)
def test_neighbor_discovery_options(options: bytes, sha: int, tha: int, target: bool) -> None:
    k = parse_key(eth_header(0x86DD) + ipv6(58, nd_body(135, options)), 1)
    assert k == l2(
        0x86DD, nw_src=1, nw_dst=2, nw_proto=58, nw_tos=0x20, nw_ttl=255, ipv6_label=0x12345,
        tp_src=135, arp_sha=sha, arp_tha=tha, nd_target=(0xFE80 << 112 | 2) if target else 0,
    )  # fmt: skip


def test_icmpv6_without_nd_target_and_non_nd_codes() -> None:
    short = parse_key(eth_header(0x86DD) + ipv6(58, nd_body(136, b"")[:23]), 1)
    assert short is not None and short[13:] == (136, 0, 0, 0, 0, 0)
    coded = parse_key(eth_header(0x86DD) + ipv6(58, nd_body(135, opt(1, A), code=1)), 1)
    assert coded is not None and coded[13:] == (135, 1, 0, 0, 0, 0)


def test_arp_needs_ethernet_ipv4_addresses() -> None:
    good = frame(FULL_TEXTS[15])
    assert parse_key(good, 1) == l2(0x0806, nw_src=0x0A000001, nw_dst=0x0A000002, nw_proto=1,
                                    arp_sha=A)  # fmt: skip
    for offset, value in ((14, 6), (17, 0xDD), (18, 8), (19, 16)):  # hrd, pro, hln, pln
        bad = bytearray(good)
        bad[offset] = value
        assert parse_key(bytes(bad), 1) == l2(0x0806), offset
    big_op = bytearray(good)
    big_op[20] = 1
    k = parse_key(bytes(big_op), 1)
    assert k is not None and k[8] == 0 and k[6] == 0x0A000001


def test_ports_parsed_whatever_the_ip_version() -> None:
    icmp_in_v6 = parse_key(eth_header(0x86DD) + ipv6(1, bytes([8, 0]) + bytes(6)), 1)
    assert icmp_in_v6 is not None and icmp_in_v6[13:15] == (8, 0)


# -- truncation and garbage ------------------------------------------------------

SAMPLES = {
    "udp": eth_header(0x0800) + ipv4(17, UDP_HDR + b"payload"),
    "tcp": eth_header(0x0800) + ipv4(6, TCP_HDR),
    "icmp": frame(FULL_TEXTS[3]),
    "vlan": frame(FULL_TEXTS[8]),
    "ipv6-ext": eth_header(0x86DD) + ipv6(0, hop_by_hop(44) + fragment(6, 1) + TCP_HDR),
    "nd": eth_header(0x86DD) + ipv6(58, nd_body(136, opt(2, B))),
    "arp": frame(FULL_TEXTS[15]),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_truncated_frames_at_every_length(name: str) -> None:
    """Cutting a frame short leaves the L2 fields only: the IP (or ARP) header
    claims more bytes than there are.  A VLAN tag needs 18 bytes."""
    data = SAMPLES[name]
    full = parse_key(data, 1)
    assert full is not None
    tagged = name == "vlan"
    for n in range(len(data)):
        k = parse_key(data[:n], 1)
        if n < 14:
            assert k is None
        elif tagged and n < 18:
            assert k == l2(0x8100), n
        else:
            assert k == full[:6] + (0,) * 13, n


def test_truncated_l4_inside_a_consistent_ip_length() -> None:
    """An IP packet whose own length ends inside the L4 header keeps its L3 fields."""
    for proto, l4 in ((17, UDP_HDR), (6, TCP_HDR), (1, bytes([8, 0]) + bytes(6)), (132, bytes(12))):
        for cut in range(len(l4)):
            k = parse_key(eth_header(0x0800) + ipv4(proto, l4[:cut]), 1)
            assert k is not None and k[6:13] == (0x0A000001, 0x0A000002, proto, 0x10, 64, 0, 0)
            assert k[13:] == (0,) * 6, (proto, cut)
        for cut in range(len(l4)):
            k = parse_key(eth_header(0x86DD) + ipv6(proto, l4[:cut]), 1)
            assert k is not None and k[8] == proto and k[13:] == (0,) * 6, (proto, cut)


@pytest.mark.parametrize("offset_words", [0, 4, 6, 15])
def test_tcp_data_offset_must_fit(offset_words: int) -> None:
    tcp = struct.pack("!HHIIHHHH", 80, 8080, 1, 2, offset_words << 12 | 0x012, 100, 0, 0)
    k = parse_key(eth_header(0x0800) + ipv4(6, tcp + bytes(4)), 1)
    assert k is not None and k[8] == 6
    assert k[13:16] == ((80, 8080, 0x012) if offset_words == 6 else (0, 0, 0))


def check_key(k: FlowKey | None, data: bytes) -> None:
    if len(data) < 14:
        assert k is None
        return
    assert k is not None and len(k) == N_FIELDS
    for value, bits in zip(k, FIELD_BITS, strict=True):
        assert isinstance(value, int) and 0 <= value < 1 << bits


@given(st.binary(max_size=160), st.integers(0, 2**32 - 1))
def test_arbitrary_bytes_never_raise(data: bytes, in_port: int) -> None:
    k = parse_key(data, in_port)
    check_key(k, data)
    if k is not None:
        assert k[0] == in_port
    fast_signature(data)


def mutate(base: bytes, edits: list[tuple[int, int]], length: int) -> bytes:
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data[:length]) + bytes(max(0, length - len(data)))


EDITS = st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6)


@given(st.sampled_from(sorted(SAMPLES)), EDITS, st.integers(0, 160))
def test_mutated_frames_never_raise(name: str, edits: list[tuple[int, int]], length: int) -> None:
    data = mutate(SAMPLES[name], edits, length)
    check_key(parse_key(data, 1), data)


@given(st.sampled_from(sorted(SAMPLES)), EDITS, st.integers(0, 0xFFF))
def test_vlan_path_agrees_with_the_untagged_fast_path(
    name: str, edits: list[tuple[int, int]], tci: int
) -> None:
    data = mutate(SAMPLES[name], edits, len(SAMPLES[name]))
    eth_type = int.from_bytes(data[12:14], "big")
    if eth_type not in (0x0800, 0x86DD, 0x0806):
        return
    tagged = data[:12] + struct.pack("!HH", 0x8100, tci) + data[12:]
    untagged_key, tagged_key = parse_key(data, 1), parse_key(tagged, 1)
    assert untagged_key is not None and tagged_key is not None
    expected = (*untagged_key[:VLAN_TCI], tci | VLAN_CFI, *untagged_key[VLAN_TCI + 1 :])
    assert tagged_key == expected
