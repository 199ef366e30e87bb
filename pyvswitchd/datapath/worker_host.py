"""The datapath's side of its PMD worker processes.

:class:`WorkerHost` is what every :class:`~.worker_pmd.WorkerPmd` of the
datapath talks to: it answers upcalls from the bridges, exports ports to
the workers that poll them, writes their log records under their thread
names, writes the frames they transmit to capture files, and turns the
counters they publish into the daemon's figures:

* a port's statistics are the daemon's own netdev counts (the main
  thread's traffic) plus every worker's slot for the port, plus what
  workers that have since ended had counted (:meth:`WorkerHost.port_stats`);
* workers' coverage counters are folded into the daemon's registry as
  deltas (:meth:`WorkerHost.fold_coverage`), so totals and rates include
  them and never go backwards, not even across a worker's restart.

Each port gets a statistics slot for its lifetime, the same in every
worker's block; a freed slot is cleared in every block before reuse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..netdev.dummy import DummyNetdev
from ..netdev.faults import FaultCounts, FaultSpec
from ..netdev.provider import NetdevStats
from ..observe.vlog import Level
from ..offload.faults import OffloadFaultSpec
from . import stats_block as sb
from . import worker_messages as msg
from .worker_pmd import WorkerGone, WorkerPmd

if TYPE_CHECKING:
    from .dp import Datapath
    from .port import Port


class WorkerHost:
    """Serves the datapath's PMD workers (see the module text)."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        self._log = dp.log
        self._free_slots = list(range(sb.MAX_PORT_SLOTS - 1, -1, -1))
        #: Port slot -> what workers that ended had counted for it.
        self._retired: dict[int, list[int]] = {}
        #: (worker serial, coverage slot) -> total already folded in.
        self._folded: dict[tuple[int, int], int] = {}
        self.workers: dict[int, WorkerPmd] = {}
        self._offload_fault: OffloadFaultSpec | None = None

    # -- port slots -------------------------------------------------------------

    def allocate_slot(self) -> int:
        if not self._free_slots:
            raise RuntimeError(f"more than {sb.MAX_PORT_SLOTS} ports")
        return self._free_slots.pop()

    def free_slot(self, slot: int) -> None:
        """The port is gone from every worker: its slot starts from zero for the next one."""
        for pmd in self.workers.values():
            pmd.block.clear_port(slot)
        self._retired.pop(slot, None)
        self._free_slots.append(slot)

    def port_stats(self, port: Port) -> NetdevStats:
        """The port's counters summed over the daemon and every worker, past and present."""
        own = port.netdev.stats
        total = NetdevStats(**{f: getattr(own, f) for f in sb.PORT_FIELDS})
        slot = port.stats_slot
        retired = self._retired.get(slot)
        if retired is not None:
            sb.add_port_stats(total, retired)
        for pmd in self.workers.values():
            sb.add_port_stats(total, pmd.view.port(slot))
        return total

    # -- workers come and go ------------------------------------------------------

    def add(self, pmd: WorkerPmd) -> None:
        self.workers[pmd.serial] = pmd

    def retire(self, pmd: WorkerPmd) -> None:
        """A worker ended for good: keep what it counted, release its block."""
        self.fold_coverage()
        for port in self._dp.ports.values():
            values = pmd.block.port(port.stats_slot)
            if any(values):
                kept = self._retired.setdefault(port.stats_slot, [0] * sb.PORT_WORDS)
                kept[:] = [a + b for a, b in zip(kept, values, strict=True)]
        for key in [k for k in self._folded if k[0] == pmd.serial]:
            del self._folded[key]
        del self.workers[pmd.serial]
        pmd.close()

    def fold_coverage(self) -> None:
        """Add what workers counted since the last fold to the daemon's counters."""
        coverage = self._dp.coverage
        for pmd in self.workers.values():
            names = pmd.coverage_names
            totals = pmd.block.coverage_totals(len(names))
            for slot, (name, total) in enumerate(zip(names, totals, strict=True)):
                key = (pmd.serial, slot)
                delta = total - self._folded.get(key, 0)
                if delta > 0:
                    coverage.define(name).add(delta)
                    self._folded[key] = total

    # -- the WorkerHost protocol (called by WorkerPmd) ---------------------------------

    def upcall(self, keys: Sequence[tuple[int, ...]]) -> Sequence[Any]:
        return self._dp.upcall.answer(keys)

    def worker_knobs(self, pmd: WorkerPmd) -> msg.Knobs:
        s = self._dp.settings
        return msg.Knobs(
            tx_flush_interval_us=s.tx_flush_interval_us,
            perf_metrics=s.perf_metrics,
            emc_insert_min=s.emc_insert_min,
            smc_enable=s.smc_enable,
            max_sleep_us=pmd.max_sleep_us,
            interval_ns=self._dp.interval_ns,
            max_idle_ms=s.max_idle_ms,
            perf_log=self._dp.perf_log,
            clock=self._dp.clock.state,
        )

    def worker_log_levels(self) -> dict[str, tuple[int, bool]]:
        return self._dp.vlog.effective_levels()

    def worker_offload(self) -> msg.OffloadSetup | None:
        setup = self._dp.offload.worker_setup()
        if setup is None or self._offload_fault is None:
            return setup
        return attrs.evolve(setup, fault=self._offload_fault)

    def export_port(
        self, pmd: WorkerPmd, port: Port, qids: Sequence[int]
    ) -> tuple[msg.PortSpec, list[int]]:
        state, fds = port.netdev.export_to_worker(qids)
        spec = msg.PortSpec(
            port.port_no,
            port.name,
            port.type,
            port.stats_slot,
            (port.generation, tuple(qids)),
            state,
            len(fds),
        )
        return spec, fds

    def worker_captured(self, port_no: int, frames: Sequence[bytes]) -> None:
        port = self._dp.ports.get(port_no)
        if port is not None and isinstance(port.netdev, DummyNetdev):
            port.netdev.capture_sent(list(frames))

    def worker_log(self, pmd: WorkerPmd, record: msg.LogRecord) -> None:
        try:
            level = Level(record.level)
        except ValueError:
            level = Level.ERR
        self._dp.vlog.emit_from(pmd.thread_name, record.module, level, record.text)

    def worker_coverage_names(self, pmd: WorkerPmd, names: Sequence[str]) -> None:
        for name in names:
            self._dp.coverage.define(name)

    def worker_died(self, pmd: WorkerPmd, why: str) -> None:
        self.fold_coverage()
        self._log.err(
            f"PMD thread on numa_id: {pmd.numa_id}, core id: {pmd.core_id:2d} ({pmd.thread_name}, "
            f"pid {pmd.pid}) {why}; restarting it with the same rx queues"
        )

    def port(self, port_no: int) -> Port | None:
        return self._dp.ports.get(port_no)

    # -- what the daemon hands its workers ---------------------------------------------

    def refresh(self) -> None:
        """Take fresh snapshots of every worker's counter block."""
        for pmd in self.workers.values():
            pmd.refresh()

    async def push_knobs(self) -> None:
        """Hand every worker the knobs it reads live (no reload needed)."""
        for pmd in list(self.workers.values()):
            await pmd.send_knobs(self.worker_knobs(pmd))

    def push_knobs_soon(self) -> None:
        nursery = self._dp.nursery
        if nursery is not None and self.workers:
            nursery.start_soon(self.push_knobs)

    def push_log_levels(self) -> None:
        """``vlog/set`` and friends changed levels: the workers log alike at once."""
        nursery = self._dp.nursery
        if nursery is None or not self.workers:
            return
        levels = self._dp.vlog.effective_levels()
        for pmd in self.workers.values():
            nursery.start_soon(pmd.send_log_levels, levels)

    async def forward_rx(self, port: Port, qid: int, frames: list[bytes]) -> bool:
        """``netdev-dummy/receive`` on a queue a worker polls: that worker queues them."""
        dp = self._dp
        # Under the lock: a reconfiguration in progress may be moving the queue.
        async with dp.lock:
            if not 0 <= qid < len(port.rxqs):
                return False
            core = port.rxqs[qid].core_id
            pmd = dp.pmds.get(core) if core is not None else None
            if not isinstance(pmd, WorkerPmd):
                return False
            try:
                await pmd.request(msg.Inject(port.port_no, qid, tuple(frames)))
            except WorkerGone:
                return False
            return True

    # -- fault injection (tests only): the workers' sides fail alike --------------------

    async def _ask_all(self, body: object, port_no: int | None = None) -> list[Any]:
        answers = []
        for pmd in list(self.workers.values()):
            if port_no is not None and port_no not in pmd.tx_ports:
                continue
            with contextlib.suppress(WorkerGone):
                answers.append(await pmd.request(body))
        return answers

    async def set_netdev_fault(self, name: str, spec: FaultSpec) -> None:
        port = self._dp.port_by_name(name)
        if port is not None:
            await self._ask_all(msg.SetNetdevFault(port.port_no, spec), port.port_no)

    async def netdev_fault_counts(self, name: str) -> FaultCounts:
        port = self._dp.port_by_name(name)
        if port is None:
            return (0, 0, 0, 0)
        total = [0, 0, 0, 0]
        for counts in await self._ask_all(msg.NetdevFaultCounts(port.port_no), port.port_no):
            total = [a + b for a, b in zip(total, counts, strict=True)]
        return (total[0], total[1], total[2], total[3])

    async def set_offload_fault(self, spec: OffloadFaultSpec) -> None:
        self._offload_fault = spec
        await self._ask_all(msg.SetOffloadFault(spec))

    async def offload_fault_runs(self) -> int:
        return sum(await self._ask_all(msg.OffloadFaultRuns()))

    async def gather_offload_counters(self) -> None:
        """Before ``dpif/offload/show``: what the workers' provider copies counted."""
        reports = await self._ask_all(msg.OffloadCounters())
        self._dp.offload.add_worker_counters(reports)
