"""Flow extraction: the flow key of a received frame (OVS's ``miniflow_extract``).

:func:`parse_key` reads a frame's headers into the tuple of
:mod:`.flow_key`; the comment above it says what a malformed or truncated
frame yields, layer by layer.  It runs once per packet that misses the
exact-match cache, so it is written for speed: the commonest shape
(untagged IPv4 UDP/TCP/ICMP) is read with one ``struct`` unpack.
:mod:`.flow_compose` builds frames the other way, from key text.
"""

from __future__ import annotations

import struct

from .flow_key import FRAG_ANY, FRAG_LATER, FlowKey
from .protocols import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    ETH_TYPE_MIN,
    ETH_TYPE_NONE,
    ETH_TYPE_RARP,
    ETH_TYPE_VLAN_8021Q,
    FAST_PATH_MAX_FRAME_LEN,
    IP_MAX_TRAILER,
    IPPROTO_AH,
    IPPROTO_FRAGMENT,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_IGMP,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
    ND_OPT_SOURCE_LINKADDR,
    ND_OPT_TARGET_LINKADDR,
    VLAN_CFI,
)

# -- header parsing --------------------------------------------------------------
#
# parse_key() is OVS's miniflow_extract() for the fields of flow_key.py.  What
# it makes of a frame it cannot fully parse, layer by layer (OVS does the
# same, so megaflows match the same packets):
#
# * < 14 bytes: None (the datapath drops runts before parsing).
# * Ethernet: one 802.1Q tag (TPID 0x8100) is parsed when at least 6 bytes
#   (the tag and the next type) follow the MACs; otherwise 0x8100 stays the
#   EtherType and VLAN_TCI is 0.  A second tag is not parsed (OVS's default
#   vlan-limit is 1): its TPID becomes the EtherType.  802.1ad (0x88a8) is
#   *not* parsed as a tag, because the key has no field for the TPID and a
#   key must format back to the TPID it came with; it is a plain EtherType.
#   Types below 0x600 are 802.3 lengths: an LLC/SNAP header with OUI 0
#   supplies the real type, otherwise ETH_TYPE is 0x5ff (FLOW_DL_TYPE_NONE).
# * IPv4: a header shorter than 20 bytes, an IHL below 5, a total length
#   shorter than the IHL or longer than the frame, or more than 64 KiB of
#   trailing padding makes the whole L3 invalid: the key then has the L2
#   fields only (NW_SRC onwards are 0).  Options are skipped; L4 is read
#   within the total length (Ethernet padding is never read).
# * IPv6: a header shorter than 40 bytes or a payload length beyond the
#   frame (or 64 KiB short of it): L2 fields only.  An extension header
#   (hop-by-hop, routing, destination options, AH, fragment) with fewer
#   than 8 bytes left or longer than the payload: NW_SRC and NW_DST only,
#   as OVS fills the other IPv6 fields after walking the chain.  A
#   non-first fragment stops the walk with NW_PROTO 44 (IPPROTO_FRAGMENT).
# * Later fragments (IPv4 or IPv6) have no L4 fields.  A truncated L4
#   header (TCP < 20 bytes or a data offset outside 20..segment length; UDP,
#   ICMP, IGMP or ICMPv6 < 8; SCTP < 12) leaves TP_SRC, TP_DST and TCP_FLAGS
#   0 while the L3 fields stay.  As in OVS the L4 parser follows the
#   protocol number whatever the IP version (ICMP in IPv6 is parsed too).
# * ICMPv6 neighbour solicitation/advertisement (type 135/136, code 0): the
#   target needs 16 more bytes (else ND_TARGET, ARP_SHA and ARP_THA stay 0);
#   then 8-byte source/target link-layer address options fill ARP_SHA and
#   ARP_THA.  Option parsing stops at a zero-length or overlong option; a
#   second SLL (or TLL) option after a non-zero one voids the target and
#   both addresses.  OVS's nd_ext fields (reserved word, first option type)
#   have no place in the key and are not extracted.
# * IGMP type and code go to TP_SRC and TP_DST, as OVS keeps them.
# * ARP and RARP: the 28-byte Ethernet/IPv4 ARP body (hrd 1, pro 0x0800,
#   hln 6, pln 4) is required, else L2 fields only; an opcode above 255
#   leaves NW_PROTO 0 (OVS matches the low 8 bits only).

# Keys are built by tuple concatenation, which is measurably faster than the
# star-unpacking RUF005 prefers.
# ruff: noqa: RUF005

_ETH = struct.Struct("!HIHIH")  # dst (hi16, lo32), src (hi16, lo32), type
_ETH_IP4 = struct.Struct("!HIHIHBBH2xHBB2xII")  # _ETH followed by _IP4
_IP4 = struct.Struct("!BBH2xHBB2xII")  # ver/ihl, tos, tot_len, frag, ttl, proto, src, dst
_IP6 = struct.Struct("!IHBBQQQQ")  # ver/tc/label, plen, next header, hlim, src, dst
_ARP = struct.Struct("!HHBBHHIIHII")  # hrd, pro, hln, pln, op, sha, spa, tha, tpa
_TCP = struct.Struct("!HH8xH")  # ports, data offset + flags
_PORTS = struct.Struct("!HH")
_U128 = struct.Struct("!QQ")
_MAC = struct.Struct("!HI")

_LLC_SNAP_OUI0 = b"\xaa\xaa\x03\x00\x00\x00"
#: IPv6 extension headers walked like OVS: hop-by-hop, routing, fragment, AH, dest options.
_IPV6_EXT = frozenset((0, 43, IPPROTO_FRAGMENT, IPPROTO_AH, 60))

_ZEROS13 = (0,) * 13
_ZEROS11 = (0,) * 11
_NO_L4 = (0, 0, 0, 0, 0, 0)


def parse_key(data: bytes, in_port: int) -> FlowKey | None:
    """The flow key of an Ethernet frame received on ``in_port``; None for runts.

    Never raises, whatever ``data`` holds; the comment above this function
    says what a malformed or truncated frame yields.
    """
    n = len(data)
    if n >= 34:
        # Untagged IPv4 first, with Ethernet and IPv4 headers in one unpack:
        # it is most of the traffic.  Other frames reuse the MACs and type.
        fields = _ETH_IP4.unpack_from(data)
        (dst_hi, dst_lo, src_hi, src_lo, eth_type,
         vihl, tos, tot, frag_off, ttl, proto, nw_src, nw_dst) = fields  # fmt: skip
        if eth_type == ETH_TYPE_IP:
            # Options, fragments, bad lengths and other protocols: see _parse_ipv4().
            # The tuples are literals: star-unpacking into them costs more than the parse.
            if (
                vihl == 0x45
                and not frag_off & 0x3FFF
                and n - FAST_PATH_MAX_FRAME_LEN <= tot <= n - 14
            ):
                if proto == IPPROTO_UDP and tot >= 28:
                    tp_src, tp_dst = _PORTS.unpack_from(data, 34)
                    return (in_port, 0, dst_hi << 32 | dst_lo, src_hi << 32 | src_lo,
                            ETH_TYPE_IP, 0, nw_src, nw_dst, IPPROTO_UDP, tos, ttl, 0, 0,
                            tp_src, tp_dst, 0, 0, 0, 0)  # fmt: skip
                if proto == IPPROTO_ICMP and tot >= 28:
                    return (in_port, 0, dst_hi << 32 | dst_lo, src_hi << 32 | src_lo,
                            ETH_TYPE_IP, 0, nw_src, nw_dst, IPPROTO_ICMP, tos, ttl, 0, 0,
                            data[34], data[35], 0, 0, 0, 0)  # fmt: skip
                if proto == IPPROTO_TCP and tot >= 40:
                    tp_src, tp_dst, ctl = _TCP.unpack_from(data, 34)
                    if 20 <= ctl >> 12 << 2 <= tot - 20:
                        return (in_port, 0, dst_hi << 32 | dst_lo, src_hi << 32 | src_lo,
                                ETH_TYPE_IP, 0, nw_src, nw_dst, IPPROTO_TCP, tos, ttl, 0, 0,
                                tp_src, tp_dst, ctl & 0x0FFF, 0, 0, 0)  # fmt: skip
            l2 = (in_port, 0, dst_hi << 32 | dst_lo, src_hi << 32 | src_lo, ETH_TYPE_IP, 0)
            return _parse_ipv4(data, 14, l2, vihl, tos, tot, frag_off, ttl, proto, nw_src, nw_dst)
    elif n >= 14:
        dst_hi, dst_lo, src_hi, src_lo, eth_type = _ETH.unpack_from(data)
    else:
        return None
    off = 14
    tci = 0
    if eth_type < ETH_TYPE_MIN or eth_type == ETH_TYPE_VLAN_8021Q:
        if eth_type == ETH_TYPE_VLAN_8021Q and n >= 18:
            tci, eth_type = _PORTS.unpack_from(data, 14)
            tci |= VLAN_CFI  # OVS's "tag present" mark
            off = 18
        if eth_type < ETH_TYPE_MIN:
            eth_type = ETH_TYPE_NONE
            if n - off >= 8 and data[off : off + 6] == _LLC_SNAP_OUI0:
                snap_type = data[off + 6] << 8 | data[off + 7]
                off += 8
                if snap_type >= ETH_TYPE_MIN:
                    eth_type = snap_type
    l2 = (in_port, 0, dst_hi << 32 | dst_lo, src_hi << 32 | src_lo, eth_type, tci)
    if eth_type == ETH_TYPE_IP:
        if n - off < 20:
            return l2 + _ZEROS13
        return _parse_ipv4(data, off, l2, *_IP4.unpack_from(data, off))
    if eth_type == ETH_TYPE_IPV6:
        return _parse_ipv6(data, off, l2)
    if eth_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        return _parse_arp(data, off, l2)
    return l2 + _ZEROS13


def _parse_ipv4(
    data: bytes,
    off: int,
    l2: tuple[int, ...],
    vihl: int,
    tos: int,
    tot: int,
    frag_off: int,
    ttl: int,
    proto: int,
    nw_src: int,
    nw_dst: int,
) -> FlowKey:
    """The key of an IPv4 packet at ``off`` whose fixed header fields are given.

    ``l2`` is the key's first 6 fields.
    """
    ihl = (vihl & 0x0F) << 2
    size = len(data) - off
    if ihl < 20 or tot > size or ihl > tot or size - tot > IP_MAX_TRAILER:
        return l2 + _ZEROS13
    frag = 0
    if frag_off & 0x3FFF:  # MF or a fragment offset
        frag = FRAG_ANY
        if frag_off & 0x1FFF:
            return l2 + (nw_src, nw_dst, proto, tos, ttl, FRAG_ANY | FRAG_LATER, 0) + _NO_L4
    l4 = off + ihl
    return l2 + (nw_src, nw_dst, proto, tos, ttl, frag, 0) + _parse_l4(data, l4, off + tot, proto)


def _parse_arp(data: bytes, off: int, l2: tuple[int, ...]) -> FlowKey:
    """The key of an ARP/RARP body at ``off``; ``l2`` is the first 6 fields."""
    if len(data) - off < 28:
        return l2 + _ZEROS13
    hrd, pro, hln, pln, op, sha_hi, sha_lo, spa, tha_hi, tha_lo, tpa = _ARP.unpack_from(data, off)
    if hrd != 1 or pro != ETH_TYPE_IP or hln != 6 or pln != 4:
        return l2 + _ZEROS13
    return l2 + (spa, tpa, op if op <= 0xFF else 0, 0, 0, 0, 0, 0, 0, 0,
            sha_hi << 32 | sha_lo, tha_hi << 32 | tha_lo, 0)  # fmt: skip


def _parse_ipv6(data: bytes, off: int, l2: tuple[int, ...]) -> FlowKey:
    """The key of an IPv6 packet at ``off``; ``l2`` is the first 6 fields."""
    size = len(data) - off
    if size < 40:
        return l2 + _ZEROS13
    tc_flow, plen, proto, hlim, s_hi, s_lo, d_hi, d_lo = _IP6.unpack_from(data, off)
    if plen + 40 > size or size - plen - 40 > IP_MAX_TRAILER:
        return l2 + _ZEROS13
    nw_src = s_hi << 64 | s_lo
    nw_dst = d_hi << 64 | d_lo
    pos = off + 40
    end = pos + plen  # never read the Ethernet padding
    frag = 0
    while proto in _IPV6_EXT:
        if end - pos < 8:
            return l2 + (nw_src, nw_dst) + _ZEROS11
        if proto == IPPROTO_FRAGMENT:
            proto = data[pos]
            offlg = data[pos + 2] << 8 | data[pos + 3]
            pos += 8
            if offlg:
                frag = FRAG_ANY
                if offlg & 0xFFF8:  # a fragment offset: only the first fragment has L4
                    frag |= FRAG_LATER
                    proto = IPPROTO_FRAGMENT
                    break
            continue
        # AH counts its length in 4-byte words (minus 2), the others in 8-byte words (minus 1).
        length = (data[pos + 1] + 2) * 4 if proto == IPPROTO_AH else (data[pos + 1] + 1) * 8
        if length > end - pos:
            return l2 + (nw_src, nw_dst) + _ZEROS11
        proto = data[pos]
        pos += length
    head = l2 + (nw_src, nw_dst, proto, tc_flow >> 20 & 0xFF, hlim, frag, tc_flow & 0xFFFFF)
    if frag & FRAG_LATER:
        return head + _NO_L4
    return head + _parse_l4(data, pos, end, proto)


def _parse_l4(data: bytes, pos: int, end: int, proto: int) -> tuple[int, ...]:
    """(TP_SRC, TP_DST, TCP_FLAGS, ARP_SHA, ARP_THA, ND_TARGET) of the L4 header at ``pos``."""
    size = end - pos
    if proto == IPPROTO_TCP:
        if size >= 20:
            tp_src, tp_dst, ctl = _TCP.unpack_from(data, pos)
            if 20 <= ctl >> 12 << 2 <= size:
                return tp_src, tp_dst, ctl & 0x0FFF, 0, 0, 0
    elif proto in (IPPROTO_UDP, IPPROTO_SCTP):
        if size >= (8 if proto == IPPROTO_UDP else 12):
            tp_src, tp_dst = _PORTS.unpack_from(data, pos)
            return tp_src, tp_dst, 0, 0, 0, 0
    elif proto in (IPPROTO_ICMP, IPPROTO_IGMP):
        if size >= 8:
            return data[pos], data[pos + 1], 0, 0, 0, 0
    elif proto == IPPROTO_ICMPV6 and size >= 8:
        icmp_type, code = data[pos], data[pos + 1]
        if code == 0 and icmp_type in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
            return (icmp_type, 0, 0) + _parse_nd(data, pos + 8, end)
        return icmp_type, code, 0, 0, 0, 0
    return _NO_L4


def _parse_nd(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(ARP_SHA, ARP_THA, ND_TARGET) of a neighbour solicitation/advertisement body."""
    if end - pos < 16:
        return 0, 0, 0
    t_hi, t_lo = _U128.unpack_from(data, pos)
    target = t_hi << 64 | t_lo
    pos += 16
    sll = tll = 0
    while end - pos >= 8:
        opt_type = data[pos]
        opt_len = data[pos + 1] * 8
        if not opt_len or opt_len > end - pos:
            break
        if opt_len == 8 and opt_type in (ND_OPT_SOURCE_LINKADDR, ND_OPT_TARGET_LINKADDR):
            hi, lo = _MAC.unpack_from(data, pos + 2)
            if opt_type == ND_OPT_SOURCE_LINKADDR:
                if sll:
                    return 0, 0, 0  # a repeated option invalidates the whole ND body
                sll = hi << 32 | lo
            else:
                if tll:
                    return 0, 0, 0
                tll = hi << 32 | lo
        pos += opt_len
    return sll, tll, target
