"""Tests for pyvswitchd.datapath.perf and perf_format (PMD performance statistics).

The golden files under tests/golden/ are verbatim ``pmd-perf-show`` captures
from OVS 3.1 (Debian build, where the TSC rate is taken as 1 Hz, so every
figure derived from cycles is absurd there).  They are used two ways:

* structure: a PmdPerf driven through the hot-path API is formatted with the
  capture's options, and both texts are compared with every number (and the
  spaces around it) replaced by `` N `` -- OVS's own tests mask numbers the
  same way;
* layout: the capture's figures are parsed back into PmdPerf state and each
  section is re-rendered; it must equal the capture byte for byte, except
  the four figures that depend on the TSC rate (us/it, % of total cycles,
  sleep time, us/upcall), which are masked in both.
"""

from __future__ import annotations

import io
import re
import time
import tracemalloc
from pathlib import Path

import attrs
import pytest

from pyvswitchd.datapath.histogram import UINT32_MAX
from pyvswitchd.datapath.perf import (
    HISTORY_LEN,
    LOG_USAGE,
    IterStats,
    PerfLogConfig,
    PmdPerf,
    Stat,
    format_iteration_history,
    parse_perf_log_set,
)
from pyvswitchd.datapath.perf_format import (
    format_histograms,
    format_ms_history,
    format_perf_show,
    perf_data,
)
from pyvswitchd.observe.vlog import Destination, Vlog

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
PMD0 = "pmd thread numa_id 0 core_id 0:"


class Clock:
    """A settable integer clock (stands in for both the TSC and the ms clock)."""

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@attrs.define
class Rig:
    perf: PmdPerf
    tsc: Clock
    ms: Clock

    def iterate(
        self,
        cycles: int,
        rx: int = 0,
        tx: int = 0,
        *,
        sleep: int = 0,
        offload: int = 0,
        full: bool = False,
        batches: int = 0,
        upcalls: tuple[int, ...] = (),
    ) -> None:
        """One PMD iteration of ``cycles`` (+ sleep + offload) TSC ticks."""
        self.perf.start_iteration(self.tsc.now)
        for _ in range(batches):
            self.perf.record_batch(rx // batches)
        for c in upcalls:
            self.perf.record_upcall(c)
        self.tsc.now += cycles + sleep + offload
        self.perf.end_iteration(self.tsc.now, rx, tx, sleep, offload, full)


def make_rig(*, full_metrics: bool = False, start_ms: int = 5000, **kwargs: object) -> Rig:
    tsc, ms = Clock(1_000_000), Clock(start_ms)
    perf = PmdPerf(full_metrics=full_metrics, wall_ms=ms, tsc=tsc, **kwargs)  # type: ignore[arg-type]
    return Rig(perf, tsc, ms)


def wall_at(hms: str) -> float:
    """A wall-clock time whose local time of day is ``HH:MM:SS.mmm``."""
    h, m, s = hms.split(":")
    base = time.mktime((2024, 1, 15, int(h), int(m), int(float(s)), 0, 15, -1))
    return base + round(float(s) % 1, 3) + 0.0004


def show(perf: PmdPerf, **kwargs: object) -> str:
    opts: dict[str, object] = {
        "is_pmd": True,
        "now_wall": wall_at("01:02:03.004"),
        "histograms": True,
        "it_hist": 0,
        "ms_hist": 0,
        "full_metrics": False,
    }
    opts.update(kwargs)
    return format_perf_show(perf, str(opts.pop("header", PMD0)), **opts)  # type: ignore[arg-type]


# -- histogram walls ------------------------------------------------------------


def capture_histogram_rows(name: str) -> list[list[str]]:
    text = (GOLDEN / f"pmd-perf-show.{name}.out").read_text()
    section = text.split("\nHistograms\n", 1)[1].splitlines()
    return [row.split() for row in section[1:33]]


def test_histogram_walls_equal_the_capture_columns() -> None:
    perf = PmdPerf()
    rows = capture_histogram_rows("1pmd.metrics.after-traffic")
    for col, hist in enumerate(perf.histograms()):
        assert [int(r[2 * col]) for r in rows[:31]] == list(hist.walls[:31])
        assert rows[31][2 * col] == ">"
        assert hist.walls[31] == UINT32_MAX


def test_samples_land_in_the_first_bin_whose_wall_is_not_below() -> None:
    perf = PmdPerf()
    hist = perf.cycles_hist
    for value in (0, 499, 500, 716, 717, 24_000_000, 24_000_001, 2**40):
        hist.add(value)
    assert hist.bins[0] == 2 and hist.bins[1] == 2 and hist.bins[2] == 1
    assert hist.bins[30] == 1 and hist.bins[31] == 2
    assert hist.samples() == 8


# -- structure against the captures ------------------------------------------------


def mask_numbers(text: str) -> str:
    return re.sub(r" *\d+(?:\.\d+)? *", " N ", text)


def driven_block(
    *, traffic: bool, metrics: bool, histograms: bool, it: int = 0, ms: int = 0, core: int = 0
) -> str:
    """A PMD block produced through the hot-path API."""
    rig = make_rig(full_metrics=metrics)
    n = rig.perf.n
    for _ in range(5):
        for i in range(20):
            if traffic and i == 3:
                n[Stat.RECV] += 2
                n[Stat.SIMPLE_HIT] += 1
                n[Stat.MISS] += 1
                n[Stat.SENT_PKTS] += 2
                n[Stat.SENT_BATCHES] += 2
                rig.iterate(20_000, 2, 2, full=metrics, batches=1, upcalls=(9000,))
            else:
                rig.iterate(5000, full=metrics)
        rig.ms.now += 1
    rig.iterate(5000, full=metrics)
    return show(
        rig.perf,
        header=f"pmd thread numa_id 0 core_id {core}:",
        histograms=histograms,
        it_hist=it,
        ms_hist=ms,
        full_metrics=metrics,
    )


STRUCTURE_CASES = {
    "1pmd.no-metrics.before-traffic": dict(traffic=False, metrics=False, histograms=True),
    "1pmd.no-metrics.after-traffic": dict(traffic=True, metrics=False, histograms=True),
    "1pmd.maxsleep50.nh": dict(traffic=False, metrics=False, histograms=False),
    "1pmd.metrics-disabled-again": dict(traffic=False, metrics=False, histograms=True),
    "1pmd.metrics.after-clear": dict(traffic=False, metrics=True, histograms=True),
    "1pmd.metrics.after-traffic": dict(traffic=True, metrics=True, histograms=True),
    "1pmd.metrics.after-traffic.nh": dict(traffic=True, metrics=True, histograms=False),
    "it-ms": dict(traffic=False, metrics=True, histograms=True, it=5, ms=3),
}


@pytest.mark.parametrize("name", sorted(STRUCTURE_CASES))
def test_structure_matches_capture(name: str) -> None:
    expected = (GOLDEN / f"pmd-perf-show.{name}.out").read_text()
    got = driven_block(**STRUCTURE_CASES[name])  # type: ignore[arg-type]
    assert mask_numbers(got) == mask_numbers(expected)


@pytest.mark.parametrize(
    ("name", "histograms"), [("2pmd.after-traffic.nh", False), ("bad-arg", True)]
)
def test_structure_matches_two_pmd_capture(name: str, histograms: bool) -> None:
    expected = (GOLDEN / f"pmd-perf-show.{name}.out").read_text()
    got = "".join(
        driven_block(traffic=True, metrics=True, histograms=histograms, core=core)
        for core in (0, 1)
    )
    assert mask_numbers(got) == mask_numbers(expected)


def test_structure_mask_detects_a_changed_layout() -> None:
    # Guards the guard: a layout difference must survive the masking.
    good = driven_block(traffic=True, metrics=False, histograms=False)
    bad = good.replace("  - SMC hits:", "  - SMC hit:")
    assert mask_numbers(good) != mask_numbers(bad)
    assert mask_numbers(good) != mask_numbers(good.replace("(1.00 passes/pkt)", "(1.00)"))


# -- layout: capture figures re-rendered byte for byte ---------------------------------

STAT_LINE = re.compile(r"  (?:- )?(?P<label>[^:]+):\s*(?P<value>\d+)(?:  \((?P<extra>.*)\))?$")
TSC_DEPENDENT = (
    (re.compile(r"\([^()]* us/it\)"), "(X us/it)"),
    (re.compile(r"\([^()]* % of total cycles\)"), "(X % of total cycles)"),
    (re.compile(r"(Sleep time \(us\):).*"), r"\1 X"),
    (re.compile(r", [^,()]* us/upcall\)"), ", X us/upcall)"),
)


def mask_tsc(text: str) -> str:
    for pattern, repl in TSC_DEPENDENT:
        text = pattern.sub(repl, text)
    return text


def capture_blocks(name: str) -> list[str]:
    text = (GOLDEN / f"pmd-perf-show.{name}.out").read_text()
    return [b for b in re.split(r"(?=\nTime: )", text) if b]


def perf_from_stats(block: str) -> tuple[PmdPerf, str, float]:
    """A PmdPerf holding the overall figures of a capture block."""
    lines = block.splitlines()
    duration_ms = round(float(re.findall(r"Measurement duration: ([\d.]+) s", block)[0]) * 1000)
    header = lines[4]
    when = wall_at(re.findall(r"Time: (\S+)", block)[0])
    fields: dict[str, tuple[int, str]] = {}
    for line in lines:
        m = STAT_LINE.match(line)
        if m and "Histograms" not in block.split(line)[0]:
            fields.setdefault(m["label"], (int(m["value"]), m["extra"] or ""))
    perf = PmdPerf(wall_ms=Clock(duration_ms))
    perf.clear(now_ms=0)
    n = perf.n
    iters, idle_iters = fields["Iterations"][0], fields["idle iterations"][0]
    perf.pkts_hist.bins[0], perf.pkts_hist.bins[1] = idle_iters, iters - idle_iters
    rx = fields["Rx packets"][0]
    busy = rx * int(re.findall(r"(\d+) cycles/pkt", fields["Rx packets"][1])[0]) if rx else 0
    n[Stat.CYCLES_ITER_BUSY] = busy
    n[Stat.CYCLES_ITER_IDLE] = fields["Used TSC cycles"][0] - busy
    n[Stat.SLEEP_ITER] = fields["sleep iterations"][0]
    n[Stat.CYCLES_SLEEP] = fields["Sleep time (us)"][0] // 10**6  # 1 Hz TSC in the capture
    if rx:
        n[Stat.RECV] = rx
        n[Stat.RECIRC] = fields["Datapath passes"][0] - rx
        for label, stat in (
            ("PHWOL hits", Stat.PHWOL_HIT),
            ("Simple Match hits", Stat.SIMPLE_HIT),
            ("EMC hits", Stat.EXACT_HIT),
            ("SMC hits", Stat.SMC_HIT),
            ("Megaflow hits", Stat.MASKED_HIT),
            ("Upcalls", Stat.MISS),
            ("Lost upcalls", Stat.LOST),
        ):
            n[stat] = fields[label][0]
        per_hit = float(re.findall(r"([\d.]+) subtbl", fields["Megaflow hits"][1])[0])
        n[Stat.MASKED_LOOKUP] = round(per_hit * n[Stat.MASKED_HIT])
    n[Stat.SENT_PKTS] = fields["Tx packets"][0]
    n[Stat.SENT_BATCHES] = fields.get("Tx batches", (0, ""))[0]
    return perf, header, when


def perf_from_tables(block: str) -> tuple[PmdPerf, int, int]:
    """A PmdPerf holding a capture block's histograms and history tables."""
    perf = PmdPerf()
    sections = re.split(r"\n(?=Histograms\n|   iter |   ms )", block)
    n_it = n_ms = 0
    for section in sections[1:]:
        rows = [line.split() for line in section.splitlines()[1:]]
        if section.startswith("Histograms"):
            rows = rows[1:]  # below the title line
            for col, hist in enumerate(perf.histograms()):
                hist.bins[:] = [int(row[2 * col + 1]) for row in rows[:32]]
            cpi, ppi, cpp, ppb, qlen, upi, cpu = (float(v) for v in rows[-1])
            t, scale = perf.totals, 10**6
            t.iterations, t.cycles = scale, int(cpi) * scale
            t.pkts = max(round(ppi * scale), 1 if cpp or ppb else 0)
            t.busy_cycles = int(cpp) * t.pkts
            t.batches = round(t.pkts / ppb) if ppb else 0
            t.max_vhost_qfill = round(qlen * scale)
            t.upcalls = max(round(upi * scale), 1 if cpu else 0)
            t.upcall_cycles = int(cpu) * t.upcalls
        elif section.startswith("   iter"):
            ring, idx = perf.iteration_history
            n_it = len(rows)
            for i, row in enumerate(rows, 1):
                stamp, cyc, pkts, _, ppb_i, qfill, ups, cpu_i = (int(v) for v in row)
                s = ring[(idx - i) % HISTORY_LEN]
                s.timestamp, s.cycles, s.pkts, s.max_vhost_qfill = stamp, cyc, pkts, qfill
                s.batches = pkts // ppb_i if ppb_i else 0
                s.upcalls, s.upcall_cycles = ups, cpu_i * ups
        else:
            ring, idx = perf.ms_history
            n_ms = len(rows)
            for i, row in enumerate(rows, 1):
                stamp, its, cpi_i, pkts, cpp_i, ppb_i, q_i, ups, cpu_i = (int(v) for v in row)
                s = ring[(idx - i) % HISTORY_LEN]
                s.timestamp, s.iterations, s.cycles = stamp, its, cpi_i * its
                s.pkts, s.busy_cycles = pkts, cpp_i * pkts
                s.batches = pkts // ppb_i if ppb_i else 0
                s.max_vhost_qfill, s.upcalls, s.upcall_cycles = q_i * its, ups, cpu_i * ups
    return perf, n_it, n_ms


LAYOUT_CAPTURES = sorted(
    p.name[len("pmd-perf-show.") : -4] for p in GOLDEN.glob("pmd-perf-show.*.out")
)


@pytest.mark.parametrize("name", LAYOUT_CAPTURES)
def test_capture_figures_rerender_exactly(name: str) -> None:
    blocks = capture_blocks(name)
    assert blocks
    for block in blocks:
        sections = re.split(r"\n(?=Histograms\n|   iter |   ms )", block)
        perf, header, when = perf_from_stats(block)
        head = show(perf, header=header, now_wall=when, full_metrics=False)
        assert mask_tsc(head) == mask_tsc(sections[0])
        tables, n_it, n_ms = perf_from_tables(block)
        for section in sections[1:]:
            if section.startswith("Histograms"):
                assert format_histograms(tables) == section
            elif section.startswith("   iter"):
                ring, idx = tables.iteration_history
                assert format_iteration_history(ring, idx, n_it) == section
            else:
                assert format_ms_history(tables, n_ms) == section


def test_layout_captures_cover_every_section() -> None:
    text = "".join((GOLDEN / f"pmd-perf-show.{n}.out").read_text() for n in LAYOUT_CAPTURES)
    for marker in ("Histograms", "   iter ", "   ms ", "PHWOL", "us/upcall", "sleep iterations"):
        assert marker in text


# -- exact figures of constructed scenarios -------------------------------------------


def stats_scenario(*, full: bool = False) -> Rig:
    """OVS's pmd.at "PMD - stats" test: 20 packets, EMC 19, one upcall, 20 tx batches of 1."""
    rig = make_rig(full_metrics=full)
    n = rig.perf.n
    for i in range(100):
        if i % 5 == 0:
            n[Stat.RECV] += 1
            n[Stat.EXACT_HIT if i else Stat.MISS] += 1
            n[Stat.SENT_PKTS] += 1
            n[Stat.SENT_BATCHES] += 1
            rig.iterate(10_000, 1, 1, full=full, batches=1, upcalls=(50_000,) if i == 0 else ())
        else:
            rig.iterate(2000, full=full)
    rig.ms.now += 10
    return rig


def test_stats_scenario_exact_text() -> None:
    rig = stats_scenario()
    assert show(rig.perf) == (
        "\n"
        "Time: 01:02:03.004\n"
        "Measurement duration: 0.010 s\n"
        "\n"
        "pmd thread numa_id 0 core_id 0:\n"
        "\n"
        "  Iterations:                  100  (3.60 us/it)\n"
        "  - Used TSC cycles:        360000  (  3.6 % of total cycles)\n"
        "  - idle iterations:            80  ( 44.4 % of used cycles)\n"
        "  - busy iterations:            20  ( 55.6 % of used cycles)\n"
        "  - sleep iterations:            0  (  0.0 % of iterations)\n"
        "  Sleep time (us):               0  (  0 us/iteration avg.)\n"
        "  Rx packets:                   20  (2 Kpps, 10000 cycles/pkt)\n"
        "  Datapath passes:              20  (1.00 passes/pkt)\n"
        "  - PHWOL hits:                  0  (  0.0 %)\n"
        "  - Simple Match hits:           0  (  0.0 %)\n"
        "  - EMC hits:                   19  ( 95.0 %)\n"
        "  - SMC hits:                    0  (  0.0 %)\n"
        "  - Megaflow hits:               0  (  0.0 %, 0.00 subtbl lookups/hit)\n"
        "  - Upcalls:                     1  (  5.0 %, 0.0 us/upcall)\n"
        "  - Lost upcalls:                0  (  0.0 %)\n"
        "  Tx packets:                   20  (2 Kpps)\n"
        "  Tx batches:                   20  (1.00 pkts/batch)\n"
    )


def test_full_metrics_adds_upcall_cycles_and_histograms() -> None:
    rig = stats_scenario(full=True)
    text = show(rig.perf, full_metrics=True)
    assert "  - Upcalls:                     1  (  5.0 %, 50.0 us/upcall)\n" in text
    assert rig.perf.get(Stat.CYCLES_UPCALL) == 50_000
    head, hist = text.split("\nHistograms\n")
    assert head.endswith("(1.00 pkts/batch)\n")
    rows = [r.split() for r in hist.splitlines()[1:33]]
    # cycles/it: 2000 -> bin 4 (wall 2104); 10000 -> bin 9 (wall 12686).
    assert [int(r[1]) for r in rows] == [0] * 4 + [80] + [0] * 4 + [20] + [0] * 22
    assert int(rows[0][3]) == 80 and int(rows[1][3]) == 20  # packets/it
    assert int(rows[10][5]) == 20  # cycles/pkt 10000 -> wall 10066
    assert int(rows[1][7]) == 20  # pkts/batch 1
    assert int(rows[0][11]) == 99 and int(rows[1][11]) == 1  # upcalls/it
    assert int(rows[17][13]) == 1  # cycles/upcall 50000 -> wall 50118
    assert sum(int(r[13]) for r in rows) == 1


def test_stats_scenario_matches_pmd_at_after_its_masking() -> None:
    """pmd.at 'PMD - stats' reads the PMD block through sed filters; main's
    layout has no MFEX line, so the lookup lines follow each other."""
    text = show(stats_scenario(full=True).perf, full_metrics=True)
    kept = [line for line in text.splitlines() if "cycles" not in line and "teration" not in line]
    kept = [re.sub(r", .* us", ", <cleared> us", line) for line in kept]
    kept = [re.sub(r"\d* Kpps", "<cleared> Kpps", line) for line in kept]
    start = kept.index(PMD0)
    assert "\n".join(kept[start : start + 12]) == (
        "pmd thread numa_id 0 core_id 0:\n"
        "\n"
        "  Datapath passes:              20  (1.00 passes/pkt)\n"
        "  - PHWOL hits:                  0  (  0.0 %)\n"
        "  - Simple Match hits:           0  (  0.0 %)\n"
        "  - EMC hits:                   19  ( 95.0 %)\n"
        "  - SMC hits:                    0  (  0.0 %)\n"
        "  - Megaflow hits:               0  (  0.0 %, 0.00 subtbl lookups/hit)\n"
        "  - Upcalls:                     1  (  5.0 %, <cleared> us/upcall)\n"
        "  - Lost upcalls:                0  (  0.0 %)\n"
        "  Tx packets:                   20  (<cleared> Kpps)\n"
        "  Tx batches:                   20  (1.00 pkts/batch)"
    )


def test_main_thread_block() -> None:
    rig = make_rig()
    n = rig.perf.n
    n[Stat.RECV] += 4
    n[Stat.MISS] += 3
    n[Stat.MASKED_HIT] += 1
    n[Stat.MASKED_LOOKUP] += 2
    rig.perf.record_upcall(1000)
    rig.ms.now += 2000
    text = show(rig.perf, header="main thread:", is_pmd=False, full_metrics=True, it_hist=5)
    assert text == (
        "\n"
        "Time: 01:02:03.004\n"
        "Measurement duration: 2.000 s\n"
        "\n"
        "main thread:\n"
        "\n"
        "  Rx packets:                    4  (0 Kpps)\n"
        "  Datapath passes:               4  (1.00 passes/pkt)\n"
        "  - PHWOL hits:                  0  (  0.0 %)\n"
        "  - Simple Match hits:           0  (  0.0 %)\n"
        "  - EMC hits:                    0  (  0.0 %)\n"
        "  - SMC hits:                    0  (  0.0 %)\n"
        "  - Megaflow hits:               1  ( 25.0 %, 2.00 subtbl lookups/hit)\n"
        "  - Upcalls:                     3  ( 75.0 %)\n"
        "  - Lost upcalls:                0  (  0.0 %)\n"
        "  Tx packets:                    0\n"
        "\n"
    )


def test_zero_duration_prints_no_stats() -> None:
    rig = make_rig()
    rig.iterate(1000, 1, 1)
    assert show(rig.perf).endswith("Measurement duration: 0.000 s\n\n" + PMD0 + "\n\n")


def test_sleep_and_offload_accounting() -> None:
    rig = make_rig()
    for _ in range(10):
        rig.iterate(5000, sleep=4000, offload=1000)
    rig.ms.now += 1
    perf = rig.perf
    assert perf.get(Stat.CYCLES_ITER_IDLE) == 50_000
    assert perf.get(Stat.CYCLES_ITER_BUSY) == 0
    assert perf.get(Stat.SLEEP_ITER) == 10
    assert perf.get(Stat.CYCLES_SLEEP) == 40_000
    assert perf.get(Stat.CYCLES_OFFLOAD) == 10_000
    lines = show(perf).splitlines()
    assert lines[6:14] == [
        "  Iterations:                   10  (10.00 us/it)",
        "  - Used TSC cycles:         50000  (  5.0 % of total cycles)",
        "  - idle iterations:            10  (100.0 % of used cycles)",
        "  - busy iterations:             0  (  0.0 % of used cycles)",
        "  - sleep iterations:           10  (100.0 % of iterations)",
        "  Sleep time (us):              40  (  4 us/iteration avg.)",
        "  Offload cycles:            10000  ( 10.0 % of used cycles)",
        "  Rx packets:                    0",
    ]


def test_busy_cycles_follow_rx_or_tx_but_busy_iterations_follow_rx() -> None:
    rig = make_rig()
    rig.iterate(700, 0, 3)  # tx only: busy cycles, idle iteration
    rig.iterate(300, 2, 0)
    assert rig.perf.get(Stat.CYCLES_ITER_BUSY) == 1000
    assert rig.perf.pkts_hist.bins[:3] == [1, 0, 1]


def test_no_offload_line_without_offload_cycles() -> None:
    rig = make_rig()
    rig.iterate(5000, sleep=10)
    rig.ms.now += 1
    assert "Offload" not in show(rig.perf)


def work_rig(**counts: int) -> Rig:
    rig = make_rig()
    rig.iterate(5000)
    for name, value in counts.items():
        rig.perf.n[Stat[name]] = value
    rig.ms.now += 1
    return rig


def test_work_ring_zero_line_takes_the_blank_line() -> None:
    text = show(work_rig().perf, work_ring=True)
    assert text.endswith(
        "  Tx packets:                    0\n  Work deferred:                 0\n\n"
    )
    assert "Work" not in show(work_rig(WORK_DEFER=5).perf)


def test_work_ring_block() -> None:
    rig = work_rig(WORK_DEFER=10, WORK_DONE=8, WORK_IN_PROG=12, WORK_R_FULL=1, WORK_DROPPED=2)
    assert show(rig.perf, work_ring=True).endswith(
        "  Tx packets:                    0\n"
        "  Work deferred:                             10\n"
        "  - Deferred work done:                       8\n"
        "  - Work completion checks:                  20  (2.50 checks/work item)\n"
        "  - Ring full when deferring work:            1\n"
        "  - Deferred work dropped:                    2\n"
    )


def test_work_ring_ratio_is_zero_before_any_completion() -> None:
    rig = work_rig(WORK_DEFER=3, WORK_IN_PROG=4)
    text = show(rig.perf, work_ring=True)
    assert "  - Work completion checks:                   4  (0.00 checks/work item)\n" in text
    assert "inf" not in text and "nan" not in text


def test_work_ring_with_tx_has_no_extra_blank_line() -> None:
    rig = work_rig(SENT_PKTS=4, SENT_BATCHES=2)
    text = show(rig.perf, work_ring=True)
    assert text.endswith("(2.00 pkts/batch)\n  Work deferred:                 0\n\n")


# -- iteration and millisecond histories ------------------------------------------


def last_table(text: str) -> str:
    return re.split(r"\n(?=   iter |   ms )", text)[-1]


def history_rig() -> Rig:
    rig = make_rig(full_metrics=True, start_ms=100)
    for ms in range(100, 104):
        rig.ms.now = ms
        for i in range(3):
            rx = 4 if i == 1 else 0
            rig.iterate(5000 + 1000 * i, rx, rx, full=True, batches=2 if rx else 0)
    rig.ms.now = 104
    rig.iterate(5000, full=True)
    return rig


def test_iteration_history_table() -> None:
    rig = history_rig()
    text = show(rig.perf, full_metrics=True, histograms=False, it_hist=4)
    assert last_table(text) == (
        "   iter                cycles       packets      cycles/pkt   pkts/batch   "
        "vhost qlen   upcalls      cycles/upcall\n"
        "   13                  5000         0            0            0            "
        "0            0            0          \n"
        "   12                  7000         0            0            0            "
        "0            0            0          \n"
        "   11                  6000         4            1500         2            "
        "0            0            0          \n"
        "   10                  5000         0            0            0            "
        "0            0            0          \n"
    )


def test_ms_history_table_and_totals() -> None:
    rig = history_rig()
    text = show(rig.perf, full_metrics=True, histograms=False, ms_hist=3)
    # A ms slot is closed by the first iteration that sees the next ms and
    # so also holds that iteration: slot 100 has 4 iterations, the later
    # ones 3 (their first went to the previous slot).
    assert last_table(text) == (
        "   ms             iterations   cycles/it    Kpps         cycles/pkt   pkts/batch   "
        "vhost qlen   upcalls      cycles/upcall\n"
        "   103            3            6000         4            1500         2            "
        "0            0            0          \n"
        "   102            3            6000         4            1500         2            "
        "0            0            0          \n"
        "   101            3            6000         4            1500         2            "
        "0            0            0          \n"
    )
    totals = rig.perf.totals
    assert (totals.iterations, totals.cycles, totals.pkts, totals.batches) == (13, 77_000, 16, 8)
    assert show(rig.perf, full_metrics=True).split("\n")[-2].split() == [
        "5923", "1.23077", "1500", "2.00000", "0.00000", "0.00000", "0"
    ]  # fmt: skip


def test_history_length_is_clamped_and_wraps() -> None:
    rig = make_rig(full_metrics=True)
    for i in range(HISTORY_LEN + 5):
        rig.iterate(1000 + i, full=True)
    text = show(rig.perf, full_metrics=True, histograms=False, it_hist=5000)
    rows = last_table(text).splitlines()[1:]
    assert len(rows) == HISTORY_LEN
    assert rows[0].split()[:2] == [str(HISTORY_LEN + 5), str(1000 + HISTORY_LEN + 4)]
    assert rows[-1].split() == ["0"] * 8  # the emptied slot, as in OVS
    assert rows[-2].split()[0] == "7"


def test_histories_need_full_metrics_and_a_pmd() -> None:
    rig = history_rig()
    text = show(rig.perf, full_metrics=False, it_hist=5, ms_hist=5)
    assert "   iter " not in text and "   ms " not in text
    text = show(rig.perf, header="main thread:", is_pmd=False, full_metrics=True, it_hist=5)
    assert "   iter " not in text and "Histograms" not in text
    assert "   iter " in show(rig.perf, full_metrics=True, it_hist=5)


# -- clearing -----------------------------------------------------------------------


def test_clear_while_polling_waits_for_the_next_iteration() -> None:
    rig = history_rig()
    perf = rig.perf
    perf.n[Stat.RECV] += 7
    perf.polling = True
    perf.request_clear()
    assert perf.get(Stat.RECV) == 7
    assert perf.pkts_hist.samples() == 13
    cnt = perf.iteration_cnt
    rig.ms.now = 500
    rig.iterate(3000, full=True)
    assert perf.get(Stat.RECV) == 0
    assert perf.get(Stat.CYCLES_ITER_IDLE) == 3000
    assert perf.pkts_hist.samples() == 1
    assert perf.start_ms == 500
    assert perf.iteration_cnt == cnt + 1  # not reset by a clear
    assert perf.totals.iterations == 0
    ring, idx = perf.iteration_history
    assert idx == 1 and ring[0].timestamp == cnt + 1 and ring[1].cycles == 0
    assert perf.n[Stat.RECV] == 7  # the raw counters stay monotonic


def test_clear_when_not_polling_is_immediate() -> None:
    rig = stats_scenario()
    rig.ms.now = 9000
    rig.perf.request_clear()
    assert rig.perf.get_all() == [0] * len(Stat)
    assert rig.perf.start_ms == 9000
    assert all(h.samples() == 0 for h in rig.perf.histograms())
    rig.perf.clear(now_ms=12_345)
    assert rig.perf.start_ms == 12_345
    assert rig.perf.ms_history[0][0].timestamp == 12_345


def test_get_never_negative() -> None:
    perf = PmdPerf()
    perf.zero[Stat.RECV] = 5
    assert perf.get(Stat.RECV) == 0 and perf.get_all()[Stat.RECV] == 0


# -- suspicious-iteration logging -----------------------------------------------------


def logging_rig(**cfg: object) -> tuple[Rig, io.StringIO, PerfLogConfig]:
    console = io.StringIO()
    vlog = Vlog("test", clock=lambda: 1000.0, console=console, syslog_method="null")
    vlog.set_pattern(Destination.CONSOLE, "%p|%m")
    config = PerfLogConfig(enabled=True, **cfg)  # type: ignore[arg-type]
    rig = make_rig(full_metrics=True, log_config=config, log=vlog.module("dpif_netdev_perf"))
    return rig, console, config


def table_iters(log: str) -> list[int]:
    table = log.split("Neighborhood of suspicious iteration:\n")[1]
    return [int(line.split()[0]) for line in table.splitlines()[1:] if line.startswith("   ")]


def test_suspicious_iteration_logs_its_neighborhood() -> None:
    rig, console, _ = logging_rig(before=2, after=2)
    for i in range(1, 8):
        rig.iterate(300_000 if i == 5 else 1000, full=True)
    assert console.getvalue() == ""
    rig.iterate(1000, full=True)  # iteration 8 reaches the end of the range
    log = console.getvalue()
    assert log.startswith(
        "WARN|Suspicious iteration (Excessive total cycles): iter=5 duration=300 us\n"
        "WARN|Neighborhood of suspicious iteration:\n"
        "   iter                cycles"
    )
    assert table_iters(log) == [7, 6, 5, 4, 3]
    assert "   5                   300000 " in log
    rig.iterate(1000, full=True)
    assert console.getvalue() == log  # logged once


def test_threshold_is_strictly_exceeded_and_needs_full_metrics() -> None:
    rig, console, _ = logging_rig(before=0, after=0)
    rig.iterate(250_000, full=True)
    rig.iterate(400_000, full=False)
    rig.iterate(1000, full=True)
    assert console.getvalue() == ""


def test_vhost_queue_fill_is_suspicious() -> None:
    rig, console, _ = logging_rig(before=1, after=0, q_thr=100)
    perf = rig.perf
    rig.iterate(1000, full=True)
    perf.start_iteration(rig.tsc.now)
    perf.record_batch(32, vhost_remaining=70)
    rig.tsc.now += 1000
    perf.end_iteration(rig.tsc.now, 32, 0, full_metrics=True)
    rig.iterate(1000, full=True)
    log = console.getvalue()
    assert "Suspicious iteration (Vhost RX queue full): iter=2 duration=1 us" in log
    assert table_iters(log) == [2, 1]
    assert "   2                   1000         32           31           32           102 " in log


def test_extend_logs_the_earlier_one_and_moves_the_end() -> None:
    rig, console, _ = logging_rig(before=2, after=2, extend=True)
    for i in range(1, 10):
        rig.iterate(300_000 if i in (5, 7) else 1000, full=True)
    log = console.getvalue()
    assert log == "WARN|Suspicious iteration (Excessive total cycles): iter=5 duration=300 us\n"
    rig.iterate(1000, full=True)
    log = console.getvalue()
    assert "iter=7 duration=300 us\nWARN|Neighborhood" in log
    assert table_iters(log) == [9, 8, 7, 6, 5, 4, 3]


def test_without_extend_a_second_suspicious_iteration_is_ignored() -> None:
    rig, console, _ = logging_rig(before=1, after=3)
    for i in range(1, 7):
        rig.iterate(300_000 if i in (2, 3) else 1000, full=True)
    log = console.getvalue()
    assert log.count("Suspicious iteration") == 1 and "iter=2 " in log
    assert table_iters(log) == [5, 4, 3, 2, 1]


def test_long_range_resets_the_shared_config() -> None:
    rig, console, config = logging_rig(before=60, after=60, extend=True)
    for i in range(1, 200):
        rig.iterate(300_000 if i == 70 else 1000, full=True)
    assert len(table_iters(console.getvalue())) == 121
    assert (config.before, config.after, config.extend, config.enabled) == (5, 5, False, True)


def test_extension_beyond_the_history_is_capped() -> None:
    rig, console, _ = logging_rig(before=0, after=998, extend=True)
    for i in range(1, 2100):
        rig.iterate(300_000 if i in (1, 900) else 1000, full=True)
    rows = table_iters(console.getvalue())
    assert len(rows) == HISTORY_LEN - 1
    assert rows[-1] == 1


def test_no_logging_when_disabled_or_without_log() -> None:
    rig, console, config = logging_rig()
    config.enabled = False
    for _ in range(20):
        rig.iterate(300_000, full=True)
    assert console.getvalue() == ""
    bare = make_rig(full_metrics=True, log_config=PerfLogConfig(enabled=True))
    for _ in range(20):
        bare.iterate(300_000, full=True)


# -- pmd-perf-log-set arguments --------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], PerfLogConfig()),
        (["on"], PerfLogConfig(enabled=True)),
        (["on", "off"], PerfLogConfig()),
        (
            ["on", "-b", "10", "-a", "20", "-e", "-us", "100", "-q", "64"],
            PerfLogConfig(True, True, 10, 20, 100, 64),
        ),
        (["-e", "-ne"], PerfLogConfig()),
        (["-b", "2000"], PerfLogConfig(before=998, after=0)),
        (["-a", "999", "-b", "5"], PerfLogConfig(before=5, after=993)),
        (["-b", "-3", "-a", " +7"], PerfLogConfig(before=0, after=7)),
        (["-us", "-1", "-q", "2147483647"], PerfLogConfig(us_thr=-1, q_thr=2**31 - 1)),
    ],
)
def test_parse_perf_log_set(args: list[str], expected: PerfLogConfig) -> None:
    current = PerfLogConfig()
    assert parse_perf_log_set(args, current) == expected
    assert current == PerfLogConfig()


@pytest.mark.parametrize(
    "args",
    [
        ["maybe"],
        ["-a"],
        ["on", "-b"],
        ["-a", "x"],
        ["-q", "1.5"],
        ["-us", "2147483648"],
        ["-b", ""],
        ["-b", "5 "],
        ["on", "-x"],
        ["ON"],
    ],
)
def test_parse_perf_log_set_rejects(args: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_perf_log_set(args, PerfLogConfig())
    assert str(info.value) == LOG_USAGE
    assert LOG_USAGE == (
        "Usage: ovs-appctl dpif-netdev/pmd-perf-log-set [on|off] [-b before] [-a after] "
        "[-e|-ne] [-us usec] [-q qlen]"
    )


def test_parse_keeps_unmentioned_settings_and_summary() -> None:
    current = PerfLogConfig(enabled=True, extend=True, before=7, after=9, us_thr=1, q_thr=2)
    cfg = parse_perf_log_set(["-a", "3"], current)
    assert cfg == attrs.evolve(current, after=3)
    assert cfg.summary() == (
        "pmd-perf-log-set: on, before=7, after=3, extend=true, us_thr=1, q_thr=2"
    )
    shared = PerfLogConfig()
    shared.assign(cfg)
    assert shared == cfg and shared is not cfg


# -- JSON data ------------------------------------------------------------------------


def test_perf_data_figures() -> None:
    rig = stats_scenario(full=True)
    data = perf_data(rig.perf, is_pmd=True, now_wall=123.5)
    assert data["thread"] == "pmd" and data["time"] == 123.5
    assert data["duration_s"] == pytest.approx(0.01)
    assert (data["iterations"], data["idle_iterations"], data["busy_iterations"]) == (100, 80, 20)
    assert data["used_cycles"] == 360_000 and data["busy_cycles"] == 200_000
    assert data["us_per_iteration"] == pytest.approx(3.6)
    assert data["rx_packets"] == 20 and data["rx_kpps"] == pytest.approx(2.0)
    assert data["cycles_per_packet"] == pytest.approx(10_000)
    assert data["lookups"] == {
        "phwol": 0, "simple": 0, "emc": 19, "smc": 0, "megaflow": 0, "upcall": 1, "lost": 0
    }  # fmt: skip
    assert sum(data["lookups"].values()) == data["datapath_passes"] == 20
    assert data["us_per_upcall"] == pytest.approx(50.0)
    assert (data["tx_packets"], data["tx_batches"], data["packets_per_batch"]) == (20, 20, 1.0)
    assert data["work"]["checks_per_item"] == 0.0
    assert "histograms" not in data
    hists = perf_data(rig.perf, is_pmd=True, now_wall=0, histograms=True)["histograms"]
    assert list(hists) == [
        "cycles/it", "packets/it", "cycles/pkt", "pkts/batch", "max vhost qlen",
        "upcalls/it", "cycles/upcall",
    ]  # fmt: skip
    assert hists["packets/it"]["counts"][:2] == [80, 20] and len(hists["cycles/it"]["walls"]) == 31


def test_perf_data_main_thread_has_no_iteration_figures() -> None:
    rig = make_rig()
    rig.perf.n[Stat.RECV] = 2
    data = perf_data(rig.perf, is_pmd=False, now_wall=0.0)
    assert data["thread"] == "main"
    assert data["iterations"] is None and data["sleep_us"] is None
    assert data["cycles_per_packet"] is None and data["us_per_upcall"] is None
    assert data["rx_kpps"] == 0.0  # zero duration


# -- hot path ------------------------------------------------------------------------


@pytest.mark.parametrize("full", [False, True])
def test_iterations_do_not_grow_memory(full: bool) -> None:
    rig = make_rig(full_metrics=full)

    def run() -> None:
        # Enough to replace every ring slot and every int held in it.
        for _ in range(3 * HISTORY_LEN):
            rig.iterate(5000, 1, 1, full=full, batches=1)
            rig.ms.now += 1

    tracemalloc.start()
    try:
        run()
        before = tracemalloc.get_traced_memory()[0]
        run()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 2048


def test_current_is_reset_between_iterations() -> None:
    rig = make_rig(full_metrics=True)
    rig.iterate(1000, 8, full=False, batches=2, upcalls=(10,))
    rig.perf.start_iteration(rig.tsc.now)
    cur = rig.perf.current
    assert (cur.batches, cur.upcalls, cur.upcall_cycles, cur.max_vhost_qfill) == (0, 0, 0, 0)


def test_record_calls_need_full_metrics() -> None:
    enabled = [False]
    perf = PmdPerf(full_metrics=lambda: enabled[0])
    perf.record_batch(5)
    perf.record_upcall(100)
    assert perf.current.batches == 0 and perf.cycles_per_upcall_hist.samples() == 0
    enabled[0] = True
    assert perf.full_metrics_enabled()
    perf.record_batch(5)
    perf.record_upcall(100)
    assert perf.current.batches == 1 and perf.cycles_per_upcall_hist.samples() == 1
    assert perf.pkts_per_batch_hist.bins[5] == 1


def test_record_calls_follow_the_loops_full_metrics_flag() -> None:
    # A PMD built without full_metrics still records once its loop ends
    # iterations with full_metrics=True, and stops once it passes False.
    rig = make_rig()
    rig.iterate(1000, 4, full=True, batches=1, upcalls=(500,))
    assert rig.perf.pkts_per_batch_hist.samples() == 0  # first iteration: not yet
    rig.iterate(1000, 4, full=True, batches=1, upcalls=(500,))
    assert rig.perf.pkts_per_batch_hist.bins[4] == 1
    assert rig.perf.get(Stat.CYCLES_UPCALL) == 500
    rig.iterate(1000, 4, full=False)
    rig.iterate(1000, 4, full=False, batches=1, upcalls=(500,))
    assert rig.perf.pkts_per_batch_hist.samples() == 1
    assert not rig.perf.full_metrics_enabled()


def test_iter_stats_reset() -> None:
    s = IterStats(1, 2, 3, 4, 5, 6, 7, 8, 9)
    s.reset()
    assert attrs.astuple(s) == attrs.astuple(IterStats())
