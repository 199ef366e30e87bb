"""Prometheus families of the datapath, read from its live state at scrape time.

Scrapes collect on the trio thread between PMD iterations, from the
snapshots of the workers' counter blocks, so every figure here is a
consistent snapshot without locks.  Names follow OVS's vocabulary (the
naming rules are in docs/metrics.md):

* every PMD-keyed family carries :data:`PMD_LABELS` -- ``numa_id``,
  ``core_id`` and ``thread`` ("pmd" or "main", the latter with empty
  ``numa_id``/``core_id``) -- and every port-keyed family
  :data:`PORT_LABELS` (``bridge``, ``port``, ``type``); rx queue families
  carry both, and ``queue_id``, so any two families join on their common
  labels;
* ``_total`` only on counters; time in seconds: the datapath's cycles are
  nanoseconds (its TSC runs at 1 GHz), divided here.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .perf import TSC_HZ, Stat
from .worker_pmd import WorkerPmd

if TYPE_CHECKING:
    from .dp import AnyPmd, Datapath
    from .port import Port

PMD_LABELS = ["numa_id", "core_id", "thread"]
PORT_LABELS = ["bridge", "port", "type"]
RXQ_LABELS = [*PMD_LABELS, *PORT_LABELS, "queue_id"]

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
_SECONDS_HELP = "PMD time in seconds by kind: " + ", ".join(k for k, _ in _CYCLES)
_RXQ_SECONDS_HELP = "Seconds the PMD spent processing packets of an rx queue"
_ADMIN_HELP = "1 if the interface is administratively up (IFF_UP), else 0"
_LINK_HELP = "1 if the interface's link is up (IFF_RUNNING), else 0"
_ERROR_HELP = "1 if the port is out of use (OVS's Interface error column is set), else 0"

# Interface flags by SIOCGIFFLAGS (struct ifreq: name, short flags, padding).
_SIOCGIFFLAGS = 0x8913
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFF_UP = 0x1
_IFF_RUNNING = 0x40

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


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
    seconds = CounterMetricFamily(
        "ovs_pmd_seconds", _SECONDS_HELP, labels=[*PMD_LABELS, "kind"], unit="seconds"
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
            seconds.add_metric([*labels, kind], n[stat] / TSC_HZ)
        for event, stat in _WORK:
            work.add_metric([*labels, event], n[stat])
        if not pmd.is_main:
            iterations.add_metric(labels, pmd.perf.iteration_cnt)
            idle, busy, sleep, offload = pmd.last_interval
            total = idle + busy + sleep + offload
            usage.add_metric(labels, busy / total if total else 0.0)
        flows.add_metric(labels, pmd.flow_count)
    yield from counters.values()
    yield from (lookups, seconds, work, iterations, usage, flows)
    yield from _worker_metrics(pmds)
    yield from _rxq_metrics(pmds)
    yield from _port_metrics(dp)
    yield from _offload_metrics(dp)


def _worker_metrics(pmds: list[AnyPmd]) -> Iterable[Metric]:
    """CPU and memory of the PMD worker processes (``process_*`` covers only the daemon)."""
    cpu = CounterMetricFamily(
        "pyvswitchd_pmd_worker_cpu",
        "CPU time of a PMD's worker process",
        labels=PMD_LABELS,
        unit="seconds",
    )
    rss = GaugeMetricFamily(
        "pyvswitchd_pmd_worker_resident_memory",
        "Resident memory of a PMD's worker process",
        labels=PMD_LABELS,
        unit="bytes",
    )
    for pmd in pmds:
        if isinstance(pmd, WorkerPmd) and pmd.pid is not None:
            usage = _process_usage(pmd.pid)
            if usage is not None:
                cpu.add_metric(_labels(pmd), usage[0])
                rss.add_metric(_labels(pmd), usage[1])
    yield cpu
    yield rss


def _process_usage(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of process ``pid``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the parenthesised command name, which may hold anything.
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime, rss = int(fields[11]), int(fields[12]), int(fields[21])
    return (utime + stime) / _CLOCK_TICKS, rss * _PAGE_SIZE


def _offload_metrics(dp: Datapath) -> Iterable[Metric]:
    flows = GaugeMetricFamily(
        "ovs_offload_flows", "Flows held by each offload provider", labels=["provider"]
    )
    collection = dp.offload.collection
    if collection is not None and dp.offload.enabled:
        for provider in collection.providers:
            flows.add_metric([provider.type], provider.flow_count())
    yield flows


def _port_labels(port: Port) -> list[str]:
    return [port.bridge or "", port.name, port.type]


def _rxq_metrics(pmds: list[AnyPmd]) -> Iterable[Metric]:
    seconds = CounterMetricFamily(
        "ovs_pmd_rxq_busy", _RXQ_SECONDS_HELP, labels=RXQ_LABELS, unit="seconds"
    )
    packets = CounterMetricFamily(
        "ovs_pmd_rxq_packets", "Packets received from an rx queue", labels=RXQ_LABELS
    )
    for pmd in pmds:
        labels = _labels(pmd)
        for rxq in pmd.poll_list:
            values = [*labels, *_port_labels(rxq.port), str(rxq.qid)]
            seconds.add_metric(values, (rxq.cycles_total + rxq.cycles_curr) / TSC_HZ)
            packets.add_metric(values, rxq.packets)
    yield seconds
    yield packets


def _port_metrics(dp: Datapath) -> Iterable[Metric]:
    families = {
        field: CounterMetricFamily(f"ovs_interface_{field}", help_, labels=PORT_LABELS)
        for field, help_ in _PORT_STATS
    }
    admin = GaugeMetricFamily("ovs_interface_admin_state", _ADMIN_HELP, labels=PORT_LABELS)
    link = GaugeMetricFamily("ovs_interface_link_state", _LINK_HELP, labels=PORT_LABELS)
    error = GaugeMetricFamily("ovs_interface_error", _ERROR_HELP, labels=PORT_LABELS)
    with _FlagReader() as flags:
        for port in dp.ports.values():
            values = _port_labels(port)
            stats = dp.port_stats(port)
            for field, family in families.items():
                family.add_metric(values, getattr(stats, field))
            failed = port.error is not None or port.netdev.error is not None
            up, running = (False, False) if failed else flags.read(port)
            admin.add_metric(values, int(up))
            link.add_metric(values, int(running))
            error.add_metric(values, int(failed))
    # Configured ports that could not be opened: no counters, but down and in error.
    for name, type_, _ in dp.dp_ports.unopened():
        values = [dp.dp_ports.wanted[name][0], name, type_]
        admin.add_metric(values, 0)
        link.add_metric(values, 0)
        error.add_metric(values, 1)
    yield from families.values()
    yield from (admin, link, error)


class _FlagReader:
    """Reads kernel interfaces' flags for one scrape, through one socket."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def __enter__(self) -> _FlagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()

    def read(self, port: Port) -> tuple[bool, bool]:
        """(admin up, link up) of the port's interface; software ports are always up."""
        if not port.netdev.ifindex:
            return True, True
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            request = _IFREQ_FLAGS.pack(port.name.encode()[:15], 0)
            flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(self._sock, _SIOCGIFFLAGS, request))[1]
        except OSError:  # the interface went and the link tracker has not said so yet
            return False, False
        return bool(flags & _IFF_UP), bool(flags & _IFF_UP and flags & _IFF_RUNNING)


def describe() -> list[tuple[str, str, str]]:
    """(name, type, help) of every family, for ``--list-metrics``."""
    rows = [(f"ovs_pmd_{n}_total", "counter", h) for n, h, _ in _COUNTERS]
    rows += [
        (
            "ovs_pmd_lookups_total",
            "counter",
            "Datapath passes by result: " + ", ".join(r for r, _ in _LOOKUPS),
        ),
        ("ovs_pmd_seconds_total", "counter", _SECONDS_HELP),
        (
            "ovs_pmd_deferred_work_total",
            "counter",
            "Deferred work ring events: " + ", ".join(e for e, _ in _WORK),
        ),
        ("ovs_pmd_iterations_total", "counter", "PMD loop iterations"),
        ("ovs_pmd_usage_ratio", "gauge", "Busy share of the last 5 s interval (0-1)"),
        ("ovs_datapath_flows", "gauge", "Installed megaflows per thread"),
        ("pyvswitchd_pmd_worker_cpu_seconds_total", "counter", "CPU time of a PMD's worker"),
        (
            "pyvswitchd_pmd_worker_resident_memory_bytes",
            "gauge",
            "Resident memory of a PMD's worker",
        ),
        ("ovs_pmd_rxq_busy_seconds_total", "counter", _RXQ_SECONDS_HELP),
        ("ovs_pmd_rxq_packets_total", "counter", "Packets received per rx queue"),
    ]
    rows += [(f"ovs_interface_{f}_total", "counter", h) for f, h in _PORT_STATS]
    rows += [
        ("ovs_interface_admin_state", "gauge", _ADMIN_HELP),
        ("ovs_interface_link_state", "gauge", _LINK_HELP),
        ("ovs_interface_error", "gauge", _ERROR_HELP),
        ("ovs_offload_flows", "gauge", "Flows held by each offload provider"),
    ]
    return rows
