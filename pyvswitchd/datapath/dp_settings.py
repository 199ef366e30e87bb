"""The datapath's knobs and the counters its PMDs share.

:class:`DatapathSettings` holds what the configuration's ``other_config``
says, in the form PMDs and the scheduler read it; PMDs read some of it
every iteration (in a worker process, a copy pushed to it).
:class:`PmdCounters` are the coverage counters every PMD counts into.
"""

from __future__ import annotations

import attrs

from ..config import OtherConfig
from ..observe.coverage import Counter, Coverage
from .emc import insert_min_for
from .sleep import SleepConfig


@attrs.frozen
class PmdCounters:
    """The coverage counters every PMD of the datapath counts into."""

    sent: Counter
    received: Counter
    #: Output to a port the PMD does not have.
    dropped: Counter
    #: Packets of a netdev call that raised (a provider bug, not an errno).
    netdev_error: Counter
    #: Frames too short or malformed to parse.
    invalid: Counter

    @classmethod
    def define(cls, coverage: Coverage) -> PmdCounters:
        # Defined in this order for coverage/show's listing.
        sent = coverage.define("netdev_sent")
        received = coverage.define("netdev_received")
        invalid = coverage.define("datapath_drop_rx_invalid_packet")
        dropped = coverage.define("datapath_drop_invalid_port")
        netdev_error = coverage.define("datapath_drop_netdev_error")
        return cls(sent, received, dropped, netdev_error, invalid)


@attrs.define
class DatapathSettings:
    """Knobs every PMD reads live (no reload needed).

    :meth:`change_lines` words a change as ovs-vswitchd logs it.
    """

    tx_flush_interval_us: int = 0
    perf_metrics: bool = False
    rxq_assign: str = "cycles"
    rxq_isolate: bool = True
    cpu_mask: int | None = None
    numa: tuple[int, ...] = ()
    sleep: SleepConfig = attrs.field(factory=SleepConfig)
    emc_insert_min: int = insert_min_for(100)
    smc_enable: bool = False
    max_idle_ms: int = 10000
    userspace_tso: bool = False

    def change_lines(self, oc: OtherConfig) -> list[str]:
        """OVS's log lines for the knobs ``oc`` changes (from the defaults, at start-up)."""
        lines = []
        if oc.tx_flush_interval != self.tx_flush_interval_us:
            lines.append(f"Flushing interval for tx queues set to {oc.tx_flush_interval} us")
        if oc.pmd_perf_metrics != self.perf_metrics:
            state = "enabled" if oc.pmd_perf_metrics else "disabled"
            lines.append(f"PMD performance metrics collection {state}")
        if oc.smc_enable != self.smc_enable:
            lines.append(f"SMC cache is {'enabled' if oc.smc_enable else 'disabled'}")
        return lines
