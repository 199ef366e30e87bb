"""OVS's own other_config values, read the way ovs-vswitchd reads them.

OVSDB keeps every other_config value as a string and ovs-vswitchd never
refuses one: a value it cannot use is replaced, key by key, by the
default or the nearest bound (its ``smap_get_bool/int/uint/ullong``
readers and the checks after them; OVS's alb.at and pmd.at test this,
e.g. ``pmd-auto-lb-rebal-interval=20001`` runs on 1 minute).  pyvswitchd
takes the same values to the same effect, but never silently: a reader
that has to replace a value raises :class:`Fallback` with the value it
uses, and the loader turns that into a note naming the key, the value
written and the value used, which the daemon logs and ``--check-config``
prints.

One deliberate difference: OVS reads a negative ``tx-flush-interval``
into an unsigned 32-bit field (``-5`` becomes 71 minutes of batching);
here it is replaced by the default, 0.  Unsigned readers (``ullong``)
turn ``-1`` into the largest value, as C's ``strtoull`` does, which then
fails the range check or is clamped as in OVS.

The TOML file may also use natives (``true``, ``50``); they are first
spelled as OVSDB would hold them (:func:`ovsdb_text`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: The longest a PMD may sleep, us (OVS's PMD_RCU_QUIESCE_INTERVAL).
MAX_SLEEP_US = 10000
#: Bounds OVS's MAC learning table applies (mac-learning.c).
MAC_AGING_RANGE = (15, 3600)
MAC_TABLE_RANGE = (10, 1000 * 1000)
MAC_AGING_DEFAULT = 300
MAC_TABLE_DEFAULT = 8192

_UINT_MAX = 2**32 - 1
_INT_MAX = 2**31 - 1
_ULLONG_MAX = 2**64 - 1
_DECIMAL = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]+)")
_BASE0 = re.compile(r"[ \t\n\v\f\r]*([+-]?)(?:0[xX]([0-9a-fA-F]+)|(0[0-7]*)|([1-9][0-9]*))")
_SLEEP_ITEM = re.compile(r"[^,\s]+")
_HEXITS = frozenset("0123456789abcdefABCDEF")

#: ``pmd-sleep-max`` read: (core, us) pairs, core None for the every-PMD value.
SleepEntries = tuple[tuple[int | None, int], ...]


class Fallback(ValueError):
    """The value cannot be used as written; ``used`` replaces it (``shown`` in notes)."""

    def __init__(self, why: str, used: object, shown: str | None = None) -> None:
        super().__init__(why)
        self.used = used
        self.shown = str(used) if shown is None else shown


def ovsdb_text(value: Any) -> str:
    """``value`` as the OVSDB string a TOML native stands for; ValueError for tables/arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError("expected a string or number")


def c_integer(text: str, *, base0: bool = False, unsigned: bool = False) -> int | None:
    """``text`` as C's ``strtoll`` (``strtoull`` with ``unsigned``) reads it whole, or None.

    Leading white space and a sign are accepted; ``base0`` also reads
    ``0x`` hex and leading-zero octal.  An unsigned read of a negative
    number wraps, as strtoull's does; a result that does not fit 64 bits
    is None (ERANGE).
    """
    m = (_BASE0 if base0 else _DECIMAL).fullmatch(text)
    if m is None:
        return None
    if base0:
        hexa, octal = m.group(2), m.group(3)
        value = int(hexa, 16) if hexa else int(octal, 8) if octal else int(m.group(4))
    else:
        value = int(m.group(2))
    if m.group(1) == "-":
        value = -value
    if unsigned:
        if not -_ULLONG_MAX <= value <= _ULLONG_MAX:
            return None
        return value % (_ULLONG_MAX + 1)
    return value if -(2**63) <= value < 2**63 else None


# ---------------------------------------------------------------------------
# Readers: each takes the TOML value, returns the value in effect, or raises
# Fallback (replaced) or ValueError (not even an OVSDB string).


def ovs_bool(default: bool) -> Callable[[Any], bool]:
    """``smap_get_bool``: "true" or "false" in any case; anything else is the default."""
    word = "true" if default else "false"

    def parse(value: Any) -> bool:
        text = ovsdb_text(value).lower()
        if text in ("true", "false"):
            return text == "true"
        raise Fallback("expected true or false", default, word)

    return parse


def ovs_integer(
    default: int, lo: int, hi: int, *, unsigned: bool = False, unit: str = ""
) -> Callable[[Any], int]:
    """A number in ``lo``..``hi``; anything else (not a number, out of range) is the default.

    ``unsigned`` reads as ``smap_get_ullong``, where ``-1`` is the largest
    value; otherwise as ``smap_get_int``/``smap_get_uint``, where it is
    either in range or not.
    """
    why = f"expected an integer from {lo} to {hi}{unit}"

    def parse(value: Any) -> int:
        number = c_integer(ovsdb_text(value), unsigned=unsigned)
        if number is None or not lo <= number <= hi:
            raise Fallback(why, default)
        return number

    return parse


def ovs_maxsleep(value: Any) -> int:
    """``pmd-maxsleep``: microseconds, capped at 10000 (not a number: 0)."""
    number = c_integer(ovsdb_text(value), unsigned=True)
    why = f"expected an integer from 0 to {MAX_SLEEP_US} us"
    if number is None:
        raise Fallback(why, 0)
    if number > MAX_SLEEP_US:
        raise Fallback(why, MAX_SLEEP_US)
    return number


def ovs_rxq_assign(value: Any) -> str:
    """``pmd-rxq-assign``: OVS compares exactly and falls back to cycles."""
    text = ovsdb_text(value)
    if text in ("roundrobin", "cycles", "group"):
        return text
    raise Fallback("expected roundrobin, cycles or group", "cycles", '"cycles"')


def ovs_cpu_mask(value: Any) -> int | None:
    """``pmd-cpu-mask``: hex digits, ``0x`` optional; a character that is none counts as 0.

    An empty mask means the default (None: one PMD per NUMA node); a mask
    of no core means no PMD thread, as in OVS (the rx queue scheduler then
    says which queues go unpolled).  A TOML integer is the mask itself.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        mask = value
        bad = ""
    else:
        text = ovsdb_text(value)
        if not text:
            return None
        digits = text[2:] if text[:2] in ("0x", "0X") else text
        bad = "".join(dict.fromkeys(c for c in digits if c not in _HEXITS))
        mask = int("".join(c if c in _HEXITS else "0" for c in digits) or "0", 16)
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        used = hex(mask) + (" (no core: no PMD thread)" if mask == 0 else "")
        raise Fallback(f"not hexadecimal: {shown}, read as 0", mask, used)
    return mask


def ovs_sleep_list(value: Any) -> SleepEntries:
    """``pmd-sleep-max``: ``N`` (every PMD) and ``CORE:N`` (``=`` also) entries, in us.

    Entries are separated by commas or spaces and read as OVS reads them
    (``strtoull``, base 0): an entry that is no such thing is skipped, a
    value over 10000 (``-5`` included, which wraps) is capped, the last of
    duplicates wins.  No ``N`` entry means 0 (busy polling).
    """
    text = ovsdb_text(value)
    entries: dict[int | None, int] = {}
    problems: list[str] = []
    for item in _SLEEP_ITEM.findall(text):
        key, sep, val = _split_entry(item)
        if sep:
            core = c_integer(key, base0=True, unsigned=True)
            us = c_integer(val, base0=True, unsigned=True)
            if core is None or us is None or core >= _UINT_MAX:
                problems.append(f'entry "{item}" is not CORE:N, ignored')
                continue
        else:
            core, us = None, c_integer(key, base0=True, unsigned=True)
            if us is None:
                problems.append(f'entry "{item}" is not a number, ignored')
                continue
        if us > MAX_SLEEP_US:
            problems.append(f'entry "{item}" is over {MAX_SLEEP_US} us, capped')
            us = MAX_SLEEP_US
        entries.pop(core, None)
        entries[core] = us
    result = tuple(entries.items())
    if problems:
        shown = f'"{sleep_text(result)}"' if result else "0 us for every PMD (busy polling)"
        raise Fallback("; ".join(problems), result, shown)
    return result


def _split_entry(item: str) -> tuple[str, str, str]:
    for sep in (":", "="):
        if sep in item:
            key, _, value = item.partition(sep)
            return key, sep, value
    return item, "", ""


def sleep_text(entries: SleepEntries) -> str:
    """``pmd-sleep-max`` entries as text that reads back to the same entries."""
    return ",".join(str(us) if core is None else f"{core}:{us}" for core, us in entries)


# ---------------------------------------------------------------------------
# Bridge other_config


def _mac_knob(text: str, default: int, lo: int, hi: int, unit: str) -> tuple[int, str | None]:
    """A MAC table knob as OVS's bridge.c and mac-learning.c take it: (value, why replaced)."""
    number = c_integer(text)
    if number is None or not -(2**31) <= number <= _INT_MAX:
        return default, f"expected an integer from {lo} to {hi}{unit}"
    if number == 0:  # OVS: 0 means the default
        return default, None
    if number < 0:  # read into an unsigned field: huge
        return hi, f"expected an integer from {lo} to {hi}{unit}"
    if not lo <= number <= hi:
        return min(max(number, lo), hi), f"expected an integer from {lo} to {hi}{unit}"
    return number, None


def bridge_other_config(
    other_config: Mapping[str, str], where: str
) -> tuple[dict[str, str], list[str]]:
    """``other_config`` with ``mac-aging-time``/``mac-table-size`` as in effect, and notes."""
    result = dict(other_config)
    notes: list[str] = []
    for key, default, (lo, hi), unit in (
        ("mac-aging-time", MAC_AGING_DEFAULT, MAC_AGING_RANGE, " s"),
        ("mac-table-size", MAC_TABLE_DEFAULT, MAC_TABLE_RANGE, ""),
    ):
        text = result.get(key)
        if text is None:
            continue
        used, why = _mac_knob(text, default, lo, hi, unit)
        if why is not None:
            notes.append(f'{where}:{key}: invalid value "{text}": {why}; using {used}')
        result[key] = str(used)
    return result, notes
