"""Datapath actions: the data types and their OVS text syntax.

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

Running actions on packets is the datapath's job
(:mod:`pyvswitchd.datapath.execute`, OVS's odp-execute).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from .key_text import (
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
from .protocols import ETH_TYPE_VLAN_8021Q, VLAN_CFI, VLAN_PCP_SHIFT, VLAN_TPIDS

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
