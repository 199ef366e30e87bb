"""The datapath input function: where a received packet goes.

OVS's lookup hierarchy (spec-pmd.md §7), per packet of a batch:

1. runts (< 14 bytes) are dropped, counted only in a coverage counter;
2. **EMC**, keyed by the header signature (see :mod:`.emc`) — a hit never
   parses the packet;
3. **SMC** when ``smc-enable`` is on (before both: a packet carrying a flow
   mark from partial hardware offload goes straight to that flow, PHWOL);
4. **dpcls**, the megaflow classifier of the packet's in_port;
5. **upcall**: the bridge decides (MAC learning, NORMAL forwarding), a
   megaflow is installed in this PMD's table, and later packets of that
   traffic hit it.

Packets are then grouped by flow, in arrival order within each flow, and
each group runs through its flow's precompiled actions once, with the
flow's statistics updated per group rather than per packet.

:meth:`FlowPipeline.process` is the hottest function of the daemon: locals
are bound up front and the common path (EMC hit on a fast-signature frame,
same flow as the previous packet) touches as few objects as possible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .flow_table import DpFlow
from .packet import Packet, fast_signature, parse_key
from .perf import Stat

if TYPE_CHECKING:
    from ..observe.coverage import Counter
    from .flow_key import FlowKey
    from .pmd import Pmd

Upcall = Callable[["Pmd", "FlowKey"], "DpFlow | None"]

_tsc = time.perf_counter_ns
_monotonic = time.monotonic


class FlowPipeline:
    """EMC → SMC → dpcls → upcall, then per-flow batched actions."""

    def __init__(self, upcall: Upcall, drop_invalid: Counter) -> None:
        self.upcall = upcall
        self._drop_invalid = drop_invalid
        #: (in_port, mark, core_id) -> flow, while hardware offload is enabled.
        self.mark_lookup: Callable[[int, int, int], DpFlow | None] | None = None

    def process(self, pmd: Pmd, batch: list[Packet], in_port: int) -> None:
        table = pmd.flow_table
        emc = table.emc
        emc_on = emc.insert_min != 0
        etable = emc.table(in_port) if emc_on else {}
        smc = table.smc if table.smc_enabled else None
        groups: dict[DpFlow, list[Packet]] = {}
        last_flow: DpFlow | None = None
        last_group: list[Packet] = []
        n_emc = n_smc = n_masked = n_lookups = n_miss = n_lost = n_invalid = n_phwol = 0
        mark_lookup = self.mark_lookup
        core_id = pmd.core_id
        for packet in batch:
            data = packet.data
            if packet.mark is not None and mark_lookup is not None:
                # Partial offload: the NIC's mark names the flow, no lookup needed.
                flow = mark_lookup(in_port, packet.mark, core_id)
                if flow is not None and not flow.dead:
                    n_phwol += 1
                    last_flow = flow
                    last_group = groups.setdefault(flow, [])
                    last_group.append(packet)
                    continue
            key = None
            # No separate runt check: runts have no signature, and parse_key
            # returns None for them, which is counted below.
            sig = fast_signature(data)
            if emc_on:
                if sig is None:
                    key = parse_key(data, in_port)
                    if key is None:
                        n_invalid += 1
                        continue
                    sig = key
                flow = etable.get(sig)
                if flow is not None and not flow.dead:
                    n_emc += 1
                    # Grouping is written out twice on purpose: a helper call
                    # per packet costs more than the rest of an EMC hit.
                    if flow is last_flow:
                        last_group.append(packet)
                    else:
                        last_flow = flow
                        last_group = groups.setdefault(flow, [])
                        last_group.append(packet)
                    continue
            if key is None:
                key = parse_key(data, in_port)
                if key is None:
                    n_invalid += 1
                    continue
            flow = None
            if smc is not None:
                flow = smc.lookup(key)
                if flow is not None:
                    n_smc += 1
            if flow is None:
                flow, position = table.lookup(key)
                if flow is not None:
                    n_masked += 1
                    n_lookups += position
                    if smc is not None:
                        smc.insert(key, flow)
                else:
                    flow = self._miss(pmd, key)
                    if flow is None:
                        n_lost += 1
                        continue
                    n_miss += 1
            if emc_on and sig is not None:
                emc.maybe_insert(etable, sig, flow)
            if flow is last_flow:
                last_group.append(packet)
            else:
                last_flow = flow
                last_group = groups.setdefault(flow, [])
                last_group.append(packet)
        n = pmd.perf.n
        n[Stat.PHWOL_HIT] += n_phwol
        n[Stat.EXACT_HIT] += n_emc
        n[Stat.SMC_HIT] += n_smc
        n[Stat.MASKED_HIT] += n_masked
        n[Stat.MASKED_LOOKUP] += n_lookups
        n[Stat.MISS] += n_miss
        n[Stat.LOST] += n_lost
        if n_invalid:
            self._drop_invalid.total += n_invalid
        now = _monotonic()
        for flow, packets in groups.items():
            flow.packets += len(packets)
            flow.bytes += sum([len(p.data) for p in packets])
            flow.used = now
            flow.execute(pmd, packets)

    def _miss(self, pmd: Pmd, key: FlowKey) -> DpFlow | None:
        start = _tsc()
        flow = self.upcall(pmd, key)
        pmd.perf.record_upcall(_tsc() - start)
        return flow
