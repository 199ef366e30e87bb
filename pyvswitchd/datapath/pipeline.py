"""The datapath input function: what happens to a received batch.

This is the stage the flow pipeline (exact-match cache, megaflow
classifier, upcall to the bridge's learning switch) plugs into.  Until that
lands, every packet is handed to the bridge, which floods it to every other
port of the bridge the packet came in on.  Each packet therefore counts as
a miss whose upcall succeeded (PMD_STAT_MISS), which is what it is: no flow
was cached, the bridge decided.

The flood sets are precomputed by the datapath at reconfigure time, one
tuple of output port numbers per input port, so the per-packet work is a
dict lookup and a loop over a tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .packet import ETH_HEADER_LEN, Packet
from .perf import Stat

if TYPE_CHECKING:
    from ..observe.coverage import Counter
    from .pmd import Pmd


class FloodPipeline:
    """Flood every packet within its bridge (stand-in for the flow pipeline)."""

    def __init__(self, flood: Mapping[int, tuple[int, ...]], drop_invalid: Counter) -> None:
        self.flood = flood
        self._drop_invalid = drop_invalid

    def process(self, pmd: Pmd, batch: list[Packet], in_port: int) -> None:
        out_ports = self.flood.get(in_port, ())
        output = pmd.output
        n_ok = 0
        for packet in batch:
            if len(packet.data) < ETH_HEADER_LEN:
                # Runts are dropped before classification and counted in no class.
                self._drop_invalid.total += 1
                continue
            packet.in_port = in_port
            n_ok += 1
            for port_no in out_ports:
                output(port_no, packet)
        pmd.perf.n[Stat.MISS] += n_ok
