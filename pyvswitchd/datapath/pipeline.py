"""The datapath input function: where a received packet goes.

OVS's lookup hierarchy (dpif-netdev's ``dfc_processing``, then
``fast_path_processing``), per packet of a batch:

1. runts (< 14 bytes) are dropped, counted only in a coverage counter;
2. **EMC**, keyed by the header signature (see :mod:`.emc`) — a hit never
   parses the packet;
3. **SMC** when ``smc-enable`` is on (before both: a packet carrying a flow
   mark from partial hardware offload goes straight to that flow, PHWOL);
4. **dpcls**, the megaflow classifier of the packet's in_port;
5. **upcall**: the bridge decides (MAC learning, NORMAL forwarding), a
   megaflow is installed in this PMD's table, and later packets of that
   traffic hit it.

A packet that caused an upcall runs through its new flow's actions at
once, but is not counted in the flow's statistics: as in OVS, a flow that
only its first packet went through shows ``packets:0, bytes:0,
used:never``.  The other packets are then grouped by flow, in arrival order
within each flow, and each group runs through its flow's precompiled
actions once, with the flow's statistics updated per group rather than per
packet.

This is the hottest code of the daemon, so it has two shapes.  A batch
of at least 4 packets that are all UDP (or all TCP) exact-match hits takes
the batch fast path, :meth:`FlowPipeline._all_emc_hits`: a few ``map``
calls over the whole batch and one action call, with the same counters and
statistics as the per-packet path.  Everything else goes packet by packet
through :meth:`FlowPipeline._process`, with locals bound up front.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from operator import attrgetter, sub
from typing import TYPE_CHECKING, Any, cast

from ..odp.flow_extract import parse_key
from ..odp.packet import Packet
from ..odp.protocols import ETH_HEADER_LEN, FAST_PATH_MAX_FRAME_LEN
from .emc import fast_signature, frame_tot, tcp_signature, udp_signature
from .flow_table import DpFlow
from .perf import Stat

if TYPE_CHECKING:
    from ..observe.coverage import Counter
    from ..odp.flow_key import FlowKey
    from .emc import Emc
    from .pmd import Pmd
    from .upcall import Megaflow

#: Asks about the misses of one batch; one answer per key, in order: the
#: megaflow to install, the index of an earlier key of the batch whose
#: megaflow covers this one, or None (the upcall failed: the packet is lost).
Upcall = Callable[[Sequence["FlowKey"]], Sequence["Megaflow | int | None"]]
#: Builds the flow to install for a key and the megaflow the daemon chose.
FlowMaker = Callable[["FlowKey", "Megaflow"], DpFlow]

try:
    # collections' C counting loop (what Counter.update runs), without
    # Counter's Python-level set-up, which costs more than a batch's counting.
    from collections import _count_elements  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another interpreter

    def _count_elements(mapping: MutableMapping[Any, int], iterable: Iterable[Any]) -> None:
        get = mapping.get
        for item in iterable:
            mapping[item] = get(item, 0) + 1


_tsc = time.perf_counter_ns

# Whether a batch holds a flow-marked packet: any(map(...)) stops at the first.
_MARK = attrgetter("mark")
#: Signature functions the fast path tries, in order (a port remembers its last).
_BATCH_SIGNATURES = (udp_signature, tcp_signature)
#: Smallest batch worth the fast path's fixed cost (a few maps and dicts):
#: the per-packet path is as quick for a lone ping or a TCP ACK.
FAST_PATH_MIN_BATCH = 4
#: Batches a port skips the fast path for after it did not apply.
FAST_PATH_BACKOFF = 8


class FlowPipeline:
    """EMC → SMC → dpcls → upcall, then per-flow batched actions."""

    def __init__(self, upcall: Upcall, make_flow: FlowMaker, drop_invalid: Counter) -> None:
        self.upcall = upcall
        self.make_flow = make_flow
        self._drop_invalid = drop_invalid
        #: (in_port, mark, core_id) -> flow, while hardware offload is enabled.
        self.mark_lookup: Callable[[int, int, int], DpFlow | None] | None = None

    def process(self, pmd: Pmd, batch: list[Packet], in_port: int) -> None:
        """Run a received batch through the caches, the classifier and the actions."""
        emc = pmd.flow_table.emc
        if emc.insert_min and len(batch) >= FAST_PATH_MIN_BATCH:
            backoff = emc.fast_backoff
            if backoff.get(in_port, 0) == 0:
                if self.mark_lookup is None or not any(map(_MARK, batch)):
                    if emc.stale:
                        # The fast path does not check hits for dead flows.
                        emc.sweep()
                    # The kind that worked last on this port goes first.
                    kinds = emc.fast_kind
                    first = kinds.get(in_port, 0)
                    if self._all_emc_hits(pmd, emc, batch, in_port, _BATCH_SIGNATURES[first]):
                        return
                    if self._all_emc_hits(pmd, emc, batch, in_port, _BATCH_SIGNATURES[1 - first]):
                        kinds[in_port] = 1 - first
                        return
                backoff[in_port] = FAST_PATH_BACKOFF
            else:
                backoff[in_port] -= 1
        self._process(pmd, batch, in_port)

    def _all_emc_hits(
        self,
        pmd: Pmd,
        emc: Emc[DpFlow],
        batch: list[Packet],
        in_port: int,
        signature: Callable[[bytes], tuple[Any, ...]],
    ) -> bool:
        """The batch fast path: every packet a UDP (or TCP) exact-match hit, or do nothing.

        Shaped for steady traffic of few flows, where it is most of the
        daemon's work: each step is one C-level loop over the batch and the
        whole batch goes through its flows' actions in one call when they
        share them (flows installed by a bridge share compiled actions per
        output set).  It returns False, having changed nothing, as soon as
        one packet is not such a hit; the per-packet path then does
        everything.  The cache holds only signatures whose shape was checked
        at insertion, and no dead flows (the caller swept them), so a hit
        needs only the frame length checked again.
        """
        etable = emc.ports.get(in_port)
        if etable is None:
            return False
        # A comprehension, not map(attrgetter): CPython 3.11 specialises the
        # slot read in a comprehension, twice as fast as attrgetter's.
        datas = [packet.data for packet in batch]
        try:
            sigs = list(map(signature, datas))
        except struct.error:  # a frame shorter than a signature
            return False
        flows = cast("list[DpFlow]", list(map(etable.get, sigs)))
        # Packets per flow, counted in C; the dict also lists the distinct
        # flows in order of first arrival (and holds None if one missed).
        counts: dict[DpFlow, int] = {}
        _count_elements(counts, flows)
        if None in counts:
            return False
        sizes = list(map(len, datas))
        n = len(sizes)
        top = sizes[0]
        # Steady traffic has one frame size; count() compares by identity
        # first, which makes it far cheaper than min() and max().
        uniform = sizes.count(top) == n
        # What the shape check at insertion could not fix: the frame covers the
        # IP packet (its total length is in the signature) with < 64 KiB padding.
        # For one frame size the cache's largest total length settles it
        # without reading the batch's.
        if uniform:
            room = top - ETH_HEADER_LEN
            if top > FAST_PATH_MAX_FRAME_LEN or (
                room < emc.max_tot and room < max(map(frame_tot, datas))[0]
            ):
                return False
        elif (
            max(sizes) > FAST_PATH_MAX_FRAME_LEN
            or min(map(sub, sizes, [tot for (tot,) in map(frame_tot, datas)])) < ETH_HEADER_LEN
        ):
            return False
        pmd.perf.n[Stat.EXACT_HIT] += n
        now = pmd.flow_table.clock.seconds()
        if uniform:  # bytes per flow need no loop
            for flow, count in counts.items():
                flow.packets += count
                flow.bytes += count * top
                flow.used = now
        else:
            for flow, size in zip(flows, sizes, strict=True):
                flow.bytes += size
            for flow, count in counts.items():
                flow.packets += count
                flow.used = now
        executors = {flow.execute for flow in counts}
        if len(executors) == 1:
            executors.pop()(pmd, batch)
            return True
        groups: dict[DpFlow, list[Packet]] = {flow: [] for flow in counts}
        for packet, flow in zip(batch, flows, strict=True):
            groups[flow].append(packet)
        for flow, packets in groups.items():
            flow.execute(pmd, packets)
        return True

    def _process(self, pmd: Pmd, batch: list[Packet], in_port: int) -> None:
        table = pmd.flow_table
        emc = table.emc
        emc_on = emc.insert_min != 0
        etable = emc.table(in_port) if emc_on else {}
        smc = table.smc if table.smc_enabled else None
        groups: dict[DpFlow, list[Packet]] = {}
        misses: list[tuple[Packet, FlowKey, Any]] = []
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
                    # Misses go to the daemon together, after the batch.
                    misses.append((packet, key, sig))
                    continue
            if emc_on and sig is not None:
                emc.maybe_insert(etable, sig, flow)
            if flow is last_flow:
                last_group.append(packet)
            else:
                last_flow = flow
                last_group = groups.setdefault(flow, [])
                last_group.append(packet)
        upcalled: list[tuple[DpFlow, Packet]] = []
        if misses:
            n_miss, n_lost, n_hit, n_covered = self._upcall(
                pmd, misses, groups, upcalled, etable if emc_on else None
            )
            n_emc += n_hit
            n_masked += n_covered
            n_lookups += n_covered
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
        for flow, packet in upcalled:
            # As OVS executes an upcall's packet: before the batch's flows,
            # outside the flow's statistics.
            flow.execute(pmd, [packet])
        now = table.clock.seconds()
        for flow, packets in groups.items():
            flow.packets += len(packets)
            flow.bytes += sum([len(p.data) for p in packets])
            flow.used = now
            flow.execute(pmd, packets)

    def _upcall(
        self,
        pmd: Pmd,
        misses: list[tuple[Packet, FlowKey, Any]],
        groups: dict[DpFlow, list[Packet]],
        upcalled: list[tuple[DpFlow, Packet]],
        etable: dict[Any, DpFlow] | None,
    ) -> tuple[int, int, int, int]:
        """Ask about a batch's misses at once: (upcalls, lost, EMC hits, megaflow hits).

        A key the daemon finds covered by the megaflow of an earlier key of
        the same batch is looked up again, in order, once the earlier one's
        flow is in the table: it counts as the EMC or megaflow hit it would
        have been had the upcalls run one by one, and joins its flow's group.
        A packet whose key was decided goes to ``upcalled`` with its flow.
        """
        table = pmd.flow_table
        emc = table.emc
        start = _tsc()
        answers = self.upcall([key for _, key, _ in misses])
        installed: list[DpFlow | None] = []
        n_up = n_lost = n_emc = n_masked = 0
        for (packet, key, sig), answer in zip(misses, answers, strict=True):
            if answer is None:
                flow = None
            elif isinstance(answer, int):
                flow = installed[answer] if 0 <= answer < len(installed) else None
                if flow is not None:
                    if etable is not None and sig is not None and etable.get(sig) is flow:
                        n_emc += 1
                    else:
                        n_masked += 1
            else:
                flow = table.install(self.make_flow(key, answer))
                n_up += 1
            installed.append(flow)
            if flow is None:
                n_lost += 1
                continue
            if etable is not None and sig is not None:
                emc.maybe_insert(etable, sig, flow)
            if isinstance(answer, int):
                groups.setdefault(flow, []).append(packet)
            else:
                upcalled.append((flow, packet))
        if n_up:
            share = (_tsc() - start) // n_up
            record = pmd.perf.record_upcall
            for _ in range(n_up):
                record(share)
        return n_up, n_lost, n_emc, n_masked
