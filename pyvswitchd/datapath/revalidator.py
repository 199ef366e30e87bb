"""The revalidator: keeps installed megaflows honest.

OVS's revalidator threads dump the datapath flows periodically and, for
each one, delete it if it has been idle longer than ``max-idle``, or
re-translate it if the state it was derived from changed.  Here one main
task does the same every REVALIDATE_INTERVAL:

* flows idle for more than ``max-idle`` ms (default 10 s) are deleted;
* MAC learning entries past ``mac-aging-time`` expire;
* when the MAC entry a flow's destination maps to appeared, moved or went
  away since the last pass, the flow's NORMAL decision is recomputed, and
  the flow is modified in place when the outputs differ — a flow that flooded to an
  unknown destination becomes unicast once that destination is learned.

Changes are applied between PMD iterations (single thread), so a PMD sees
either the old or the new actions of a flow, never a mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import attrs

from ..odp.flow_key import ETH_DST, VLAN_TCI
from ..odp.protocols import VLAN_VID_MASK
from .flow_table import DpFlow, FlowTable

if TYPE_CHECKING:
    from ..observe.coverage import Coverage

#: Seconds between two revalidation passes.
REVALIDATE_INTERVAL = 0.5

_OUTPUT_PORT = attrgetter("port")


@attrs.define
class RevalidatorStats:
    passes: int = 0
    flows_expired: int = 0
    flows_modified: int = 0
    flows_deleted: int = 0


class Revalidator:
    """Periodic flow aging and revalidation for one datapath."""

    def __init__(
        self,
        tables: Callable[[], Iterable[FlowTable]],
        bridges: Callable[[], Mapping[str, Any]],
        compile_outputs: Callable[[tuple[int, ...]], tuple[list[Any], Any]],
        coverage: Coverage,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tables = tables
        self._bridges = bridges
        self._compile = compile_outputs
        self._clock = clock
        self.max_idle_ms = 10000
        self.stats = RevalidatorStats()
        self._cov_expired = coverage.define("revalidate_flow_expired")
        self._cov_modified = coverage.define("revalidate_flow_modified")

    def run_once(self) -> None:
        """One pass over every flow table (cheap when nothing changed)."""
        now = self._clock()
        self.stats.passes += 1
        bridges = self._bridges()
        changes: dict[str, set[tuple[int, int]] | None] = {}
        for bridge in bridges.values():
            bridge.mac_learning.expire()
        max_idle = self.max_idle_ms / 1000.0
        tables = list(self._tables())
        for table in tables:
            for flow in table:
                last = flow.used or flow.created
                if now - last > max_idle:
                    table.remove(flow)
                    self.stats.flows_expired += 1
                    self._cov_expired.inc()
                    continue
                if flow.bridge is None:
                    continue
                bridge = bridges.get(flow.bridge)
                if bridge is None:
                    table.remove(flow)
                    self.stats.flows_deleted += 1
                    continue
                if flow.packets != flow.reval_packets:
                    # Megaflow hits never reach the bridge: keep their MACs alive.
                    flow.reval_packets = flow.packets
                    bridge.relearn(flow.key)
        # Learning happens on upcalls and relearns: collect what changed once.
        for name, bridge in bridges.items():
            changes[name] = bridge.mac_learning.take_changes()
        for table in tables:
            for flow in table:
                if flow.bridge is None or flow.bridge not in changes:
                    continue
                changed = changes[flow.bridge]
                # A NORMAL decision depends on the destination's entry only.
                if changed is None or (
                    (flow.key[VLAN_TCI] & VLAN_VID_MASK, flow.key[ETH_DST]) in changed
                ):
                    self._revalidate(table, flow, bridges[flow.bridge])

    def _revalidate(self, table: FlowTable, flow: DpFlow, bridge: Any) -> None:
        # A bridge's flows only output (their actions came from compile_outputs).
        outputs = tuple(map(_OUTPUT_PORT, flow.actions))
        decision = bridge.revalidate(flow.key, flow.mask, outputs)
        if decision is None:
            return
        actions, execute = self._compile(tuple(decision.outputs))
        table.set_actions(flow, actions, execute)
        self.stats.flows_modified += 1
        self._cov_modified.inc()
