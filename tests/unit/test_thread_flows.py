"""Tests for pyvswitchd.datapath.thread_flows: a PMD's flows in this process or a worker's."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from pyvswitchd.datapath import worker_messages as msg
from pyvswitchd.datapath.flow_table import FlowTable
from pyvswitchd.datapath.normal import NORMAL_IP_MASK
from pyvswitchd.datapath.revalidator import AgeResult
from pyvswitchd.datapath.thread_flows import DUMP_PAGE, FlowView, LocalFlows, WorkerFlows
from pyvswitchd.datapath.upcall import ExecutorCache
from pyvswitchd.datapath.worker_pmd import WorkerGone
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.odp import flow_key as fk
from pyvswitchd.odp.actions import Output
from pyvswitchd.odp.flow_key import FULL_MASKS, FlowKey, masked


def key(in_port: int, n: int = 0, dst: int = 0x5054_0000_0007) -> FlowKey:
    k = [0] * fk.N_FIELDS
    k[fk.IN_PORT] = in_port
    k[fk.ETH_SRC] = 0x5054_0000_0000 + n
    k[fk.ETH_DST] = dst
    k[fk.ETH_TYPE] = 0x0800
    return tuple(k)


@pytest.fixture
def local() -> LocalFlows:
    return LocalFlows(FlowTable(1), ExecutorCache(), Coverage().define("revalidate_flow_expired"))


async def collect(flows: LocalFlows | WorkerFlows) -> list[list[FlowView]]:
    return [page async for page in flows.dump()]


# -- LocalFlows ---------------------------------------------------------------------------


async def test_local_put_find_count_get_delete(local: LocalFlows) -> None:
    k = key(1)
    assert await local.count() == 0
    assert not await local.find(k, FULL_MASKS)
    await local.put(k, FULL_MASKS, [Output(2)], True)
    await local.put(key(1, 1), NORMAL_IP_MASK, [Output(3)], False)
    assert await local.count() == 2
    assert await local.find(k, FULL_MASKS)
    flow = local.table.find(k, FULL_MASKS)
    assert flow is not None
    assert await local.get(flow.ufid) is flow
    assert await local.get("00000000-0000-0000-0000-000000000000") is None
    # A put on an existing megaflow changes its actions.
    await local.put(k, FULL_MASKS, [Output(3)], True)
    assert await local.count() == 2 and flow.actions == (Output(3),)
    assert await local.delete(k, FULL_MASKS)
    assert not await local.delete(k, FULL_MASKS)
    assert flow.dead
    assert await local.count() == 1


async def test_local_flush_all_or_by_port(local: LocalFlows) -> None:
    await local.put(key(1), FULL_MASKS, [Output(2)], True)  # from 1 to 2
    await local.put(key(2), FULL_MASKS, [Output(3)], True)  # from 2 to 3
    await local.put(key(3), FULL_MASKS, [Output(4)], True)  # from 3 to 4
    assert await local.flush(frozenset({3})) == 2  # in_port 3, or output to 3
    assert [f.key[fk.IN_PORT] for f in local.table] == [1]
    assert await local.flush(frozenset({9})) == 0
    assert await local.flush() == 1
    assert await local.count() == 0


async def test_local_dump_in_pages(local: LocalFlows) -> None:
    assert await collect(local) == []
    for n in range(2 * DUMP_PAGE + 5):
        await local.put(key(1, n), FULL_MASKS, [Output(2)], True)
    pages = await collect(local)
    assert [len(p) for p in pages] == [DUMP_PAGE, DUMP_PAGE, 5]
    assert [f.key for p in pages for f in p] == [f.key for f in local.table]


async def test_local_revalidator_rounds(local: LocalFlows) -> None:
    ex = ExecutorCache()
    k = key(1)
    flow = local.table.install(ex.make_flow(k, (NORMAL_IP_MASK, (2, 3), "br0")))
    result = await local.age(10_000, frozenset({"br0"}))
    assert result == AgeResult((), 0, 0)
    changes = {"br0": frozenset({(0, k[fk.ETH_DST])})}
    affected = await local.affected(changes)
    assert affected == [(flow.key, NORMAL_IP_MASK, "br0", (2, 3))]
    assert await local.set_outputs([(flow.key, NORMAL_IP_MASK, (2,))]) == 1
    assert flow.actions == (Output(2),)
    flow.created = 0.0
    assert (await local.age(10_000, frozenset({"br0"}))).expired == 1
    assert local._expired.total == 1


# -- WorkerFlows ------------------------------------------------------------------------------


def record(n: int) -> msg.FlowRecord:
    k = key(1, n)
    return msg.FlowRecord(f"ufid-{n}", k, k, FULL_MASKS, (Output(2),), n, 60 * n, 0.0, True)


@attrs.define
class StubPmd:
    """A WorkerPmd's request(): answers from a table of records, or gone."""

    records: list[msg.FlowRecord] = attrs.field(factory=list)
    gone_after: int | None = None
    asked: list[object] = attrs.field(factory=list)
    answer: Any = None

    async def request(self, body: object) -> Any:
        self.asked.append(body)
        if self.gone_after is not None and len(self.asked) > self.gone_after:
            raise WorkerGone("pmd-c00/id:1 is not running")
        if isinstance(body, msg.DumpFlows):
            return self.records[body.start : body.start + body.limit]
        return self.answer


def worker_flows(stub: StubPmd) -> WorkerFlows:
    return WorkerFlows(stub)  # type: ignore[arg-type]


async def test_worker_requests_carry_the_arguments() -> None:
    stub = StubPmd(answer=7)
    flows = worker_flows(stub)
    k, m = key(1), NORMAL_IP_MASK
    assert await flows.count() == 7
    assert await flows.find(k, m) is True
    await flows.put(k, m, [Output(2)], False)
    assert await flows.delete(k, m) is True
    assert await flows.flush() == 7
    assert await flows.flush(frozenset({3})) == 7
    await flows.age(500, frozenset({"br0"}))
    await flows.affected({"br0": None})
    assert await flows.set_outputs([(masked(k, m), m, (2,))]) == 7
    assert stub.asked == [
        msg.CountFlows(),
        msg.FindFlow(k, m),
        msg.PutFlow(k, m, (Output(2),), False),
        msg.DeleteFlow(k, m),
        msg.FlushFlows(None),
        msg.FlushFlows(frozenset({3})),
        msg.AgeFlows(500, frozenset({"br0"})),
        msg.AffectedFlows({"br0": None}),
        msg.SetOutputs(((masked(k, m), m, (2,)),)),
    ]


async def test_worker_answers_of_the_wrong_kind() -> None:
    flows = worker_flows(StubPmd(answer="not a record"))
    assert await flows.get("ufid-1") is None
    assert await flows.age(1, frozenset()) == AgeResult((), 0, 0)
    rec = record(1)
    assert await worker_flows(StubPmd(answer=rec)).get("ufid-1") is rec
    result = AgeResult((("br0", key(1)),), 1, 2)
    assert await worker_flows(StubPmd(answer=result)).age(1, frozenset()) is result


@pytest.mark.parametrize("n", [0, 5, DUMP_PAGE, 2 * DUMP_PAGE + 3])
async def test_worker_dump_pages(n: int) -> None:
    stub = StubPmd([record(i) for i in range(n)])
    pages = await collect(worker_flows(stub))
    assert [f for p in pages for f in p] == stub.records
    assert all(0 < len(p) <= DUMP_PAGE for p in pages)
    # Page after page until a short one (an empty one when the count is a multiple).
    starts = [b.start for b in stub.asked if isinstance(b, msg.DumpFlows)]
    assert starts == list(range(0, n + 1, DUMP_PAGE))


async def test_worker_gone_gives_the_defaults() -> None:
    flows = worker_flows(StubPmd(gone_after=0))
    k, m = key(1), FULL_MASKS
    assert await flows.count() == 0
    assert await flows.find(k, m) is False
    assert await flows.put(k, m, [Output(2)], True) is None
    assert await flows.delete(k, m) is False
    assert await flows.flush() == 0
    assert await flows.get("ufid-1") is None
    assert await collect(flows) == []
    assert await flows.age(10_000, frozenset({"br0"})) == AgeResult((), 0, 0)
    assert await flows.affected({"br0": None}) == []
    assert await flows.set_outputs([(k, m, (1,))]) == 0


async def test_worker_gone_in_the_middle_of_a_dump() -> None:
    stub = StubPmd([record(i) for i in range(3 * DUMP_PAGE)], gone_after=1)
    pages = await collect(worker_flows(stub))
    assert [len(p) for p in pages] == [DUMP_PAGE]
