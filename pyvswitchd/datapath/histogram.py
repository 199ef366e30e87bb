"""The histograms of ``pmd-perf-show``: 32 bins with linear or logarithmic walls.

The walls are computed as OVS computes them, so that the same samples land
in the same bins and the printed walls read the same.
"""

from __future__ import annotations

import math
from bisect import bisect_left

import attrs

#: Bins per histogram; the last one collects everything above the last wall.
NUM_BINS = 32
#: The wall of the last histogram bin (printed as ">").
UINT32_MAX = 2**32 - 1


def linear_walls(lo: int, hi: int) -> tuple[int, ...]:
    """Walls of a histogram with 31 equal steps from ``lo`` to ``hi``."""
    steps = NUM_BINS - 2
    return (*(lo + i * (hi - lo) // steps for i in range(NUM_BINS - 1)), UINT32_MAX)


def log_walls(lo: int, hi: int) -> tuple[int, ...]:
    """Walls of a histogram with logarithmic steps from ``lo`` to ``hi``.

    With ``lo == 0`` the first wall is 0 and the steps start at 1.  Walls
    are truncated to integers and forced to increase by at least one, so
    small ranges start out linear.  The floating-point expression is
    evaluated in the same order as OVS's, which makes the walls identical
    (e.g. 499 rather than 500 for ``exp(log(500))``).
    """
    walls = [0] * NUM_BINS
    if lo > 0:
        start, n, log_lo = 0, NUM_BINS - 1, math.log(lo)
    else:
        start, n, log_lo = 1, NUM_BINS - 2, 0.0
    log_hi = math.log(hi)
    wall = start
    for i in range(n):
        wall = int(max(wall, math.exp(log_lo + i * (log_hi - log_lo) / (n - 1))))
        walls[start + i] = wall
        wall += 1
    walls[NUM_BINS - 2] = max(walls[NUM_BINS - 2], hi)
    walls[NUM_BINS - 1] = UINT32_MAX
    return tuple(walls)


@attrs.define(eq=False)
class Histogram:
    """32 bins; a sample goes into the first bin whose wall is >= it.

    ``bins`` is updated in place only, so the hot path may keep a reference.
    """

    walls: tuple[int, ...]
    bins: list[int] = attrs.field(factory=lambda: [0] * NUM_BINS)
    # The first 31 walls: bisect_left on them yields the bin index directly,
    # 31 for anything beyond the last finite wall.
    search: list[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.search = list(self.walls[: NUM_BINS - 1])

    def add(self, value: int) -> None:
        self.bins[bisect_left(self.search, value)] += 1

    def samples(self) -> int:
        return sum(self.bins)

    def clear(self) -> None:
        self.bins[:] = [0] * NUM_BINS
