"""Datapath flow keys in OVS's text syntax: parse and format.

This is the syntax of ``ovs-dpctl``/``ovs-appctl dpctl/dump-flows`` and of
``netdev-dummy/receive``::

    recirc_id(0),in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),
    eth_type(0x8100),vlan(vid=10,pcp=0),encap(eth_type(0x0800),
    ipv4(src=10.0.0.1/255.255.255.0,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no))

A key is a list of :class:`KeyAttr`, one per ``name(...)``.  Every field
value is an ``int`` (MAC, IPv4 and IPv6 addresses too, big-endian), with a
mask of the field's width: a field written without ``/mask`` gets the
all-ones mask.  A field that is absent from ``fields`` was not written;
formatting prints exactly the fields present, so a parsed key formats back
to its canonical text (fields in OVS's order, OVS's number styles, no
spaces).  Single-valued attributes (``in_port(1)``) keep their value under
the field name :data:`VALUE`; ``encap(...)`` keeps its attributes in
``nested``.

The grammar is table-driven (:data:`ATTRS`): adding an attribute is adding
a row.  Parsing follows OVS's ``parse_odp_key_mask_attr`` (numbers in C
``%i`` style: decimal, ``0x`` hex, leading-zero octal; attributes separated
by commas or white space) with these differences, all stricter:

* a number out of its field's range, a repeated field, or an unknown field
  name is an error (OVS truncates, keeps the last one, or fails later);
* the error is an :class:`OdpKeyError` naming the problem and its offset.

``tunnel``, ``ct_tuple4/6``, ``mpls``, ``nsh`` and ``nd_ext`` are not
supported yet.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping, Sequence

import attrs

from .int_parse import scan_uint
from .protocols import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN

#: Field name under which single-valued attributes keep their value.
VALUE = "value"

#: OVS's MAX_ODP_NESTED: deepest encap() nesting accepted.
MAX_NESTING = 32

_DELIMITERS = ", \t\r\n"


class OdpKeyError(ValueError):
    """A flow key text is malformed; ``offset`` is where in the text."""

    def __init__(self, reason: str, text: str, offset: int) -> None:
        snippet = text[offset : offset + 40] + ("..." if len(text) > offset + 40 else "")
        super().__init__(f"{reason} (at offset {offset}: {snippet!r})")
        self.reason = reason
        self.offset = offset


@attrs.define
class KeyAttr:
    """One attribute of a flow key: ``name(field=value/mask,...)``.

    A field present in ``fields`` but not in ``masks`` is exact (all-ones mask).
    """

    name: str
    fields: dict[str, int] = attrs.Factory(dict)
    masks: dict[str, int] = attrs.Factory(dict)
    nested: list[KeyAttr] = attrs.Factory(list)

    def get(self, field: str = VALUE, default: int = 0) -> int:
        """The field's value, ``default`` when it was not given."""
        return self.fields.get(field, default)

    def has(self, field: str = VALUE) -> bool:
        return field in self.fields


# -- field kinds -----------------------------------------------------------------

ParseMasked = Callable[[str], tuple[int, int]]
FormatMasked = Callable[[int, int], str | None]


@attrs.frozen
class FieldKind:
    """How one kind of field is written: parse ``text`` -> (value, mask) and back.

    ``format`` returns None for a value that is printed by leaving it out
    (``cfi=1``).  Parse functions raise ValueError with a reason.
    """

    bits: int
    parse: ParseMasked
    format: FormatMasked

    @property
    def full(self) -> int:
        return (1 << self.bits) - 1


def _hex(value: int) -> str:
    """C's ``%#x``: ``0`` for zero, else ``0x...``."""
    return f"{value:#x}" if value else "0"


def _scalar(
    bits: int,
    parse: Callable[[str], int],
    fmt: Callable[[int], str],
    fmt_mask: Callable[[int], str] | None = _hex,
) -> FieldKind:
    """A kind written ``value`` or ``value/mask`` (no mask syntax when ``fmt_mask`` is None)."""
    full = (1 << bits) - 1

    def parse_masked(text: str) -> tuple[int, int]:
        value_text, slash, mask_text = text.partition("/")
        if slash and fmt_mask is None:
            raise ValueError(f"{text!r}: this field takes no mask")
        value = parse(value_text)
        return value, (parse(mask_text) if slash else full)

    def format_masked(value: int, mask: int) -> str | None:
        if mask == full or fmt_mask is None:
            return fmt(value)
        return f"{fmt(value)}/{fmt_mask(mask)}"

    return FieldKind(bits, parse_masked, format_masked)


def _number(bits: int) -> Callable[[str], int]:
    return lambda text: scan_uint(text, bits)


def _parse_mac(text: str) -> int:
    parts = text.split(":")
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p) for p in parts):
        raise ValueError(f"bad Ethernet address {text!r}")
    return int.from_bytes(bytes(int(p, 16) for p in parts), "big")


def _format_mac(value: int) -> str:
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


def _parse_ipv4(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdecimal() and int(p) <= 255 for p in parts):
        raise ValueError(f"bad IPv4 address {text!r}")
    return int.from_bytes(bytes(int(p) for p in parts), "big")


def _format_ipv4(value: int) -> str:
    return ".".join(str(b) for b in value.to_bytes(4, "big"))


def _parse_ipv6(text: str) -> int:
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        raise ValueError(f"bad IPv6 address {text!r}") from None


def _format_ipv6(value: int) -> str:
    # inet_ntop, not ipaddress: OVS prints with glibc's inet_ntop.
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


#: ``frag=`` values (OVS's enum ovs_frag_type).
FRAG_NO, FRAG_FIRST, FRAG_LATER = 0, 1, 2
_FRAG_NAMES = ("no", "first", "later")


def _parse_frag(text: str) -> int:
    try:
        return _FRAG_NAMES.index(text.lower())
    except ValueError:
        raise ValueError(f"bad frag type {text!r} (expected no, first or later)") from None


def _flags_kind(bits: int, names: Mapping[int, str]) -> FieldKind:
    """Flag sets: ``syn|ack`` (exact), ``+syn-ack`` or ``0x12/0x12`` (masked), ``0/0``.

    Mirrors OVS's ``parse_flags``/``format_flags``/``format_flags_masked``.
    """
    full = (1 << bits) - 1
    by_name = {name: bit for bit, name in names.items()}

    def parse(text: str) -> tuple[int, int]:
        value_text, slash, mask_text = text.partition("/")
        if slash:
            return scan_uint(value_text, bits, "flags"), scan_uint(mask_text, bits, "flags mask")
        if text[:1] in ("+", "-"):
            value = mask = 0
            for sign, name in re.findall(r"([+-])([^+-]*)", text):
                bit = by_name.get(name)
                if bit is None:
                    raise ValueError(f"unknown flag {name!r}")
                if mask & bit:
                    raise ValueError(f"flag {name!r} given twice")
                mask |= bit
                value |= bit if sign == "+" else 0
            return value, mask
        value = 0
        for item in text.split("|"):
            bit = by_name.get(item)
            value |= bit if bit is not None else scan_uint(item, bits, "flag")
        return value, full

    def format_masked(value: int, mask: int) -> str | None:
        if mask == full:
            if not value:
                return "0"
            return "|".join(names.get(1 << i, hex(1 << i)) for i in range(bits) if value >> i & 1)
        if not mask:
            return "0/0"
        return "".join(
            ("+" if value >> i & 1 else "-") + names.get(1 << i, "[Unknown]")
            for i in range(bits)
            if mask >> i & 1
        )

    return FieldKind(bits, parse, format_masked)


_TCP_FLAG_NAMES = {
    TCP_FIN: "fin", TCP_SYN: "syn", TCP_RST: "rst", TCP_PSH: "psh", TCP_ACK: "ack", 0x020: "urg",
    0x040: "ece", 0x080: "cwr", 0x100: "ns", 0x200: "[200]", 0x400: "[400]", 0x800: "[800]",
}  # fmt: skip
_CT_STATE_NAMES = {
    0x01: "new", 0x02: "est", 0x04: "rel", 0x08: "rpl",
    0x10: "inv", 0x20: "trk", 0x40: "snat", 0x80: "dnat",
}  # fmt: skip


def _format_cfi(value: int, mask: int) -> str | None:
    # OVS prints only an unset CFI ("cfi=0"): a set one is the norm.
    return None if value else "0"


#: Field kinds, named after OVS's scan_*/format_* helpers.
U8U = _scalar(8, _number(8), str)
U8X = _scalar(8, _number(8), _hex)
U16X = _scalar(16, _number(16), _hex)
U32X = _scalar(32, _number(32), _hex)
U32X_EXACT = _scalar(32, _number(32), _hex, None)
U128X = _scalar(128, _number(128), _hex)
BE16 = _scalar(16, _number(16), str)
BE16X = _scalar(16, _number(16), _hex)
PORT = _scalar(32, _number(32), str)
ETHERTYPE = _scalar(16, _number(16), "0x{:04x}".format, "0x{:04x}".format)
ETH = _scalar(48, _parse_mac, _format_mac, _format_mac)
IPV4 = _scalar(32, _parse_ipv4, _format_ipv4, _format_ipv4)
IPV6 = _scalar(128, _parse_ipv6, _format_ipv6, _format_ipv6)
IPV6_LABEL = _scalar(20, _number(20), _hex)
FRAG = _scalar(8, _parse_frag, _FRAG_NAMES.__getitem__, None)
VID = _scalar(12, _number(12), str, "0x{:x}".format)
PCP = _scalar(3, _number(3), str, "0x{:x}".format)
CFI = FieldKind(1, _scalar(1, _number(1), str).parse, _format_cfi)
TCP_FLAGS = _flags_kind(12, _TCP_FLAG_NAMES)
CT_STATE = _flags_kind(8, _CT_STATE_NAMES)


# -- attributes ------------------------------------------------------------------


@attrs.frozen
class AttrSpec:
    """One attribute of the grammar.

    ``fields`` lists ``(name, kind)`` in OVS's print order; an attribute with
    ``single`` set instead holds one unnamed value (kept under :data:`VALUE`).
    ``defaults`` are values a parsed attribute starts with (vlan's CFI).
    """

    name: str
    fields: tuple[tuple[str, FieldKind], ...] = ()
    single: FieldKind | None = None
    defaults: tuple[tuple[str, int, int], ...] = ()

    def kind(self, field: str) -> FieldKind | None:
        for name, kind in self.fields:
            if name == field:
                return kind
        return None


def _struct(name: str, *fields: tuple[str, FieldKind]) -> AttrSpec:
    return AttrSpec(name, fields=fields)


_L4_PORTS = (("src", BE16), ("dst", BE16))

#: The grammar: every supported attribute, by name.  ``encap`` is built in.
ATTRS: dict[str, AttrSpec] = {
    spec.name: spec
    for spec in (
        AttrSpec("skb_priority", single=U32X),
        AttrSpec("skb_mark", single=U32X),
        AttrSpec("recirc_id", single=U32X_EXACT),
        AttrSpec("dp_hash", single=U32X),
        AttrSpec("ct_state", single=CT_STATE),
        AttrSpec("ct_zone", single=U16X),
        AttrSpec("ct_mark", single=U32X),
        AttrSpec("ct_label", single=U128X),
        AttrSpec("in_port", single=PORT),
        _struct("packet_type", ("ns", BE16), ("id", BE16X)),
        _struct("eth", ("src", ETH), ("dst", ETH)),
        AttrSpec(
            "vlan", fields=(("vid", VID), ("pcp", PCP), ("cfi", CFI)), defaults=(("cfi", 1, 1),)
        ),
        AttrSpec("eth_type", single=ETHERTYPE),
        _struct(
            "ipv4",
            ("src", IPV4),
            ("dst", IPV4),
            ("proto", U8U),
            ("tos", U8X),
            ("ttl", U8U),
            ("frag", FRAG),
        ),
        _struct(
            "ipv6",
            ("src", IPV6),
            ("dst", IPV6),
            ("label", IPV6_LABEL),
            ("proto", U8U),
            ("tclass", U8X),
            ("hlimit", U8U),
            ("frag", FRAG),
        ),
        _struct("tcp", *_L4_PORTS),
        AttrSpec("tcp_flags", single=TCP_FLAGS),
        _struct("udp", *_L4_PORTS),
        _struct("sctp", *_L4_PORTS),
        _struct("icmp", ("type", U8U), ("code", U8U)),
        _struct("icmpv6", ("type", U8U), ("code", U8U)),
        _struct("arp", ("sip", IPV4), ("tip", IPV4), ("op", BE16), ("sha", ETH), ("tha", ETH)),
        _struct("nd", ("target", IPV6), ("sll", ETH), ("tll", ETH)),
    )
}

ENCAP = "encap"
_NAME = re.compile(r"[a-z0-9_]+\(")


# -- parsing ---------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, port_names: Mapping[str, int] | None) -> None:
        self.text = text
        self.port_names = port_names

    def fail(self, reason: str, offset: int) -> OdpKeyError:
        return OdpKeyError(reason, self.text, offset)

    def attr_list(self, pos: int, depth: int) -> tuple[list[KeyAttr], int]:
        """Attributes from ``pos`` to the end (depth 0) or to a ``)``; returns the end."""
        text = self.text
        result: list[KeyAttr] = []
        while True:
            while pos < len(text) and text[pos] in _DELIMITERS:
                pos += 1
            if pos == len(text):
                if depth:
                    raise self.fail("missing ')' to close encap(", pos)
                return result, pos
            if text[pos] == ")":
                if not depth:
                    raise self.fail("unbalanced ')'", pos)
                return result, pos + 1
            attr, pos = self.attr(pos, depth)
            result.append(attr)

    def attr(self, pos: int, depth: int) -> tuple[KeyAttr, int]:
        m = _NAME.match(self.text, pos)
        if not m:
            raise self.fail("expected an attribute such as eth(...)", pos)
        name = m[0][:-1]
        if name == ENCAP:
            if depth + 1 >= MAX_NESTING:
                raise self.fail(f"encap() nested deeper than {MAX_NESTING}", pos)
            nested, end = self.attr_list(m.end(), depth + 1)
            return KeyAttr(ENCAP, nested=nested), end
        spec = ATTRS.get(name)
        if spec is None:
            raise self.fail(f"unknown attribute {name!r}", pos)
        start = m.end()
        close = self.text.find(")", start)
        if close < 0:
            raise self.fail(f"missing ')' to close {name}(", pos)
        body = self.text[start:close]
        attr = KeyAttr(name)
        for field, value, mask in spec.defaults:
            attr.fields[field] = value
            attr.masks[field] = mask
        if spec.single is not None:
            value, mask = self.value(spec, spec.single, body, start)
            attr.fields[VALUE] = value
            attr.masks[VALUE] = mask
            return attr, close + 1
        seen: set[str] = set()
        offset = start
        for item in body.split(",") if body else ():
            field, eq, value_text = item.partition("=")
            kind = spec.kind(field)
            if not eq or kind is None:
                known = ", ".join(f for f, _ in spec.fields)
                raise self.fail(f"unknown {name} field {field!r} (known: {known})", offset)
            if field in seen:
                raise self.fail(f"{name} field {field!r} given twice", offset)
            seen.add(field)
            value, mask = self.value(spec, kind, value_text, offset + len(field) + 1, field)
            attr.fields[field] = value
            attr.masks[field] = mask
            offset += len(item) + 1
        return attr, close + 1

    def value(
        self, spec: AttrSpec, kind: FieldKind, text: str, offset: int, field: str = ""
    ) -> tuple[int, int]:
        if spec.name == "in_port" and self.port_names and text in self.port_names:
            return self.port_names[text], kind.full
        try:
            return kind.parse(text)
        except ValueError as exc:
            where = f"{spec.name} {field}" if field else spec.name
            raise self.fail(f"{exc} in {where}", offset) from None


def parse_odp_key(text: str, port_names: Mapping[str, int] | None = None) -> list[KeyAttr]:
    """Parse a flow key; OdpKeyError (a ValueError) says what and where when bad.

    ``port_names`` maps port names to numbers for ``in_port(name)``.
    """
    attrs_, _ = _Parser(text, port_names).attr_list(0, 0)
    return attrs_


# -- formatting ------------------------------------------------------------------


def format_odp_key(attrs_: Sequence[KeyAttr], port_names: Mapping[int, str] | None = None) -> str:
    """The canonical text of a key: OVS's order and spelling, no spaces.

    ``port_names`` maps port numbers to names for an exact ``in_port``.
    """
    return ",".join(_format_attr(a, port_names) for a in attrs_)


def _format_attr(attr: KeyAttr, port_names: Mapping[int, str] | None) -> str:
    if attr.name == ENCAP:
        return f"encap({format_odp_key(attr.nested, port_names)})"
    spec = ATTRS.get(attr.name)
    if spec is None:
        raise ValueError(f"cannot format unknown attribute {attr.name!r}")
    if spec.single is not None:
        value = attr.fields.get(VALUE, 0)
        mask = attr.masks.get(VALUE, spec.single.full)
        if spec.name == "in_port" and port_names and mask == spec.single.full:
            name = port_names.get(value)
            if name is not None:
                return f"in_port({name})"
        return f"{spec.name}({spec.single.format(value, mask)})"
    parts = []
    for field, kind in spec.fields:
        if field in attr.fields:
            text = kind.format(attr.fields[field], attr.masks.get(field, kind.full))
            if text is not None:
                parts.append(f"{field}={text}")
    return f"{spec.name}({','.join(parts)})"
