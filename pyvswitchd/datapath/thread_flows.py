"""A PMD's flow table as the daemon reaches it, in this process or in a worker's.

OVS keeps megaflows per PMD thread; here a PMD may be a worker process,
whose table only it may touch.  The ``dpctl`` flow commands and the
revalidator therefore go through :class:`ThreadFlows`: :class:`LocalFlows`
works on a table of this process (the main thread's, or a PMD task's in
unit tests) directly, :class:`WorkerFlows` asks the worker, which applies
the change between two iterations.  A worker that ends meanwhile simply
has nothing left to report.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..odp.actions import Action
from ..odp.flow_key import FlowKey, FlowMask
from . import worker_messages as msg
from .flow_table import DpFlow, FlowTable
from .revalidator import Affected, AgeResult, Changes, Update, affected_flows, age_flows
from .revalidator import set_outputs as set_table_outputs
from .worker_pmd import WorkerGone, WorkerPmd

if TYPE_CHECKING:
    from ..observe.coverage import Counter
    from .upcall import ExecutorCache

#: Flows one dump request brings back from a worker.
DUMP_PAGE = 1000

#: A flow as the commands format it (both have the same reading attributes).
FlowView = DpFlow | msg.FlowRecord


class ThreadFlows(Protocol):
    """One thread's megaflows, for the commands and the revalidator."""

    async def count(self) -> int: ...
    async def find(self, key: FlowKey, mask: FlowMask) -> bool: ...
    async def put(
        self, unmasked_key: FlowKey, mask: FlowMask, actions: Sequence[Action], exact_type: bool
    ) -> None: ...
    async def delete(self, key: FlowKey, mask: FlowMask) -> bool: ...
    async def flush(self, port_nos: frozenset[int] | None = None) -> int: ...
    async def get(self, ufid: str) -> FlowView | None: ...
    def dump(self) -> AsyncGenerator[list[FlowView], None]: ...
    async def age(self, max_idle_ms: int, bridges: frozenset[str]) -> AgeResult: ...
    async def affected(self, changes: Changes) -> list[Affected]: ...
    async def set_outputs(self, updates: list[Update]) -> int: ...


class LocalFlows:
    """:class:`ThreadFlows` of a table in the daemon's own process."""

    def __init__(self, table: FlowTable, executors: ExecutorCache, expired: Counter) -> None:
        self.table = table
        self._executors = executors
        self._expired = expired

    async def count(self) -> int:
        return len(self.table)

    async def find(self, key: FlowKey, mask: FlowMask) -> bool:
        return self.table.find(key, mask) is not None

    async def put(
        self, unmasked_key: FlowKey, mask: FlowMask, actions: Sequence[Action], exact_type: bool
    ) -> None:
        self.table.put(unmasked_key, mask, actions, exact_type)

    async def delete(self, key: FlowKey, mask: FlowMask) -> bool:
        flow = self.table.find(key, mask)
        if flow is None:
            return False
        self.table.remove(flow)
        return True

    async def flush(self, port_nos: frozenset[int] | None = None) -> int:
        return self.table.flush() if port_nos is None else self.table.remove_ports(port_nos)

    async def get(self, ufid: str) -> FlowView | None:
        return self.table.by_ufid(ufid)

    async def dump(self) -> AsyncGenerator[list[FlowView], None]:
        flows: list[FlowView] = list(self.table)
        for start in range(0, len(flows), DUMP_PAGE):
            yield flows[start : start + DUMP_PAGE]

    async def age(self, max_idle_ms: int, bridges: frozenset[str]) -> AgeResult:
        return age_flows(self.table, max_idle_ms, bridges, self._expired)

    async def affected(self, changes: Changes) -> list[Affected]:
        return affected_flows(self.table, changes)

    async def set_outputs(self, updates: list[Update]) -> int:
        return set_table_outputs(self.table, updates, self._executors)


class WorkerFlows:
    """:class:`ThreadFlows` of a PMD worker process (each call a request)."""

    def __init__(self, pmd: WorkerPmd) -> None:
        self.pmd = pmd

    async def _ask(self, body: object, default: Any) -> Any:
        try:
            return await self.pmd.request(body)
        except WorkerGone:
            return default

    async def count(self) -> int:
        return int(await self._ask(msg.CountFlows(), 0))

    async def find(self, key: FlowKey, mask: FlowMask) -> bool:
        return bool(await self._ask(msg.FindFlow(key, mask), False))

    async def put(
        self, unmasked_key: FlowKey, mask: FlowMask, actions: Sequence[Action], exact_type: bool
    ) -> None:
        await self._ask(msg.PutFlow(unmasked_key, mask, tuple(actions), exact_type), None)

    async def delete(self, key: FlowKey, mask: FlowMask) -> bool:
        return bool(await self._ask(msg.DeleteFlow(key, mask), False))

    async def flush(self, port_nos: frozenset[int] | None = None) -> int:
        return int(await self._ask(msg.FlushFlows(port_nos), 0))

    async def get(self, ufid: str) -> FlowView | None:
        record = await self._ask(msg.GetFlow(ufid), None)
        return record if isinstance(record, msg.FlowRecord) else None

    async def dump(self) -> AsyncGenerator[list[FlowView], None]:
        start = 0
        while True:
            page: list[FlowView] = await self._ask(msg.DumpFlows(start, DUMP_PAGE), [])
            if page:
                yield page
            if len(page) < DUMP_PAGE:
                return
            start += len(page)

    async def age(self, max_idle_ms: int, bridges: frozenset[str]) -> AgeResult:
        result = await self._ask(msg.AgeFlows(max_idle_ms, bridges), None)
        return result if isinstance(result, AgeResult) else AgeResult((), 0, 0)

    async def affected(self, changes: Changes) -> list[Affected]:
        result: list[Affected] = await self._ask(msg.AffectedFlows(dict(changes)), [])
        return result

    async def set_outputs(self, updates: list[Update]) -> int:
        return int(await self._ask(msg.SetOutputs(tuple(updates)), 0))
