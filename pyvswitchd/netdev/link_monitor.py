"""Kernel network interfaces appearing and going: rtnetlink's link notifications.

A :class:`LinkMonitor` is a NETLINK_ROUTE socket subscribed to the
RTMGRP_LINK multicast group: the kernel sends it an RTM_NEWLINK message
whenever an interface is created or changes (flags, name, carrier) and an
RTM_DELLINK when one is deleted.  :meth:`LinkMonitor.receive` waits
through trio (no thread) and returns the events of what it read;
:func:`parse_link_messages` is the decoder.  The datapath acts on them
(:mod:`pyvswitchd.datapath.link_tracker`), as OVS's if-notifier does.

When the kernel had to drop notifications because the socket's buffer
was full (ENOBUFS), :meth:`LinkMonitor.receive` returns None: the caller
must look at every interface it cares about again.
"""

from __future__ import annotations

import errno
import socket
import struct

import attrs
import trio

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
IFLA_IFNAME = 3
#: Room for notification bursts (a veth pair going away is several messages).
_RCVBUF = 1 << 20
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, pad, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # len, type


@attrs.frozen
class LinkEvent:
    """One notification: interface ``ifindex`` (``name``) was created/changed or deleted."""

    deleted: bool
    ifindex: int
    name: str
    flags: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_link_messages(data: bytes) -> list[LinkEvent]:
    """The RTM_NEWLINK / RTM_DELLINK events in ``data``; anything else (or malformed) is skipped."""
    events: list[LinkEvent] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        body = offset + _NLMSGHDR.size
        if kind in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSGHDR.size + _IFINFOMSG.size:
            _, _, index, flags, _ = _IFINFOMSG.unpack_from(data, body)
            name = _ifname(data, body + _IFINFOMSG.size, offset + length)
            events.append(LinkEvent(kind == RTM_DELLINK, index, name, flags))
        offset += _align(length)
    return events


def _ifname(data: bytes, start: int, end: int) -> str:
    """The IFLA_IFNAME attribute between ``start`` and ``end`` ("" if none)."""
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, start)
        if length < _RTATTR.size or start + length > end:
            break
        if kind == IFLA_IFNAME:
            raw = data[start + _RTATTR.size : start + length]
            return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        start += _align(length)
    return ""


class LinkMonitor:
    """A subscription to the link notifications of the daemon's network namespace."""

    def __init__(self) -> None:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((0, RTMGRP_LINK))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = trio.socket.from_stdlib_socket(sock)

    async def receive(self) -> list[LinkEvent] | None:
        """The next notifications (waits for some); None when some were lost."""
        while True:
            try:
                data = await self._sock.recv(65536)
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    return None
                raise
            events = parse_link_messages(data)
            if events:
                return events

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LinkMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
