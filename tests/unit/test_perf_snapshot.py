"""Tests for pyvswitchd.datapath.perf_snapshot: a worker's perf figures, in the daemon."""

from __future__ import annotations

import pickle

import pytest

from pyvswitchd.datapath import perf_snapshot
from pyvswitchd.datapath.perf import HISTORY_LEN, PmdPerf, Stat
from pyvswitchd.datapath.perf_format import format_perf_show
from pyvswitchd.datapath.perf_snapshot import PerfSnapshot

PMD0 = "pmd thread numa_id 0 core_id 0:"
START_MS = 5000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def ms(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One millisecond clock for the live perf and for the snapshot's wall_ms()."""
    clock = Clock(START_MS)
    monkeypatch.setattr(perf_snapshot, "monotonic_ms", clock)
    return clock


def busy_perf(ms: Clock) -> PmdPerf:
    tsc = Clock(1_000_000)
    perf = PmdPerf(full_metrics=True, wall_ms=ms, tsc=tsc)
    perf.clear(now_ms=START_MS)
    for i in range(3000):
        perf.start_iteration(tsc.now)
        rx = i % 33
        if rx:
            perf.record_batch(rx)
        if i % 7 == 0:
            perf.record_upcall(2000 + i)
        tsc.now += 1000 + 40 * rx
        perf.end_iteration(tsc.now, rx, rx // 2, sleep_cycles=(i % 5) * 10, full_metrics=True)
        if i % 100 == 99:
            ms.now += 1
    n = perf.n
    n[Stat.RECV] = 48_000
    n[Stat.EXACT_HIT] = 40_000
    n[Stat.MASKED_HIT] = 7_000
    n[Stat.MASKED_LOOKUP] = 9_000
    n[Stat.MISS] = 1_000
    n[Stat.LOST] = 3
    n[Stat.SENT_PKTS] = 24_000
    n[Stat.SENT_BATCHES] = 1_500
    ms.now += 250
    return perf


def show(perf: PmdPerf | PerfSnapshot, *, it_hist: int = 20, ms_hist: int = 10) -> str:
    return format_perf_show(
        perf,
        PMD0,
        is_pmd=True,
        now_wall=1_700_000_000.25,
        histograms=True,
        it_hist=it_hist,
        ms_hist=ms_hist,
        full_metrics=True,
    )


def test_snapshot_shows_what_the_live_perf_shows(ms: Clock) -> None:
    perf = busy_perf(ms)
    snap = PerfSnapshot.of(perf, histories=True)
    text = show(perf)
    assert "Histograms" in text and "Rx packets:" in text
    assert "   iter " in text and "   ms " in text
    assert show(snap) == text


def test_snapshot_pickles(ms: Clock) -> None:
    perf = busy_perf(ms)
    snap = pickle.loads(pickle.dumps(PerfSnapshot.of(perf, histories=True)))
    assert show(snap) == show(perf)
    assert snap.get_all() == perf.get_all()
    assert snap.get(Stat.RECV) == perf.get(Stat.RECV)


def test_snapshot_is_a_copy(ms: Clock) -> None:
    perf = busy_perf(ms)
    snap = PerfSnapshot.of(perf, histories=True)
    before = show(snap)
    tsc = perf.tsc
    for _ in range(50):
        perf.start_iteration(tsc())
        perf.end_iteration(tsc() + 5000, 32, 32, full_metrics=True)
    perf.n[Stat.RECV] += 1
    assert show(snap) == before != show(perf)


def test_snapshot_without_histories(ms: Clock) -> None:
    perf = busy_perf(ms)
    snap = PerfSnapshot.of(perf, histories=False)
    assert snap.it_ring == [] and snap.ms_ring == []
    assert len(perf.iteration_history[0]) == HISTORY_LEN
    text = show(perf, it_hist=0, ms_hist=0)
    assert show(snap, it_hist=0, ms_hist=0) == text
    assert "   iter " not in text


def test_snapshot_after_a_clear(ms: Clock) -> None:
    perf = busy_perf(ms)
    perf.clear(now_ms=ms.now)
    snap = PerfSnapshot.of(perf, histories=True)
    assert snap.get_all() == [0] * len(snap.n)
    assert snap.start_ms == ms.now
    assert show(snap) == show(perf)
