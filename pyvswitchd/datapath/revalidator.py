"""The revalidator: keeps installed megaflows honest.

OVS's revalidator threads dump the datapath flows periodically and, for
each one, delete it if it has been idle longer than ``max-idle``, or
re-translate it if the state it was derived from changed.  Here one task
of the daemon does the same every REVALIDATE_INTERVAL:

* flows idle for more than ``max-idle`` ms (default 10 s) are deleted;
* MAC learning entries past ``mac-aging-time`` expire, and entries whose
  flows saw packets are refreshed (megaflow hits never reach the bridge);
* when the MAC entry a flow's destination maps to appeared, moved or went
  away since the last pass, the flow's NORMAL decision is recomputed, and
  the flow is modified in place when the outputs differ -- a flow that
  flooded to an unknown destination becomes unicast once that destination
  is learned.

Flows live with their PMD, which may be another process, while the bridges
live in the daemon; so a pass runs in two rounds over every flow table
(:class:`FlowOwner`): the first ages flows and reports which MACs to
refresh, the second lists the flows a MAC change affects, and the daemon
sends their new outputs back.  The table-side halves are the plain
functions :func:`age_flows`, :func:`affected_flows` and :func:`set_outputs`,
which a PMD worker runs on its own table.  A PMD applies a change between
two iterations, so it sees either the old or the new actions of a flow,
never a mix.

Operators steer it as OVS's ``revalidator/*`` commands do (see
:mod:`.upcall_commands`): :meth:`Revalidator.pause` holds the passes back
(returning once no pass is under way), :meth:`Revalidator.resume` lets them
go on, :meth:`Revalidator.wait_pass` returns once a pass that started after
the call has finished (and asks for one at once).  Each pass also keeps the
figures ``upcall/show`` prints: the flow count's running average and
maximum, the pass's duration and the flow limit OVS would derive from them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ..odp.actions import Output
from ..odp.flow_key import ETH_DST, ETH_SRC, IN_PORT, VLAN_TCI, FlowKey, FlowMask
from ..odp.protocols import VLAN_VID_MASK
from .flow_table import FlowTable

if TYPE_CHECKING:
    from ..observe.coverage import Counter, Coverage
    from .upcall import ExecutorCache

#: Seconds between two revalidation passes.
REVALIDATE_INTERVAL = 0.5
#: OVS's default ``flow-limit`` and the limit a datapath starts with.
FLOW_LIMIT_MAX = 200_000
FLOW_LIMIT_START = 10_000

#: A MAC entry to refresh: (bridge, a key of a flow that saw packets).
Refresh = tuple[str, FlowKey]
#: A flow whose decision may have changed: (key, mask, bridge, current outputs).
Affected = tuple[FlowKey, FlowMask, str, tuple[int, ...]]
#: New outputs for a flow: (key, mask, outputs).
Update = tuple[FlowKey, FlowMask, tuple[int, ...]]
#: Per bridge, the (VID, MAC) entries that changed, or None: anything may have.
Changes = Mapping[str, "frozenset[tuple[int, int]] | None"]


@attrs.define
class RevalidatorStats:
    passes: int = 0
    flows_expired: int = 0
    flows_modified: int = 0
    flows_deleted: int = 0
    #: Flow count when a pass starts: running average ((avg + n) / 2) and maximum.
    avg_flows: int = 0
    max_flows: int = 0
    #: How long the last pass took, ms (at least 1 once a pass ran).
    dump_duration_ms: int = 0
    #: The limit OVS's revalidator would set from the passes' durations.
    flow_limit: int = FLOW_LIMIT_START


def next_flow_limit(limit: int, duration_ms: int, n_flows: int) -> int:
    """The flow limit after a pass of ``duration_ms`` over ``n_flows`` flows (OVS's rule).

    Slow passes shrink it, fast ones over a full table let it grow by 1000;
    it stays within [1000, FLOW_LIMIT_MAX].
    """
    if duration_ms > 2000:
        limit //= duration_ms // 1000
    elif duration_ms > 1300:
        limit = limit * 3 // 4
    elif duration_ms < 1000 and limit < n_flows * 1000 // duration_ms:
        limit += 1000
    return min(FLOW_LIMIT_MAX, max(limit, 1000))


@attrs.frozen
class AgeResult:
    refresh: tuple[Refresh, ...]
    expired: int
    deleted: int


def age_flows(
    table: FlowTable,
    max_idle_ms: int,
    bridges: frozenset[str],
    expired_counter: Counter | None = None,
    *,
    now: float | None = None,
) -> AgeResult:
    """First round on one table: delete idle flows and flows of bridges that went away."""
    now = table.clock.seconds() if now is None else now
    max_idle = max_idle_ms / 1000.0
    refresh: dict[tuple[str, int, int, int], FlowKey] = {}
    expired = deleted = 0
    for flow in table:
        if now - (flow.used or flow.created) > max_idle:
            table.remove(flow)
            expired += 1
            if expired_counter is not None:
                expired_counter.inc()
            continue
        bridge = flow.bridge
        if bridge is None:
            continue
        if bridge not in bridges:
            table.remove(flow)
            deleted += 1
            continue
        if flow.packets != flow.reval_packets:
            flow.reval_packets = flow.packets
            key = flow.key
            ident = (bridge, key[IN_PORT], key[VLAN_TCI] & VLAN_VID_MASK, key[ETH_SRC])
            refresh.setdefault(ident, key)
    return AgeResult(tuple((ident[0], key) for ident, key in refresh.items()), expired, deleted)


def affected_flows(table: FlowTable, changes: Changes) -> list[Affected]:
    """Second round on one table: the bridge flows that depend on a changed MAC entry."""
    out: list[Affected] = []
    for flow in table:
        bridge = flow.bridge
        if bridge is None or bridge not in changes:
            continue
        changed = changes[bridge]
        # A NORMAL decision depends on the destination's entry only.
        if changed is None or (flow.key[VLAN_TCI] & VLAN_VID_MASK, flow.key[ETH_DST]) in changed:
            outputs = tuple(a.port for a in flow.actions if isinstance(a, Output))
            out.append((flow.key, flow.mask, bridge, outputs))
    return out


def set_outputs(table: FlowTable, updates: Iterable[Update], executors: ExecutorCache) -> int:
    """Give flows their new outputs; how many were still there to change."""
    n = 0
    for key, mask, outputs in updates:
        flow = table.flows.get((key, mask))
        if flow is None:
            continue  # it went away meanwhile
        actions, execute = executors.get(outputs)
        table.set_actions(flow, actions, execute)
        n += 1
    return n


class FlowOwner(Protocol):
    """A flow table as the revalidator reaches it (in this process or a worker's)."""

    async def age(self, max_idle_ms: int, bridges: frozenset[str]) -> AgeResult: ...
    async def affected(self, changes: Changes) -> list[Affected]: ...
    async def set_outputs(self, updates: list[Update]) -> int: ...


class Revalidator:
    """Periodic flow aging and revalidation for one datapath."""

    def __init__(
        self,
        owners: Callable[[], Iterable[FlowOwner]],
        bridges: Callable[[], Mapping[str, Any]],
        coverage: Coverage,
        *,
        count_flows: Callable[[], int] = lambda: 0,
        log_dump: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``count_flows`` says how many flows the datapath holds (for ``upcall/show``);
        ``log_dump``, run at the start of each pass, logs the flows the pass sees."""
        self._owners = owners
        self._log_dump = log_dump
        self._bridges = bridges
        self._count_flows = count_flows
        self.max_idle_ms = 10000
        self.stats = RevalidatorStats()
        self.expired_counter = coverage.define("revalidate_flow_expired")
        self._cov_modified = coverage.define("revalidate_flow_modified")
        self.paused = False
        self._resumed = trio.Event()
        self._resumed.set()
        self._kick = trio.Event()
        self._completed = 0
        self._pass_done = trio.Event()
        self._idle = trio.Event()
        self._idle.set()

    # -- operator control -------------------------------------------------------------

    async def pause(self) -> None:
        """Hold the passes back; returns once no pass is under way."""
        if not self.paused:
            self.paused = True
            self._resumed = trio.Event()
        await self._idle.wait()

    def resume(self) -> None:
        """Let the passes go on (a no-op when not paused)."""
        self.paused = False
        self._resumed.set()

    async def wait_pass(self) -> None:
        """Return once a pass that starts after this call has finished.

        The next pass is asked for at once; while paused, this waits for
        the resume (as OVS's ``revalidator/wait`` does).
        """
        target = self.stats.passes + 1
        self._kick.set()
        while self._completed < target:
            await self._pass_done.wait()

    async def next_pass(self, interval: float) -> None:
        """Sleep until the next pass is due: after ``interval`` s, or at once when one is
        asked for, but never while paused."""
        with trio.move_on_after(interval):
            await self._kick.wait()
        self._kick = trio.Event()
        while self.paused:
            await self._resumed.wait()

    # -- a pass ---------------------------------------------------------------------

    async def run_once(self) -> None:
        """One pass over every flow table (cheap when nothing changed)."""
        self.stats.passes += 1
        stats = self.stats
        n_flows = self._count_flows()
        stats.max_flows = max(stats.max_flows, n_flows)
        stats.avg_flows = (stats.avg_flows + n_flows) // 2
        started = time.monotonic()
        self._idle = trio.Event()
        try:
            await self._pass()
        finally:
            duration = max(int((time.monotonic() - started) * 1000), 1)
            stats.dump_duration_ms = duration
            stats.flow_limit = next_flow_limit(stats.flow_limit, duration, n_flows)
            self._completed = stats.passes
            self._idle.set()
            done, self._pass_done = self._pass_done, trio.Event()
            done.set()

    async def _pass(self) -> None:
        bridges = self._bridges()
        names = frozenset(bridges)
        if bridges and self._log_dump is not None:
            await self._log_dump()
        for bridge in bridges.values():
            bridge.mac_learning.expire()
        owners = list(self._owners())
        for owner in owners:
            result = await owner.age(self.max_idle_ms, names)
            self.stats.flows_expired += result.expired
            self.stats.flows_deleted += result.deleted
            for name, key in result.refresh:
                bridge = bridges.get(name)
                if bridge is not None:
                    bridge.relearn(key)
        # Learning happens on upcalls and relearns: collect what changed once.
        changes: dict[str, frozenset[tuple[int, int]] | None] = {}
        for name, bridge in bridges.items():
            changed = bridge.mac_learning.take_changes()
            if changed is None or changed:
                changes[name] = None if changed is None else frozenset(changed)
        if not changes:
            return
        for owner in owners:
            affected = await owner.affected(changes)
            if not affected:
                continue
            updates: list[Update] = []
            for key, mask, name, outputs in affected:
                decision = bridges[name].revalidate(key, mask, outputs)
                if decision is not None:
                    updates.append((key, mask, tuple(decision.outputs)))
            if updates:
                modified = await owner.set_outputs(updates)
                if modified:
                    self.stats.flows_modified += modified
                    self._cov_modified.add(modified)
