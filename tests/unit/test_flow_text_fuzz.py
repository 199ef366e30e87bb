"""Fuzzing the flow and action syntax parsers: only their documented errors escape.

``dpctl/add-flow``, ``mod-flow``, ``del-flow``, ``get-flow`` and
``netdev-dummy/receive`` hand user text to these parsers; whatever the
text, they must answer with a value or with :class:`FlowSyntaxError` /
:class:`OdpKeyError` / :class:`ActionSyntaxError` (all ValueErrors whose
message is shown to the user), never with another exception.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyvswitchd.odp.actions import ActionSyntaxError, format_actions, parse_actions
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.flow_text import FlowSyntaxError, format_flow, parse_flow
from pyvswitchd.odp.key_text import OdpKeyError, parse_odp_key

VALID_FLOWS = [
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)",
    "recirc_id(0),in_port(2),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:05/ff:ff:ff:00:00:00,"
    "dst=50:54:00:00:00:07),eth_type(0x0800),ipv4(src=10.0.0.0/255.255.255.0,frag=no)",
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x8100),"
    "vlan(vid=10,pcp=0),encap(eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,"
    "tos=0,ttl=64,frag=no),tcp(src=80,dst=1024),tcp_flags(syn|ack))",
    "in_port(3),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x86dd),"
    "ipv6(src=2001:db8::1,dst=2001:db8::2,label=0,proto=58,tclass=0,hlimit=64,frag=no),"
    "icmpv6(type=135,code=0),nd(target=2001:db8::2,sll=50:54:00:00:00:05,tll=00:00:00:00:00:00)",
    "in_port(1),eth(src=50:54:00:00:00:05,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0806),"
    "arp(sip=10.0.0.1,tip=10.0.0.2,op=1,sha=50:54:00:00:00:05,tha=00:00:00:00:00:00)",
]
VALID_ACTIONS = [
    "1,2,3",
    "drop",
    "push_vlan(vid=10,pcp=3),2,pop_vlan,3",
    "set(eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a)),set(ipv4(src=10.9.9.9,ttl=5)),4",
]
#: The characters the syntax is made of: mutations stay close to valid text.
ALPHABET = "0123456789abcdefx:./,()=|-_ ipnortsceglhuvwkyd\\\"'\x00é"


@st.composite
def mutated(draw: st.DrawFn, texts: list[str]) -> str:
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "duplicate"]))
        char = draw(st.sampled_from(ALPHABET))
        if kind == "insert":
            text = text[:pos] + char + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif kind == "replace":
            text = text[:pos] + char + text[pos + 1 :]
        elif kind == "truncate":
            text = text[:pos]
        else:
            end = draw(st.integers(pos, len(text)))
            text = text[:end] + text[pos:end] + text[end:]
    return text


def check_flow(text: str) -> None:
    try:
        key, mask = parse_flow(text, port_names={"p1": 1})
    except FlowSyntaxError as exc:
        assert str(exc)  # a message for the user
        return
    # What parses formats and parses back to itself.
    assert parse_flow(format_flow(key, mask)) == (key, mask)


def check_odp(text: str) -> None:
    try:
        attrs_ = parse_odp_key(text, {"p1": 1})
    except OdpKeyError as exc:
        assert str(exc)
        return
    try:
        compose_packet(attrs_)
    except ValueError as exc:  # keys that describe no frame: documented as ValueError
        assert str(exc)


def check_actions(text: str) -> None:
    try:
        actions = parse_actions(text, {"p1": 1})
    except ActionSyntaxError as exc:
        assert str(exc)
        return
    assert parse_actions(format_actions(actions)) == actions


@settings(max_examples=400)
@given(mutated(VALID_FLOWS))
def test_mutated_flows_parse_or_raise_flow_syntax_error(text: str) -> None:
    check_flow(text)


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_arbitrary_text_as_a_flow(text: str) -> None:
    check_flow(text)


@settings(max_examples=400)
@given(mutated(VALID_FLOWS))
def test_mutated_keys_parse_or_raise_odp_key_error(text: str) -> None:
    check_odp(text)


@settings(max_examples=300)
@given(st.one_of(mutated(VALID_ACTIONS), st.text(max_size=100)))
def test_mutated_actions_parse_or_raise_action_syntax_error(text: str) -> None:
    check_actions(text)


def test_the_seeds_are_valid() -> None:
    for text in VALID_FLOWS:
        parse_flow(text)
        compose_packet(parse_odp_key(text))
    for text in VALID_ACTIONS:
        parse_actions(text)
