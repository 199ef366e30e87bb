"""The ``afpacket`` netdev in PMD worker processes: what the daemon exports, what a worker opens.

Receive.  The daemon passes the socket of each rx queue the worker polls
(a duplicate descriptor: the same socket, so the same PACKET_FANOUT
membership and the same ring), and the worker maps its ring.  No socket
joins the fanout group for a worker, so the kernel never steers frames to
a member nobody reads.  A ring has one reader at a time: the datapath
reloads the PMD that gives a queue up before the one that takes it.

The ring position goes from one reader to the next through
:class:`RxCursors`, a small shared memory file per device: a reader that
lets go of a queue (its worker closes the port, at a reload or when it
ends) writes where it stopped, and the next one starts exactly there, so a
queue that moves between PMDs loses no frame and repeats none.  A reader
that never wrote (its worker was killed) leaves the queue marked held: the
next one starts at the last position written and re-aligns with the kernel
by the ring's own resync rule (the oldest frame the kernel filled; see
``RxRingV2.check_step``).  What the killed worker had read and not yet
forwarded is lost with it, and with ``rx-ring=v3`` a block it had partly
read is read again whole.

Transmit.  The worker opens a transmit socket, TX ring and io_uring kicker
of its own on the interface, as the device does when it opens: OVS gives
each PMD a transmit queue of its own, and so no two processes share a ring
or a lock.  Completions go through the worker's deferred work ring as in
the daemon.  The worker binds by name, having checked that the name still
leads to the daemon's interface (same ifindex); it uses a TX ring and
io_uring only if the daemon could (so a missing io_uring is logged once,
by the daemon).

Errors.  The worker's side has an error state of its own: a vanished
interface is logged once by each PMD that notices (as ``netdev_linux``,
with the PMD's thread name), and the frames it drops count in that
worker's statistics, which the daemon adds to the port's.  The daemon's
side finds out for itself when its status is read (``dpctl/show``), by
the same ifindex check.  Opening never raises: a worker side that cannot
be set up (the interface went away meanwhile, no memory for a mapping) is
in the error state, so the PMD goes on with its other ports.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..odp.packet import Packet
from .pktring import PlainRx, RxPath, RxRingV2, RxRingV3
from .provider import NetdevStats

if TYPE_CHECKING:
    from .afpacket import AfPacketNetdev

#: Words per queue in :class:`RxCursors`: state, then the reader's position.
_WORDS = 4
_FREE, _HELD = 1, 2  # 0: never written
_RINGS: dict[str, type[RxRingV2] | type[RxRingV3]] = {"v2": RxRingV2, "v3": RxRingV3}


class RxCursors:
    """Each rx queue's ring position, in memory shared by the daemon and its PMD workers.

    Per queue: a state (never written, free: the position is where the last
    reader stopped, held: a reader has it), then the position
    (``RxPath.position``).  Readers hand a queue over at reloads, which the
    daemon orders through the worker channel, so plain loads and stores do.
    """

    def __init__(self, fd: int, n_rxq: int, *, keep_fd: bool) -> None:
        size = max(n_rxq * _WORDS * 4, mmap.PAGESIZE)
        self._mm: mmap.mmap | None = mmap.mmap(fd, size)
        self._words = memoryview(self._mm).cast("I")
        self.n_rxq = n_rxq
        #: The file, kept by the daemon to pass to workers (-1 in a worker).
        self.fd = fd if keep_fd else -1

    @classmethod
    def create(cls, n_rxq: int) -> RxCursors:
        fd = os.memfd_create("pyvswitchd-rx-cursors", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, max(n_rxq * _WORDS * 4, mmap.PAGESIZE))
            return cls(fd, n_rxq, keep_fd=True)
        except BaseException:
            os.close(fd)
            raise

    def put(self, qid: int, position: tuple[int, int, int]) -> None:
        """A reader lets go of ``qid`` at ``position``."""
        a = qid * _WORDS
        words = self._words
        words[a + 1], words[a + 2], words[a + 3] = position
        words[a] = _FREE

    def take(self, qid: int) -> tuple[tuple[int, int, int], bool]:
        """A reader takes ``qid``: the last position written, and whether its reader let go."""
        a = qid * _WORDS
        words = self._words
        position = (words[a + 1], words[a + 2], words[a + 3])
        free = words[a] == _FREE
        words[a] = _HELD
        return position, free

    def close(self) -> None:
        if self._mm is not None:
            self._words.release()
            self._mm.close()
            self._mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class NotPolled(RxPath):
    """An rx queue a worker's side of the device does not poll (another PMD does)."""

    version = ""
    mmapped = False

    def __init__(self, stats: NetdevStats) -> None:  # no socket: never read, never closed
        self.stats = stats
        self.losing = False
        self.empty_polls = 0
        self._mm = None
        self._views = ()

    def read(self) -> list[Packet]:
        return []


def release_cursors(cursors: RxCursors, paths: Sequence[RxPath]) -> None:
    """The device closes: a worker's side says where it stopped reading, then unmaps."""
    if cursors.fd < 0:  # a worker's copy
        for qid, path in enumerate(paths):
            if not isinstance(path, NotPolled) and qid < cursors.n_rxq:
                cursors.put(qid, path.position())
    cursors.close()


# -- the daemon's side --------------------------------------------------------------


def export_side(nd: AfPacketNetdev, qids: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
    """What a PMD worker needs to poll ``qids`` of ``nd`` and to transmit on it."""
    tso, kick = nd._wanted[2:]
    kicker = nd.kicker
    if kicker is None or kicker.unavailable:
        kick = "sync"
    state: dict[str, Any] = {
        "ifindex": nd.ifindex,
        "mtu": nd.mtu,
        "numa_id": nd.numa_id,
        "n_rxq": nd.n_rxq,
        "n_txq": nd.n_txq,
        "error": nd.error,
        # What the daemon managed to set up is what the worker tries.
        "wanted": (nd.rx_ring, nd.tx_ring, tso, kick),
        "queues": [],
    }
    paths = nd._rxqs
    if nd.error is not None or not paths:
        state["error"] = nd.error or f"device {nd.name} is not open"
        return state, []
    cursors = nd._cursors
    if cursors is None:
        cursors = nd._cursors = RxCursors.create(len(paths))
    fds = [cursors.fd]
    queues = []
    for qid in sorted(set(qids)):
        if not 0 <= qid < len(paths):
            continue
        path = paths[qid]
        if qid not in nd._exported:
            # The daemon's own reader (unit tests, or none at all) hands over.
            nd._exported.add(qid)
            cursors.put(qid, path.position())
        queues.append((qid, path.version, path.layout))
        fds.append(path.sock.fileno())
    state["queues"] = queues
    return state, fds


# -- the worker's side ----------------------------------------------------------------


def open_side(
    cls: type[AfPacketNetdev], name: str, state: Mapping[str, Any], fds: Sequence[int]
) -> AfPacketNetdev:
    """The worker's side of device ``name`` (see the module text); never raises."""
    nd = cls.__new__(cls)
    nd._init_fields()
    nd._init_base(name)
    nd._open = True
    nd.ifindex = state["ifindex"]
    nd.mtu = state["mtu"]
    nd.numa_id = nd.requested_numa_id = state["numa_id"]
    nd.n_rxq = nd.requested_n_rxq = state["n_rxq"]
    nd.n_txq = nd.requested_n_txq = state["n_txq"]
    rx_kind, tx_ring, tso, kick = state["wanted"]
    nd._wanted = (rx_kind, tx_ring, tso, kick)
    nd.rx_ring, nd.tso = rx_kind, tso
    socks = [socket.socket(fileno=fd) for fd in fds[1:]]
    if state["error"] is not None or not fds:
        for sock in socks:
            sock.close()
        if fds:
            os.close(fds[0])
        nd.error = state["error"] or f"device {name} is not open"
        nd.link_up = False
        return nd
    try:
        _open_rx(nd, state["queues"], fds[0], socks)
    except OSError as exc:
        nd._fail(f"cannot map an rx ring in this PMD ({exc.strerror or exc})")
        for sock in socks:  # the ones no rx path took
            sock.close()
        return nd
    try:
        if socket.if_nametoindex(name) != nd.ifindex:
            raise OSError(errno.ENODEV, "another interface has its name")
        nd._open_tx()
    except OSError as exc:
        nd._fail(f"device {name} disappeared ({exc.strerror or exc})")
    return nd


def _open_rx(
    nd: AfPacketNetdev, queues: Sequence[Any], cursor_fd: int, socks: list[socket.socket]
) -> None:
    """Map the rings of the exported queues and take their positions over."""
    try:
        cursors = RxCursors(cursor_fd, nd.n_rxq, keep_fd=False)
    finally:
        os.close(cursor_fd)
    nd._cursors = cursors
    paths: list[RxPath] = [NotPolled(nd.stats) for _ in range(nd.n_rxq)]
    nd._rxqs = paths
    for qid, version, layout in queues:
        sock = socks[0]
        sock.setblocking(False)
        ring = _RINGS.get(version)
        path: RxPath
        if ring is None:
            path = PlainRx(sock, nd.stats, vnet=nd.tso)
        else:
            path = ring(sock, nd.mtu, nd.stats, layout=tuple(layout))
        del socks[0]  # the path has it now
        paths[qid] = path
        if ring is None:
            continue
        position, free = cursors.take(qid)
        path.seek(position)
        if not free:  # its last reader ended without saying where
            moved = path.resync()
            nd._warn(
                f"{nd.name}: rx queue {qid}: taken over from a reader that ended abruptly"
                + (f", moved {moved} ring positions to the oldest frame" if moved else "")
            )
