"""Megaflows as OVS's datapath flow text: ``dpctl/dump-flows`` and ``dpctl/add-flow``.

:func:`format_flow` prints a (key, mask) pair as ``dpctl/dump-flows`` prints
a megaflow; :func:`parse_flow` reads that syntax (typed for
``dpctl/add-flow`` or copied from a dump) back.  The attribute grammar
(numbers, addresses, ``/mask``) is :mod:`.key_text`'s; this module maps
attributes to flow-key fields.

**Formatting** follows OVS's ``odp_flow_format``.  Which attributes exist
depends on the key (an IPv4 key has ``ipv4()``, a UDP one ``udp()``); the
mask decides how they print.  Non-verbose: attributes and fields with a
zero mask are left out, exact fields print bare, partial ones
``value/mask``.  Verbose (``-m``): everything prints, wildcards as
``value/0``, plus ``skb_priority(0/0)`` .. ``dp_hash(0/0)``, metadata the
key has no field for; pass the flow's unmasked key to show what OVS shows.
OVS quirks kept: ``frag=`` prints only under the FRAG_ANY mask bit, always
exact (the syntax has no masked form); the CFI bit prints only as
``cfi=0``; a tagged key prints ``eth_type(0x8100),vlan(..),encap(..)`` with
the TPID exact; a tag cut short (TPID as EtherType, TCI 0) prints
``eth_type(0x8100),vlan(..,cfi=0),encap()``; an 802.3 frame prints
``eth_type(0/0xffff)``; ``tcp_flags()`` appears when the key or the mask
has flags; ``nd()`` keeps its mask only under an exact ICMPv6 type.

**Parsing**: given fields are exact unless written ``/mask``; absent ones
are wildcards, except that

* an absent ``recirc_id`` is exact 0 (OVS's rule);
* ``in_port`` must be present and exact (:class:`InPortNotExactError`);
* ``ipv4()``, ``ipv6()`` or ``arp()`` without ``eth_type`` make the
  EtherType exact; an EtherType without ``vlan()``/``encap()`` means
  "untagged": VLAN_TCI 0 under VID|CFI (OVS uses 0xffff: the same packets
  match, and VID|CFI is the mask NORMAL megaflows carry);
* an L4 attribute without ``proto=`` makes the protocol exact.

Masks keep the syntax's widths: an exact IPv4 address is 0xffffffff, an
ICMP type 0xff, an ARP opcode 0xff (it lives in NW_PROTO).  What OVS
refuses is a :class:`FlowSyntaxError` too: L3 fields under a masked
EtherType, L4 fields under a masked protocol or on a later fragment,
attributes that contradict each other, a second VLAN tag, 802.1ad (the key
has no TPID field), metadata other than 0 (``skb_mark(5)``).  Accepted
beyond OVS: flows without any EtherType, L3 attributes without
``eth_type``.

Round trip: ``parse_flow(format_flow(k, m)) == (masked(k, m), m)`` (verbose
or not) for every mask the text can express: masks that are 0 outside the
key's attributes and follow the rules above (the tests'
``expressible_flows`` lists them).  Other masks come back as the nearest
expressible one, and stay there, except VLAN masks without the CFI bit: a
masked key cannot tell whether such a flow was for tagged frames.

The key has no packet_type field, yet OVS prints ``packet_type(ns=0,id=0)``
only for flows that match it (upcalls install such flows) and shows an
all-wildcard ``eth()`` for flows added without it; until the key gains the
field, :class:`FlowMatch` and :func:`format_flow` carry it on the side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import attrs

from . import key_text
from .flow_key import (
    ARP_SHA,
    ARP_THA,
    ETH_DST,
    ETH_SRC,
    ETH_TYPE,
    FRAG_ANY,
    FRAG_LATER,
    FULL_MASKS,
    IN_PORT,
    IPV6_LABEL,
    N_FIELDS,
    ND_TARGET,
    NW_DST,
    NW_FRAG,
    NW_PROTO,
    NW_SRC,
    NW_TOS,
    NW_TTL,
    RECIRC_ID,
    TCP_FLAGS,
    TP_DST,
    TP_SRC,
    VLAN_TCI,
    VLAN_UNTAGGED_MASK,
    FlowKey,
    FlowMask,
)
from .key_text import ENCAP, VALUE, KeyAttr, OdpKeyError, format_odp_key, parse_odp_key
from .protocols import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    ETH_TYPE_MIN,
    ETH_TYPE_NONE,
    ETH_TYPE_RARP,
    ETH_TYPE_VLAN_8021Q,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
    VLAN_CFI,
    VLAN_PCP_SHIFT,
    VLAN_TPIDS,
    VLAN_VID_MASK,
)

IPV4_MASK = 0xFFFF_FFFF
ICMP_MASK = 0xFF

#: The OVS error of a flow whose in_port is missing or masked.
IN_PORT_NOT_EXACT = "in_port is not an exact match"

_FULL16 = 0xFFFF
#: Metadata OVS prints in verbose dumps and the key has no field for.
_METADATA_BEFORE_RECIRC = ("skb_priority", "skb_mark", "ct_state", "ct_zone", "ct_mark", "ct_label")
_METADATA = (*_METADATA_BEFORE_RECIRC, "dp_hash")
_L3_TYPES = {"ipv4": (ETH_TYPE_IP,), "ipv6": (ETH_TYPE_IPV6,), "arp": (ETH_TYPE_ARP, ETH_TYPE_RARP)}
#: The protocol each L4 attribute implies.
_L4_PROTO = {
    "tcp": IPPROTO_TCP,
    "tcp_flags": IPPROTO_TCP,
    "udp": IPPROTO_UDP,
    "sctp": IPPROTO_SCTP,
    "icmp": IPPROTO_ICMP,
    "icmpv6": IPPROTO_ICMPV6,
    "nd": IPPROTO_ICMPV6,
}
_PORT_ATTRS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_SCTP: "sctp"}
#: Attributes not allowed inside encap().
_OUTER_ONLY = frozenset((*_METADATA, "recirc_id", "in_port", "packet_type", "eth"))


_Out: TypeAlias = Callable[[str], object]


class FlowSyntaxError(ValueError):
    """A flow text that is malformed or asks for a match the datapath cannot make."""


class InPortNotExactError(FlowSyntaxError):
    """The flow does not match in_port exactly (OVS refuses such flows: EINVAL)."""

    def __init__(self) -> None:
        super().__init__(IN_PORT_NOT_EXACT)


@attrs.frozen
class FlowMatch:
    """A parsed flow.

    ``key`` is masked by ``mask``; ``unmasked_key`` holds the values as
    written (``src=10.0.0.9/0.0.0.0`` keeps 10.0.0.9), which is what a
    verbose dump of the flow prints.  ``packet_type_exact``: the text
    matched ``packet_type(ns=0,id=0)``.
    """

    key: FlowKey
    mask: FlowMask
    unmasked_key: FlowKey
    packet_type_exact: bool


# -- formatting ------------------------------------------------------------------


def format_flow(
    key: FlowKey,
    mask: FlowMask,
    *,
    verbose: bool = False,
    port_names: Mapping[int, str] | None = None,
    packet_type_exact: bool = True,
) -> str:
    """The ``dpctl/dump-flows`` text of a megaflow (without stats or actions).

    ``verbose`` is ``-m``.  ``port_names`` maps datapath port numbers to the
    names an exact in_port prints as.  ``packet_type_exact`` says whether
    the flow matches the packet type (see the module docstring).
    """
    parts: list[str] = []
    out = parts.append
    if verbose:
        parts.extend(f"{name}(0/0)" for name in _METADATA_BEFORE_RECIRC)
    recirc_mask = mask[RECIRC_ID]
    if verbose or recirc_mask:
        value = _hex(key[RECIRC_ID] & FULL_MASKS[RECIRC_ID])
        exact = recirc_mask == FULL_MASKS[RECIRC_ID]
        out(f"recirc_id({value})" if exact else f"recirc_id({value}/{_hex(recirc_mask)})")
    if verbose:
        out("dp_hash(0/0)")
    if verbose or mask[IN_PORT]:
        in_port = KeyAttr("in_port", {VALUE: key[IN_PORT]}, {VALUE: mask[IN_PORT]})
        out(format_odp_key([in_port], port_names))
    _format_packet(out, key, mask, verbose, packet_type_exact)
    return ",".join(parts)


def format_packet_fields(
    key: FlowKey, mask: FlowMask, *, verbose: bool = False, packet_type_exact: bool = True
) -> str:
    """The attributes after the metadata (``packet_type(..)`` on), as :func:`format_flow`."""
    parts: list[str] = []
    _format_packet(parts.append, key, mask, verbose, packet_type_exact)
    return ",".join(parts)


def _format_packet(
    out: _Out, key: FlowKey, mask: FlowMask, verbose: bool, packet_type_exact: bool
) -> None:
    if packet_type_exact:
        out("packet_type(ns=0,id=0)")
    elif verbose:
        out("packet_type(ns=0/0,id=0/0)")
    eth = [("src", key[ETH_SRC], mask[ETH_SRC]), ("dst", key[ETH_DST], mask[ETH_DST])]
    if verbose or mask[ETH_SRC] or mask[ETH_DST]:
        out(_format_attr("eth", eth, verbose))
    elif not packet_type_exact:
        # OVS shows an all-wildcard eth() when nothing else says "Ethernet".
        out("eth()")

    tci = key[VLAN_TCI]
    eth_type = key[ETH_TYPE]
    if tci:
        out("eth_type(0x8100)")  # the key only holds 802.1Q tags
        _format_vlan(out, tci, mask[VLAN_TCI], verbose)
        inner: list[str] = []
        _format_l3(inner.append, key, mask, verbose, nested=True)
        out(f"encap({','.join(inner)})")
    elif eth_type in VLAN_TPIDS:
        # A tag cut short: OVS shows the TPID, a zero TCI and nothing inside.
        out(f"eth_type(0x{eth_type:04x})")
        _format_vlan(out, tci, mask[VLAN_TCI], verbose)
        out("encap()")
    else:
        _format_l3(out, key, mask, verbose, nested=False)


def _hex(value: int) -> str:
    """C's ``%#x``."""
    return f"{value:#x}" if value else "0"


def _format_attr(
    name: str, items: Sequence[tuple[str, int, int]], verbose: bool, frag: int | None = None
) -> str:
    """``name(field=value/mask,...)``; fields with a zero mask only when ``verbose``.

    ``frag``, when given, is an exact ``frag=`` value to end with.
    """
    attr = KeyAttr(name)
    for field, value, field_mask in items:
        if verbose or field_mask:
            attr.fields[field] = value
            attr.masks[field] = field_mask
    if frag is not None:
        attr.fields["frag"] = frag
    return format_odp_key([attr])


def _format_vlan(out: _Out, tci: int, tci_mask: int, verbose: bool) -> None:
    if not (verbose or tci_mask):
        return
    attr = KeyAttr("vlan", {"cfi": tci >> 12 & 1})
    vid, vid_mask = tci & VLAN_VID_MASK, tci_mask & VLAN_VID_MASK
    if verbose or vid or vid_mask:
        attr.fields["vid"], attr.masks["vid"] = vid, vid_mask
    pcp, pcp_mask = tci >> VLAN_PCP_SHIFT, tci_mask >> VLAN_PCP_SHIFT
    if verbose or pcp or pcp_mask:
        attr.fields["pcp"], attr.masks["pcp"] = pcp, pcp_mask
    out(format_odp_key([attr]))


def _format_l3(out: _Out, key: FlowKey, mask: FlowMask, verbose: bool, nested: bool) -> None:
    """EtherType, L3 and L4 attributes."""
    eth_type, type_mask = key[ETH_TYPE], mask[ETH_TYPE]
    if eth_type == ETH_TYPE_NONE and type_mask:
        # OVS's "not Ethernet II" marker, which it leaves out of encap().
        if not nested:
            out("eth_type(0/0xffff)")
        return
    if verbose or type_mask:
        masked_part = "" if type_mask == _FULL16 else f"/0x{type_mask:04x}"
        out(f"eth_type(0x{eth_type:04x}{masked_part})")

    ip = eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6)
    if ip:
        addr_mask = IPV4_MASK if eth_type == ETH_TYPE_IP else FULL_MASKS[NW_SRC]
        items = [
            ("src", key[NW_SRC] & addr_mask, mask[NW_SRC] & addr_mask),
            ("dst", key[NW_DST] & addr_mask, mask[NW_DST] & addr_mask),
        ]
        if eth_type == ETH_TYPE_IPV6:
            items.append(("label", key[IPV6_LABEL], mask[IPV6_LABEL]))
        names = ("tos", "ttl") if eth_type == ETH_TYPE_IP else ("tclass", "hlimit")
        items += [
            ("proto", key[NW_PROTO], mask[NW_PROTO]),
            (names[0], key[NW_TOS], mask[NW_TOS]),
            (names[1], key[NW_TTL], mask[NW_TTL]),
        ]
        frag = _odp_frag(key[NW_FRAG]) if mask[NW_FRAG] & FRAG_ANY else None
        if verbose or frag is not None or any(m for _, _, m in items):
            out(_format_attr("ipv4" if eth_type == ETH_TYPE_IP else "ipv6", items, verbose, frag))
    elif eth_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        # NW_PROTO holds the opcode's low 8 bits; exact there is exact for op.
        op_mask = _FULL16 if mask[NW_PROTO] == 0xFF else mask[NW_PROTO]
        items = [
            ("sip", key[NW_SRC] & IPV4_MASK, mask[NW_SRC] & IPV4_MASK),
            ("tip", key[NW_DST] & IPV4_MASK, mask[NW_DST] & IPV4_MASK),
            ("op", key[NW_PROTO], op_mask),
            ("sha", key[ARP_SHA], mask[ARP_SHA]),
            ("tha", key[ARP_THA], mask[ARP_THA]),
        ]
        if verbose or any(m for _, _, m in items):
            out(_format_attr("arp", items, verbose))
    if ip and not key[NW_FRAG] & FRAG_LATER:
        _format_l4(out, key, mask, verbose, eth_type)


def _odp_frag(nw_frag: int) -> int:
    """The ``frag=`` value (no/first/later) of NW_FRAG bits."""
    if not nw_frag & FRAG_ANY:
        return key_text.FRAG_NO
    return key_text.FRAG_LATER if nw_frag & FRAG_LATER else key_text.FRAG_FIRST


#: NW_FRAG bits of each ``frag=`` value.
_NW_FRAG = {
    key_text.FRAG_NO: 0,
    key_text.FRAG_FIRST: FRAG_ANY,
    key_text.FRAG_LATER: FRAG_ANY | FRAG_LATER,
}


def _format_l4(out: _Out, key: FlowKey, mask: FlowMask, verbose: bool, eth_type: int) -> None:
    proto = key[NW_PROTO]
    port_attr = _PORT_ATTRS.get(proto)
    if port_attr is not None:
        items = [("src", key[TP_SRC], mask[TP_SRC]), ("dst", key[TP_DST], mask[TP_DST])]
        if verbose or mask[TP_SRC] or mask[TP_DST]:
            out(_format_attr(port_attr, items, verbose))
        flags, flags_mask = key[TCP_FLAGS], mask[TCP_FLAGS]
        if proto == IPPROTO_TCP and (flags or flags_mask) and (verbose or flags_mask):
            attr = KeyAttr("tcp_flags", {VALUE: flags}, {VALUE: flags_mask})
            out(format_odp_key([attr]))
        return
    icmp_v6 = eth_type == ETH_TYPE_IPV6
    if proto != (IPPROTO_ICMPV6 if icmp_v6 else IPPROTO_ICMP):
        return
    type_mask, code_mask = mask[TP_SRC] & ICMP_MASK, mask[TP_DST] & ICMP_MASK
    items = [
        ("type", key[TP_SRC] & ICMP_MASK, type_mask),
        ("code", key[TP_DST] & ICMP_MASK, code_mask),
    ]
    if verbose or type_mask or code_mask:
        out(_format_attr("icmpv6" if icmp_v6 else "icmp", items, verbose))
    if icmp_v6 and key[TP_SRC] in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT) and not key[TP_DST]:
        exact_type = type_mask == ICMP_MASK  # OVS exports the ND mask only then
        nd_items = [
            (name, key[index], mask[index] if exact_type else 0)
            for name, index in (("target", ND_TARGET), ("sll", ARP_SHA), ("tll", ARP_THA))
        ]
        if verbose or any(m for _, _, m in nd_items):
            out(_format_attr("nd", nd_items, verbose))


# -- parsing ---------------------------------------------------------------------


def parse_flow(
    text: str, *, port_names: Mapping[str, int] | None = None
) -> tuple[FlowKey, FlowMask]:
    """(masked key, mask) of a flow in datapath syntax; see :func:`parse_match`."""
    match = parse_match(text, port_names=port_names)
    return match.key, match.mask


def parse_match(text: str, *, port_names: Mapping[str, int] | None = None) -> FlowMatch:
    """Parse a flow as ``dpctl/add-flow`` takes it or ``dpctl/dump-flows`` prints it.

    ``port_names`` maps port names to numbers for ``in_port(name)``.  Raises
    :class:`FlowSyntaxError` (a ValueError) saying what is wrong, and its
    subclass :class:`InPortNotExactError` when in_port is absent or masked.
    """
    try:
        parsed = parse_odp_key(text, port_names)
    except OdpKeyError as exc:
        raise FlowSyntaxError(str(exc)) from None
    builder = _Builder()
    builder.top(parsed)
    key = tuple(builder.key)
    mask = tuple(builder.mask)
    return FlowMatch(
        key=tuple(k & m for k, m in zip(key, mask, strict=True)),
        mask=mask,
        unmasked_key=key,
        packet_type_exact=builder.packet_type_exact,
    )


def _index(level: Sequence[KeyAttr], nested: bool) -> dict[str, KeyAttr]:
    by_name: dict[str, KeyAttr] = {}
    for attr in level:
        if attr.name in by_name:
            raise FlowSyntaxError(f"{attr.name}() appears twice")
        if nested and attr.name in _OUTER_ONLY:
            raise FlowSyntaxError(f"{attr.name}() is not allowed inside encap()")
        by_name[attr.name] = attr
    return by_name


def _masked_fields(attr: KeyAttr) -> bool:
    """Whether any field of ``attr`` has a non-zero mask."""
    return any(attr.masks.get(field, 1) for field in attr.fields)


class _Builder:
    """Fills a key and mask from parsed attributes, level by level."""

    def __init__(self) -> None:
        self.key = [0] * N_FIELDS
        self.mask = [0] * N_FIELDS
        self.packet_type_exact = False

    def set(self, index: int, attr: KeyAttr, field: str = VALUE) -> None:
        """Key and mask of ``index`` from ``attr``'s ``field``, if given.

        The parsed mask has the width of the field's syntax (32 bits for an
        IPv4 address, 8 for an ICMP type), which is the width kept.
        """
        if field in attr.fields:
            self.key[index] = attr.fields[field]
            self.mask[index] = attr.masks.get(field, FULL_MASKS[index])

    def top(self, parsed: Sequence[KeyAttr]) -> None:
        level = _index(parsed, nested=False)
        for name in _METADATA:
            attr = level.get(name)
            if attr is not None and attr.get() & attr.masks.get(VALUE, -1):
                raise FlowSyntaxError(
                    f"{name}() can only be 0 or wildcarded: the datapath does not match on it"
                )
        self.key[RECIRC_ID] = level["recirc_id"].get() if "recirc_id" in level else 0
        self.mask[RECIRC_ID] = FULL_MASKS[RECIRC_ID]  # the syntax has no recirc_id mask
        in_port = level.get("in_port")
        if in_port is None or in_port.masks.get(VALUE) != FULL_MASKS[IN_PORT]:
            raise InPortNotExactError()
        self.set(IN_PORT, in_port)
        packet_type = level.get("packet_type")
        if packet_type is not None:
            ns, ns_mask = packet_type.get("ns"), packet_type.masks.get("ns", 0)
            pt_id, id_mask = packet_type.get("id"), packet_type.masks.get("id", 0)
            if ns & ns_mask or pt_id & id_mask:
                raise FlowSyntaxError("only Ethernet flows (packet_type(ns=0,id=0)) are supported")
            self.packet_type_exact = ns_mask == id_mask == _FULL16
            if not self.packet_type_exact and (ns_mask or id_mask):
                raise FlowSyntaxError("packet_type() must be exact or wildcarded")
        eth = level.get("eth")
        if eth is not None:
            self.set(ETH_SRC, eth, "src")
            self.set(ETH_DST, eth, "dst")
        self.l2(level)

    def l2(self, level: dict[str, KeyAttr]) -> None:
        eth_type, vlan, encap = level.get("eth_type"), level.get("vlan"), level.get(ENCAP)
        if vlan is None and encap is None:
            self.l3(level, untagged=True)
            return
        tpid = eth_type.get() if eth_type is not None else None
        if eth_type is None or tpid not in VLAN_TPIDS or eth_type.masks[VALUE] != _FULL16:
            raise FlowSyntaxError("vlan() and encap() need eth_type(0x8100) beside them")
        for name in level:
            if name in _L3_TYPES or name in _L4_PROTO:
                raise FlowSyntaxError(f"{name}() of a VLAN flow belongs inside encap()")
        tci = tci_mask = 0
        if vlan is not None:
            for field, shift in (("vid", 0), ("cfi", 12), ("pcp", VLAN_PCP_SHIFT)):
                if field in vlan.fields:
                    tci |= vlan.fields[field] << shift
                    tci_mask |= vlan.masks[field] << shift
        nested = encap.nested if encap is not None else []
        # A truncated tag prints cfi=0 and an empty encap(); without vlan()
        # (a wildcarded TCI) the empty encap() alone says so.
        truncated = not tci & VLAN_CFI if vlan is not None else not nested
        if truncated:
            if tci:
                raise FlowSyntaxError("vlan() with a non-zero TCI needs cfi=1")
            if nested:
                raise FlowSyntaxError("encap() of a truncated VLAN header (cfi=0) must be empty")
            self.key[ETH_TYPE], self.mask[ETH_TYPE] = tpid, _FULL16
            self.mask[VLAN_TCI] = tci_mask
            return
        if tpid != ETH_TYPE_VLAN_8021Q:
            raise FlowSyntaxError("802.1ad (0x88a8) VLAN tags are not supported")
        self.key[VLAN_TCI], self.mask[VLAN_TCI] = tci, tci_mask
        inner = _index(nested, nested=True)
        if "vlan" in inner or ENCAP in inner:
            raise FlowSyntaxError("only one VLAN tag is supported")
        self.l3(inner, untagged=False)

    def l3(self, level: dict[str, KeyAttr], untagged: bool) -> None:
        eth_type = level.get("eth_type")
        l3_names = [name for name in _L3_TYPES if name in level]
        if len(l3_names) > 1:
            raise FlowSyntaxError(f"{l3_names[0]}() and {l3_names[1]}() cannot both match")
        l3 = level[l3_names[0]] if l3_names else None
        if eth_type is not None:
            value, type_mask = eth_type.get(), eth_type.masks[VALUE]
            if type_mask == _FULL16 and value < ETH_TYPE_MIN:
                if value:
                    raise FlowSyntaxError(f"invalid Ethertype 0x{value:04x}")
                value = ETH_TYPE_NONE  # OVS's eth_type(0/0xffff): an 802.3 frame
            self.key[ETH_TYPE], self.mask[ETH_TYPE] = value, type_mask
        elif l3 is not None:
            self.key[ETH_TYPE], self.mask[ETH_TYPE] = _L3_TYPES[l3.name][0], _FULL16
        if untagged and (eth_type is not None or l3 is not None):
            self.mask[VLAN_TCI] = VLAN_UNTAGGED_MASK
        exact_type = self.key[ETH_TYPE] if self.mask[ETH_TYPE] == _FULL16 else None
        if l3 is not None:
            if exact_type is not None and exact_type not in _L3_TYPES[l3.name]:
                raise FlowSyntaxError(f"{l3.name}() does not match eth_type(0x{exact_type:04x})")
            if exact_type is None and _masked_fields(l3):
                raise FlowSyntaxError(f"{l3.name}() fields need an exact eth_type")
            self.l3_fields(l3)
        self.l4(level, exact_type, l3)

    def l3_fields(self, l3: KeyAttr) -> None:
        if l3.name == "arp":
            self.set(NW_SRC, l3, "sip")
            self.set(NW_DST, l3, "tip")
            self.set(ARP_SHA, l3, "sha")
            self.set(ARP_THA, l3, "tha")
            if "op" in l3.fields:
                op, op_mask = l3.fields["op"], l3.masks["op"]
                if op > 0xFF:
                    raise FlowSyntaxError(f"unsupported ARP opcode {op} (more than 8 bits)")
                if op_mask not in (_FULL16, op_mask & 0xFF):
                    raise FlowSyntaxError(f"ARP op mask {op_mask:#x} is wider than 8 bits")
                self.key[NW_PROTO], self.mask[NW_PROTO] = op, op_mask & 0xFF
            return
        ipv4 = l3.name == "ipv4"
        self.set(NW_SRC, l3, "src")
        self.set(NW_DST, l3, "dst")
        self.set(NW_PROTO, l3, "proto")
        self.set(NW_TOS, l3, "tos" if ipv4 else "tclass")
        self.set(NW_TTL, l3, "ttl" if ipv4 else "hlimit")
        self.set(IPV6_LABEL, l3, "label")
        if "frag" in l3.fields:
            # The syntax's frag is exact only (OVS has no masked form).
            self.key[NW_FRAG] = _NW_FRAG[l3.fields["frag"]]
            self.mask[NW_FRAG] = FULL_MASKS[NW_FRAG]

    def l4(self, level: dict[str, KeyAttr], exact_type: int | None, l3: KeyAttr | None) -> None:
        l4_attrs = [level[name] for name in _L4_PROTO if name in level]
        if not l4_attrs:
            return
        names = ", ".join(f"{attr.name}()" for attr in l4_attrs)
        protos = {_L4_PROTO[attr.name] for attr in l4_attrs}
        if len(protos) > 1:
            raise FlowSyntaxError(f"{names}: these cannot all match one packet")
        (proto,) = protos
        # Attributes with wildcards only (verbose dumps print them) match
        # nothing, so they imply nothing either; their values are kept.
        if any(_masked_fields(attr) for attr in l4_attrs):
            wanted = ETH_TYPE_IP if proto == IPPROTO_ICMP else ETH_TYPE_IPV6
            if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) and exact_type != wanted:
                raise FlowSyntaxError(f"{names}: matching these needs eth_type(0x{wanted:04x})")
            if exact_type not in (ETH_TYPE_IP, ETH_TYPE_IPV6):
                raise FlowSyntaxError(
                    f"{names}: matching these needs eth_type(0x0800) or eth_type(0x86dd)"
                )
            if l3 is not None and "proto" in l3.fields:
                if l3.masks["proto"] != 0xFF:
                    raise FlowSyntaxError(f"{names}: matching these needs an exact proto")
                if l3.fields["proto"] != proto:
                    raise FlowSyntaxError(
                        f"{names}: this does not match proto={l3.fields['proto']}"
                    )
            self.key[NW_PROTO], self.mask[NW_PROTO] = proto, 0xFF
            if self.mask[NW_FRAG] and self.key[NW_FRAG] & FRAG_LATER:
                raise FlowSyntaxError(f"{names}: a later fragment has no L4 header to match")
        for attr in l4_attrs:
            if attr.name in ("tcp", "udp", "sctp"):
                self.set(TP_SRC, attr, "src")
                self.set(TP_DST, attr, "dst")
            elif attr.name == "tcp_flags":
                self.set(TCP_FLAGS, attr)
            elif attr.name in ("icmp", "icmpv6"):
                self.set(TP_SRC, attr, "type")
                self.set(TP_DST, attr, "code")
        nd = level.get("nd")
        if nd is not None:
            icmp_type, type_mask = self.key[TP_SRC], self.mask[TP_SRC]
            if _masked_fields(nd) and (
                type_mask != ICMP_MASK
                or icmp_type not in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT)
                or self.key[TP_DST] & self.mask[TP_DST]
            ):
                raise FlowSyntaxError("nd() needs icmpv6(type=135 or type=136, code=0)")
            self.set(ND_TARGET, nd, "target")
            self.set(ARP_SHA, nd, "sll")
            self.set(ARP_THA, nd, "tll")
