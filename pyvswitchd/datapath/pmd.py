"""The PMD task: OVS's poll-mode driver thread as a trio task.

Each PMD busy-polls the rx queues assigned to it, runs received batches
through the datapath pipeline, batches output per port and flushes it,
then runs the per-iteration hooks (deferred work, offload work), sleeps if
load-based sleep allows, and every 1026 iterations does its housekeeping
(interval cycle store for pmd-rxq-show and auto load balance).

Everything between ``start_iteration`` and ``end_iteration`` is synchronous:
the task only yields to trio between iterations (or while sleeping), so an
iteration's cycles are the CPU this PMD actually got from the interpreter,
and nothing another task does can change the poll list under it.

Reload handshake (OVS's ``reload``/``reload_seq``): the datapath never
touches a PMD's poll list or tx ports directly.  It hands the new ones to
:meth:`Pmd.reload` and waits; the PMD notices at the end of its current
iteration, flushes all pending output (so no packet in its hands is lost or
duplicated), drains its deferred work, adopts the new lists, wipes the
rxq usage history as OVS does, and acknowledges.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import trio

from ..netdev.provider import EINPROGRESS, Netdev
from ..observe.ratelimit import RateLimit
from ..odp.packet import Packet
from .clock import Clock
from .flow_table import FlowTable
from .perf import PmdPerf, Stat
from .port import PMD_INTERVAL_MAX, Port, Rxq

if TYPE_CHECKING:
    from ..observe.coverage import Counter
    from ..observe.vlog import VlogModule

#: core_id of the main-thread pseudo PMD (OVS's NON_PMD_CORE_ID).
NON_PMD_CORE_ID = 2**32 - 1
#: Packets from one rxq poll that cancel load-based sleep (NETDEV_MAX_BURST / 2).
PMD_SLEEP_THRESH = 16
#: Cap of any PMD sleep, us (OVS's RCU quiesce interval).
PMD_SLEEP_MAX_US = 10000
#: Rxq / PMD cycle measurement interval, ns (5 s).
PMD_INTERVAL_LEN_NS = 5_000_000_000
#: Classifier re-ranking period, ns (OVS's DPCLS_OPTIMIZATION_INTERVAL: 1 s).
DPCLS_OPTIMIZATION_INTERVAL_NS = 1_000_000_000
#: Iterations between two housekeeping passes (OVS's `lc++ > 1024`).
HOUSEKEEPING_ITERATIONS = 1024
#: Log messages a minute (and burst) about netdev calls that raised.
NETDEV_ERROR_LOG_RATE = 5
#: Longest a PMD that keeps receiving runs without yielding to trio, ns.  A
#: checkpoint costs several microseconds (a pass of trio's scheduler, with an
#: epoll syscall), as much as a few dozen EMC hits: yielding after every
#: iteration would cost a busy PMD a tenth of its throughput.  A PMD that
#: received nothing yields at once, so idle PMDs and the control tasks still
#: run every iteration.
PMD_YIELD_INTERVAL_NS = 1_000_000
#: How long a PMD keeps polling after its queues ran dry before it blocks on
#: them, ns: gaps inside a burst then cost no wake-up (a pass of trio's
#: scheduler and of the kernel's).  A/B runs through two namespaces showed
#: no difference beyond the machine's noise for ping, TCP or UDP.
PMD_IDLE_SPIN_NS = 200_000
_tsc = time.perf_counter_ns

#: :meth:`Pmd.plan_sleep`: keep polling.
NO_SLEEP = 0
#: Block until a polled queue may have packets (or a reload), at most the bound.
WAIT_RXQS = 1
#: Sleep the bound (load-based sleep), waking early only for a reload.
TIMED_SLEEP = 2


async def any_readable(rxqs: Sequence[Rxq]) -> None:
    """Return as soon as one of ``rxqs`` may have packets (their ``wait_readable``)."""
    if len(rxqs) == 1:
        await rxqs[0].netdev.wait_readable(rxqs[0].qid)
        return
    async with trio.open_nursery() as nursery:
        for rxq in rxqs:
            nursery.start_soon(_wake_on, rxq, nursery.cancel_scope)


async def _wake_on(rxq: Rxq, scope: trio.CancelScope) -> None:
    await rxq.netdev.wait_readable(rxq.qid)
    scope.cancel()


class Pipeline(Protocol):
    """What a PMD runs received batches through (the datapath input function)."""

    def process(self, pmd: Pmd, batch: list[Packet], in_port: int) -> None: ...


class TxPort:
    """A PMD's private output state for one port (OVS's tx_port in the send cache)."""

    __slots__ = ("batch", "flush_time", "netdev", "port", "qid", "sources")

    def __init__(self, port: Port, qid: int) -> None:
        self.port = port
        self.netdev: Netdev = port.netdev
        self.qid = qid
        self.batch: list[Packet] = []
        #: [rxq, n] runs: which rx queue the queued packets came from, in order,
        #: so transmit cycles can be charged to them without a store per packet.
        self.sources: list[list[object]] = []
        self.flush_time = 0  # us; 0 means the first batch always goes at once


class PmdHooks(Protocol):
    """Per-iteration work the later subsystems plug in (deferred work, offload)."""

    def idle(self, pmd: Pmd) -> bool:
        """True when the hooks have nothing pending, so the PMD may block."""
        ...

    def drain(self, pmd: Pmd) -> None: ...
    def drain_all(self, pmd: Pmd) -> None: ...
    def deferred_send(self, pmd: Pmd, txport: TxPort) -> None: ...
    def offload_work(self, pmd: Pmd) -> int: ...


class _NoHooks:
    def idle(self, pmd: Pmd) -> bool:
        return True

    def drain(self, pmd: Pmd) -> None:
        pass

    def drain_all(self, pmd: Pmd) -> None:
        pass

    def deferred_send(self, pmd: Pmd, txport: TxPort) -> None:
        pass

    def offload_work(self, pmd: Pmd) -> int:
        return 0


class PmdLifecycle(Protocol):
    """Told, in the PMD's own task, of each reload point and of the PMD's end.

    The offload providers' PMD lifecycle hooks
    (:class:`~.dp_offload.DatapathOffload`) are the one user.
    """

    def pmd_reload(self, pmd: Pmd) -> None: ...
    def pmd_exit(self, pmd: Pmd) -> None: ...


class PmdSettings(Protocol):
    """Datapath-wide knobs a PMD reads every iteration (never via reload)."""

    @property
    def tx_flush_interval_us(self) -> int: ...
    @property
    def perf_metrics(self) -> bool: ...


class Pmd:
    """One PMD (or, with ``core_id == NON_PMD_CORE_ID``, the main-thread pseudo PMD)."""

    def __init__(
        self,
        core_id: int,
        numa_id: int,
        settings: PmdSettings,
        pipeline: Pipeline,
        perf: PmdPerf,
        *,
        sent_counter: Counter,
        received_counter: Counter,
        drop_counter: Counter,
        netdev_error_counter: Counter | None = None,
        log: VlogModule | None = None,
        make_hooks: Callable[[Pmd], PmdHooks] | None = None,
        lifecycle: PmdLifecycle | None = None,
        flow_table: FlowTable | None = None,
        on_interval: Callable[[Pmd], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``make_hooks`` builds the PMD's :class:`PmdHooks` from the PMD (its
        perf counters are theirs too); without it the PMD has none.
        ``clock`` times the measurement intervals and classifier re-ranking
        (OVS times them on its monotonic clock, which tests warp)."""
        self.core_id = core_id
        self.numa_id = numa_id
        self.settings = settings
        self.pipeline = pipeline
        self.perf = perf
        self._sent = sent_counter
        self._received = received_counter
        self._dropped = drop_counter
        self._netdev_errors = netdev_error_counter
        self._log = log
        self._error_rl = RateLimit(NETDEV_ERROR_LOG_RATE, NETDEV_ERROR_LOG_RATE)
        self._on_interval = on_interval
        self.clock = clock if clock is not None else Clock()
        self.poll_list: list[Rxq] = []
        self.tx_ports: dict[int, TxPort] = {}
        self.isolated = False
        self.max_sleep_us = 0
        self.sleep_time_us = 0
        self.static_tx_qid = 0
        # Auto load balance: consecutive overloaded 5 s intervals.
        self.overloaded = 0
        # Interval bookkeeping (pmd-rxq-show, ALB).
        self.busy_intervals = [0] * PMD_INTERVAL_MAX
        self.busy_idx = 0
        self.intrvl_cycles = 0
        self._intrvl_tsc_prev = 0
        self._prev_stats = (0, 0, 0, 0)
        self._next_cycle_store = 0
        #: Measurement interval length; tests shorten it instead of warping time.
        self.interval_ns = PMD_INTERVAL_LEN_NS
        self.last_interval = (0, 0, 0, 0)
        self._lc = 0
        # Reload handshake.
        self.reload_requested = False
        self.exit_requested = False
        self.reloads = 0
        self._pending: tuple[list[Rxq], dict[int, TxPort]] | None = None
        #: Whether every polled queue can be waited on (see Netdev.waitable).
        self.can_wait = False
        self._idle_scope: trio.CancelScope | None = None
        #: All polled queues' descriptors, when each has one (see Netdev.rx_fd).
        self._rx_epoll: select.epoll | None = None
        #: Set when an epoll wake-up found nothing to receive.
        self._spurious = False
        self._wake = trio.Event()
        self._acked = trio.Event()
        self.last_rxq: Rxq | None = None
        self.now_us = 0
        #: This thread's megaflows, classifiers and caches.
        self.flow_table = flow_table if flow_table is not None else FlowTable(0)
        self._next_optimization = 0
        self._lifecycle = lifecycle
        self.hooks: PmdHooks = make_hooks(self) if make_hooks is not None else _NoHooks()
        #: When the polled queues last ran dry (0: they did not), ns.
        self._idle_since = 0

    @property
    def is_main(self) -> bool:
        return self.core_id == NON_PMD_CORE_ID

    def header(self) -> str:
        """``pmd thread numa_id N core_id C:`` / ``main thread:`` as OVS prints it."""
        if self.is_main:
            return "main thread:"
        return f"pmd thread numa_id {self.numa_id} core_id {self.core_id}:"

    @property
    def name(self) -> str:
        return "main" if self.is_main else f"pmd-c{self.core_id:02d}"

    @property
    def flow_count(self) -> int:
        return len(self.flow_table)

    # -- the handshake, main task side ----------------------------------------

    async def reload(self, poll_list: Sequence[Rxq], tx_ports: dict[int, TxPort]) -> None:
        """Hand over a new poll list and tx ports; return once the PMD uses them."""
        self._pending = (list(poll_list), tx_ports)
        self._acked = trio.Event()
        self.reload_requested = True
        self._wake.set()
        self._stop_idle_wait()
        await self._acked.wait()

    async def request_exit(self) -> None:
        """Stop the PMD after it flushed its output; returns when it acknowledged."""
        self.exit_requested = True
        self._acked = trio.Event()
        self.reload_requested = True
        self._wake.set()
        self._stop_idle_wait()
        await self._acked.wait()

    def _stop_idle_wait(self) -> None:
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    # -- the task -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The PMD as a trio task (the main thread's and unit tests' PMDs)."""
        task_status.started()
        while True:
            exiting = self.reload_point()
            self._acked.set()
            if exiting:
                return
            if not self.poll_list:
                # An idle PMD sleeps until the next reload, as OVS's does.
                self._wake = trio.Event()
                if not self.reload_requested:
                    await self._wake.wait()
                continue
            await self._poll_loop()

    def reload_point(self) -> bool:
        """Adopt what a reload handed over; True when the PMD is to end.

        Called between poll loops, never inside an iteration: the offload
        providers' lifecycle hook runs here, and a departing PMD releases
        what it holds.
        """
        self._adopt_pending()
        exiting = self.exit_requested
        lifecycle = self._lifecycle
        if not exiting and lifecycle is not None:
            lifecycle.pmd_reload(self)
        self.reload_requested = False
        if exiting:
            self.close()
            if lifecycle is not None:
                lifecycle.pmd_exit(self)
        return exiting

    def _adopt_pending(self) -> None:
        if self._pending is not None:
            self.poll_list, self.tx_ports = self._pending
            self._pending = None
            self.reloads += 1
        self.can_wait = bool(self.poll_list) and all(rxq.netdev.waitable for rxq in self.poll_list)
        self._build_rx_epoll()
        for rxq in self.poll_list:
            rxq.clear_history()
        self.busy_intervals = [0] * PMD_INTERVAL_MAX
        self.busy_idx = 0
        self.intrvl_cycles = 0
        self._intrvl_tsc_prev = 0
        self.overloaded = 0

    # -- one iteration, in three steps ----------------------------------------
    #
    # The loop is split where it may block, so that a trio task (above) and a
    # worker process's plain loop (:mod:`.worker`) run the same iteration and
    # differ only in how they sleep.

    def begin_polling(self) -> None:
        self.perf.polling = True
        self._next_cycle_store = self.clock.ns() + self.interval_ns
        self._idle_since = 0

    def end_polling(self) -> None:
        self.perf.polling = False

    def work(self) -> tuple[int, int, int, int]:
        """Poll every queue, flush, drain, run offload work: (start, rx, tx, offload cycles)."""
        start = _tsc()
        self.perf.start_iteration(start)
        rx = self.poll_rxqs()
        tx = 0
        if not rx:
            self.now_us = start // 1000
            tx = self.flush_output(force=bool(self.max_sleep_us and self.sleep_time_us))
        hooks = self.hooks
        hooks.drain(self)
        return start, rx, tx, hooks.offload_work(self)

    def plan_sleep(self, start: int, rx: int) -> tuple[int, int]:
        """How this iteration may sleep: (NO_SLEEP | WAIT_RXQS | TIMED_SLEEP, bound in us)."""
        if rx:
            self._idle_since = 0
        elif not self._idle_since:
            self._idle_since = start
        max_sleep = self.max_sleep_us
        if not max_sleep:
            self.sleep_time_us = 0
            return NO_SLEEP, 0
        if (
            not rx
            and self.can_wait
            and start - self._idle_since >= PMD_IDLE_SPIN_NS
            and self.hooks.idle(self)
            and not self._tx_pending()
        ):
            self.sleep_time_us = 0
            return WAIT_RXQS, max_sleep
        planned = self.sleep_time_us
        self.sleep_time_us = min(planned + 1, max_sleep)
        return (TIMED_SLEEP, planned) if planned else (NO_SLEEP, 0)

    def finish(self, start: int, rx: int, tx: int, slept: int, offload_cycles: int) -> bool:
        """Housekeeping and the iteration's accounting; True when a reload is requested."""
        if self._lc > HOUSEKEEPING_ITERATIONS:
            self._lc = 0
            self.hooks.drain_all(self)
            self._housekeeping()
        else:
            self._lc += 1
        if self.reload_requested:
            # Everything in our hands goes out before we let go of it.
            self.flush_output(force=True)
            self.hooks.drain_all(self)
            return True
        self.perf.end_iteration(_tsc(), rx, tx, slept, offload_cycles, self.settings.perf_metrics)
        return False

    async def _poll_loop(self) -> None:
        self.begin_polling()
        next_yield = 0
        try:
            while True:
                start, rx, tx, offload_cycles = self.work()
                kind, bound_us = self.plan_sleep(start, rx)
                slept = 0
                if kind != NO_SLEEP:
                    t0 = _tsc()
                    if kind == WAIT_RXQS:
                        await self._wait_rxqs(bound_us)
                    else:
                        await trio.sleep(bound_us / 1e6)
                    slept = _tsc() - t0
                if self.finish(start, rx, tx, slept, offload_cycles):
                    return
                if not slept and (not rx or start >= next_yield):
                    await trio.lowlevel.checkpoint()
                    next_yield = start + PMD_YIELD_INTERVAL_NS
        finally:
            self.end_polling()

    def _build_rx_epoll(self) -> None:
        if self._rx_epoll is not None:
            self._rx_epoll.close()
            self._rx_epoll = None
        self._spurious = False
        if not self.can_wait:
            return
        fds = {rxq.netdev.rx_fd(rxq.qid) for rxq in self.poll_list}
        if None in fds:
            return
        epoll = select.epoll()
        for fd in fds:
            assert fd is not None
            try:
                epoll.register(fd, select.EPOLLIN)
            except OSError:  # closed under us: wait queue by queue instead
                epoll.close()
                return
        self._rx_epoll = epoll

    def close(self) -> None:
        """Release what the PMD holds outside Python objects (its epoll set)."""
        if self._rx_epoll is not None:
            self._rx_epoll.close()
            self._rx_epoll = None

    def _tx_pending(self) -> bool:
        return any(txport.batch for txport in self.tx_ports.values())

    async def _wait_rxqs(self, bound_us: int) -> None:
        """Block until one polled queue may have packets, a reload, or ``bound_us``.

        On a machine with few cores a busy-polling PMD takes a core from the
        very processes whose packets it forwards; waiting in trio costs a
        wake-up (tens of microseconds) per burst instead.
        """
        if self.reload_requested:
            return
        rxqs = self.poll_list
        epoll = None if self._spurious else self._rx_epoll
        with trio.move_on_after(bound_us / 1e6) as scope:
            self._idle_scope = scope
            try:
                if epoll is not None:
                    await trio.lowlevel.wait_readable(epoll.fileno())
                    # Until the next poll receives something (a timeout, which
                    # cancels the wait, does not get here).
                    self._spurious = True
                else:
                    await any_readable(rxqs)
            finally:
                self._idle_scope = None

    def poll_rxqs(self) -> int:
        """Receive and process one batch from every polled rxq; the hot path.

        Kept in one function with locals bound up front because attribute
        lookups dominate at this call rate.
        """
        rx_total = 0
        pipeline = self.pipeline
        perf_n = self.perf.n
        received = self._received
        for rxq in self.poll_list:
            t0 = _tsc()
            try:
                batch = rxq.netdev.recv(rxq.qid)
            except Exception as exc:  # a buggy provider must not end the PMD
                self._netdev_failed(rxq.netdev, "receive", exc, 0)
                continue
            n = len(batch)
            if not n:
                continue
            received.total += 1
            self.last_rxq = rxq
            self.now_us = t0 // 1000
            perf_n[Stat.RECV] += n
            rxq.packets += n
            self.perf.record_batch(n)
            pipeline.process(self, batch, rxq.port_no)
            rxq.cycles_curr += _tsc() - t0
            rx_total += n
            self._spurious = False
            if n >= PMD_SLEEP_THRESH:
                self.sleep_time_us = 0
            self.flush_output(force=False)
        return rx_total

    # -- output ---------------------------------------------------------------

    def output(self, port_no: int, packet: Packet) -> None:
        """Queue ``packet`` for transmit on ``port_no`` (dropped if unknown)."""
        txport = self.tx_ports.get(port_no)
        if txport is None:
            self._dropped.total += 1  # output to a port this PMD does not have
            return
        txport.batch.append(packet)
        self._note_source(txport, 1)

    def output_batch(self, port_no: int, packets: list[Packet]) -> None:
        """Queue ``packets`` (all from the rxq being processed) on ``port_no``."""
        txport = self.tx_ports.get(port_no)
        if txport is None:
            self._dropped.total += len(packets)
            return
        txport.batch += packets
        self._note_source(txport, len(packets))

    def _note_source(self, txport: TxPort, n: int) -> None:
        sources = txport.sources
        rxq = self.last_rxq
        if sources and sources[-1][0] is rxq:
            sources[-1][1] += n  # type: ignore[operator]
        else:
            sources.append([rxq, n])

    def _netdev_failed(self, netdev: Netdev, what: str, exc: Exception, dropped: int) -> None:
        """A netdev call raised: count what it cost, log (rate-limited), carry on."""
        if self._netdev_errors is not None:
            self._netdev_errors.total += dropped or 1
        if self._log is not None:
            self._log.err(
                f"{self.name}: {netdev.name}: {what} failed ({exc!r}); {dropped} packets dropped",
                rl=self._error_rl,
            )

    def flush_output(self, force: bool) -> int:
        """Send every non-empty tx batch whose flush time has come; return packets sent."""
        sent = 0
        now = self.now_us
        for txport in self.tx_ports.values():
            if txport.batch and (force or now >= txport.flush_time):
                sent += self._flush_port(txport)
        return sent

    def _flush_port(self, txport: TxPort) -> int:
        batch = txport.batch
        sources = txport.sources
        txport.batch = []
        txport.sources = []
        n = len(batch)
        t0 = _tsc()
        try:
            rc = txport.netdev.send(txport.qid, batch)
        except Exception as exc:  # a buggy provider must not end the PMD
            self._netdev_failed(txport.netdev, "send", exc, n)
            return 0
        self._sent.total += 1
        if rc == EINPROGRESS:
            self.hooks.deferred_send(self, txport)
        txport.flush_time = self.now_us + self.settings.tx_flush_interval_us
        perf_n = self.perf.n
        perf_n[Stat.SENT_PKTS] += n
        perf_n[Stat.SENT_BATCHES] += 1
        # Transmit time belongs to the queues the packets came from.
        share = (_tsc() - t0) // n
        for rxq, count in sources:
            if rxq is not None:
                rxq.cycles_curr += share * count  # type: ignore[attr-defined, operator]
        return n

    # -- housekeeping ---------------------------------------------------------

    def set_interval(self, ns: int) -> None:
        """Use ``ns`` as the measurement interval from the next store on."""
        self.interval_ns = ns
        self._next_cycle_store = min(self._next_cycle_store, self.clock.ns() + ns)

    def clock_moved(self) -> None:
        """``time/warp`` moved the clock: close what is due now.

        Called between two iterations.  Without it a warp would be noticed
        only at the next housekeeping, up to a thousand iterations later,
        and the steps of a large warp would run into each other; OVS's C
        PMDs get there within microseconds.
        """
        if self.perf.polling:
            self._housekeeping()

    def _housekeeping(self) -> None:
        # Interval boundaries on the (warpable) clock; cycles stay real.
        now = self.clock.ns()
        if now >= self._next_optimization:
            self.flow_table.rerank()
            self._next_optimization = now + DPCLS_OPTIMIZATION_INTERVAL_NS
        if now < self._next_cycle_store:
            return
        n = self.perf.get_all()
        stats = (
            n[Stat.CYCLES_ITER_IDLE],
            n[Stat.CYCLES_ITER_BUSY],
            n[Stat.CYCLES_SLEEP],
            n[Stat.CYCLES_OFFLOAD],
        )
        idle, busy, sleep, offload = (a - b for a, b in zip(stats, self._prev_stats, strict=True))
        self._prev_stats = stats
        self.last_interval = (idle, busy, sleep, offload)
        for rxq in self.poll_list:
            rxq.store_interval()
        self.busy_intervals[self.busy_idx % PMD_INTERVAL_MAX] = busy
        self.busy_idx += 1
        tsc = _tsc()
        if self._intrvl_tsc_prev:
            self.intrvl_cycles = tsc - self._intrvl_tsc_prev
        self._intrvl_tsc_prev = tsc
        self._next_cycle_store = now + self.interval_ns
        if self._on_interval is not None:
            self._on_interval(self)

    def __repr__(self) -> str:
        return f"Pmd(core={self.core_id}, numa={self.numa_id}, rxqs={len(self.poll_list)})"
