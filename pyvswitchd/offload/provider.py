"""The offload provider API: what a hardware-offload provider implements.

An offload *class* (a subclass of :class:`OffloadProvider`) describes one
kind of provider: its ``type`` name, the datapath types it can serve and
how its flows relate to the datapath's.  An *instance* is opened per
datapath by :class:`pyvswitchd.offload.registry.OffloadCollection`, named
``"<type>[<dp_name>]"``.

Return codes are errno values, as in the netdev API: 0 for success, a
positive errno for failure.  Data-path calls never raise.

Threading and trio rules, for every method: pyvswitchd runs on one OS
thread, with the main task and the PMD tasks as trio tasks of it.  No
method may block or await; a provider that talks to real hardware must hand
slow work to its own task and answer from cached state.  Configuration and
port methods are called from the main task; flow put/del/stats, the
post-process lookup and the PMD work callbacks from PMD tasks.  Because all
of them share one thread, a provider needs no locks, but it must not assume
that a PMD call and a main-task call never interleave across an ``await``
of the caller.
"""

from __future__ import annotations

import abc
import enum
import errno
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeAlias

import attrs

from ..observe.coverage import Coverage
from ..observe.vlog import Vlog
from ..odp.actions import Action
from ..odp.flow_key import FlowKey, FlowMask

#: Flow mark 0 never names a flow (OVS's INVALID_FLOW_MARK).
INVALID_FLOW_MARK = 0

#: A PMD work callback: ``work(core_id, numa_id, ctx)``.
WorkCallback: TypeAlias = Callable[[int, int, Any], None]
#: Called by a provider when it drops a flow reference it got in a put:
#: ``cb(pmd_id, flow_ref)``.
UnreferenceCallback: TypeAlias = Callable[[int, object], None]


class ImplType(enum.Enum):
    """How a provider's flows relate to the datapath's own flow table."""

    #: No flows at all.
    NONE = "none"
    #: The provider mirrors datapath flows; the datapath stays the source of
    #: truth for flows and their statistics (dpdk, dummy).
    FLOWS_DPIF_SYNCED = "dpif_synced"
    #: The provider installs flows instead of the datapath and answers dumps
    #: and statistics itself (tc).
    FLOWS_PROVIDER_ONLY = "provider_only"


class OffloadError(Exception):
    """A provider cannot be opened; ``errno`` says why."""

    def __init__(self, errno_value: int, text: str = "") -> None:
        super().__init__(text or f"errno {errno_value}")
        self.errno = errno_value


class OffloadPort(Protocol):
    """What a provider sees of a datapath port (``datapath.port.Port`` fits)."""

    @property
    def port_no(self) -> int: ...

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...


@attrs.define
class OffloadServices:
    """Daemon facilities a provider may use, handed over at open time.

    ``is_enabled`` reports the global ``hw-offload`` flag (enable-once:
    once it returns True it never returns False again).
    """

    vlog: Vlog
    coverage: Coverage
    is_enabled: Callable[[], bool] = lambda: False


@attrs.frozen
class RxVerdict:
    """What a simulated NIC did with a received packet.

    ``mark`` is the flow mark to attach (INVALID_FLOW_MARK: none);
    ``stolen`` means hardware took the packet and software must not see it.
    """

    mark: int = INVALID_FLOW_MARK
    stolen: bool = False


#: Where a simulated NIC puts a packet: ``(port_no, frame)``.
HwPacketSink: TypeAlias = Callable[[int, bytes], None]


class SimulatedHardware(Protocol):
    """A provider's NIC pipeline simulated in software, wired up by the datapath.

    The datapath offers every frame received on a port the provider owns
    to :meth:`rx_packet` first (through the port's
    :class:`~pyvswitchd.netdev.provider.SimulatedNic`), and sets the two
    ways out: ``hw_output`` transmits a packet the hardware forwarded,
    ``sw_reinject`` hands one its pipeline could not finish back to
    software receive on its ingress port.
    """

    hw_output: HwPacketSink | None
    sw_reinject: HwPacketSink | None

    def rx_packet(self, port_no: int, key: FlowKey, data: bytes) -> RxVerdict: ...


@attrs.define
class OffloadFlowStats:
    """Counters and attributes of one offloaded flow (``flow_stats``).

    ``dp_layer`` is what ``dpctl/dump-flows`` shows as ``dp:``: the
    provider's name for flows it fully executes, ``"ovs"`` for partial
    offload where software still runs the actions.
    """

    n_packets: int = 0
    n_bytes: int = 0
    used: float = 0.0
    offloaded: bool = True
    dp_layer: str = "ovs"


class OffloadProvider(abc.ABC):
    """Base class of every offload provider; one instance per datapath.

    Subclasses set the class attributes and implement the abstract methods;
    the other methods have "not supported" defaults.
    """

    #: Class name used in ``hw-offload-priority`` and in commands.
    type: ClassVar[str] = ""
    #: Datapath types (``system``, ``netdev``, ``dummy``) this class serves.
    dpif_types: ClassVar[tuple[str, ...]] = ()
    #: Relationship between the provider's flows and the datapath's.
    impl_type: ClassVar[ImplType] = ImplType.NONE

    def __init__(self, dp_name: str, services: OffloadServices) -> None:
        self.dp_name = dp_name
        self.services = services
        self.name = f"{self.type}[{dp_name}]"

    # -- life cycle (main task) ----------------------------------------------

    @classmethod
    def open(cls, dp_name: str, services: OffloadServices) -> OffloadProvider:
        """Create the instance for datapath ``dp_name``.

        Called from the main task when a datapath whose type is in
        ``dpif_types`` gets its provider collection.  Raise
        :class:`OffloadError` to be left out of the collection (the caller
        logs a warning and goes on with the other classes).
        """
        return cls(dp_name, services)

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything, including ports still added.

        Called once, from the main task, when the datapath's collection is
        destroyed.  The datapath may not have deleted every port first, so
        the provider drops remaining ports (and their flows) itself.
        """

    def set_config(self, other_config: Mapping[str, str]) -> None:
        """Apply the Open_vSwitch ``other_config`` map.

        Called from the main task on every database change, after the
        datapath applied its own configuration.  Must be idempotent.
        """
        return None

    def get_debug(self) -> tuple[str, dict[str, Any]]:
        """Text and JSON members for ``dpif/offload/show`` (main task).

        The text is printed verbatim under the provider's type line; the
        dict becomes the provider's JSON object.  Default: nothing.
        """
        return "", {}

    def get_global_stats(self) -> dict[str, int]:
        """Named counters for ``dpctl/offload-stats-show`` (main task)."""
        return {}

    def worker_counters(self) -> dict[int, dict[str, int]]:
        """Per port number, the counters a PMD worker's copy of this provider kept.

        A PMD worker process runs its own copy of every provider for the
        packets it receives; the daemon adds what the copies counted to its
        own figures (:meth:`add_worker_counters`) before it reports them.
        Default: none.
        """
        return {}

    def add_worker_counters(self, counters: Sequence[dict[int, dict[str, int]]]) -> None:
        """Counts of the workers' copies (:meth:`worker_counters`), for the next report."""
        return None

    # -- ports (main task) ---------------------------------------------------

    @abc.abstractmethod
    def can_offload(self, port: OffloadPort) -> bool:
        """Whether this provider could take ``port``; asked before :meth:`port_add`.

        False makes the framework try the next provider.  Must not change
        any state.
        """

    @abc.abstractmethod
    def port_add(self, port: OffloadPort) -> int:
        """Take ownership of ``port``; 0 means owned (no other provider is tried).

        Called from the main task after :meth:`can_offload` said yes.  A
        port already added returns EEXIST.
        """

    @abc.abstractmethod
    def port_del(self, port_no: int) -> int:
        """Forget port ``port_no`` and every flow offloaded on it.

        Called from the main task on *every* provider for every deleted
        port, since the framework does not track ownership: an unknown port
        returns ENOENT and changes nothing.  Dropped flows release their
        references through the unreference callback.
        """

    @abc.abstractmethod
    def get_port(self, port_no: int) -> OffloadPort | None:
        """The port numbered ``port_no`` if this provider owns it, else None."""

    def port_set_config(self, port_no: int, other_config: Mapping[str, str]) -> None:
        """Apply an Interface ``other_config`` refresh (main task, every provider)."""
        return None

    # -- flows (PMD tasks) ---------------------------------------------------

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
        """Install (or, with ``modify``, update) the flow ``ufid``; 0 or an errno.

        Called from the PMD task ``pmd_id`` that installed the datapath
        flow, for the port ``key[IN_PORT]`` this provider owns.  The
        provider keeps ``flow_ref`` until it calls the unreference callback
        with it; a put that replaces this PMD's earlier reference for the
        same ufid releases the earlier one that way.  Synchronous only: the
        flow is in hardware (or refused) when this returns.
        """
        return errno.EOPNOTSUPP

    def flow_del(self, ufid: int, *, pmd_id: int = 0) -> int:
        """Remove PMD ``pmd_id``'s use of flow ``ufid``; 0 or ENOENT.

        Called from the PMD task that owned the datapath flow.  The hardware
        rule goes away with its last user.  The reference given in the put
        is released through the unreference callback.
        """
        return errno.EOPNOTSUPP

    def flow_get(self, ufid: int) -> object | None:
        """The provider's record of flow ``ufid``, or None (any task)."""
        return None

    def flow_stats(self, ufid: int) -> OffloadFlowStats | None:
        """Statistics of flow ``ufid``; None if this provider did not offload it."""
        return None

    def flow_count(self) -> int:
        """Number of flows this provider currently holds (any task)."""
        return 0

    def flow_ref_for_mark(self, mark: int, pmd_id: int) -> object | None:
        """Partial-offload fast path: PMD ``pmd_id``'s flow reference for ``mark``.

        Called per received packet that carries a flow mark, from the PMD
        task polling it; must be a dict lookup, nothing more.
        """
        return None

    def register_flow_unreference_cb(self, cb: UnreferenceCallback) -> None:
        """Set the callback through which flow references are handed back.

        The datapath registers it once, from the main task, before any flow
        put; the provider calls ``cb(pmd_id, flow_ref)`` whenever it stops
        holding a reference it got in :meth:`flow_put`.
        """
        return None

    def simulated_hardware(self) -> SimulatedHardware | None:
        """The provider's simulated NIC pipeline, if it has one (None: real hardware or none)."""
        return None

    # -- PMD helpers ---------------------------------------------------------

    def pmd_thread_lifecycle(
        self,
        exit: bool,
        core_id: int,
        numa_id: int,
        callback: WorkCallback | None,
        ctx: Any,
    ) -> tuple[WorkCallback | None, Any]:
        """Give PMD ``core_id`` a periodic work callback, or take it back.

        Called from the PMD task itself, at start and at every reload with
        ``exit=False`` and the callback and context this instance returned
        last time for that PMD (None, None the first time); the provider may
        keep, replace or release them and returns the new pair.  Returning
        a None callback means "no work on this PMD"; the provider must then
        have released any old context itself, since the framework forgets
        it.  When the PMD ends for good it is called once more with
        ``exit=True`` and the last pair, and must release everything.

        The callback runs on every PMD poll iteration as
        ``callback(core_id, numa_id, ctx)`` and must return quickly: its
        time is accounted as the PMD's offload cycles.  Default: no work.
        """
        return None, None
