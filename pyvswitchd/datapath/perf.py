"""Per-PMD performance statistics: counters, histograms and histories.

Each PMD task (and the main-thread pseudo PMD) owns one :class:`PmdPerf`.
The hot path touches it in three ways:

* it bumps the monotonic counters directly, ``perf.n[Stat.RECV] += k``;
* the PMD loop brackets every iteration with :meth:`PmdPerf.start_iteration`
  and :meth:`PmdPerf.end_iteration`, which classify the iteration's cycles
  as idle or busy and feed the cycles/it and packets/it histograms;
* with ``pmd-perf-metrics`` on, :meth:`PmdPerf.record_batch` and
  :meth:`PmdPerf.record_upcall` collect per-iteration detail, which
  ``end_iteration`` then folds into the remaining histograms, the
  1000-iteration history, the 1000-millisecond history and the
  suspicious-iteration log.

"Cycles" are nanoseconds of ``time.perf_counter_ns()`` and :data:`TSC_HZ` is
1e9, so every cycle figure is also a nanosecond figure.

Behaviour follows OVS's ``lib/dpif-netdev-perf.c``.  The counters are
OVS's ``pmd_stat_type`` in OVS's order, then the offload and deferred-work
counters of the two patch series named in :mod:`.perf_format` (see
:class:`Stat`).  Deliberate differences:

* ``start_iteration`` starts the iteration at the TSC value the caller
  passes instead of at the last TSC read of the previous iteration; a loop
  that passes the value it gave to the previous ``end_iteration`` gets
  OVS's gap-free accounting, one that yields to other trio tasks in between
  does not charge their time to this PMD.
* OVS's try-lock on the stats mutex becomes the :attr:`PmdPerf.polling`
  flag: :meth:`PmdPerf.request_clear` clears at once unless the PMD loop is
  running, in which case the loop clears at its next ``start_iteration``.
* When an extended suspicious-iteration range would cover the whole
  history, OVS ends it where it began, which logs an empty table; we end it
  one iteration earlier (999 iterations).
* The two log messages carry no trailing newline (vlog adds one per line).
* Negative ``-a``/``-b`` values of ``pmd-perf-log-set`` are clamped to 0.

Formatting of ``dpif-netdev/pmd-perf-show`` lives in
:mod:`pyvswitchd.datapath.perf_format`.
"""

from __future__ import annotations

import enum
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence

import attrs

from pyvswitchd.observe.ratelimit import RateLimit
from pyvswitchd.observe.vlog import VlogModule
from pyvswitchd.odp.int_parse import INT_MAX, INT_MIN, strtoll

from .histogram import Histogram, linear_walls, log_walls

#: Cycle counter frequency: cycles are nanoseconds.
TSC_HZ = 1_000_000_000
#: Microseconds per cycle.
US_PER_CYCLE = 1e6 / TSC_HZ
#: Length of the iteration and millisecond histories.
HISTORY_LEN = 1000
# How often, in cycles, end_iteration looks at the millisecond clock
# (OVS: tsc_hz / 250000, i.e. every 4 us).
_MS_CHECK_CYCLES = TSC_HZ // 250_000
# Largest -b/-a of pmd-perf-log-set: the range must fit in the history.
_MAX_LOG_RANGE = HISTORY_LEN - 2

LOG_USAGE = (
    "Usage: ovs-appctl dpif-netdev/pmd-perf-log-set "
    "[on|off] [-b before] [-a after] [-e|-ne] [-us usec] [-q qlen]"
)


class Stat(enum.IntEnum):
    """Indexes of :attr:`PmdPerf.n`, in OVS HEAD's ``pmd_stat_type`` order."""

    PHWOL_HIT = 0  # classified by partial hardware offload (flow mark)
    SIMPLE_HIT = enum.auto()  # simple-match table hits
    EXACT_HIT = enum.auto()  # EMC hits
    SMC_HIT = enum.auto()  # signature-match-cache hits
    MASKED_HIT = enum.auto()  # dpcls (megaflow) hits
    MISS = enum.auto()  # misses whose upcall succeeded
    LOST = enum.auto()  # misses whose upcall failed or was dropped
    MASKED_LOOKUP = enum.auto()  # subtables searched, summed over megaflow hits
    RECV = enum.auto()  # packets received from rx queues
    RECIRC = enum.auto()  # packets re-entering through recirculation
    SENT_PKTS = enum.auto()  # packets handed to netdev send
    SENT_BATCHES = enum.auto()  # send batches (one per port flush)
    CYCLES_ITER_IDLE = enum.auto()  # cycles of iterations with rx + tx == 0
    CYCLES_ITER_BUSY = enum.auto()  # cycles of iterations with rx + tx > 0
    CYCLES_UPCALL = enum.auto()  # upcall cycles (full metrics only)
    SLEEP_ITER = enum.auto()  # iterations that slept
    CYCLES_SLEEP = enum.auto()  # cycles spent sleeping
    CYCLES_OFFLOAD = enum.auto()  # cycles in offload-provider PMD work
    WORK_DEFER = enum.auto()  # work items deferred to the work ring
    WORK_IN_PROG = enum.auto()  # completion checks that found work in progress
    WORK_R_FULL = enum.auto()  # deferrals that found the ring full
    WORK_DONE = enum.auto()  # deferred items completed
    WORK_DROPPED = enum.auto()  # deferred items dropped


N_STATS = len(Stat)
# Plain-int copies for the hot path: enum attribute lookups cost more.
_IDLE = int(Stat.CYCLES_ITER_IDLE)
_BUSY = int(Stat.CYCLES_ITER_BUSY)
_UPCALL = int(Stat.CYCLES_UPCALL)
_SLEEP_ITER = int(Stat.SLEEP_ITER)
_SLEEP = int(Stat.CYCLES_SLEEP)
_OFFLOAD = int(Stat.CYCLES_OFFLOAD)


# -- per-iteration / per-millisecond samples ----------------------------------


@attrs.define(eq=False)
class IterStats:
    """Figures of one iteration, one millisecond, or the completed-ms totals.

    For an iteration ``timestamp`` is its number and ``iterations`` and
    ``busy_cycles`` are unused; for a millisecond ``timestamp`` is the ms
    clock when the slot started and ``max_vhost_qfill`` is a sum.
    """

    timestamp: int = 0
    cycles: int = 0
    busy_cycles: int = 0
    iterations: int = 0
    pkts: int = 0
    upcalls: int = 0
    upcall_cycles: int = 0
    batches: int = 0
    max_vhost_qfill: int = 0

    def reset(self) -> None:
        self.timestamp = self.cycles = self.busy_cycles = self.iterations = 0
        self.pkts = self.upcalls = self.upcall_cycles = self.batches = 0
        self.max_vhost_qfill = 0


def format_iteration_history(ring: Sequence[IterStats], idx: int, n_iter: int) -> str:
    """The ``-it`` table: the ``n_iter`` slots before ``idx``, newest first.

    Empty when ``n_iter`` is 0.  Used by ``pmd-perf-show`` and by the
    suspicious-iteration log.
    """
    if n_iter <= 0:
        return ""
    titles = ("cycles", "packets", "cycles/pkt", "pkts/batch", "vhost qlen", "upcalls")
    lines = ["   {:<17}   ".format("iter") + "".join(f"{t:<10}   " for t in titles)]
    lines[0] += "cycles/upcall"
    for i in range(1, min(n_iter, HISTORY_LEN) + 1):
        s = ring[(idx - i) % HISTORY_LEN]
        cols = (
            s.cycles,
            s.pkts,
            s.cycles // s.pkts if s.pkts else 0,
            s.pkts // s.batches if s.batches else 0,
            s.max_vhost_qfill,
            s.upcalls,
            s.upcall_cycles // s.upcalls if s.upcalls else 0,
        )
        lines.append(f"   {s.timestamp:<17}   " + "  ".join(f"{c:<11}" for c in cols))
    return "\n".join(lines) + "\n"


# -- suspicious-iteration logging configuration --------------------------------


@attrs.define
class PerfLogConfig:
    """``pmd-perf-log-set`` state, shared by all PMDs of a datapath.

    ``before``/``after`` iterations around a suspicious one are logged;
    ``extend`` lets a later suspicious iteration extend the range;
    an iteration is suspicious when it takes more than ``us_thr`` us or its
    vhost queue fill reaches ``q_thr``.
    """

    enabled: bool = False
    extend: bool = False
    before: int = 5
    after: int = 5
    us_thr: int = 250
    q_thr: int = 128

    def summary(self) -> str:
        """The INFO line OVS logs when the command succeeds."""
        return (
            f"pmd-perf-log-set: {'on' if self.enabled else 'off'}, before={self.before}, "
            f"after={self.after}, extend={'true' if self.extend else 'false'}, "
            f"us_thr={self.us_thr}, q_thr={self.q_thr}"
        )

    def assign(self, other: PerfLogConfig) -> None:
        """Copy ``other``'s settings into this shared instance."""
        for field in attrs.fields(PerfLogConfig):
            setattr(self, field.name, getattr(other, field.name))


def _parse_c_int(text: str) -> int:
    """A C ``int`` as strtol reads a whole argument; ValueError (OVS's usage text) if not."""
    value = strtoll(text)
    if value is None or not INT_MIN <= value <= INT_MAX:
        raise ValueError(LOG_USAGE)
    return value


def parse_perf_log_set(args: Sequence[str], current: PerfLogConfig) -> PerfLogConfig:
    """Apply ``pmd-perf-log-set`` arguments to a copy of ``current``.

    Tokens: ``on``, ``off``, ``-e``, ``-ne``, ``-b N``, ``-a N`` (clamped to
    0..998), ``-us N``, ``-q N``, in any order; ``after`` is then reduced so
    that ``before + after <= 998``.  Any other token, a missing value or a
    value that is not a C ``int`` raises ValueError whose text is OVS's
    usage message.
    """
    cfg = attrs.evolve(current)
    i = 0
    while i < len(args):
        token = args[i]
        if token in ("on", "off"):
            cfg.enabled = token == "on"
        elif token in ("-e", "-ne"):
            cfg.extend = token == "-e"
        elif token in ("-a", "-b", "-us", "-q") and i + 1 < len(args):
            value = _parse_c_int(args[i + 1])
            if token == "-a":
                cfg.after = min(max(value, 0), _MAX_LOG_RANGE)
            elif token == "-b":
                cfg.before = min(max(value, 0), _MAX_LOG_RANGE)
            elif token == "-us":
                cfg.us_thr = value
            else:
                cfg.q_thr = value
            i += 1
        else:
            raise ValueError(LOG_USAGE)
        i += 1
    if cfg.before + cfg.after > _MAX_LOG_RANGE:
        cfg.after = _MAX_LOG_RANGE - cfg.before
    return cfg


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


# -- the statistics of one PMD -------------------------------------------------


class PmdPerf:
    """Performance statistics of one PMD (or of the main thread).

    :meth:`record_batch` and :meth:`record_upcall` record only with full
    metrics on: when the previous :meth:`end_iteration` was called with
    ``full_metrics=True`` (the loop reads the setting once per iteration),
    or else when the constructor's ``full_metrics`` (a bool or a callable,
    read on each call) says so -- e.g. for the main thread, which never
    ends iterations.  ``log_config`` is the (usually shared) suspicious-iteration
    configuration and ``log`` receives its WARN lines; without ``log`` no
    iteration is ever logged.  ``wall_ms`` is the millisecond clock of the
    measurement duration and the ms history (OVS's monotonic
    ``time_msec``); ``tsc`` is the cycle counter.
    """

    __slots__ = (
        "_clear_pending", "_cur_dirty", "_cyc_bins", "_cyc_search", "_fm_last", "_full_metrics",
        "_it_idx", "_it_ring", "_log_begin_it", "_log_end_it", "_log_reason", "_log_rl",
        "_log_susp_it", "_ms_idx", "_ms_ring", "_next_check_tsc", "_pkt_bins", "_pkt_search",
        "_start_tsc", "current", "cycles_hist", "cycles_per_pkt_hist", "cycles_per_upcall_hist",
        "iteration_cnt", "log", "log_config", "max_vhost_qfill_hist", "n", "pkts_hist",
        "pkts_per_batch_hist", "polling", "start_ms", "totals", "tsc", "upcalls_hist",
        "wall_ms", "zero",
    )  # fmt: skip

    def __init__(
        self,
        *,
        full_metrics: Callable[[], bool] | bool = False,
        log_config: PerfLogConfig | None = None,
        log: VlogModule | None = None,
        wall_ms: Callable[[], int] = monotonic_ms,
        tsc: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if isinstance(full_metrics, bool):
            constant = full_metrics
            self._full_metrics: Callable[[], bool] = lambda: constant
        else:
            self._full_metrics = full_metrics
        self.log_config = log_config if log_config is not None else PerfLogConfig()
        self.log = log
        self.wall_ms = wall_ms
        self.tsc = tsc
        #: Monotonic counters indexed by :class:`Stat`.
        self.n = [0] * N_STATS
        #: ``n`` as of the last clear; readers report the difference.
        self.zero = [0] * N_STATS
        #: True while the PMD loop runs; a clear is then deferred to the loop.
        self.polling = False
        #: Iterations started since creation (not reset by a clear).
        self.iteration_cnt = 0
        self.current = IterStats()
        #: Sums over the completed milliseconds (the histogram averages).
        self.totals = IterStats()
        self.cycles_hist = Histogram(log_walls(500, 24_000_000))
        self.pkts_hist = Histogram(log_walls(0, 1000))
        self.cycles_per_pkt_hist = Histogram(linear_walls(100, 30_000))
        self.pkts_per_batch_hist = Histogram(linear_walls(0, 32))
        self.max_vhost_qfill_hist = Histogram(log_walls(0, 512))
        self.upcalls_hist = Histogram(linear_walls(0, 30))
        self.cycles_per_upcall_hist = Histogram(log_walls(1000, 1_000_000))
        self._cyc_bins, self._cyc_search = self.cycles_hist.bins, self.cycles_hist.search
        self._pkt_bins, self._pkt_search = self.pkts_hist.bins, self.pkts_hist.search
        self._it_ring = [IterStats() for _ in range(HISTORY_LEN)]
        self._ms_ring = [IterStats() for _ in range(HISTORY_LEN)]
        self._it_idx = 0
        self._ms_idx = 0
        self._start_tsc = 0
        self._next_check_tsc = 0
        self._clear_pending = False
        self._cur_dirty = False
        self._fm_last = False
        # Same budget as OVS's latency_rl: 600 messages a minute.
        self._log_rl = RateLimit(600, 600)
        self._log_susp_it = -1
        self._log_begin_it = -1
        self._log_end_it = -1
        self._log_reason = ""
        self.start_ms = 0
        self.clear()

    # -- reading --------------------------------------------------------

    def get(self, stat: Stat) -> int:
        """Counter ``stat`` since the last clear."""
        return max(self.n[stat] - self.zero[stat], 0)

    def get_all(self) -> list[int]:
        """All counters since the last clear, indexed by :class:`Stat`."""
        return [max(n - z, 0) for n, z in zip(self.n, self.zero, strict=True)]

    def full_metrics_enabled(self) -> bool:
        """Whether :meth:`record_batch` and :meth:`record_upcall` record now."""
        return self._fm_last or self._full_metrics()

    def histograms(self) -> tuple[Histogram, ...]:
        """The 7 histograms in ``pmd-perf-show`` column order."""
        return (
            self.cycles_hist,
            self.pkts_hist,
            self.cycles_per_pkt_hist,
            self.pkts_per_batch_hist,
            self.max_vhost_qfill_hist,
            self.upcalls_hist,
            self.cycles_per_upcall_hist,
        )

    @property
    def iteration_history(self) -> tuple[list[IterStats], int]:
        """The iteration ring and the index of its next (empty) slot."""
        return self._it_ring, self._it_idx

    @property
    def ms_history(self) -> tuple[list[IterStats], int]:
        """The millisecond ring and the index of its in-progress slot."""
        return self._ms_ring, self._ms_idx

    # -- clearing -------------------------------------------------------

    def request_clear(self) -> None:
        """``pmd-stats-clear``: clear now, or at the next iteration if polling.

        A running PMD loop may be in the middle of an iteration, so it
        clears itself at its next :meth:`start_iteration`.
        """
        if self.polling:
            self._clear_pending = True
        else:
            self.clear()

    def clear(self, now_ms: int | None = None) -> None:
        """Start a new measurement now (``now_ms`` defaults to ``wall_ms()``).

        Counters restart from zero (``n`` itself stays monotonic), the
        histograms, totals and both histories are emptied and any pending
        suspicious-iteration log is forgotten.  ``iteration_cnt`` is kept.
        """
        self.zero[:] = self.n
        self.current.reset()
        self.totals.reset()
        for hist in self.histograms():
            hist.clear()
        for sample in self._it_ring:
            sample.reset()
        for sample in self._ms_ring:
            sample.reset()
        self._it_idx = self._ms_idx = 0
        self.start_ms = self.wall_ms() if now_ms is None else now_ms
        self._ms_ring[0].timestamp = self.start_ms
        self._log_susp_it = self._log_begin_it = self._log_end_it = -1
        self._log_reason = ""
        self._clear_pending = False
        self._cur_dirty = False

    # -- hot path -------------------------------------------------------

    def start_iteration(self, now_tsc: int) -> None:
        """Begin an iteration at cycle ``now_tsc`` (doing a pending clear first)."""
        if self._clear_pending:
            self.clear()
        self.iteration_cnt += 1
        if self._cur_dirty:
            cur = self.current
            cur.upcalls = cur.upcall_cycles = cur.batches = cur.max_vhost_qfill = 0
            self._cur_dirty = False
        self._start_tsc = now_tsc

    def record_batch(self, size: int, vhost_remaining: int | None = None) -> None:
        """With full metrics: count an rx batch of ``size`` packets.

        ``vhost_remaining`` is what a vhost queue still holds after the
        receive; ``size`` plus it is the queue fill for the vhost qlen figures.
        """
        if not (self._fm_last or self._full_metrics()):
            return
        cur = self.current
        cur.batches += 1
        hist = self.pkts_per_batch_hist
        hist.bins[bisect_left(hist.search, size)] += 1
        if vhost_remaining is not None and size + vhost_remaining > cur.max_vhost_qfill:
            cur.max_vhost_qfill = size + vhost_remaining
        self._cur_dirty = True

    def record_upcall(self, cycles: int) -> None:
        """With full metrics: count one upcall that took ``cycles``."""
        if not (self._fm_last or self._full_metrics()):
            return
        cur = self.current
        cur.upcalls += 1
        cur.upcall_cycles += cycles
        self.cycles_per_upcall_hist.add(cycles)
        self._cur_dirty = True

    def end_iteration(
        self,
        now_tsc: int,
        rx: int,
        tx: int,
        sleep_cycles: int = 0,
        offload_cycles: int = 0,
        full_metrics: bool = False,
    ) -> None:
        """Finish the iteration at cycle ``now_tsc``.

        ``rx``/``tx`` are the packets received and sent; ``sleep_cycles`` and
        ``offload_cycles`` were spent sleeping and in offload-provider work
        and are counted apart, not as idle or busy cycles.  An iteration is
        busy if it received or sent anything, but the iteration counts
        shown by ``pmd-perf-show`` classify by ``rx`` only (as OVS does).
        """
        cycles = now_tsc - self._start_tsc - sleep_cycles - offload_cycles
        if cycles < 0:
            cycles = 0
        n = self.n
        if rx or tx:
            n[_BUSY] += cycles
        else:
            n[_IDLE] += cycles
        self._cyc_bins[bisect_left(self._cyc_search, cycles)] += 1
        self._pkt_bins[bisect_left(self._pkt_search, rx)] += 1
        if sleep_cycles:
            n[_SLEEP_ITER] += 1
            n[_SLEEP] += sleep_cycles
        if offload_cycles:
            n[_OFFLOAD] += offload_cycles
        self._fm_last = full_metrics
        if full_metrics:
            self._end_full(now_tsc, cycles, rx)

    def _end_full(self, now_tsc: int, cycles: int, rx: int) -> None:
        # Only the history and the log read these, so the lean path skips them.
        cur = self.current
        cur.timestamp = self.iteration_cnt
        cur.cycles = cycles
        cur.pkts = rx
        self.n[_UPCALL] += cur.upcall_cycles
        if rx:
            self.cycles_per_pkt_hist.add(cycles // rx)
        self.upcalls_hist.add(cur.upcalls)
        self.max_vhost_qfill_hist.add(cur.max_vhost_qfill)

        ms = self._ms_ring[self._ms_idx]
        ms.iterations += 1
        ms.cycles += cycles
        if rx:
            ms.busy_cycles += cycles
        ms.pkts += rx
        ms.upcalls += cur.upcalls
        ms.upcall_cycles += cur.upcall_cycles
        ms.batches += cur.batches
        ms.max_vhost_qfill += cur.max_vhost_qfill

        cfg = self.log_config
        if cfg.enabled and self.log is not None:
            if cycles > cfg.us_thr * TSC_HZ // 1_000_000:
                self._mark_suspicious("Excessive total cycles")
            elif cur.max_vhost_qfill >= cfg.q_thr:
                self._mark_suspicious("Vhost RX queue full")
            if self._log_end_it == self._it_idx:
                self._log_neighborhood()

        # Store the iteration without copying: it takes the ring's empty
        # slot, whose (zeroed) object becomes the next `current`; the slot
        # after it, the oldest sample, is emptied in turn.
        ring = self._it_ring
        idx = self._it_idx
        self.current = ring[idx]
        ring[idx] = cur
        idx = idx + 1 if idx + 1 < HISTORY_LEN else 0
        ring[idx].reset()
        self._it_idx = idx
        self._cur_dirty = False

        if now_tsc > self._next_check_tsc:
            now_ms = self.wall_ms()
            if now_ms != ms.timestamp:
                self._close_ms(ms, now_ms)
            self._next_check_tsc = self.tsc() + _MS_CHECK_CYCLES

    def _close_ms(self, ms: IterStats, now_ms: int) -> None:
        t = self.totals
        t.iterations += ms.iterations
        t.cycles += ms.cycles
        t.busy_cycles += ms.busy_cycles
        t.pkts += ms.pkts
        t.upcalls += ms.upcalls
        t.upcall_cycles += ms.upcall_cycles
        t.batches += ms.batches
        t.max_vhost_qfill += ms.max_vhost_qfill
        self._ms_idx = (self._ms_idx + 1) % HISTORY_LEN
        slot = self._ms_ring[self._ms_idx]
        slot.reset()
        slot.timestamp = now_ms

    # -- suspicious iterations ---------------------------------------------

    def _mark_suspicious(self, reason: str) -> None:
        """Schedule logging around the current iteration (at ring slot _it_idx)."""
        cfg = self.log_config
        idx = self._it_idx
        if self._log_susp_it < 0:
            self._log_begin_it = (idx - cfg.before) % HISTORY_LEN
            self._log_end_it = (idx + cfg.after + 1) % HISTORY_LEN
        elif cfg.extend:
            # Report the earlier one now; the shared range then ends after
            # the new one, unless that would overflow the history.
            self._warn_suspicious()
            begin = self._log_begin_it
            end = (idx + cfg.after + 1) % HISTORY_LEN
            if (end - begin) % HISTORY_LEN < (self._log_end_it - begin) % HISTORY_LEN:
                end = (begin + HISTORY_LEN - 1) % HISTORY_LEN
            self._log_end_it = end
        else:
            return
        self._log_susp_it = idx
        self._log_reason = reason

    def _warn_suspicious(self) -> None:
        assert self.log is not None
        # Only called once the suspicious iteration is in the history: a
        # range always ends at least one iteration after it.
        susp = self._it_ring[self._log_susp_it]
        self.log.warn(
            f"Suspicious iteration ({self._log_reason}): iter={susp.timestamp} "
            f"duration={susp.cycles * 1_000_000 // TSC_HZ} us",
            rl=self._log_rl,
        )

    def _log_neighborhood(self) -> None:
        assert self.log is not None
        span = (self._log_end_it - self._log_begin_it) % HISTORY_LEN
        self._warn_suspicious()
        table = format_iteration_history(self._it_ring, self._it_idx, span)
        self.log.warn(
            "Neighborhood of suspicious iteration:\n" + table.rstrip("\n"), rl=self._log_rl
        )
        self._log_susp_it = self._log_begin_it = self._log_end_it = -1
        self._log_reason = ""
        if span > 100:
            # A long dump disturbs the PMD; fall back to the defaults for all.
            cfg = self.log_config
            cfg.before, cfg.after, cfg.extend = 5, 5, False
