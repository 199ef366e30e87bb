"""Tests for pyvswitchd.datapath.pmd_threads: making and ending in-process PMDs."""

from __future__ import annotations

import trio

from pyvswitchd.datapath.defer import DeferHooks, InlineHooks
from pyvswitchd.datapath.dp import Datapath
from pyvswitchd.datapath.pmd import NON_PMD_CORE_ID, Pmd, PmdHooks
from pyvswitchd.datapath.pmd_threads import PmdThreads
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp import flow_key as fk
from pyvswitchd.odp.actions import Output
from pyvswitchd.odp.flow_key import FULL_MASKS


def datapath() -> Datapath:
    return Datapath(Vlog("test", syslog_method="null"), Coverage(), default_registry())


def test_the_main_thread_completes_sends_inline_and_runs_no_offload_work() -> None:
    dp = datapath()
    main = dp.main
    assert main.is_main and main.core_id == NON_PMD_CORE_ID
    assert isinstance(main.hooks, InlineHooks)
    assert main._lifecycle is None
    assert dp.threads.processes is False


def test_a_pmd_gets_its_work_ring_offload_hooks_and_settings() -> None:
    dp = datapath()
    dp.settings.smc_enable = True
    pmd = dp.threads.make_local(3, 1)
    assert (pmd.core_id, pmd.numa_id) == (3, 1)
    assert isinstance(pmd.hooks, DeferHooks)
    assert pmd._lifecycle is dp.offload
    assert pmd.flow_table.smc_enabled
    assert pmd.interval_ns == dp.interval_ns
    assert pmd.flow_table is not dp.main.flow_table
    assert pmd.perf is not dp.main.perf


def test_a_hooks_factory_replaces_the_hooks_of_every_pmd() -> None:
    dp = datapath()
    made: list[Pmd] = []

    def factory(pmd: Pmd) -> PmdHooks:
        made.append(pmd)
        return InlineHooks(pmd)

    threads = PmdThreads(dp, processes=False, hooks_factory=factory)
    main, pmd = threads.make_local(NON_PMD_CORE_ID, 0), threads.make_local(0, 0)
    assert made == [main, pmd]
    assert isinstance(pmd.hooks, InlineHooks)


async def test_start_and_stop_in_process_pmds() -> None:
    dp = datapath()
    async with trio.open_nursery() as nursery:
        first = await dp.threads.start(nursery, 0, 0)
        second = await dp.threads.start(nursery, 1, 0)
        assert isinstance(first, Pmd) and isinstance(second, Pmd)
        assert dp.threads.serial == 2
        key = [0] * fk.N_FIELDS
        key[fk.IN_PORT] = 1
        first.flow_table.put(tuple(key), FULL_MASKS, [Output(2)], True)
        with trio.fail_after(5):
            await dp.threads.stop(first)
        # Its megaflows go with it (so offload providers drop their rules).
        assert len(first.flow_table) == 0
        with trio.fail_after(5):
            await dp.threads.stop(second)
    assert dp.workers.workers == {}
