"""The dummy / dummy_x offload providers: ports, flows, marks, simulated hardware."""

from __future__ import annotations

import errno

import pytest

from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.odp.actions import Action, Output, PopVlan
from pyvswitchd.odp.flow_key import ETH_TYPE, FULL_MASKS, IN_PORT, N_FIELDS
from pyvswitchd.offload.dummy import (
    DummyOffload,
    DummyPmdContext,
    DummyXOffload,
    HwPacket,
    MarkPool,
    format_ptr,
    format_ufid,
)
from pyvswitchd.offload.provider import INVALID_FLOW_MARK, OffloadServices
from tests.offload_support import FakePort, captured_vlog, log_messages

DP = "dummy@ovs-dummy"
UFID = 0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321


class Env:
    def __init__(self, enabled: bool = True) -> None:
        self.console, self.vlog = captured_vlog()
        self.coverage = Coverage()
        self.enabled = enabled
        self.services = OffloadServices(self.vlog, self.coverage, lambda: self.enabled)
        self.dummy = DummyOffload(DP, self.services)
        self.unrefs: list[tuple[int, object]] = []
        self.dummy.register_flow_unreference_cb(lambda pmd, ref: self.unrefs.append((pmd, ref)))
        self.sent: list[tuple[int, bytes]] = []
        self.reinjected: list[tuple[int, bytes]] = []
        self.dummy.hw_output = lambda port, data: self.sent.append((port, data))
        self.dummy.sw_reinject = lambda port, data: self.reinjected.append((port, data))
        for port in (FakePort(1, "p1"), FakePort(2, "p2"), FakePort(3, "i3", "dummy-internal")):
            assert self.dummy.port_add(port) == 0

    def logs(self, level: str | None = None) -> list[str]:
        return log_messages(self.console, level)


@pytest.fixture
def env() -> Env:
    return Env()


def key(in_port: int, eth_type: int = 0x0800) -> tuple[int, ...]:
    k = [0] * N_FIELDS
    k[IN_PORT] = in_port
    k[ETH_TYPE] = eth_type
    return tuple(k)


MASK = tuple(FULL_MASKS[i] if i in (IN_PORT, ETH_TYPE) else 0 for i in range(N_FIELDS))


def test_can_offload_and_port_add_del(env: Env) -> None:
    d = env.dummy
    assert d.name == f"dummy[{DP}]"
    assert d.can_offload(FakePort(5, "x", "dummy"))
    assert not d.can_offload(FakePort(5, "x", "system"))
    assert d.port_add(FakePort(1, "p1")) == errno.EEXIST
    assert d.get_port(2) == FakePort(2, "p2")
    assert d.port_del(2) == 0
    assert d.get_port(2) is None
    assert d.port_del(2) == errno.ENOENT
    assert d.get_global_stats() == {"Offloaded port count": 2}


def test_put_partial_and_full_offload_with_marks(env: Env) -> None:
    d = env.dummy
    # Output to another dummy-pmd port: full offload.
    assert d.flow_put(UFID, key(1), MASK, [Output(2)], modify=False, pmd_id=0, flow_ref="a") == 0
    full = d.flow_get(UFID)
    assert full is not None and full.mark == 1 and full.actions == (Output(2),)
    assert full.key[IN_PORT] == 0 and full.mask[IN_PORT] == 0
    stats = d.flow_stats(UFID)
    assert stats is not None and stats.offloaded and stats.dp_layer == "dummy"
    # Output to an internal port, to the in_port, or a non-output action: partial.
    partial: list[list[Action]] = [[Output(3)], [Output(1)], [PopVlan(), Output(2)]]
    for i, actions in enumerate(partial):
        ufid = 100 + i
        assert d.flow_put(ufid, key(2 - i % 2), MASK, actions, modify=False, flow_ref=i) == 0
        flow = d.flow_get(ufid)
        assert flow is not None and flow.actions is None
        assert d.flow_stats(ufid).dp_layer == "ovs"  # type: ignore[union-attr]
    assert [d.flow_get(u).mark for u in (100, 101, 102)] == [2, 3, 4]  # type: ignore[union-attr]
    assert d.flow_count() == 4
    assert d.mark_for(1, key(1)) == 1
    assert d.mark_for(1, key(1, 0x86DD)) == INVALID_FLOW_MARK
    assert d.flow_ref_for_mark(1, 0) == "a"
    assert d.flow_ref_for_mark(1, 9) is None
    assert f"p1: flow put[create]: ufid:{format_ufid(UFID)} flow match:" in env.logs("DBG")[0]
    assert env.logs("DBG")[0].endswith(", mark: 1")


def test_put_unknown_port_and_mark_exhaustion(env: Env) -> None:
    d = env.dummy
    assert d.flow_put(1, key(9), MASK, [], modify=False) == errno.ENODEV
    d.marks = MarkPool(limit=1)
    assert d.flow_put(1, key(1), MASK, [], modify=False, flow_ref="x") == 0
    assert d.flow_put(2, key(2), MASK, [], modify=False, flow_ref="y") == errno.ENOSPC
    assert d.flow_del(1, pmd_id=0) == 0
    # The freed mark is reused.
    assert d.flow_put(2, key(2), MASK, [], modify=False, flow_ref="y") == 0
    assert d.flow_get(2).mark == 1  # type: ignore[union-attr]


def test_modify_replaces_reference_and_several_pmds_share_a_ufid(env: Env) -> None:
    d = env.dummy
    assert d.flow_put(UFID, key(1), MASK, [Output(2)], modify=False, pmd_id=0, flow_ref="a") == 0
    assert d.flow_put(UFID, key(1), MASK, [Output(3)], modify=True, pmd_id=0, flow_ref="b") == 0
    assert env.unrefs == [(0, "a")]
    flow = d.flow_get(UFID)
    assert flow is not None and flow.actions is None and flow.mark == 1
    assert any("flow put[modify]" in m for m in env.logs("DBG"))
    assert d.flow_put(UFID, key(1), MASK, [Output(3)], modify=False, pmd_id=5, flow_ref="c") == 0
    assert flow.refs == {0: "b", 5: "c"}
    assert d.flow_count() == 1
    # Deleting one PMD's use keeps the rule; the last one frees it and its mark.
    assert d.flow_del(UFID, pmd_id=0) == 0
    assert d.flow_get(UFID) is flow and env.unrefs[-1] == (0, "b")
    assert d.flow_del(UFID, pmd_id=5) == 0
    assert d.flow_get(UFID) is None and d.flow_ref_for_mark(1, 5) is None
    assert env.unrefs[-1] == (5, "c")
    assert f"p1: flow del: ufid:{format_ufid(UFID)} mark: 1" in env.logs("DBG")


def test_del_errors_warn(env: Env) -> None:
    d = env.dummy
    assert d.flow_del(UFID) == errno.ENOENT
    d.flow_put(UFID, key(1), MASK, [], modify=False, pmd_id=0, flow_ref="a")
    assert d.flow_del(UFID, pmd_id=3) == errno.ENOENT
    warns = env.logs("WARN")
    assert warns[0].endswith(f"failed to flow del: ufid:{format_ufid(UFID)} error: No such flow.")
    assert warns[1] == (
        f"p1: failed to flow del: ufid:{format_ufid(UFID)} "
        "error: No such flow with pmd_id and reference."
    )


def test_port_del_and_close_unreference_every_flow(env: Env) -> None:
    d = env.dummy
    d.flow_put(1, key(1), MASK, [], modify=False, pmd_id=0, flow_ref="a")
    d.flow_put(1, key(1), MASK, [], modify=False, pmd_id=1, flow_ref="b")
    d.flow_put(2, key(2), MASK, [], modify=False, pmd_id=0, flow_ref="c")
    assert d.port_del(1) == 0
    assert sorted(env.unrefs, key=str) == [(0, "a"), (1, "b")]
    assert d.flow_count() == 1
    d.close()
    assert (0, "c") in env.unrefs and d.ports == {} and d.flow_count() == 0


def test_rx_classification_counters_and_hw_run(env: Env) -> None:
    d = env.dummy
    d.flow_put(10, key(1), MASK, [Output(2)], modify=False, pmd_id=0, flow_ref="full")
    d.flow_put(11, key(2), MASK, [Output(3)], modify=False, pmd_id=0, flow_ref="part")
    v = d.rx_packet(1, key(1), b"abcd")
    assert v.stolen and v.mark == 1
    v = d.rx_packet(2, key(2), b"xy")
    assert not v.stolen and v.mark == 2
    assert d.flow_ref_for_mark(v.mark, 0) == "part"
    v = d.rx_packet(2, key(2, 0x86DD), b"zz")
    assert not v.stolen and v.mark == INVALID_FLOW_MARK
    ports = d.ports
    assert (ports[1].rx_offload_full, ports[2].rx_offload_partial, ports[2].rx_offload_miss) == (
        1,
        1,
        1,
    )
    assert d.hw_run() == 1
    assert env.sent == [(2, b"abcd")]
    stats = d.flow_stats(10)
    assert stats is not None and (stats.n_packets, stats.n_bytes) == (1, 4)
    # A queued packet whose rule went away fails the pipeline.
    d.rx_packet(1, key(1), b"late")
    d.flow_del(10, pmd_id=0)
    assert d.hw_run() == 1
    assert ports[1].rx_offload_pipe_abort == 1
    assert env.reinjected == [(1, b"late")]
    assert "Failed HW pipeline, sent to sw!" in env.logs("DBG")


def test_no_classification_when_disabled_or_dummy_x() -> None:
    env = Env(enabled=False)
    env.dummy.flow_put(10, key(1), MASK, [Output(2)], modify=False, flow_ref="f")
    assert env.dummy.rx_packet(1, key(1), b"a").mark == INVALID_FLOW_MARK
    assert env.dummy.ports[1].rx_offload_miss == 0
    # Enabling later turns offload on for the ports already added.
    env.enabled = True
    env.dummy.set_config({"hw-offload": "true"})
    assert env.dummy.rx_packet(1, key(1), b"a").stolen
    x = DummyXOffload(DP, env.services)
    x.port_add(FakePort(1, "p1"))
    x.port_add(FakePort(2, "p2"))
    x.flow_put(10, key(1), MASK, [Output(2)], modify=False, flow_ref="f")
    assert x.rx_packet(1, key(1), b"a") == x.rx_packet(9, key(9), b"a")
    assert x.rx_packet(1, key(1), b"a").mark == INVALID_FLOW_MARK


def test_get_debug_lists_owned_ports(env: Env) -> None:
    text, data = env.dummy.get_debug()
    assert text.splitlines()[:2] == ["  - p1: port_no: 1", "    rx_offload_partial   : 0"]
    assert list(data["ports"]) == ["p1", "p2", "i3"]
    assert DummyXOffload(DP, env.services).get_debug() == ("", {})


def test_lifecycle_log_reuses_callback_and_context(env: Env) -> None:
    d = env.dummy
    cb, ctx = d.pmd_thread_lifecycle(False, 0, 0, None, None)
    assert cb is d.work_callback and isinstance(ctx, DummyPmdContext)
    assert ctx.label == "DUMMY_OFFLOAD_WORK"
    cb2, ctx2 = d.pmd_thread_lifecycle(False, 0, 0, cb, ctx)
    assert cb2 is cb and ctx2 is ctx
    assert d.pmd_thread_lifecycle(True, 0, 0, cb2, ctx2) == (None, None)
    assert ctx.freed
    prefix = "pmd_thread_lifecycle; "
    got = [m[len(prefix) :] for m in env.logs("DBG") if m.startswith(prefix)]
    assert got == [
        "exit=false, core=0, numa=0, cb=0x0, ctx=0x0",
        f"exit=false, core=0, numa=0, cb={format_ptr(cb)}, ctx={format_ptr(ctx)}",
        f"exit=true, core=0, numa=0, cb={format_ptr(cb)}, ctx={format_ptr(ctx)}",
    ]
    with pytest.raises(AssertionError):
        d.pmd_thread_lifecycle(False, 0, 0, lambda c, n, x: None, None)


def test_work_callback_counts_and_drains_pmd_queue(env: Env) -> None:
    d = env.dummy
    counter = env.coverage.define("dummy_offload_do_work")
    d.flow_put(10, key(1), MASK, [Output(2)], modify=False, pmd_id=0, flow_ref="f")
    cb, ctx = d.pmd_thread_lifecycle(False, 4, 1, None, None)
    assert cb is not None
    ctx.hw_rxq.extend([HwPacket(1, key(1), b"one"), HwPacket(1, key(1, 0x86DD), b"two")])
    cb(4, 1, ctx)
    assert counter.total == 1 and not ctx.hw_rxq
    assert env.sent == [(2, b"one")] and env.reinjected == [(1, b"two")]


def test_dummy_x_has_no_pmd_hook(env: Env) -> None:
    x = DummyXOffload(DP, env.services)
    assert x.pmd_thread_lifecycle(False, 0, 0, None, None) == (None, None)
    assert not any("pmd_thread_lifecycle" in m for m in env.logs())
