"""The ``dummy`` and ``dummy_x`` offload providers: hardware simulated in software.

Both classes serve the ``dummy`` datapath type and accept every port whose
netdev type starts with ``dummy``, so with the default priority every such
port lands in ``dummy``; ``dummy_x`` exists to exercise ordering and
per-port priority.  Only ``dummy`` instances simulate hardware.

The simulation, per owned port:

* a flow table keyed by ufid; each rule holds the match with ``in_port``
  wildcarded (the table is per port already), a flow mark, statistics, the
  flow reference of every PMD that installed the ufid, and the actions when
  the rule is *fully* offloadable (every action an output to another
  ``dummy-pmd`` port of this instance);
* a receive classifier (:meth:`DummyOffload.rx_packet`): the first rule
  matching a packet gives it the rule's mark (partial offload: the PMD then
  finds its flow by mark via :meth:`flow_ref_for_mark`), or steals it into
  the port's hardware queue (full offload) to be executed "in hardware";
* the counters ``rx_offload_partial``, ``rx_offload_full``,
  ``rx_offload_miss`` and ``rx_offload_pipe_abort``.

``dummy`` also hands every PMD a work callback (the PMD lifecycle hooks);
the callback counts coverage ``dummy_offload_do_work`` and executes the
packets queued in that PMD's simulated hardware receive queue.

Differences from OVS: each instance has its own mark pool (OVS creates a
pool only for the first instance that ever allocates a mark); the pool
hands out the smallest free mark.
"""

from __future__ import annotations

import collections
import errno
import heapq
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..odp.actions import Action, Output
from ..odp.flow_key import IN_PORT, FlowKey, FlowMask, masked
from .provider import (
    INVALID_FLOW_MARK,
    HwPacketSink,
    ImplType,
    OffloadFlowStats,
    OffloadPort,
    OffloadProvider,
    OffloadServices,
    RxVerdict,
    SimulatedHardware,
    UnreferenceCallback,
    WorkCallback,
)

if TYPE_CHECKING:
    from .faults import OffloadFaults

#: Largest mark the pool hands out (marks are 32-bit; all ones is reserved).
MAX_FLOW_MARK = 2**32 - 2
#: Netdev type whose ports a fully offloaded rule may output to.
FULL_OFFLOAD_PORT_TYPE = "dummy-pmd"
#: What the dummy provider stores as a PMD's work context, as OVS does.
PMD_CONTEXT_LABEL = "DUMMY_OFFLOAD_WORK"


def format_ufid(ufid: int) -> str:
    """A ufid as ``dpctl`` prints it (UUID layout)."""
    return str(uuid.UUID(int=ufid & (2**128 - 1)))


def format_ptr(value: object) -> str:
    """A stand-in for C's ``%p``: ``0x0`` for None, else the object's id in hex.

    An object's id is stable while it lives, which is all the lifecycle log
    needs (the same callback and context must print the same way twice).
    """
    return "0x0" if value is None else f"{id(value):#x}"


class MarkPool:
    """Flow marks in ``[1, limit]``; freed marks are reused first."""

    def __init__(self, limit: int = MAX_FLOW_MARK) -> None:
        self.limit = limit
        self._next = 1
        self._free: list[int] = []

    def alloc(self) -> int:
        """A free mark, or INVALID_FLOW_MARK when all are taken."""
        if self._free:
            return heapq.heappop(self._free)
        if self._next > self.limit:
            return INVALID_FLOW_MARK
        mark = self._next
        self._next += 1
        return mark

    def free(self, mark: int) -> None:
        heapq.heappush(self._free, mark)


@attrs.define(eq=False)
class OffloadedFlow:
    """One rule of a port's simulated hardware flow table."""

    ufid: int
    port_no: int
    mark: int
    key: FlowKey
    mask: FlowMask
    #: The actions when the rule is fully offloaded; None for partial offload.
    actions: tuple[Action, ...] | None
    #: pmd_id -> flow reference: several PMDs may install the same ufid.
    refs: dict[int, object] = attrs.field(factory=dict)
    stats: OffloadFlowStats = attrs.field(factory=OffloadFlowStats)

    def matches(self, key: FlowKey) -> bool:
        return masked(key, self.mask) == self.key


@attrs.frozen
class HwPacket:
    """A packet held by the simulated hardware: where it came in, its key, its bytes."""

    port_no: int
    key: FlowKey
    data: bytes


@attrs.define(eq=False)
class DummyPort:
    """Per-port state of a dummy provider."""

    port: OffloadPort
    offload_enabled: bool = False
    flows: dict[int, OffloadedFlow] = attrs.field(factory=dict)
    hw_queue: collections.deque[HwPacket] = attrs.field(factory=collections.deque)
    rx_offload_partial: int = 0
    rx_offload_full: int = 0
    rx_offload_miss: int = 0
    rx_offload_pipe_abort: int = 0


@attrs.define(eq=False)
class DummyPmdContext:
    """What ``dummy`` keeps per PMD: the simulated hardware receive queue."""

    core_id: int
    numa_id: int
    label: str = PMD_CONTEXT_LABEL
    hw_rxq: collections.deque[HwPacket] = attrs.field(factory=collections.deque)
    freed: bool = False

    def free(self) -> None:
        self.hw_rxq.clear()
        self.freed = True


class _DummyBase(OffloadProvider):
    """What ``dummy`` and ``dummy_x`` share (everything but the PMD hook)."""

    dpif_types: ClassVar[tuple[str, ...]] = ("dummy", "netdev")
    impl_type: ClassVar[ImplType] = ImplType.FLOWS_DPIF_SYNCED

    def __init__(self, dp_name: str, services: OffloadServices) -> None:
        super().__init__(dp_name, services)
        self.log = services.vlog.module("dpif_offload_dummy")
        self.ports: dict[int, DummyPort] = {}
        self.marks = MarkPool()
        self._by_mark: dict[int, OffloadedFlow] = {}
        self._unreference: UnreferenceCallback | None = None
        self._enabled_seen = False
        #: Where hardware sends a fully offloaded packet: ``(port_no, data)``.
        self.hw_output: HwPacketSink | None = None
        #: Where a packet goes when the hardware pipeline fails: back to
        #: software receive on its ingress port, ``(port_no, data)``.
        self.sw_reinject: HwPacketSink | None = None
        #: Fully offloaded packets wait on a port's hardware queue.
        self._hw_backlog = False
        #: What the PMD workers' copies of this provider counted, per port.
        self._worker_counts: list[dict[int, dict[str, int]]] = []

    @property
    def simulates_hw(self) -> bool:
        return self.type == "dummy"

    def simulated_hardware(self) -> SimulatedHardware | None:
        return self if self.simulates_hw else None

    # -- life cycle ----------------------------------------------------------

    def close(self) -> None:
        # The datapath may keep internal ports until the end: drop them here.
        for port_no in list(self.ports):
            self.port_del(port_no)

    def set_config(self, other_config: Mapping[str, str]) -> None:
        if self._enabled_seen or not self.services.is_enabled():
            return
        self._enabled_seen = True
        for dport in self.ports.values():
            dport.offload_enabled = True

    def get_debug(self) -> tuple[str, dict[str, Any]]:
        lines: list[str] = []
        ports: dict[str, Any] = {}
        for port_no, dport in self.ports.items():
            counters = self._port_counters(dport)
            for remote in self._worker_counts:
                for name, value in remote.get(port_no, {}).items():
                    counters[name] = counters.get(name, 0) + value
            lines.append(f"  - {dport.port.name}: port_no: {dport.port.port_no}")
            lines.extend(f"    {name:<21}: {value}" for name, value in counters.items())
            ports[dport.port.name] = {
                "port_no": dport.port.port_no,
                **dict(sorted(counters.items())),
            }
        return "".join(line + "\n" for line in lines), ({"ports": ports} if ports else {})

    @staticmethod
    def _port_counters(dport: DummyPort) -> dict[str, int]:
        return {
            "rx_offload_partial": dport.rx_offload_partial,
            "rx_offload_full": dport.rx_offload_full,
            "rx_offload_miss": dport.rx_offload_miss,
            "rx_offload_pipe_abort": dport.rx_offload_pipe_abort,
        }

    def worker_counters(self) -> dict[int, dict[str, int]]:
        return {no: self._port_counters(dport) for no, dport in self.ports.items()}

    def add_worker_counters(self, counters: Sequence[dict[int, dict[str, int]]]) -> None:
        self._worker_counts = list(counters)

    def get_global_stats(self) -> dict[str, int]:
        return {"Offloaded port count": len(self.ports)}

    # -- ports ---------------------------------------------------------------

    def can_offload(self, port: OffloadPort) -> bool:
        return port.type.startswith("dummy")

    def port_add(self, port: OffloadPort) -> int:
        if port.port_no in self.ports:
            return errno.EEXIST
        self.ports[port.port_no] = DummyPort(port, offload_enabled=self.services.is_enabled())
        return 0

    def port_del(self, port_no: int) -> int:
        dport = self.ports.pop(port_no, None)
        if dport is None:
            return errno.ENOENT
        for flow in dport.flows.values():
            for pmd_id, ref in flow.refs.items():
                self._unref(pmd_id, ref)
            self._forget(flow)
        dport.flows.clear()
        dport.hw_queue.clear()
        return 0

    def get_port(self, port_no: int) -> OffloadPort | None:
        dport = self.ports.get(port_no)
        return None if dport is None else dport.port

    # -- flows ---------------------------------------------------------------

    def flow_put(
        self,
        ufid: int,
        key: FlowKey,
        mask: FlowMask,
        actions: Sequence[Action],
        *,
        modify: bool,
        pmd_id: int = 0,
        flow_ref: object = None,
    ) -> int:
        # The ufid, not ``modify``, decides create vs modify, as the
        # hardware table is the authority on what it holds.
        dport = self.ports.get(key[IN_PORT])
        if dport is None:
            return errno.ENODEV
        name = dport.port.name
        flow = dport.flows.get(ufid)
        previous: object = None
        if flow is None:
            mark = self.marks.alloc()
            if mark == INVALID_FLOW_MARK:
                self.log.dbg(f"failed to add netdev flow {format_ufid(ufid)}")
                return errno.ENOSPC
            flow = OffloadedFlow(ufid, dport.port.port_no, mark, key, mask, None)
            dport.flows[ufid] = flow
            self._by_mark[mark] = flow
            what = "create"
        else:
            previous = flow.refs.get(pmd_id)
            what = "modify"
        flow.refs[pmd_id] = flow_ref
        flow_mask = (*mask[:IN_PORT], 0, *mask[IN_PORT + 1 :])
        flow.mask = flow_mask
        flow.key = masked(key, flow_mask)
        flow.actions = tuple(actions) if self._fully_offloadable(dport, actions) else None
        flow.stats.dp_layer = "dummy" if flow.actions is not None else "ovs"
        self.log.dbg(
            f"{name}: flow put[{what}]: ufid:{format_ufid(ufid)} "
            f"flow match: {flow.key}, mark: {flow.mark}"
        )
        self.log.dbg(f"succeed to {'add' if what == 'create' else 'modify'} netdev flow "
                     f"{format_ufid(ufid)}")  # fmt: skip
        if previous is not None and previous is not flow_ref:
            self._unref(pmd_id, previous)
        return 0

    def flow_del(self, ufid: int, *, pmd_id: int = 0) -> int:
        for dport in self.ports.values():
            flow = dport.flows.get(ufid)
            if flow is None:
                continue
            if pmd_id not in flow.refs:
                return self._del_failed(
                    dport.port.name, ufid, "No such flow with pmd_id and reference."
                )
            self._unref(pmd_id, flow.refs.pop(pmd_id))
            if not flow.refs:
                del dport.flows[ufid]
                self._forget(flow)
                self.log.dbg(
                    f"{dport.port.name}: flow del: ufid:{format_ufid(ufid)} mark: {flow.mark}"
                )
            return 0
        return self._del_failed("(none)", ufid, "No such flow.")

    def flow_get(self, ufid: int) -> OffloadedFlow | None:
        for dport in self.ports.values():
            flow = dport.flows.get(ufid)
            if flow is not None:
                return flow
        return None

    def flow_stats(self, ufid: int) -> OffloadFlowStats | None:
        flow = self.flow_get(ufid)
        return None if flow is None else attrs.evolve(flow.stats)

    def flow_count(self) -> int:
        return sum(len(dport.flows) for dport in self.ports.values())

    def flow_ref_for_mark(self, mark: int, pmd_id: int) -> object | None:
        flow = self._by_mark.get(mark)
        return None if flow is None else flow.refs.get(pmd_id)

    def register_flow_unreference_cb(self, cb: UnreferenceCallback) -> None:
        self._unreference = cb

    # -- simulated hardware ----------------------------------------------------

    def mark_for(self, port_no: int, key: FlowKey) -> int:
        """The mark of the first rule of port ``port_no`` matching ``key`` (0: none)."""
        flow = self._match(port_no, key)
        return INVALID_FLOW_MARK if flow is None else flow.mark

    def rx_packet(self, port_no: int, key: FlowKey, data: bytes) -> RxVerdict:
        """Classify a packet arriving on port ``port_no`` as the NIC would.

        Only ``dummy`` instances with offload enabled on the port classify;
        otherwise the packet passes untouched.  Fully offloaded packets are
        queued on the port's hardware queue for :meth:`hw_run`.
        """
        dport = self.ports.get(port_no)
        if not self.simulates_hw or dport is None or not dport.offload_enabled:
            return RxVerdict()
        flow = self._match(port_no, key)
        if flow is None:
            dport.rx_offload_miss += 1
            return RxVerdict()
        self.log.dbg(
            f"{dport.port.name}: packet: {key} matches with flow: "
            f"ufid:{format_ufid(flow.ufid)} {flow.key} with mark: {flow.mark}"
        )
        if flow.actions is not None:
            dport.hw_queue.append(HwPacket(port_no, key, data))
            self._hw_backlog = True
            dport.rx_offload_full += 1
            return RxVerdict(flow.mark, stolen=True)
        dport.rx_offload_partial += 1
        return RxVerdict(flow.mark)

    def hw_run(self) -> int:
        """Execute every packet queued on the ports' hardware queues; returns the count."""
        n = 0
        for dport in list(self.ports.values()):
            while dport.hw_queue:
                self.hw_execute(dport.hw_queue.popleft())
                n += 1
        return n

    def hw_execute(self, pkt: HwPacket) -> bool:
        """Run ``pkt`` through the hardware pipeline; False if it fell back to software."""
        flow = self._match(pkt.port_no, pkt.key)
        dport = self.ports.get(pkt.port_no)
        if flow is None or flow.actions is None or self.hw_output is None:
            self.log.dbg("Failed HW pipeline, sent to sw!")
            if dport is not None:
                dport.rx_offload_pipe_abort += 1
            if self.sw_reinject is not None:
                self.sw_reinject(pkt.port_no, pkt.data)
            return False
        for action in flow.actions:
            if isinstance(action, Output):
                self.hw_output(action.port, pkt.data)
        flow.stats.n_packets += 1
        flow.stats.n_bytes += len(pkt.data)
        flow.stats.used = time.monotonic()
        return True

    # -- internals -----------------------------------------------------------

    def _match(self, port_no: int, key: FlowKey) -> OffloadedFlow | None:
        dport = self.ports.get(port_no)
        if dport is None:
            return None
        return next((f for f in dport.flows.values() if f.matches(key)), None)

    def _fully_offloadable(self, dport: DummyPort, actions: Sequence[Action]) -> bool:
        for action in actions:
            if not isinstance(action, Output) or action.port == dport.port.port_no:
                return False
            target = self.ports.get(action.port)
            if target is None or target.port.type != FULL_OFFLOAD_PORT_TYPE:
                return False
        return True

    def _forget(self, flow: OffloadedFlow) -> None:
        self._by_mark.pop(flow.mark, None)
        self.marks.free(flow.mark)

    def _unref(self, pmd_id: int, ref: object) -> None:
        if self._unreference is not None and ref is not None:
            self._unreference(pmd_id, ref)

    def _del_failed(self, name: str, ufid: int, text: str) -> int:
        self.log.warn(f"{name}: failed to flow del: ufid:{format_ufid(ufid)} error: {text}")
        return errno.ENOENT


class DummyOffload(_DummyBase):
    """The ``dummy`` class: simulates hardware and gives PMDs a work callback."""

    type = "dummy"

    def __init__(self, dp_name: str, services: OffloadServices) -> None:
        super().__init__(dp_name, services)
        self.do_work_counter = services.coverage.define("dummy_offload_do_work")
        # One bound-method object for the instance's lifetime: the lifecycle
        # hook recognises its own callback by identity, and the log prints it.
        self.work_callback: WorkCallback = self._do_work
        #: Injected faults (``offload-dummy/fault``, tests only); None: none.
        self.fault: OffloadFaults | None = None

    def pmd_thread_lifecycle(
        self,
        exit: bool,
        core_id: int,
        numa_id: int,
        callback: WorkCallback | None,
        ctx: Any,
    ) -> tuple[WorkCallback | None, Any]:
        self.log.dbg(
            f"pmd_thread_lifecycle; exit={'true' if exit else 'false'}, core={core_id}, "
            f"numa={numa_id}, cb={format_ptr(callback)}, ctx={format_ptr(ctx)}"
        )
        if callback is not None and callback is not self.work_callback:
            raise AssertionError(f"{self.name}: foreign PMD work callback {callback!r}")
        if exit:
            if isinstance(ctx, DummyPmdContext):
                ctx.free()
            return None, None
        if not isinstance(ctx, DummyPmdContext):
            ctx = DummyPmdContext(core_id, numa_id)
        return self.work_callback, ctx

    def _do_work(self, core_id: int, numa_id: int, ctx: Any) -> None:
        if self.fault is not None:
            self.fault.before_work(self.type, core_id)
        self.do_work_counter.inc()
        if isinstance(ctx, DummyPmdContext):
            while ctx.hw_rxq:
                self.hw_execute(ctx.hw_rxq.popleft())
        # The ports' hardware queues (fully offloaded packets) are drained by
        # whichever PMD runs its work first: there is one interpreter thread.
        # A flag, not a scan of the ports: this runs every PMD iteration.
        if self._hw_backlog:
            self._hw_backlog = False
            self.hw_run()


class DummyXOffload(_DummyBase):
    """The ``dummy_x`` class: same ports and flows, no hardware, no PMD work."""

    type = "dummy_x"
