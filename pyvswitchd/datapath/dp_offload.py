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

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..offload.pmd import PmdOffloadContext
from ..offload.registry import Offload, OffloadCollection

if TYPE_CHECKING:
    from ..config import OtherConfig
    from ..control.registry import CommandRegistry
    from ..observe.coverage import Coverage
    from ..observe.vlog import Vlog
    from .pmd import Pmd
    from .port import Port

DPIF_TYPE = "netdev"


class DatapathOffload:
    """Offload state of one datapath."""

    def __init__(self, dp_name: str, vlog: Vlog, coverage: Coverage) -> None:
        self.dp_name = dp_name
        self.offload = Offload(vlog, coverage)
        self.collection: OffloadCollection | None = None
        self._contexts: dict[int, PmdOffloadContext] = {}

    @property
    def enabled(self) -> bool:
        return self.offload.config.enabled

    def register_commands(self, registry: CommandRegistry) -> None:
        self.offload.register_commands(registry)

    def configure(self, other_config: OtherConfig, ports: Iterable[Port]) -> bool:
        """Apply the offload knobs; True when every PMD must reload (offload just enabled)."""
        ports = list(ports)
        knobs = {"hw-offload": "true" if other_config.hw_offload else "false"}
        if other_config.hw_offload_priority is not None:
            knobs["hw-offload-priority"] = other_config.hw_offload_priority
        interfaces = {p.name: p.other_config for p in ports}
        self.offload.config.set_global_config(knobs, interfaces)
        if self.collection is None and self.enabled:
            self.collection, _ = self.offload.open(self.dp_name, DPIF_TYPE)
            for port in ports:
                self.collection.assign_port(port)
        if self.collection is None:
            return False
        self.collection.set_config(knobs)
        return self.collection.take_force_pmd_reload()

    def port_added(self, port: Port) -> None:
        if self.collection is not None:
            self.collection.assign_port(port)

    def port_removed(self, port_no: int) -> None:
        if self.collection is not None:
            self.collection.remove_port(port_no)

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
            ctx = self._contexts[pmd.core_id] = PmdOffloadContext(pmd.core_id, pmd.numa_id)
        ctx.reload(self.collection, self.enabled)

    def pmd_work(self, pmd: Pmd) -> int:
        ctx = self._contexts.get(pmd.core_id)
        return ctx.do_work() if ctx is not None else 0

    def pmd_exit(self, pmd: Pmd) -> None:
        ctx = self._contexts.pop(pmd.core_id, None)
        if ctx is not None:
            ctx.exit()
