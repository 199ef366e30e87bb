"""``pyappctl top``: a live view of every PMD, from counter deltas.

OVS users measure PMD load by clearing the statistics, waiting and reading
them again; ``top`` never clears anything.  Every interval it reads the
documented JSON form of ``dpif-netdev/pmd-perf-show`` (see docs/json.md),
subtracts the previous reading and shows per-thread rates, plus the busiest
rx queues from ``dpif-netdev/pmd-rxq-show``.  Any tool can do the same.

Usage: ``pyappctl [-t TARGET] top [-i SECONDS] [-n ITERATIONS] [-q QUEUES]``
(``-n 0``: until interrupted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from .client import UnixctlClient

USAGE = "top [-i seconds] [-n iterations] [-q queues]"
_CLEAR = "\x1b[H\x1b[2J"


class TopError(Exception):
    """Bad ``top`` arguments or a failing command; the text says which."""


def parse_args(args: Sequence[str]) -> tuple[float, int, int]:
    """(interval seconds, iterations (0 = forever), rx queues shown)."""
    interval, iterations, queues = 2.0, 0, 10
    i = 0
    try:
        while i < len(args):
            flag = args[i]
            if flag not in ("-i", "-n", "-q") or i + 1 >= len(args):
                raise TopError(f"usage: {USAGE}")
            value = args[i + 1]
            if flag == "-i":
                interval = float(value)
                if not 0.1 <= interval <= 3600:
                    raise ValueError
            elif flag == "-n":
                iterations = int(value)
                if iterations < 0:
                    raise ValueError
            else:
                queues = int(value)
                if queues < 0:
                    raise ValueError
            i += 2
    except ValueError:
        raise TopError(f"invalid value {args[i + 1]!r} for {args[i]}") from None
    return interval, iterations, queues


def _key(thread: Mapping[str, Any]) -> tuple[str, Any]:
    return (thread["thread"], thread["core_id"])


def _delta(new: float | None, old: float | None) -> float:
    if new is None:
        return 0.0
    # A pmd-stats-clear between two readings restarts the counter.
    return new - (old or 0) if old is not None and new >= old else new


def thread_rates(
    new: Mapping[str, Any], old: Mapping[str, Any] | None, seconds: float
) -> dict[str, float]:
    """Per-second rates and shares of one thread between two readings."""
    old = old or {}
    lookups_new, lookups_old = new["lookups"], old.get("lookups", {})

    def d(key: str) -> float:
        return _delta(new.get(key), old.get(key))

    def dl(key: str) -> float:
        return _delta(lookups_new.get(key), lookups_old.get(key))

    ns = seconds * 1e9
    busy = d("busy_cycles")
    rx = d("rx_packets")
    work_new, work_old = new["work"], old.get("work", {})
    return {
        "usage_pct": 100.0 * busy / ns if ns else 0.0,
        "rx_kpps": rx / seconds / 1000,
        "tx_kpps": d("tx_packets") / seconds / 1000,
        "cycles_per_pkt": busy / rx if rx else 0.0,
        "emc_per_s": dl("emc") / seconds,
        "megaflow_per_s": dl("megaflow") / seconds,
        "upcall_per_s": dl("upcall") / seconds,
        "lost_per_s": dl("lost") / seconds,
        "offload_pct": 100.0 * d("offload_cycles") / ns if ns else 0.0,
        "sleep_pct": 100.0 * d("sleep_us") * 1000 / ns if ns else 0.0,
        "deferred_per_s": _delta(work_new.get("deferred"), work_old.get("deferred")) / seconds,
    }


def render(
    threads: Sequence[Mapping[str, Any]],
    previous: Mapping[tuple[str, Any], Mapping[str, Any]],
    seconds: float,
    rxq: Mapping[str, Any] | None,
    queues: int,
) -> str:
    """One frame of the view."""
    lines = [
        f"pyvswitchd PMDs, rates over the last {seconds:.1f} s (no statistics were cleared)",
        "",
        f"{'thread':<14}{'usage%':>7}{'rx kpps':>9}{'tx kpps':>9}{'cyc/pkt':>9}"
        f"{'emc/s':>9}{'mega/s':>9}{'upcall/s':>9}{'lost/s':>8}{'offl%':>7}"
        f"{'sleep%':>7}{'defer/s':>9}",
    ]
    for thread in threads:
        name = "main" if thread["thread"] == "main" else f"pmd c{thread['core_id']}"
        r = thread_rates(thread, previous.get(_key(thread)), seconds)
        lines.append(
            f"{name:<14}{r['usage_pct']:7.1f}{r['rx_kpps']:9.1f}{r['tx_kpps']:9.1f}"
            f"{r['cycles_per_pkt']:9.0f}{r['emc_per_s']:9.0f}{r['megaflow_per_s']:9.0f}"
            f"{r['upcall_per_s']:9.0f}{r['lost_per_s']:8.0f}{r['offload_pct']:7.1f}"
            f"{r['sleep_pct']:7.1f}{r['deferred_per_s']:9.0f}"
        )
    if rxq is not None and queues:
        rows = [
            (q["usage"], pmd["core_id"], q["port"], q["queue_id"])
            for pmd in rxq.get("pmds", [])
            for q in pmd["rxqs"]
            if q["usage"] is not None
        ]
        rows.sort(key=lambda row: -row[0])
        lines += [
            "",
            f"busiest rx queues (last {rxq.get('secs', 60)} s)",
            f"{'port':<16}{'queue':>6}{'core':>6}{'usage%':>8}",
        ]
        lines += [f"{p:<16}{qid:>6}{core:>6}{u:8.1f}" for u, core, p, qid in rows[:queues]]
        if not rows:
            lines.append("(no complete 5 s interval yet)")
    return "\n".join(lines) + "\n"


class Sampler:
    """Readings of one daemon over one connection, turned into frames."""

    def __init__(self, queues: int) -> None:
        self.queues = queues
        self._previous: dict[tuple[str, Any], Mapping[str, Any]] = {}
        self._last = 0.0

    @staticmethod
    def _read(client: UnixctlClient, command: str) -> Any:
        err, result = client.transact(command, [])
        if err is not None:
            raise TopError(err.strip())
        return result

    def start(self, client: UnixctlClient) -> None:
        """Switch ``client``'s connection to JSON and take the first reading."""
        error, _ = client.transact("set-options", ["--format", "json"])
        if error is not None:
            raise TopError(error.strip())
        threads = self._read(client, "dpif-netdev/pmd-perf-show")
        self._previous = {_key(t): t for t in threads}
        self._last = time.monotonic()

    def frame(self, client: UnixctlClient) -> str:
        """The rates since the previous reading (or :meth:`start`)."""
        threads = self._read(client, "dpif-netdev/pmd-perf-show")
        rxq = self._read(client, "dpif-netdev/pmd-rxq-show")
        now = time.monotonic()
        frame = render(threads, self._previous, max(now - self._last, 1e-6), rxq, self.queues)
        self._previous = {_key(t): t for t in threads}
        self._last = now
        return frame


def run_top(
    client: UnixctlClient,
    args: Sequence[str],
    out: TextIO,
    *,
    clear: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print frames until ``-n`` frames were shown; raises TopError on bad input.

    The plain form, for pipes and scripts; a terminal gets
    :func:`pyappctl.top_screen.run_top_screen`.
    """
    interval, iterations, queues = parse_args(args)
    sampler = Sampler(queues)
    sampler.start(client)
    shown = 0
    while iterations == 0 or shown < iterations:
        sleep(interval)
        out.write((_CLEAR if clear else "") + sampler.frame(client))
        out.flush()
        shown += 1
    return 0
