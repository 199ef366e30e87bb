"""Tests for pyvswitchd.datapath.dp_settings."""

from __future__ import annotations

from pyvswitchd.config import OtherConfig
from pyvswitchd.datapath.dp_settings import DatapathSettings, PmdCounters
from pyvswitchd.datapath.emc import insert_min_for
from pyvswitchd.observe.coverage import Coverage


def test_pmd_counters_keep_the_listing_order_of_coverage_show() -> None:
    coverage = Coverage()
    coverage.define("earlier")
    counters = PmdCounters.define(coverage)
    assert [c.name for c in coverage.counters()] == [
        "earlier",
        "netdev_sent",
        "netdev_received",
        "datapath_drop_rx_invalid_packet",
        "datapath_drop_invalid_port",
        "datapath_drop_netdev_error",
    ]
    assert counters.sent.name == "netdev_sent"
    assert counters.received.name == "netdev_received"
    assert counters.invalid.name == "datapath_drop_rx_invalid_packet"
    assert counters.dropped.name == "datapath_drop_invalid_port"
    assert counters.netdev_error.name == "datapath_drop_netdev_error"


def test_pmd_counters_are_the_registry_counters() -> None:
    coverage = Coverage()
    first, again = PmdCounters.define(coverage), PmdCounters.define(coverage)
    assert first.sent is again.sent is coverage.get("netdev_sent")
    first.dropped.inc()
    assert coverage.get("datapath_drop_invalid_port").total == 1  # type: ignore[union-attr]
    assert len(coverage.counters()) == 5


def test_datapath_settings_defaults() -> None:
    s = DatapathSettings()
    assert s.emc_insert_min == insert_min_for(100)  # emc-insert-inv-prob = 100
    assert s.max_idle_ms == 10_000
    assert (s.tx_flush_interval_us, s.perf_metrics, s.smc_enable) == (0, False, False)
    assert (s.rxq_assign, s.rxq_isolate, s.cpu_mask, s.numa) == ("cycles", True, None, ())
    assert s.sleep is not DatapathSettings().sleep  # each its own


def test_change_lines_word_what_changed_as_ovs_does() -> None:
    settings = DatapathSettings()
    assert settings.change_lines(OtherConfig()) == []
    changed = OtherConfig(tx_flush_interval=50, pmd_perf_metrics=True, smc_enable=True)
    assert settings.change_lines(changed) == [
        "Flushing interval for tx queues set to 50 us",
        "PMD performance metrics collection enabled",
        "SMC cache is enabled",
    ]
    settings.tx_flush_interval_us, settings.perf_metrics, settings.smc_enable = 50, True, True
    assert settings.change_lines(changed) == []
    assert settings.change_lines(OtherConfig()) == [
        "Flushing interval for tx queues set to 0 us",
        "PMD performance metrics collection disabled",
        "SMC cache is disabled",
    ]
