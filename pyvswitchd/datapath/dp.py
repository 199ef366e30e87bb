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

import gc
import os
import time
from collections.abc import Callable

import attrs
import trio

from ..config import BridgeConfig, Config, OtherConfig, PortConfig
from ..netdev.provider import Netdev, NetdevError
from ..netdev.registry import NetdevRegistry
from ..observe.coverage import Coverage
from ..observe.vlog import Vlog
from ..odp.flow_key import IN_PORT
from . import rxq_sched
from .defer import DeferHooks, InlineHooks
from .dp_offload import DatapathOffload
from .dp_ports import DP_NAME, DatapathPorts
from .emc import insert_min_for
from .flow_table import FlowTable
from .normal import NormalBridge
from .perf import PerfLogConfig, PmdPerf
from .pipeline import FlowPipeline
from .pmd import NON_PMD_CORE_ID, Pmd, PmdHooks, PmdLifecycle, TxPort, any_readable
from .port import Port, Rxq
from .revalidator import REVALIDATE_INTERVAL, Revalidator
from .sleep import SleepConfig, parse_sleep_max, sleep_log_lines
from .upcall import Upcall

DP_TYPE = "netdev"
#: Allocations of container objects between two young-generation collections.
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collect garbage less often; call once the daemon is up.

    The packet path allocates a few short-lived tuples per packet (cache
    signatures), which the cyclic collector tracks: at CPython's default
    threshold of 700 it runs a young collection every few batches and an
    older one, which walks every flow and cache entry, every hundred.  Our
    per-packet objects never form cycles, so collecting rarely costs only a
    little memory.  ``gc.freeze`` moves everything built at start-up out of
    the collector's way for good.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


#: How often the main task polls non-PMD ports that cannot wake it, s.
MAIN_POLL_INTERVAL = 0.001
#: How often it runs housekeeping when its ports can wake it (or it has none), s.
MAIN_IDLE_INTERVAL = 0.02


def _wakes(netdev: Netdev) -> bool:
    """Whether ``netdev`` has a ``wait_readable`` that returns (the base one never does)."""
    return type(netdev).wait_readable is not Netdev.wait_readable


@attrs.define
class DatapathSettings:
    """Knobs every PMD reads live (no reload needed)."""

    tx_flush_interval_us: int = 0
    perf_metrics: bool = False
    rxq_assign: str = "cycles"
    rxq_isolate: bool = True
    cpu_mask: int | None = None
    numa: tuple[int, ...] = ()
    sleep: SleepConfig = attrs.field(factory=SleepConfig)
    emc_insert_min: int = insert_min_for(100)
    smc_enable: bool = False
    max_idle_ms: int = 10000
    userspace_tso: bool = False


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
    ) -> None:
        self.log = vlog.module("dpif_netdev")
        self.vlog = vlog
        self.netdevs = netdevs
        self.coverage = coverage
        self.settings = DatapathSettings()
        self.perf_log = PerfLogConfig()
        #: Port number -> port; filled by :attr:`dp_ports`.
        self.ports: dict[int, Port] = {}
        self.pmds: dict[int, Pmd] = {}
        self._hooks_factory = hooks_factory
        self._cov_sent = coverage.define("netdev_sent")
        self._cov_received = coverage.define("netdev_received")
        self._cov_drop_invalid = coverage.define("datapath_drop_rx_invalid_packet")
        self._cov_drop_port = coverage.define("datapath_drop_invalid_port")
        # Packets of a netdev send that raised (a provider bug, not an errno).
        self._cov_drop_netdev_error = coverage.define("datapath_drop_netdev_error")
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
        )
        self._force_reload = False
        self._pmd_serial = 0
        self.upcall = Upcall(self.ports, self.dp_ports.normal, coverage)
        self.pipeline = FlowPipeline(self.upcall.handle, self._cov_drop_invalid)
        self.revalidator = Revalidator(
            lambda: [p.flow_table for p in self.sorted_pmds()],
            lambda: self.normal,
            self.upcall.compile_outputs,
            coverage,
        )
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.sched = rxq_sched.RxqSchedConfig(self.log)
        self.alb = rxq_sched.AutoLoadBalance(self.log)
        #: Clock of the ALB rebalance timer, ms; tests substitute their own.
        self.clock_ms: Callable[[], int] = lambda: time.monotonic_ns() // 1_000_000
        #: PMD measurement interval, ns (OVS: 5 s); tests shorten it.
        self.interval_ns = 5_000_000_000
        self._reconfigure_pending = False
        self._sleep_logged: tuple[int, tuple[tuple[int, int], ...]] | None = None
        self.reconfigurations = 0
        self.main = self._make_pmd(NON_PMD_CORE_ID, 0)

    # -- queries ----------------------------------------------------------------

    @property
    def exists(self) -> bool:
        """OVS has no netdev datapath until a bridge uses it."""
        return bool(self.dp_ports.bridges)

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

    def sorted_pmds(self) -> list[Pmd]:
        """PMDs by core id, then the main thread (OVS's display order)."""
        return [self.pmds[c] for c in sorted(self.pmds)] + [self.main]

    def cores(self) -> dict[int, int]:
        """Cores that exist: core id -> NUMA id (``dummy-numa``, else all CPUs on NUMA 0)."""
        numa = self.settings.numa or (0,) * (os.cpu_count() or 1)
        return dict(enumerate(numa))

    # -- the task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the PMD tasks and poll non-PMD ports until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                next_revalidation = trio.current_time() + REVALIDATE_INTERVAL
                while True:
                    self._main_iteration()
                    if trio.current_time() >= next_revalidation:
                        self.revalidator.max_idle_ms = self.settings.max_idle_ms
                        self.revalidator.run_once()
                        self.main.flow_table.rerank()
                        next_revalidation = trio.current_time() + REVALIDATE_INTERVAL
                    # Waking every millisecond without cause would only take the
                    # CPU from the PMDs (and from the processes whose packets
                    # they forward): sleep until a port has packets, if every
                    # port of the main task can say so (as OVS's main thread
                    # blocks in poll_block()); otherwise poll.
                    rxqs = self.main.poll_list
                    if not rxqs:
                        await trio.sleep(MAIN_IDLE_INTERVAL)
                    elif all(_wakes(rxq.netdev) for rxq in rxqs):
                        with trio.move_on_after(MAIN_IDLE_INTERVAL):
                            await any_readable(rxqs)
                    else:
                        await trio.sleep(MAIN_POLL_INTERVAL)
            finally:
                self._nursery = None

    def _main_iteration(self) -> None:
        main = self.main
        main.now_us = time.perf_counter_ns() // 1000
        if main.poll_list:
            main.poll_rxqs()
        main.flush_output(force=True)
        main.hooks.drain_all(main)
        self._alb_check()

    def _alb_check(self) -> None:
        """Main-task side of auto load balance: maybe request a rebalance."""
        if not self.alb.enabled or self._reconfigure_pending or self._nursery is None:
            return
        if self.alb.poll(
            self.clock_ms(),
            overload_counts=lambda: [p.overloaded for p in self.pmds.values()],
            reconfigure_pending=lambda: self._reconfigure_pending or self._lock.locked(),
            view=self._sched_view,
        ):
            self._reconfigure_pending = True
            self._nursery.start_soon(self._alb_reconfigure)

    def set_measurement_interval(self, ns: int) -> None:
        """Change the PMD measurement interval (OVS: 5 s); tests shorten it."""
        self.interval_ns = ns
        for pmd in self.pmds.values():
            pmd.set_interval(ns)

    async def _alb_reconfigure(self) -> None:
        try:
            await self.reconfigure()
        finally:
            self._reconfigure_pending = False

    def _sched_view(self) -> rxq_sched.SchedView:
        return rxq_sched.SchedView(
            rxqs=self._rxq_infos(),
            pmds=[
                rxq_sched.PmdInfo(
                    core_id=p.core_id,
                    numa_id=p.numa_id,
                    intrvl_cycles=p.intrvl_cycles,
                    isolated=p.isolated,
                )
                for p in self.pmds.values()
            ],
            algorithm=self.settings.rxq_assign,
            isolate=self.settings.rxq_isolate,
        )

    def _on_interval(self, pmd: Pmd) -> None:
        """A PMD closed a 5 s interval: update its ALB overload count."""
        idle, busy, sleep, offload = pmd.last_interval
        pmd.overloaded = self.alb.update_overload(
            pmd.overloaded,
            busy=busy,
            idle=idle,
            sleep=sleep,
            offload=offload,
            isolated=pmd.isolated,
        )

    async def shutdown(self) -> None:
        """Stop every PMD (flushing their output) and close every netdev."""
        async with self._lock:
            for core in list(self.pmds):
                await self._destroy_pmd(core)
            for port in list(self.ports.values()):
                port.netdev.close()
            self.ports.clear()

    # -- configuration ------------------------------------------------------------

    async def apply_config(self, config: Config) -> None:
        """Bring the datapath to ``config`` (start-up, SIGHUP, config/reload)."""
        async with self._lock:
            self._apply_other_config(config.other_config)
            self.dp_ports.apply_bridges(config.bridges)
            # Offload just enabled: every PMD reloads to pick up the work callbacks.
            if self.offload.configure(config.other_config, self.ports.values()):
                self._force_reload = True
            self.pipeline.mark_lookup = self.offload.mark_lookup if self.offload.enabled else None
            await self._reconfigure_locked()

    def _apply_other_config(self, oc: OtherConfig) -> None:
        s = self.settings
        s.tx_flush_interval_us = oc.tx_flush_interval
        s.perf_metrics = oc.pmd_perf_metrics
        s.cpu_mask = oc.pmd_cpu_mask
        s.numa = oc.dummy_numa or ()
        self.sched.configure(oc.pmd_rxq_assign, oc.pmd_rxq_isolate)
        s.rxq_assign = self.sched.algorithm
        s.rxq_isolate = self.sched.isolate
        s.sleep = parse_sleep_max(oc.pmd_sleep_max, oc.pmd_maxsleep)
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
            pmd.flow_table.emc.insert_min = emc_min
            pmd.flow_table.smc_enabled = oc.smc_enable
        self.alb.configure(
            enabled=oc.pmd_auto_lb,
            load_threshold=oc.pmd_auto_lb_load_threshold,
            improvement_threshold=oc.pmd_auto_lb_improvement_threshold,
            rebal_interval=oc.pmd_auto_lb_rebal_interval,
        )

    async def reconfigure(self) -> None:
        async with self._lock:
            await self._reconfigure_locked()

    async def add_port(self, bridge: str, pc: PortConfig) -> Port:
        """``dpctl/add-if``: NetdevError saying why the port could not be added."""
        async with self._lock:
            port = self.dp_ports.add(bridge, pc)
            await self._reconfigure_locked()
            return port

    async def del_port(self, name: str) -> None:
        """``dpctl/del-if``: NetdevError if there is no such port."""
        async with self._lock:
            self.dp_ports.remove(name)
            await self._reconfigure_locked()

    # -- reconfiguration -------------------------------------------------------------

    def _wanted_cores(self) -> dict[int, int]:
        cores = self.cores()
        if not any(p.pmd for p in self.ports.values()):
            return {}
        mask = self.settings.cpu_mask
        if mask is not None:
            return {c: n for c, n in cores.items() if mask >> c & 1}
        first: dict[int, int] = {}
        for core, numa in cores.items():
            first.setdefault(numa, core)
        return {core: numa for numa, core in first.items()}

    async def _reconfigure_locked(self) -> None:
        self.reconfigurations += 1
        changed = await self._adjust_pmds()
        if changed:
            by_numa: dict[int, int] = {}
            for pmd in self.pmds.values():
                by_numa[pmd.numa_id] = by_numa.get(pmd.numa_id, 0) + 1
            for numa, count in sorted(by_numa.items()):
                self.log.info(f"There are {count} pmd threads on numa node {numa}")
        # Ports whose queue layout changes leave every PMD before the netdev changes.
        stale = [p for p in self.ports.values() if p.netdev.reconfigure_required]
        if stale or self.dp_ports.closing:
            stale_nos = {p.port_no for p in stale}
            for pmd in self.pmds.values():
                keep = [
                    r
                    for r in pmd.poll_list
                    if r.port_no not in stale_nos and r.port_no in self.ports
                ]
                tx = {
                    n: t for n, t in pmd.tx_ports.items() if n in self.ports and n not in stale_nos
                }
                await pmd.reload(keep, tx)
            for port in stale:
                port.netdev.reconfigure()
                port.rebuild_rxqs()
        self._update_sleep()
        schedule = self._schedule()
        await self._distribute(schedule)
        self.alb.note_reconfigured()
        closing = self.dp_ports.take_closing()
        if closing:
            self._purge_flows({p.port_no for p in closing})
        for port in closing:
            port.netdev.close()

    async def _adjust_pmds(self) -> bool:
        wanted = self._wanted_cores()
        changed = False
        for core in sorted(set(self.pmds) - set(wanted)):
            await self._destroy_pmd(core)
            changed = True
        for core in sorted(set(wanted) - set(self.pmds)):
            pmd = self._make_pmd(core, wanted[core])
            self.pmds[core] = pmd
            if self._nursery is None:
                raise NetdevError("the datapath is not running (daemon starting or stopping)")
            await self._nursery.start(self._run_pmd, pmd)
            self.log.info(f"PMD thread on numa_id: {pmd.numa_id}, core id: {core:2d} created.")
            changed = True
        return changed

    async def _run_pmd(
        self, pmd: Pmd, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        # Log lines from this task carry OVS's thread name, e.g. "(pmd-c00/id:7)".
        self._pmd_serial += 1
        self.vlog.set_subprogram_name(f"pmd-c{pmd.core_id:02d}/id:{self._pmd_serial}")
        await pmd.run(task_status=task_status)

    async def _destroy_pmd(self, core: int) -> None:
        pmd = self.pmds.pop(core)
        await pmd.request_exit()
        for rxq in pmd.poll_list:
            rxq.core_id = None
        # Its megaflows go with it, as in OVS, so offload providers drop the
        # rules they hold for them.
        pmd.flow_table.flush()
        self.log.info(f"PMD thread on numa_id: {pmd.numa_id}, core id: {core:2d} destroyed.")

    def _make_pmd(self, core: int, numa: int) -> Pmd:
        log = self.vlog.module("dpif_netdev_perf")
        perf = PmdPerf(log_config=self.perf_log, log=log)
        # The main thread completes asynchronous sends inline and runs no
        # offload work (OVS hooks only PMD threads).
        make_hooks: Callable[[Pmd], PmdHooks]
        lifecycle: PmdLifecycle | None = None
        if self._hooks_factory is not None:
            make_hooks = self._hooks_factory
        elif core == NON_PMD_CORE_ID:
            make_hooks = InlineHooks
        else:
            make_hooks = self._defer_hooks
            lifecycle = self.offload
        table = FlowTable(self.settings.emc_insert_min, self.offload.flow_observer(core))
        table.smc_enabled = self.settings.smc_enable
        pmd = Pmd(
            core,
            numa,
            self.settings,
            self.pipeline,
            perf,
            sent_counter=self._cov_sent,
            received_counter=self._cov_received,
            drop_counter=self._cov_drop_port,
            netdev_error_counter=self._cov_drop_netdev_error,
            log=self.log,
            make_hooks=make_hooks,
            lifecycle=lifecycle,
            flow_table=table,
            on_interval=self._on_interval,
        )
        pmd.interval_ns = self.interval_ns
        return pmd

    def _defer_hooks(self, pmd: Pmd) -> PmdHooks:
        """A PMD thread's hooks: its deferred-work ring, then the offload work."""
        return DeferHooks(
            pmd, offload_work=self.offload.pmd_work, offload_idle=self.offload.pmd_idle
        )

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
            self._rxq_infos(), pmds, self.settings.rxq_assign, self.settings.rxq_isolate, self.log
        )

    def _rxq_infos(self) -> list[rxq_sched.RxqInfo]:
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
        for index, (core, pmd) in enumerate(sorted(self.pmds.items())):
            pmd.isolated = core in schedule.isolated
            pmd.static_tx_qid = index
            new_poll = polls[core]
            same_ports = set(pmd.tx_ports) == (port_nos if new_poll else set())
            unchanged = new_poll == pmd.poll_list and same_ports
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
        main.static_tx_qid = len(self.pmds)
        main.tx_ports = self._tx_ports(main.static_tx_qid)

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

    def _purge_flows(self, port_nos: set[int]) -> None:
        """Delete every flow that comes from or goes to one of ``port_nos``."""
        for pmd in self.sorted_pmds():
            table = pmd.flow_table
            for flow in table:
                if flow.key[IN_PORT] in port_nos or any(
                    getattr(a, "port", None) in port_nos for a in flow.actions
                ):
                    table.remove(flow)
