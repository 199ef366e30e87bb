"""Starting and ending the datapath's PMDs, as worker processes or trio tasks.

The daemon runs each PMD in a worker process of its own
(:class:`~.worker_pmd.WorkerPmd`); unit tests that drive PMDs on an
injected clock run them as trio tasks of their own process
(:class:`~.pmd.Pmd`), and the main thread's pseudo PMD is always one.
:class:`PmdThreads` makes either kind with what it needs from the datapath
and ends it the way it must end: a worker's flows and offload state end
with its process, while an in-process PMD's megaflows are flushed so that
the offload providers drop the rules they hold for them, as in OVS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .defer import DeferHooks, InlineHooks
from .flow_table import FlowTable
from .perf import PmdPerf
from .pmd import NON_PMD_CORE_ID, Pmd, PmdHooks, PmdLifecycle
from .worker_pmd import WorkerPmd

if TYPE_CHECKING:
    from .dp import AnyPmd, Datapath


class PmdThreads:
    """The datapath's PMD factory (``processes``: worker processes, else trio tasks)."""

    def __init__(
        self,
        dp: Datapath,
        *,
        processes: bool,
        hooks_factory: Callable[[Pmd], PmdHooks] | None = None,
    ) -> None:
        self._dp = dp
        self.processes = processes
        self._hooks_factory = hooks_factory
        #: PMDs ever started: the N of OVS's thread names, ``pmd-c00/id:N``.
        self.serial = 0

    async def start(self, nursery: trio.Nursery, core: int, numa: int) -> AnyPmd:
        """A new PMD on ``core``, running once this returns."""
        dp = self._dp
        self.serial += 1
        if self.processes:
            worker = WorkerPmd(
                core,
                numa,
                self.serial,
                dp.workers,
                dp.log,
                dp.spawner,
                fault_injection=dp.fault_injection,
            )
            worker.max_sleep_us = dp.settings.sleep.for_core(core)
            dp.workers.add(worker)
            await nursery.start(worker.supervise)
            return worker
        pmd = self.make_local(core, numa)
        await nursery.start(self._run_local, pmd, self.serial)
        return pmd

    async def stop(self, pmd: AnyPmd) -> None:
        """End ``pmd`` after it flushed its output; returns once it is gone."""
        await pmd.request_exit()
        if isinstance(pmd, WorkerPmd):
            # Its flows and offload state ended with the process.
            self._dp.workers.retire(pmd)
        else:
            # Its megaflows go with it, as in OVS, so offload providers drop
            # the rules they hold for them.
            pmd.flow_table.flush()

    async def _run_local(
        self,
        pmd: Pmd,
        serial: int,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # Log lines from this task carry OVS's thread name, e.g. "(pmd-c00/id:7)".
        self._dp.vlog.set_subprogram_name(f"pmd-c{pmd.core_id:02d}/id:{serial}")
        await pmd.run(task_status=task_status)

    def make_local(self, core: int, numa: int) -> Pmd:
        """An in-process PMD (the main thread's with ``NON_PMD_CORE_ID``)."""
        dp = self._dp
        perf = PmdPerf(log_config=dp.perf_log, log=dp.vlog.module("dpif_netdev_perf"))
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
            lifecycle = dp.offload
        table = FlowTable(
            dp.settings.emc_insert_min, dp.offload.flow_observer(core), clock=dp.clock
        )
        table.smc_enabled = dp.settings.smc_enable
        counters = dp.pmd_counters
        pmd = Pmd(
            core,
            numa,
            dp.settings,
            dp.pipeline,
            perf,
            sent_counter=counters.sent,
            received_counter=counters.received,
            drop_counter=counters.dropped,
            netdev_error_counter=counters.netdev_error,
            log=dp.log,
            make_hooks=make_hooks,
            lifecycle=lifecycle,
            flow_table=table,
            on_interval=dp.alb_trigger.on_interval,
            clock=dp.clock,
        )
        pmd.interval_ns = dp.interval_ns
        return pmd

    def _defer_hooks(self, pmd: Pmd) -> PmdHooks:
        """A PMD thread's hooks: its deferred-work ring, then the offload work."""
        offload = self._dp.offload
        return DeferHooks(pmd, offload_work=offload.pmd_work, offload_idle=offload.pmd_idle)
