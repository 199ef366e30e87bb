"""Where the OVSDB server is: ``--db`` and ``[daemon] db``.

The syntax is the one every OVS tool takes for an active connection:
``unix:PATH``, ``tcp:HOST:PORT`` or ``ssl:HOST:PORT`` (an IPv6 host in
brackets).  Only the shape is checked here: a server that is not there yet
is not an error, the daemon connects to it when it appears, as
ovs-vswitchd does.
"""

from __future__ import annotations

from typing import Any

EXPECTED = 'expected "unix:PATH", "tcp:HOST:PORT", "ssl:HOST:PORT" or "none"'


def _host_port(rest: str) -> bool:
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
    else:
        host, sep, port = rest.rpartition(":")
        if ":" in host:  # an IPv6 address must be in brackets to carry a port
            return False
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def parse_db_remote(value: Any) -> str | None:
    """The remote as given, or None for ``none``; ValueError when it cannot be one."""
    if not isinstance(value, str):
        raise ValueError(EXPECTED)
    if value.lower() == "none":
        return None
    if "," in value:
        raise ValueError(f"{EXPECTED}: one server, not a list")
    method, sep, rest = value.partition(":")
    if sep and method == "unix" and rest and "\0" not in rest:
        return value
    if sep and method in ("tcp", "ssl") and _host_port(rest):
        return value
    if method in ("punix", "ptcp", "pssl"):
        raise ValueError(
            f"{EXPECTED}: pyvswitchd connects to the database server, it does not listen"
        )
    raise ValueError(EXPECTED)
