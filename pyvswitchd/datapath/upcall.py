"""The upcall: what happens to a packet that missed every cache and megaflow.

A miss in a PMD's classifier (the pipeline's step 5) comes here with the
packet's flow key.  The bridge of the key's in_port decides with its
NORMAL action (:mod:`.normal`); the decision's output ports become the
megaflow's actions and its mask the megaflow's mask, and the megaflow is
installed in the missing PMD's own flow table, where the packets that
follow hit it.  A key whose in_port has no bridge (the port just left) is
counted as ``datapath_drop_upcall_error`` and the packet dropped.

Flows with the same output list share one action list and one compiled
executor (:meth:`Upcall.compile_outputs`), which lets the pipeline run a
batch spread over many such flows with a single action call; the
revalidator uses the same cache when a MAC table change moves flows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..odp.actions import Output
from ..odp.flow_key import IN_PORT, FlowKey
from .execute import compile_actions
from .flow_table import DpFlow, Executor

if TYPE_CHECKING:
    from ..observe.coverage import Coverage
    from .normal import NormalBridge
    from .pmd import Pmd
    from .port import Port


class Upcall:
    """The datapath's miss handler: bridge decision, shared actions, megaflow install.

    ``ports`` and ``bridges`` are the datapath's live maps (port number to
    port, bridge name to its NORMAL switch), read at every upcall.
    """

    def __init__(
        self, ports: Mapping[int, Port], bridges: Mapping[str, NormalBridge], coverage: Coverage
    ) -> None:
        self._ports = ports
        self._bridges = bridges
        self._failed = coverage.define("datapath_drop_upcall_error")
        self._executors: dict[tuple[int, ...], tuple[list[Output], Executor]] = {}

    def compile_outputs(self, outputs: tuple[int, ...]) -> tuple[list[Output], Executor]:
        """Actions and executor for an output list, shared by every flow with it."""
        cached = self._executors.get(outputs)
        if cached is None:
            actions = [Output(p) for p in outputs]
            cached = self._executors[outputs] = (actions, compile_actions(actions))
        return cached

    def handle(self, pmd: Pmd, key: FlowKey) -> DpFlow | None:
        """A miss on ``pmd``: the in_port's bridge decides and a megaflow is installed."""
        port = self._ports.get(key[IN_PORT])
        bridge = self._bridges.get(port.bridge) if port is not None and port.bridge else None
        if bridge is None:
            self._failed.inc()
            return None
        decision = bridge.handle(key)
        actions, execute = self.compile_outputs(decision.outputs)
        flow = DpFlow(
            key,
            decision.mask,
            actions,
            execute,
            bridge=bridge.name,
        )
        return pmd.flow_table.install(flow)
