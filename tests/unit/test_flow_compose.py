"""Composing frames from flow keys (OVS's flow_compose)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvswitchd.odp.flow_compose import DEFAULT_L7, compose_packet
from pyvswitchd.odp.flow_extract import parse_key
from pyvswitchd.odp.flow_key import ETH_DST, ETH_SRC, ETH_TYPE
from pyvswitchd.odp.key_text import VALUE, KeyAttr, format_odp_key, parse_odp_key
from tests.unit.test_key_text import REFERENCE_FLOW

# -- composing frames -------------------------------------------------------------


def inet_checksum(data: bytes) -> int:
    """Sum of 16-bit words, folded: 0xffff for data that includes a correct checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def decode_ipv4(frame: bytes, l3: int = 14) -> dict[str, int | bytes]:
    ver_ihl, tos, tot_len, ident, frag, ttl, proto, _csum, src, dst = struct.unpack_from(
        "!BBHHHBBHII", frame, l3
    )
    assert ver_ihl == 0x45
    assert inet_checksum(frame[l3 : l3 + 20]) == 0xFFFF, "bad IPv4 header checksum"
    assert tot_len == len(frame) - l3
    pseudo = struct.pack("!IIxBH", src, dst, proto, tot_len - 20)
    return dict(
        tos=tos,
        ident=ident,
        frag=frag,
        ttl=ttl,
        proto=proto,
        src=src,
        dst=dst,
        l4=frame[l3 + 20 :],
        pseudo=pseudo,
    )


def test_reference_flow_composes_to_ovs_106_byte_icmp_echo() -> None:
    frame = compose_packet(parse_odp_key(REFERENCE_FLOW))
    assert len(frame) == 106  # OVS: 4 packets, 424 bytes in the reference capture
    dst, src, eth_type = struct.unpack_from("!6s6sH", frame)
    assert (dst.hex(), src.hex(), eth_type) == ("505400000007", "505400000005", 0x0800)
    ip = decode_ipv4(frame)
    assert (ip["tos"], ip["ttl"], ip["proto"], ip["frag"], ip["ident"]) == (0, 64, 1, 0, 0)
    assert ip["src"] == int(ipaddress.IPv4Address("10.0.0.1"))
    assert ip["dst"] == int(ipaddress.IPv4Address("10.0.0.2"))
    l4 = ip["l4"]
    assert isinstance(l4, bytes)
    assert struct.unpack_from("!BB", l4) == (8, 0)
    assert inet_checksum(l4) == 0xFFFF, "bad ICMP checksum"
    assert l4[8:] == DEFAULT_L7 == bytes(range(64))


def test_length_pads_with_zeros_and_fixes_lengths_and_checksums() -> None:
    key = parse_odp_key(
        "eth(src=50:54:00:00:00:09,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
        "ipv4(src=10.0.0.9,dst=10.0.0.1,proto=17,tos=0,ttl=64,frag=no),udp(src=1234,dst=5678)"
    )
    assert len(compose_packet(key)) == 14 + 20 + 8 + 64
    frame = compose_packet(key, 118)
    assert len(frame) == 118
    ip = decode_ipv4(frame)
    l4, pseudo = ip["l4"], ip["pseudo"]
    assert isinstance(l4, bytes) and isinstance(pseudo, bytes)
    assert struct.unpack_from("!HHH", l4) == (1234, 5678, 118 - 34)
    assert l4[8:] == bytes(118 - 42)
    assert inet_checksum(pseudo + l4) == 0xFFFF, "bad UDP checksum"
    minimal = compose_packet(key, 42)  # headers only
    assert struct.unpack_from("!H", minimal, 16) == (20 + 8,)
    assert decode_ipv4(minimal)["l4"] == minimal[34:]
    with pytest.raises(ValueError, match="packet length 41 is less than the 42 bytes"):
        compose_packet(key, 41)


def test_tcp_syn_has_no_payload_and_valid_checksum() -> None:
    key = parse_odp_key(
        "eth_type(0x0800),ipv4(src=1.2.3.4,dst=5.6.7.8,proto=6,ttl=1),tcp(src=80,dst=443),"
        "tcp_flags(syn)"
    )
    frame = compose_packet(key)
    ip = decode_ipv4(frame)
    l4, pseudo = ip["l4"], ip["pseudo"]
    assert isinstance(l4, bytes) and isinstance(pseudo, bytes)
    assert len(l4) == 20
    sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", l4)
    assert (sport, dport, seq, ack, off_flags) == (80, 443, 0, 0, 5 << 12 | 0x002)
    assert inet_checksum(pseudo + l4) == 0xFFFF, "bad TCP checksum"
    # Without SYN/FIN/RST a TCP segment carries OVS's 64 bytes of data.
    frame = compose_packet(parse_odp_key("eth_type(0x0800),ipv4(proto=6),tcp_flags(ack)"))
    assert len(frame) == 14 + 20 + 20 + 64


def test_vlan_tags_outermost_first_and_cfi_zero_means_untagged() -> None:
    frame = compose_packet(
        parse_odp_key(
            "eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x88a8),vlan(vid=100,pcp=5),"
            "encap(eth_type(0x8100),vlan(vid=10),encap(eth_type(0x0800),ipv4(proto=17),udp()))"
        )
    )
    assert struct.unpack_from("!HHHHH", frame, 12) == (0x88A8, 5 << 13 | 100, 0x8100, 10, 0x0800)
    decode_ipv4(frame, 22)
    untagged = compose_packet(
        parse_odp_key("eth_type(0x8100),vlan(vid=0,pcp=0,cfi=0),encap(eth_type(0x0800))")
    )
    assert struct.unpack_from("!H", untagged, 12) == (0x0800,)


@pytest.mark.parametrize(
    ("frag", "flags_offset", "has_l4"),
    [("no", 0, True), ("first", 0x2000, True), ("later", 0x2000 | 100, False)],
)
def test_ipv4_fragments(frag: str, flags_offset: int, has_l4: bool) -> None:
    key = parse_odp_key(f"eth_type(0x0800),ipv4(proto=17,frag={frag}),udp(src=1,dst=2)")
    ip = decode_ipv4(compose_packet(key, 100))
    assert ip["frag"] == flags_offset
    l4 = ip["l4"]
    assert isinstance(l4, bytes)
    assert (struct.unpack_from("!HH", l4) == (1, 2)) == has_l4


def test_ipv6_icmpv6_echo_and_neighbor_solicitation() -> None:
    frame = compose_packet(
        parse_odp_key(
            "eth_type(0x86dd),ipv6(src=fe80::1,dst=ff02::1,label=0x12345,proto=58,tclass=0x20,"
            "hlimit=255,frag=no),icmpv6(type=128,code=0)"
        )
    )
    flow, plen, nxt, hlim, src, dst = struct.unpack_from("!IHBB16s16s", frame, 14)
    assert (flow >> 28, flow >> 20 & 0xFF, flow & 0xFFFFF) == (6, 0x20, 0x12345)
    assert (plen, nxt, hlim) == (8 + 64, 58, 255)
    assert plen == len(frame) - 54
    l4 = frame[54:]
    assert struct.unpack_from("!BB", l4) == (128, 0)
    assert inet_checksum(src + dst + struct.pack("!IxxxB", plen, 58) + l4) == 0xFFFF
    ns = compose_packet(
        parse_odp_key(
            "eth_type(0x86dd),ipv6(src=fe80::1,dst=ff02::1:ff00:2,proto=58,hlimit=255),"
            "icmpv6(type=135,code=0),nd(target=fe80::2,sll=50:54:00:00:00:05)"
        )
    )
    l4 = ns[54:]
    assert len(l4) == 8 + 16 + 8
    assert l4[8:24] == ipaddress.IPv6Address("fe80::2").packed
    assert l4[24:] == bytes([1, 1]) + bytes.fromhex("505400000005")
    src, dst = ns[22:38], ns[38:54]
    assert inet_checksum(src + dst + struct.pack("!IxxxB", len(l4), 58) + l4) == 0xFFFF


def test_ipv6_fragment_gets_a_fragment_header() -> None:
    frame = compose_packet(parse_odp_key("eth_type(0x86dd),ipv6(proto=17,frag=later),udp()"))
    assert frame[20] == 44  # next header: Fragment
    nxt, offset_m = struct.unpack_from("!BxH", frame, 54)
    assert (nxt, offset_m >> 3, offset_m & 1) == (17, 100, 1)
    assert len(frame) == 14 + 40 + 8  # no L4 header in a later fragment


def test_arp_and_8023_and_other_ethertypes() -> None:
    arp = compose_packet(
        parse_odp_key(
            "eth(src=50:54:00:00:00:05,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),"
            "arp(sip=10.0.0.1,tip=10.0.0.2,op=1,sha=50:54:00:00:00:05,tha=00:00:00:00:00:00)"
        )
    )
    assert len(arp) == 42
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack_from("!HHBBH6s4s6s4s", arp, 14)
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert (sha.hex(), spa, tha, tpa) == (
        "505400000005",
        bytes([10, 0, 0, 1]),
        bytes(6),
        bytes([10, 0, 0, 2]),
    )
    assert len(compose_packet(parse_odp_key("eth_type(0x0806),arp(op=1)"), 60)) == 60
    # No eth_type: an 802.3 frame whose type field holds the frame length.
    short = compose_packet(parse_odp_key("eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02)"))
    assert short == bytes.fromhex("000000000002000000000001000e")
    assert compose_packet(parse_odp_key("eth()"), 64)[12:14] == b"\x00\x40"
    other = compose_packet(parse_odp_key("eth_type(0x88cc)"), 60)
    assert other[12:14] == b"\x88\xcc" and other[14:] == bytes(46)


def test_a_key_without_ethernet_header_takes_its_l3_type_and_zero_macs() -> None:
    """OVS's 'revalidators handle dp modification fail correctly' sends such flows."""
    text = "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6),tcp(src=1,dst=2)"
    frame = compose_packet(parse_odp_key(text))
    assert frame[:14] == bytes(12) + b"\x08\x00"
    ihl_ver, tos, total, _, _, ttl, proto, _, src, dst = struct.unpack_from(
        "!BBHHHBBH4s4s", frame, 14
    )
    # Unwritten fields are 0 (even the TTL); a TCP packet without flags carries 64 bytes.
    assert (ihl_ver, tos, total, ttl, proto) == (0x45, 0, 20 + 20 + 64, 0, 6)
    assert (src, dst) == (bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    assert struct.unpack_from("!HH", frame, 34) == (1, 2)
    key = parse_key(frame, 1)
    assert key is not None
    assert (key[ETH_SRC], key[ETH_DST], key[ETH_TYPE]) == (0, 0, 0x0800)
    v6 = compose_packet(parse_odp_key("ipv6(src=::1,dst=::2,proto=17),udp(src=1,dst=2)"))
    assert v6[12:14] == b"\x86\xdd"
    # As with eth_type written out, and inside a VLAN tag too.
    assert frame == compose_packet(parse_odp_key(f"eth_type(0x0800),{text}"))
    tagged = "eth_type(0x8100),vlan(vid=5),encap(ipv4(src=10.0.0.1,proto=1),icmp(type=8))"
    assert compose_packet(parse_odp_key(tagged))[16:18] == b"\x08\x00"


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("eth_type(0x86dd),ipv4(proto=1)", "eth_type(0x86dd)"),
        ("eth_type(0x0806),ipv4(proto=1),arp(op=1)", "eth_type(0x0806),arp(op=1)"),
        ("eth_type(0x0800),ipv4(proto=6),udp(src=1)", "eth_type(0x0800),ipv4(proto=6)"),
        (
            "eth_type(0x0800),ipv4(proto=17),udp(src=1),tcp_flags(syn)",
            "eth_type(0x0800),ipv4(proto=17),udp(src=1)",
        ),
        ("ipv4(src=10.0.0.1),tcp(src=1,dst=2)", "eth_type(0x0800),ipv4(src=10.0.0.1)"),
        ("ipv4(proto=58),icmpv6(type=128)", "ipv4(proto=58)"),
        (
            "eth_type(0x86dd),ipv6(proto=58),icmpv6(type=128),nd(target=::1)",
            "eth_type(0x86dd),ipv6(proto=58),icmpv6(type=128)",
        ),
    ],
)
def test_surplus_attributes_are_left_out_as_ovs_leaves_them(text: str, same_as: str) -> None:
    """OVS's key parser ignores what the EtherType and protocol do not lead to."""
    assert compose_packet(parse_odp_key(text)) == compose_packet(parse_odp_key(same_as))


def test_an_ip_packet_without_protocol_has_no_l4_header() -> None:
    frame = compose_packet(parse_odp_key("ipv4(src=10.0.0.1,dst=10.0.0.2),tcp(src=1,dst=2)"))
    assert len(frame) == 14 + 20 and frame[23] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("eth_type(0x0806),arp(op=256)", "arp op 256 is more than 255"),
        ("vlan(vid=1),encap()", r"vlan\(\) needs eth_type\(0x8100\)"),
        ("eth_type(0x8100),vlan(vid=1)", r"vlan\(\) needs encap"),
        ("encap(eth_type(0x0800))", r"encap\(\) without vlan\(\)"),
        ("eth_type(0x8100),vlan(),encap(in_port(1))", r"in_port\(\) is not allowed inside encap"),
        ("in_port(1),in_port(2)", r"in_port\(\) appears twice"),
        ("packet_type(ns=1,id=0x800)", "only Ethernet packets"),
    ],
)
def test_inconsistent_keys_are_value_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compose_packet(parse_odp_key(text))


@given(
    src=st.integers(0, 2**32 - 1),
    dst=st.integers(0, 2**32 - 1),
    tos=st.integers(0, 255),
    ttl=st.integers(0, 255),
    sport=st.integers(0, 65535),
    dport=st.integers(0, 65535),
    length=st.one_of(st.none(), st.integers(42, 300)),
)
def test_udp_key_text_and_frame_round_trip(
    src: int, dst: int, tos: int, ttl: int, sport: int, dport: int, length: int | None
) -> None:
    key = [
        KeyAttr("eth_type", {VALUE: 0x0800}, {VALUE: 0xFFFF}),
        KeyAttr(
            "ipv4",
            {"src": src, "dst": dst, "proto": 17, "tos": tos, "ttl": ttl},
            {"src": 2**32 - 1, "dst": 2**32 - 1, "proto": 255, "tos": 255, "ttl": 255},
        ),
        KeyAttr("udp", {"src": sport, "dst": dport}, {"src": 0xFFFF, "dst": 0xFFFF}),
    ]
    assert parse_odp_key(format_odp_key(key)) == key
    frame = compose_packet(key, length)
    ip = decode_ipv4(frame)
    assert (ip["src"], ip["dst"], ip["tos"], ip["ttl"], ip["proto"]) == (src, dst, tos, ttl, 17)
    l4, pseudo = ip["l4"], ip["pseudo"]
    assert isinstance(l4, bytes) and isinstance(pseudo, bytes)
    assert struct.unpack_from("!HHH", l4) == (sport, dport, len(l4))
    assert inet_checksum(pseudo + l4) == 0xFFFF
    assert struct.unpack_from("!H", l4, 6) != (0,)
