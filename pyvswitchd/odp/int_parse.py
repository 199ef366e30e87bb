"""Integer parsing: the one home of the ways the daemon reads numbers from text.

OVS reads numbers with C's ``strtoll``/``strtoull`` (configuration, command
arguments) and ``sscanf("%i")`` (flow and action text); the functions here
accept exactly what those would, each as its docstring says.  Netdev and
bridge options keep the decimal syntax they have always had
(:func:`parse_decimal`).  Range checks and error texts belong to the
callers, except for :func:`scan_uint`, whose errors the flow parsers show
as they are.
"""

from __future__ import annotations

import re

#: What C's ``isspace`` accepts: ``strtoll`` skips it before the number.
C_SPACE = " \t\n\v\f\r"
#: C ``int`` range.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

_DECIMAL = re.compile(r"([+-]?)([0-9]+)")
_BASE0 = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")


def _base0_value(m: re.Match[str]) -> int:
    """The unsigned value of a :data:`_BASE0` match: hex, octal or decimal digits."""
    hexa, octal = m.group(2), m.group(3)
    return int(hexa, 16) if hexa else int(octal, 8) if octal else int(m.group(4))


def strtoll(text: str, *, base0: bool = False) -> int | None:
    """``text`` as ``strtoll`` reads it when it must consume all of it; None if it cannot.

    Leading white space and a sign are accepted.  The digits are decimal
    (base 10), or with ``base0`` a C literal (base 0): ``0x`` hex, a leading
    zero for octal, else decimal.  There is no overflow check: callers
    range-check, which covers it.
    """
    m = (_BASE0 if base0 else _DECIMAL).fullmatch(text.lstrip(C_SPACE))
    if m is None:
        return None
    value = _base0_value(m) if base0 else int(m.group(2))
    return -value if m.group(1) == "-" else value


def scan_uint(text: str, bits: int, what: str = "number") -> int:
    """A number of a flow or action text (``%i`` into an unsigned field of ``bits`` bits).

    A C literal (``0x`` hex, leading-zero octal, decimal) with an optional
    ``+``, nothing around it.  ValueError ``bad <what> '<text>'`` when it is
    not one, ``<what> '<text>' does not fit in <bits> bits`` when too large.
    """
    m = _BASE0.fullmatch(text)
    if m is None or m.group(1) == "-":
        raise ValueError(f"bad {what} {text!r}")
    value = _base0_value(m)
    if value >> bits:
        raise ValueError(f"{what} {text!r} does not fit in {bits} bits")
    return value


def parse_decimal(text: str) -> int | None:
    """``text`` as a decimal integer the way Python's ``int`` reads it; None if not one.

    White space around it, a sign and ``_`` between digits are accepted
    (the syntax netdev and bridge options have always taken).
    """
    try:
        return int(text, 10)
    except ValueError:
        return None


def bounded_int(text: str, low: int, high: int) -> int | None:
    """:func:`parse_decimal` of ``text`` if within ``low``..``high``, else None."""
    value = parse_decimal(text)
    return value if value is not None and low <= value <= high else None
