"""The columns ovs-vswitchd keeps up to date, as this daemon fills them.

Each function returns ``{column: value}`` in the ``ovs`` IDL's Python
form (an optional column is a list of zero or one item, a map a dict), for
the columns the connected database's schema has.  The source compares
them with the row and writes only what differs, so a quiet switch sends
no transaction at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..datapath.interface_status import InterfaceStatus, bridge_datapath_id

#: What ovs-vswitchd writes to Bridge ``datapath_version`` for the userspace datapath.
USERSPACE_DATAPATH_VERSION = "<built-in>"

#: Interface columns refreshed on every pass (``statistics`` has its own period).
INTERFACE_COLUMNS = (
    "ofport",
    "error",
    "link_state",
    "admin_state",
    "mtu",
    "mac_in_use",
    "ifindex",
)


def _optional(value: object | None) -> list[Any]:
    return [] if value is None else [value]


def interface_columns(status: InterfaceStatus) -> dict[str, Any]:
    """An Interface row's status columns (``statistics`` aside)."""
    return {
        "ofport": [status.ofport],
        "error": _optional(status.error),
        "link_state": _optional(status.link_state),
        "admin_state": _optional(status.admin_state),
        "mtu": _optional(status.mtu),
        "mac_in_use": _optional(status.mac_in_use),
        "ifindex": _optional(status.ifindex),
    }


def rejected_columns(error: str) -> dict[str, Any]:
    """An Interface this daemon refused: no port, the reason in ``error``."""
    return {
        "ofport": [-1],
        "error": [error],
        "link_state": [],
        "admin_state": [],
        "mtu": [],
        "mac_in_use": [],
        "ifindex": [],
    }


def root_columns(
    *,
    iface_types: Iterable[str],
    version: str,
    db_version: str,
) -> dict[str, Any]:
    """The Open_vSwitch row's facts about this daemon (set once per connection)."""
    return {
        "datapath_types": ["netdev"],
        "iface_types": sorted(iface_types),
        "dpdk_initialized": False,
        "ovs_version": [version],
        "db_version": [db_version],
    }


def bridge_columns(bridge: str) -> dict[str, Any]:
    return {
        "datapath_id": [bridge_datapath_id(bridge)],
        "datapath_version": USERSPACE_DATAPATH_VERSION,
    }


def changed(row: Any, wanted: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Any]:
    """The entries of ``wanted`` that differ from ``row`` (only ``columns`` the row has)."""
    present = set(columns)
    diff: dict[str, Any] = {}
    for column, value in wanted.items():
        if column in present and getattr(row, column) != value:
            diff[column] = value
    return diff
