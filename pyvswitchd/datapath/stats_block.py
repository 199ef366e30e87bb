"""The shared-memory block where a PMD worker publishes its counters.

Every PMD worker process writes its counters into one block of memory that
the daemon maps too, so ``pmd-perf-show``, ``pmd-rxq-show``, auto load
balance, ``coverage/read-counter``, ``dpctl/show -s`` and the Prometheus
scrape read them without a message to the worker and without stopping it.

The block is an anonymous ``memfd`` created by the daemon and handed to
the worker over the channel: it never appears under /dev/shm, it outlives
a worker that dies (the daemon keeps it mapped, which is how counters
survive a worker restart), and it vanishes when the last holder closes it,
even if the daemon itself is killed.

Layout: an array of unsigned 64-bit words in fixed regions (see the
``_REGIONS`` table).  A word is written by exactly one side: the daemon
writes only the doorbell, the worker everything else.  Readers may see a
counter a moment old, never a torn one, and never one going backwards.

The worker does not write a word per packet: its hot path counts in plain
Python lists, and :meth:`StatsBlock.publish_perf` and friends copy them in
at most every millisecond and before it sleeps (see the worker loop).
"""

from __future__ import annotations

import mmap
import os
import time
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from ..netdev.provider import NetdevStats
from .perf import N_STATS
from .port import PMD_INTERVAL_MAX

#: Rx queues one PMD may poll with published statistics.
MAX_RXQS = 256
#: Port statistics slots (one per datapath port, the same in every block).
MAX_PORT_SLOTS = 512
#: Coverage counters one worker may publish.
MAX_COUNTERS = 512
#: Words of one rx queue slot: cycles_curr, cycles_total, packets, intrvl_idx, intervals.
RXQ_WORDS = 4 + PMD_INTERVAL_MAX
#: Words of one port slot: the NetdevStats fields in declaration order.
PORT_FIELDS = (
    "rx_packets",
    "rx_bytes",
    "rx_dropped",
    "rx_errors",
    "tx_packets",
    "tx_bytes",
    "tx_dropped",
    "tx_errors",
)
PORT_WORDS = len(PORT_FIELDS)
_PERF_WORDS = 32
assert N_STATS <= _PERF_WORDS

# Header words.
DOORBELL = 0  # bumped by the daemon after each message it sends
PID = 1
PUBLISHED_NS = 2  # perf_counter_ns of the last publish
ITERATIONS = 3  # perf.iteration_cnt
START_MS = 4  # perf.start_ms (start of the current measurement)
POLLING = 5  # 1 while the worker's poll loop runs
INTRVL_CYCLES = 6
BUSY_IDX = 7
INTERVAL_SEQ = 8  # closed 5 s intervals (ALB reads a new one once)
LAST_IDLE, LAST_BUSY, LAST_SLEEP, LAST_OFFLOAD = 9, 10, 11, 12
FLOWS = 13  # megaflows in the PMD's table
SEQ = 14  # publication sequence count: odd while the worker writes
HEADER_WORDS = 16

_REGIONS = (
    ("header", HEADER_WORDS),
    ("perf", _PERF_WORDS),
    ("perf_zero", _PERF_WORDS),
    ("busy_intervals", 16),
    ("rxqs", MAX_RXQS * RXQ_WORDS),
    ("ports", MAX_PORT_SLOTS * PORT_WORDS),
    ("coverage", MAX_COUNTERS),
)
_OFFSETS: dict[str, tuple[int, int]] = {}
_pos = 0
for _name, _n in _REGIONS:
    _OFFSETS[_name] = (_pos, _pos + _n)
    _pos += _n
TOTAL_WORDS = _pos
SIZE = TOTAL_WORDS * 8
#: How long a snapshot waits for a publication to end before it returns the
#: last consistent copy, s.
_SNAPSHOT_PATIENCE = 0.0005


class BlockView:
    """Reading a block: the regions as word arrays, and the figures in them."""

    def __init__(self, buffer: Any) -> None:
        words = memoryview(buffer).cast("Q")
        self.words = words
        self.header = words[slice(*_OFFSETS["header"])]
        self.perf = words[slice(*_OFFSETS["perf"])]
        self.perf_zero = words[slice(*_OFFSETS["perf_zero"])]
        self.busy_intervals = words[slice(*_OFFSETS["busy_intervals"])]
        self.rxqs = words[slice(*_OFFSETS["rxqs"])]
        self.ports = words[slice(*_OFFSETS["ports"])]
        self.coverage = words[slice(*_OFFSETS["coverage"])]

    def perf_counters(self) -> list[int]:
        """Counters since the last clear (OVS's pmd_perf_read_counters)."""
        return [
            max(n - z, 0)
            for n, z in zip(self.perf[:N_STATS], self.perf_zero[:N_STATS], strict=True)
        ]

    def perf_raw(self) -> list[int]:
        """The monotonic counters, ignoring clears."""
        return list(self.perf[:N_STATS])

    def rxq(self, slot: int) -> tuple[int, int, int, int, list[int]]:
        """(cycles_curr, cycles_total, packets, intrvl_idx, intervals) of rxq ``slot``."""
        base = slot * RXQ_WORDS
        r = self.rxqs
        return r[base], r[base + 1], r[base + 2], r[base + 3], list(r[base + 4 : base + RXQ_WORDS])

    def port(self, slot: int) -> list[int]:
        base = slot * PORT_WORDS
        return list(self.ports[base : base + PORT_WORDS])

    def coverage_totals(self, n: int) -> list[int]:
        return list(self.coverage[:n])

    def release(self) -> None:
        for view in (
            self.header, self.perf, self.perf_zero, self.busy_intervals, self.rxqs, self.ports,
            self.coverage, self.words,
        ):  # fmt: skip
            view.release()


class StatsBlock(BlockView):
    """One worker's block, as mapped by the daemon or by the worker.

    The worker brackets each publication with :meth:`begin_publish` and
    :meth:`end_publish` (a sequence lock: the count is odd while it
    writes); :meth:`snapshot` copies the block between two publications,
    so figures read from one snapshot belong to one instant of the worker
    -- a scrape sees the packets a PMD received, looked up and sent agree.
    Plain loads and stores keep their order on x86-64 (TSO), which is what
    makes the sequence lock sound without explicit barriers.
    """

    def __init__(self, fd: int, *, owner: bool) -> None:
        #: The memfd; the daemon keeps it to hand it to a restarted worker.
        self.fd = fd
        self._owner = owner
        self._map = mmap.mmap(fd, SIZE)
        #: The last copy known consistent (the daemon's side).
        self._last: bytearray | None = None
        super().__init__(self._map)

    @classmethod
    def create(cls, name: str) -> StatsBlock:
        """A new zeroed block (daemon side)."""
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, SIZE)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, owner=True)

    # -- worker side ---------------------------------------------------------

    def begin_publish(self) -> None:
        self.header[SEQ] += 1

    def end_publish(self) -> None:
        self.header[SEQ] += 1

    def publish_perf(self, n: Sequence[int], zero: Sequence[int]) -> None:
        count = len(n)
        self.perf[:count] = array("Q", n)
        self.perf_zero[:count] = array("Q", zero)

    def publish_rxq(
        self, slot: int, cycles_curr: int, cycles_total: int, packets: int, intrvl_idx: int,
        intervals: Sequence[int],
    ) -> None:  # fmt: skip
        base = slot * RXQ_WORDS
        r = self.rxqs
        r[base] = cycles_curr
        r[base + 1] = cycles_total
        r[base + 2] = packets
        r[base + 3] = intrvl_idx
        r[base + 4 : base + RXQ_WORDS] = array("Q", intervals)

    def publish_port(self, slot: int, values: Sequence[int]) -> None:
        base = slot * PORT_WORDS
        self.ports[base : base + PORT_WORDS] = array("Q", values)

    def publish_coverage(self, totals: Sequence[int]) -> None:
        self.coverage[: len(totals)] = array("Q", totals)

    def clear_rxqs(self) -> None:
        self.rxqs[:] = array("Q", bytes(len(self.rxqs) * 8))

    # -- daemon side -------------------------------------------------------------

    def ring_doorbell(self) -> None:
        self.header[DOORBELL] = (self.header[DOORBELL] + 1) & 0xFFFF_FFFF_FFFF_FFFF

    def snapshot(self) -> BlockView:
        """A copy taken between two publications (see the class text).

        A publication takes microseconds, so the copy is retried briefly
        while one is under way; if the writer stays inside one (it is off
        its CPU, or it was killed there), the last consistent copy is
        returned: a moment old, never torn, and the daemon's loop is not
        held up waiting for a process that may never finish.
        """
        header = self.header
        deadline = time.monotonic() + _SNAPSHOT_PATIENCE
        while True:
            seq = header[SEQ]
            if not seq & 1:
                copy = bytearray(self._map)
                if header[SEQ] == seq:
                    self._last = copy
                    return BlockView(copy)
            if time.monotonic() > deadline:
                # Only a block never read consistently yet is copied as it is.
                return BlockView(self._last if self._last is not None else bytearray(self._map))
            time.sleep(0)

    def clear_port(self, slot: int) -> None:
        base = slot * PORT_WORDS
        self.ports[base : base + PORT_WORDS] = array("Q", [0] * PORT_WORDS)

    def close(self) -> None:
        self.release()
        self._map.close()
        if self._owner or self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def add_port_stats(stats: NetdevStats, values: Iterable[int]) -> None:
    """Add one published port slot to ``stats`` (a sum over processes)."""
    for field, value in zip(PORT_FIELDS, values, strict=True):
        setattr(stats, field, getattr(stats, field) + value)


def port_values(stats: NetdevStats) -> list[int]:
    """``stats`` as the words of a port slot."""
    return [getattr(stats, field) for field in PORT_FIELDS]
