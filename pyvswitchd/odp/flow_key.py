"""The flow key: what the datapath matches packets on.

A flow key is a plain ``tuple`` of ``N_FIELDS`` ints, one per field below,
in this order.  Tuples hash and compare in C, so the exact-match cache and
the megaflow subtables use them (or projections of them) directly as dict
keys.  A mask has the same shape: each int is the bit mask of its field
(all ones of the field's width = exact match, 0 = wildcard).
:func:`masked` applies a mask, :func:`ufid_for` names a megaflow by its
masked key and mask, :func:`mask_is_simple` tells a simple-match mask.

Field semantics follow OVS's ``struct flow`` as the datapath flow syntax
shows it:

``IN_PORT``      datapath port number the packet came in on
``RECIRC_ID``    recirculation id (always 0 here: no recirculation yet)
``ETH_DST``      48-bit int
``ETH_SRC``      48-bit int
``ETH_TYPE``     the inner EtherType (after a VLAN tag), 16 bits
``VLAN_TCI``     0 when untagged; else the TCI with ``VLAN_CFI`` (0x1000)
                 set, as OVS marks "tag present"
``NW_SRC``       IPv4 source (32 bits), IPv6 source (128 bits), ARP SPA
``NW_DST``       IPv4/IPv6 destination, ARP TPA
``NW_PROTO``     IP protocol, IPv6 next header, ARP opcode (low 8 bits)
``NW_TOS``       the IPv4 TOS / IPv6 traffic class byte (DSCP + ECN)
``NW_TTL``       IPv4 TTL / IPv6 hop limit
``NW_FRAG``      ``FRAG_ANY`` (1) if a fragment, plus ``FRAG_LATER`` (2) if
                 not the first fragment
``IPV6_LABEL``   20-bit flow label
``TP_SRC``       TCP/UDP source port; ICMP/ICMPv6 type
``TP_DST``       TCP/UDP destination port; ICMP/ICMPv6 code
``TCP_FLAGS``    12 bits of TCP flags
``ARP_SHA``      ARP sender hardware address (48 bits); ND source LL addr
``ARP_THA``      ARP target hardware address; ND target LL addr
``ND_TARGET``    ICMPv6 neighbour discovery target (128 bits)
"""

from __future__ import annotations

import hashlib
import uuid
from operator import and_
from typing import TypeAlias

from .protocols import VLAN_CFI, VLAN_VID_MASK

IN_PORT = 0
RECIRC_ID = 1
ETH_DST = 2
ETH_SRC = 3
ETH_TYPE = 4
VLAN_TCI = 5
NW_SRC = 6
NW_DST = 7
NW_PROTO = 8
NW_TOS = 9
NW_TTL = 10
NW_FRAG = 11
IPV6_LABEL = 12
TP_SRC = 13
TP_DST = 14
TCP_FLAGS = 15
ARP_SHA = 16
ARP_THA = 17
ND_TARGET = 18
N_FIELDS = 19

FIELD_NAMES = (
    "in_port", "recirc_id", "eth_dst", "eth_src", "eth_type", "vlan_tci", "nw_src", "nw_dst",
    "nw_proto", "nw_tos", "nw_ttl", "nw_frag", "ipv6_label", "tp_src", "tp_dst", "tcp_flags",
    "arp_sha", "arp_tha", "nd_target",
)  # fmt: skip

#: Widest value of each field (IPv4 and IPv6 share NW_SRC/NW_DST: 128 bits).
FIELD_BITS = (32, 32, 48, 48, 16, 16, 128, 128, 8, 8, 8, 2, 20, 16, 16, 12, 48, 48, 128)

FULL_MASKS = tuple((1 << bits) - 1 for bits in FIELD_BITS)
EMPTY_MASK = (0,) * N_FIELDS

#: VLAN_TCI mask of "untagged only": VID and CFI exact (what NORMAL megaflows carry).
VLAN_UNTAGGED_MASK = VLAN_VID_MASK | VLAN_CFI

FRAG_ANY = 1
FRAG_LATER = 2

FlowKey: TypeAlias = tuple[int, ...]
FlowMask: TypeAlias = tuple[int, ...]


def masked(key: FlowKey, mask: FlowMask) -> FlowKey:
    """``key`` with every bit outside ``mask`` cleared (upcall path, not per packet)."""
    # map() over operator.and_ runs in C: several times a generator's speed.
    return tuple(map(and_, key, mask))


# -- megaflow identity and classification ------------------------------------------


def ufid_for(key: FlowKey, mask: FlowMask) -> str:
    """A stable UUID-formatted flow id: a hash of the masked key and the mask.

    Flows with equal masked keys but different masks get different ids, as
    OVS's megaflow ufids do.  Formatted as a version-4 UUID, like OVS's.
    """
    digest = hashlib.blake2b(digest_size=16)
    for value, field_mask, full in zip(key, mask, FULL_MASKS, strict=True):
        digest.update((value & field_mask & full).to_bytes(16, "big"))
        digest.update((field_mask & full).to_bytes(16, "big"))
    return str(uuid.UUID(bytes=digest.digest(), version=4))


#: The fields a simple-match flow's mask may cover, and how far: OVS's simple-match
#: table keys only on these (VLAN_TCI, which must be exactly VID|CFI, aside).
_SIMPLE_FIELDS = {
    RECIRC_ID: FULL_MASKS[RECIRC_ID],
    IN_PORT: FULL_MASKS[IN_PORT],
    ETH_TYPE: FULL_MASKS[ETH_TYPE],
    NW_FRAG: FRAG_ANY | FRAG_LATER,
}


def mask_is_simple(mask: FlowMask) -> bool:
    """Whether ``mask`` qualifies a flow for the simple-match table (OVS's rule).

    The mask may only cover recirc_id, in_port, the EtherType and the
    fragment bits, and must match the VLAN VID and CFI exactly.  (OVS also
    wants recirc_id 0 and an Ethernet packet type; those are key
    conditions.)
    """
    if mask[VLAN_TCI] != VLAN_UNTAGGED_MASK:
        return False
    for index, field_mask in enumerate(mask):
        if index != VLAN_TCI and field_mask & ~_SIMPLE_FIELDS.get(index, 0):
            return False
    return True
