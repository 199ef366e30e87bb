"""Tests for pyvswitchd.datapath.revalidator: the table-side rounds and a whole pass."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import pytest
import trio
import trio.testing

from pyvswitchd.datapath.clock import Clock
from pyvswitchd.datapath.flow_table import DpFlow, FlowTable
from pyvswitchd.datapath.mac_learning import MacLearning
from pyvswitchd.datapath.normal import NORMAL_IP_MASK, NormalBridge
from pyvswitchd.datapath.revalidator import (
    REVALIDATE_INTERVAL,
    Affected,
    AgeResult,
    Changes,
    Revalidator,
    Update,
    affected_flows,
    age_flows,
    next_flow_limit,
    set_outputs,
)
from pyvswitchd.datapath.thread_flows import LocalFlows
from pyvswitchd.datapath.upcall import ExecutorCache
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp import flow_key as fk
from pyvswitchd.odp.actions import Output
from pyvswitchd.odp.flow_key import FlowKey, masked

A = 0x5054_0000_0005
B = 0x5054_0000_0007
C = 0x5054_0000_0009
NOW = 5000.0


def key(in_port: int, src: int, dst: int, *, vlan: int = 0, nw_src: int = 1) -> FlowKey:
    k = [0] * fk.N_FIELDS
    k[fk.IN_PORT] = in_port
    k[fk.ETH_SRC] = src
    k[fk.ETH_DST] = dst
    k[fk.ETH_TYPE] = 0x0800
    k[fk.VLAN_TCI] = (0x1000 | vlan) if vlan else 0
    k[fk.NW_SRC] = nw_src
    return tuple(k)


@attrs.define
class Observer:
    events: list[tuple[str, str]] = attrs.field(factory=list)

    def flow_installed(self, flow: DpFlow) -> None:
        self.events.append(("installed", flow.ufid))

    def flow_modified(self, flow: DpFlow) -> None:
        self.events.append(("modified", flow.ufid))

    def flow_removed(self, flow: DpFlow) -> None:
        self.events.append(("removed", flow.ufid))


def install(
    table: FlowTable,
    k: FlowKey,
    outputs: tuple[int, ...] = (2,),
    *,
    bridge: str | None = "br0",
    created: float = NOW,
    used: float = 0.0,
    packets: int = 0,
) -> DpFlow:
    actions, execute = ExecutorCache().get(outputs)
    flow = table.install(DpFlow(k, NORMAL_IP_MASK, actions, execute, bridge=bridge))
    flow.created, flow.used, flow.packets = created, used, packets
    return flow


@pytest.fixture
def table() -> FlowTable:
    return FlowTable(1)


# -- age_flows ------------------------------------------------------------------------


def test_age_expires_idle_flows_and_counts_them(table: FlowTable) -> None:
    expired = Coverage().define("revalidate_flow_expired")
    fresh = install(table, key(1, A, B), created=NOW - 5)
    used_lately = install(table, key(1, A, C), created=NOW - 100, used=NOW - 1)
    idle = install(table, key(2, B, A), created=NOW - 100, used=NOW - 11)
    never_used = install(table, key(3, C, A), created=NOW - 10.5)
    manual = install(table, key(3, C, B), bridge=None, created=NOW - 11)  # dpctl/add-flow
    result = age_flows(table, 10_000, frozenset({"br0"}), expired, now=NOW)
    assert (result.expired, result.deleted) == (3, 0)
    assert expired.total == 3
    assert set(table) == {fresh, used_lately}
    assert idle.dead and never_used.dead and manual.dead
    assert age_flows(table, 10_000, frozenset({"br0"}), now=NOW).expired == 0  # no counter


def test_age_deletes_flows_of_bridges_that_went_away(table: FlowTable) -> None:
    mine = install(table, key(1, A, B))
    theirs = install(table, key(2, A, B), bridge="br1")
    manual = install(table, key(3, A, B), bridge=None)
    result = age_flows(table, 10_000, frozenset({"br0"}), now=NOW)
    assert (result.expired, result.deleted) == (0, 1)
    assert set(table) == {mine, manual}
    assert theirs.dead


def test_age_reports_one_refresh_per_source_that_saw_packets(table: FlowTable) -> None:
    a1 = install(table, key(1, A, B), packets=3)
    install(table, key(1, A, C), packets=1)  # same (port, VLAN, source)
    install(table, key(1, A, C, vlan=5), packets=1)  # other VLAN
    install(table, key(2, B, A), packets=0)  # no packets
    install(table, key(3, C, A), packets=2, bridge=None)  # no bridge to learn in
    result = age_flows(table, 10_000, frozenset({"br0"}), now=NOW)
    refreshed = sorted((b, k[fk.IN_PORT], k[fk.VLAN_TCI] & 0xFFF) for b, k in result.refresh)
    assert refreshed == [("br0", 1, 0), ("br0", 1, 5)]
    assert a1.reval_packets == 3
    # Nothing new since: nothing to refresh.
    assert age_flows(table, 10_000, frozenset({"br0"}), now=NOW).refresh == ()
    a1.packets += 1
    again = age_flows(table, 10_000, frozenset({"br0"}), now=NOW).refresh
    assert [(b, k[fk.ETH_SRC]) for b, k in again] == [("br0", A)]


def test_age_uses_the_real_clock_by_default(table: FlowTable) -> None:
    install(table, key(1, A, B), created=time.monotonic())
    install(table, key(2, A, B), created=time.monotonic() - 60)
    assert age_flows(table, 10_000, frozenset({"br0"})).expired == 1


def test_age_reads_the_tables_clock_which_time_warp_moves() -> None:
    clock = Clock()
    table = FlowTable(1, clock=clock)
    flow = install(table, key(1, A, B), created=clock.seconds())
    assert age_flows(table, 10_000, frozenset({"br0"})).expired == 0
    clock.warp(10_001)  # what "time/warp 10001" does
    assert age_flows(table, 10_000, frozenset({"br0"})).expired == 1
    assert flow.dead


# -- affected_flows and set_outputs ----------------------------------------------------------


def test_affected_flows_depend_on_the_destination_entry(table: FlowTable) -> None:
    to_b = install(table, key(1, A, B), (2, 3))
    install(table, key(1, A, C), (2, 3))
    to_b_vlan5 = install(table, key(1, A, B, vlan=5), (3,))
    install(table, key(2, C, B), (1,), bridge="br1")
    install(table, key(3, A, B), (1,), bridge=None)
    out = affected_flows(table, {"br0": frozenset({(0, B)})})
    assert out == [(to_b.key, to_b.mask, "br0", (2, 3))]
    out = affected_flows(table, {"br0": frozenset({(5, B), (0, A)})})
    assert out == [(to_b_vlan5.key, to_b_vlan5.mask, "br0", (3,))]
    # None: anything of that bridge may have changed.
    assert len(affected_flows(table, {"br0": None})) == 3
    assert len(affected_flows(table, {"br0": None, "br1": None})) == 4
    assert affected_flows(table, {"br2": None}) == []


def test_set_outputs_changes_flows_still_there() -> None:
    observer = Observer()
    table = FlowTable(1, observer)
    executors = ExecutorCache()
    f1 = install(table, key(1, A, B), (2, 3))
    f2 = install(table, key(1, C, B), (2, 3))
    gone = key(2, B, A)
    updates = [
        (f1.key, f1.mask, (3,)),
        (f2.key, f2.mask, (3,)),
        (masked(gone, NORMAL_IP_MASK), NORMAL_IP_MASK, (1,)),  # went away meanwhile
    ]
    n = set_outputs(table, updates, executors)
    assert n == 2
    assert f1.actions == f2.actions == (Output(3),)
    assert f1.execute is f2.execute is executors.get((3,))[1]
    assert observer.events[-2:] == [("modified", f1.ufid), ("modified", f2.ufid)]
    assert len(table) == 2


# -- a whole pass --------------------------------------------------------------------------


async def test_a_pass_turns_a_flood_flow_unicast_once_the_destination_is_learned() -> None:
    now = [1000.0]
    coverage = Coverage(lambda: now[0])
    ml = MacLearning(lambda: now[0], coverage)
    bridge = NormalBridge("br0", ml, Vlog("test", syslog_method="null").module("x"), coverage)
    bridge.set_ports((1, 2, 3))
    table = FlowTable(1)
    executors = ExecutorCache()
    flows = LocalFlows(table, executors, coverage.define("revalidate_flow_expired"))
    reval = Revalidator(lambda: [flows], lambda: {"br0": bridge}, coverage)

    a_to_b = key(1, A, B)
    decision = bridge.handle(a_to_b)  # learns A on 1, floods to B
    assert decision.outputs == (2, 3)
    flow = table.install(executors.make_flow(a_to_b, (decision.mask, decision.outputs, "br0")))
    await reval.run_once()
    assert flow.actions == (Output(2), Output(3))

    bridge.handle(key(2, B, A))  # B is learned on 2
    await reval.run_once()
    assert flow.actions == (Output(2),)
    assert reval.stats.flows_modified == 1
    assert coverage.define("revalidate_flow_modified").total == 1
    await reval.run_once()  # nothing changed since
    assert reval.stats.flows_modified == 1
    assert reval.stats.passes == 3


async def test_a_pass_keeps_an_active_mac_and_ages_idle_flows() -> None:
    now = [1000.0]
    coverage = Coverage(lambda: now[0])
    ml = MacLearning(lambda: now[0], coverage, idle_time=15)
    bridge = NormalBridge("br0", ml, Vlog("test", syslog_method="null").module("x"), coverage)
    bridge.set_ports((1, 2))
    table = FlowTable(1)
    flows = LocalFlows(table, ExecutorCache(), coverage.define("revalidate_flow_expired"))
    reval = Revalidator(lambda: [flows], lambda: {"br0": bridge}, coverage)
    reval.max_idle_ms = 3_600_000

    d = bridge.handle(key(1, A, B))
    flow = table.install(ExecutorCache().make_flow(key(1, A, B), (d.mask, d.outputs, "br0")))
    for _ in range(4):
        now[0] += 10
        flow.packets += 1  # megaflow hits never reach the bridge
        await reval.run_once()
    assert ml.lookup(0, A) == 1  # refreshed by the passes, 40 s after it was learned

    reval.max_idle_ms = 0
    flow.created = flow.used = 0.0
    await reval.run_once()
    assert len(table) == 0
    assert reval.stats.flows_expired == 1
    assert isinstance(await flows.age(0, frozenset()), AgeResult)


# -- operator control: pause, resume, wait; upcall/show figures ---------------------------


class HeldOwner:
    """A flow table whose aging round blocks until released (a pass under way)."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.release = trio.Event()

    async def age(self, max_idle_ms: int, bridges: frozenset[str]) -> AgeResult:
        self.entered.set()
        await self.release.wait()
        return AgeResult((), 0, 0)

    async def affected(self, changes: Changes) -> list[Affected]:
        return []

    async def set_outputs(self, updates: list[Update]) -> int:
        return 0


def bare_revalidator(
    owners: list[HeldOwner] | None = None, count: Callable[[], int] = lambda: 0
) -> Revalidator:
    return Revalidator(lambda: owners or [], lambda: {}, Coverage(), count_flows=count)


async def run_periodically(reval: Revalidator) -> None:
    while True:
        await reval.next_pass(REVALIDATE_INTERVAL)
        await reval.run_once()


async def test_next_pass_waits_the_interval_or_a_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reval = bare_revalidator()
    start = trio.current_time()
    await reval.next_pass(0.5)
    assert trio.current_time() - start == pytest.approx(0.5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reval.wait_pass)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await reval.next_pass(0.5)  # asked for: at once
        assert trio.current_time() == start
        await reval.run_once()
    assert reval.stats.passes == 1


async def test_wait_pass_needs_a_pass_that_started_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    owner = HeldOwner()
    reval = bare_revalidator([owner])
    done = []

    async def waiter() -> None:
        await reval.wait_pass()
        done.append(reval.stats.passes)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reval.run_once)  # pass 1, under way before the wait
        await owner.entered.wait()
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        owner.release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert done == []  # pass 1 started before the request
        await reval.run_once()
    assert done == [2]


async def test_pause_holds_passes_and_waits_back(autojump_clock: trio.testing.MockClock) -> None:
    owner = HeldOwner()
    owner.release.set()
    reval = bare_revalidator([owner])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_periodically, reval)
        await trio.sleep(1.2)
        assert reval.stats.passes == 2
        await reval.pause()
        await reval.pause()  # twice is fine
        paused_at = reval.stats.passes
        waited = trio.Event()

        async def waiter() -> None:
            await reval.wait_pass()
            waited.set()

        nursery.start_soon(waiter)
        await trio.sleep(10)
        assert reval.stats.passes == paused_at and not waited.is_set()
        reval.resume()
        with trio.fail_after(0.01):  # asked for: no need to wait the interval
            await waited.wait()
        assert reval.stats.passes == paused_at + 1
        reval.resume()  # not paused: nothing happens
        nursery.cancel_scope.cancel()


async def test_pause_returns_once_the_pass_under_way_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    owner = HeldOwner()
    reval = bare_revalidator([owner])
    paused = trio.Event()

    async def pause() -> None:
        await reval.pause()
        paused.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reval.run_once)
        await owner.entered.wait()
        nursery.start_soon(pause)
        await trio.testing.wait_all_tasks_blocked()
        assert reval.paused and not paused.is_set()
        owner.release.set()
    assert paused.is_set()


async def test_passes_keep_the_figures_upcall_show_prints() -> None:
    counts = iter([4, 10, 2])
    reval = bare_revalidator(count=lambda: next(counts))
    assert (reval.stats.dump_duration_ms, reval.stats.flow_limit) == (0, 10_000)
    for _ in range(3):
        await reval.run_once()
    assert reval.stats.max_flows == 10
    assert reval.stats.avg_flows == ((4 // 2 + 10) // 2 + 2) // 2
    assert reval.stats.dump_duration_ms >= 1


def test_flow_limit_follows_ovs_rule() -> None:
    assert next_flow_limit(10_000, 1, 5) == 10_000  # few flows, fast pass: no change
    assert next_flow_limit(10_000, 1, 20) == 11_000  # a fast pass over more flows than 1000/ms
    assert next_flow_limit(199_500, 1, 10**6) == 200_000  # never above OVS's default
    assert next_flow_limit(10_000, 1500, 0) == 7_500  # a slow pass: three quarters
    assert next_flow_limit(10_000, 5000, 0) == 2_000  # very slow: divided by the seconds
    assert next_flow_limit(1_200, 1500, 0) == 1_000  # never below 1000
    assert next_flow_limit(10_000, 1100, 10**6) == 10_000  # between 1 and 1.3 s: kept
