"""Build the Ethernet frame a datapath flow key describes (OVS's ``flow_compose``).

``netdev-dummy/receive p0 'eth(...),eth_type(0x0800),ipv4(...),icmp(...)'``
injects the frame :func:`compose_packet` builds from the parsed key.  The
result follows OVS's ``flow_compose`` + ``packet_expand`` so injected frames
have the sizes and bytes OVS tests expect:

* Without ``length``: protocols that carry data (UDP, TCP without
  SYN/FIN/RST, ICMP and ICMPv6 echo) get a 64-byte payload ``00 01 .. 3f``;
  others (ARP, SCTP, ICMP errors, ND) end after their headers.  So the ICMP
  echo of the reference capture is 14 + 20 + 8 + 64 = 106 bytes.
* With ``length``: headers only, then zeros up to ``length`` bytes, counted
  in the IP/UDP lengths and checksums as OVS's ``packet_expand`` does;
  ValueError when the headers alone are longer.

VLANs follow OVS's printed form ``eth_type(0x8100),vlan(...),encap(...)``,
outermost first; a ``vlan`` whose CFI is 0 adds no tag (OVS's "no VLAN").
A key without ``eth_type`` takes the type of its L3 attribute, as OVS's key
parser does (``ipv4(..)`` alone is an IPv4 packet, ``ipv6(..)`` an IPv6
one); with none it gives an 802.3 frame whose type field is the frame
length.  Without ``eth(..)`` both MAC addresses are zero, so
``ipv4(src=10.0.0.1,dst=10.0.0.2),tcp(src=1,dst=2)`` is an Ethernet frame
from and to 00:00:00:00:00:00 (OVS's tests send such flows).  Attributes
the key's own EtherType and IP protocol do not lead to are left out of the
frame, as OVS's key parser leaves them out of the flow: ``udp()`` beside
``proto=6``, ``ipv4()`` beside ``eth_type(0x86dd)``, ``tcp()`` beside an
``ipv4()`` without ``proto`` (protocol 0: no L4 header, no payload),
``nd()`` beside an ICMPv6 type other than 135/136.  IPv4 ``frag=first``
sets MF; ``frag=later`` sets MF and offset 100 (x 8 bytes) and omits the
L4 header.  Checksums (IPv4, TCP, UDP, ICMP, ICMPv6) are correct;
metadata attributes (``in_port``, ``recirc_id``, ...) do not affect the
frame.

Difference from OVS, so that the frame parses back to the key: an IPv6
``frag=first/later`` adds a Fragment extension header (OVS sets no
fragment bits at all).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .key_text import ENCAP, FRAG_LATER, FRAG_NO, KeyAttr
from .protocols import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    ETH_TYPE_RARP,
    ETH_TYPE_VLAN_8021AD,
    ETH_TYPE_VLAN_8021Q,
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
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
)

#: Payload OVS puts into composed packets that carry data.
DEFAULT_L7 = bytes(range(64))

_IP_MORE_FRAGMENTS = 0x2000
#: Fragment offset (in 8-byte units) OVS gives a "later" fragment.
_LATER_FRAG_OFFSET = 100

#: Attributes allowed inside encap(): no metadata, no Ethernet addresses.
_ENCAP_ATTRS = frozenset(
    {
        "eth_type",
        "vlan",
        ENCAP,
        "ipv4",
        "ipv6",
        "tcp",
        "tcp_flags",
        "udp",
        "sctp",
        "icmp",
        "icmpv6",
        "arp",
        "nd",
    }
)


def checksum(data: bytes, initial: int = 0) -> int:
    """The Internet checksum (RFC 1071) of ``data``, folded into ``initial``."""
    if len(data) & 1:
        data += b"\0"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = initial + sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _index(level: Sequence[KeyAttr], nested: bool) -> dict[str, KeyAttr]:
    by_name: dict[str, KeyAttr] = {}
    for attr in level:
        if attr.name in by_name:
            raise ValueError(f"{attr.name}() appears twice")
        if nested and attr.name not in _ENCAP_ATTRS:
            raise ValueError(f"{attr.name}() is not allowed inside encap()")
        by_name[attr.name] = attr
    return by_name


def compose_packet(key: Sequence[KeyAttr], length: int | None = None) -> bytes:
    """The frame ``key`` describes; zero-padded to ``length`` bytes when given."""
    top = _index(key, nested=False)
    ptype = top.get("packet_type")
    if ptype is not None and (ptype.get("ns"), ptype.get("id")) != (0, 0):
        raise ValueError("only Ethernet packets (packet_type(ns=0,id=0)) can be composed")
    eth = top.get("eth")
    l2 = (eth.get("dst") if eth else 0).to_bytes(6, "big")
    l2 += (eth.get("src") if eth else 0).to_bytes(6, "big")

    level = top
    while "vlan" in level:
        vlan = level["vlan"]
        tpid = level["eth_type"].get() if "eth_type" in level else None
        if tpid not in (ETH_TYPE_VLAN_8021Q, ETH_TYPE_VLAN_8021AD):
            raise ValueError("vlan() needs eth_type(0x8100) or eth_type(0x88a8) beside it")
        if ENCAP not in level:
            raise ValueError("vlan() needs encap(...) holding the inner headers")
        if vlan.get("cfi", 1):
            # The CFI bit marks "tag present" in the key; on the wire it is 0.
            l2 += struct.pack("!HH", tpid, vlan.get("vid") | vlan.get("pcp") << 13)
        level = _index(level[ENCAP].nested, nested=True)
    if ENCAP in level:
        raise ValueError("encap() without vlan()")

    dl_type = level["eth_type"].get() if "eth_type" in level else _implied_type(level)
    level = _without_surplus(dl_type, level)
    if length is None:
        body = _l3(dl_type, level, DEFAULT_L7, 0)
    else:
        headers = len(l2) + 2 + len(_l3(dl_type, level, b"", 0))
        if headers > length:
            raise ValueError(f"packet length {length} is less than the {headers} bytes of headers")
        body = _l3(dl_type, level, b"", length - headers)
    # Without eth_type the frame is 802.3 and OVS writes the frame size as its type.
    type_field = dl_type if dl_type is not None else len(l2) + 2 + len(body)
    return l2 + struct.pack("!H", type_field) + body


def _implied_type(level: dict[str, KeyAttr]) -> int | None:
    """The EtherType a level without ``eth_type`` has: its IP attribute's, else none."""
    if "ipv4" in level:
        return ETH_TYPE_IP
    if "ipv6" in level:
        return ETH_TYPE_IPV6
    return None


#: The L4 attribute of each IP protocol that has one.
_L4_ATTR = {
    IPPROTO_TCP: "tcp",
    IPPROTO_UDP: "udp",
    IPPROTO_SCTP: "sctp",
    IPPROTO_ICMP: "icmp",
    IPPROTO_ICMPV6: "icmpv6",
}
_L3_ATTR = {ETH_TYPE_IP: "ipv4", ETH_TYPE_IPV6: "ipv6", ETH_TYPE_ARP: "arp", ETH_TYPE_RARP: "arp"}
_L4_NAMES = tuple(_L4_ATTR.values())
_L3_NAMES = frozenset(("ipv4", "ipv6", "arp"))


def _without_surplus(dl_type: int | None, level: dict[str, KeyAttr]) -> dict[str, KeyAttr]:
    """``level`` without the attributes its EtherType and IP protocol do not lead to."""
    wanted_l3 = _L3_ATTR.get(dl_type) if dl_type is not None else None
    kept = {
        name: attr for name, attr in level.items() if name not in _L3_NAMES or name == wanted_l3
    }
    if "arp" in kept and kept["arp"].get("op") > 0xFF:
        raise ValueError(f"arp op {kept['arp'].get('op')} is more than 255")
    l3 = kept.get("ipv4") or kept.get("ipv6") if wanted_l3 in ("ipv4", "ipv6") else None
    proto = l3.get("proto") if l3 is not None else None
    l4_name = _L4_ATTR.get(proto) if proto is not None else None
    if (l4_name, wanted_l3) in (("icmp", "ipv6"), ("icmpv6", "ipv4")):
        l4_name = None  # ICMP is IPv4's, ICMPv6 IPv6's
    for name in _L4_NAMES:
        if name in kept and name != l4_name:
            del kept[name]
    if "tcp_flags" in kept and l4_name != "tcp":
        del kept["tcp_flags"]
    nd_types = (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT)
    if "nd" in kept and (
        l4_name != "icmpv6"
        or kept["icmpv6"].get("type") not in nd_types
        or kept["icmpv6"].get("code")
    ):
        del kept["nd"]
    return kept


def _l3(dl_type: int | None, level: dict[str, KeyAttr], l7: bytes, pad: int) -> bytes:
    """Everything after the Ethertype: L3, L4, payload, ``pad`` zero bytes."""
    zeros = bytes(pad)
    if dl_type == ETH_TYPE_IP:
        ip = level.get("ipv4") or KeyAttr("ipv4")
        proto, frag = ip.get("proto"), ip.get("frag")
        src, dst = ip.get("src").to_bytes(4, "big"), ip.get("dst").to_bytes(4, "big")
        l4 = _l4(proto, level, l7, frag) + zeros
        l4 = _l4_checksum(proto, l4, frag, src + dst + struct.pack("!xBH", proto, len(l4)))
        frag_off = 0
        if frag != FRAG_NO:
            frag_off = _IP_MORE_FRAGMENTS | (_LATER_FRAG_OFFSET if frag == FRAG_LATER else 0)
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            ip.get("tos"),
            20 + len(l4),
            0,
            frag_off,
            ip.get("ttl"),
            proto,
            0,
            src,
            dst,
        )
        return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + l4
    if dl_type == ETH_TYPE_IPV6:
        ip6 = level.get("ipv6") or KeyAttr("ipv6")
        proto, frag = ip6.get("proto"), ip6.get("frag")
        src, dst = ip6.get("src").to_bytes(16, "big"), ip6.get("dst").to_bytes(16, "big")
        l4 = _l4(proto, level, l7, frag) + zeros
        l4 = _l4_checksum(proto, l4, frag, src + dst + struct.pack("!IxxxB", len(l4), proto))
        ext, next_header = b"", proto
        if frag != FRAG_NO:
            offset = _LATER_FRAG_OFFSET << 3 if frag == FRAG_LATER else 0
            ext, next_header = struct.pack("!BxHI", proto, offset | 1, 0), IPPROTO_FRAGMENT
        flow = 6 << 28 | ip6.get("tclass") << 20 | ip6.get("label")
        header = struct.pack(
            "!IHBB16s16s", flow, len(ext) + len(l4), next_header, ip6.get("hlimit"), src, dst
        )
        return header + ext + l4
    if dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        arp = level.get("arp") or KeyAttr("arp")
        op = arp.get("op")
        addrs = (0, 0, 0, 0)
        if op in (1, 2):
            addrs = (arp.get("sha"), arp.get("sip"), arp.get("tha"), arp.get("tip"))
        body = struct.pack(
            "!HHBBH6s4s6s4s",
            1,
            ETH_TYPE_IP,
            6,
            4,
            op,
            addrs[0].to_bytes(6, "big"),
            addrs[1].to_bytes(4, "big"),
            addrs[2].to_bytes(6, "big"),
            addrs[3].to_bytes(4, "big"),
        )
        return body + zeros
    return zeros


def _l4(proto: int, level: dict[str, KeyAttr], l7: bytes, frag: int) -> bytes:
    """The L4 header (checksum zero) and its payload; nothing for a later fragment."""
    if frag == FRAG_LATER:
        return b""
    l4 = level.get(_L4_ATTR.get(proto, "")) or KeyAttr("l4")
    if proto == IPPROTO_TCP:
        flags = level["tcp_flags"].get() if "tcp_flags" in level else 0
        header = struct.pack(
            "!HHIIHHHH", l4.get("src"), l4.get("dst"), 0, 0, 5 << 12 | flags, 0, 0, 0
        )
        return header + (b"" if flags & (TCP_SYN | TCP_FIN | TCP_RST) else l7)
    if proto == IPPROTO_UDP:
        return struct.pack("!HHHH", l4.get("src"), l4.get("dst"), 8 + len(l7), 0) + l7
    if proto == IPPROTO_SCTP:
        return struct.pack("!HHII", l4.get("src"), l4.get("dst"), 0, 0)
    if proto == IPPROTO_IGMP:
        return bytes(8)
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        icmp_type, code = l4.get("type"), l4.get("code")
        header = struct.pack("!BBHI", icmp_type, code, 0, 0)
        if code:
            return header  # errors would carry the offending packet; OVS leaves it out too
        if proto == IPPROTO_ICMP:
            return header + (l7 if icmp_type in (0, 8) else b"")
        if icmp_type in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
            nd = level.get("nd") or KeyAttr("nd")
            header += nd.get("target").to_bytes(16, "big")
            for opt_type, field in (
                (ND_OPT_SOURCE_LINKADDR, "sll"),
                (ND_OPT_TARGET_LINKADDR, "tll"),
            ):
                if nd.get(field):
                    header += struct.pack("!BB", opt_type, 1) + nd.get(field).to_bytes(6, "big")
            return header
        return header + (l7 if icmp_type in (128, 129) else b"")
    return b""


#: Offset of the checksum in each L4 header, and whether it covers a pseudo header.
_CSUM = {
    IPPROTO_TCP: (16, True),
    IPPROTO_UDP: (6, True),
    IPPROTO_ICMP: (2, False),
    IPPROTO_IGMP: (2, False),
    IPPROTO_ICMPV6: (2, True),
}


def _l4_checksum(proto: int, l4: bytes, frag: int, pseudo: bytes) -> bytes:
    """``l4`` with its UDP length (padding included) and its checksum filled in."""
    if frag == FRAG_LATER or proto not in _CSUM:
        return l4
    if proto == IPPROTO_UDP:
        l4 = l4[:4] + struct.pack("!H", len(l4)) + l4[6:]
    offset, with_pseudo = _CSUM[proto]
    csum = checksum(pseudo + l4 if with_pseudo else l4)
    if proto == IPPROTO_UDP and csum == 0:
        csum = 0xFFFF  # zero means "no checksum" in UDP
    return l4[:offset] + struct.pack("!H", csum) + l4[offset + 2 :]
