"""PMD auto load balance (ALB), as pure logic.

No I/O, no trio, like :mod:`.rxq_sched` whose scheduler its dry runs use.
``AutoLoadBalance(log)``: ``configure(...)`` takes the raw ``pmd-auto-lb*``
other_config values (None = absent; never reconfigures) and logs each knob
that changed; ``update_overload(...)`` is a PMD's 5 s overload step (call
it only when its counters did not go backwards); ``poll(now_ms, ...)`` is
the main-thread trigger, True = request a reconfigure (its inputs are
callables, evaluated only once the rebalance interval has passed);
``note_reconfigured()`` must follow every datapath reconfigure.  The
variance arithmetic is OVS's, all-integer and truncating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs

from ..odp.int_parse import strtoll
from .rxq_sched import PMD_INTERVAL_MAX, Log, PmdInfo, PmdLoad, RxqInfo, ovs_bool, schedule

ALB_LOAD_THRESHOLD = 95
ALB_IMPROVEMENT_THRESHOLD = 25
ALB_REBALANCE_INTERVAL = 1
ALB_REBALANCE_INTERVAL_MAX = 20000
_MIN_TO_MS = 60_000


def _knob(value: object, lo: int, hi: int, default: int) -> int:
    """An integer knob: absent, unparsable or outside lo..hi all mean default."""
    if value is None or isinstance(value, bool):
        return default
    number = value if isinstance(value, int) else strtoll(str(value))
    if number is None or not lo <= number <= hi:
        return default
    return number


@attrs.define
class SchedView:
    """The datapath as the ALB needs it: queues with their current core and
    history, PMDs with their current isolated flag and interval length, and
    the scheduling knobs in force."""

    rxqs: Sequence[RxqInfo]
    pmds: Sequence[PmdInfo]
    algorithm: str
    isolate: bool


def pmd_load(busy: int, idle: int, sleep: int = 0, offload: int = 0) -> int:
    """Busy percentage of one 5 s interval (integer, truncated).

    Sleep and offload cycles count toward the interval but not as busy:
    a PMD that sleeps a lot or mostly runs offload work is not overloaded.
    """
    if busy <= 0:
        return 0
    return busy * 100 // (busy + idle + sleep + offload)


def variance(values: Sequence[int]) -> int:
    """OVS's all-integer variance: truncated mean, truncated mean square."""
    if not values or not sum(values):
        return 0
    mean = sum(values) // len(values)
    return sum((v - mean) ** 2 for v in values) // len(values)


def _numa_variance(loads: Iterable[PmdLoad], numa_id: int, intrvl: dict[int, int]) -> int:
    percents = []
    for pmd in loads:
        if pmd.numa_id != numa_id or pmd.isolated:
            continue
        # One interval's length times 12 approximates the span HIST covers.
        total = intrvl.get(pmd.core_id, 0) * PMD_INTERVAL_MAX
        percents.append(pmd.proc_cycles * 100 // total if total else 0)
    return variance(percents)


def _current_loads(view: SchedView) -> dict[int, PmdLoad]:
    loads = {p.core_id: PmdLoad(p.core_id, p.numa_id) for p in view.pmds}
    for rxq in sorted(view.rxqs, key=lambda r: (r.port_no, r.qid)):
        pmd = loads.get(rxq.current_core) if rxq.current_core is not None else None
        if pmd is None:
            continue
        # Like OVS, any PMD holding a queue with an affinity counts as
        # isolated here, even if the queue only landed there as a fallback.
        if rxq.pinned_core is not None and view.isolate:
            pmd.isolated = True
        pmd.rxqs.append(rxq.key)
        pmd.proc_cycles += rxq.hist
    return loads


@attrs.define
class AutoLoadBalance:
    """PMD auto load balance state for one datapath.

    The thresholds start at 0, as in OVS, so the first :meth:`configure`
    logs every knob.  ``interval_ms`` is the rebalance interval.
    """

    log: Log
    enabled: bool = False
    load_threshold: int = 0
    improvement_threshold: int = 0
    interval_ms: int = 0
    _poll_timer: int | None = attrs.field(default=None, init=False)
    _recheck_config: bool = attrs.field(default=False, init=False)
    _do_dry_run: bool = attrs.field(default=False, init=False)

    def configure(
        self,
        *,
        enabled: object = None,
        load_threshold: object = None,
        improvement_threshold: object = None,
        rebal_interval: object = None,
    ) -> None:
        """Apply the ``pmd-auto-lb*`` other_config values (None = absent).

        Out-of-range or unparsable numbers fall back to the defaults (95 %,
        25 %, 1 min; an interval of 0 also means 1 min).
        """
        log_state = False
        # 0 is out of range too, so it also means the 1 min default.
        minutes = _knob(rebal_interval, 1, ALB_REBALANCE_INTERVAL_MAX, ALB_REBALANCE_INTERVAL)
        interval_ms = minutes * _MIN_TO_MS
        if interval_ms != self.interval_ms:
            self.interval_ms = interval_ms
            # OVS's message carries a stray newline; vlog drops it on output.
            self.log.info(
                f"PMD auto load balance interval set to {interval_ms // _MIN_TO_MS} mins\n"
            )
            log_state = True
        improve = _knob(improvement_threshold, 0, 100, ALB_IMPROVEMENT_THRESHOLD)
        if improve != self.improvement_threshold:
            self.improvement_threshold = improve
            self.log.info(f"PMD auto load balance improvement threshold set to {improve}%")
            log_state = True
        load = _knob(load_threshold, 0, 100, ALB_LOAD_THRESHOLD)
        if load != self.load_threshold:
            self.load_threshold = load
            self.log.info(f"PMD auto load balance load threshold set to {load}%")
            log_state = True
        state = ovs_bool(enabled, False)
        if state != self.enabled or log_state:
            self.enabled = state
            if state:
                self.log.info(
                    "PMD auto load balance is enabled, "
                    f"interval {self.interval_ms // _MIN_TO_MS} mins, "
                    f"pmd load threshold {self.load_threshold}%, "
                    f"improvement threshold {self.improvement_threshold}%."
                )
            else:
                self._poll_timer = None
                self.log.info("PMD auto load balance is disabled.")

    def update_overload(
        self,
        count: int,
        *,
        busy: int,
        idle: int,
        sleep: int = 0,
        offload: int = 0,
        isolated: bool = False,
    ) -> int:
        """A PMD's new overload count after one 5 s interval's counter deltas.

        Unchanged while the ALB is off or the PMD isolated; otherwise +1 when
        the load reaches the threshold, else back to 0.
        """
        if not self.enabled or isolated:
            return count
        if pmd_load(busy, idle, sleep, offload) >= self.load_threshold:
            return count + 1
        return 0

    def note_reconfigured(self) -> None:
        """Record that the datapath reconfigured (re-evaluate the cheap checks)."""
        self._recheck_config = True

    def poll(
        self,
        now_ms: int,
        *,
        overload_counts: Callable[[], Iterable[int]],
        reconfigure_pending: Callable[[], bool],
        view: Callable[[], SchedView],
    ) -> bool:
        """Main-thread trigger; True means "request a datapath reconfigure".

        Every rebalance interval: if some PMD was overloaded for
        PMD_INTERVAL_MAX intervals in a row, no reconfigure is already
        pending, and both :meth:`dry_run_needed` and :meth:`dry_run` agree.
        """
        if not self.enabled:
            return False
        if self._poll_timer is None:
            self._poll_timer = now_ms
            return False
        if self._poll_timer + self.interval_ms >= now_ms:
            return False
        self._poll_timer = now_ms
        if not any(count >= PMD_INTERVAL_MAX for count in overload_counts()):
            return False
        if reconfigure_pending():
            return False
        current = view()
        if not (self.dry_run_needed(current) and self.dry_run(current)):
            return False
        self.log.info("PMD auto load balance dry run. Requesting datapath reconfigure.")
        return True

    def dry_run_needed(self, view: SchedView) -> bool:
        """Cheap pre-check, cached until the next :meth:`note_reconfigured`."""
        if not self._recheck_config:
            if not self._do_dry_run:
                self.log.dbg(
                    "PMD auto load balance nothing to do, "
                    "no configuration changes since last check."
                )
            return self._do_dry_run
        self._recheck_config = False
        if view.algorithm == "roundrobin":
            self.log.dbg(
                "PMD auto load balance nothing to do, "
                "pmd-rxq-assign=roundrobin assignment type configured."
            )
            self._do_dry_run = False
            return False
        polled: dict[int, int] = {}
        for rxq in view.rxqs:
            if rxq.current_core is not None:
                polled[rxq.current_core] = polled.get(rxq.current_core, 0) + 1
        candidates = [p for p in view.pmds if not p.isolated]
        self._do_dry_run = len(candidates) >= 2 and any(
            polled.get(p.core_id, 0) > 1 for p in candidates
        )
        if not self._do_dry_run:
            self.log.dbg(
                "PMD auto load balance nothing to do, not enough non-isolated PMDs or RxQs."
            )
        return self._do_dry_run

    def dry_run(self, view: SchedView) -> bool:
        """Whether rescheduling now would cut the per-NUMA variance of PMD
        busy percentages by at least the improvement threshold."""
        self.log.dbg("PMD auto load balance performing dry run.")
        current = _current_loads(view)
        estimate = schedule(
            view.rxqs, view.pmds, view.algorithm, view.isolate, self.log, dry_run=True
        )
        estimate_numas = estimate.numa_ids()
        if estimate.cross_numa and len(estimate_numas) > 1:
            self.log.dbg(
                "PMD auto load balance detected cross-numa polling with "
                "multiple numa nodes. Unable to accurately estimate."
            )
            return False
        intrvl = {p.core_id: p.intrvl_cycles for p in view.pmds}
        met = False
        for numa_id in sorted({p.numa_id for p in current.values()}):
            if numa_id not in estimate_numas:
                continue
            cur = _numa_variance(current.values(), numa_id, intrvl)
            est = _numa_variance(estimate.pmds.values(), numa_id, intrvl)
            improvement = (cur - est) * 100 // cur if est < cur else 0
            self.log.dbg(
                f"Numa node {numa_id}. Current variance {cur} Estimated variance {est}. "
                f"Variance improvement {improvement}%."
            )
            # A threshold of 0 is met even without improvement, as in OVS.
            met = met or improvement >= self.improvement_threshold
        self.log.dbg(
            f"PMD load variance improvement threshold {self.improvement_threshold}% is "
            f"{'met' if met else 'not met'}."
        )
        return met
