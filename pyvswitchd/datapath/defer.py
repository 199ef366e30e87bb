"""The per-PMD deferred work ring (OVS patch "dpif-netdev: Add a per thread work ring").

A netdev whose ``send`` returns EINPROGRESS has accepted a batch without
finishing it.  The PMD then defers a work item -- the netdev's
``process_async`` bound method plus the tx queue id -- to its own ring, and
polls the ring's head from then on:

* every iteration, after the output flush, :meth:`WorkRing.drain` works the
  head until the ring is empty or the head is still in progress;
* before the RCU quiesce, in the 1026-iteration housekeeping block and at
  reload or exit, :meth:`WorkRing.drain_all` empties the ring, forcing items
  that will not finish on their own;
* :meth:`WorkRing.defer` on a full ring works the head until it pops, so a
  deferral never fails.

Items complete strictly in FIFO order: a pending head blocks every later
item, even one of another netdev.  An item found in progress on more than
:data:`ATTEMPT_LIMIT` checks is forced: ``process_async(qid, force=True)``
must complete or drop what is pending, and a non-zero result counts the item
as dropped.

Geometry and counters follow the patch (posted to ovs-dev in 2021 as part
of "Userspace deferral of work", never merged): 128 slots of which 127 are
usable (one stays free so that full and empty differ), and free-running
32-bit read/write indexes that wrap exactly like OVS's ``uint32_t`` ones.
The ring counts into the owning PMD's ``perf.n`` under
:class:`~pyvswitchd.datapath.perf.Stat` ``WORK_DEFER``, ``WORK_IN_PROG``,
``WORK_R_FULL``, ``WORK_DONE`` and ``WORK_DROPPED``.

The ring is pure synchronous logic: it never yields to trio, so it can run
anywhere inside a PMD iteration.  Its methods are not re-entrant: a
``process_async`` must not call back into the ring that polls it.

Differences from the patch: :meth:`WorkRing.drop_netdev` is new (the
patch relies on reload draining the ring before a netdev goes away; this
gives the datapath a targeted way to do the same); a popped slot drops its
item, so the ring holds no reference to a netdev it no longer needs.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from errno import EIO
from typing import TYPE_CHECKING

from ..netdev.provider import EINPROGRESS, OK, Netdev
from .perf import Stat

if TYPE_CHECKING:
    from .pmd import Pmd, TxPort

#: Slots in the ring.
RING_SIZE = 128
#: Slot of an index is ``index & RING_MASK``; also the usable capacity (127).
RING_MASK = RING_SIZE - 1
#: In-progress checks an item gets before it is forced (forced on the 1001st).
ATTEMPT_LIMIT = 1000

#: :meth:`WorkRing.do_work`: the head item finished (or was forced) and was popped.
WORK_POPPED = OK
#: :meth:`WorkRing.do_work`: the head item is still in progress and stays at the head.
WORK_PENDING = EINPROGRESS
#: :meth:`WorkRing.do_work`: there was nothing to do.
RING_EMPTY = errno.ENOENT

# The indexes are uint32_t in OVS; masking on increment keeps the wrap real.
_U32_MASK = 0xFFFF_FFFF
# Plain-int copies for the hot path: enum attribute lookups cost more.
_DEFER = int(Stat.WORK_DEFER)
_IN_PROG = int(Stat.WORK_IN_PROG)
_R_FULL = int(Stat.WORK_R_FULL)
_DONE = int(Stat.WORK_DONE)
_DROPPED = int(Stat.WORK_DROPPED)


class WorkItem:
    """One deferred completion: ``func(qid, force)`` until it stops returning EINPROGRESS.

    ``func`` is the netdev's bound ``process_async``; ``netdev`` is kept
    beside it so the ring can find a departing netdev's items.
    ``attempts`` counts the checks that found the item still in progress.
    """

    __slots__ = ("attempts", "func", "netdev", "qid")

    def __init__(self, func: Callable[[int, bool], int], netdev: Netdev, qid: int) -> None:
        self.func = func
        self.netdev = netdev
        self.qid = qid
        self.attempts = 0

    def __repr__(self) -> str:
        return f"WorkItem({self.netdev.name!r}, qid={self.qid}, attempts={self.attempts})"


class WorkRing:
    """One PMD's ring of deferred work items (OVS's ``struct dp_defer``).

    ``stats`` is the PMD's ``perf.n`` list; the ring increments the
    ``Stat.WORK_*`` entries of it in place.

    ``read_idx`` and ``write_idx`` are free-running 32-bit counters: the
    ring is empty when they are equal, holds ``(write_idx - read_idx) &
    RING_MASK`` items, and is full at :data:`RING_MASK` (127) items.  Both
    may be set to any equal value while the ring is empty (tests start them
    just below 2**32 to exercise the wrap).
    """

    __slots__ = ("_slots", "_stats", "read_idx", "write_idx")

    def __init__(self, stats: list[int]) -> None:
        self._stats = stats
        # None marks a free slot; a popped slot is cleared so the ring keeps no
        # netdev alive past its last item.
        self._slots: list[WorkItem | None] = [None] * RING_SIZE
        self.read_idx = 0
        self.write_idx = 0

    def __len__(self) -> int:
        """Items queued, 0..127."""
        return (self.write_idx - self.read_idx) & RING_MASK

    def __iter__(self) -> Iterator[WorkItem]:
        """The queued items, head first (a snapshot: safe to modify the ring meanwhile)."""
        slots = self._slots
        items = []
        for i in range(len(self)):
            item = slots[(self.read_idx + i) & RING_MASK]
            assert item is not None
            items.append(item)
        return iter(items)

    def is_empty(self) -> bool:
        """True when no item is queued."""
        return self.read_idx == self.write_idx

    def is_full(self) -> bool:
        """True at 127 items: the next :meth:`defer` has to pop the head first."""
        return ((self.write_idx - self.read_idx) & RING_MASK) == RING_MASK

    def defer(self, netdev: Netdev, qid: int) -> None:
        """Queue completion of ``netdev``'s pending transmit on tx queue ``qid``.

        On a full ring, counts ``WORK_R_FULL`` and works the head until it
        pops first.  That busy-polls one netdev, but is bounded: the head is
        forced on its 1001st in-progress result.
        """
        if ((self.write_idx - self.read_idx) & RING_MASK) == RING_MASK:
            self._stats[_R_FULL] += 1
            do_work = self.do_work
            while do_work() != WORK_POPPED:
                pass
        write = self.write_idx
        self._slots[write & RING_MASK] = WorkItem(netdev.process_async, netdev, qid)
        self.write_idx = (write + 1) & _U32_MASK
        self._stats[_DEFER] += 1

    def do_work(self) -> int:
        """Check the head item once; return WORK_POPPED, WORK_PENDING or RING_EMPTY.

        A result other than EINPROGRESS -- success or an error -- pops the
        head as ``WORK_DONE``: the netdev has finished with the batch and
        accounted for it either way.  EINPROGRESS counts ``WORK_IN_PROG``;
        on the item's 1001st such result it is forced at once and popped as
        ``WORK_DONE``, or as ``WORK_DROPPED`` if the forced call returns
        non-zero (EINPROGRESS included: the contract forbids it there).
        """
        read = self.read_idx
        if read == self.write_idx:
            return RING_EMPTY
        slot = read & RING_MASK
        item = self._slots[slot]
        assert item is not None
        stats = self._stats
        try:
            rc = item.func(item.qid, False)
            if rc == EINPROGRESS:
                stats[_IN_PROG] += 1
                item.attempts += 1
                if item.attempts <= ATTEMPT_LIMIT:
                    return WORK_PENDING
                rc = item.func(item.qid, True)
                stats[_DROPPED if rc else _DONE] += 1
            else:
                stats[_DONE] += 1
        except Exception:
            # A provider bug: the item cannot be finished, so it is dropped
            # (and counted) rather than ending the PMD that polls it.
            stats[_DROPPED] += 1
        self._slots[slot] = None
        self.read_idx = (read + 1) & _U32_MASK
        return WORK_POPPED

    def drain(self) -> None:
        """The per-iteration drain: pop finished items until empty or the head is pending."""
        # Most iterations find the ring empty; test here to skip the call.
        if self.read_idx != self.write_idx:
            do_work = self.do_work
            while do_work() == WORK_POPPED:
                pass

    def drain_all(self) -> None:
        """Empty the ring, busy-polling each head and forcing it at the attempt limit.

        Bounded by 1001 checks plus one forced call per item.
        """
        do_work = self.do_work
        while do_work() != RING_EMPTY:
            pass

    def drop_netdev(self, netdev: Netdev) -> int:
        """Finish now every item of ``netdev``, which is going away; return how many.

        Each of its items is forced (``process_async(qid, force=True)``) in
        FIFO order and counted ``WORK_DROPPED`` if that returns non-zero,
        else ``WORK_DONE``; nothing is counted ``WORK_IN_PROG``.  The other
        items keep their order and attempt counts; ``read_idx`` is unchanged
        and ``write_idx`` moves back by the number removed.
        """
        items = list(self)
        gone = [item for item in items if item.netdev is netdev]
        if not gone:
            return 0
        kept = [item for item in items if item.netdev is not netdev]
        slots = self._slots
        read = self.read_idx
        for i, item in enumerate(kept):
            slots[(read + i) & RING_MASK] = item
        for i in range(len(kept), len(items)):
            slots[(read + i) & RING_MASK] = None
        self.write_idx = (read + len(kept)) & _U32_MASK
        # The ring is consistent before any netdev code runs.
        stats = self._stats
        for item in gone:
            try:
                rc = item.func(item.qid, True)
            except Exception:  # a provider bug: the work is dropped all the same
                rc = EIO
            stats[_DROPPED if rc else _DONE] += 1
        return len(gone)

    def __repr__(self) -> str:
        return f"WorkRing({len(self)} items, read_idx={self.read_idx}, write_idx={self.write_idx})"


class DeferHooks:
    """The deferred-work :class:`~pyvswitchd.datapath.pmd.PmdHooks` of one PMD.

    Owns that PMD's :class:`WorkRing`, counting into ``pmd.perf.n``; the
    ``pmd`` argument of the hook methods is ignored, as the hooks serve only
    the PMD they were made for.  ``offload_work``, if given, is the offload
    providers' per-iteration work (its return value is the cycles it took);
    without it that hook does nothing and returns 0.  ``offload_idle`` says
    whether the providers have per-iteration work for the PMD at all.
    """

    __slots__ = ("_offload", "_offload_idle", "ring")

    def __init__(
        self,
        pmd: Pmd,
        offload_work: Callable[[Pmd], int] | None = None,
        offload_idle: Callable[[Pmd], bool] | None = None,
    ) -> None:
        self.ring = WorkRing(pmd.perf.n)
        self._offload = offload_work
        self._offload_idle = offload_idle

    def idle(self, pmd: Pmd) -> bool:
        # Pending transmits complete only when polled, and offload providers
        # expect their per-iteration call: either keeps the PMD polling.
        ring = self.ring
        if ring.read_idx != ring.write_idx:
            return False
        if self._offload is None:
            return True
        return self._offload_idle is not None and self._offload_idle(pmd)

    def drain(self, pmd: Pmd) -> None:
        # Called every iteration: skip the call into the ring when it is empty.
        ring = self.ring
        if ring.read_idx != ring.write_idx:
            ring.drain()

    def drain_all(self, pmd: Pmd) -> None:
        self.ring.drain_all()

    def deferred_send(self, pmd: Pmd, txport: TxPort) -> None:
        self.ring.defer(txport.netdev, txport.qid)

    def offload_work(self, pmd: Pmd) -> int:
        offload = self._offload
        return offload(pmd) if offload is not None else 0


class InlineHooks:
    """Hooks of the main-thread pseudo PMD, which never defers work.

    OVS's deferral patch only hooks PMD threads; an asynchronous netdev
    polled by the main thread is completed on the spot here: checked until
    done, and forced after ATTEMPT_LIMIT checks, counted like ring items.
    """

    __slots__ = ("_stats",)

    def __init__(self, pmd: Pmd) -> None:
        self._stats = pmd.perf.n

    def idle(self, pmd: Pmd) -> bool:
        return True

    def drain(self, pmd: Pmd) -> None:
        pass

    def drain_all(self, pmd: Pmd) -> None:
        pass

    def deferred_send(self, pmd: Pmd, txport: TxPort) -> None:
        netdev, qid, stats = txport.netdev, txport.qid, self._stats
        try:
            for _ in range(ATTEMPT_LIMIT):
                rc = netdev.process_async(qid, False)
                if rc != EINPROGRESS:
                    stats[Stat.WORK_DONE] += 1
                    return
                stats[Stat.WORK_IN_PROG] += 1
            rc = netdev.process_async(qid, True)
        except Exception:  # a provider bug: drop the work, keep the main task alive
            rc = EIO
        stats[Stat.WORK_DROPPED if rc else Stat.WORK_DONE] += 1

    def offload_work(self, pmd: Pmd) -> int:
        return 0
