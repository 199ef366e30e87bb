"""Prometheus families of the datapath, read from its live state at scrape time.

Scrapes run on the trio thread between PMD iterations, so every figure here
is a consistent snapshot without locks.  Names follow OVS's vocabulary
(the naming rules are in docs/metrics.md): PMD series carry ``numa_id``,
``core_id`` and ``thread`` ("pmd" or "main", the latter with empty
``numa_id``/``core_id``); ``_total`` only on counters; cycles are
nanoseconds (the datapath's TSC runs at 1 GHz).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .perf import Stat

if TYPE_CHECKING:
    from .dp import AnyPmd, Datapath

PMD_LABELS = ["numa_id", "core_id", "thread"]

#: (family suffix, help, Stat) of the plain per-PMD counters.
_COUNTERS = (
    ("rx_packets", "Packets received from rx queues", Stat.RECV),
    ("recirculations", "Packets re-entering the pipeline by recirculation", Stat.RECIRC),
    ("tx_packets", "Packets handed to netdevs for transmit", Stat.SENT_PKTS),
    ("tx_batches", "Transmit batches (one per port flush)", Stat.SENT_BATCHES),
    ("megaflow_subtable_lookups", "Subtables searched for megaflow hits", Stat.MASKED_LOOKUP),
    ("sleep_iterations", "Iterations in which the PMD slept", Stat.SLEEP_ITER),
)
_LOOKUPS = (
    ("phwol", Stat.PHWOL_HIT),
    ("simple", Stat.SIMPLE_HIT),
    ("emc", Stat.EXACT_HIT),
    ("smc", Stat.SMC_HIT),
    ("megaflow", Stat.MASKED_HIT),
    ("upcall", Stat.MISS),
    ("lost", Stat.LOST),
)
_CYCLES = (
    ("busy", Stat.CYCLES_ITER_BUSY),
    ("idle", Stat.CYCLES_ITER_IDLE),
    ("sleep", Stat.CYCLES_SLEEP),
    ("offload", Stat.CYCLES_OFFLOAD),
    ("upcall", Stat.CYCLES_UPCALL),
)
_WORK = (
    ("deferred", Stat.WORK_DEFER),
    ("in_progress", Stat.WORK_IN_PROG),
    ("ring_full", Stat.WORK_R_FULL),
    ("done", Stat.WORK_DONE),
    ("dropped", Stat.WORK_DROPPED),
)
_PORT_STATS = (
    ("rx_packets", "Packets received"),
    ("rx_bytes", "Bytes received"),
    ("rx_dropped", "Received packets dropped"),
    ("rx_errors", "Receive errors"),
    ("tx_packets", "Packets transmitted"),
    ("tx_bytes", "Bytes transmitted"),
    ("tx_dropped", "Packets dropped on transmit"),
    ("tx_errors", "Transmit errors"),
)


def _labels(pmd: AnyPmd) -> list[str]:
    if pmd.is_main:
        return ["", "", "main"]
    return [str(pmd.numa_id), str(pmd.core_id), "pmd"]


def datapath_metrics(dp: Datapath) -> Iterable[Metric]:
    """Every datapath family (see ``pyvswitchd --list-metrics``)."""
    pmds = dp.sorted_pmds() if dp.exists else []
    dp.refresh_workers()
    counters = {
        name: CounterMetricFamily(f"ovs_pmd_{name}", help_, labels=PMD_LABELS)
        for name, help_, _ in _COUNTERS
    }
    lookups = CounterMetricFamily(
        "ovs_pmd_lookups",
        "Datapath passes by how they were classified (pmd-perf-show's hit/miss lines)",
        labels=[*PMD_LABELS, "result"],
    )
    cycles = CounterMetricFamily(
        "ovs_pmd_cycles", "PMD cycles (ns) by kind", labels=[*PMD_LABELS, "kind"]
    )
    work = CounterMetricFamily(
        "ovs_pmd_deferred_work", "Deferred work ring events", labels=[*PMD_LABELS, "event"]
    )
    iterations = CounterMetricFamily("ovs_pmd_iterations", "PMD loop iterations", labels=PMD_LABELS)
    usage = GaugeMetricFamily(
        "ovs_pmd_usage_ratio",
        "Busy share of the PMD's last 5 s interval (0-1)",
        labels=PMD_LABELS,
    )
    flows = GaugeMetricFamily(
        "ovs_datapath_flows", "Installed megaflows per thread", labels=PMD_LABELS
    )
    for pmd in pmds:
        labels = _labels(pmd)
        n = pmd.perf.get_all()
        for name, _, stat in _COUNTERS:
            counters[name].add_metric(labels, n[stat])
        for result, stat in _LOOKUPS:
            lookups.add_metric([*labels, result], n[stat])
        for kind, stat in _CYCLES:
            cycles.add_metric([*labels, kind], n[stat])
        for event, stat in _WORK:
            work.add_metric([*labels, event], n[stat])
        if not pmd.is_main:
            iterations.add_metric(labels, pmd.perf.iteration_cnt)
            idle, busy, sleep, offload = pmd.last_interval
            total = idle + busy + sleep + offload
            usage.add_metric(labels, busy / total if total else 0.0)
        flows.add_metric(labels, pmd.flow_count)
    yield from counters.values()
    yield from (lookups, cycles, work, iterations, usage, flows)
    yield from _rxq_metrics(pmds)
    yield from _port_metrics(dp)
    yield from _offload_metrics(dp)


def _offload_metrics(dp: Datapath) -> Iterable[Metric]:
    flows = GaugeMetricFamily(
        "ovs_offload_flows", "Flows held by each offload provider", labels=["provider"]
    )
    collection = dp.offload.collection
    if collection is not None and dp.offload.enabled:
        for provider in collection.providers:
            flows.add_metric([provider.type], provider.flow_count())
    yield flows


def _rxq_metrics(pmds: list[AnyPmd]) -> Iterable[Metric]:
    labels = ["port", "queue_id", "core_id"]
    cycles = CounterMetricFamily(
        "ovs_pmd_rxq_cycles", "Processing cycles (ns) spent on an rx queue", labels=labels
    )
    packets = CounterMetricFamily(
        "ovs_pmd_rxq_packets", "Packets received from an rx queue", labels=labels
    )
    for pmd in pmds:
        core = "" if pmd.is_main else str(pmd.core_id)
        for rxq in pmd.poll_list:
            values = [rxq.port.name, str(rxq.qid), core]
            cycles.add_metric(values, rxq.cycles_total + rxq.cycles_curr)
            packets.add_metric(values, rxq.packets)
    yield cycles
    yield packets


def _port_metrics(dp: Datapath) -> Iterable[Metric]:
    labels = ["bridge", "port", "type"]
    families = {
        field: CounterMetricFamily(f"ovs_interface_{field}", help_, labels=labels)
        for field, help_ in _PORT_STATS
    }
    for port in dp.ports.values():
        values = [port.bridge or "", port.name, port.type]
        stats = dp.port_stats(port)
        for field, family in families.items():
            family.add_metric(values, getattr(stats, field))
    yield from families.values()


def describe() -> list[tuple[str, str, str]]:
    """(name, type, help) of every family, for ``--list-metrics``."""
    rows = [(f"ovs_pmd_{n}_total", "counter", h) for n, h, _ in _COUNTERS]
    rows += [
        (
            "ovs_pmd_lookups_total",
            "counter",
            "Datapath passes by result: " + ", ".join(r for r, _ in _LOOKUPS),
        ),
        (
            "ovs_pmd_cycles_total",
            "counter",
            "PMD cycles (ns) by kind: " + ", ".join(k for k, _ in _CYCLES),
        ),
        (
            "ovs_pmd_deferred_work_total",
            "counter",
            "Deferred work ring events: " + ", ".join(e for e, _ in _WORK),
        ),
        ("ovs_pmd_iterations_total", "counter", "PMD loop iterations"),
        ("ovs_pmd_usage_ratio", "gauge", "Busy share of the last 5 s interval (0-1)"),
        ("ovs_datapath_flows", "gauge", "Installed megaflows per thread"),
        ("ovs_pmd_rxq_cycles_total", "counter", "Processing cycles (ns) per rx queue"),
        ("ovs_pmd_rxq_packets_total", "counter", "Packets received per rx queue"),
    ]
    rows += [(f"ovs_interface_{f}_total", "counter", h) for f, h in _PORT_STATS]
    rows.append(("ovs_offload_flows", "gauge", "Flows held by each offload provider"))
    return rows
