"""Per-PMD flow caches in front of the classifier: EMC and SMC.

**Exact-match cache.**  OVS keys its EMC by the packet's whole miniflow.
Building a full flow key per packet is the most expensive step in Python,
so the EMC here is keyed by the packet's *header signature*
(:func:`fast_signature`): the exact bytes the parser would read for
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
import struct
from typing import Generic, Protocol, TypeAlias, TypeVar

from ..odp.flow_key import FlowKey
from ..odp.protocols import (
    ETH_TYPE_IP,
    FAST_PATH_MAX_FRAME_LEN,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
)

#: EMC capacity (OVS: 8192 entries per PMD).
EMC_ENTRIES = 8192
#: SMC capacity (OVS: 2^20 entries).
SMC_ENTRIES = 1 << 20
UINT32_MAX = 2**32 - 1
DEFAULT_EMC_INSERT_INV_PROB = 100

#: An exact-match cache key: a header signature (bytes and ints, see
#: :func:`fast_signature`) or, for other frames, the whole flow key.
EmcKey: TypeAlias = tuple[bytes | int, ...]


class CachedFlow(Protocol):
    """What the caches need of a flow: whether it died, and whether a key matches it."""

    @property
    def dead(self) -> bool: ...

    def matches(self, key: FlowKey) -> bool: ...


#: The flow type a cache holds (the datapath's DpFlow).
F = TypeVar("F", bound=CachedFlow)


# -- the EMC key: header signatures -----------------------------------------------

#: fast_signature's header view: EtherType, version/IHL, total length, frag word, protocol.
_SIG_HEAD = struct.Struct("!HBxHxxHxB")
# The signatures: bytes 0-17 (MACs, EtherType, version/IHL, TOS, total
# length), 20-23 (frag word, TTL, protocol), 26-33 (addresses), then the
# ports, or the ICMP type and code, or the TCP ports and data offset/flags
# (46-47).  Byte strings where no field is needed apart: fewer objects than
# ints, so a faster unpack and hash (the total length rides in the first
# string for that reason).  UDP keys have 3 items, TCP and ICMP keys 4 (they
# differ in the protocol), flow keys N_FIELDS: no two kinds can be equal, so
# all share one dict.
_SIG_UDP = struct.Struct("!18s2xI2x12s")
_SIG_TCP = struct.Struct("!18s2xI2x12s8xH")
_SIG_ICMP = struct.Struct("!18s2xI2x8sH")
_TOT = struct.Struct("!16xH")

#: The UDP (TCP) signature of any frame of at least 38 (48) bytes, shape
#: unchecked: the batch fast path computes one for a whole batch with one
#: ``map`` and relies on the exact-match cache holding only signatures whose
#: shape was checked.
udp_signature = _SIG_UDP.unpack_from
tcp_signature = _SIG_TCP.unpack_from
#: The IPv4 total length field of a frame of at least 18 bytes, as a 1-tuple.
frame_tot = _TOT.unpack_from
#: Items in the longest signature (TCP, ICMP); a flow key has more.
SIG_MAX_ITEMS = 4
#: Bytes a frame needs for :data:`udp_signature`.
UDP_SIGNATURE_LEN = _SIG_UDP.size


def signature_tot(sig: EmcKey) -> int:
    """The IPv4 total length recorded in a :func:`fast_signature`."""
    head = sig[0]
    assert isinstance(head, bytes), "not a signature"
    return int.from_bytes(head[16:18], "big")


def fast_signature(data: bytes) -> EmcKey | None:
    """The exact-match-cache key of a frame of the commonest shape; None for others.

    The shape: untagged Ethernet; IPv4 with IHL 5, neither MF nor a fragment
    offset; protocol UDP, TCP or ICMP; a total length that covers the L4
    header and fits in the frame (with less than 64 KiB of padding); for
    TCP a data offset within the segment.

    The signature is the header bytes
    :func:`~pyvswitchd.odp.flow_extract.parse_key` reads for that shape,
    unpacked in one call (cheaper than slicing and joining bytes):
    MACs, EtherType, version/IHL, TOS, total length, frag word, TTL,
    protocol, addresses, then the ports (TCP: plus data offset and flags)
    or the ICMP type and code.  The IP id and the checksums are
    left out: packets of one flow differ there, and once the shape is
    checked parse_key's result does not depend on them.  So equal
    signatures always mean equal parse_key results (for one in_port).

    The total length is in the signature although the key does not depend
    on it, so that the one shape check that involves the frame's length
    (``tot <= len - 14``) can be redone for a whole batch of cache hits
    cheaply: every other part of the shape is fixed by the signature, and
    the cache keeps the largest total length it holds, which settles the
    check at once for most batches of one frame size.  A flow whose packet
    sizes vary takes one cache entry per size.
    """
    n = len(data)
    # 42 = Ethernet + IPv4 + 8 bytes of UDP or ICMP, the shortest such frame.
    if n < 42:
        return None
    eth_type, vihl, tot, frag_off, proto = _SIG_HEAD.unpack_from(data, 12)
    # At most 64 KiB - 1 of padding after the IP packet (FAST_PATH_MAX_FRAME_LEN).
    if (
        eth_type != ETH_TYPE_IP
        or vihl != 0x45
        or frag_off & 0x3FFF
        or not n - FAST_PATH_MAX_FRAME_LEN <= tot <= n - 14
    ):
        return None
    if proto == IPPROTO_UDP:
        if tot >= 28:
            return _SIG_UDP.unpack_from(data)
    elif proto == IPPROTO_TCP:
        if tot >= 40:
            sig = _SIG_TCP.unpack_from(data)
            if 20 <= sig[3] >> 12 << 2 <= tot - 20:  # the data offset
                return sig
    elif proto == IPPROTO_ICMP and tot >= 28:
        return _SIG_ICMP.unpack_from(data)
    return None


def insert_min_for(inv_prob: int) -> int:
    """OVS's ``emc_insert_min``: insert when a random u32 is at most this (0 disables)."""
    if inv_prob <= 0:
        return 0
    return UINT32_MAX // inv_prob


class Emc(Generic[F]):
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
        self.ports: dict[int, dict[EmcKey, F]] = {}
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

    def table(self, in_port: int) -> dict[EmcKey, F]:
        """The signature → flow dict of ``in_port`` (created on first use)."""
        table = self.ports.get(in_port)
        if table is None:
            table = self.ports[in_port] = {}
        return table

    def maybe_insert(self, table: dict[EmcKey, F], sig: EmcKey, flow: F) -> None:
        """Probabilistic insertion, as OVS does to keep the EMC for heavy flows."""
        if self.insert_min and self._rand(32) <= self.insert_min:
            self.insert(table, sig, flow)

    def insert(self, table: dict[EmcKey, F], sig: EmcKey, flow: F) -> None:
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

    def forget(self, table: dict[EmcKey, F], sig: EmcKey) -> None:
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


class Smc(Generic[F]):
    """Signature-match cache of one PMD: full-key hash → flow, verified on hit."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[int, F] = {}

    def lookup(self, key: FlowKey) -> F | None:
        flow = self.entries.get(hash(key) & (SMC_ENTRIES - 1))
        if flow is not None and not flow.dead and flow.matches(key):
            return flow
        return None

    def insert(self, key: FlowKey, flow: F) -> None:
        self.entries[hash(key) & (SMC_ENTRIES - 1)] = flow

    def clear(self) -> None:
        self.entries.clear()
