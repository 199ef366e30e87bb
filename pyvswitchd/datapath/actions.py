"""Datapath actions: the data types, their OVS text syntax, and compiled executors.

A flow's actions are a sequence of the frozen types below, run in order on
each packet; the empty sequence drops.  :func:`format_actions` and
:func:`parse_actions` speak the datapath action syntax of
``dpctl/dump-flows``::

    1,p0,push_vlan(vid=10,pcp=0),pop_vlan,set(eth(src=..,dst=..)),
    set(ipv4(src=10.0.0.1,dst=10.0.0.2,tos=0x10,ttl=63)),drop

Sets: OVS's userspace datapath gets *masked* sets carrying only the fields
a flow changes, and prints them as just the fields with a non-zero mask,
bare when the mask is all ones: ``set(ipv4(src=192.168.0.7))``,
``set(ipv4(ttl=63))``.  A ``None`` field of :class:`SetEth`/:class:`SetIpv4`
is such an unmasked field and a given one a whole-field write, so that is
the form used (OVS's field order and number styles, ``tos`` in ``%#x``).
The kernel's unmasked form (with ``proto``/``frag``), partial masks
(``tos=0x40/0xfc``) and sets of other headers are syntax errors.
``push_vlan`` prints ``tpid`` only when it is not 0x8100; ``cfi=1`` is
accepted on input, ``cfi=0`` is not (OVS clears the bit on the wire anyway).

Parsing follows OVS: actions are separated by commas or white space; an
output is a C-style number or, with ``port_names``, a name (numbers are
tried first); ``drop`` (any case) must be the whole text, and the empty
text is no actions too.  Unlike OVS, push_vlan's fields may come in any
order, and every error is an :class:`ActionSyntaxError` saying what is
wrong and at which offset.

:func:`compile_actions` turns a flow's actions, once, into the function run
on each batch that hits the flow.  Frames are immutable ``bytes`` and a
flood queues one :class:`Packet` on several ports, so a modification never
touches a packet: it builds a new frame in a new Packet (same ``in_port``,
``hash``, ``mark``, ``rxq``) that only the outputs after it get.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import attrs

from .flow_key import ETH_TYPE_IP, IPPROTO_TCP, IPPROTO_UDP, VLAN_CFI, VLAN_PCP_SHIFT
from .odp_key import (
    ATTRS,
    CFI,
    ETHERTYPE,
    PCP,
    PORT,
    VID,
    FieldKind,
    KeyAttr,
    OdpKeyError,
    format_odp_key,
    parse_odp_key,
)
from .packet import Packet

ETH_TYPE_VLAN_8021Q = 0x8100
ETH_TYPE_VLAN_8021AD = 0x88A8
#: EtherTypes that start a VLAN tag (what push_vlan may use, what pop_vlan removes).
VLAN_TPIDS = (ETH_TYPE_VLAN_8021Q, ETH_TYPE_VLAN_8021AD)

_MAC_LEN = 6
_TAG_LEN = 4
_IPV4_MIN_HEADER = 20
_TCP_HEADER = 20
_UDP_HEADER = 8
_IP_FRAG_OFFSET_MASK = 0x1FFF
#: Ethertype 0x0800 followed by version 4 with a 20-byte header.
_PLAIN_IPV4 = b"\x08\x00\x45"
#: The fixed IPv4 header: version+IHL, TOS, length, id, flags+offset, TTL,
#: protocol, checksum, source, destination.
_IPV4_HEADER = struct.Struct("!BBHHHBBHII")
_U16 = struct.Struct("!H")


# -- the action types --------------------------------------------------------------


def _fits(bits: int, *, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    """attrs validator: an int of at most ``bits`` bits (or None when ``optional``)."""
    limit = 1 << bits

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
            raise ValueError(f"{attribute.name} must be an int of {bits} bits, not {value!r}")

    return check


@attrs.frozen
class Output:
    """Send the packet, as modified so far, to datapath port ``port``."""

    port: int = attrs.field(validator=_fits(32))


@attrs.frozen
class PushVlan:
    """Insert a VLAN tag behind the MAC addresses.

    ``tci`` is the tag's VID and PCP as on the wire (``vid | pcp << 13``);
    the CFI bit (0x1000, which the flow key uses to mark "tag present") must
    be clear.  ``tpid`` is 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    """

    tpid: int = attrs.field(default=ETH_TYPE_VLAN_8021Q, kw_only=True)
    tci: int = attrs.field(validator=_fits(16))

    @tpid.validator
    def _check_tpid(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value not in VLAN_TPIDS:
            raise ValueError(f"push_vlan tpid must be 0x8100 or 0x88a8, not {value!r}")

    @tci.validator
    def _check_tci(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value & VLAN_CFI:
            raise ValueError(f"push_vlan tci {value:#x} has the CFI bit (0x1000) set")

    @property
    def vid(self) -> int:
        return self.tci & 0x0FFF

    @property
    def pcp(self) -> int:
        return self.tci >> VLAN_PCP_SHIFT


@attrs.frozen
class PopVlan:
    """Remove the outermost VLAN tag; a frame without one is left alone."""


@attrs.frozen
class SetEth:
    """Overwrite the Ethernet source and/or destination (None leaves it)."""

    src: int | None = attrs.field(default=None, validator=_fits(48, optional=True))
    dst: int | None = attrs.field(default=None, validator=_fits(48, optional=True))

    def __attrs_post_init__(self) -> None:
        if self.src is None and self.dst is None:
            raise ValueError("SetEth sets nothing: give src and/or dst")


@attrs.frozen
class SetIpv4:
    """Overwrite IPv4 fields (None leaves one) and fix the checksums they are in.

    ``tos`` is the whole byte (DSCP and ECN).  Address changes update the
    IPv4 header checksum and the TCP/UDP checksum (its pseudo-header holds
    them); TOS and TTL changes only the IPv4 one.
    """

    src: int | None = attrs.field(default=None, validator=_fits(32, optional=True))
    dst: int | None = attrs.field(default=None, validator=_fits(32, optional=True))
    ttl: int | None = attrs.field(default=None, validator=_fits(8, optional=True))
    tos: int | None = attrs.field(default=None, validator=_fits(8, optional=True))

    def __attrs_post_init__(self) -> None:
        if self.src is None and self.dst is None and self.ttl is None and self.tos is None:
            raise ValueError("SetIpv4 sets nothing: give src, dst, ttl and/or tos")


Action: TypeAlias = Output | PushVlan | PopVlan | SetEth | SetIpv4


# -- formatting --------------------------------------------------------------------


def format_actions(actions: Sequence[Action], port_names: Mapping[int, str] | None = None) -> str:
    """The OVS datapath text of ``actions`` (``drop`` when empty).

    ``port_names`` maps port numbers to the names outputs are printed with;
    a port missing from it is printed as its number.
    """
    if not actions:
        return "drop"
    return ",".join(_format_action(action, port_names) for action in actions)


def _format_action(action: Action, port_names: Mapping[int, str] | None) -> str:
    if isinstance(action, Output):
        name = port_names.get(action.port) if port_names else None
        return name if name is not None else str(action.port)
    if isinstance(action, PushVlan):
        tpid = f"tpid=0x{action.tpid:04x}," if action.tpid != ETH_TYPE_VLAN_8021Q else ""
        return f"push_vlan({tpid}vid={action.vid},pcp={action.pcp})"
    if isinstance(action, PopVlan):
        return "pop_vlan"
    if isinstance(action, SetEth | SetIpv4):
        # The key formatter prints the fields given in OVS's order and styles.
        given = attrs.asdict(action, filter=lambda _attribute, value: value is not None)
        header = "eth" if isinstance(action, SetEth) else "ipv4"
        return f"set({format_odp_key([KeyAttr(header, fields=given)])})"
    raise TypeError(f"not a datapath action: {action!r}")


# -- parsing -----------------------------------------------------------------------


class ActionSyntaxError(ValueError):
    """An action text is malformed; ``offset`` is where in the text."""

    def __init__(self, reason: str, text: str, offset: int) -> None:
        snippet = text[offset : offset + 40] + ("..." if len(text) > offset + 40 else "")
        super().__init__(f"{reason} (at offset {offset}: {snippet!r})")
        self.reason = reason
        self.offset = offset


_DELIMITERS = ", \t\r\n"
_TOKEN_END = re.compile(r"[, \t\r\n]|\Z")
# eth() and ipv4() hold no parentheses, so the first ')' closes the attribute.
_SET = re.compile(r"set\(([a-z0-9_]+)\(([^()]*)\)\)")
_PUSH_VLAN = re.compile(r"push_vlan\(([^()]*)\)")
_NUMBER_START = re.compile(r"\+?[0-9]")

#: The action type of each settable header; its attributes are the settable fields.
_SET_TYPES: Mapping[str, type[SetEth | SetIpv4]] = {"eth": SetEth, "ipv4": SetIpv4}


def _exact(kind: FieldKind, text: str, what: str) -> int:
    """``text`` as an unmasked value of ``kind``; ValueError naming ``what`` if not."""
    if "/" in text:
        raise ValueError(f"{what} takes no mask")
    value, _ = kind.parse(text)
    return value


class _Parser:
    def __init__(self, text: str, port_names: Mapping[str, int] | None) -> None:
        self.text = text
        self.port_names = port_names

    def fail(self, reason: str, offset: int) -> ActionSyntaxError:
        return ActionSyntaxError(reason, self.text, offset)

    def actions(self) -> list[Action]:
        text = self.text
        if text.strip(_DELIMITERS).lower() == "drop":
            return []
        result: list[Action] = []
        pos = 0
        while True:
            while pos < len(text) and text[pos] in _DELIMITERS:
                pos += 1
            if pos == len(text):
                return result
            action, end = self.action(pos)
            if end < len(text) and text[end] not in _DELIMITERS:
                raise self.fail("expected ',' between actions", end)
            result.append(action)
            pos = end

    def action(self, pos: int) -> tuple[Action, int]:
        text = self.text
        token_end = _TOKEN_END.search(text, pos)
        assert token_end is not None  # \Z always matches
        token = text[pos : token_end.start()]
        if _NUMBER_START.match(token):
            try:
                return Output(_exact(PORT, token, "a port number")), token_end.start()
            except ValueError as exc:
                raise self.fail(str(exc), pos) from None
        if self.port_names and token in self.port_names:
            port = self.port_names[token]
            try:
                return Output(port), token_end.start()
            except ValueError as exc:
                raise self.fail(f"port {token!r}: {exc}", pos) from None
        if token == "pop_vlan":
            return PopVlan(), token_end.start()
        if token.lower() == "drop":
            raise self.fail("drop must be the only action", pos)
        if text.startswith("set(", pos):
            return self.set_action(pos)
        if text.startswith("push_vlan(", pos):
            return self.push_vlan(pos)
        raise self.fail(f"unknown action or port name {token.partition('(')[0]!r}", pos)

    def set_action(self, pos: int) -> tuple[Action, int]:
        m = _SET.match(self.text, pos)
        if m is None:
            raise self.fail("malformed set(): expected set(eth(...)) or set(ipv4(...))", pos)
        header = m[1]
        set_type = _SET_TYPES.get(header)
        inner = pos + len("set(")
        if set_type is None:
            raise self.fail(f"set({header}(...)) is not supported: only eth and ipv4", inner)
        try:
            (attr,) = parse_odp_key(f"{header}({m[2]})")
        except OdpKeyError as exc:
            raise self.fail(exc.reason, inner + exc.offset) from None
        allowed = tuple(attrs.fields_dict(set_type))
        for field in attr.fields:
            if field not in allowed:
                raise self.fail(
                    f"set({header}) cannot set {field!r} (settable: {', '.join(allowed)})", inner
                )
            kind = ATTRS[header].kind(field)
            assert kind is not None  # the key parser accepted the field
            if attr.masks.get(field, kind.full) != kind.full:
                raise self.fail(
                    f"set({header}) field {field!r} is masked; only whole fields can be set",
                    inner,
                )
        if not attr.fields:
            raise self.fail(f"set({header}()) sets nothing", inner)
        return set_type(**attr.fields), m.end()

    def push_vlan(self, pos: int) -> tuple[Action, int]:
        m = _PUSH_VLAN.match(self.text, pos)
        if m is None:
            raise self.fail("malformed push_vlan(): expected push_vlan(vid=N,pcp=N)", pos)
        kinds = {"tpid": ETHERTYPE, "vid": VID, "pcp": PCP, "cfi": CFI}
        values: dict[str, int] = {}
        offset = m.start(1)
        for item in m[1].split(",") if m[1] else ():
            field, eq, value_text = item.partition("=")
            kind = kinds.get(field)
            if not eq or kind is None:
                known = "tpid, vid, pcp, cfi"
                raise self.fail(f"unknown push_vlan field {field!r} (known: {known})", offset)
            if field in values:
                raise self.fail(f"push_vlan field {field!r} given twice", offset)
            try:
                values[field] = _exact(kind, value_text, f"push_vlan {field}")
            except ValueError as exc:
                raise self.fail(f"{exc} in push_vlan {field}", offset + len(field) + 1) from None
            offset += len(item) + 1
        missing = [field for field in ("vid", "pcp") if field not in values]
        if missing:
            raise self.fail(f"push_vlan needs {' and '.join(missing)}", pos)
        if values.get("cfi", 1) != 1:
            raise self.fail("push_vlan cfi=0 is not supported (the tag is always present)", pos)
        try:
            action = PushVlan(
                tci=values["vid"] | values["pcp"] << VLAN_PCP_SHIFT,
                tpid=values.get("tpid", ETH_TYPE_VLAN_8021Q),
            )
        except ValueError as exc:
            raise self.fail(str(exc), pos) from None
        return action, m.end()


def parse_actions(text: str, port_names: Mapping[str, int] | None = None) -> list[Action]:
    """Parse datapath actions in the syntax :func:`format_actions` writes.

    ``port_names`` maps port names to numbers for outputs written by name.
    Raises :class:`ActionSyntaxError` (a ValueError) saying what and where.
    """
    return _Parser(text, port_names).actions()


# -- frame edits -------------------------------------------------------------------
#
# Each modifying action becomes an Edit: a function from a frame to the
# modified frame, built once per flow with its constants prepared.  An edit
# returns its input object itself when it changes nothing (a frame too short
# for the header, pop_vlan of an untagged frame), so callers can keep the
# packet they have.

Edit: TypeAlias = Callable[[bytes], bytes]


def _set_eth_edit(action: SetEth) -> Edit:
    src = action.src.to_bytes(_MAC_LEN, "big") if action.src is not None else b""
    dst = action.dst.to_bytes(_MAC_LEN, "big") if action.dst is not None else b""

    def set_eth(data: bytes) -> bytes:
        if len(data) < 2 * _MAC_LEN:
            return data
        return (dst or data[:6]) + (src or data[6:12]) + data[12:]

    return set_eth


def _push_vlan_edit(action: PushVlan) -> Edit:
    tag = struct.pack("!HH", action.tpid, action.tci)

    def push_vlan(data: bytes) -> bytes:
        return data[:12] + tag + data[12:] if len(data) >= 12 else data

    return push_vlan


def _pop_vlan(data: bytes) -> bytes:
    if len(data) >= 12 + _TAG_LEN + 2 and (data[12] << 8 | data[13]) in VLAN_TPIDS:
        return data[:12] + data[12 + _TAG_LEN :]
    return data


def _ipv4_offset(data: bytes) -> int:
    """Where the IPv4 header starts, behind any VLAN tags; -1 if there is no whole one."""
    if data[12:15] == _PLAIN_IPV4 and len(data) >= 14 + _IPV4_MIN_HEADER:
        return 14  # untagged, no IP options: nearly every frame
    offset = 12
    size = len(data)
    while offset + 2 <= size:
        ethertype = data[offset] << 8 | data[offset + 1]
        if ethertype in VLAN_TPIDS:
            offset += _TAG_LEN
            continue
        offset += 2
        if ethertype != ETH_TYPE_IP or offset + _IPV4_MIN_HEADER > size:
            return -1
        version_ihl = data[offset]
        ihl = (version_ihl & 0xF) * 4
        if version_ihl >> 4 != 4 or ihl < _IPV4_MIN_HEADER or offset + ihl > size:
            return -1
        return offset
    return -1


# Checksums are updated incrementally (RFC 1624, equation 3):
#     HC' = ~(~HC + ~m + m')
# summed over every changed 16-bit word m -> m'.  The ~m + m' terms are
# added up unfolded, then folded once.  ~w is 0xffff - w for a 16-bit w, so
# replacing a 32-bit address a by b adds 0x1fffe - hi(a) - lo(a) + hi(b) + lo(b);
# a byte that shares its word with an unchanged byte contributes alone, as
# the unchanged byte's ~x + x is 0xffff, ones' complement zero.


def _fold(checksum: int, delta: int) -> int:
    """``checksum`` updated by the summed ``~m + m'`` terms ``delta`` (< 2**31)."""
    total = (checksum ^ 0xFFFF) + delta
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total ^ 0xFFFF


def _set_ipv4_edit(action: SetIpv4) -> Edit:
    src, dst, tos, ttl = action.src, action.dst, action.tos, action.ttl
    src_words = 0x1FFFE + (src >> 16) + (src & 0xFFFF) if src is not None else 0
    dst_words = 0x1FFFE + (dst >> 16) + (dst & 0xFFFF) if dst is not None else 0
    unpack, pack = _IPV4_HEADER.unpack_from, _IPV4_HEADER.pack
    pack_u16 = _U16.pack

    def set_ipv4(data: bytes) -> bytes:
        l3 = _ipv4_offset(data)
        if l3 < 0:
            return data
        vihl, old_tos, length, ident, frag, old_ttl, proto, csum, old_src, old_dst = unpack(
            data, l3
        )
        new_src, new_dst, new_tos, new_ttl = old_src, old_dst, old_tos, old_ttl
        addr_delta = 0
        if src is not None:
            addr_delta = src_words - (old_src >> 16) - (old_src & 0xFFFF)
            new_src = src
        if dst is not None:
            addr_delta += dst_words - (old_dst >> 16) - (old_dst & 0xFFFF)
            new_dst = dst
        ip_delta = addr_delta
        if tos is not None:
            ip_delta += 0xFFFF - old_tos + tos
            new_tos = tos
        if ttl is not None:
            ip_delta += 0xFFFF - (old_ttl << 8) + (ttl << 8)
            new_ttl = ttl
        header = pack(
            vihl, new_tos, length, ident, frag, new_ttl, proto, _fold(csum, ip_delta),
            new_src, new_dst,
        )  # fmt: skip
        end = l3 + _IPV4_MIN_HEADER
        # Addresses are in the TCP/UDP pseudo-header, so their checksum changes
        # too; a non-first fragment carries no L4 header to fix.
        if not addr_delta or frag & _IP_FRAG_OFFSET_MASK:
            return data[:l3] + header + data[end:]
        l4 = l3 + (vihl & 0xF) * 4
        if proto == IPPROTO_TCP and len(data) >= l4 + _TCP_HEADER:
            at = l4 + 16
            l4_csum = _fold(data[at] << 8 | data[at + 1], addr_delta)
        elif proto == IPPROTO_UDP and len(data) >= l4 + _UDP_HEADER:
            at = l4 + 6
            l4_csum = data[at] << 8 | data[at + 1]
            if not l4_csum:  # the sender computed no checksum: keep it that way
                return data[:l3] + header + data[end:]
            # A sum that comes out as zero is sent as 0xffff (RFC 768).
            l4_csum = _fold(l4_csum, addr_delta) or 0xFFFF
        else:
            return data[:l3] + header + data[end:]
        return b"".join((data[:l3], header, data[end:at], pack_u16(l4_csum), data[at + 2 :]))

    return set_ipv4


def _edit_for(action: Action) -> Edit:
    """The edit that performs the modifying ``action``."""
    if isinstance(action, SetEth):
        return _set_eth_edit(action)
    if isinstance(action, SetIpv4):
        return _set_ipv4_edit(action)
    if isinstance(action, PushVlan):
        return _push_vlan_edit(action)
    if isinstance(action, PopVlan):
        return _pop_vlan
    raise TypeError(f"not a modifying datapath action: {action!r}")


def _chain(actions: Sequence[Action]) -> Edit:
    """One edit doing ``actions`` in order."""
    edits = tuple(_edit_for(action) for action in actions)
    if len(edits) == 1:
        return edits[0]

    def chained(data: bytes) -> bytes:
        for edit in edits:
            data = edit(data)
        return data

    return chained


# -- compiled executors ------------------------------------------------------------


class OutputSink(Protocol):
    """Where compiled actions queue packets: a :class:`~.pmd.Pmd` (or a test fake)."""

    def output(self, port_no: int, packet: Packet) -> None: ...

    def output_batch(self, port_no: int, packets: list[Packet]) -> None:
        """Queue ``packets`` in order; same as calling :meth:`output` for each."""
        ...


#: What :func:`compile_actions` returns: run on (pmd, batch), return outputs queued.
CompiledActions: TypeAlias = Callable[[OutputSink, list[Packet]], int]

#: (edit applied first, or None for the received frame; ports output after it).
_Segment: TypeAlias = tuple[Edit | None, tuple[int, ...]]


def _segments(actions: Sequence[Action]) -> list[_Segment]:
    """Split ``actions`` at each run of modifications that some output follows.

    Modifications after the last output are dropped: nothing can see them.
    """
    segments: list[_Segment] = []
    pending: list[Action] = []
    for action in actions:
        if isinstance(action, Output):
            if pending or not segments:
                segments.append((_chain(pending) if pending else None, ()))
                pending = []
            edit, ports = segments[-1]
            segments[-1] = (edit, (*ports, action.port))
        elif isinstance(action, PushVlan | PopVlan | SetEth | SetIpv4):
            pending.append(action)
        else:
            raise TypeError(f"not a datapath action: {action!r}")
    return segments


def _derive(packet: Packet, data: bytes) -> Packet:
    """A new packet with frame ``data`` and ``packet``'s metadata."""
    return Packet(data, packet.mark, packet.vnet)


def _drop(sink: OutputSink, batch: list[Packet]) -> int:
    return 0


def _single_output(port: int) -> CompiledActions:
    def output_one(sink: OutputSink, batch: list[Packet]) -> int:
        # One call per batch: the PMD extends its tx batch in C.
        sink.output_batch(port, batch)
        return len(batch)

    return output_one


def _flood(ports: tuple[int, ...]) -> CompiledActions:
    n_ports = len(ports)

    def output_all(sink: OutputSink, batch: list[Packet]) -> int:
        output_batch = sink.output_batch
        # Port by port, as OVS runs each action over the whole batch; every
        # port's tx batch gets the packets in the same order either way.
        for port in ports:
            output_batch(port, batch)
        return len(batch) * n_ports

    return output_all


def _edit_then_output(edit: Edit, ports: tuple[int, ...]) -> CompiledActions:
    n_ports = len(ports)

    def edit_output(sink: OutputSink, batch: list[Packet]) -> int:
        output = sink.output
        for packet in batch:
            data = packet.data
            new_data = edit(data)
            edited = packet if new_data is data else _derive(packet, new_data)
            for port in ports:
                output(port, edited)
        return len(batch) * n_ports

    return edit_output


def _general(segments: list[_Segment]) -> CompiledActions:
    n_outputs = sum(len(ports) for _, ports in segments)
    steps = tuple(segments)

    def run(sink: OutputSink, batch: list[Packet]) -> int:
        output = sink.output
        packets = batch
        for edit, ports in steps:
            if edit is not None:
                # A fresh packet per edited frame: the ones already queued keep theirs.
                edited = []
                for packet in packets:
                    data = packet.data
                    new_data = edit(data)
                    edited.append(packet if new_data is data else _derive(packet, new_data))
                packets = edited
            for port in ports:
                for packet in packets:
                    output(port, packet)
        return len(batch) * n_outputs

    return run


def compile_actions(actions: Sequence[Action]) -> CompiledActions:
    """Turn a flow's actions into the function that executes them on a batch.

    Call it once per flow; the result is called as ``run(pmd, batch)`` with
    the packets that matched the flow, queues them with ``pmd.output`` as
    the actions say and returns the number of ``output`` calls it made
    (packets x outputs; a port the PMD does not have still counts here,
    the PMD counts that drop itself).

    Specialised forms: drop; one output; outputs only (flood); one group of
    modifications followed by outputs; anything else runs segment by
    segment over the batch.  Packets of ``batch`` are never modified.
    """
    segments = _segments(actions)
    if not segments:
        return _drop
    if len(segments) == 1:
        edit, ports = segments[0]
        if edit is not None:
            return _edit_then_output(edit, ports)
        if len(ports) == 1:
            return _single_output(ports[0])
        return _flood(ports)
    return _general(segments)
