"""The datapath (``ovs-netdev``): ports, PMD tasks, reconfiguration.

One :class:`Datapath` owns every port (with its datapath port number), one
PMD task per core of ``pmd-cpu-mask``, and the main-thread pseudo PMD that
polls the ports whose type is not PMD-polled.  All changes — ports added or
removed, ``pmd-cpu-mask``, ``n_rxq``, affinity, a rebalance — go through
:meth:`Datapath.reconfigure`, which recomputes the PMD set and the rxq
assignment and hands every affected PMD its new poll list through the
reload handshake (see :mod:`.pmd`).  Reconfigurations are serialised by a
lock; a PMD never sees a half-built poll list.  Opening, configuring and
removing ports (and the bridges' learning switches) is :mod:`.dp_ports`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import trio

from ..config import BridgeConfig, Config, OtherConfig, PortConfig
from ..netdev.provider import Netdev, NetdevError, NetdevStats
from ..netdev.registry import NetdevRegistry
from ..observe.coverage import Coverage
from ..observe.vlog import Vlog
from . import rxq_sched
from .alb_trigger import AlbTrigger
from .auto_lb import AutoLoadBalance
from .clock import Clock
from .cpu_discovery import CpuDiscovery, machine_cores, pmd_cores
from .dp_offload import DatapathOffload
from .dp_ports import DP_NAME, DP_TYPE, DatapathPorts
from .dp_settings import DatapathSettings, PmdCounters
from .emc import insert_min_for
from .flow_log import FlowLog
from .normal import NormalBridge
from .ofport import OfportNumbers
from .perf import PerfLogConfig
from .pipeline import FlowPipeline
from .pmd import NON_PMD_CORE_ID, Pmd, PmdHooks, TxPort, any_readable
from .pmd_threads import PmdThreads
from .port import Port, Rxq
from .revalidator import REVALIDATE_INTERVAL, Revalidator
from .sleep import sleep_config, sleep_log_lines
from .thread_flows import LocalFlows, ThreadFlows, WorkerFlows
from .upcall import ExecutorCache, Upcall
from .worker_host import WorkerHost
from .worker_pmd import WorkerPmd
from .worker_spawner import WorkerSpawner

#: A PMD in this process (a trio task) or in a worker process.
AnyPmd = Pmd | WorkerPmd

#: How often the main task polls non-PMD ports that cannot wake it, s.
MAIN_POLL_INTERVAL = 0.001
#: How often it runs housekeeping when its ports can wake it (or it has none), s.
MAIN_IDLE_INTERVAL = 0.02


def _wakes(netdev: Netdev) -> bool:
    """Whether ``netdev`` has a ``wait_readable`` that returns (the base one never does)."""
    return type(netdev).wait_readable is not Netdev.wait_readable


class Datapath:
    """The one userspace datapath of the daemon.

    Its parts: the ports and bridges (:attr:`dp_ports`), the offload state
    (:attr:`offload`), the upcall (:attr:`upcall`), the pipeline every PMD
    runs (:attr:`pipeline`) and the revalidator.
    """

    def __init__(
        self,
        vlog: Vlog,
        coverage: Coverage,
        netdevs: NetdevRegistry,
        *,
        hooks_factory: Callable[[Pmd], PmdHooks] | None = None,
        pmd_processes: bool = False,
        fault_injection: bool = False,
    ) -> None:
        self.log = vlog.module("dpif_netdev")
        self.vlog = vlog
        self.netdevs = netdevs
        self.coverage = coverage
        #: The monotonic clock ``time/stop`` and ``time/warp`` act on.
        self.clock = Clock()
        self.settings = DatapathSettings()
        self.perf_log = PerfLogConfig()
        #: Port number -> port; filled by :attr:`dp_ports`.
        self.ports: dict[int, Port] = {}
        #: The ports' OpenFlow-style numbers (dpif/show, OVSDB's ofport).
        self.ofports = OfportNumbers()
        self.pmds: dict[int, AnyPmd] = {}
        #: Whether PMDs run in worker processes (the daemon) or as trio tasks
        #: of this process (unit tests that drive PMDs on an injected clock).
        self.pmd_processes = pmd_processes
        self.fault_injection = fault_injection
        self.workers = WorkerHost(self)
        self.spawner = WorkerSpawner(self.log)
        coverage.add_refresher(self.workers.fold_coverage)
        vlog.add_listener(self.workers.push_log_levels)
        self.pmd_counters = PmdCounters.define(coverage)
        port_added = coverage.define("dpif_port_add")
        port_removed = coverage.define("dpif_port_del")
        self.offload = DatapathOffload(DP_NAME, vlog, coverage, self.ports.get)
        self.dp_ports = DatapathPorts(
            self.ports,
            log=self.log,
            vlog=vlog,
            netdevs=netdevs,
            coverage=coverage,
            settings=self.settings,
            offload=self.offload,
            port_added=port_added,
            port_removed=port_removed,
            allocate_slot=self.workers.allocate_slot,
            forward_rx=self.workers.forward_rx if pmd_processes else None,
            clock=lambda: self.clock.seconds(),
        )
        self._force_reload = False
        self.cpus = CpuDiscovery(vlog)
        self.flow_log = FlowLog(vlog, lambda: (self.name, self.full_name))
        self.upcall = Upcall(self.ports, self.dp_ports.normal, coverage, self.flow_log)
        self.executors = ExecutorCache()
        self.pipeline = FlowPipeline(
            self.upcall.answer, self.executors.make_flow, self.pmd_counters.invalid
        )
        self.revalidator = Revalidator(
            self.flow_owners,
            lambda: self.normal,
            coverage,
            count_flows=self.flow_count,
            log_dump=self._log_flow_dump,
        )
        self.lock = trio.Lock()
        self.nursery: trio.Nursery | None = None
        self._main_wake = trio.Event()
        self.sched = rxq_sched.RxqSchedConfig(self.log)
        self.alb = AutoLoadBalance(self.log)
        self.alb_trigger = AlbTrigger(self)
        #: Clock of the ALB rebalance timer, ms; tests substitute their own.
        self.clock_ms: Callable[[], int] = self.clock.ms
        #: PMD measurement interval, ns (OVS: 5 s); tests shorten it.
        self.interval_ns = 5_000_000_000
        self._sleep_logged: tuple[int, tuple[tuple[int, int], ...]] | None = None
        self.reconfigurations = 0
        self.threads = PmdThreads(self, processes=pmd_processes, hooks_factory=hooks_factory)
        self.main = self.threads.make_local(NON_PMD_CORE_ID, 0)

    # -- queries ----------------------------------------------------------------

    @property
    def exists(self) -> bool:
        """OVS has no netdev datapath until a bridge uses it or ``dpctl/add-dp`` makes it."""
        return bool(self.dp_ports.bridges) or self.dp_ports.standalone

    @property
    def full_name(self) -> str:
        """``TYPE@NAME``, as dpctl names the datapath (``netdev@ovs-netdev``, ``dummy@dp0``)."""
        return f"{self.dp_ports.dp_type}@{self.dp_ports.dp_name}"

    @property
    def name(self) -> str:
        """The datapath's name (``ovs-netdev``, or the one ``dpctl/add-dp`` gave)."""
        return self.dp_ports.dp_name

    @property
    def bridges(self) -> dict[str, BridgeConfig]:
        """The configured bridges, by name."""
        return self.dp_ports.bridges

    @property
    def normal(self) -> dict[str, NormalBridge]:
        """Each bridge's NORMAL learning switch, by bridge name."""
        return self.dp_ports.normal

    def port_by_name(self, name: str) -> Port | None:
        return self.dp_ports.by_name(name)

    def port_names(self) -> dict[int, str]:
        return {no: port.name for no, port in self.ports.items()}

    def port_numbers(self) -> dict[str, int]:
        return {port.name: no for no, port in self.ports.items()}

    def netdev_by_name(self, name: str) -> Netdev | None:
        port = self.port_by_name(name)
        return port.netdev if port else None

    def thread_flows(self) -> list[tuple[AnyPmd, ThreadFlows]]:
        """Every thread's flow table (PMDs by core, then the main thread)."""
        expired = self.revalidator.expired_counter
        return [
            (
                pmd,
                WorkerFlows(pmd)
                if isinstance(pmd, WorkerPmd)
                else LocalFlows(pmd.flow_table, self.executors, expired),
            )
            for pmd in self.sorted_pmds()
        ]

    def flow_owners(self) -> list[ThreadFlows]:
        """Every thread's flow table, as the revalidator reaches it."""
        return [flows for _, flows in self.thread_flows()]

    async def _log_flow_dump(self) -> None:
        """The revalidator's dump as the ``dpif`` module logs it (only at DBG)."""
        if self.flow_log.dumping():
            await self.flow_log.log_dump(
                [flows.dump() for _, flows in self.thread_flows()],
                terse=self.upcall.use_ufid,
                now=self.clock.seconds(),
            )

    def flow_count(self) -> int:
        """Flows over every thread, as the PMD workers last published them."""
        return sum(p.flow_count for p in self.sorted_pmds())

    def sorted_pmds(self) -> list[AnyPmd]:
        """PMDs by core id, then the main thread (OVS's display order)."""
        return [self.pmds[c] for c in sorted(self.pmds)] + [self.main]

    def cores(self) -> dict[int, int]:
        """Cores that exist: core id -> NUMA id (``dummy-numa``, else all CPUs on NUMA 0)."""
        return machine_cores(self.settings.numa)

    # -- the task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the PMD tasks and poll non-PMD ports until cancelled."""
        async with trio.open_nursery() as nursery:
            if self.pmd_processes:
                await nursery.start(self.spawner.run)
            self.nursery = nursery
            nursery.start_soon(self._revalidate_periodically)
            task_status.started()
            try:
                while True:
                    # A new event before the iteration: frames that arrive
                    # while it runs wake the wait below at once.
                    self._main_wake = trio.Event()
                    self._main_iteration()
                    # Waking every millisecond without cause would only take the
                    # CPU from the PMDs (and from the processes whose packets
                    # they forward): sleep until a port has packets, if every
                    # port of the main task can say so (as OVS's main thread
                    # blocks in poll_block()); otherwise poll.
                    rxqs = self.main.poll_list
                    if not rxqs or all(rxq.netdev.notifies_rx for rxq in rxqs):
                        with trio.move_on_after(MAIN_IDLE_INTERVAL):
                            await self._main_wake.wait()
                    elif all(_wakes(rxq.netdev) for rxq in rxqs):
                        with trio.move_on_after(MAIN_IDLE_INTERVAL):
                            await any_readable(rxqs)
                    else:
                        await trio.sleep(MAIN_POLL_INTERVAL)
            finally:
                self.nursery = None

    async def _revalidate_periodically(self) -> None:
        # Its own task: a pass asks every PMD worker, and the main task must
        # keep polling meanwhile.
        while True:
            await self.revalidator.next_pass(REVALIDATE_INTERVAL)
            self.revalidator.max_idle_ms = self.settings.max_idle_ms
            await self.revalidator.run_once()
            self.main.flow_table.rerank()

    async def clock_changed(self) -> None:
        """``time/stop`` or a ``time/warp`` step: the PMD workers and the main
        task (auto load balance) see the new time now."""
        for pmd in self.pmds.values():
            if isinstance(pmd, Pmd):
                pmd.clock_moved()
        await self.workers.push_knobs()
        self._wake_main()

    def _wake_main(self) -> None:
        """A non-PMD port received frames: the main task polls now."""
        self._main_wake.set()

    def _main_iteration(self) -> None:
        main = self.main
        main.now_us = time.perf_counter_ns() // 1000
        if main.poll_list:
            main.poll_rxqs()
        main.flush_output(force=True)
        main.hooks.drain_all(main)
        self.alb_trigger.check()

    def set_measurement_interval(self, ns: int) -> None:
        """Change the PMD measurement interval (OVS: 5 s); tests shorten it."""
        self.interval_ns = ns
        for pmd in self.pmds.values():
            if isinstance(pmd, Pmd):
                pmd.set_interval(ns)
        self.workers.push_knobs_soon()

    async def shutdown(self) -> None:
        """Stop every PMD (flushing their output) and close every netdev."""
        async with self.lock:
            for core in list(self.pmds):
                await self._destroy_pmd(core)
            for port in list(self.ports.values()):
                port.netdev.close()
            self.ports.clear()
            # Devices that appear from now on are not ours to open.
            self.dp_ports.wanted = {}

    # -- configuration ------------------------------------------------------------

    async def apply_config(self, config: Config) -> None:
        """Bring the datapath to ``config`` (start-up, SIGHUP, config/reload)."""
        async with self.lock:
            self._apply_other_config(config.other_config)
            self.dp_ports.apply_bridges(config.bridges)
            # Interfaces that went or came back unnoticed (no link tracker).
            self.dp_ports.track_links()
            # Offload just enabled: every PMD reloads to pick up the work callbacks.
            if self.offload.configure(config.other_config, self.ports.values()):
                self._force_reload = True
            self.pipeline.mark_lookup = self.offload.mark_lookup if self.offload.enabled else None
            await self._reconfigure_locked()

    def _apply_other_config(self, oc: OtherConfig) -> None:
        s = self.settings
        for line in s.change_lines(oc):
            self.log.info(line)
        s.tx_flush_interval_us = oc.tx_flush_interval
        s.perf_metrics = oc.pmd_perf_metrics
        s.cpu_mask = oc.pmd_cpu_mask
        s.numa = oc.dummy_numa or ()
        self.cpus.note(self.cores())
        self.sched.configure(oc.pmd_rxq_assign, oc.pmd_rxq_isolate)
        s.rxq_assign = self.sched.algorithm
        s.rxq_isolate = self.sched.isolate
        s.sleep = sleep_config(oc.pmd_sleep_max, oc.pmd_maxsleep)
        s.max_idle_ms = oc.max_idle
        s.userspace_tso = oc.userspace_tso_enable
        emc_min = insert_min_for(oc.emc_insert_inv_prob)
        if emc_min != s.emc_insert_min:
            inv = oc.emc_insert_inv_prob
            self.log.info(
                f"EMC insertion probability changed to 1/{inv} (~{100 / inv:.2f}%)"
                if inv
                else "EMC insertion probability changed to zero"
            )
        s.emc_insert_min = emc_min
        s.smc_enable = oc.smc_enable
        for pmd in self.sorted_pmds():
            if isinstance(pmd, Pmd):
                pmd.flow_table.emc.insert_min = emc_min
                pmd.flow_table.smc_enabled = oc.smc_enable
        self.alb.configure(
            enabled=oc.pmd_auto_lb,
            load_threshold=oc.pmd_auto_lb_load_threshold,
            improvement_threshold=oc.pmd_auto_lb_improvement_threshold,
            rebal_interval=oc.pmd_auto_lb_rebal_interval,
        )

    async def reconfigure(self) -> None:
        async with self.lock:
            await self._reconfigure_locked()

    async def add_dp(self, name: str, dp_type: str = DP_TYPE) -> None:
        """``dpctl/add-dp``: make the datapath ``name``; NetdevError if one exists."""
        async with self.lock:
            if self.exists:
                raise NetdevError(f"datapath {self.name} exists")
            self.dp_ports.create(name, dp_type)
            await self._reconfigure_locked()

    async def del_dp(self) -> None:
        """``dpctl/del-dp``: remove the datapath ``dpctl/add-dp`` made, with its PMDs."""
        async with self.lock:
            self.dp_ports.delete()
            await self._reconfigure_locked()

    async def add_port(self, bridge: str | None, pc: PortConfig) -> Port:
        """``dpctl/add-if``: NetdevError saying why the port could not be added."""
        async with self.lock:
            port = self.dp_ports.add(bridge, pc)
            await self._reconfigure_locked()
            return port

    async def track_links(self, names: Iterable[str] | None = None) -> None:
        """Kernel interfaces ``names`` (None: every one of a port) appeared or went."""
        async with self.lock:
            if self.dp_ports.track_links(names):
                await self._reconfigure_locked()

    async def del_port(self, name: str) -> None:
        """``dpctl/del-if``: NetdevError if there is no such port."""
        async with self.lock:
            self.dp_ports.remove(name)
            await self._reconfigure_locked()

    # -- reconfiguration -------------------------------------------------------------

    def _wanted_cores(self) -> dict[int, int]:
        if not any(p.pmd for p in self.ports.values()):
            return {}
        return pmd_cores(self.settings.cpu_mask, self.cores())

    async def _reconfigure_locked(self) -> None:
        self.reconfigurations += 1
        changed = await self._adjust_pmds()
        if changed:
            by_numa: dict[int, int] = {}
            for pmd in self.pmds.values():
                by_numa[pmd.numa_id] = by_numa.get(pmd.numa_id, 0) + 1
            for numa, count in sorted(by_numa.items()):
                self.log.info(f"There are {count} pmd threads on numa node {numa}")
        # Ports whose queue layout changes leave every PMD's poll list before
        # the netdev changes; removed ports leave the tx ports too.  A port
        # that stays keeps its tx port: packets the PMDs send it meanwhile
        # go out, none is dropped for a port that only changes its queues.
        stale = [p for p in self.ports.values() if p.netdev.reconfigure_required]
        if stale or self.dp_ports.closing:
            stale_nos = {p.port_no for p in stale}
            for pmd in self.pmds.values():
                keep = [
                    r
                    for r in pmd.poll_list
                    if r.port_no not in stale_nos and r.port_no in self.ports
                ]
                if isinstance(pmd, WorkerPmd):
                    await pmd.reload(keep, _present(pmd.tx_ports, self.ports))
                else:
                    await pmd.reload(keep, _present(pmd.tx_ports, self.ports))
            for port in stale:
                port.netdev.reconfigure()
                port.rebuild_rxqs()
        self._update_sleep()
        await self._push_knobs()
        schedule = self._schedule()
        if self.dp_ports.retiring:
            # Ports opened anew: every PMD's transmit side must take the new netdev.
            self._force_reload = True
        await self._distribute(schedule)
        self.alb.note_reconfigured()
        closing = self.dp_ports.take_closing()
        if closing:
            await self._purge_flows({p.port_no for p in closing})
        for port in closing:
            port.netdev.close()
            self.workers.free_slot(port.stats_slot)
        for netdev in self.dp_ports.take_retired():
            netdev.close()

    async def _adjust_pmds(self) -> bool:
        wanted = self._wanted_cores()
        changed = False
        for core in sorted(set(self.pmds) - set(wanted)):
            await self._destroy_pmd(core)
            changed = True
        for core in sorted(set(wanted) - set(self.pmds)):
            if self.nursery is None:
                raise NetdevError("the datapath is not running (daemon starting or stopping)")
            self.pmds[core] = await self.threads.start(self.nursery, core, wanted[core])
            self.log.info(f"PMD thread on numa_id: {wanted[core]}, core id: {core:2d} created.")
            changed = True
        return changed

    async def _destroy_pmd(self, core: int) -> None:
        pmd = self.pmds.pop(core)
        await self.threads.stop(pmd)
        for rxq in pmd.poll_list:
            rxq.core_id = None
        self.alb_trigger.forget(pmd)
        self.log.info(f"PMD thread on numa_id: {pmd.numa_id}, core id: {core:2d} destroyed.")

    def _update_sleep(self) -> None:
        cfg = self.settings.sleep
        values = []
        for pmd in self.pmds.values():
            pmd.max_sleep_us = cfg.for_core(pmd.core_id)
            values.append((pmd.numa_id, pmd.core_id, pmd.max_sleep_us))
        key = (cfg.default_us, tuple(sorted((c, v) for _, c, v in values)))
        if key != self._sleep_logged:
            self._sleep_logged = key
            for line in sleep_log_lines(cfg, values):
                self.log.info(line)

    def _schedule(self) -> rxq_sched.Schedule:
        pmds = [rxq_sched.PmdInfo(core_id=p.core_id, numa_id=p.numa_id) for p in self.pmds.values()]
        return rxq_sched.schedule(
            self.rxq_infos(), pmds, self.settings.rxq_assign, self.settings.rxq_isolate, self.log
        )

    def rxq_infos(self) -> list[rxq_sched.RxqInfo]:
        """The PMD-polled rx queues as the scheduler sees them (with their history)."""
        return [
            rxq_sched.RxqInfo(
                port_name=port.name,
                port_no=port.port_no,
                qid=rxq.qid,
                port_numa=port.netdev.numa_id,
                pinned_core=rxq.pinned_core,
                history=list(rxq.intervals),
                current_core=rxq.core_id,
            )
            for port in sorted(self.ports.values(), key=lambda p: p.port_no)
            if port.pmd
            for rxq in port.rxqs
        ]

    async def _distribute(self, schedule: rxq_sched.Schedule) -> None:
        """Give each PMD its poll list and tx ports; reload only those that change."""
        polls: dict[int, list[Rxq]] = {core: [] for core in self.pmds}
        for port in sorted(self.ports.values(), key=lambda p: p.port_no):
            if not port.pmd:
                continue
            for rxq in port.rxqs:
                core = schedule.assignment.get((port.name, rxq.qid))
                rxq.core_id = core if core in polls else None
                if rxq.core_id is not None:
                    polls[rxq.core_id].append(rxq)
        self._update_bridge_ports()
        port_nos = set(self.ports)
        await self._release_moving_rxqs(polls)
        for index, (core, pmd) in enumerate(sorted(self.pmds.items())):
            pmd.isolated = core in schedule.isolated
            pmd.static_tx_qid = index
            new_poll = polls[core]
            same_ports = set(pmd.tx_ports) == (port_nos if new_poll else set())
            unchanged = new_poll == pmd.poll_list and same_ports
            if isinstance(pmd, WorkerPmd):
                unchanged = unchanged and not pmd.stale(self.ports)
                if unchanged and not self._force_reload:
                    continue
                await pmd.reload(new_poll, self._tx_qids(index) if new_poll else {})
                continue
            if unchanged and not self._force_reload and not pmd.reload_requested:
                continue
            tx = self._tx_ports(pmd.static_tx_qid) if new_poll else {}
            await pmd.reload(new_poll, tx)
        self._force_reload = False
        # The main task is not mid-iteration while we run: update it in place.
        main = self.main
        main.flush_output(force=True)
        main.poll_list = [
            r
            for p in sorted(self.ports.values(), key=lambda p: p.port_no)
            if not p.pmd
            for r in p.rxqs
        ]
        for rxq in main.poll_list:
            rxq.netdev.rx_listener = self._wake_main
        main.static_tx_qid = len(self.pmds)
        main.tx_ports = self._tx_ports(main.static_tx_qid)

    async def _release_moving_rxqs(self, polls: Mapping[int, list[Rxq]]) -> None:
        """PMD workers first give up the rx queues they lose, before any worker takes one.

        A queue is one kernel socket and ring, which two processes must not
        read at once; the reader letting go also tells the next one where it
        stopped (see netdev/afpacket_worker.py).
        """
        for core, pmd in sorted(self.pmds.items()):
            if not isinstance(pmd, WorkerPmd):
                continue
            staying = {id(r) for r in polls.get(core, ())}
            kept = [r for r in pmd.poll_list if id(r) in staying]
            if len(kept) < len(pmd.poll_list):
                tx = {no: q for no, q in pmd.tx_ports.items() if no in self.ports} if kept else {}
                await pmd.reload(kept, tx)

    def _tx_qids(self, static_qid: int) -> dict[int, int]:
        return {no: static_qid % max(port.netdev.n_txq, 1) for no, port in self.ports.items()}

    def _tx_ports(self, static_qid: int) -> dict[int, TxPort]:
        return {
            no: TxPort(port, static_qid % max(port.netdev.n_txq, 1))
            for no, port in self.ports.items()
        }

    def _update_bridge_ports(self) -> None:
        members: dict[str, list[int]] = {name: [] for name in self.normal}
        for port in self.ports.values():
            if port.bridge in members:
                members[port.bridge].append(port.port_no)
        for name, nos in members.items():
            self.normal[name].set_ports(nos)

    async def _purge_flows(self, port_nos: set[int]) -> None:
        """Delete every flow that comes from or goes to one of ``port_nos``."""
        gone = frozenset(port_nos)
        for flows in self.flow_owners():
            await flows.flush(gone)

    # -- PMD worker processes ------------------------------------------------------

    async def _push_knobs(self) -> None:
        await self.workers.push_knobs()

    def knobs_changed(self) -> None:
        """A knob PMDs read live changed outside a reconfiguration: tell the workers."""
        self.workers.push_knobs_soon()

    def refresh_workers(self) -> None:
        """Take fresh snapshots of the PMD workers' counter blocks."""
        self.workers.refresh()

    def port_stats(self, port: Port) -> NetdevStats:
        """A port's counters over every process that uses it."""
        return self.workers.port_stats(port)


_T = TypeVar("_T")


def _present(tx: dict[int, _T], ports: Mapping[int, Port]) -> dict[int, _T]:
    """The tx ports of ``tx`` whose port is still in the datapath."""
    return {n: t for n, t in tx.items() if n in ports}
