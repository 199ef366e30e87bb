"""What ``pmd-perf-show`` reads of a PMD, wherever the PMD runs.

A PMD in the daemon's process is read live (its :class:`~.perf.PmdPerf`);
a PMD worker process sends a :class:`PerfSnapshot` on request -- a copy of
its counters, histograms and (when asked) histories.  Both answer the
:class:`PerfReader` protocol the formatting code uses.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from .histogram import Histogram
from .perf import IterStats, PmdPerf, Stat, monotonic_ms


class PerfReader(Protocol):
    """What ``pmd-perf-show`` reads: a live :class:`PmdPerf` or a worker's snapshot."""

    @property
    def iteration_cnt(self) -> int: ...
    @property
    def start_ms(self) -> int: ...
    @property
    def totals(self) -> IterStats: ...
    @property
    def pkts_hist(self) -> Histogram: ...
    @property
    def iteration_history(self) -> tuple[list[IterStats], int]: ...
    @property
    def ms_history(self) -> tuple[list[IterStats], int]: ...
    def get_all(self) -> list[int]: ...
    def histograms(self) -> tuple[Histogram, ...]: ...
    def wall_ms(self) -> int: ...


@attrs.define(eq=False)
class PerfSnapshot:
    """A copy of a :class:`PmdPerf`'s figures, as a PMD worker sends it to the daemon.

    It answers the reading methods ``pmd-perf-show`` uses, so the
    formatting code does not care whether the PMD runs in this process.
    """

    n: list[int]
    zero: list[int]
    iteration_cnt: int
    start_ms: int
    totals: IterStats
    hists: tuple[Histogram, ...]
    it_ring: list[IterStats]
    it_idx: int
    ms_ring: list[IterStats]
    ms_idx: int

    @classmethod
    def of(cls, perf: PmdPerf, *, histories: bool) -> PerfSnapshot:
        it_ring, it_idx = perf.iteration_history
        ms_ring, ms_idx = perf.ms_history
        empty: list[IterStats] = []
        return cls(
            list(perf.n),
            list(perf.zero),
            perf.iteration_cnt,
            perf.start_ms,
            attrs.evolve(perf.totals),
            tuple(Histogram(h.walls, list(h.bins)) for h in perf.histograms()),
            [attrs.evolve(s) for s in it_ring] if histories else empty,
            it_idx,
            [attrs.evolve(s) for s in ms_ring] if histories else empty,
            ms_idx,
        )

    def get(self, stat: Stat) -> int:
        return max(self.n[stat] - self.zero[stat], 0)

    def get_all(self) -> list[int]:
        return [max(n - z, 0) for n, z in zip(self.n, self.zero, strict=True)]

    def histograms(self) -> tuple[Histogram, ...]:
        return self.hists

    @property
    def pkts_hist(self) -> Histogram:
        return self.hists[1]

    @property
    def iteration_history(self) -> tuple[list[IterStats], int]:
        return self.it_ring, self.it_idx

    @property
    def ms_history(self) -> tuple[list[IterStats], int]:
        return self.ms_ring, self.ms_idx

    @staticmethod
    def wall_ms() -> int:
        # CLOCK_MONOTONIC is the system's, so the worker's start_ms compares.
        return monotonic_ms()
