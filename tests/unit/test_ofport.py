"""Unit tests for pyvswitchd.datapath.ofport."""

from pyvswitchd.datapath.ofport import OFPP_LOCAL, OfportNumbers


def test_ofport_numbers_are_stable_and_reused() -> None:
    numbers = OfportNumbers()
    assert numbers.update({"br0": ["br0", "a", "b"]}) == {
        "br0": {"br0": OFPP_LOCAL, "a": 1, "b": 2}
    }
    # "a" leaves: "b" keeps 2, the newcomer takes the free 1.
    assert numbers.update({"br0": ["br0", "b", "c"]}) == {
        "br0": {"br0": OFPP_LOCAL, "b": 2, "c": 1}
    }
    assert numbers.update({"br0": ["br0", "b", "c"], "br1": ["br1", "d"]})["br1"] == {
        "br1": OFPP_LOCAL,
        "d": 1,
    }
    assert numbers.update({}) == {}


def test_requested_numbers_are_served_first() -> None:
    numbers = OfportNumbers()
    # "a" is seen first but "b" asked for 1: "a" takes the next free one.
    assert numbers.update({"br0": ["br0", "a", "b"]}, {"b": 1}) == {
        "br0": {"br0": OFPP_LOCAL, "a": 2, "b": 1}
    }
    # Requests are per bridge: the same number in another bridge is fine.
    assert numbers.update({"br0": ["br0", "a", "b"], "br1": ["c"]}, {"b": 1, "c": 1})["br1"] == {
        "c": 1
    }


def test_a_taken_request_falls_back_and_the_holder_keeps_its_number() -> None:
    numbers = OfportNumbers()
    assert numbers.update({"br0": ["a"]}) == {"br0": {"a": 1}}
    # "b" asks for the number "a" holds: "a" keeps it, "b" gets a free one.
    assert numbers.update({"br0": ["a", "b"]}, {"b": 1}) == {"br0": {"a": 1, "b": 2}}
    # Two ports asking for the same number: the first one seen gets it.
    fresh = OfportNumbers()
    assert fresh.update({"br0": ["x", "y"]}, {"x": 7, "y": 7}) == {"br0": {"x": 7, "y": 1}}


def test_a_changed_request_moves_the_port_and_a_withdrawn_one_keeps_it() -> None:
    numbers = OfportNumbers()
    assert numbers.update({"br0": ["a", "b"]}) == {"br0": {"a": 1, "b": 2}}
    assert numbers.update({"br0": ["a", "b"]}, {"a": 7}) == {"br0": {"a": 7, "b": 2}}
    # The request withdrawn: the port stays where it is.
    assert numbers.update({"br0": ["a", "b"]}) == {"br0": {"a": 7, "b": 2}}
    # A request for the number another port holds leaves the port where it is.
    assert numbers.update({"br0": ["a", "b"]}, {"a": 2}) == {"br0": {"a": 7, "b": 2}}
    # ... until the number is free.
    assert numbers.update({"br0": ["a"]}, {"a": 2}) == {"br0": {"a": 2}}


def test_a_port_waiting_for_its_number_is_not_displaced_by_a_newcomer() -> None:
    numbers = OfportNumbers()
    assert numbers.update({"br0": ["a", "c"]}) == {"br0": {"a": 1, "c": 2}}
    # "a" asks for c's 2 and keeps 1; newcomer "b" asks for 1 and cannot have it.
    assert numbers.update({"br0": ["a", "b", "c"]}, {"a": 2, "b": 1}) == {
        "br0": {"a": 1, "b": 3, "c": 2}
    }
