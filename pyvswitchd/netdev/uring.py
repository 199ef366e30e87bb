"""A minimal io_uring, through ctypes, for one job: zero-length writes on one socket.

A PACKET_TX_RING transmits when its socket is written to; that write runs
the kernel's transmit path -- and, on a veth, the receiving namespace's
whole network stack -- in the calling thread.  :class:`WriteRing` hands the
write to io_uring with IOSQE_ASYNC instead, so the kernel runs it in one of
its own io-wq worker threads, which the scheduler can put on another CPU,
while the daemon's single Python thread goes on polling.  No userspace
thread is involved.

Why not a library: the ``liburing`` wheel on PyPI (2026.3.30) dies with
SIGILL in ``io_uring_queue_init`` on this project's build machine, and this
needs only three syscalls and three mappings.

One request is in flight at most (the caller checks :attr:`WriteRing.busy`),
so the rings are tiny and the submission entry is written once, at set-up:
a submit is a tail store plus ``io_uring_enter``.  Completions are read
from shared memory without a syscall.  On x86-64 (total store order) a
completion's result is visible once its tail is; elsewhere a stale result
could be read, which at worst delays the report of an error that the next
write meets again.

:func:`open_write_ring` returns None when io_uring is unavailable (kernel
too old, ``kernel.io_uring_disabled``, a seccomp filter): the caller falls
back to plain writes.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
from collections.abc import Callable
from typing import cast

# <linux/io_uring.h> and the x86-64 / generic syscall numbers (same on both).
_NR_IO_URING_SETUP = 425
_NR_IO_URING_ENTER = 426
_NR_IO_URING_REGISTER = 427
_IORING_REGISTER_IOWQ_AFF = 17
_IORING_OFF_SQ_RING = 0
_IORING_OFF_CQ_RING = 0x8000000
_IORING_OFF_SQES = 0x10000000
_IORING_ENTER_GETEVENTS = 1
_IORING_OP_WRITE = 23
_IOSQE_ASYNC = 1 << 4
_PARAMS_SIZE = 120
_SQE_SIZE = 64
_CQE_SIZE = 16
_SQE = struct.Struct("=BBHiQQIIQ")  # opcode, flags, ioprio, fd, off, addr, len, rw_flags, user_data
_PARAMS_HEAD = struct.Struct("=6I")  # sq_entries, cq_entries, flags, sq_thread_cpu/idle, features
_SQ_OFFSETS = struct.Struct("=7I")  # head, tail, ring_mask, ring_entries, flags, dropped, array
_CQ_OFFSETS = struct.Struct("=6I")  # head, tail, ring_mask, ring_entries, overflow, cqes
_ENTRIES = 2


def _libc_syscall() -> Callable[..., int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_long
    return cast("Callable[..., int]", func)


_syscall = _libc_syscall()


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


class WriteRing:
    """An io_uring whose only request is ``write(fd, b"")``, run by a kernel worker.

    :meth:`submit` starts one (``busy`` becomes True); :meth:`poll` returns its
    result once it finished -- what write(2) would return, or a negative
    errno (a packet socket returns the bytes its ring sent) -- and None
    before; :meth:`wait` blocks until it finished.  Not thread-safe: one
    owner, the daemon's thread.
    """

    def __init__(self, fd: int) -> None:
        if _syscall is None:
            raise OSError(errno.ENOSYS, "no syscall() in the C library")
        self._syscall = _syscall
        params = ctypes.create_string_buffer(_PARAMS_SIZE)
        ring_fd = _check(_syscall(_NR_IO_URING_SETUP, ctypes.c_uint(_ENTRIES), params))
        self.fd = ring_fd
        self.busy = False
        self._maps: list[mmap.mmap] = []
        self._views: list[memoryview] = []
        try:
            self._map(params.raw, fd)
        except BaseException:
            self.close()
            raise
        self.iowq_cpus = _iowq_elsewhere(_syscall, ring_fd)

    def _map(self, params: bytes, fd: int) -> None:
        sq_entries, cq_entries = _PARAMS_HEAD.unpack_from(params, 0)[:2]
        # (The SQ head is the kernel's: with one request in flight the ring never fills.)
        _, sq_tail, sq_mask, _, _, _, sq_array = _SQ_OFFSETS.unpack_from(params, 40)
        cq_head, cq_tail, cq_mask, _, _, cq_cqes = _CQ_OFFSETS.unpack_from(params, 80)
        flags = mmap.MAP_SHARED | mmap.MAP_POPULATE
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        sq = mmap.mmap(self.fd, sq_array + 4 * sq_entries, flags, prot, offset=_IORING_OFF_SQ_RING)
        self._maps.append(sq)
        cq = mmap.mmap(self.fd, cq_cqes + _CQE_SIZE * cq_entries, flags, prot,
                       offset=_IORING_OFF_CQ_RING)  # fmt: skip
        self._maps.append(cq)
        sqes = mmap.mmap(self.fd, _SQE_SIZE * sq_entries, flags, prot, offset=_IORING_OFF_SQES)
        self._maps.append(sqes)
        sq_words = memoryview(sq).cast("I")
        # Every slot holds the same request, and the index array maps slot i to
        # entry i, once and for all: submitting is then only moving the tail.
        for i in range(sq_entries):
            _SQE.pack_into(
                sqes, i * _SQE_SIZE, _IORING_OP_WRITE, _IOSQE_ASYNC, 0, fd, 0, 0, 0, 0, 0
            )
            sq_words[sq_array // 4 + i] = i
        self._sq_mask = sq_words[sq_mask // 4]
        self._sq_tail_at = sq_tail // 4
        self._sq_tail = sq_words[self._sq_tail_at]
        self._sq_words = sq_words
        cq_words = self._cq_words = memoryview(cq).cast("I")
        self._cq_results = memoryview(cq).cast("i")
        self._views += (sq_words, cq_words, self._cq_results)
        self._cq_mask = cq_words[cq_mask // 4]
        self._cq_head_at = cq_head // 4
        self._cq_tail_at = cq_tail // 4
        self._cq_base = cq_cqes // 4
        self._cq_head = cq_words[self._cq_head_at]

    def submit(self) -> None:
        """Start one write; OSError if io_uring refused it (then nothing is in flight)."""
        self._sq_tail = tail = (self._sq_tail + 1) & 0xFFFFFFFF
        self._sq_words[self._sq_tail_at] = tail
        try:
            _check(self._syscall(_NR_IO_URING_ENTER, self.fd, 1, 0, 0, None, 0))
        except OSError:
            self._sq_tail = tail = (tail - 1) & 0xFFFFFFFF
            self._sq_words[self._sq_tail_at] = tail
            raise
        self.busy = True

    @property
    def running(self) -> bool:
        """Whether a write is in flight and not finished yet."""
        return self.busy and self._cq_words[self._cq_tail_at] == self._cq_head

    def poll(self) -> int | None:
        """The in-flight write's result (bytes written, or -errno) if it finished, else None."""
        head = self._cq_head
        if self._cq_words[self._cq_tail_at] == head:
            return None
        # A completion entry is user_data (2 words), res, flags.
        result: int = self._cq_results[self._cq_base + (head & self._cq_mask) * 4 + 2]
        self._cq_head = head = (head + 1) & 0xFFFFFFFF
        self._cq_words[self._cq_head_at] = head
        self.busy = False
        return result

    def wait(self) -> int | None:
        """Block until the in-flight write finished; its result (None if there was none).

        The write is on a non-blocking socket, so this lasts one pass of the
        kernel's transmit over the ring at most.
        """
        while self.busy:
            result = self.poll()
            if result is not None:
                return result
            flags = _IORING_ENTER_GETEVENTS
            if self._syscall(_NR_IO_URING_ENTER, self.fd, 0, 1, flags, None, 0) < 0:
                err = ctypes.get_errno()
                if err != errno.EINTR:
                    raise OSError(err, os.strerror(err))
        return None

    def close(self) -> None:
        """Unmap and close (idempotent).  Call :meth:`wait` first if a write is in flight."""
        for view in self._views:
            view.release()
        self._views = []
        for m in self._maps:
            m.close()
        self._maps = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.busy = False


def _iowq_elsewhere(syscall: Callable[..., int], ring_fd: int) -> frozenset[int]:
    """Let a pinned thread's io-wq workers run on every CPU but its own; those CPUs.

    io-wq workers inherit the affinity of the thread that created them, so
    a PMD pinned to its core would run the kernel's transmit work on that
    same core, after its own polling, instead of beside it: TCP through a
    veth pair at half the rate of an unpinned PMD.  The set is per thread,
    so it applies to every ring this thread creates.  An empty set means
    nothing was changed: the thread is not pinned, the kernel predates
    IORING_REGISTER_IOWQ_AFF (5.14), or it refused the set (a cpuset).
    """
    try:
        own = os.sched_getaffinity(0)
    except OSError:
        return frozenset()
    others = frozenset(range(os.cpu_count() or 1)) - own
    if not others:
        return frozenset()
    words = (ctypes.c_ulong * 16)()  # a cpu_set_t: 1024 bits
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    for cpu in others:
        if cpu < 16 * bits:
            words[cpu // bits] |= 1 << (cpu % bits)
    if syscall(_NR_IO_URING_REGISTER, ring_fd, _IORING_REGISTER_IOWQ_AFF, words,
               ctypes.sizeof(words)) < 0:  # fmt: skip
        return frozenset()
    return others


def batch_workers(tasks: str = "/proc/self/task") -> int:
    """Put this process's io-wq worker threads under SCHED_BATCH; how many were changed.

    A worker woken for a write is owed CPU time, so the scheduler lets it
    preempt whatever runs on the CPU it lands on -- often the daemon's own,
    which puts the kernel's work right back on the daemon's thread.
    SCHED_BATCH threads never preempt on wake-up: the worker takes a free
    CPU or waits for the next tick.  Workers come and go (the kernel ends
    them after seconds idle), so callers repeat this now and then.
    """
    changed = 0
    try:
        tids = os.listdir(tasks)
    except OSError:
        return 0
    for name in tids:
        try:
            with open(f"{tasks}/{name}/comm", "rb") as f:
                if not f.read().startswith(b"iou-wrk"):
                    continue
            tid = int(name)
            if os.sched_getscheduler(tid) != os.SCHED_BATCH:
                os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
                changed += 1
        except (OSError, ValueError):  # gone meanwhile, or not ours to change
            continue
    return changed


def open_write_ring(fd: int) -> tuple[WriteRing | None, str]:
    """A :class:`WriteRing` on ``fd``, or None and why io_uring cannot be used."""
    try:
        return WriteRing(fd), ""
    except OSError as exc:
        return None, exc.strerror or str(exc)
