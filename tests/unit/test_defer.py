"""Tests for pyvswitchd.datapath.defer: the per-PMD deferred work ring.

Behaviour under test is the ring of OVS's "per thread work ring" patch as
described in :mod:`pyvswitchd.datapath.defer` (ring geometry, do_work
return codes, attempt limit, ring-full handling, drains) and its
``Stat.WORK_*`` counters.  Most tests drive the ring with
:class:`Scripted` netdevs whose ``process_async`` returns a scripted
sequence of results; the rest use the dummy netdev's asynchronous transmit
(``tx_async_polls``) and a real PMD loop.
"""

from __future__ import annotations

import errno
import gc
import random
import weakref
from collections import deque
from collections.abc import Callable, Iterable

import attrs
import trio

from pyvswitchd.datapath.defer import (
    ATTEMPT_LIMIT,
    RING_EMPTY,
    RING_MASK,
    RING_SIZE,
    WORK_PENDING,
    WORK_POPPED,
    DeferHooks,
    WorkRing,
)
from pyvswitchd.datapath.perf import N_STATS, PmdPerf, Stat
from pyvswitchd.datapath.pmd import Pmd, TxPort
from pyvswitchd.datapath.port import Port
from pyvswitchd.netdev.dummy import ASYNC_FAIL_ERRNO, DummyPmdNetdev
from pyvswitchd.netdev.provider import EINPROGRESS, OK, Netdev
from pyvswitchd.observe.coverage import Counter
from pyvswitchd.odp.packet import Packet

NEAR_WRAP = 2**32 - 5
U32 = 2**32
WORK_STATS = ("WORK_DEFER", "WORK_IN_PROG", "WORK_R_FULL", "WORK_DONE", "WORK_DROPPED")
FRAME = bytes(range(60))


class Scripted(Netdev):
    """A netdev whose ``process_async`` returns scripted results.

    Unforced calls return ``results`` in order, then ``then`` forever; forced
    calls return ``force_rc``.  Every call is appended to ``log`` as
    ``(name, qid, force)`` (pass one list to several netdevs to see the
    order across them).
    """

    type = "scripted"

    def __init__(
        self,
        name: str,
        results: Iterable[int] = (),
        *,
        then: int = OK,
        force_rc: int = OK,
        log: list[tuple[str, int, bool]] | None = None,
    ) -> None:
        super().__init__(name)
        self.results = deque(results)
        self.then = then
        self.force_rc = force_rc
        self.log: list[tuple[str, int, bool]] = [] if log is None else log

    def process_async(self, qid: int, force: bool) -> int:
        self.log.append((self.name, qid, force))
        if force:
            return self.force_rc
        return self.results.popleft() if self.results else self.then

    def calls(self) -> list[tuple[int, bool]]:
        return [(qid, force) for name, qid, force in self.log if name == self.name]


def work_stats(stats: list[int]) -> dict[str, int]:
    return {name: stats[Stat[name]] for name in WORK_STATS}


def expect(**counts: int) -> dict[str, int]:
    """The five WORK_* counters: the ones named, the others zero."""
    return {name: counts.get(name.removeprefix("WORK_").lower(), 0) for name in WORK_STATS}


def new_ring(start: int = 0) -> tuple[WorkRing, list[int]]:
    stats = [0] * N_STATS
    ring = WorkRing(stats)
    ring.read_idx = ring.write_idx = start
    return ring, stats


def queued(ring: WorkRing) -> list[tuple[str, int]]:
    return [(item.netdev.name, item.qid) for item in ring]


# -- geometry -------------------------------------------------------------------------


def test_constants() -> None:
    assert (RING_SIZE, RING_MASK, ATTEMPT_LIMIT) == (128, 127, 1000)
    assert (WORK_POPPED, WORK_PENDING, RING_EMPTY) == (0, errno.EINPROGRESS, errno.ENOENT)


def test_empty_ring_does_nothing() -> None:
    ring, stats = new_ring()
    assert ring.do_work() == RING_EMPTY
    ring.drain()
    ring.drain_all()
    assert len(ring) == 0 and ring.is_empty() and not ring.is_full()
    assert (ring.read_idx, ring.write_idx) == (0, 0)
    assert stats == [0] * N_STATS


def test_indexes_wrap_at_32_bits() -> None:
    ring, stats = new_ring(NEAR_WRAP)
    dev = Scripted("a")
    for qid in range(10):
        ring.defer(dev, qid)
    assert ring.write_idx == 5  # wrapped: NEAR_WRAP + 10 - 2**32
    assert ring.read_idx == NEAR_WRAP
    assert len(ring) == 10 and not ring.is_empty()
    assert queued(ring) == [("a", q) for q in range(10)]
    for _ in range(4):
        assert ring.do_work() == WORK_POPPED
    assert ring.read_idx == U32 - 1 and len(ring) == 6
    ring.drain()
    assert ring.read_idx == ring.write_idx == 5 and ring.is_empty()
    assert dev.calls() == [(q, False) for q in range(10)]
    assert work_stats(stats) == expect(defer=10, done=10)


def test_full_detection_across_wrap() -> None:
    ring, stats = new_ring(U32 - 3)
    dev = Scripted("a")
    for qid in range(RING_MASK):
        assert not ring.is_full()
        ring.defer(dev, qid)
    assert ring.is_full() and len(ring) == 127
    assert ring.write_idx == (U32 - 3 + 127) % U32
    assert work_stats(stats) == expect(defer=127)  # no R_FULL: 127 fit
    assert dev.log == []


def test_model_through_many_wraps() -> None:
    """Random defers and checks against a deque model, over ~10 laps of the ring and the wrap."""
    rng = random.Random(20210601)
    ring, stats = new_ring(U32 - 1000)
    log: list[tuple[str, int, bool]] = []
    # One netdev per item so each carries its own script: 0..2 pending checks.
    model: deque[tuple[str, int]] = deque()
    done = 0
    for n in range(2500):
        if rng.random() < 0.55:
            name = f"d{n}"
            dev = Scripted(name, [EINPROGRESS] * rng.randrange(3), log=log)
            if len(model) == RING_MASK:
                model.popleft()
                done += 1
            ring.defer(dev, n % 7)
            model.append((name, n % 7))
        else:
            rc = ring.do_work()
            if not model:
                assert rc == RING_EMPTY
            elif rc == WORK_POPPED:
                assert log[-1][:2] == model.popleft()
                done += 1
            else:
                assert rc == WORK_PENDING
                assert log[-1][:2] == model[0]
        assert queued(ring) == list(model)
        assert len(ring) == len(model)
        assert 0 <= ring.read_idx < U32 and 0 <= ring.write_idx < U32
    assert ring.read_idx < U32 - 1000  # the read index wrapped too
    assert stats[Stat.WORK_DONE] == done
    assert not any(force for _, _, force in log)


# -- do_work --------------------------------------------------------------------------


def test_attempt_limit_forces_on_1001st_in_progress_result() -> None:
    ring, stats = new_ring()
    dev = Scripted("a", then=EINPROGRESS)
    ring.defer(dev, 3)
    for _ in range(ATTEMPT_LIMIT):
        assert ring.do_work() == WORK_PENDING
    (head,) = ring
    assert head.attempts == ATTEMPT_LIMIT
    assert dev.calls() == [(3, False)] * ATTEMPT_LIMIT  # not forced yet
    assert work_stats(stats) == expect(defer=1, in_prog=1000)

    assert ring.do_work() == WORK_POPPED
    assert dev.calls() == [(3, False)] * 1001 + [(3, True)]
    assert ring.is_empty()
    assert work_stats(stats) == expect(defer=1, in_prog=1001, done=1)


def test_completion_after_1000_in_progress_results_is_not_forced() -> None:
    ring, stats = new_ring()
    dev = Scripted("a", [EINPROGRESS] * ATTEMPT_LIMIT + [OK], then=EINPROGRESS)
    ring.defer(dev, 0)
    for _ in range(ATTEMPT_LIMIT):
        assert ring.do_work() == WORK_PENDING
    assert ring.do_work() == WORK_POPPED
    assert (0, True) not in dev.calls()
    assert work_stats(stats) == expect(defer=1, in_prog=1000, done=1)


def test_forced_error_counts_dropped() -> None:
    ring, stats = new_ring()
    ring.defer(Scripted("a", then=EINPROGRESS, force_rc=errno.EIO), 0)
    for _ in range(ATTEMPT_LIMIT):
        ring.do_work()
    assert ring.do_work() == WORK_POPPED
    assert work_stats(stats) == expect(defer=1, in_prog=1001, dropped=1)


def test_forced_einprogress_counts_dropped() -> None:
    # A netdev breaking the contract (forced call still pending) must not wedge the ring.
    ring, stats = new_ring()
    ring.defer(Scripted("a", then=EINPROGRESS, force_rc=EINPROGRESS), 0)
    ring.drain_all()
    assert ring.is_empty()
    assert work_stats(stats) == expect(defer=1, in_prog=1001, dropped=1)


def test_error_on_normal_check_counts_done() -> None:
    ring, stats = new_ring()
    dev = Scripted("a", [EINPROGRESS, errno.EIO], then=EINPROGRESS)
    ring.defer(dev, 0)
    assert ring.do_work() == WORK_PENDING
    assert ring.do_work() == WORK_POPPED
    assert dev.calls() == [(0, False), (0, False)]
    assert work_stats(stats) == expect(defer=1, in_prog=1, done=1)


def test_pending_head_blocks_later_items() -> None:
    log: list[tuple[str, int, bool]] = []
    ring, stats = new_ring()
    a = Scripted("a", [EINPROGRESS] * 5, log=log)
    b = Scripted("b", log=log)
    ring.defer(a, 0)
    ring.defer(b, 0)
    for _ in range(5):
        assert ring.do_work() == WORK_PENDING
    assert a.calls() == [(0, False)] * 5
    assert b.calls() == []  # never asked while a is pending
    assert ring.do_work() == WORK_POPPED
    assert ring.do_work() == WORK_POPPED
    assert ring.do_work() == RING_EMPTY
    assert log[-2:] == [("a", 0, False), ("b", 0, False)]
    assert work_stats(stats) == expect(defer=2, in_prog=5, done=2)


# -- drains ---------------------------------------------------------------------------


def test_drain_stops_at_first_pending_head() -> None:
    log: list[tuple[str, int, bool]] = []
    ring, stats = new_ring()
    devs = [
        Scripted("a", log=log),
        Scripted("b", [errno.EIO], log=log),
        Scripted("c", [EINPROGRESS], log=log),
        Scripted("d", log=log),
    ]
    for dev in devs:
        ring.defer(dev, 1)
    ring.drain()
    assert log == [("a", 1, False), ("b", 1, False), ("c", 1, False)]
    assert queued(ring) == [("c", 1), ("d", 1)]
    assert next(iter(ring)).attempts == 1
    assert work_stats(stats) == expect(defer=4, in_prog=1, done=2)
    ring.drain()
    assert ring.is_empty()
    assert log[3:] == [("c", 1, False), ("d", 1, False)]
    assert work_stats(stats) == expect(defer=4, in_prog=1, done=4)


def test_drain_all_forces_everything() -> None:
    log: list[tuple[str, int, bool]] = []
    ring, stats = new_ring(NEAR_WRAP)
    ok = Scripted("ok", then=EINPROGRESS, log=log)
    bad = Scripted("bad", then=EINPROGRESS, force_rc=ASYNC_FAIL_ERRNO, log=log)
    for dev, qid in ((ok, 0), (bad, 1), (ok, 2)):
        ring.defer(dev, qid)
    ring.drain_all()
    assert ring.is_empty()
    expected = []
    for name, qid in (("ok", 0), ("bad", 1), ("ok", 2)):
        expected += [(name, qid, False)] * 1001 + [(name, qid, True)]
    assert log == expected
    assert work_stats(stats) == expect(defer=3, in_prog=3003, done=2, dropped=1)


# -- ring full ------------------------------------------------------------------------


def test_full_ring_works_head_until_it_pops() -> None:
    log: list[tuple[str, int, bool]] = []
    ring, stats = new_ring()
    head = Scripted("head", [EINPROGRESS, EINPROGRESS], log=log)
    rest = Scripted("rest", log=log)
    ring.defer(head, 0)
    for qid in range(1, RING_MASK):
        ring.defer(rest, qid)
    assert ring.is_full() and stats[Stat.WORK_R_FULL] == 0

    ring.defer(Scripted("new", log=log), 99)
    assert log == [("head", 0, False)] * 3  # only the head was worked
    assert ring.is_full()
    assert queued(ring) == [("rest", q) for q in range(1, 127)] + [("new", 99)]
    assert work_stats(stats) == expect(defer=128, in_prog=2, r_full=1, done=1)


def test_full_ring_with_stuck_head_forces_it() -> None:
    ring, stats = new_ring(NEAR_WRAP)
    stuck = Scripted("stuck", then=EINPROGRESS, force_rc=errno.EIO)
    rest = Scripted("rest", then=EINPROGRESS)
    ring.defer(stuck, 0)
    for qid in range(1, RING_MASK):
        ring.defer(rest, qid)
    ring.defer(rest, 127)
    assert stuck.calls() == [(0, False)] * 1001 + [(0, True)]
    assert rest.calls() == []
    assert queued(ring) == [("rest", q) for q in range(1, 128)]
    assert work_stats(stats) == expect(defer=128, in_prog=1001, r_full=1, dropped=1)


# -- drop_netdev ----------------------------------------------------------------------


def test_drop_netdev_forces_its_items_and_keeps_the_others_in_order() -> None:
    log: list[tuple[str, int, bool]] = []
    ring, stats = new_ring(U32 - 2)
    a = Scripted("a", [EINPROGRESS], then=EINPROGRESS, force_rc=errno.EIO, log=log)
    b = Scripted("b", log=log)
    c = Scripted("c", log=log)
    for dev, qid in ((a, 0), (b, 0), (a, 1), (c, 0), (b, 1), (a, 2)):
        ring.defer(dev, qid)
    assert ring.do_work() == WORK_PENDING  # gives the head an attempt to keep
    log.clear()

    assert ring.drop_netdev(b) == 2
    assert log == [("b", 0, True), ("b", 1, True)]
    assert queued(ring) == [("a", 0), ("a", 1), ("c", 0), ("a", 2)]
    assert [item.attempts for item in ring] == [1, 0, 0, 0]
    assert ring.read_idx == U32 - 2 and ring.write_idx == 2
    assert work_stats(stats) == expect(defer=6, in_prog=1, done=2)

    assert ring.drop_netdev(a) == 3
    assert log[2:] == [("a", 0, True), ("a", 1, True), ("a", 2, True)]
    assert queued(ring) == [("c", 0)]
    assert work_stats(stats) == expect(defer=6, in_prog=1, done=2, dropped=3)

    assert ring.drop_netdev(Scripted("absent")) == 0
    ring.drain()
    assert ring.is_empty() and ring.read_idx == ring.write_idx == U32 - 1
    # Slots freed by the compaction are reusable: fill the ring again.
    for qid in range(RING_MASK):
        ring.defer(c, qid)
    assert ring.is_full() and stats[Stat.WORK_R_FULL] == 0


def test_ring_keeps_no_reference_to_finished_items() -> None:
    ring, _ = new_ring()
    popped, dropped = Scripted("popped"), Scripted("dropped")
    ring.defer(popped, 0)
    ring.defer(dropped, 0)
    refs = [weakref.ref(popped), weakref.ref(dropped)]
    assert ring.do_work() == WORK_POPPED
    assert ring.drop_netdev(dropped) == 1
    del popped, dropped
    gc.collect()
    assert [ref() for ref in refs] == [None, None]


# -- with the dummy netdev's asynchronous transmit ------------------------------------


def dummy(**options: str) -> DummyPmdNetdev:
    return DummyPmdNetdev("p0", {"n_txq": "2", **options})


def send(dev: DummyPmdNetdev, qid: int, n: int = 4) -> None:
    assert dev.send(qid, [Packet(FRAME) for _ in range(n)]) == EINPROGRESS


def test_dummy_async_send_completes_after_n_polls() -> None:
    ring, stats = new_ring()
    dev = dummy(tx_async_polls="3")
    send(dev, 1)
    ring.defer(dev, 1)
    ring.drain()
    ring.drain()
    assert dev.sent_frames() == [] and len(ring) == 1
    ring.drain()
    assert dev.sent_frames() == [FRAME] * 4 and ring.is_empty()
    assert dev.pending_async(1) == 0
    assert work_stats(stats) == expect(defer=1, in_prog=2, done=1)


def test_dummy_drain_all_forces_completion() -> None:
    ring, stats = new_ring()
    dev = dummy(tx_async_polls="100000")
    send(dev, 0, 3)
    ring.defer(dev, 0)
    ring.drain_all()
    assert dev.sent_frames() == [FRAME] * 3 and dev.pending_async(0) == 0
    assert work_stats(stats) == expect(defer=1, in_prog=1001, done=1)


def test_dummy_forced_failure_counts_dropped() -> None:
    ring, stats = new_ring()
    dev = dummy(tx_async_polls="100000", tx_async_fail_rate="1")
    send(dev, 0, 5)
    ring.defer(dev, 0)
    ring.drain_all()
    assert dev.sent_frames() == [] and dev.stats.tx_dropped == 5
    assert work_stats(stats) == expect(defer=1, in_prog=1001, dropped=1)


def test_dummy_drop_netdev() -> None:
    ring, stats = new_ring()
    dev, other = dummy(tx_async_polls="50"), Scripted("other")
    send(dev, 0)
    ring.defer(dev, 0)
    ring.defer(other, 0)
    send(dev, 1)
    ring.defer(dev, 1)
    assert ring.drop_netdev(dev) == 2
    assert dev.sent_frames() == [FRAME] * 8
    assert dev.pending_async(0) == dev.pending_async(1) == 0
    assert queued(ring) == [("other", 0)]
    assert work_stats(stats) == expect(defer=3, done=2)


# -- as the PMD's hooks ---------------------------------------------------------------


@attrs.define
class Settings:
    tx_flush_interval_us: int = 0
    perf_metrics: bool = False


class ToPort:
    """Pipeline: every received packet goes out on one port."""

    def __init__(self, port_no: int) -> None:
        self.port_no = port_no

    def process(self, pmd: Pmd, batch: list[Packet], in_port: int) -> None:
        for packet in batch:
            pmd.output(self.port_no, packet)


def make_pmd(pipeline: ToPort | None = None) -> Pmd:
    return Pmd(
        0,
        0,
        Settings(),
        pipeline or ToPort(2),
        PmdPerf(),
        sent_counter=Counter("netdev_sent"),
        received_counter=Counter("netdev_received"),
        drop_counter=Counter("datapath_drop_invalid_port"),
    )


def test_defer_hooks() -> None:
    pmd = make_pmd()
    offloaded: list[Pmd] = []

    def offload(p: Pmd) -> int:
        offloaded.append(p)
        return 42

    hooks = DeferHooks(pmd, offload)
    dev = dummy(tx_async_polls="2")
    txport = TxPort(Port(2, dev, "br0"), 1)
    send(dev, 1)
    hooks.deferred_send(pmd, txport)
    assert queued(hooks.ring) == [("p0", 1)]
    hooks.drain(pmd)
    assert len(hooks.ring) == 1
    hooks.drain(pmd)
    assert hooks.ring.is_empty() and dev.sent_frames() == [FRAME] * 4
    send(dev, 1)
    hooks.deferred_send(pmd, txport)
    hooks.drain_all(pmd)
    assert hooks.ring.is_empty()
    assert {s: pmd.perf.get(Stat[s]) for s in WORK_STATS} == expect(defer=2, in_prog=2, done=2)
    assert hooks.offload_work(pmd) == 42 and offloaded == [pmd]
    assert DeferHooks(pmd).offload_work(pmd) == 0


async def until(condition: Callable[[], bool]) -> None:
    """Let the PMD task run until ``condition`` holds (it checkpoints every iteration)."""
    while not condition():
        await trio.lowlevel.checkpoint()


async def test_pmd_loop_defers_and_drains() -> None:
    """A running PMD defers each async send, completes it, and forces the rest at exit."""
    pmd = make_pmd()
    hooks = pmd.hooks = DeferHooks(pmd)
    rx = DummyPmdNetdev("rx")
    tx = DummyPmdNetdev("tx", {"tx_async_polls": "3"})
    rx_port = Port(1, rx, "br0")
    tx_port = TxPort(Port(2, tx, "br0"), 0)
    n = pmd.perf.n
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(pmd.run)
            await pmd.reload(rx_port.rxqs, {2: tx_port})
            rx.inject([FRAME] * 5)
            await until(lambda: len(tx.sent_frames()) == 5)
            assert n[Stat.WORK_DEFER] == n[Stat.WORK_DONE] == 1
            assert n[Stat.WORK_IN_PROG] == 2
            assert hooks.ring.is_empty()

            # Never completes on its own: the exit drain forces it out.
            tx.set_config({"tx_async_polls": "1000000"})
            rx.inject([FRAME] * 3)
            await until(lambda: n[Stat.WORK_DEFER] == 2)
            await pmd.request_exit()
    assert hooks.ring.is_empty() and len(tx.sent_frames()) == 8
    assert n[Stat.WORK_DONE] == 2 and n[Stat.WORK_DROPPED] == 0
    assert n[Stat.WORK_IN_PROG] == 2 + 1001
