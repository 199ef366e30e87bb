"""What the datapath knows of each configured interface, as OVSDB reports it.

ovs-vswitchd writes into each Interface row the state of the device behind
it (``ofport``, ``error``, ``link_state``, ``admin_state``, ``mtu``,
``mac_in_use``, ``ifindex``, ``statistics``) and into each Bridge row its
``datapath_id``.  :func:`interface_status` reads the same facts from this
datapath, one :class:`InterfaceStatus` per configured interface, opened or
not: an interface that could not be opened has ``ofport`` -1 and its
error, as in OVS.

Kernel devices (``system``, ``afpacket``, ``tap``, ``internal``) are read
from sysfs, which is memory and answers at once.  Devices this process
simulates (``dummy``, ``dummy-pmd``, ``traffic-source``...) are always up,
with a 1500-byte MTU and a locally administered MAC derived from their
name, so it is the same in every run.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import attrs

from .dp_ports import REAL_NETDEV_TYPES
from .stats_block import PORT_FIELDS

if TYPE_CHECKING:
    from .dp import Datapath
    from .port import Port

SYSFS_NET = "/sys/class/net"

#: The MTU simulated devices report.
DEFAULT_MTU = 1500

#: Counters OVS writes to Interface ``statistics``: every one this datapath counts.
STATISTICS = PORT_FIELDS


@attrs.frozen
class InterfaceStatus:
    """One interface's state, in the terms of OVSDB's Interface columns."""

    name: str
    bridge: str
    #: OpenFlow port number; -1 when the interface could not be opened.
    ofport: int
    error: str | None = None
    link_state: str | None = None
    admin_state: str | None = None
    mtu: int | None = None
    mac_in_use: str | None = None
    ifindex: int | None = None


def simulated_mac(name: str) -> str:
    """A stable, locally administered MAC for a device that has none of its own."""
    digest = zlib.crc32(name.encode()).to_bytes(4, "big")
    return "aa:55:" + ":".join(f"{b:02x}" for b in digest)


def bridge_datapath_id(bridge: str) -> str:
    """The Bridge ``datapath_id``: 16 hex digits, the bridge port's MAC in the low 48 bits."""
    return "0000" + simulated_mac(bridge).replace(":", "")


def _sysfs(name: str, attribute: str) -> str | None:
    try:
        with open(f"{SYSFS_NET}/{name}/{attribute}", encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _kernel_device(name: str) -> dict[str, object]:
    """Link, admin state, MTU, MAC and ifindex of kernel device ``name`` (empty when gone)."""
    flags = _sysfs(name, "flags")
    if flags is None:
        return {}
    up = bool(int(flags, 16) & 0x1)  # IFF_UP
    carrier = _sysfs(name, "carrier") == "1" if up else False
    found: dict[str, object] = {
        "admin_state": "up" if up else "down",
        "link_state": "up" if carrier else "down",
    }
    for key, attribute in (("mtu", "mtu"), ("ifindex", "ifindex")):
        text = _sysfs(name, attribute)
        if text is not None and text.isdigit():
            found[key] = int(text)
    mac = _sysfs(name, "address")
    if mac:
        found["mac_in_use"] = mac
    return found


def _opened(port: Port, bridge: str, ofport: int) -> InterfaceStatus:
    error = port.netdev.error
    if port.type in REAL_NETDEV_TYPES:
        device = _kernel_device(port.name) if error is None else {}
        return InterfaceStatus(
            name=port.name,
            bridge=bridge,
            ofport=ofport,
            error=error,
            link_state=str(device.get("link_state", "down")),
            admin_state=str(device.get("admin_state", "down")),
            mtu=device.get("mtu"),  # type: ignore[arg-type]
            mac_in_use=device.get("mac_in_use"),  # type: ignore[arg-type]
            ifindex=device.get("ifindex", port.netdev.ifindex or None),  # type: ignore[arg-type]
        )
    return InterfaceStatus(
        name=port.name,
        bridge=bridge,
        ofport=ofport,
        error=error,
        link_state="down" if error else "up",
        admin_state="up",
        mtu=DEFAULT_MTU,
        mac_in_use=simulated_mac(port.name),
        ifindex=0,
    )


def interface_status(dp: Datapath) -> dict[str, InterfaceStatus]:
    """Interface name -> its state, for every interface of every bridge."""
    numbers = dp.ofports.of_ports(dp.ports, dp.bridges)
    found: dict[str, InterfaceStatus] = {}
    for no in sorted(dp.ports):
        port = dp.ports[no]
        bridge = port.bridge
        if bridge is None or bridge not in numbers:
            continue
        found[port.name] = _opened(port, bridge, numbers[bridge].get(port.name, -1))
    for name, (bridge, _pc) in dp.dp_ports.wanted.items():
        if name not in found:
            why = dp.dp_ports.errors.get(name, "not configured").removeprefix(f"{name}: ")
            found[name] = InterfaceStatus(name=name, bridge=bridge, ofport=-1, error=why)
    return found


def interface_statistics(dp: Datapath) -> dict[str, dict[str, int]]:
    """Interface name -> OVS's ``statistics`` map, summed over every PMD process."""
    dp.refresh_workers()
    stats: dict[str, dict[str, int]] = {}
    for port in dp.ports.values():
        if port.bridge is None:
            continue
        counts = dp.port_stats(port)
        stats[port.name] = {key: int(getattr(counts, key)) for key in STATISTICS}
    return stats
