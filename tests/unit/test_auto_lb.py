"""PMD auto load balance: knobs, load measurement, the trigger and its dry run."""

from __future__ import annotations

import pytest

from pyvswitchd.datapath.auto_lb import AutoLoadBalance, SchedView, pmd_load, variance
from pyvswitchd.datapath.rxq_sched import PmdInfo, RxqInfo, schedule

from .sched_helpers import RecLog, pmds, port

# ---------------------------------------------------------------------------
# ALB knobs: alb.at "default state", "enable/disable", "* param"


def test_alb_startup_logs_every_knob() -> None:
    log = RecLog()
    alb = AutoLoadBalance(log)
    alb.configure()
    # Same order as the OVS 3.1 capture (ovs-vswitchd.log lines 340-343).
    assert log.records == [
        ("INFO", "PMD auto load balance interval set to 1 mins\n"),
        ("INFO", "PMD auto load balance improvement threshold set to 25%"),
        ("INFO", "PMD auto load balance load threshold set to 95%"),
        ("INFO", "PMD auto load balance is disabled."),
    ]
    log.clear()
    alb.configure()
    assert log.records == []


def test_alb_enable_disable() -> None:
    log = RecLog()
    alb = AutoLoadBalance(log)
    alb.configure(enabled="true")
    assert log.texts()[-1] == (
        "PMD auto load balance is enabled, interval 1 mins, pmd load threshold 95%, "
        "improvement threshold 25%."
    )
    log.clear()
    alb.configure(enabled="false")
    assert log.texts() == ["PMD auto load balance is disabled."]
    log.clear()
    alb.configure(enabled="TRUE", load_threshold="0")
    assert log.texts() == [
        "PMD auto load balance load threshold set to 0%",
        "PMD auto load balance is enabled, interval 1 mins, pmd load threshold 0%, "
        "improvement threshold 25%.",
    ]
    log.clear()
    alb.configure(enabled="yes", load_threshold="0")  # only "true" enables
    assert log.texts() == ["PMD auto load balance is disabled."]


@pytest.mark.parametrize(
    ("knob", "message", "steps"),
    [
        ("rebal_interval", "interval set to {} mins\n",
         [("10", 10), ("1", 1), ("20000", 20000), ("0", 1), ("7", 7), ("20001", 1),
          ("5", 5), ("-1", 1), ("9", 9), ("x", 1), (3, 3), (None, 1)]),
        ("improvement_threshold", "improvement threshold set to {}%",
         [("60", 60), ("0", 0), ("-1", 25), ("100", 100), ("101", 25), ("0", 0),
          ("1.5", 25), (50, 50), (None, 25)]),
        ("load_threshold", "load threshold set to {}%",
         [("70", 70), ("0", 0), ("-1", 95), ("100", 100), ("101", 95), (" 3", 3),
          ("3 ", 95), ("+4", 4), (None, 95)]),
    ],
)  # fmt: skip
def test_alb_param_clamping(knob: str, message: str, steps: list[tuple[object, int]]) -> None:
    log = RecLog()
    alb = AutoLoadBalance(log)
    alb.configure()
    for value, expected in steps:
        log.clear()
        alb.configure(**{knob: value})
        changed = [m for m in log.texts() if "set to" in m]
        assert changed == [f"PMD auto load balance {message.format(expected)}"], value
        # A knob change re-logs the overall state line too.
        assert log.texts()[-1] == "PMD auto load balance is disabled."
    assert (alb.interval_ms, alb.improvement_threshold, alb.load_threshold) == (60_000, 25, 95)


# ---------------------------------------------------------------------------
# ALB load measurement


def test_pmd_load_and_overload_counter() -> None:
    assert pmd_load(busy=0, idle=0) == 0
    assert pmd_load(busy=95, idle=5) == 95
    assert pmd_load(busy=95, idle=0, sleep=3, offload=2) == 95
    assert pmd_load(busy=1, idle=2) == 33
    alb = AutoLoadBalance(RecLog())
    alb.configure(enabled="true")
    assert alb.update_overload(3, busy=96, idle=4) == 4
    assert alb.update_overload(3, busy=94, idle=6) == 0
    assert alb.update_overload(3, busy=96, idle=4, isolated=True) == 3
    assert alb.update_overload(3, busy=96, idle=0, sleep=5, offload=1) == 0  # 94 %
    alb.configure(enabled="true", load_threshold="0")
    assert alb.update_overload(0, busy=0, idle=100) == 1  # alb.at forces load this way
    alb.configure(enabled="false", load_threshold="0")
    assert alb.update_overload(5, busy=100, idle=0) == 5


def test_variance_integer_maths() -> None:
    assert variance([]) == 0
    assert variance([0, 0]) == 0
    assert variance([100, 0]) == 2500
    assert variance([66, 33]) == 272  # mean 49 (truncated): (17² + 16²) // 2
    assert variance([1, 2, 2]) == 0  # mean 1: (0 + 1 + 1) // 3


# ---------------------------------------------------------------------------
# ALB trigger and dry run: alb.at "min num PMD/RxQ", "assignment type", cross-numa


class Datapath:
    """A tiny stand-in: applies schedules and feeds views to the ALB."""

    def __init__(self, log: RecLog, rxqs: list[RxqInfo], cores: list[PmdInfo]) -> None:
        self.log, self.rxqs, self.pmds = log, rxqs, cores
        self.algorithm, self.isolate = "cycles", True
        self.alb = AutoLoadBalance(log)
        self.alb.configure(enabled="true", load_threshold="0")
        self.overload = 12
        self.pending = False
        self.reconfigure()

    def reconfigure(self) -> None:
        result = schedule(self.rxqs, self.pmds, self.algorithm, self.isolate, self.log)
        for rxq in self.rxqs:
            rxq.current_core = result.assignment[rxq.key]
        for pmd in self.pmds:
            pmd.isolated = pmd.core_id in result.isolated
        self.alb.note_reconfigured()

    def view(self) -> SchedView:
        return SchedView(self.rxqs, self.pmds, self.algorithm, self.isolate)

    def poll(self, now_ms: int) -> bool:
        self.log.clear()
        return self.alb.poll(
            now_ms,
            overload_counts=lambda: [self.overload] * len(self.pmds),
            reconfigure_pending=lambda: self.pending,
            view=self.view,
        )


NOT_ENOUGH = "PMD auto load balance nothing to do, not enough non-isolated PMDs or RxQs."
NO_CHANGES = "PMD auto load balance nothing to do, no configuration changes since last check."
ROUNDROBIN = (
    "PMD auto load balance nothing to do, pmd-rxq-assign=roundrobin assignment type configured."
)
DRY_RUN = "PMD auto load balance performing dry run."


def test_alb_timer_overload_and_pending_gates() -> None:
    log = RecLog()
    dp = Datapath(log, port("p0", 1, 3), pmds(0, 1))
    assert not dp.poll(1_000)  # first call only stamps the timer
    assert not dp.poll(61_000)  # not yet *past* one interval
    assert log.records == []
    dp.overload = 11
    assert not dp.poll(61_001)
    assert log.records == []
    dp.overload = 12
    assert not dp.poll(100_000)  # the timer restarted at 61_001
    dp.pending = True
    assert not dp.poll(122_002)
    assert log.records == []
    dp.pending = False
    dp.poll(183_003)
    assert DRY_RUN in log.texts()
    # Disabling resets the timer: the next poll only stamps again.
    dp.alb.configure(enabled="false", load_threshold="0")
    dp.alb.configure(enabled="true", load_threshold="0")
    assert not dp.poll(10**9)
    assert log.records == []


def test_alb_min_num_pmd_rxq() -> None:
    log = RecLog()
    dp = Datapath(log, port("p0", 1, 2), pmds(0))
    now = 0
    dp.poll(now)

    def step() -> list[str]:
        nonlocal now
        now += 60_001
        dp.poll(now)
        return log.texts()

    assert step() == [NOT_ENOUGH]  # 1 PMD, 2 rxqs
    dp.pmds = pmds(0, 1)
    dp.reconfigure()
    assert step() == [NOT_ENOUGH]  # 2 PMDs, 1 rxq each
    dp.rxqs = port("p0", 1, 3)
    dp.reconfigure()
    assert DRY_RUN in step()  # 2 PMDs, 3 rxqs
    dp.pmds = pmds(0)
    dp.reconfigure()
    assert step() == [NOT_ENOUGH]  # 1 PMD, 3 rxqs
    assert step() == [NO_CHANGES]  # same config as last time


def test_alb_isolated_pmds_do_not_count() -> None:
    log = RecLog()
    dp = Datapath(log, port("p0", 1, 3, affinity={0: 1}), pmds(0, 1))
    dp.poll(0)
    dp.poll(60_001)
    assert log.texts() == [NOT_ENOUGH]


def test_alb_assignment_type() -> None:
    log = RecLog()
    dp = Datapath(log, port("p0", 1, 3), pmds(0, 1))
    dp.poll(0)
    now = 0
    for algorithm, expected in (("group", DRY_RUN), ("cycles", DRY_RUN),
                                ("roundrobin", ROUNDROBIN), ("group", DRY_RUN)):  # fmt: skip
        dp.algorithm = algorithm
        dp.reconfigure()
        now += 60_001
        dp.poll(now)
        assert expected in log.texts(), algorithm
    # The cached answer repeats silently when it was positive.
    now += 60_001
    dp.poll(now)
    assert log.texts()[0] == DRY_RUN


def test_alb_variance_improvement_requests_reconfigure() -> None:
    log = RecLog()
    rxqs = port("p0", 1, 3, hist=(8000, 2000, 2000))
    dp = Datapath(log, rxqs, pmds(0, 1, intrvl=1000))
    for rxq in rxqs:  # everything currently on core 0: [100 %, 0 %]
        rxq.current_core = 0
    dp.poll(0)
    assert dp.poll(60_001)
    assert log.records == [
        ("DBG", DRY_RUN),
        ("DBG", "Core  0 on numa node 0 assigned port 'p0' rx queue 0 "
                "(measured processing cycles 8000)."),
        ("DBG", "Core  1 on numa node 0 assigned port 'p0' rx queue 1 "
                "(measured processing cycles 2000)."),
        ("DBG", "Core  1 on numa node 0 assigned port 'p0' rx queue 2 "
                "(measured processing cycles 2000)."),
        # Estimate [66 %, 33 %]: (2500 - 272) * 100 // 2500 = 89.
        ("DBG", "Numa node 0. Current variance 2500 Estimated variance 272. "
                "Variance improvement 89%."),
        ("DBG", "PMD load variance improvement threshold 25% is met."),
        ("INFO", "PMD auto load balance dry run. Requesting datapath reconfigure."),
    ]  # fmt: skip
    dp.alb.configure(enabled="true", load_threshold="0", improvement_threshold="90")
    assert not dp.poll(120_002)
    assert log.texts()[-1] == "PMD load variance improvement threshold 90% is not met."


def test_alb_no_improvement_and_zero_threshold_quirk() -> None:
    log = RecLog()
    dp = Datapath(log, port("p0", 1, 4, hist=(5000, 3000, 3000, 1000)), pmds(0, 1, intrvl=1000))
    dp.poll(0)
    assert not dp.poll(60_001)
    assert "Numa node 0. Current variance 0 Estimated variance 0. Variance improvement 0%." in (
        log.texts()
    )
    dp.alb.configure(enabled="true", load_threshold="0", improvement_threshold="0")
    assert dp.poll(120_002)  # 0 % improvement meets a 0 % threshold
    assert "PMD load variance improvement threshold 0% is met." in log.texts()


def test_alb_current_view_excludes_pinned_pmds() -> None:
    log = RecLog()
    alb = AutoLoadBalance(log)
    alb.configure()
    # Core 0 polls its pinned queue; core 1 both others; core 2 is idle.
    rxqs = port("p0", 1, 3, affinity={0: 0}, hist=(12000, 6000, 6000), current=(0, 1, 1))
    assert alb.dry_run(SchedView(rxqs, pmds(0, 1, 2, intrvl=1000), "cycles", True))
    # Current [100 %, 0 %] without the isolated core 0; estimate [50 %, 50 %].
    assert log.texts()[-2] == (
        "Numa node 0. Current variance 2500 Estimated variance 0. Variance improvement 100%."
    )


def test_alb_zero_interval_cycles_means_zero_percent() -> None:
    alb = AutoLoadBalance(RecLog())
    alb.configure()
    rxqs = port("p0", 1, 3, hist=(8000, 2000, 2000), current=(0, 0, 0))
    assert not alb.dry_run(SchedView(rxqs, pmds(0, 1), "cycles", True))


def test_alb_cross_numa() -> None:
    log = RecLog()
    alb = AutoLoadBalance(log)
    alb.configure()
    cores = pmds(0, 1, numa=[0, 1], intrvl=1000)
    # q0 pinned to core 0 isolates it, so the other queues must cross to NUMA 1.
    rxqs = port("p0", 1, 3, numa=0, affinity={0: 0}, current=(0, 1, 1))
    assert not alb.dry_run(SchedView(rxqs, cores, "cycles", True))
    assert log.texts()[-1] == (
        "PMD auto load balance detected cross-numa polling with multiple numa nodes. "
        "Unable to accurately estimate."
    )
    # All queues pinned: no estimate problem, nothing to gain on either node.
    log.clear()
    rxqs = port("p0", 1, 2, numa=0, affinity={0: 0, 1: 1}, current=(0, 1))
    assert not alb.dry_run(SchedView(rxqs, cores, "cycles", True))
    assert log.texts()[-3:] == [
        "Numa node 0. Current variance 0 Estimated variance 0. Variance improvement 0%.",
        "Numa node 1. Current variance 0 Estimated variance 0. Variance improvement 0%.",
        "PMD load variance improvement threshold 25% is not met.",
    ]
    # Cross-NUMA with PMDs on a single node is estimated normally.
    log.clear()
    rxqs = port("p0", 1, 3, numa=1, hist=(8000, 2000, 2000), current=(0, 0, 0))
    assert alb.dry_run(SchedView(rxqs, pmds(0, 1, intrvl=1000), "cycles", True))
    assert not any("cross-numa" in m for m in log.texts())
