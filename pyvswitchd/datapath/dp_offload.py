"""The datapath's side of the offload framework.

Ties :mod:`pyvswitchd.offload` to the datapath: ``hw-offload`` and
``hw-offload-priority`` from the configuration, the provider collection of
``ovs-netdev`` (opened the first time offload is enabled, then kept: OVS
cannot disable offload at run time), port assignment as ports come and go,
and the per-PMD lifecycle — every PMD reload asks the providers for their
work callbacks, every iteration runs them (their time is the PMD's offload
cycles), and a PMD that ends lets them release their per-PMD state.  The
main thread never runs offload work, as in OVS.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeAlias, cast

from ..observe.ratelimit import RateLimit
from ..odp.flow_extract import parse_key
from ..odp.flow_key import IN_PORT
from ..odp.packet import Packet
from ..offload.pmd_context import PmdOffloadContext
from ..offload.provider import OffloadProvider, SimulatedHardware
from ..offload.registry import Offload, OffloadCollection
from .worker_messages import OffloadSetup

if TYPE_CHECKING:
    from ..config import OtherConfig
    from ..control.registry import CommandRegistry
    from ..observe.coverage import Coverage
    from ..observe.vlog import Vlog
    from .flow_table import DpFlow
    from .pmd import Pmd
    from .port import Port

DPIF_TYPE = "netdev"

#: ``(in_port, mark, pmd_id) -> flow``: the PHWOL lookup of partial offload.
FlowForMark: TypeAlias = "Callable[[int, int, int], DpFlow | None]"


class DatapathOffload:
    """Offload state of one datapath."""

    def __init__(
        self,
        dp_name: str,
        vlog: Vlog,
        coverage: Coverage,
        port_lookup: Callable[[int], Port | None],
    ) -> None:
        self.dp_name = dp_name
        self.offload = Offload(vlog, coverage)
        # Defined up front so `-v dpif_offload_dummy:file:dbg` works before any
        # provider is open (modules are otherwise created when first used).
        vlog.module("dpif_offload_dummy")
        self._log = vlog.module("dpif_offload")
        self._work_failed = coverage.define("dpif_offload_work_failed")
        # What simulated hardware output loses is counted like the PMDs' drops.
        self._drop_invalid_port = coverage.define("datapath_drop_invalid_port")
        self._output_failed = coverage.define("datapath_drop_hw_output_error")
        self._output_rl = RateLimit(1, 1)
        self.collection: OffloadCollection | None = None
        #: The collection's flow_ref_for_mark, while there is a collection.
        self._flow_for_mark: FlowForMark | None = None
        self._contexts: dict[int, PmdOffloadContext] = {}
        self._port = port_lookup
        self._knobs: dict[str, str] = {}
        self._interfaces: dict[str, dict[str, str]] = {}

    @property
    def enabled(self) -> bool:
        return self.offload.config.enabled

    def register_commands(
        self, registry: CommandRegistry, before_show: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """``before_show``: gathers what PMD workers' copies of the providers counted."""
        self.offload.register_commands(registry, before_show)

    def worker_counters(self) -> dict[str, dict[int, dict[str, int]]]:
        """A PMD worker's side: each provider's counters, for the daemon's reports."""
        if self.collection is None:
            return {}
        return {p.type: p.worker_counters() for p in self.collection.providers}

    def add_worker_counters(self, reports: list[dict[str, dict[int, dict[str, int]]]]) -> None:
        """The daemon's side: the workers' reports, added to the next show."""
        if self.collection is None:
            return
        for provider in self.collection.providers:
            provider.add_worker_counters([r.get(provider.type, {}) for r in reports])

    def configure(self, other_config: OtherConfig, ports: Iterable[Port]) -> bool:
        """Apply the offload knobs; True when every PMD must reload (offload just enabled)."""
        ports = list(ports)
        knobs = {"hw-offload": "true" if other_config.hw_offload else "false"}
        if other_config.hw_offload_priority is not None:
            knobs["hw-offload-priority"] = other_config.hw_offload_priority
        interfaces = {p.name: p.other_config for p in ports}
        return self.apply(knobs, interfaces, ports)

    def apply(
        self, knobs: dict[str, str], interfaces: dict[str, dict[str, str]], ports: Iterable[Port]
    ) -> bool:
        """:meth:`configure` from the knobs themselves (a PMD worker's copy starts here)."""
        self._knobs, self._interfaces = dict(knobs), dict(interfaces)
        self.offload.config.set_global_config(knobs, interfaces)
        if self.collection is None and self.enabled:
            self.collection, _ = self.offload.open(self.dp_name, DPIF_TYPE)
            # By mark, the collection hands back the flow_ref given with each
            # flow_put, which is always the datapath's DpFlow.
            self._flow_for_mark = cast("FlowForMark", self.collection.flow_ref_for_mark)
            for provider in self.collection.providers:
                self._attach_hardware(provider)
            for port in ports:
                self.port_added(port)
        if self.collection is None:
            return False
        self.collection.set_config(knobs)
        return self.collection.take_force_pmd_reload()

    def worker_setup(self) -> OffloadSetup | None:
        """What a PMD worker needs to open its own copy of the providers (None: offload off).

        The providers' global state stays here; each worker runs its own
        copy for the flows it installs and the packets it receives, and
        calls their PMD lifecycle hooks in its own process, as OVS's PMD
        threads do.
        """
        if not self.enabled:
            return None
        return OffloadSetup(True, dict(self._knobs), dict(self._interfaces))

    def port_added(self, port: Port) -> None:
        if self.collection is None:
            return
        provider = self.collection.assign_port(port)
        hardware = provider.simulated_hardware() if provider is not None else None
        if hardware is not None:
            self._attach_classifier(port, hardware)

    def port_removed(self, port_no: int) -> None:
        if self.collection is not None:
            self.collection.remove_port(port_no)

    def _attach_classifier(self, port: Port, hardware: SimulatedHardware) -> None:
        """Let the simulated NIC see the port's received frames first."""
        nic = port.netdev.simulated_nic()
        if nic is None:
            return
        port_no = port.port_no

        def classify(frame: bytes) -> tuple[int | None, bool]:
            key = parse_key(frame, port_no)
            if key is None:
                return None, False
            verdict = hardware.rx_packet(port_no, key, frame)
            mark = verdict.mark if verdict.mark else None
            return mark, bool(verdict.stolen)

        nic.rx_offload = classify

    def _attach_hardware(self, provider: OffloadProvider) -> None:
        """Give a hardware-simulating provider its transmit and fall-back paths."""
        hardware = provider.simulated_hardware()
        if hardware is None:
            return

        def hw_output(port_no: int, data: bytes) -> None:
            port = self._port(port_no)
            if port is None:
                self._drop_invalid_port.inc()  # the output port left meanwhile
                return
            try:
                port.netdev.send(0, [Packet(data)])
            except Exception as exc:
                # A netdev bug must not pass for the provider's: PmdOffloadContext
                # would remove the provider's work callback from the PMD.
                self._output_failed.inc()
                self._log.err(f"{port.name}: hardware output failed ({exc!r})", rl=self._output_rl)

        def sw_reinject(port_no: int, data: bytes) -> None:
            port = self._port(port_no)
            nic = port.netdev.simulated_nic() if port is not None else None
            if nic is not None:
                nic.inject([data], offload=False)

        hardware.hw_output = hw_output
        hardware.sw_reinject = sw_reinject

    # -- flows (called on the upcall path and when flows go away) ---------------

    def flow_observer(self, pmd_id: int) -> PmdFlowOffload:
        """The observer of PMD ``pmd_id``'s flow table: mirrors it to the providers."""
        return PmdFlowOffload(self, pmd_id)

    def flow_put(self, pmd_id: int, flow: DpFlow, *, modify: bool) -> None:
        """Offer a new or changed megaflow to the provider owning its in_port."""
        if self.collection is None or not self.enabled:
            return
        self.collection.flow_put(
            uuid.UUID(flow.ufid).int,
            flow.key,
            flow.mask,
            flow.actions,
            modify=modify,
            pmd_id=pmd_id,
            flow_ref=flow,
        )

    def flow_removed(self, pmd_id: int, flow: DpFlow) -> None:
        if self.collection is None or not self.enabled:
            return
        self.collection.flow_del(flow.key[IN_PORT], uuid.UUID(flow.ufid).int, pmd_id=pmd_id)

    def mark_lookup(self, in_port: int, mark: int, core_id: int) -> DpFlow | None:
        """The flow a partially offloaded packet's mark stands for (PHWOL)."""
        lookup = self._flow_for_mark
        return lookup(in_port, mark, core_id) if lookup is not None else None

    def flow_count(self) -> int:
        return self.collection.flow_count() if self.collection is not None else 0

    # -- per-PMD lifecycle (called from the PMD's own task) ----------------------

    def pmd_reload(self, pmd: Pmd) -> None:
        if pmd.is_main:
            return
        ctx = self._contexts.get(pmd.core_id)
        if ctx is None:
            if not self.enabled or self.collection is None:
                return
            ctx = PmdOffloadContext(pmd.core_id, pmd.numa_id, self._log, self._work_failed)
            self._contexts[pmd.core_id] = ctx
        ctx.reload(self.collection, self.enabled)

    def pmd_work(self, pmd: Pmd) -> int:
        ctx = self._contexts.get(pmd.core_id)
        return ctx.do_work() if ctx is not None else 0

    def pmd_idle(self, pmd: Pmd) -> bool:
        """Whether no offload provider has per-iteration work on ``pmd``."""
        return pmd.core_id not in self._contexts

    def pmd_exit(self, pmd: Pmd) -> None:
        ctx = self._contexts.pop(pmd.core_id, None)
        if ctx is not None:
            ctx.exit()


class PmdFlowOffload:
    """One PMD's :class:`~.flow_table.FlowTableObserver`: its flows go to the providers."""

    __slots__ = ("_offload", "_pmd_id")

    def __init__(self, offload: DatapathOffload, pmd_id: int) -> None:
        self._offload = offload
        self._pmd_id = pmd_id

    def flow_installed(self, flow: DpFlow) -> None:
        self._offload.flow_put(self._pmd_id, flow, modify=False)

    def flow_modified(self, flow: DpFlow) -> None:
        self._offload.flow_put(self._pmd_id, flow, modify=True)

    def flow_removed(self, flow: DpFlow) -> None:
        self._offload.flow_removed(self._pmd_id, flow)
