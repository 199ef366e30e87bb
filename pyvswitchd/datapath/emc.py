"""Per-PMD flow caches in front of the classifier: EMC and SMC.

**Exact-match cache.**  OVS keys its EMC by the packet's whole miniflow.
Building a full flow key per packet is the most expensive step in Python,
so the EMC here is keyed by the packet's *header signature*
(:func:`.packet.fast_signature`): the exact bytes the parser would read for
the common header shapes.  Equal signatures guarantee equal flow keys, so a
hit is exactly as safe as OVS's, and a hit never parses the packet.  Shapes
without a fast signature use their full key tuple as the EMC key.  Entries
are per in_port, at most EMC_ENTRIES in all, inserted with probability
1/``emc-insert-inv-prob`` like OVS.  An entry whose flow was deleted is a
miss for the per-packet path; the pipeline's batch fast path does not look
at each hit's flow, so it first sweeps such entries out when a flow of the
PMD died since its last batch (:attr:`Emc.stale`).

**Signature-match cache** (``smc-enable``): a larger cache from a hash of
the full key to a flow, verified against the flow's mask on every hit, as
OVS's SMC verifies its candidates.
"""

from __future__ import annotations

import random
from typing import Any

from .packet import SIG_MAX_ITEMS, signature_tot

#: EMC capacity (OVS: 8192 entries per PMD).
EMC_ENTRIES = 8192
#: SMC capacity (OVS: 2^20 entries).
SMC_ENTRIES = 1 << 20
UINT32_MAX = 2**32 - 1
DEFAULT_EMC_INSERT_INV_PROB = 100


def insert_min_for(inv_prob: int) -> int:
    """OVS's ``emc_insert_min``: insert when a random u32 is at most this (0 disables)."""
    if inv_prob <= 0:
        return 0
    return UINT32_MAX // inv_prob


class Emc:
    """Exact-match cache of one PMD."""

    __slots__ = (
        "_rand",
        "fast_backoff",
        "fast_kind",
        "insert_min",
        "max_tot",
        "n_entries",
        "ports",
        "stale",
    )

    def __init__(self, insert_min: int = UINT32_MAX // DEFAULT_EMC_INSERT_INV_PROB) -> None:
        self.ports: dict[int, dict[Any, Any]] = {}
        #: in_port -> batches to skip the pipeline's batch fast path for.
        self.fast_backoff: dict[int, int] = {}
        #: in_port -> which batch signature (UDP 0, TCP 1) hit last.
        self.fast_kind: dict[int, int] = {}
        self.n_entries = 0
        self.insert_min = insert_min
        #: Set when a flow of the PMD dies: entries may point to dead flows.
        self.stale = False
        #: The largest IPv4 total length of a signature ever inserted (never
        #: lowered, so an upper bound): a frame of at least this plus 14 bytes
        #: covers the IP packet of any signature in the cache.
        self.max_tot = 0
        self._rand = random.Random().getrandbits

    def table(self, in_port: int) -> dict[Any, Any]:
        """The signature → flow dict of ``in_port`` (created on first use)."""
        table = self.ports.get(in_port)
        if table is None:
            table = self.ports[in_port] = {}
        return table

    def maybe_insert(self, table: dict[Any, Any], sig: Any, flow: Any) -> None:
        """Probabilistic insertion, as OVS does to keep the EMC for heavy flows."""
        if self.insert_min and self._rand(32) <= self.insert_min:
            self.insert(table, sig, flow)

    def insert(self, table: dict[Any, Any], sig: Any, flow: Any) -> None:
        if len(sig) <= SIG_MAX_ITEMS:  # a signature, not a flow key
            self.max_tot = max(self.max_tot, signature_tot(sig))
        if sig not in table:
            if self.n_entries >= EMC_ENTRIES:
                self._evict()
            self.n_entries += 1
        table[sig] = flow

    def _evict(self) -> None:
        # Evict the oldest entry of the largest port table: cheap and fair enough.
        victim = max(self.ports.values(), key=len)
        del victim[next(iter(victim))]
        self.n_entries -= 1

    def forget(self, table: dict[Any, Any], sig: Any) -> None:
        if table.pop(sig, None) is not None:
            self.n_entries -= 1

    def sweep(self) -> int:
        """Drop entries of dead flows (OVS's slow sweep, all at once); return how many."""
        removed = 0
        for table in self.ports.values():
            dead = [sig for sig, flow in table.items() if flow.dead]
            for sig in dead:
                del table[sig]
            removed += len(dead)
        self.n_entries -= removed
        self.stale = False
        return removed

    def clear(self) -> None:
        self.ports.clear()
        self.n_entries = 0
        self.stale = False
        self.max_tot = 0


class Smc:
    """Signature-match cache of one PMD: full-key hash → flow, verified on hit."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[int, Any] = {}

    def lookup(self, key: tuple[int, ...]) -> Any:
        flow = self.entries.get(hash(key) & (SMC_ENTRIES - 1))
        if flow is not None and not flow.dead and flow.matches(key):
            return flow
        return None

    def insert(self, key: tuple[int, ...], flow: Any) -> None:
        self.entries[hash(key) & (SMC_ENTRIES - 1)] = flow

    def clear(self) -> None:
        self.entries.clear()
