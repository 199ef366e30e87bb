"""The main task's side of PMD auto load balance: when to rebalance.

Each PMD closes a measurement interval (5 s) with its idle, busy, sleep
and offload cycles; :meth:`AlbTrigger.on_interval` turns those into the
PMD's overload count.  On every main-task iteration :meth:`AlbTrigger.check`
notices the intervals PMD worker processes closed (they publish them; the
daemon does not hear of them otherwise), and once the rebalance interval has
passed asks :class:`.auto_lb.AutoLoadBalance` whether a dry run of the
scheduler would improve the variance enough.  If so it starts one
reconfiguration, and no other until that one is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import rxq_sched
from .auto_lb import SchedView
from .worker_pmd import WorkerPmd

if TYPE_CHECKING:
    from .dp import AnyPmd, Datapath


class AlbTrigger:
    """Decides, from the main task, when auto load balance reconfigures ``dp``."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        #: Worker PMD serial -> the last interval sequence number seen of it.
        self._seen: dict[int, int] = {}
        #: A rebalance was asked for and has not finished.
        self.pending = False

    def check(self) -> None:
        """Fold in worker PMDs' new intervals; maybe start a rebalance."""
        dp = self._dp
        for pmd in dp.pmds.values():
            if isinstance(pmd, WorkerPmd):
                pmd.refresh()
                if self._seen.get(pmd.serial) != pmd.interval_seq:
                    self._seen[pmd.serial] = pmd.interval_seq
                    self.on_interval(pmd)
        if not dp.alb.enabled or self.pending or dp.nursery is None:
            return
        if dp.alb.poll(
            dp.clock_ms(),
            overload_counts=lambda: [p.overloaded for p in dp.pmds.values()],
            reconfigure_pending=lambda: self.pending or dp.lock.locked(),
            view=self._view,
        ):
            self.pending = True
            dp.nursery.start_soon(self._rebalance)

    def on_interval(self, pmd: AnyPmd) -> None:
        """``pmd`` closed a measurement interval: update its overload count."""
        idle, busy, sleep, offload = pmd.last_interval
        pmd.overloaded = self._dp.alb.update_overload(
            pmd.overloaded,
            busy=busy,
            idle=idle,
            sleep=sleep,
            offload=offload,
            isolated=pmd.isolated,
        )

    def forget(self, pmd: AnyPmd) -> None:
        """``pmd`` was destroyed."""
        if isinstance(pmd, WorkerPmd):
            self._seen.pop(pmd.serial, None)

    async def _rebalance(self) -> None:
        try:
            await self._dp.reconfigure()
        finally:
            self.pending = False

    def _view(self) -> SchedView:
        dp = self._dp
        return SchedView(
            rxqs=dp.rxq_infos(),
            pmds=[
                rxq_sched.PmdInfo(
                    core_id=p.core_id,
                    numa_id=p.numa_id,
                    intrvl_cycles=p.intrvl_cycles,
                    isolated=p.isolated,
                )
                for p in dp.pmds.values()
            ],
            algorithm=dp.settings.rxq_assign,
            isolate=dp.settings.rxq_isolate,
        )
