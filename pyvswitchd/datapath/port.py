"""Datapath ports and their rx queues.

A :class:`Port` binds a datapath port number to a netdev and remembers the
per-port knobs the scheduler needs (rxq affinity).  Each of its
:class:`Rxq` objects carries the cycle bookkeeping OVS keeps per rx queue:
processing cycles of the current 5 s interval and a ring of the last 12
intervals, which both pmd-rxq-show and the cycles/group schedulers read.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..netdev.provider import Netdev

#: Stored measurement intervals per rxq (OVS's PMD_INTERVAL_MAX): 12 x 5 s.
PMD_INTERVAL_MAX = 12


class Rxq:
    """One rx queue of a port, as polled by exactly one PMD (or the main task)."""

    __slots__ = (
        "core_id",
        "cycles_base",
        "cycles_curr",
        "cycles_total",
        "intervals",
        "intrvl_idx",
        "netdev",
        "packets",
        "packets_base",
        "pinned_core",
        "port",
        "port_no",
        "qid",
    )

    def __init__(self, port: Port, qid: int) -> None:
        self.port = port
        self.netdev = port.netdev
        self.port_no = port.port_no
        self.qid = qid
        self.pinned_core: int | None = None
        self.core_id: int | None = None  # the PMD that polls it, None: unassigned
        self.cycles_curr = 0  # processing cycles of the current interval
        self.cycles_total = 0  # of all closed intervals (metrics add cycles_curr)
        self.packets = 0  # received, for metrics
        self.intervals = [0] * PMD_INTERVAL_MAX
        self.intrvl_idx = 0
        # A worker process counts from zero after each reload: what earlier
        # poll lists (or a dead worker) counted for this queue is kept here.
        self.packets_base = 0
        self.cycles_base = 0

    def store_interval(self) -> None:
        """Close the current interval: push its cycles into the ring."""
        self.intervals[self.intrvl_idx % PMD_INTERVAL_MAX] = self.cycles_curr
        self.cycles_total += self.cycles_curr
        self.intrvl_idx += 1
        self.cycles_curr = 0

    def clear_history(self) -> None:
        """What a PMD reload does to every rxq it polls (cumulative totals stay)."""
        self.cycles_total += self.cycles_curr
        self.cycles_curr = 0
        self.intervals = [0] * PMD_INTERVAL_MAX
        self.intrvl_idx = 0

    @property
    def history_total(self) -> int:
        """Sum of all stored intervals (the scheduler's HIST)."""
        return sum(self.intervals)

    def __repr__(self) -> str:
        return f"Rxq({self.port.name}/{self.qid})"


class Port:
    """A datapath port: number, netdev, bridge membership and rx queues."""

    def __init__(
        self,
        port_no: int,
        netdev: Netdev,
        bridge: str | None,
        other_config: Mapping[str, str] | None = None,
    ) -> None:
        self.port_no = port_no
        self.netdev = netdev
        self.name = netdev.name
        self.type = netdev.type
        self.bridge = bridge
        self.other_config = dict(other_config or {})
        self.affinity: dict[int, int] = {}
        self.rxqs: list[Rxq] = []
        self.error: str | None = None
        #: Bumped whenever PMD workers must reopen their side of the netdev
        #: (its queues or options changed).
        self.generation = 0
        #: Where PMD worker processes publish their counts for this port.
        self.stats_slot = 0
        #: The options the netdev was last configured with.
        self.options: dict[str, str] = {}
        self.rebuild_rxqs()

    @property
    def pmd(self) -> bool:
        return self.netdev.pmd

    def rebuild_rxqs(self) -> None:
        """(Re)create the rxq objects after the netdev's queue count changed."""
        self.rxqs = [Rxq(self, q) for q in range(self.netdev.n_rxq)]
        self.generation += 1
        self.apply_affinity()

    def apply_affinity(self) -> None:
        for rxq in self.rxqs:
            rxq.pinned_core = self.affinity.get(rxq.qid)

    def __repr__(self) -> str:
        return f"Port({self.port_no}, {self.name!r}, {self.type!r})"
