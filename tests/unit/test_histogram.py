"""The histogram walls and bins of pmd-perf-show."""

from __future__ import annotations

from pyvswitchd.datapath.histogram import linear_walls, log_walls


def test_wall_functions_spot_values() -> None:
    assert log_walls(500, 24_000_000)[:4] == (499, 716, 1025, 1469)
    assert log_walls(0, 1000)[10:16] == (10, 11, 13, 17, 22, 28)
    assert linear_walls(100, 30_000)[:3] == (100, 1096, 2093)
    assert linear_walls(0, 32)[13:17] == (13, 14, 16, 17)
    assert log_walls(1000, 1_000_000)[0] == 999
    assert log_walls(1000, 1_000_000)[30] == 1_000_000
