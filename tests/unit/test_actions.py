"""Datapath actions: the types and their OVS text syntax."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvswitchd.odp.actions import (
    Action,
    ActionSyntaxError,
    Output,
    PopVlan,
    PushVlan,
    SetEth,
    SetIpv4,
    format_actions,
    parse_actions,
)

MAC5, MAC7, MAC9 = 0x505400000005, 0x505400000007, 0x505400000009
NAMES = {1: "p0", 2: "p1", 3: "p2", 100: "br0"}
NUMBERS = {name: port for port, name in NAMES.items()}


def ip(text: str) -> int:
    return int.from_bytes(bytes(int(part) for part in text.split(".")), "big")


# -- action types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Output(-1),
        lambda: Output(2**32),
        lambda: Output(True),
        lambda: PushVlan(0x1000),  # the CFI marker belongs to flow keys, not actions
        lambda: PushVlan(0x10000),
        lambda: PushVlan(1, tpid=0x9100),
        lambda: SetEth(),
        lambda: SetEth(src=1 << 48),
        lambda: SetIpv4(),
        lambda: SetIpv4(ttl=256),
        lambda: SetIpv4(src=-1),
    ],
)
def test_invalid_actions_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_action_types() -> None:
    push = PushVlan(10 | 5 << 13)
    assert (push.tpid, push.vid, push.pcp) == (0x8100, 10, 5)
    assert PushVlan(tci=1, tpid=0x88A8).tpid == 0x88A8
    assert SetIpv4(ttl=0).ttl == 0 and SetEth(dst=0).dst == 0
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Output(1).port = 2  # type: ignore[misc]
    assert {Output(1), Output(1), PopVlan(), PopVlan()} == {Output(1), PopVlan()}


# -- text syntax ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "text"),
    [
        ([], "drop"),
        ([Output(3), Output(1), Output(100)], "3,1,100"),  # reference dump-flows
        ([PopVlan(), PushVlan(11 | 7 << 13), Output(1)], "pop_vlan,push_vlan(vid=11,pcp=7),1"),
        ([PushVlan(100, tpid=0x88A8)], "push_vlan(tpid=0x88a8,vid=100,pcp=0)"),
        ([PushVlan(0)], "push_vlan(vid=0,pcp=0)"),
        ([SetIpv4(ttl=63), Output(2)], "set(ipv4(ttl=63)),2"),
        (
            [SetIpv4(src=ip("192.168.3.90")), Output(10), SetIpv4(src=ip("192.168.0.1"))],
            "set(ipv4(src=192.168.3.90)),10,set(ipv4(src=192.168.0.1))",
        ),
        (
            [SetIpv4(src=ip("10.0.0.1"), dst=ip("10.0.0.2"), ttl=63, tos=0x10)],
            "set(ipv4(src=10.0.0.1,dst=10.0.0.2,tos=0x10,ttl=63))",
        ),
        ([SetIpv4(tos=0)], "set(ipv4(tos=0))"),
        ([SetEth(src=MAC5, dst=MAC7)], "set(eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07))"),
        ([SetEth(dst=MAC9)], "set(eth(dst=50:54:00:00:00:09))"),
        ([Output(0), Output(2**32 - 1)], "0,4294967295"),
    ],
)
def test_format_and_parse(actions: list[Action], text: str) -> None:
    assert format_actions(actions) == text
    assert parse_actions(text) == actions


def test_port_names() -> None:
    flood = [Output(2), Output(1), Output(100)]
    assert format_actions(flood, NAMES) == "p1,p0,br0"  # reference dump-flows -m
    assert parse_actions("p1,p0,br0", NUMBERS) == flood
    # A port without a name is printed as its number; numbers parse with names given.
    assert format_actions([Output(7), PopVlan(), Output(3)], NAMES) == "7,pop_vlan,p2"
    assert parse_actions("7,pop_vlan,p2", NUMBERS) == [Output(7), PopVlan(), Output(3)]


@pytest.mark.parametrize(
    ("text", "actions"),
    [
        ("", []),
        (" DROP ", []),
        ("1, 2\t3\n", [Output(1), Output(2), Output(3)]),
        ("0x10,010,+5", [Output(16), Output(8), Output(5)]),
        ("push_vlan(pcp=3,vid=5,cfi=1)", [PushVlan(5 | 3 << 13)]),
        ("push_vlan(tpid=0x8100,vid=5,pcp=0)", [PushVlan(5)]),
        ("set(ipv4(ttl=0x3f,src=1.2.3.4/255.255.255.255))", [SetIpv4(src=0x01020304, ttl=63)]),
        ("set(eth(dst=50:54:0:0:0:9))", [SetEth(dst=MAC9)]),
    ],
)
def test_parse_accepts_ovs_variants(text: str, actions: list[Action]) -> None:
    assert parse_actions(text) == actions


@pytest.mark.parametrize(
    ("text", "reason", "offset"),
    [
        ("1,drop", "drop must be the only action", 2),
        ("foo", "unknown action or port name 'foo'", 0),
        ("1,p0", "unknown action or port name 'p0'", 2),
        ("meter(1)", "unknown action or port name 'meter'", 0),
        ("4294967296", "does not fit in 32 bits", 0),
        ("1/2", "takes no mask", 0),
        ("1x", "bad number", 0),
        ("set(ipv6(src=::1))", "set(ipv6(...)) is not supported", 4),
        ("set(ipv4(proto=6))", "cannot set 'proto'", 4),
        ("set(ipv4(frag=no))", "cannot set 'frag'", 4),
        ("set(ipv4(tos=0x40/0xfc))", "'tos' is masked", 4),
        ("2,set(ipv4(src=1.2.3))", "bad IPv4 address '1.2.3'", 15),
        ("set(eth(vid=1))", "unknown eth field 'vid'", 8),
        ("set(eth())", "sets nothing", 4),
        ("set(eth(src=00:00:00:00:00:01)", "malformed set()", 0),
        ("set(eth(src=00:00:00:00:00:01))x", "expected ',' between actions", 31),
        ("pop_vlanx", "unknown action or port name 'pop_vlanx'", 0),
        ("push_vlan(vid=10)", "push_vlan needs pcp", 0),
        ("push_vlan(vid=10", "malformed push_vlan()", 0),
        ("push_vlan(vid=4096,pcp=0)", "does not fit in 12 bits in push_vlan vid", 14),
        ("push_vlan(vid=1,pcp=8)", "in push_vlan pcp", 20),
        ("push_vlan(vid=1/0xf,pcp=0)", "push_vlan vid takes no mask", 14),
        ("push_vlan(vid=1,pcp=0,cfi=0)", "cfi=0 is not supported", 0),
        ("push_vlan(tpid=0x9100,vid=1,pcp=0)", "tpid must be 0x8100 or 0x88a8", 0),
        ("push_vlan(vid=1,vid=2,pcp=0)", "'vid' given twice", 16),
        ("push_vlan(vid=1,pcp=0,prio=1)", "unknown push_vlan field 'prio'", 22),
    ],
)
def test_parse_errors(text: str, reason: str, offset: int) -> None:
    with pytest.raises(ActionSyntaxError) as info:
        parse_actions(text)
    assert reason in info.value.reason
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError) and f"at offset {offset}" in str(info.value)


def test_parse_errors_with_names() -> None:
    with pytest.raises(ActionSyntaxError, match="port 'big'"):
        parse_actions("big", {"big": 2**32})
    with pytest.raises(ActionSyntaxError, match="unknown action or port name 'p9'"):
        parse_actions("p0,p9", NUMBERS)


u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)
mac = st.integers(0, 2**48 - 1)
ACTIONS = st.one_of(
    st.builds(Output, st.sampled_from([*NAMES, 7, 2**32 - 1])),
    st.builds(PopVlan),
    st.builds(
        PushVlan,
        st.integers(0, 0xFFFF).map(lambda tci: tci & ~0x1000),
        tpid=st.sampled_from([0x8100, 0x88A8]),
    ),
    st.tuples(st.none() | mac, st.none() | mac)
    .filter(lambda fields: fields != (None, None))
    .map(lambda fields: SetEth(*fields)),
    st.tuples(st.none() | u32, st.none() | u32, st.none() | u8, st.none() | u8)
    .filter(lambda fields: fields != (None,) * 4)
    .map(lambda fields: SetIpv4(*fields)),
)


@given(st.lists(ACTIONS, max_size=8), st.booleans())
def test_format_parse_round_trip(actions: list[Action], named: bool) -> None:
    text = format_actions(actions, NAMES if named else None)
    assert parse_actions(text, NUMBERS if named else None) == actions
