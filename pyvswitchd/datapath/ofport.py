"""OpenFlow-style port numbers of the bridges' ports.

This switch has no OpenFlow, but two things show a port's OpenFlow number:
``dpif/show`` (``NAME OFPORT/DPPORT``) and the Interface ``ofport`` column
written back to OVSDB.  Both take it from the datapath's one
:class:`OfportNumbers`, so they always agree.  Numbers are given the way
OVS gives them when none is requested: the bridge's own port is 65534
(OpenFlow's LOCAL), every other port the lowest number from 1 not taken
in its bridge, in the order the ports are first seen (by datapath port
number), kept for as long as the port stays in the bridge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .port import Port

#: OpenFlow's number for a bridge's own port.
OFPP_LOCAL = 65534


def bridge_members(ports: Mapping[int, Port], bridges: Iterable[str]) -> dict[str, list[Port]]:
    """Each bridge's ports, by datapath port number."""
    members: dict[str, list[Port]] = {name: [] for name in sorted(bridges)}
    for no in sorted(ports):
        port = ports[no]
        if port.bridge in members:
            members[port.bridge].append(port)
    return members


class OfportNumbers:
    """Stable OpenFlow-style port numbers, per bridge."""

    def __init__(self) -> None:
        #: bridge -> port name -> number.
        self._numbers: dict[str, dict[str, int]] = {}

    def of_ports(
        self, ports: Mapping[int, Port], bridges: Iterable[str]
    ) -> dict[str, dict[str, int]]:
        """Numbers for the datapath's ``ports`` in ``bridges`` (bridge -> name -> number)."""
        members = bridge_members(ports, bridges)
        return self.update({b: [p.name for p in members[b]] for b in members})

    def update(self, members: dict[str, list[str]]) -> dict[str, dict[str, int]]:
        """Numbers for ``members`` (bridge -> its port names, in first-seen order).

        Ports that left their bridge give their number back; new ones take
        the lowest free one.
        """
        numbers: dict[str, dict[str, int]] = {}
        for bridge, names in members.items():
            old = self._numbers.get(bridge, {})
            kept = {name: old[name] for name in names if name in old}
            taken = set(kept.values())
            for name in names:
                if name in kept:
                    continue
                if name == bridge:
                    kept[name] = OFPP_LOCAL
                    continue
                n = 1
                while n in taken:
                    n += 1
                kept[name] = n
                taken.add(n)
            numbers[bridge] = kept
        self._numbers = numbers
        return numbers
