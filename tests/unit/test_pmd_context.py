"""Per-PMD offload context: lifecycle hook sequence, work cycles, exit."""

from __future__ import annotations

from typing import Any

import pytest

from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.odp.actions import Output
from pyvswitchd.offload.dummy import DummyOffload, DummyPmdContext, HwPacket
from pyvswitchd.offload.pmd_context import PmdOffloadContext
from pyvswitchd.offload.provider import WorkCallback
from pyvswitchd.offload.registry import Offload, OffloadCollection
from tests.offload_support import FakePort, captured_vlog, log_messages

DP = "dummy@ovs-dummy"
PREFIX = "pmd_thread_lifecycle; "


class Env:
    def __init__(self) -> None:
        self.console, self.vlog = captured_vlog()
        self.coverage = Coverage()
        self.offload = Offload(self.vlog, self.coverage)
        self.offload.config.set_global_config({"hw-offload": "true"})
        self.collection, _ = self.offload.open(DP, "dummy")
        dummy = self.collection.find("dummy")
        assert isinstance(dummy, DummyOffload)
        self.dummy = dummy
        self.counter = self.coverage.define("dummy_offload_do_work")

    def lifecycle_lines(self) -> list[str]:
        msgs = log_messages(self.console)
        return [m[len(PREFIX) :] for m in msgs if m.startswith(PREFIX)]


@pytest.fixture
def env() -> Env:
    return Env()


def test_reload_reuse_and_exit_sequence(env: Env) -> None:
    pmd = PmdOffloadContext(core_id=0, numa_id=0)
    pmd.reload(env.collection, True)
    assert [n.provider.type for n in pmd.nodes] == ["dummy"]  # dummy_x gives no callback
    node = pmd.nodes[0]
    cb, ctx = node.callback, node.ctx
    pmd.reload(env.collection, True)
    assert pmd.nodes[0].callback is cb and pmd.nodes[0].ctx is ctx
    pmd.exit()
    assert pmd.nodes == [] and isinstance(ctx, DummyPmdContext) and ctx.freed
    lines = env.lifecycle_lines()
    assert lines[0] == "exit=false, core=0, numa=0, cb=0x0, ctx=0x0"
    second = lines[1]
    assert second.startswith("exit=false, core=0, numa=0, cb=0x") and "ctx=0x0" not in second
    assert lines[-1] == second.replace("exit=false", "exit=true")
    assert len(lines) == 3


def test_core_and_numa_are_passed_through(env: Env) -> None:
    pmd = PmdOffloadContext(core_id=7, numa_id=1)
    pmd.reload(env.collection, True)
    pmd.do_work()
    assert env.lifecycle_lines() == ["exit=false, core=7, numa=1, cb=0x0, ctx=0x0"]


def test_do_work_counts_and_returns_cycles_only_with_work(env: Env) -> None:
    pmd = PmdOffloadContext(0, 0)
    assert pmd.do_work() == 0
    assert env.counter.total == 0
    pmd.reload(env.collection, True)
    assert pmd.do_work() > 0
    assert pmd.do_work() > 0
    assert env.counter.total == 2


def test_do_work_drains_the_pmd_hw_queue(env: Env) -> None:
    sent: list[tuple[int, bytes]] = []
    env.dummy.hw_output = lambda port, data: sent.append((port, data))
    env.collection.assign_port(FakePort(1, "p1"))
    env.collection.assign_port(FakePort(2, "p2"))
    key = (1,) + (0,) * 18
    mask = (0xFFFFFFFF,) + (0,) * 18
    assert env.dummy.flow_put(1, key, mask, [Output(2)], modify=False, flow_ref="f") == 0
    pmd = PmdOffloadContext(0, 0)
    pmd.reload(env.collection, True)
    ctx = pmd.nodes[0].ctx
    ctx.hw_rxq.append(HwPacket(1, key, b"pkt"))
    pmd.do_work()
    assert sent == [(2, b"pkt")] and not ctx.hw_rxq


def test_disabled_or_missing_collection_gives_no_nodes(env: Env) -> None:
    pmd = PmdOffloadContext(0, 0)
    pmd.reload(env.collection, False)
    pmd.reload(None, True)
    assert pmd.nodes == [] and pmd.do_work() == 0
    pmd.exit()
    assert env.lifecycle_lines() == []


def test_provider_dropping_its_callback_is_not_called_on_exit(env: Env) -> None:
    calls: list[tuple[bool, Any, Any]] = []

    class Flaky(DummyOffload):
        type = "flaky"
        give = True

        def pmd_thread_lifecycle(
            self, exit: bool, core_id: int, numa_id: int, callback: WorkCallback | None, ctx: Any
        ) -> tuple[WorkCallback | None, Any]:
            calls.append((exit, callback, ctx))
            if exit or not self.give:
                return None, None
            return (lambda c, n, x: None), "flaky-ctx"

    flaky = Flaky(DP, env.offload.services)
    collection = OffloadCollection(DP, [flaky, env.dummy], env.offload.config, env.dummy.log)
    pmd = PmdOffloadContext(0, 0)
    pmd.reload(collection, True)
    assert [n.provider.type for n in pmd.nodes] == ["flaky", "dummy"]
    first_cb = pmd.nodes[0].callback
    flaky.give = False
    pmd.reload(collection, True)
    assert calls[1] == (False, first_cb, "flaky-ctx")
    assert [n.provider.type for n in pmd.nodes] == ["dummy"]
    pmd.exit()
    assert len(calls) == 2  # no exit call for a provider without a node
