"""``dpif/show``, ``dpif/dump-dps`` and ``dpctl/dump-dps``: the datapath by bridge.

``dpif/show`` prints, per datapath, its lookup totals and then each bridge
(by name) with its ports (by name), as OVS's ofproto layer shows them::

    netdev@ovs-netdev: hit:12 missed:3
      br0:
        br0 65534/1: (dummy-internal)
        p0 1/2: (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0)

Each port reads ``NAME OFPORT/DPPORT: (TYPE[: CONFIG])``.  This switch has
no OpenFlow: OFPORT is the number :mod:`.ofport` gives (the one written to
OVSDB's Interface ``ofport`` column too).  CONFIG is what ``dpctl/show``
prints after the type.

The JSON form is OVS's: ``{DATAPATH: {"stats": {"hit", "missed"},
"bridges": {BRIDGE: {PORT: {"ofport", "port_no", "type"[, "config"]}}}}}``
with every number a string.  ``dpif/dump-dps`` lists ``TYPE@BRIDGE`` per
bridge; ``dpctl/dump-dps`` lists the datapaths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..control.registry import CommandContext, CommandRegistry, Reply
from .dp_ports import DP_TYPE
from .ofport import OfportNumbers, bridge_members

if TYPE_CHECKING:
    from .dp import Datapath
    from .port import Port

#: The datapath's (hit, missed, lost) lookup totals.
Lookups = Callable[["Datapath"], tuple[int, int, int]]


def port_config(port: Port) -> dict[str, str]:
    """The ``key=value`` pairs ``dpctl/show`` prints after a port's type."""
    config: dict[str, str] = {}
    for item in port.netdev.status().split(", "):
        key, sep, value = item.partition("=")
        if sep:
            config[key] = value.strip('"')
    return config


def dpif_show(dp: Datapath, ofports: OfportNumbers, lookups: Lookups) -> Reply:
    """``dpif/show`` as text and as OVS's JSON object."""
    if not dp.bridges:
        return Reply.structured("", {})
    dp.refresh_workers()
    hit, missed, _ = lookups(dp)
    members = bridge_members(dp.ports, dp.bridges)
    numbers = ofports.of_ports(dp.ports, dp.bridges)
    name = dp.full_name
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
    ofports = dp.ofports

    def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        return dpif_show(dp, ofports, lookups)

    def dump_dps(ctx: CommandContext, args: Sequence[str]) -> str:
        return "".join(f"{DP_TYPE}@{bridge}\n" for bridge in sorted(dp.bridges))

    def dpctl_dump_dps(ctx: CommandContext, args: Sequence[str]) -> str:
        return f"{dp.full_name}\n" if dp.exists else ""

    registry.register("dpif/show", "", 0, 0, show)
    registry.register("dpif/dump-dps", "", 0, 0, dump_dps)
    registry.register("dpctl/dump-dps", "", 0, 0, dpctl_dump_dps)
