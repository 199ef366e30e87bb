"""``dpif/show``, ``dpif/dump-dps`` and ``dpctl/dump-dps``: the datapath by bridge.

``dpif/show`` prints, per datapath, its lookup totals and then each bridge
(by name) with its ports (by name), as OVS's ofproto layer shows them::

    netdev@ovs-netdev: hit:12 missed:3
      br0:
        br0 65534/1: (dummy-internal)
        p0 1/2: (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0)

Each port reads ``NAME OFPORT/DPPORT: (TYPE[: CONFIG])``.  This switch has
no OpenFlow, so the OpenFlow port numbers are given here the way OVS gives
them when none is requested: the bridge's own port is 65534 (OpenFlow's
LOCAL), every other port the lowest number from 1 not taken in its bridge,
in the order the ports are first seen (by datapath port number), kept for
as long as the port stays in the bridge (:class:`OfportNumbers`).  CONFIG
is what ``dpctl/show`` prints after the type.

The JSON form is OVS's: ``{DATAPATH: {"stats": {"hit", "missed"},
"bridges": {BRIDGE: {PORT: {"ofport", "port_no", "type"[, "config"]}}}}}``
with every number a string.  ``dpif/dump-dps`` lists ``TYPE@BRIDGE`` per
bridge; ``dpctl/dump-dps`` lists the datapaths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..control.registry import CommandContext, CommandRegistry, Reply
from .dp import DP_TYPE

if TYPE_CHECKING:
    from .dp import Datapath
    from .port import Port

#: OpenFlow's number for a bridge's own port.
OFPP_LOCAL = 65534

#: The datapath's (hit, missed, lost) lookup totals.
Lookups = Callable[["Datapath"], tuple[int, int, int]]


class OfportNumbers:
    """Stable OpenFlow-style port numbers, per bridge, for ``dpif/show``."""

    def __init__(self) -> None:
        #: bridge -> port name -> number.
        self._numbers: dict[str, dict[str, int]] = {}

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


def port_config(port: Port) -> dict[str, str]:
    """The ``key=value`` pairs ``dpctl/show`` prints after a port's type."""
    config: dict[str, str] = {}
    for item in port.netdev.status().split(", "):
        key, sep, value = item.partition("=")
        if sep:
            config[key] = value.strip('"')
    return config


def _bridge_ports(dp: Datapath) -> dict[str, list[Port]]:
    """Each bridge's ports, by datapath port number."""
    members: dict[str, list[Port]] = {name: [] for name in sorted(dp.bridges)}
    for no in sorted(dp.ports):
        port = dp.ports[no]
        if port.bridge in members:
            members[port.bridge].append(port)
    return members


def dpif_show(dp: Datapath, ofports: OfportNumbers, lookups: Lookups) -> Reply:
    """``dpif/show`` as text and as OVS's JSON object."""
    if not dp.bridges:
        return Reply.structured("", {})
    dp.refresh_workers()
    hit, missed, _ = lookups(dp)
    members = _bridge_ports(dp)
    numbers = ofports.update({b: [p.name for p in ports] for b, ports in members.items()})
    name = f"{DP_TYPE}@{dp.name}"
    lines = [f"{name}: hit:{hit} missed:{missed}"]
    bridges: dict[str, object] = {}
    for bridge, ports in members.items():
        lines.append(f"  {bridge}:")
        entries: dict[str, object] = {}
        for port in sorted(ports, key=lambda p: p.name):
            ofport = numbers[bridge][port.name]
            status = port.netdev.status()
            kind = f"{port.type}: {status}" if status else port.type
            lines.append(f"    {port.name} {ofport}/{port.port_no}: ({kind})")
            entry: dict[str, object] = {
                "ofport": str(ofport),
                "port_no": str(port.port_no),
                "type": port.type,
            }
            config = port_config(port)
            if config:
                entry["config"] = config
            entries[port.name] = entry
        bridges[bridge] = entries
    data = {name: {"stats": {"hit": str(hit), "missed": str(missed)}, "bridges": bridges}}
    return Reply.structured("\n".join(lines) + "\n", data)


def register_dpif_show_commands(dp: Datapath, registry: CommandRegistry, lookups: Lookups) -> None:
    """Register ``dpif/show``, ``dpif/dump-dps`` and ``dpctl/dump-dps``."""
    ofports = OfportNumbers()

    def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        return dpif_show(dp, ofports, lookups)

    def dump_dps(ctx: CommandContext, args: Sequence[str]) -> str:
        return "".join(f"{DP_TYPE}@{bridge}\n" for bridge in sorted(dp.bridges))

    def dpctl_dump_dps(ctx: CommandContext, args: Sequence[str]) -> str:
        return f"{DP_TYPE}@{dp.name}\n" if dp.exists else ""

    registry.register("dpif/show", "", 0, 0, show)
    registry.register("dpif/dump-dps", "", 0, 0, dump_dps)
    registry.register("dpctl/dump-dps", "", 0, 0, dpctl_dump_dps)
