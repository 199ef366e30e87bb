"""Tests for rx queue scheduling, ALB and pmd-rxq-show formatting.

Scenarios follow OVS's tests/pmd.at and tests/alb.at; layouts and log lines
are checked against captures of OVS 3.1 (tests/golden/pmd-rxq-show/ and
lines quoted from its ovs-vswitchd.log).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest

from pyvswitchd.datapath.auto_lb import AutoLoadBalance
from pyvswitchd.datapath.rxq_sched import (
    ALGORITHMS,
    RxqInfo,
    RxqSchedConfig,
    Schedule,
    parse_affinity,
    schedule,
)
from pyvswitchd.datapath.rxq_show import (
    NON_PMD_CORE_ID,
    PmdUsage,
    RxqUsage,
    format_pmd_rxq_show,
    parse_secs,
    pmd_rxq_show_data,
    ring_newest_last,
)
from pyvswitchd.observe.vlog import Vlog

from .sched_helpers import RecLog, pmds, port

GOLDEN = Path(__file__).parent.parent / "golden" / "pmd-rxq-show"


def qids_by_core(result: Schedule, port_name: str = "p0") -> dict[int | None, list[int]]:
    out: dict[int | None, list[int]] = {}
    for (name, qid), core in sorted(result.assignment.items()):
        if name == port_name:
            out.setdefault(core, []).append(qid)
    return out


def show_of(result: Schedule, rxqs: Sequence[RxqInfo], secs: int = 60) -> str:
    """pmd-rxq-show text for a schedule with no interval completed yet."""
    usage = [
        PmdUsage(
            core,
            load.numa_id,
            isolated=load.isolated,
            rxqs=[RxqUsage(name, qid) for name, qid in load.rxqs],
        )
        for core, load in result.pmds.items()
    ]
    return format_pmd_rxq_show(usage, secs)


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.out").read_text()


# ---------------------------------------------------------------------------
# pmd-rxq-affinity parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0:3,1:7,2:2,3:8", {0: 3, 1: 7, 2: 2, 3: 8}),
        ("0=3 1=7", {0: 3, 1: 7}),
        ("  0:3 ,\t1:7 , ", {0: 3, 1: 7}),
        ("0x1:010", {1: 8}),  # C base-0 numbers: hex and octal
        ("0:1,0:2", {0: 2}),
        ("", {}),
        (" , ", {}),
    ],
)
def test_parse_affinity(text: str, expected: dict[int, int]) -> None:
    assert parse_affinity(text) == expected


@pytest.mark.parametrize("text", ["0:-1", "-1:3", "a:3", "0:", "0", "0:3x", "0:3,1:x", "08:1"])
def test_parse_affinity_rejects_whole_setting(text: str) -> None:
    with pytest.raises(ValueError):
        parse_affinity(text)


# ---------------------------------------------------------------------------
# pmd-rxq-assign / pmd-rxq-isolate knobs


def test_sched_config_logs_like_ovs() -> None:
    log = RecLog()
    cfg = RxqSchedConfig(log)
    assert cfg.configure(None, None) is True
    assert log.records == [("INFO", "pmd-rxq-affinity isolates PMD core")]
    log.clear()
    assert cfg.configure(None, None) is False
    assert log.records == []

    assert cfg.configure("roundrobin", None) is True
    assert log.records == [("INFO", "Rxq to PMD assignment mode changed to: 'roundrobin'.")]
    log.clear()

    assert cfg.configure("bogus", None) is True
    assert log.records == [
        (
            "WARN",
            "Unsupported rx queue to PMD assignment mode in pmd-rxq-assign. "
            "Defaulting to 'cycles'.",
        ),
        ("INFO", "Rxq to PMD assignment mode changed to: 'cycles'."),
    ]
    assert cfg.algorithm == "cycles"
    log.clear()

    # isolate=false needs group; elsewhere it is forced back to true.
    assert cfg.configure("cycles", "false") is False
    assert log.records == [
        ("WARN", "pmd-rxq-isolate can only be set false when using pmd-rxq-assign=group")
    ]
    assert cfg.isolate is True
    log.clear()
    assert cfg.configure("group", "FALSE") is True
    assert log.texts() == [
        "Rxq to PMD assignment mode changed to: 'group'.",
        "pmd-rxq-affinity does not isolate PMD core",
    ]
    log.clear()
    assert cfg.configure("cycles", False) is True
    assert log.texts()[-1] == "pmd-rxq-affinity isolates PMD core"


# ---------------------------------------------------------------------------
# Assignment algorithms: pmd.at "distribution of rx queues"


@pytest.mark.parametrize(
    ("algorithm", "core0", "core1"),
    [
        ("roundrobin", [0, 2, 4, 6], [1, 3, 5, 7]),
        ("cycles", [0, 3, 4, 7], [1, 2, 5, 6]),
        ("group", [0, 2, 4, 6], [1, 3, 5, 7]),
    ],
)
def test_worked_examples(algorithm: str, core0: list[int], core1: list[int]) -> None:
    log = RecLog()
    result = schedule(port("p0", 1, 8), pmds(0, 1), algorithm, True, log)
    assert qids_by_core(result) == {0: core0, 1: core1}
    assert result.isolated == set()
    assert (
        log.at("INFO")[0] == f"Performing pmd to rx queue assignment using {algorithm} algorithm."
    )
    assert sum("Performing" in m for m in log.texts()) == 1
    suffix = "" if algorithm == "roundrobin" else " (measured processing cycles 0)"
    assert log.at("INFO")[1] == f"Core  0 on numa node 0 assigned port 'p0' rx queue 0{suffix}."
    assert log.at("INFO")[2] == f"Core  1 on numa node 0 assigned port 'p0' rx queue 1{suffix}."


def test_single_pmd_takes_everything() -> None:
    for algorithm in ALGORITHMS:
        result = schedule(port("p0", 1, 8), pmds(0), algorithm, True, RecLog())
        assert qids_by_core(result) == {0: list(range(8))}


def test_pmd_order_is_by_core_not_input_order() -> None:
    result = schedule(port("p0", 1, 4), pmds(5, 2), "roundrobin", True, RecLog())
    assert qids_by_core(result) == {2: [0, 2], 5: [1, 3]}


def test_rxq_order_is_normalised() -> None:
    rxqs = port("p1", 2, 2) + port("p0", 1, 2)
    result = schedule(list(reversed(rxqs)), pmds(0, 1), "roundrobin", True, RecLog())
    assert result.assignment == {("p0", 0): 0, ("p0", 1): 1, ("p1", 0): 0, ("p1", 1): 1}


def test_unknown_algorithm_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        schedule(port("p0", 1, 1), pmds(0), "nope", True, RecLog())


# ---------------------------------------------------------------------------
# Layouts and log lines captured from OVS 3.1 (2 ports x 2 rxqs, cores 0 and 1)


def test_captured_cycles_layout() -> None:
    rxqs = port("p0", 1, 2) + port("p1", 2, 2)
    result = schedule(rxqs, pmds(0, 1), "cycles", True, RecLog())
    assert show_of(result, rxqs) == golden("2pmd")


def test_captured_roundrobin_layout_and_log() -> None:
    rxqs = port("p0", 1, 2) + port("p1", 2, 2)
    log = RecLog()
    result = schedule(rxqs, pmds(0, 1), "roundrobin", True, log)
    assert show_of(result, rxqs) == golden("2pmd.roundrobin")
    assert log.at("INFO") == [
        "Performing pmd to rx queue assignment using roundrobin algorithm.",
        "Core  0 on numa node 0 assigned port 'p0' rx queue 0.",
        "Core  1 on numa node 0 assigned port 'p0' rx queue 1.",
        "Core  0 on numa node 0 assigned port 'p1' rx queue 0.",
        "Core  1 on numa node 0 assigned port 'p1' rx queue 1.",
    ]


@pytest.mark.parametrize(
    ("p0_hist", "p1_hist", "expected"),
    [
        (
            (890246, 0),
            (538770, 0),
            [
                "Core  0 on numa node 0 assigned port 'p0' rx queue 0"
                " (measured processing cycles 890246).",
                "Core  1 on numa node 0 assigned port 'p1' rx queue 0"
                " (measured processing cycles 538770).",
                "Core  1 on numa node 0 assigned port 'p0' rx queue 1"
                " (measured processing cycles 0).",
                "Core  0 on numa node 0 assigned port 'p1' rx queue 1"
                " (measured processing cycles 0).",
            ],
        ),
        (
            (4846820, 0),
            (16186016, 0),
            [
                "Core  0 on numa node 0 assigned port 'p1' rx queue 0"
                " (measured processing cycles 16186016).",
                "Core  1 on numa node 0 assigned port 'p0' rx queue 0"
                " (measured processing cycles 4846820).",
                "Core  1 on numa node 0 assigned port 'p0' rx queue 1"
                " (measured processing cycles 0).",
                "Core  0 on numa node 0 assigned port 'p1' rx queue 1"
                " (measured processing cycles 0).",
            ],
        ),
    ],
)
def test_captured_cycles_with_history(
    p0_hist: tuple[int, int], p1_hist: tuple[int, int], expected: list[str]
) -> None:
    log = RecLog()
    rxqs = port("p0", 1, 2, hist=p0_hist) + port("p1", 2, 2, hist=p1_hist)
    result = schedule(rxqs, pmds(0, 1), "cycles", True, log)
    assert log.at("INFO") == [
        "Performing pmd to rx queue assignment using cycles algorithm.",
        *expected,
    ]
    busiest = max(p0_hist[0], p1_hist[0])
    assert result.pmds[0].proc_cycles == busiest
    assert result.pmds[1].proc_cycles == p0_hist[0] + p1_hist[0] - busiest


def test_captured_affinity_isolated() -> None:
    rxqs = port("p0", 1, 2, affinity={0: 1, 1: 1}) + port("p1", 2, 2)
    log = RecLog()
    result = schedule(rxqs, pmds(0, 1), "cycles", True, log)
    assert show_of(result, rxqs) == golden("2pmd.affinity-isolated")
    assert result.isolated == {1}
    assert log.at("INFO") == [
        "Core  1 on numa node 0 is pinned with port 'p0' rx queue 0 (measured processing cycles 0)",
        "Core  1 on numa node 0 is pinned with port 'p0' rx queue 1 (measured processing cycles 0)",
        "Performing pmd to rx queue assignment using cycles algorithm.",
        "Core  0 on numa node 0 assigned port 'p1' rx queue 0 (measured processing cycles 0).",
        "Core  0 on numa node 0 assigned port 'p1' rx queue 1 (measured processing cycles 0).",
    ]


def test_all_pinned_logs_no_performing_line() -> None:
    log = RecLog()
    schedule(port("p0", 1, 2, affinity={0: 0, 1: 1}), pmds(0, 1), "roundrobin", True, log)
    assert log.at("INFO") == [
        "Core  0 on numa node 0 is pinned with port 'p0' rx queue 0",
        "Core  1 on numa node 0 is pinned with port 'p0' rx queue 1",
    ]


# ---------------------------------------------------------------------------
# cycles / group with measured cycles


def test_cycles_and_group_differ_with_history() -> None:
    hist = (100, 10, 10, 10, 10, 10)
    cycles = schedule(port("p0", 1, 6, hist=hist), pmds(0, 1), "cycles", True, RecLog())
    assert qids_by_core(cycles) == {0: [0, 3, 4], 1: [1, 2, 5]}
    group = schedule(port("p0", 1, 6, hist=hist), pmds(0, 1), "group", True, RecLog())
    assert qids_by_core(group) == {0: [0], 1: [1, 2, 3, 4, 5]}
    assert group.pmds[0].proc_cycles == 100
    assert group.pmds[1].proc_cycles == 50


def test_group_balances_cycles_then_counts() -> None:
    # Busy queues go by accumulated cycles; idle ones (HIST 0) by queue count.
    result = schedule(port("p0", 1, 4, hist=(100, 0, 0, 0)), pmds(0, 1), "group", True, RecLog())
    assert qids_by_core(result) == {0: [0, 2], 1: [1, 3]}


def test_group_ties_go_to_lowest_core() -> None:
    result = schedule(port("p0", 1, 3, hist=(50, 50, 7)), pmds(4, 2), "group", True, RecLog())
    assert qids_by_core(result) == {2: [0, 2], 4: [1]}


def test_sort_ties_by_port_no_then_qid() -> None:
    rxqs = port("b", 2, 2, hist=(5, 9)) + port("a", 7, 2, hist=(9, 5))
    log = RecLog()
    schedule(rxqs, pmds(0), "cycles", True, log)
    order = [m.split("port ")[1].split(" (")[0] for m in log.at("INFO")[1:]]
    assert order == ["'b' rx queue 1", "'a' rx queue 0", "'b' rx queue 0", "'a' rx queue 1"]


# ---------------------------------------------------------------------------
# pmd.at "rxq affinity" and "rxq affinity - non-isolate"


def test_affinity_pins_and_isolates() -> None:
    rxqs = port("p1", 1, 4, affinity=parse_affinity("0:3,1:7,2:2,3:8"))
    result = schedule(rxqs, pmds(*range(1, 9)), "cycles", True, RecLog())
    assert qids_by_core(result, "p1") == {2: [2], 3: [0], 7: [1], 8: [3]}
    assert result.isolated == {2, 3, 7, 8}


def test_affinity_missing_cores_fall_back() -> None:
    rxqs = port("p1", 1, 4, affinity=parse_affinity("0:3,1:7,2:2,3:8"))
    log = RecLog()
    result = schedule(rxqs, pmds(1, 2), "cycles", True, log)
    assert qids_by_core(result, "p1") == {1: [0, 1, 3], 2: [2]}
    assert result.isolated == {2}
    assert log.at("WARN") == [
        "Core  3 cannot be pinned with port 'p1' rx queue 0. Use pmd-cpu-mask to "
        "enable a pmd on core 3. An alternative core will be assigned.",
        "Core  7 cannot be pinned with port 'p1' rx queue 1. Use pmd-cpu-mask to "
        "enable a pmd on core 7. An alternative core will be assigned.",
        "Core  8 cannot be pinned with port 'p1' rx queue 3. Use pmd-cpu-mask to "
        "enable a pmd on core 8. An alternative core will be assigned.",
    ]


def test_isolated_pmd_polls_only_its_pinned_queues() -> None:
    rxqs = port("p1", 1, 4, affinity={0: 1})
    result = schedule(rxqs, pmds(1, 2), "cycles", True, RecLog())
    assert qids_by_core(result, "p1") == {1: [0], 2: [1, 2, 3]}
    assert result.isolated == {1}


def test_group_non_isolated_mixes_pinned_and_unpinned() -> None:
    rxqs = port("p1", 1, 4, affinity={0: 1})
    result = schedule(rxqs, pmds(1, 2), "group", False, RecLog())
    assert qids_by_core(result, "p1") == {1: [0, 2], 2: [1, 3]}
    assert result.isolated == set()


def test_no_non_isolated_pmd_leaves_queue_unpolled() -> None:
    rxqs = port("p1", 1, 3, affinity={0: 1, 1: 2})
    log = RecLog()
    result = schedule(rxqs, pmds(1, 2), "cycles", True, log)
    assert result.assignment[("p1", 2)] is None
    assert log.at("WARN") == [
        "No non-isolated pmd on any numa available for port 'p1' rx queue 2 "
        "(measured processing cycles 0). This rx queue will not be polled."
    ]


# ---------------------------------------------------------------------------
# NUMA handling: pmd.at "dual NUMA", "multi NUMA", "rxq affinity - NUMA",
# "change numa node"

CROSS_Q7 = (
    "There's no available (non-isolated) pmd thread on numa node 1. Port 'p0' rx queue 7 "
    "will be assigned to a pmd on numa node 0. This may lead to reduced performance."
)


@pytest.mark.parametrize(
    ("algorithm", "low", "high"),
    [
        ("cycles", [0, 3, 4, 7], [1, 2, 5, 6]),
        ("roundrobin", [0, 2, 4, 6], [1, 3, 5, 7]),
        ("group", [0, 2, 4, 6], [1, 3, 5, 7]),
    ],
)
def test_dual_numa_cross_numa_polling(algorithm: str, low: list[int], high: list[int]) -> None:
    # --dummy-numa 1,1,0,0 with pmd-cpu-mask=0xc: both PMDs on NUMA 0, port on 1.
    log = RecLog()
    result = schedule(port("p0", 1, 8, numa=1), pmds(2, 3), algorithm, True, log)
    assert qids_by_core(result) == {2: low, 3: high}
    assert CROSS_Q7 in log.at("INFO")  # INFO, not WARN, since OVS 2.17
    assert log.at("WARN") == []
    assert result.cross_numa


def test_dual_numa_prefers_local_pmd() -> None:
    for algorithm in ALGORITHMS:
        log = RecLog()
        result = schedule(port("p0", 1, 8, numa=1), pmds(1, 2, numa=[1, 0]), algorithm, True, log)
        assert qids_by_core(result) == {1: list(range(8))}
        assert not any("no available" in m for m in log.texts())
        assert not result.cross_numa
        assert "pmd thread numa_id 0 core_id 2:\n  isolated : false\n" in show_of(
            result, port("p0", 1, 8, numa=1)
        )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_multi_numa_spreads_across_remote_numas(algorithm: str) -> None:
    # --dummy-numa 1,2,1,2, mask 0xf, port on NUMA 0: every PMD gets one queue.
    log = RecLog()
    result = schedule(port("p0", 1, 4, numa=0), pmds(0, 1, 2, 3, numa=[1, 2, 1, 2]),
                      algorithm, True, log)  # fmt: skip
    assert sorted(c for c in result.assignment.values() if c is not None) == [0, 1, 2, 3]
    assert sum("no available (non-isolated) pmd thread on numa node 0." in m
               for m in log.at("INFO")) == 4  # fmt: skip


def test_affinity_across_numas() -> None:
    cores = pmds(1, 2, 3, 4, 5, 6, numa=[0, 0, 1, 1, 8, 8])
    result = schedule(port("p1", 1, 2, affinity={0: 3, 1: 1}), cores, "cycles", True, RecLog())
    assert result.assignment == {("p1", 0): 3, ("p1", 1): 1}
    result = schedule(port("p1", 1, 2, affinity={0: 5, 1: 1}), cores, "cycles", True, RecLog())
    assert result.assignment == {("p1", 0): 5, ("p1", 1): 1}
    # The unpinned queue stays on the port's NUMA node.
    result = schedule(port("p1", 1, 2, affinity={0: 3}), cores, "cycles", True, RecLog())
    assert result.assignment[("p1", 0)] == 3
    assert result.assignment[("p1", 1)] in (1, 2)


def test_queues_follow_port_numa() -> None:
    cores = pmds(0, 1, 2, numa=[0, 1, 8])
    rxqs = port("p1", 1, 2, numa=8) + port("p2", 2, 2, numa=1)
    result = schedule(rxqs, cores, "cycles", True, RecLog())
    assert result.assignment == {("p1", 0): 2, ("p1", 1): 2, ("p2", 0): 1, ("p2", 1): 1}


def test_pinned_queue_does_not_count_as_cross_numa() -> None:
    result = schedule(port("p0", 1, 1, numa=1, affinity={0: 0}), pmds(0), "group", False,
                      RecLog())  # fmt: skip
    assert result.assignment == {("p0", 0): 0}
    assert not result.cross_numa
    # A queue pinned to a missing core still counts as pinned (as in OVS).
    result = schedule(port("p0", 1, 1, numa=1, affinity={0: 9}), pmds(0), "cycles", True,
                      RecLog())  # fmt: skip
    assert result.assignment == {("p0", 0): 0}
    assert not result.cross_numa
    result = schedule(port("p0", 1, 1, numa=1), pmds(0), "cycles", True, RecLog())
    assert result.cross_numa


# ---------------------------------------------------------------------------
# Dry run logging


def test_dry_run_logs_everything_at_dbg() -> None:
    log = RecLog()
    rxqs = port("p0", 1, 3, numa=1, affinity={0: 9, 1: 0}) + port("p1", 2, 1, numa=0)
    schedule(rxqs, pmds(0), "cycles", True, log, dry_run=True)
    assert log.at("INFO") == [] and log.at("WARN") == []
    dbg = log.at("DBG")
    assert not any("Performing" in m for m in dbg)
    assert any("cannot be pinned" in m for m in dbg)
    assert any("is pinned with" in m for m in dbg)
    assert any("will not be polled" in m for m in dbg)


def test_works_with_real_vlog_module() -> None:
    console = io.StringIO()
    vlog = Vlog("test", console=console, syslog_method="null")
    module = vlog.module("dpif_netdev")
    vlog.set_levels_from_string("dpif_netdev:console:dbg")
    schedule(port("p0", 1, 1), pmds(0), "cycles", True, module)
    alb = AutoLoadBalance(module)
    alb.configure()
    lines = console.getvalue().splitlines()
    assert lines[0].endswith("Performing pmd to rx queue assignment using cycles algorithm.")
    assert lines[2].endswith("|dpif_netdev|INFO|PMD auto load balance interval set to 1 mins")
    assert "" not in lines  # the stray newline of the interval message is dropped


# ---------------------------------------------------------------------------
# pmd-rxq-show


@pytest.mark.parametrize(
    ("arg", "secs"),
    [
        (None, 60), ("-1", 60), ("0", 60), ("1", 5), ("5", 5), ("6", 10), ("51", 55),
        ("55", 55), ("56", 60), ("60", 60), ("61", 60), ("abc", 60), ("7", 10),
        ("+7", 10), (" 7", 10), ("7 ", 60), ("99999999999", 60),
    ],
)  # fmt: skip
def test_parse_secs(arg: str | None, secs: int) -> None:
    assert parse_secs(arg) == secs


def four_queue_pmd(intrvl: int, *, core: int = 0) -> PmdUsage:
    return PmdUsage(
        core, 0, intrvl_cycles=intrvl, busy_intervals=[0] * 12,
        rxqs=[RxqUsage(p, q, intervals=[0] * 12) for p in ("p1", "p0") for q in (1, 0)],
    )  # fmt: skip


def test_show_golden_single_pmd() -> None:
    assert format_pmd_rxq_show([four_queue_pmd(0)], 60) == golden("1pmd.before-traffic")
    assert format_pmd_rxq_show([four_queue_pmd(10**9)], 60) == golden("1pmd.after-traffic")


def two_pmds(intrvl: int) -> list[PmdUsage]:
    def q(name: str, qid: int) -> RxqUsage:
        return RxqUsage(name, qid, intervals=[0, 0])

    return [
        PmdUsage(1, 0, intrvl_cycles=intrvl, rxqs=[q("p1", 0), q("p0", 1)]),
        PmdUsage(0, 0, intrvl_cycles=intrvl, rxqs=[q("p1", 1), q("p0", 0)]),
    ]


def test_show_golden_two_pmds_secs_and_filter() -> None:
    assert format_pmd_rxq_show(two_pmds(0), 60) == golden("2pmd")
    assert format_pmd_rxq_show(two_pmds(5), parse_secs("5")) == golden("secs")
    assert format_pmd_rxq_show(two_pmds(5), parse_secs("7")) == golden("bad-secs")
    assert format_pmd_rxq_show(two_pmds(0), 60, core_filter=1) == golden("2pmd.after-traffic.pmd1")
    assert format_pmd_rxq_show(two_pmds(0), 60, core_filter=99) == golden("bad-pmd") == ""


def test_show_header_only_cases() -> None:
    header = "Displaying last 60 seconds pmd usage %\n"
    assert format_pmd_rxq_show([], 60) == header
    assert format_pmd_rxq_show(two_pmds(0), 60, core_filter=NON_PMD_CORE_ID) == header


def test_show_pmd_without_queues_has_no_overhead_line() -> None:
    text = format_pmd_rxq_show([PmdUsage(2, 0, intrvl_cycles=100)], 60)
    assert text == (
        "Displaying last 60 seconds pmd usage %\n"
        "pmd thread numa_id 0 core_id 2:\n"
        "  isolated : false\n"
    )


def test_show_usage_maths() -> None:
    # 12 intervals of 1000 cycles: total 12000 over 60 s.
    pmd = PmdUsage(
        3, 1, isolated=True, intrvl_cycles=1000, busy_intervals=[1000] * 12,
        rxqs=[
            RxqUsage("vhu", 0, intervals=[600] * 12),  # 7200 -> 60 %
            RxqUsage("vhu", 1, enabled=False, intervals=[100] * 12),  # 1200 -> 10 %
        ],
    )  # fmt: skip
    assert format_pmd_rxq_show([pmd], 60) == (
        "Displaying last 60 seconds pmd usage %\n"
        "pmd thread numa_id 1 core_id 3:\n"
        "  isolated : true\n"
        "  port: vhu               queue-id:  0 (enabled)   pmd usage: 60 %\n"
        "  port: vhu               queue-id:  1 (disabled)  pmd usage: 10 %\n"
        "  overhead: 30 %\n"
    )
    # -secs 5: only the newest interval (the last one) counts.
    pmd.rxqs[0].intervals = [0] * 11 + [125]
    pmd.busy_intervals = [0] * 11 + [5000]  # capped to the 1000-cycle total
    text = format_pmd_rxq_show([pmd], 5)
    assert "queue-id:  0 (enabled)   pmd usage: 12 %\n" in text  # 12.5 rounds to even
    assert "queue-id:  1 (disabled)  pmd usage: 10 %\n" in text
    assert "  overhead: 78 %\n" in text  # (1000 - 225) / 1000


def test_show_overhead_never_negative_and_short_history() -> None:
    pmd = PmdUsage(0, 0, intrvl_cycles=100, busy_intervals=[10],
                   rxqs=[RxqUsage("p", 0, intervals=[50, 50])])  # fmt: skip
    text = format_pmd_rxq_show([pmd], 60)
    assert "pmd usage:  8 %\n" in text  # 100 / 1200
    assert "  overhead:  0 %\n" in text


def test_show_data() -> None:
    rxqs = [RxqUsage("b", 0, intervals=[30]), RxqUsage("a", 1, intervals=[20])]
    pmd = PmdUsage(0, 0, intrvl_cycles=100, busy_intervals=[100], rxqs=rxqs)
    data = pmd_rxq_show_data([pmd, PmdUsage(1, 0)], 5)
    assert data == {
        "secs": 5,
        "pmds": [
            {
                "numa_id": 0, "core_id": 0, "isolated": False,
                "rxqs": [
                    {"port": "a", "queue_id": 1, "enabled": True, "usage": 20.0},
                    {"port": "b", "queue_id": 0, "enabled": True, "usage": 30.0},
                ],
                "overhead": 50.0,
            },
            {"numa_id": 0, "core_id": 1, "isolated": False, "rxqs": [], "overhead": None},
        ],
    }  # fmt: skip
    assert pmd_rxq_show_data(two_pmds(0), 60, core_filter=1)["pmds"][0]["rxqs"][0]["usage"] is None


def test_ring_newest_last() -> None:
    assert ring_newest_last([5, 6, 3, 4], 6) == [3, 4, 5, 6]
    assert ring_newest_last([1, 2, 3], 0) == [1, 2, 3]
    assert ring_newest_last([], 3) == []
