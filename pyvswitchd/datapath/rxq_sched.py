"""Rx queue to PMD assignment, as pure logic.

No I/O, no trio: the datapath snapshots its state into views, calls in and
applies the result.  Log texts are OVS's, word for word; ``log`` is anything
with ``info``/``warn``/``dbg`` methods taking one string (a ``VlogModule``).

* ``parse_affinity(text) -> {qid: core}`` parses Interface
  ``pmd-rxq-affinity`` ("0:3,1:7"; ``=`` works too; pairs separated by commas
  or white space; C base-0 numbers).  ValueError on any bad or negative
  entry: keep the previous setting.  The caller ignores qids >= n_rxq.
* ``RxqSchedConfig(log).configure(assign, isolate) -> bool`` handles
  ``pmd-rxq-assign`` / ``pmd-rxq-isolate`` (True = reconfigure).
* ``schedule(rxqs, pmds, algorithm, isolate, log, *, dry_run=False)`` is one
  scheduling run.  ``rxqs``: all queues of PMD-type ports only, any order
  (walked in (port_no, qid) order); ``pmds``: PMD threads, not the main
  thread.  ``Schedule.assignment[(port_name, qid)]`` is a core or None (not
  polled), ``Schedule.isolated`` the cores to flag isolated.  ``dry_run``
  logs at DBG and skips the "Performing ..." line (the ALB's estimate).
The queues' and PMDs' ALB-only fields — ``RxqInfo.current_core`` (core
polling the queue now, or None), ``PmdInfo.isolated`` (current flag) and
``PmdInfo.intrvl_cycles`` (TSC length of the last completed 5 s interval)
— are read by :mod:`.auto_lb`, whose dry runs call :func:`schedule`.
``RxqInfo.history`` holds the stored interval cycle counts in any order;
only their sum (HIST) counts.

Deviations from OVS: ports are walked in port_no order and NUMA nodes in
numa_id order where OVS walks hash maps (only exotic multi-port roundrobin
layouts and the order of the variance lines can differ).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from ..odp.int_parse import INT_MAX, strtoll

ALGORITHMS = ("roundrobin", "cycles", "group")
PMD_INTERVAL_MAX = 12
"""Stored 5 s intervals per rx queue / PMD, and the overload count that
makes a PMD "overloaded" for the ALB (about 60 s in a row)."""


class Log(Protocol):
    def info(self, msg: str) -> None: ...
    def warn(self, msg: str) -> None: ...
    def dbg(self, msg: str) -> None: ...


# ---------------------------------------------------------------------------
# Boolean knobs.


def ovs_bool(value: object, default: bool) -> bool:
    """smap_get_bool: only the word opposite to the default changes it."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    return text != "false" if default else text == "true"


# ---------------------------------------------------------------------------
# pmd-rxq-affinity


def _split_kv(text: str) -> Iterable[tuple[str, str]]:
    """OVS's key[:=]value list tokenizer (also key(value)); value "" if none."""
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in ", \t\r\n":
            pos += 1
        if pos >= n:
            return
        start = pos
        while pos < n and text[pos] not in ":=(, \t\r\n":
            pos += 1
        key, delim = text[start:pos], text[pos] if pos < n else ""
        pos += 1 if delim else 0
        if delim not in (":", "=", "("):
            yield key, ""
            continue
        stops = ")" if delim == "(" else ", \t\r\n"
        start, depth = pos, 0
        while pos < n and (depth or text[pos] not in stops):
            depth += {"(": 1, ")": -1}.get(text[pos], 0)
            pos += 1
        yield key, text[start:pos]
        pos += 1 if pos < n else 0


def parse_affinity(text: str) -> dict[int, int]:
    """Parse ``pmd-rxq-affinity`` into {queue id: core id}.

    Raises ValueError if any key or value is not a non-negative C int; OVS
    then rejects the whole setting (EINVAL) and keeps the previous one.
    """
    result: dict[int, int] = {}
    for key, value in _split_kv(text):
        qid, core = strtoll(key, base0=True), strtoll(value, base0=True)
        if qid is None or core is None or not (0 <= qid <= INT_MAX and 0 <= core <= INT_MAX):
            raise ValueError(f"invalid pmd-rxq-affinity entry '{key}:{value}'")
        result[qid] = core
    return result


# ---------------------------------------------------------------------------
# pmd-rxq-assign / pmd-rxq-isolate


@attrs.define
class RxqSchedConfig:
    """The datapath's scheduling knobs with OVS's change logging.

    Starts as OVS's freshly created datapath does (cycles, not isolating), so
    the first :meth:`configure` logs "pmd-rxq-affinity isolates PMD core".
    """

    log: Log
    algorithm: str = "cycles"
    isolate: bool = False

    def configure(self, assign: str | None, isolate: bool | str | None) -> bool:
        """Apply other_config ``pmd-rxq-assign`` and ``pmd-rxq-isolate``
        (None = absent); True if a datapath reconfigure is needed."""
        reconfigure = False
        algorithm = "cycles" if assign is None else assign
        if algorithm not in ALGORITHMS:
            self.log.warn(
                "Unsupported rx queue to PMD assignment mode in pmd-rxq-assign. "
                "Defaulting to 'cycles'."
            )
            algorithm = "cycles"
        if algorithm != self.algorithm:
            self.algorithm = algorithm
            self.log.info(f"Rxq to PMD assignment mode changed to: '{algorithm}'.")
            reconfigure = True
        iso = ovs_bool(isolate, True)
        if algorithm != "group" and not iso:
            self.log.warn("pmd-rxq-isolate can only be set false when using pmd-rxq-assign=group")
            iso = True
        if iso != self.isolate:
            self.isolate = iso
            self.log.info(f"pmd-rxq-affinity {'isolates' if iso else 'does not isolate'} PMD core")
            reconfigure = True
        return reconfigure


# ---------------------------------------------------------------------------
# Scheduling


@attrs.define
class RxqInfo:
    """One rx queue of a PMD-type port, as the scheduler sees it."""

    port_name: str
    port_no: int
    qid: int
    port_numa: int
    pinned_core: int | None = None
    history: Sequence[int] = ()
    current_core: int | None = None

    @property
    def hist(self) -> int:
        """HIST: the processing cycles of all stored intervals."""
        return sum(self.history)

    @property
    def key(self) -> tuple[str, int]:
        return (self.port_name, self.qid)


@attrs.define
class PmdInfo:
    """One PMD thread (never the main thread)."""

    core_id: int
    numa_id: int
    intrvl_cycles: int = 0
    isolated: bool = False


@attrs.define
class PmdLoad:
    """A PMD in a scheduling result: its queues (in assignment order) and load."""

    core_id: int
    numa_id: int
    isolated: bool = False
    proc_cycles: int = 0
    rxqs: list[tuple[str, int]] = attrs.Factory(list)


@attrs.define
class Schedule:
    """The outcome of :func:`schedule`.

    ``assignment`` maps every given rxq to a core or None (not polled);
    ``isolated`` holds the cores to flag isolated; ``pmds`` every PMD by core;
    ``cross_numa`` tells whether an unpinned queue landed on a non-isolated
    PMD of another NUMA node (what the ALB refuses to estimate).
    """

    algorithm: str
    assignment: dict[tuple[str, int], int | None] = attrs.Factory(dict)
    isolated: set[int] = attrs.Factory(set)
    pmds: dict[int, PmdLoad] = attrs.Factory(dict)
    cross_numa: bool = False

    def numa_ids(self) -> list[int]:
        return sorted({p.numa_id for p in self.pmds.values()})


@attrs.define(eq=False)
class _Numa:
    numa_id: int
    pmds: list[PmdLoad]
    cursor: int = 0
    upward: bool = True

    def non_isolated(self) -> int:
        return sum(1 for p in self.pmds if not p.isolated)

    def _step(self, updown: bool) -> PmdLoad:
        # Roundrobin wraps 0..n-1,0..; cycles bounces 0..n-1,n-1..0,0.. so the
        # busiest queues (sorted first) do not all land on the first cores.
        picked = self.pmds[self.cursor]
        last = len(self.pmds) - 1
        if self.upward:
            if self.cursor < last:
                self.cursor += 1
            elif updown:
                self.upward = False
            else:
                self.cursor = 0
        elif self.cursor > 0:
            self.cursor -= 1
        else:
            self.upward = True
        return picked

    def next_pmd(self, algorithm: str, has_cycles: bool) -> PmdLoad | None:
        if algorithm == "group":
            free = [p for p in self.pmds if not p.isolated]
            # min() keeps the first of equals, so ties go to the lowest core.
            return min(
                free, key=lambda p: p.proc_cycles if has_cycles else len(p.rxqs), default=None
            )
        # Two laps are enough for the up/down walk to visit every PMD.
        for _ in range(2 * len(self.pmds)):
            pmd = self._step(algorithm == "cycles")
            if not pmd.isolated:
                return pmd
        return None


def _numa_list(pmds: Sequence[PmdInfo]) -> list[_Numa]:
    by_numa: dict[int, list[PmdLoad]] = {}
    for info in sorted(pmds, key=lambda p: p.core_id):
        by_numa.setdefault(info.numa_id, []).append(PmdLoad(info.core_id, info.numa_id))
    return [_Numa(numa_id, by_numa[numa_id]) for numa_id in sorted(by_numa)]


def _cycles_text(algorithm: str, cycles: int) -> str:
    return "" if algorithm == "roundrobin" else f" (measured processing cycles {cycles})"


def schedule(
    rxqs: Sequence[RxqInfo],
    pmds: Sequence[PmdInfo],
    algorithm: str,
    isolate: bool,
    log: Log,
    *,
    dry_run: bool = False,
) -> Schedule:
    """Assign rx queues to PMDs the way OVS's ``rxq_scheduling`` does.

    Pinned queues go to their core first (isolating it when ``isolate``);
    the rest, sorted by HIST (descending, then port_no, qid) unless
    roundrobin, go to a PMD of their port's NUMA node or, failing that, of
    the next NUMA node with a non-isolated PMD.  ``dry_run`` logs at DBG.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown rxq assignment algorithm {algorithm!r}")
    info_log = log.dbg if dry_run else log.info
    warn_log = log.dbg if dry_run else log.warn
    numas = _numa_list(pmds)
    by_core = {pmd.core_id: pmd for numa in numas for pmd in numa.pmds}
    result = Schedule(algorithm, pmds=dict(sorted(by_core.items())))

    unpinned: list[RxqInfo] = []
    for rxq in sorted(rxqs, key=lambda r: (r.port_no, r.qid)):
        core = rxq.pinned_core
        if core is None:
            unpinned.append(rxq)
            continue
        target = by_core.get(core)
        if target is None:
            warn_log(
                f"Core {core:2d} cannot be pinned with port '{rxq.port_name}' rx queue "
                f"{rxq.qid}. Use pmd-cpu-mask to enable a pmd on core {core}. "
                "An alternative core will be assigned."
            )
            unpinned.append(rxq)
            continue
        if isolate:
            target.isolated = True
        info_log(
            f"Core {core:2d} on numa node {target.numa_id} is pinned with port "
            f"'{rxq.port_name}' rx queue {rxq.qid}{_cycles_text(algorithm, rxq.hist)}"
        )
        target.rxqs.append(rxq.key)
        target.proc_cycles += rxq.hist
        result.assignment[rxq.key] = core

    if algorithm != "roundrobin":
        unpinned.sort(key=lambda r: (-r.hist, r.port_no, r.qid))
    numa_by_id = {numa.numa_id: numa for numa in numas}
    last_cross = -1  # index into numas of the NUMA last used as a fallback
    for index, rxq in enumerate(unpinned):
        if index == 0 and not dry_run:
            log.info(f"Performing pmd to rx queue assignment using {algorithm} algorithm.")
        hist = rxq.hist
        numa = numa_by_id.get(rxq.port_numa)
        if numa is None or not numa.non_isolated():
            numa = None
            # The fallback cursor persists across queues so they spread over
            # every remote NUMA node instead of piling onto the first one.
            for _ in numas:
                last_cross = (last_cross + 1) % len(numas)
                if numas[last_cross].non_isolated():
                    numa = numas[last_cross]
                    break
        target = numa.next_pmd(algorithm, hist != 0) if numa is not None else None
        if target is None:
            warn_log(
                f"No non-isolated pmd on any numa available for port '{rxq.port_name}' "
                f"rx queue {rxq.qid}{_cycles_text(algorithm, hist)}. "
                "This rx queue will not be polled."
            )
            result.assignment[rxq.key] = None
            continue
        if target.numa_id != rxq.port_numa:
            info_log(
                "There's no available (non-isolated) pmd thread on numa node "
                f"{rxq.port_numa}. Port '{rxq.port_name}' rx queue {rxq.qid} will be "
                f"assigned to a pmd on numa node {target.numa_id}. "
                "This may lead to reduced performance."
            )
            # A queue pinned to a missing core counts as pinned, as in OVS.
            result.cross_numa = result.cross_numa or rxq.pinned_core is None
        info_log(
            f"Core {target.core_id:2d} on numa node {target.numa_id} assigned port "
            f"'{rxq.port_name}' rx queue {rxq.qid}{_cycles_text(algorithm, hist)}."
        )
        target.rxqs.append(rxq.key)
        target.proc_cycles += hist
        result.assignment[rxq.key] = target.core_id

    result.isolated = {core for core, pmd in by_core.items() if pmd.isolated}
    return result
