"""The Open_vSwitch database's rows as the configuration document.

ovs-vswitchd reads its tables one row at a time and takes what it can:
a port it cannot use gets an error in its Interface row, a key it does not
know is ignored, and the rest of the switch is configured regardless.
:func:`read_tables` does the same for pyvswitchd.  It produces the document
:func:`pyvswitchd.config.from_dict` takes (the TOML file's shape), built
only from what passed the same checks a file gets, and sets aside each
refused interface with the error to write into its row.

The rows are the IDL's (``ovs.db.idl.Row``) but only their attributes are
used, so any object with the same attribute names will do.

What maps to what, in OVS's terms:

- Open_vSwitch ``other_config`` → ``[other_config]`` (keys pyvswitchd does
  not know are ignored, as ovs-vswitchd ignores them).
- Bridge with ``datapath_type=netdev`` (or ``dummy``, the userspace
  datapath of OVS's own tests) → ``[[bridge]]``: ``name``, ``datapath_type``,
  ``other_config`` (``mac-aging-time``, ``mac-table-size``, ...).  A bridge
  of another datapath type (the kernel's) is not this switch's and is left
  alone; one datapath runs every bridge, so bridges whose type differs from
  the first one's are refused.
- Port with one Interface → ``[[bridge.port]]``: the Interface's ``name``,
  ``type`` (empty: ``system``), ``options`` and ``other_config``
  (``pmd-rxq-affinity``).  The Port named after its bridge is the bridge's
  own port, which the datapath creates itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .. import config as config_mod
from ..config import DATAPATH_TYPES, DEFAULT_DATAPATH_TYPE, ConfigError, OtherConfig

#: Checks a bridge and its ports beyond the schema (netdev types and options):
#: ConfigError when refused.  Called with one bridge and at most one port.
PortCheck = Callable[[config_mod.Config], object]

#: The ``[other_config]`` keys the loader knows.
_OTHER_CONFIG_KEYS = frozenset(f.metadata["key"] for f in attrs.fields(OtherConfig))


@attrs.frozen
class DbConfig:
    """What the database says, ready for the loader, and what was set aside."""

    #: The configuration document (``other_config``, ``bridge``).
    document: dict[str, Any]
    #: Interface name -> why it is not configured (written to its ``error`` column).
    rejected: dict[str, str]
    #: Bridges of another datapath type.
    foreign_bridges: tuple[str, ...]
    #: Other refusals, for the log (a bad other_config value, a bridge name).
    warnings: tuple[str, ...]
    #: ``next_cfg`` of the Open_vSwitch row when read.
    next_cfg: int


def _one(value: Any, default: Any) -> Any:
    """An optional column's value: the IDL gives a list of zero or one item."""
    if isinstance(value, list):
        return value[0] if value else default
    return value


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value or {}).items()}


def datapath_type(bridge: Any) -> str:
    """A Bridge row's datapath type (OVS reads an empty one as ``system``, the kernel's)."""
    return str(bridge.datapath_type or "system")


def root_row(rows: Iterable[Any]) -> Any | None:
    """The Open_vSwitch table's one row (None while the table is empty)."""
    return next(iter(rows), None)


def fingerprint(root: Any) -> tuple[Any, ...]:
    """Every value :func:`read_tables` reads, cheaply: equal means nothing to re-read.

    The IDL reports a change for every row update, the daemon's own
    write-back (statistics every few seconds) included; this tells them
    apart from configuration changes without re-checking every port.
    """

    def items(value: Any) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(_strings(value).items()))

    bridges = []
    for bridge in root.bridges:
        ports = []
        for port in bridge.ports:
            ifaces = tuple(
                (
                    str(i.name),
                    str(i.type),
                    items(i.options),
                    items(i.other_config),
                    _one(i.ofport_request, None),
                )
                for i in port.interfaces
            )
            ports.append((str(port.name), ifaces))
        bridges.append(
            (
                str(bridge.name),
                str(bridge.datapath_type),
                items(bridge.other_config),
                tuple(sorted(ports)),
            )
        )
    return (_one(root.next_cfg, 0), items(root.other_config), tuple(sorted(bridges)))


def read_tables(root: Any, check_port: PortCheck | None = None) -> DbConfig:
    """Read the configuration hanging from ``root``, the Open_vSwitch row.

    ``check_port``, given a one-port configuration, raises ConfigError
    when the port's type or options are refused (the daemon passes the
    datapath's netdev check).
    """
    warnings: list[str] = []
    other, other_warnings = _other_config(_strings(root.other_config))
    warnings += other_warnings
    rejected: dict[str, str] = {}
    foreign: list[str] = []
    bridges: list[dict[str, Any]] = []
    seen_ports: set[str] = set()
    running: str | None = None  # the datapath type of the first bridge of ours
    for bridge in sorted(root.bridges, key=lambda b: str(b.name)):
        name = str(bridge.name)
        dp_type = datapath_type(bridge)
        if dp_type not in DATAPATH_TYPES:
            foreign.append(name)
            continue
        if running is not None and dp_type != running:
            warnings.append(
                f"bridge {name} not configured: datapath_type {dp_type}, but this daemon "
                f"runs one datapath, of type {running}"
            )
            _reject_all(bridge, name, f"bridge {name} is not configured", rejected)
            continue
        doc: dict[str, Any] = {"name": name, "other_config": _strings(bridge.other_config)}
        if dp_type != DEFAULT_DATAPATH_TYPE:
            doc["datapath_type"] = dp_type
        try:
            alone = config_mod.from_dict({"bridge": [doc]}, "ovsdb")
            if check_port is not None:
                check_port(alone)  # the bridge's own port (other_config:local-port-type)
        except ConfigError as exc:
            warnings.append(f'bridge "{name}" not configured: {_local(exc)}')
            _reject_all(bridge, name, f"bridge {name} is not configured", rejected)
            continue
        running = dp_type
        ports: list[dict[str, Any]] = []
        for port in sorted(bridge.ports, key=lambda p: str(p.name)):
            entry = _port(name, port, other, rejected, check_port, seen_ports)
            if entry is not None:
                ports.append(entry)
        doc["port"] = ports
        bridges.append(doc)
    return DbConfig(
        document={"other_config": other, "bridge": bridges},
        rejected=rejected,
        foreign_bridges=tuple(foreign),
        warnings=tuple(warnings),
        next_cfg=int(_one(root.next_cfg, 0) or 0),
    )


def _reject_all(bridge: Any, name: str, why: str, rejected: dict[str, str]) -> None:
    for port in bridge.ports:
        for iface in port.interfaces:
            if str(iface.name) != name:
                rejected[str(iface.name)] = why


def _other_config(raw: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The keys the loader knows, each checked alone so one bad value costs only itself."""
    kept: dict[str, str] = {}
    warnings: list[str] = []
    for key, value in sorted(raw.items()):
        if key not in _OTHER_CONFIG_KEYS:
            continue  # another OVS feature's key (dpdk-init, vlan-limit...): not ours
        try:
            config_mod.from_dict({"other_config": {key: value}}, "ovsdb")
        except ConfigError as exc:
            warnings.append(f"Open_vSwitch {_local(exc)}; ignored")
            continue
        kept[key] = value
    return kept, warnings


def _port(
    bridge: str,
    port: Any,
    other: dict[str, str],
    rejected: dict[str, str],
    check_port: PortCheck | None,
    seen: set[str],
) -> dict[str, Any] | None:
    interfaces = list(port.interfaces)
    pname = str(port.name)
    if pname == bridge:
        return None  # the bridge's own port: the datapath makes it
    if len(interfaces) != 1:
        for iface in interfaces:
            rejected[str(iface.name)] = (
                f"port {pname} has {len(interfaces)} interfaces: bonds are not supported"
            )
        return None
    iface = interfaces[0]
    name = str(iface.name)
    entry: dict[str, Any] = {
        "name": name,
        "type": str(iface.type or "system"),
        "options": _strings(iface.options),
        "other_config": _strings(iface.other_config),
    }
    request = _one(iface.ofport_request, None)
    if request is not None:
        entry["ofport_request"] = request
    if name in seen:
        rejected[name] = "interface is in more than one bridge"
        return None
    try:
        cfg = config_mod.from_dict(
            {"other_config": other, "bridge": [{"name": bridge, "port": [entry]}]}, "ovsdb"
        )
        if check_port is not None:
            check_port(cfg)
    except ConfigError as exc:
        rejected[name] = _local(exc)
        return None
    seen.add(name)
    return entry


def _local(exc: ConfigError) -> str:
    """The loader's message without its "where" prefix for the source document."""
    return str(exc).removeprefix("ovsdb: ")
