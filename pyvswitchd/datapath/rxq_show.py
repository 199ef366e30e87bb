"""``dpif-netdev/pmd-rxq-show``: per-PMD rx queue usage, as text and as data.

The datapath snapshots each PMD into a :class:`PmdUsage` and calls
:func:`format_pmd_rxq_show` (OVS's exact layout) or :func:`pmd_rxq_show_data`
(the same content for JSON).  Interval sequences are ordered **oldest first,
newest last** and hold at most the 12 stored intervals;
:func:`ring_newest_last` unrolls an OVS-style ring (slots + store counter).

Usage maths (OVS): with ``k = ceil(secs / 5)`` intervals, ``total =
intrvl_cycles * k``; a queue's usage is the sum of its newest ``k`` interval
values * 100 / total; the overhead is the PMD's newest ``k`` busy cycles
(capped at total) minus the queues' sum, floored at 0, * 100 / total.  When
``total`` is 0 (no interval completed since the last reload) every value is
"NOT AVAIL" (None in the data).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import attrs

PMD_INTERVAL_SECS = 5
MAX_SECS = 60
NON_PMD_CORE_ID = (1 << 32) - 1
"""The main thread's core id: ``-pmd 4294967295`` matches it, which prints
only the header."""

_UINT = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)")


def parse_secs(arg: str | None) -> int:
    """The ``-secs`` value to show: absent, unparsable, 0 or above 60 give
    60; anything else is rounded up to a multiple of 5."""
    match = _UINT.fullmatch(arg) if arg is not None else None
    secs = int(match.group(1)) if match else 0
    if secs == 0 or secs > MAX_SECS:
        return MAX_SECS
    return -(-secs // PMD_INTERVAL_SECS) * PMD_INTERVAL_SECS


def ring_newest_last(slots: Sequence[int], stores: int) -> list[int]:
    """Unroll a ring whose next write goes to ``slots[stores % len(slots)]``."""
    n = len(slots)
    if n == 0:
        return []
    start = stores % n
    return list(slots[start:]) + list(slots[:start])


@attrs.define
class RxqUsage:
    """One polled rx queue: ``intervals`` are its processing cycles per 5 s
    interval, oldest first."""

    port_name: str
    qid: int
    enabled: bool = True
    intervals: Sequence[int] = ()


@attrs.define
class PmdUsage:
    """One PMD thread: ``intrvl_cycles`` is the length (TSC) of its last
    completed interval, 0 if none yet; ``busy_intervals`` its busy cycles per
    interval, oldest first; ``rxqs`` its poll list in any order."""

    core_id: int
    numa_id: int
    isolated: bool = False
    intrvl_cycles: int = 0
    busy_intervals: Sequence[int] = ()
    rxqs: list[RxqUsage] = attrs.Factory(list)


def _newest(values: Sequence[int], k: int) -> int:
    return sum(values[-k:]) if k > 0 else 0


def _percent(cycles: int, total: int) -> float:
    # C divides two doubles here; float() each side to round the same way.
    return float(cycles * 100) / float(total)


@attrs.frozen
class _Row:
    port: str
    qid: int
    enabled: bool
    usage: float | None


@attrs.frozen
class _Pmd:
    pmd: PmdUsage
    rows: list[_Row]
    overhead: float | None


def _compute(pmd: PmdUsage, secs: int) -> _Pmd:
    k = min(math.ceil(secs / PMD_INTERVAL_SECS), 12)
    total = pmd.intrvl_cycles * k
    busy = min(_newest(pmd.busy_intervals, k), total)
    rows, rxq_sum = [], 0
    for rxq in sorted(pmd.rxqs, key=lambda r: (r.port_name, r.qid)):
        cycles = _newest(rxq.intervals, k)
        rxq_sum += cycles
        usage = _percent(cycles, total) if total else None
        rows.append(_Row(rxq.port_name, rxq.qid, rxq.enabled, usage))
    overhead = _percent(max(busy - rxq_sum, 0), total) if total and rows else None
    return _Pmd(pmd, rows, overhead)


def _selected(pmds: Sequence[PmdUsage], core_filter: int | None) -> list[PmdUsage]:
    chosen = [p for p in pmds if core_filter is None or p.core_id == core_filter]
    return sorted(chosen, key=lambda p: p.core_id)


def _has_header(chosen: list[PmdUsage], core_filter: int | None) -> bool:
    # The main thread always passes an unfiltered walk (and -pmd with its
    # core id), and it is what prints the header even without any PMD.
    return bool(chosen) or core_filter is None or core_filter == NON_PMD_CORE_ID


def _value(value: float | None) -> str:
    return "NOT AVAIL" if value is None else f"{value:2.0f} %"


def format_pmd_rxq_show(
    pmds: Sequence[PmdUsage], secs: int, *, core_filter: int | None = None
) -> str:
    """The reply text of ``pmd-rxq-show``.

    ``pmds`` are all PMD threads (main thread excluded); ``secs`` comes from
    :func:`parse_secs`; ``core_filter`` is a successfully parsed ``-pmd``
    value (OVS ignores an unparsable one).  A filter matching nothing
    yields "" -- except the main thread's id, which yields the header alone.
    """
    chosen = _selected(pmds, core_filter)
    out = []
    if _has_header(chosen, core_filter):
        out.append(f"Displaying last {secs} seconds pmd usage %\n")
    for pmd in chosen:
        info = _compute(pmd, secs)
        out.append(f"pmd thread numa_id {pmd.numa_id} core_id {pmd.core_id}:\n")
        out.append(f"  isolated : {'true' if pmd.isolated else 'false'}\n")
        for row in info.rows:
            state = "(enabled) " if row.enabled else "(disabled)"
            out.append(
                f"  port: {row.port:<16s}  queue-id: {row.qid:2d} {state}"
                f"  pmd usage: {_value(row.usage)}\n"
            )
        if info.rows:
            out.append(f"  overhead: {_value(info.overhead)}\n")
    return "".join(out)


def pmd_rxq_show_data(
    pmds: Sequence[PmdUsage], secs: int, *, core_filter: int | None = None
) -> dict[str, Any]:
    """The same content as :func:`format_pmd_rxq_show`, JSON-ready.

    ``{"secs": int, "pmds": [{"numa_id", "core_id", "isolated",
    "rxqs": [{"port", "queue_id", "enabled", "usage"}], "overhead"}]}`` in
    core order, rxqs by port name then queue id.  ``usage`` / ``overhead``
    are unrounded percentages or None (not available; ``overhead`` is also
    None for a PMD without queues, where the text has no overhead line).
    """
    result = []
    for pmd in _selected(pmds, core_filter):
        info = _compute(pmd, secs)
        rxqs = [
            {"port": r.port, "queue_id": r.qid, "enabled": r.enabled, "usage": r.usage}
            for r in info.rows
        ]
        result.append(
            {
                "numa_id": pmd.numa_id,
                "core_id": pmd.core_id,
                "isolated": pmd.isolated,
                "rxqs": rxqs,
                "overhead": info.overhead,
            }
        )
    return {"secs": secs, "pmds": result}
