"""Tests for pyvswitchd.datapath.worker_requests: a worker's answers, on a minimal fake worker."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from pyvswitchd.datapath import worker_messages as msg
from pyvswitchd.datapath.flow_table import FlowTable
from pyvswitchd.datapath.normal import NORMAL_IP_MASK
from pyvswitchd.datapath.perf import PmdPerf, Stat
from pyvswitchd.datapath.perf_snapshot import PerfSnapshot
from pyvswitchd.datapath.revalidator import AgeResult
from pyvswitchd.datapath.upcall import ExecutorCache
from pyvswitchd.datapath.worker_requests import RequestHandler, flow_record
from pyvswitchd.netdev.dummy import DummyNetdev
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.odp import flow_key as fk
from pyvswitchd.odp.actions import Output
from pyvswitchd.odp.flow_key import FULL_MASKS, FlowKey


def key(in_port: int, n: int = 0) -> FlowKey:
    k = [0] * fk.N_FIELDS
    k[fk.IN_PORT] = in_port
    k[fk.ETH_SRC] = 0x5054_0000_0000 + n
    k[fk.ETH_DST] = 0x5054_0000_0007
    k[fk.ETH_TYPE] = 0x0800
    return tuple(k)


@attrs.define
class Endpoint:
    sent: list[object] = attrs.field(factory=list)

    def send(self, message: object, fds: Sequence[int] = ()) -> None:
        self.sent.append(message)


@attrs.define
class Log:
    errors: list[str] = attrs.field(factory=list)

    def err(self, text: str) -> None:
        self.errors.append(text)


@attrs.define
class FakePmd:
    flow_table: FlowTable = attrs.field(factory=lambda: FlowTable(1))
    perf: PmdPerf = attrs.field(factory=PmdPerf)


@attrs.define
class FakePort:
    netdev: Any


@attrs.define
class FaultState:
    def counts(self) -> tuple[int, int, int, int]:
        return (1, 2, 3, 4)


@attrs.define
class Runs:
    faults: int = 0


@attrs.define
class OffloadFaults:
    runs: Runs = attrs.field(factory=Runs)


@attrs.define
class Offload:
    def worker_counters(self) -> dict[str, int]:
        return {"p1": 3}


@attrs.define
class FakeWorker:
    """What RequestHandler reads of a Worker, nothing more."""

    endpoint: Endpoint = attrs.field(factory=Endpoint)
    log: Log = attrs.field(factory=Log)
    pmd: FakePmd = attrs.field(factory=FakePmd)
    coverage: Coverage = attrs.field(factory=Coverage)
    executors: ExecutorCache = attrs.field(factory=ExecutorCache)
    ports: dict[int, FakePort] = attrs.field(factory=dict)
    netdev_faults: dict[int, Any] = attrs.field(factory=dict)
    offload_faults: OffloadFaults = attrs.field(factory=OffloadFaults)
    offload: Offload = attrs.field(factory=Offload)
    publishes: int = 0
    netdev_fault_calls: list[tuple[int, Any]] = attrs.field(factory=list)
    offload_fault_calls: list[Any] = attrs.field(factory=list)

    def publish(self) -> None:
        self.publishes += 1

    def set_netdev_fault(self, port_no: int, spec: Any) -> None:
        self.netdev_fault_calls.append((port_no, spec))

    def set_offload_fault(self, spec: Any) -> None:
        self.offload_fault_calls.append(spec)


class Rig:
    def __init__(self) -> None:
        self.worker = FakeWorker()
        self.handler = RequestHandler(self.worker)  # type: ignore[arg-type]
        self.ids = 0

    @property
    def table(self) -> FlowTable:
        return self.worker.pmd.flow_table

    def ask(self, body: object, fds: Sequence[int] = ()) -> msg.Reply:
        self.ids += 1
        self.handler.serve(msg.Request(self.ids, body), list(fds))
        reply = self.worker.endpoint.sent[-1]
        assert isinstance(reply, msg.Reply) and reply.id == self.ids
        return reply

    def value(self, body: object) -> Any:
        reply = self.ask(body)
        assert reply.error is None, reply.error
        return reply.value


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_every_request_type_has_a_handler(rig: Rig) -> None:
    requests = {
        msg.PerfDetail, msg.ClearStats, msg.CountFlows, msg.DumpFlows, msg.FindFlow,
        msg.GetFlow, msg.PutFlow, msg.DeleteFlow, msg.FlushFlows, msg.AgeFlows,
        msg.AffectedFlows, msg.SetOutputs, msg.Inject, msg.SetNetdevFault,
        msg.NetdevFaultCounts, msg.SetOffloadFault, msg.OffloadFaultRuns, msg.OffloadCounters,
    }  # fmt: skip
    assert set(rig.handler._handlers) == requests


def test_flow_requests(rig: Rig) -> None:
    k1, k2 = key(1), key(2)
    assert rig.value(msg.CountFlows()) == 0
    assert rig.value(msg.PutFlow(k1, FULL_MASKS, (Output(2),), True)) is None
    assert rig.value(msg.PutFlow(k2, FULL_MASKS, (Output(3),), False)) is None
    assert rig.value(msg.CountFlows()) == 2
    assert rig.value(msg.FindFlow(k1, FULL_MASKS)) is True
    assert rig.value(msg.FindFlow(key(9), FULL_MASKS)) is False

    flow = rig.table.find(k2, FULL_MASKS)
    assert flow is not None
    flow.packets, flow.bytes, flow.used = 5, 300, 12.5
    rec = rig.value(msg.GetFlow(flow.ufid))
    assert rec == msg.FlowRecord(
        flow.ufid, flow.key, k2, FULL_MASKS, (Output(3),), 5, 300, 12.5, False
    )
    assert rec == flow_record(flow)
    assert rig.value(msg.GetFlow("no-such-ufid")) is None

    pages = [rig.value(msg.DumpFlows(start, 1)) for start in range(3)]
    assert [[r.key for r in p] for p in pages] == [[k1], [k2], []]
    assert len(rig.value(msg.DumpFlows(0, 100))) == 2

    assert rig.value(msg.DeleteFlow(k1, FULL_MASKS)) is True
    assert rig.value(msg.DeleteFlow(k1, FULL_MASKS)) is False
    assert rig.value(msg.FlushFlows(frozenset({7}))) == 0
    assert rig.value(msg.FlushFlows(frozenset({3}))) == 1
    assert rig.value(msg.PutFlow(k1, FULL_MASKS, (Output(2),), True)) is None
    assert rig.value(msg.FlushFlows()) == 1
    assert len(rig.table) == 0


def test_revalidation_requests(rig: Rig) -> None:
    k = key(1)
    flow = rig.table.install(rig.worker.executors.make_flow(k, (NORMAL_IP_MASK, (2, 3), "br0")))
    assert rig.value(msg.AgeFlows(10_000, frozenset({"br0"}))) == AgeResult((), 0, 0)
    affected = rig.value(msg.AffectedFlows({"br0": None}))
    assert affected == [(flow.key, NORMAL_IP_MASK, "br0", (2, 3))]
    assert rig.value(msg.SetOutputs(((flow.key, NORMAL_IP_MASK, (3,)),))) == 1
    assert flow.actions == (Output(3),)
    assert flow.execute is rig.worker.executors.get((3,))[1]
    flow.created = 0.0
    assert rig.value(msg.AgeFlows(10_000, frozenset({"br0"}))).expired == 1
    # Counted in the worker's coverage, which it publishes to the daemon.
    assert rig.worker.coverage.define("revalidate_flow_expired").total == 1


def test_statistics_requests(rig: Rig) -> None:
    perf = rig.worker.pmd.perf
    perf.n[Stat.RECV] = 10
    snap = rig.value(msg.PerfDetail(histories=False))
    assert isinstance(snap, PerfSnapshot)
    assert snap.get(Stat.RECV) == 10
    assert snap.it_ring == [] and snap.ms_ring == []
    assert rig.value(msg.PerfDetail(histories=True)).it_ring != []
    assert rig.value(msg.ClearStats()) is None
    assert perf.get(Stat.RECV) == 0  # not polling: cleared at once
    assert rig.worker.publishes == 1


def test_inject_into_a_dummy_port(rig: Rig) -> None:
    netdev = DummyNetdev("p1")
    rig.worker.ports[1] = FakePort(netdev)
    rig.worker.ports[2] = FakePort(object())
    assert rig.value(msg.Inject(1, 0, (b"\x00" * 60, b"\x01" * 60))) == 2
    assert len(netdev.recv(0)) == 2
    for port_no in (2, 3):
        reply = rig.ask(msg.Inject(port_no, 0, (b"\x00" * 60,)))
        assert reply.error == f"port {port_no} is not a dummy port of this PMD"
    assert len(rig.worker.log.errors) == 2


def test_fault_injection_requests(rig: Rig) -> None:
    assert rig.value(msg.SetNetdevFault(1, "spec")) is None
    assert rig.worker.netdev_fault_calls == [(1, "spec")]
    assert rig.value(msg.NetdevFaultCounts(1)) == (0, 0, 0, 0)
    rig.worker.netdev_faults[1] = FaultState()
    assert rig.value(msg.NetdevFaultCounts(1)) == (1, 2, 3, 4)
    assert rig.value(msg.SetOffloadFault("ospec")) is None
    assert rig.worker.offload_fault_calls == ["ospec"]
    rig.worker.offload_faults.runs.faults = 4
    assert rig.value(msg.OffloadFaultRuns()) == 4
    assert rig.value(msg.OffloadCounters()) == {"p1": 3}


def test_unknown_request_is_an_error_reply(rig: Rig) -> None:
    reply = rig.ask(msg.Knobs())
    assert reply == msg.Reply(rig.ids, error="unknown request Knobs")
    assert rig.worker.log.errors == []


def test_a_failing_handler_is_logged_and_the_worker_goes_on(rig: Rig) -> None:
    def broken(_: object) -> None:
        raise KeyError("boom")

    rig.handler._handlers[msg.CountFlows] = broken
    reply = rig.ask(msg.CountFlows())
    assert reply.value is None and reply.error == "'boom'"
    assert rig.worker.log.errors == ["request CountFlows failed: KeyError: 'boom'"]

    def silent(_: object) -> None:
        raise RuntimeError

    rig.handler._handlers[msg.CountFlows] = silent
    assert rig.ask(msg.CountFlows()).error == "RuntimeError"
    # The next request is served as usual.
    assert rig.value(msg.FindFlow(key(1), FULL_MASKS)) is False


def test_descriptors_sent_with_a_request_are_closed(rig: Rig) -> None:
    r, w = os.pipe()
    rig.ask(msg.CountFlows(), [r, w])
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)
