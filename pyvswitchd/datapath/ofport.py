"""OpenFlow-style port numbers of the bridges' ports.

This switch has no OpenFlow, but two things show a port's OpenFlow number:
``dpif/show`` (``NAME OFPORT/DPPORT``) and the Interface ``ofport`` column
written back to OVSDB.  Both take it from the datapath's one
:class:`OfportNumbers`, so they always agree.  The bridge's own port
is 65534 (OpenFlow's LOCAL).  A port whose configuration asks for a number
(``ofport_request``) gets it unless another port of its bridge holds it;
the others, and a new port whose request is taken, get the lowest number
from 1 not taken in their bridge.  Requests are served before the ports
without one, and a new request of a port moves it to that number if it is
free, as ovs-vswitchd re-adds a port whose request changed.  A number is
kept for as long as the port stays in the bridge (a request withdrawn, or
one for a number another port holds, leaves it where it is).
Where OVS avoids reusing a freed number for an hour, the lowest free one
is taken here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import BridgeConfig
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
        self, ports: Mapping[int, Port], bridges: Mapping[str, BridgeConfig]
    ) -> dict[str, dict[str, int]]:
        """Numbers for the datapath's ``ports`` in ``bridges`` (bridge -> name -> number)."""
        members = bridge_members(ports, bridges)
        requests = {
            pc.name: pc.ofport_request
            for bridge in bridges.values()
            for pc in bridge.ports
            if pc.ofport_request is not None
        }
        return self.update({b: [p.name for p in members[b]] for b in members}, requests)

    def update(
        self, members: dict[str, list[str]], requests: Mapping[str, int] | None = None
    ) -> dict[str, dict[str, int]]:
        """Numbers for ``members`` (bridge -> its port names, in first-seen order).

        ``requests`` maps port names to the number each asks for.  Ports
        that left their bridge give their number back.
        """
        requests = requests or {}
        numbers: dict[str, dict[str, int]] = {}
        for bridge, names in members.items():
            old = self._numbers.get(bridge, {})
            # Ports whose number is what they ask for, or who ask for nothing.
            kept = {
                name: old[name]
                for name in names
                if name in old and requests.get(name, old[name]) == old[name]
            }
            taken = set(kept.values())
            if bridge in names and bridge not in kept:
                kept[bridge] = OFPP_LOCAL
                taken.add(OFPP_LOCAL)
            # A port whose request changed moves to its number if that is
            # free (OVS re-adds it), else keeps the one it has (OVS would
            # re-add it under a new one).  Then new ports' requests.
            for name in names:
                wanted = requests.get(name)
                if name in kept or name not in old or wanted is None:
                    continue
                number = wanted if wanted not in taken else old[name]
                if number not in taken:
                    kept[name] = number
                    taken.add(number)
            for name in names:
                wanted = requests.get(name)
                if name not in old and wanted is not None and wanted not in taken:
                    kept[name] = wanted
                    taken.add(wanted)
            for name in names:
                if name in kept:
                    continue
                n = 1
                while n in taken:
                    n += 1
                kept[name] = n
                taken.add(n)
            numbers[bridge] = {name: kept[name] for name in names}
        self._numbers = numbers
        return numbers
