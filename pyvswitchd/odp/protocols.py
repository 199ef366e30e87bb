"""Protocol numbers and header sizes: the one place each is defined.

EtherTypes, VLAN tag layout, IP protocol numbers, TCP flags and the frame
sizes the parser and the fast path check (OVS keeps these in
``packets.h``).  Every other module imports them from here, so a value is
written once.
"""

from __future__ import annotations

# -- Ethernet ----------------------------------------------------------------------

#: Ethernet header: destination and source MAC, EtherType.  The shortest
#: frame the pipeline accepts.
ETH_HEADER_LEN = 14
#: Smallest EtherType; a smaller type field is an 802.3 length.
ETH_TYPE_MIN = 0x600
#: OVS's FLOW_DL_TYPE_NONE: the EtherType of an 802.3 frame without SNAP.
ETH_TYPE_NONE = 0x5FF
ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_RARP = 0x8035
ETH_TYPE_IPV6 = 0x86DD

# -- VLAN tags ---------------------------------------------------------------------

#: TPID of an 802.1Q tag (C-tag).
ETH_TYPE_VLAN_8021Q = 0x8100
#: TPID of an 802.1ad tag (S-tag, QinQ).
ETH_TYPE_VLAN_8021AD = 0x88A8
#: EtherTypes that start a VLAN tag.
VLAN_TPIDS = (ETH_TYPE_VLAN_8021Q, ETH_TYPE_VLAN_8021AD)
#: A tag on the wire: TPID and TCI.
VLAN_HEADER_LEN = 4
#: TCI layout: VID in the low 12 bits, then the CFI (DEI) bit, PCP on top.
#: Flow keys set VLAN_CFI to mark "tag present", as OVS does; on the wire
#: it is sent clear.
VLAN_VID_MASK = 0x0FFF
VLAN_CFI = 0x1000
VLAN_PCP_SHIFT = 13

# -- IP ----------------------------------------------------------------------------

IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132

#: ICMPv6 neighbour discovery: solicitation and advertisement types.
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
#: Neighbour discovery options: source and target link-layer address.
ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_TARGET_LINKADDR = 2

#: TCP flag bits (the flow key keeps the low 12 bits of the flags word).
TCP_FIN = 0x001
TCP_SYN = 0x002
TCP_RST = 0x004
TCP_PSH = 0x008
TCP_ACK = 0x010

# -- frame lengths the parser checks -----------------------------------------------

#: Most bytes OVS's parser lets follow an IP packet in its frame (padding);
#: with more, it takes the IP header for invalid.
IP_MAX_TRAILER = 0xFFFF
#: The fast-path frame-length limit (0x1000D).  The fast paths test an IPv4
#: frame's trailer as ``len - tot <= FAST_PATH_MAX_FRAME_LEN`` (tot: the IP
#: total length), and a frame at most this long passes that test whatever
#: its total length, which lets the pipeline's batch fast path skip it.
FAST_PATH_MAX_FRAME_LEN = ETH_HEADER_LEN + IP_MAX_TRAILER
