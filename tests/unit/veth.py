"""Helpers for tests on real veth pairs: one end here, the other in a private namespace.

The peer end is driven through raw sockets created inside its namespace by
switching this thread there with setns(2) for a moment (a socket stays in
the namespace it was created in), which is much faster than a helper
process per operation.  The ``make_pair`` and ``make_netdev`` fixtures
(conftest.py) build on these.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import attrs

from pyvswitchd.netdev.afpacket import AfPacketNetdev

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 3
SO_RCVBUFFORCE = 33
ETH_TYPE_TEST = 0x88B5  # IEEE local experimental: nothing else on the link uses it
IFF_PROMISC = 0x100
_libc = ctypes.CDLL(None, use_errno=True)
_ids = itertools.count()


def next_id() -> int:
    """A number no other pair of this test run has."""
    return next(_ids)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, check=check, capture_output=True)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run this thread in network namespace ``name`` for the block."""
    back = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            yield
        finally:
            if _libc.setns(back, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(back)


def disable_ipv6(ifname: str) -> None:
    # Keeps router solicitations and DAD probes off the link; the path resolves
    # in the namespace of whoever opens it.
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as f:
        f.write("1")


@attrs.define
class Pair:
    """A veth pair: ``host`` here, ``peer`` in namespace ``ns``."""

    host: str
    peer: str
    ns: str
    sockets: list[socket.socket] = attrs.Factory(list)

    def peer_socket(self) -> socket.socket:
        """A non-blocking raw socket on the peer end, seeing everything but what it sends.

        Its 16 MiB receive buffer holds a few thousand frames, so a test may
        send them all before reading.
        """
        with netns(self.ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        sock.bind((self.peer, ETH_P_ALL))
        sock.setblocking(False)
        self.sockets.append(sock)
        return sock

    def in_ns(self, *args: str) -> None:
        run("ip", "netns", "exec", self.ns, *args)


def frame(i: int, size: int = 64, *, vlan: int | None = None) -> bytes:
    """A test frame numbered ``i`` (EtherType ETH_TYPE_TEST), ``size`` bytes in all."""
    head = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    head += struct.pack("!HI", ETH_TYPE_TEST, i)
    return head + bytes((i + k) & 0xFF for k in range(size - len(head)))


def iface_flags(ifname: str) -> int:
    with open(f"/sys/class/net/{ifname}/flags") as f:
        return int(f.read(), 16)


def is_test(data: bytes) -> bool:
    return data[12:14] == b"\x88\xb5" or data[16:18] == b"\x88\xb5"


def recv_frames(nd: AfPacketNetdev, n: int, timeout: float = 2.0, qid: int = 0) -> list[bytes]:
    """Test frames from ``nd``: ``n`` of them, then whatever else comes within 30 ms."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        batch = nd.recv(qid)
        assert len(batch) <= 32
        got += [p.data for p in batch if is_test(p.data)]
        if not batch:
            time.sleep(0.001)
    settle = time.monotonic() + 0.03
    while time.monotonic() < settle:
        got += [p.data for p in nd.recv(qid) if is_test(p.data)]
        time.sleep(0.002)
    return got


def peer_frames(sock: socket.socket, n: int, timeout: float = 2.0) -> list[bytes]:
    """Test frames arriving on ``sock``: ``n`` of them, then whatever else comes in 30 ms."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    settle: float | None = None
    while time.monotonic() < (settle or deadline):
        try:
            data = sock.recv(70000)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        if is_test(data):
            got.append(data)
            if len(got) >= n and settle is None:
                settle = time.monotonic() + 0.03
    return got


class FakeLog:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, msg: str, *, rl: object = None) -> None:
        self.warnings.append(msg)
