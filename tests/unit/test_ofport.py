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
