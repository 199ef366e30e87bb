"""ODP flow key text: parse and format."""

from __future__ import annotations

import pytest

from pyvswitchd.odp.key_text import (
    VALUE,
    KeyAttr,
    OdpKeyError,
    format_odp_key,
    parse_odp_key,
)

REFERENCE_FLOW = (
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)
# dpctl/dump-flows -m output of the OVS 3.1 reference capture.
REFERENCE_DUMP_M = (
    "skb_priority(0/0),skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),"
    "recirc_id(0),dp_hash(0/0),in_port(p2),packet_type(ns=0,id=0),"
    "eth(src=50:54:00:00:00:09,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
    "ipv4(src=10.0.0.9/0.0.0.0,dst=10.0.0.1/0.0.0.0,proto=17/0,tos=0/0,ttl=64/0,frag=no),"
    "udp(src=1234/0,dst=5678/0)"
)

CANONICAL = [
    REFERENCE_FLOW,
    "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth_type(0x0800),ipv4(frag=no)",
    "recirc_id(0x1f),dp_hash(0xf/0xff),skb_priority(0x7),skb_mark(0x10/0xf0),in_port(3)",
    "in_port(5/0xff),eth(src=50:54:00:00:00:05/ff:ff:ff:00:00:00,dst=01:00:00:00:00:00/01:00:00:00:00:00)",
    "eth(),eth_type(0x0800/0xff00)",
    "eth_type(0x8100),vlan(vid=10,pcp=0),encap(eth_type(0x0800),"
    "ipv4(src=10.0.0.1/255.255.255.0,dst=10.0.0.2,proto=6,tos=0x10,ttl=64,frag=first),"
    "tcp(src=80,dst=8080/0xff00),tcp_flags(syn|ack))",
    "eth_type(0x88a8),vlan(vid=100,pcp=7),encap(eth_type(0x8100),vlan(vid=10/0xff0,pcp=1/0x1),"
    "encap(eth_type(0x0800),ipv4(frag=later)))",
    "eth_type(0x8100),vlan(vid=0,pcp=0,cfi=0),encap()",
    "eth_type(0x86dd),ipv6(src=fe80::1,dst=2001:db8::/ffff:ffff::,label=0x12345,proto=58,"
    "tclass=0x20,hlimit=255,frag=no),icmpv6(type=135,code=0),"
    "nd(target=fe80::2,sll=50:54:00:00:00:05,tll=00:00:00:00:00:00)",
    "eth_type(0x86dd),ipv6(src=::ffff:1.2.3.4,dst=::1,label=0/0xff000,proto=17),udp(src=53,dst=53)",
    "eth_type(0x0806),arp(sip=10.0.0.1,tip=10.0.0.2/255.255.255.0,op=1,sha=50:54:00:00:00:05,"
    "tha=00:00:00:00:00:00)",
    "eth_type(0x0800),ipv4(proto=132),sctp(src=1,dst=2)",
    "tcp_flags(0)",
    "tcp_flags(fin|syn|rst|psh|ack|urg|ece|cwr|ns|[200]|[400]|[800])",
    "tcp_flags(+syn-ack)",
    "tcp_flags(0/0)",
    "ct_state(new|trk),ct_zone(0x5),ct_mark(0x1/0x3),ct_label(0x1234567890abcdef1234567890abcdef)",
    "ct_state(-new+est+trk)",
    "icmp(type=3/0xf0,code=1)",
]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_text_round_trips(text: str) -> None:
    assert format_odp_key(parse_odp_key(text)) == text


def test_reference_dump_round_trips_with_port_names() -> None:
    key = parse_odp_key(REFERENCE_DUMP_M, port_names={"p2": 2})
    assert key[8] == KeyAttr("in_port", {VALUE: 2}, {VALUE: 0xFFFFFFFF})
    assert format_odp_key(key, port_names={2: "p2"}) == REFERENCE_DUMP_M
    assert format_odp_key(key).count("in_port(2)") == 1


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # Field order, white space and commas between attributes are free.
        (
            "eth(dst=50:54:00:00:00:07,src=50:54:0:0:0:5)  ,\teth_type(2048)\n",
            "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800)",
        ),
        ("ipv4(ttl=0x40,tos=16,proto=010)", "ipv4(proto=8,tos=0x10,ttl=64)"),
        ("ipv4(frag=NO)", "ipv4(frag=no)"),
        ("vlan(cfi=1,vid=5)", "vlan(vid=5)"),
        ("tcp_flags(0x012)", "tcp_flags(syn|ack)"),
        ("tcp_flags(ack|0x2)", "tcp_flags(syn|ack)"),
        ("tcp_flags(0x12/0x12)", "tcp_flags(+syn+ack)"),
        ("tcp_flags(0x2/0xfff)", "tcp_flags(syn)"),
        ("ct_state(0x21)", "ct_state(new|trk)"),
        ("ipv6(src=2001:DB8:0:0:0:0:0:1)", "ipv6(src=2001:db8::1)"),
        ("udp(src=1/0xffff)", "udp(src=1)"),
        ("recirc_id(00)", "recirc_id(0)"),
    ],
)
def test_non_canonical_text_formats_canonically(text: str, canonical: str) -> None:
    assert format_odp_key(parse_odp_key(text)) == canonical


def test_parsed_values_and_masks() -> None:
    (ipv4,) = parse_odp_key("ipv4(src=10.0.0.1/255.255.255.0,dst=10.0.0.2,frag=first)")
    assert ipv4.fields == {"src": 0x0A000001, "dst": 0x0A000002, "frag": 1}
    assert ipv4.masks == {"src": 0xFFFFFF00, "dst": 0xFFFFFFFF, "frag": 0xFF}
    assert ipv4.get("ttl") == 0 and not ipv4.has("ttl")
    (eth,) = parse_odp_key("eth(src=50:54:00:00:00:05/ff:ff:00:00:00:00)")
    assert eth.fields == {"src": 0x505400000005}
    assert eth.masks == {"src": 0xFFFF00000000}
    (vlan,) = parse_odp_key("vlan(vid=10,pcp=3)")
    assert vlan.fields == {"cfi": 1, "vid": 10, "pcp": 3}
    (flags,) = parse_odp_key("tcp_flags(+syn-ack)")
    assert (flags.get(), flags.masks[VALUE]) == (0x002, 0x012)
    (ipv6,) = parse_odp_key("ipv6(src=::1)")
    assert ipv6.get("src") == 1
    eth_type, vlan, encap = parse_odp_key(
        "eth_type(0x8100),vlan(vid=10),encap(eth_type(0x0800),ipv4(proto=1))"
    )
    assert eth_type.get() == 0x8100
    assert [a.name for a in encap.nested] == ["eth_type", "ipv4"]
    assert encap.nested[1].get("proto") == 1


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("ipv4(src=10.0.0.300)", "bad IPv4 address '10.0.0.300' in ipv4 src", 9),
        ("eth(src=50:54:00:00:00)", "bad Ethernet address '50:54:00:00:00' in eth src", 8),
        ("eth(src=50:54:00:00:00:05,foo=1)", "unknown eth field 'foo' (known: src, dst)", 26),
        ("eth(src)", "unknown eth field 'src'", 4),
        ("udp(src=1,src=2)", "udp field 'src' given twice", 10),
        ("udp(src=65536)", "number '65536' does not fit in 16 bits in udp src", 8),
        ("udp(src=-1)", "bad number '-1' in udp src", 8),
        ("udp(src=08)", "bad number '08' in udp src", 8),
        ("in_port(1),bogus(1)", "unknown attribute 'bogus'", 11),
        ("in_port(p9)", "bad number 'p9' in in_port", 8),
        ("in_port(1", "missing ')' to close in_port(", 0),
        ("eth_type(0x0800))", "unbalanced ')'", 16),
        ("in_port 1", "expected an attribute such as eth(...)", 0),
        ("encap(eth_type(0x0800)", "missing ')' to close encap(", 22),
        ("recirc_id(1/0xff)", "'1/0xff': this field takes no mask in recirc_id", 10),
        ("ipv4(frag=no/0xff)", "this field takes no mask in ipv4 frag", 10),
        ("ipv4(frag=sometimes)", "bad frag type 'sometimes'", 10),
        ("ipv6(src=fe80::1::2)", "bad IPv6 address 'fe80::1::2' in ipv6 src", 9),
        ("ipv6(label=0x100000)", "does not fit in 20 bits", 11),
        ("vlan(vid=4096)", "does not fit in 12 bits in vlan vid", 9),
        ("tcp_flags(syn|foo)", "bad flag 'foo' in tcp_flags", 10),
        ("tcp_flags(+syn+syn)", "flag 'syn' given twice", 10),
        ("tcp_flags(0x1000)", "does not fit in 12 bits", 10),
        ("ct_state(+new+bogus)", "unknown flag 'bogus' in ct_state", 9),
    ],
)
def test_errors_name_the_problem_and_where(text: str, message: str, offset: int) -> None:
    with pytest.raises(OdpKeyError) as info:
        parse_odp_key(text)
    assert message in str(info.value)
    assert info.value.offset == offset
    assert f"at offset {offset}: {text[offset : offset + 40]!r}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_nesting_is_bounded() -> None:
    text = "encap(" * 40 + ")" * 40
    with pytest.raises(OdpKeyError, match="nested deeper than 32"):
        parse_odp_key(text)


def test_format_rejects_unknown_attribute() -> None:
    with pytest.raises(ValueError, match="unknown attribute 'bogus'"):
        format_odp_key([KeyAttr("bogus")])
