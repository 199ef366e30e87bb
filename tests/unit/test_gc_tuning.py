"""Tests for pyvswitchd.datapath.gc_tuning."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pyvswitchd.datapath.gc_tuning import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    yield
    gc.set_threshold(*threshold)
    if not frozen:
        gc.unfreeze()


def test_tune_gc_raises_the_young_threshold_and_freezes(restore_gc: None) -> None:
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    assert gc.get_freeze_count() > 0
    assert GC_GEN0_THRESHOLD > 700  # CPython's default, which it exists to raise
