"""The transmit kick of a PACKET_TX_RING: in the daemon's thread, or in a kernel worker.

Frames queued in a TX ring leave when the socket is written to (zero
bytes).  That write runs the kernel's transmit path in the caller's thread;
on a veth it also runs the receiving namespace's stack (for TCP: the
receiver's ACK processing, then the sender's next segments).  Measured with
one TCP stream between namespaces, that kernel work was 40 % of the
daemon's single thread while the machine's other CPU sat mostly idle.

:class:`TxKick` can hand the write to an io_uring worker instead
(:mod:`.uring`), which the scheduler runs on an idle CPU.  The cost is a
thread wake-up in the kernel -- tens of microseconds on a VM -- added to
every packet's latency, which a lone ping would notice.  Hence the modes
(the afpacket option ``tx-kick``):

``sync``
    Always write in the daemon's thread (the lowest latency, and what every
    kick needing its result at once does anyway: see :meth:`TxKick.kick_now`).
``async``
    Always through io_uring, when available.
``auto`` (default)
    Through io_uring while the port moves bulk data -- bytes received plus
    bytes queued for transmit at :data:`BUSY_BYTES` per :data:`WINDOW_NS`
    or faster over the last window (which lasts from one kick to the first
    kick a window later) -- and synchronously otherwise.  Bytes, because the
    kernel's work behind a kick grows with them: a veth's receiving stack
    copies every byte, and for TCP acknowledges and refills.  Measured
    through two namespaces: one TCP stream gained 40 % with worker kicks,
    while a flood of 64-byte UDP frames lost 10-20 % (little kernel work
    per frame, and the other CPU is already the sender's); a ping's
    latency grows by a worker wake-up.  Received bytes count too because
    of TCP: the port that carries a stream's ACKs transmits little, yet a
    synchronous kick there runs the sender's stack -- the ACKs'
    processing, then its next segments -- in the daemon's thread.

The workers run under SCHED_BATCH (:func:`.uring.batch_workers`, checked
about once a second), so that waking one never preempts the daemon's
thread: that would run the kernel's work on the daemon's CPU after all.
Measured with one TCP stream: +12 % (median of 4 alternating runs).

At most one asynchronous kick is in flight per ring.  A kick asked for
while one runs is skipped: the running one may already have passed the
newest frames, which the netdev's ``process_async`` notices (frames still
TP_STATUS_SEND_REQUEST) and kicks for again.  Where io_uring is unavailable
every mode works as ``sync``; :attr:`TxKick.unavailable` says why.
"""

from __future__ import annotations

import errno
import os
import time
from typing import TYPE_CHECKING

from .uring import WriteRing, batch_workers, open_write_ring

if TYPE_CHECKING:
    from .provider import NetdevStats

MODES = ("auto", "async", "sync")
#: ``auto``: the least time over which a port's traffic is measured, ns.
WINDOW_NS = 1_000_000
#: ``auto``: bytes (received plus queued for transmit) per WINDOW_NS from which a port counts
#: as busy: 32 MB/s, which one TCP stream through this switch exceeds some
#: fourfold and a 64-byte UDP flood stays well below (~100 kpps: ~11 MB/s).
BUSY_BYTES = 32_000
#: How often the io-wq workers' scheduling policy is checked, ns (see
#: :func:`.uring.batch_workers`); the first check follows the first
#: asynchronous kick by WORKER_FIRST_CHECK_NS.
WORKER_CHECK_NS = 1_000_000_000
WORKER_FIRST_CHECK_NS = 1_000_000

_write = os.write
_now = time.monotonic_ns


class TxKick:
    """Kicks for the TX ring of socket ``fd`` (the caller keeps ``fd`` open while this lives).

    ``mode`` is what was asked for; ``unavailable`` is "" or why io_uring
    could not be set up (then every kick is synchronous).  ``async_kicks``
    and ``sync_kicks`` count kicks made each way.  ``stats`` are the port's
    counters, whose rx_bytes ``auto`` watches along with the bytes passed to
    :meth:`kick` (without stats ``auto`` never finds the port busy).  Sent
    bytes would lag: they count at completion, and completions are read
    only once a kick is over.
    """

    def __init__(self, fd: int, mode: str, stats: NetdevStats | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"bad tx kick mode {mode!r}")
        self.mode = mode
        self.unavailable = ""
        self._fd = fd
        self._ring: WriteRing | None = None
        if mode != "sync":
            self._ring, self.unavailable = open_write_ring(fd)
        self.async_kicks = 0
        self.sync_kicks = 0
        self._auto = mode == "auto"
        self._busy = mode == "async"
        self._window_start = 0
        self._stats = stats
        self._queued = 0  # bytes passed to kick(), ever
        self._window_bytes = 0  # rx_bytes + _queued when the window began
        self._worker_check = 0  # 0: no asynchronous kick yet

    @property
    def effective(self) -> str:
        """The mode in use: ``sync`` when io_uring is unavailable."""
        return self.mode if self._ring is not None else "sync"

    def kick(self, queued: int = 0) -> int:
        """Get the kernel transmitting the ring's queued frames; 0 or an errno.

        ``queued``: bytes the caller queued since its last kick.  The errno
        may be that of an earlier asynchronous kick, reported now.
        """
        ring = self._ring
        if ring is None:
            return self._write()
        self._queued += queued
        if ring.busy:
            result = ring.poll()
            if result is None:
                return 0
            if result < 0:  # report before starting another: the caller may unwind the ring
                return -result
        now = _now()
        if self._auto:
            elapsed = now - self._window_start
            if elapsed >= WINDOW_NS and self._stats is not None:
                # A rate, not a count: windows stretch when kicks come seldom, and
                # in-thread kicks that take long must not make a busy port look idle.
                total = self._stats.rx_bytes + self._queued
                self._busy = (total - self._window_bytes) * WINDOW_NS >= BUSY_BYTES * elapsed
                self._window_start = now
                self._window_bytes = total
        if not self._busy:
            return self._write()
        try:
            ring.submit()
        except OSError:  # io_uring out of resources for now: do it here
            return self._write()
        self.async_kicks += 1
        if now >= self._worker_check:
            if self._worker_check:
                batch_workers()
                self._worker_check = now + WORKER_CHECK_NS
            else:
                self._worker_check = now + WORKER_FIRST_CHECK_NS
        return 0

    @property
    def running(self) -> bool:
        """Whether an asynchronous kick is still at work (the ring's frames are moving)."""
        return self._ring is not None and self._ring.running

    def kick_now(self) -> int:
        """Kick synchronously, after any kick in flight finished; 0 or an errno.

        For callers that need the kernel's pass over the ring done on return:
        a full ring, frames that must leave before a plain send, a forced
        completion.
        """
        err = self.settle()
        return self._write() or err

    def settle(self) -> int:
        """Wait for the kick in flight, if any; 0 or its errno.

        Needed before the caller takes back frames the kernel has not taken
        (``TxRing.unwind``): a running kick could be taking them.
        """
        ring = self._ring
        if ring is None or not ring.busy:
            return 0
        try:
            result = ring.wait()
        except OSError as exc:
            return exc.errno or errno.EIO
        return -result if result is not None and result < 0 else 0

    def close(self) -> None:
        """Wait for the kick in flight and release io_uring (idempotent)."""
        if self._ring is not None:
            self.settle()
            self._ring.close()
            self._ring = None

    def _write(self) -> int:
        self.sync_kicks += 1
        try:
            _write(self._fd, b"")
        except OSError as exc:
            return exc.errno or errno.EIO
        return 0
