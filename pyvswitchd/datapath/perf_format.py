"""Text and JSON views of :class:`~pyvswitchd.datapath.perf.PmdPerf`.

:func:`format_perf_show` renders one thread's block of
``dpif-netdev/pmd-perf-show``; with the default ``work_ring=False`` a PMD's
block is byte-for-byte the layout of OVS main, which is OVS 3.1's without
the ``MFEX Opt hits`` line (main dropped it with the AVX512 miniflow
extract).  Additions from later OVS and from two patch series posted to
ovs-dev, S1 = "dpif-offload: Add infrastructure for offload provider PMD
helpers" (2026) and S2 = "dpif-netdev: Add a per thread work ring" (2021,
part of "Userspace deferral of work"):

* the main thread gets a block too (OVS main): no iteration lines, no
  ``cycles/pkt`` or ``us/upcall`` suffixes, never histograms or histories;
* ``Offload cycles:`` follows ``Sleep time (us):`` when offload-provider
  work took any cycles (S1);
* with ``work_ring=True`` the deferred-work figures follow the Tx lines
  (S2).  The five-line block keeps S2's 35-column label field, which its
  longest label needs, so its own numbers line up with each other but sit
  13 columns right of the other figures; the single zero line uses the
  usual 22-column field.  ``checks/work item`` is 0.00 until an item has
  completed (C would print inf or nan).

:func:`perf_data` returns the same figures as a JSON-able dict.
"""

from __future__ import annotations

import time
from typing import Any

from pyvswitchd.datapath.histogram import NUM_BINS
from pyvswitchd.datapath.perf import (
    HISTORY_LEN,
    TSC_HZ,
    US_PER_CYCLE,
    Stat,
    format_iteration_history,
)
from pyvswitchd.datapath.perf_snapshot import PerfReader

_HIST_TITLES = (
    "cycles/it",
    "packets/it",
    "cycles/pkt",
    "pkts/batch",
    "max vhost qlen",
    "upcalls/it",
    "cycles/upcall",
)
_MS_TITLES = (
    "iterations",
    "cycles/it",
    "Kpps",
    "cycles/pkt",
    "pkts/batch",
    "vhost qlen",
    "upcalls",
)
_WORK_LABEL_WIDTH = 35


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _wall_clock(now_wall: float) -> str:
    ms = int(now_wall * 1000) % 1000
    return time.strftime("%H:%M:%S", time.localtime(now_wall)) + f".{ms:03d}"


def _duration_s(perf: PerfReader) -> float:
    return (perf.wall_ms() - perf.start_ms) / 1000.0


def format_perf_show(
    perf: PerfReader,
    header: str,
    *,
    is_pmd: bool,
    now_wall: float,
    histograms: bool,
    it_hist: int,
    ms_hist: int,
    full_metrics: bool,
    work_ring: bool = False,
) -> str:
    """One thread's block of ``pmd-perf-show``.

    ``header`` is the thread line, colon included (e.g.
    ``"pmd thread numa_id 0 core_id 0:"`` or ``"main thread:"``);
    ``now_wall`` is the wall-clock time (seconds) printed, in local time, as
    ``Time:``.  Histograms (unless ``histograms`` is false), the last
    ``it_hist`` iterations and the last ``ms_hist`` completed milliseconds
    (each clamped to 0..1000) follow for a PMD when ``full_metrics`` is on.
    """
    duration = _duration_s(perf)
    out = [
        f"\nTime: {_wall_clock(now_wall)}\n",
        f"Measurement duration: {duration:.3f} s\n\n",
        f"{header}\n\n",
    ]
    if duration != 0:
        out.append(format_overall_stats(perf, duration, is_pmd=is_pmd, work_ring=work_ring))
    if is_pmd and full_metrics:
        if histograms:
            out.append("\n" + format_histograms(perf))
        it_hist = min(max(it_hist, 0), HISTORY_LEN)
        if it_hist:
            ring, idx = perf.iteration_history
            out.append("\n" + format_iteration_history(ring, idx, it_hist))
        ms_hist = min(max(ms_hist, 0), HISTORY_LEN)
        if ms_hist:
            out.append("\n" + format_ms_history(perf, ms_hist))
    return "".join(out)


def format_overall_stats(
    perf: PerfReader, duration: float, *, is_pmd: bool, work_ring: bool
) -> str:
    """The counter lines of one thread (``duration`` in seconds, > 0)."""
    s = perf.get_all()
    idle, busy = s[Stat.CYCLES_ITER_IDLE], s[Stat.CYCLES_ITER_BUSY]
    used = idle + busy
    tot_iter = perf.pkts_hist.samples()
    lines: list[str] = []
    if is_pmd:
        idle_iter = perf.pkts_hist.bins[0]
        sleep_iter, sleep = s[Stat.SLEEP_ITER], s[Stat.CYCLES_SLEEP]
        offload = s[Stat.CYCLES_OFFLOAD]
        sleep_us = sleep * US_PER_CYCLE
        lines += [
            f"  Iterations:         {tot_iter:12d}  "
            f"({_ratio((used + sleep + offload) * US_PER_CYCLE, tot_iter):.2f} us/it)",
            f"  - Used TSC cycles:  {used:12d}  "
            f"({100.0 * (used / duration) / TSC_HZ:5.1f} % of total cycles)",
            f"  - idle iterations:  {idle_iter:12d}  "
            f"({_ratio(100.0 * idle, used):5.1f} % of used cycles)",
            f"  - busy iterations:  {tot_iter - idle_iter:12d}  "
            f"({_ratio(100.0 * busy, used):5.1f} % of used cycles)",
            f"  - sleep iterations: {sleep_iter:12d}  "
            f"({_ratio(100.0 * sleep_iter, tot_iter):5.1f} % of iterations)",
            f"  Sleep time (us):    {sleep_us:12.0f}  "
            f"({_ratio(sleep_us, sleep_iter):3.0f} us/iteration avg.)",
        ]
        if offload:
            lines.append(
                f"  Offload cycles:     {offload:12d}  "
                f"({100.0 * offload / (used + sleep + offload):5.1f} % of used cycles)"
            )
    rx = s[Stat.RECV]
    if rx:
        passes = rx + s[Stat.RECIRC]
        kpps = f"{rx / duration / 1000:.0f} Kpps"
        masked, misses = s[Stat.MASKED_HIT], s[Stat.MISS]
        per_hit = _ratio(s[Stat.MASKED_LOOKUP], masked)
        upcall_extra = ""
        if tot_iter:
            kpps += f", {busy / rx:.0f} cycles/pkt"
            upcall_us = _ratio(s[Stat.CYCLES_UPCALL] * US_PER_CYCLE, misses)
            upcall_extra = f", {upcall_us:.1f} us/upcall"

        def pct(count: int) -> str:
            return f"{100.0 * count / passes:5.1f} %"

        lines += [
            f"  Rx packets:         {rx:12d}  ({kpps})",
            f"  Datapath passes:    {passes:12d}  ({passes / rx:.2f} passes/pkt)",
            f"  - PHWOL hits:       {s[Stat.PHWOL_HIT]:12d}  ({pct(s[Stat.PHWOL_HIT])})",
            f"  - Simple Match hits:{s[Stat.SIMPLE_HIT]:12d}  ({pct(s[Stat.SIMPLE_HIT])})",
            f"  - EMC hits:         {s[Stat.EXACT_HIT]:12d}  ({pct(s[Stat.EXACT_HIT])})",
            f"  - SMC hits:         {s[Stat.SMC_HIT]:12d}  ({pct(s[Stat.SMC_HIT])})",
            f"  - Megaflow hits:    {masked:12d}  "
            f"({pct(masked)}, {per_hit:.2f} subtbl lookups/hit)",
            f"  - Upcalls:          {misses:12d}  ({pct(misses)}{upcall_extra})",
            f"  - Lost upcalls:     {s[Stat.LOST]:12d}  ({pct(s[Stat.LOST])})",
        ]
    else:
        lines.append(f"  Rx packets:         {0:12d}")
    tx, batches = s[Stat.SENT_PKTS], s[Stat.SENT_BATCHES]
    if tx:
        lines += [
            f"  Tx packets:         {tx:12d}  ({tx / duration / 1000:.0f} Kpps)",
            f"  Tx batches:         {batches:12d}  ({_ratio(tx, batches):.2f} pkts/batch)",
        ]
    else:
        # OVS ends this case with a blank line (moved below by the work block).
        lines.append(f"  Tx packets:         {0:12d}")
        if not work_ring:
            lines.append("")
    if work_ring:
        lines += _work_lines(s)
    return "\n".join(lines) + "\n"


def _work_lines(s: list[int]) -> list[str]:
    deferred = s[Stat.WORK_DEFER]
    if not deferred:
        return [f"  Work deferred:      {0:12d}", ""]
    done = s[Stat.WORK_DONE]
    checks = s[Stat.WORK_IN_PROG] + done
    rows = (
        ("  Work deferred:", deferred, ""),
        ("  - Deferred work done:", done, ""),
        ("  - Work completion checks:", checks, f"  ({_ratio(checks, done):.2f} checks/work item)"),
        ("  - Ring full when deferring work:", s[Stat.WORK_R_FULL], ""),
        ("  - Deferred work dropped:", s[Stat.WORK_DROPPED], ""),
    )
    return [f"{label:<{_WORK_LABEL_WIDTH}}{value:12d}{extra}" for label, value, extra in rows]


def format_histograms(perf: PerfReader) -> str:
    """The ``Histograms`` section: 7 histograms side by side, then averages."""
    hists = perf.histograms()
    lines = ["Histograms", "   " + "  ".join(f"{t:<21}" for t in _HIST_TITLES)]
    for i in range(NUM_BINS - 1):
        lines.append("   " + "  ".join(f"{h.walls[i]:<9} {h.bins[i]:<11}" for h in hists))
    last = NUM_BINS - 1
    lines.append("   " + "  ".join(f"{'>':<9} {h.bins[last]:<11}" for h in hists))
    lines.append("-" * 154)
    titles = ("vhost qlen" if t == "max vhost qlen" else t for t in _HIST_TITLES)
    lines.append("   " + "  ".join(f"{t:<21}" for t in titles))
    t = perf.totals
    averages = (
        f"{t.cycles // t.iterations if t.iterations else 0:<21}",
        f"{_ratio(t.pkts, t.iterations):<21.5f}",
        f"{t.busy_cycles // t.pkts if t.pkts else 0:<21}",
        f"{_ratio(t.pkts, t.batches):<21.5f}",
        f"{_ratio(t.max_vhost_qfill, t.iterations):<21.5f}",
        f"{_ratio(t.upcalls, t.iterations):<21.5f}",
        f"{t.upcall_cycles // t.upcalls if t.upcalls else 0:<21}",
    )
    lines.append("   " + "  ".join(averages))
    return "\n".join(lines) + "\n"


def format_ms_history(perf: PerfReader, n_ms: int) -> str:
    """The ``-ms`` table: the last ``n_ms`` completed milliseconds, newest first."""
    if n_ms <= 0:
        return ""
    ring, idx = perf.ms_history
    lines = ["   {:<12}   ".format("ms") + "".join(f"{t:<10}   " for t in _MS_TITLES)]
    lines[0] += "cycles/upcall"
    for i in range(1, min(n_ms, HISTORY_LEN) + 1):
        s = ring[(idx - i) % HISTORY_LEN]
        cols = (
            s.iterations,
            s.cycles // s.iterations if s.iterations else 0,
            s.pkts,
            s.busy_cycles // s.pkts if s.pkts else 0,
            s.pkts // s.batches if s.batches else 0,
            s.max_vhost_qfill // s.iterations if s.iterations else 0,
            s.upcalls,
            s.upcall_cycles // s.upcalls if s.upcalls else 0,
        )
        lines.append(f"   {s.timestamp:<12}   " + "  ".join(f"{c:<11}" for c in cols))
    return "\n".join(lines) + "\n"


def perf_data(
    perf: PerfReader, *, is_pmd: bool, now_wall: float, histograms: bool = False
) -> dict[str, Any]:
    """The figures of :func:`format_perf_show` as a JSON-able dict.

    Keys (always present; ``None`` where the text omits the figure):

    ``thread`` ("pmd" or "main"), ``time`` (``now_wall``), ``duration_s``;
    iteration figures, ``None`` for the main thread: ``iterations``,
    ``us_per_iteration``, ``used_cycles``, ``used_cycles_pct``,
    ``idle_cycles``, ``busy_cycles``, ``idle_iterations``,
    ``busy_iterations``, ``sleep_iterations``, ``sleep_us``,
    ``offload_cycles``; ``rx_packets``, ``rx_kpps``, ``cycles_per_packet``
    (``None`` without iterations), ``recirculations``, ``datapath_passes``,
    ``passes_per_packet``, ``lookups`` (``phwol``, ``simple``, ``emc``,
    ``smc``, ``megaflow``, ``upcall``, ``lost``: packet counts that sum to
    ``datapath_passes``), ``megaflow_lookups_per_hit``, ``upcall_cycles``,
    ``us_per_upcall`` (``None`` without iterations), ``tx_packets``,
    ``tx_kpps``, ``tx_batches``, ``packets_per_batch``; ``work``
    (``deferred``, ``done``, ``in_progress_checks``, ``completion_checks``,
    ``checks_per_item``, ``ring_full``, ``dropped``).  With ``histograms``
    also ``histograms``: ``{title: {"walls": [...31 walls], "counts":
    [...32 counts]}}`` in column order.  Rates are 0 when the duration is 0;
    other ratios are 0 when their denominator is 0.
    """
    s = perf.get_all()
    duration = _duration_s(perf)
    idle, busy = s[Stat.CYCLES_ITER_IDLE], s[Stat.CYCLES_ITER_BUSY]
    used = idle + busy
    tot_iter = perf.pkts_hist.samples()
    sleep, offload = s[Stat.CYCLES_SLEEP], s[Stat.CYCLES_OFFLOAD]
    rx, tx = s[Stat.RECV], s[Stat.SENT_PKTS]
    passes = rx + s[Stat.RECIRC]
    done = s[Stat.WORK_DONE]
    checks = s[Stat.WORK_IN_PROG] + done

    def pmd_only(value: float) -> float | None:
        return value if is_pmd else None

    data: dict[str, Any] = {
        "thread": "pmd" if is_pmd else "main",
        "time": now_wall,
        "duration_s": duration,
        "iterations": pmd_only(tot_iter),
        "us_per_iteration": pmd_only(_ratio((used + sleep + offload) * US_PER_CYCLE, tot_iter)),
        "used_cycles": pmd_only(used),
        "used_cycles_pct": pmd_only(_ratio(100.0 * used / TSC_HZ, duration)),
        "idle_cycles": pmd_only(idle),
        "busy_cycles": pmd_only(busy),
        "idle_iterations": pmd_only(perf.pkts_hist.bins[0]),
        "busy_iterations": pmd_only(tot_iter - perf.pkts_hist.bins[0]),
        "sleep_iterations": pmd_only(s[Stat.SLEEP_ITER]),
        "sleep_us": pmd_only(sleep * US_PER_CYCLE),
        "offload_cycles": pmd_only(offload),
        "rx_packets": rx,
        "rx_kpps": _ratio(rx / 1000, duration),
        "cycles_per_packet": _ratio(busy, rx) if tot_iter else None,
        "recirculations": s[Stat.RECIRC],
        "datapath_passes": passes,
        "passes_per_packet": _ratio(passes, rx),
        "lookups": {
            "phwol": s[Stat.PHWOL_HIT],
            "simple": s[Stat.SIMPLE_HIT],
            "emc": s[Stat.EXACT_HIT],
            "smc": s[Stat.SMC_HIT],
            "megaflow": s[Stat.MASKED_HIT],
            "upcall": s[Stat.MISS],
            "lost": s[Stat.LOST],
        },
        "megaflow_lookups_per_hit": _ratio(s[Stat.MASKED_LOOKUP], s[Stat.MASKED_HIT]),
        "upcall_cycles": s[Stat.CYCLES_UPCALL],
        "us_per_upcall": (
            _ratio(s[Stat.CYCLES_UPCALL] * US_PER_CYCLE, s[Stat.MISS]) if tot_iter else None
        ),
        "tx_packets": tx,
        "tx_kpps": _ratio(tx / 1000, duration),
        "tx_batches": s[Stat.SENT_BATCHES],
        "packets_per_batch": _ratio(tx, s[Stat.SENT_BATCHES]),
        "work": {
            "deferred": s[Stat.WORK_DEFER],
            "done": done,
            "in_progress_checks": s[Stat.WORK_IN_PROG],
            "completion_checks": checks,
            "checks_per_item": _ratio(checks, done),
            "ring_full": s[Stat.WORK_R_FULL],
            "dropped": s[Stat.WORK_DROPPED],
        },
    }
    if histograms:
        data["histograms"] = {
            title: {"walls": list(h.walls[: NUM_BINS - 1]), "counts": list(h.bins)}
            for title, h in zip(_HIST_TITLES, perf.histograms(), strict=True)
        }
    return data
