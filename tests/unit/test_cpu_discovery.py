"""Tests for pyvswitchd.datapath.cpu_discovery: OVS's "Discovered ..." lines."""

from __future__ import annotations

import io

from pyvswitchd.datapath.cpu_discovery import CpuDiscovery, discovery_lines
from pyvswitchd.observe.vlog import Vlog


def test_lines_per_node_then_totals() -> None:
    # --dummy-numa 0,0,0,1,1,8,8 (tests/pmd.at 'PMD - pmd sleep')
    cores = dict(enumerate((0, 0, 0, 1, 1, 8, 8)))
    assert discovery_lines(cores) == [
        "Discovered 3 CPU cores on NUMA node 0",
        "Discovered 2 CPU cores on NUMA node 1",
        "Discovered 2 CPU cores on NUMA node 8",
        "Discovered 3 NUMA nodes and 7 CPU cores",
    ]


def test_logged_once_then_again_only_when_the_cores_change() -> None:
    out = io.StringIO()
    vlog = Vlog("test", syslog_method="null", console=out)
    vlog.set_pattern(None, "%c|%p|%m")
    cpus = CpuDiscovery(vlog)
    cpus.note({0: 1, 1: 1})
    cpus.note({0: 1, 1: 1})
    assert out.getvalue() == (
        "ovs_numa|INFO|Discovered 2 CPU cores on NUMA node 1\n"
        "ovs_numa|INFO|Discovered 1 NUMA nodes and 2 CPU cores\n"
    )
    cpus.note({0: 1, 1: 0})
    assert out.getvalue().endswith("ovs_numa|INFO|Discovered 2 NUMA nodes and 2 CPU cores\n")
