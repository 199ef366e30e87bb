"""A PMD's table of installed megaflows, with its classifiers and caches.

OVS keeps datapath flows per PMD thread (``dpctl/dump-flows`` lists them
per PMD), one classifier per in_port, and the EMC/SMC in front.  A
:class:`DpFlow` carries its masked key, mask, actions (data and the
compiled callable that runs them on a batch) and its statistics.  Deleting
a flow marks it dead first, so cache entries that still point at it miss
instead of forwarding with stale actions.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, Protocol, TypeAlias

from ..odp.actions import Action
from ..odp.flow_key import IN_PORT, FlowKey, FlowMask, masked
from .clock import Clock
from .dpcls import Dpcls, Projector, make_projector
from .emc import Emc, Smc
from .execute import CompiledActions, compile_actions

#: A flow's compiled actions, run on each batch that hits it.
Executor: TypeAlias = CompiledActions


def flow_ufid(key: FlowKey, mask: FlowMask) -> str:
    """The ufid of the flow for ``key`` (masked or not) under ``mask``, as dumps show it."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, repr((masked(key, mask), mask))))


class DpFlow:
    """One installed megaflow."""

    __slots__ = (
        "_ufid",
        "actions",
        "bridge",
        "bytes",
        "created",
        "dead",
        "execute",
        "full_key",
        "key",
        "mask",
        "packet_type_exact",
        "packets",
        "project",
        "projected",
        "reval_packets",
        "used",
    )

    def __init__(
        self,
        key: FlowKey,
        mask: FlowMask,
        actions: Sequence[Action],
        execute: Executor,
        *,
        bridge: str | None = None,
        ufid: str | None = None,
        packet_type_exact: bool = True,
    ) -> None:
        self.key = masked(key, mask)
        #: The key as installed, wildcarded fields included: ``-m`` dumps print it.
        self.full_key = key
        #: Whether the flow matches the packet type (OVS omits packet_type otherwise).
        self.packet_type_exact = packet_type_exact
        self.mask = mask
        self.actions = tuple(actions)
        self.execute = execute
        self.bridge = bridge  # set for flows installed by a bridge's upcall
        # Built on first use: installing a flow is on the upcall path.
        self.project: Projector | None = None
        self.projected: Hashable = None
        self._ufid = ufid
        self.packets = 0
        self.bytes = 0
        self.reval_packets = 0  # packets seen by the last revalidator pass
        self.used = 0.0  # its table's clock (seconds) at the last packet, 0: never
        self.created = time.monotonic()  # reset to its table's clock when installed
        self.dead = False

    @property
    def ufid(self) -> str:
        """A stable UUID for the megaflow (OVS's ufid), derived from key and mask."""
        if self._ufid is None:
            self._ufid = flow_ufid(self.key, self.mask)
        return self._ufid

    def matches(self, key: FlowKey) -> bool:
        if self.project is None:
            self.project = make_projector(self.mask)
            self.projected = self.project(self.key)
        return bool(self.project(key) == self.projected)

    def set_actions(self, actions: Sequence[Action], execute: Executor) -> None:
        # Swapped between PMD iterations: a batch sees the old or the new pair whole.
        self.actions = tuple(actions)
        self.execute = execute

    def __repr__(self) -> str:
        return f"DpFlow({self.ufid}, actions={self.actions})"


class FlowTableObserver(Protocol):
    """Told about every flow entering, changing or leaving a table.

    The offload providers mirror each PMD's table this way
    (:meth:`~.dp_offload.DatapathOffload.flow_observer`).
    """

    def flow_installed(self, flow: DpFlow) -> None: ...
    def flow_modified(self, flow: DpFlow) -> None: ...
    def flow_removed(self, flow: DpFlow) -> None: ...


class FlowTable:
    """Megaflows of one PMD (or of the main thread)."""

    def __init__(
        self,
        emc_insert_min: int,
        observer: FlowTableObserver | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        #: The thread's clock: flows' ``used`` and ``created`` times are on it.
        self.clock = clock if clock is not None else Clock()
        self.classifiers: dict[int, Dpcls[DpFlow]] = {}
        self.flows: dict[tuple[FlowKey, FlowMask], DpFlow] = {}
        self.emc: Emc[DpFlow] = Emc(emc_insert_min)
        self.smc: Smc[DpFlow] = Smc()
        self.smc_enabled = False
        self._observer = observer

    def __len__(self) -> int:
        return len(self.flows)

    def __iter__(self) -> Iterator[DpFlow]:
        return iter(list(self.flows.values()))

    def lookup(self, key: FlowKey) -> tuple[DpFlow | None, int]:
        cls = self.classifiers.get(key[IN_PORT])
        if cls is None:
            return None, 0
        flow, position = cls.lookup(key)
        return flow, position

    def find(self, key: FlowKey, mask: FlowMask) -> DpFlow | None:
        return self.flows.get((masked(key, mask), mask))

    def by_ufid(self, ufid: str) -> DpFlow | None:
        for flow in self.flows.values():
            if flow.ufid == ufid:
                return flow
        return None

    def install(self, flow: DpFlow) -> DpFlow:
        """Add ``flow`` unless an identical megaflow exists; return the one in the table."""
        existing = self.flows.get((flow.key, flow.mask))
        if existing is not None:
            return existing
        self.flows[(flow.key, flow.mask)] = flow
        flow.created = self.clock.seconds()
        cls = self.classifiers.get(flow.key[IN_PORT])
        if cls is None:
            cls = self.classifiers[flow.key[IN_PORT]] = Dpcls()
        cls.insert(flow.key, flow.mask, flow)
        if self._observer is not None:
            self._observer.flow_installed(flow)
        return flow

    def set_actions(self, flow: DpFlow, actions: Sequence[Action], execute: Executor) -> None:
        """Change an installed flow's actions (revalidation, ``dpctl/mod-flow``)."""
        flow.set_actions(actions, execute)
        if self._observer is not None:
            self._observer.flow_modified(flow)

    def remove(self, flow: DpFlow) -> None:
        if self.flows.pop((flow.key, flow.mask), None) is None:
            return
        flow.dead = True
        self.emc.stale = True
        if self._observer is not None:
            self._observer.flow_removed(flow)
        cls = self.classifiers.get(flow.key[IN_PORT])
        if cls is not None:
            cls.remove(flow.key, flow.mask)
            if not cls.subtables:
                del self.classifiers[flow.key[IN_PORT]]

    def flush(self) -> int:
        n = len(self.flows)
        observer = self._observer
        for flow in self.flows.values():
            flow.dead = True
            if observer is not None:
                observer.flow_removed(flow)
        self.flows.clear()
        self.classifiers.clear()
        self.emc.clear()
        self.smc.clear()
        return n

    def put(
        self, unmasked_key: FlowKey, mask: FlowMask, actions: Sequence[Any], exact_type: bool
    ) -> None:
        """``dpctl/add-flow`` / ``mod-flow``: install, or change the actions of, a megaflow."""
        execute = compile_actions(list(actions))
        existing = self.find(unmasked_key, mask)
        if existing is not None:
            self.set_actions(existing, actions, execute)
            return
        self.install(DpFlow(unmasked_key, mask, actions, execute, packet_type_exact=exact_type))

    def remove_ports(self, port_nos: frozenset[int]) -> int:
        """Delete every flow from or to one of ``port_nos`` (a port left); how many."""
        n = 0
        for flow in self:
            if flow.key[IN_PORT] in port_nos or any(
                getattr(a, "port", None) in port_nos for a in flow.actions
            ):
                self.remove(flow)
                n += 1
        return n

    def rerank(self) -> None:
        for cls in self.classifiers.values():
            cls.rerank()
