"""pyappctl top against the real daemon with the traffic source running."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pyappctl.top import TopError, parse_args, thread_rates

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
pmd-sleep-max = "200"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = { flows = 4, pps = 5000, dst_mac = "02:00:00:00:00:fe" }
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
"""


def test_top_shows_rates_from_deltas(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG)
    r = subprocess.run(
        [sys.executable, "-m", "pyappctl", "-t", d.ctl_path, "top", "-i", "1", "-n", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    frames = r.stdout.split("pyvswitchd PMDs, rates over the last")
    assert len(frames) == 3
    row = re.search(r"\npmd c0\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", frames[2])
    assert row is not None, frames[2]
    usage, rx_kpps, tx_kpps = map(float, row.groups())
    assert 3.0 < rx_kpps < 7.0  # the source sends 5 kpps
    assert 2 * rx_kpps * 0.7 < tx_kpps  # flooded to p0 and br0
    assert 0 < usage < 100
    assert "busiest rx queues" in frames[2]
    # Nothing was cleared: pmd-perf-show still counts from the start.
    assert (
        int(re.search(r"Rx packets:\s+(\d+)", d.appctl("dpif-netdev/pmd-perf-show").stdout)[1])
        > 5000
    )  # type: ignore[index]


def test_top_argument_errors() -> None:
    assert parse_args(["-i", "0.5", "-n", "3", "-q", "4"]) == (0.5, 3, 4)
    for bad in (["-x"], ["-i"], ["-i", "abc"], ["-n", "-1"], ["-i", "0"]):
        with pytest.raises(TopError):
            parse_args(bad)


def test_rates_survive_a_stats_clear() -> None:
    old = {
        "busy_cycles": 5000,
        "rx_packets": 100,
        "tx_packets": 100,
        "offload_cycles": 0,
        "sleep_us": 0,
        "lookups": {"emc": 90},
        "work": {"deferred": 0},
    }
    new = {
        "busy_cycles": 1000,
        "rx_packets": 10,
        "tx_packets": 10,
        "offload_cycles": 0,
        "sleep_us": 0,
        "lookups": {"emc": 9},
        "work": {"deferred": 0},
    }
    rates = thread_rates(new, old, 1.0)
    assert rates["rx_kpps"] == pytest.approx(0.01) and rates["emc_per_s"] == 9
