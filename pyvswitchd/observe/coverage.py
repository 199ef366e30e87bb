"""Coverage counters: cheap named event counts with 5 s / 1 min / 1 h rates.

A component asks the daemon's :class:`Coverage` registry for a
:class:`Counter` once (``counter = coverage.define("netdev_sent")``) and bumps
it on its hot path with ``counter.total += 1`` (or :meth:`Counter.inc` /
:meth:`Counter.add`).  Nothing else happens per event: rates are derived
later, every 5 seconds, by :meth:`Coverage.run`.

Rate bookkeeping follows Open vSwitch's ``lib/coverage.c``:

* The time since start is cut into 5 s slots.  A ring of 720 slot positions
  (one hour) is walked; position ``p`` is minute-slot ``p % 12`` and
  hour-slot ``p // 12``.
* When a run is due, the increase of each counter since the previous run is
  spread evenly over the ``k`` slots that have elapsed (``k`` > 1 when the
  daemon was too busy, or suspended, to run on time); the division remainder
  goes to the last slot.  Each minute-slot holds its slot's count; an
  hour-slot is reset on the first slot of each minute and then accumulates
  the minute, so the hour column includes the current, partial minute.
* The next run is due 5 s after the actual run time, not after the planned
  one, so a late run shifts the schedule instead of bunching runs up.

``coverage/show`` prints, per counter that was ever hit, the count of the
last completed slot divided by 5 s, the sum of the minute-slots over 60 s and
the sum of the hour-slots over 3600 s, and the live total.

Deliberate differences from OVS:

* OVS counts per thread and folds the thread-local counts into the totals at
  most once a second (PMD threads only when a try-lock succeeds), so a total
  can lag by about a second.  pyvswitchd runs on one OS thread, so a
  counter's ``total`` is always current and there is no folding step.
* OVS picks the "last 5 seconds" slot with unsigned arithmetic that, right
  after the slot ring wraps (every hour), reads the slot from 40 s earlier.
  We always read the slot that was filled last.
* The ``hash=`` value is computed from the same inputs as OVS's (the ranking
  of counters by total) but with a different hash function, so the digits
  differ.
* The first run is due 5 s after the registry is created.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from pyvswitchd.control.registry import (
    CommandContext,
    CommandError,
    CommandRegistry,
    Reply,
)

#: Length of one rate slot, in seconds.
RUN_INTERVAL = 5.0
#: Slots per minute-window.
MINUTE_SLOTS = 12
#: Minute-slots per hour-window.
HOUR_SLOTS = 60
#: Slot positions in the ring (one hour of 5 s slots).
RING_SLOTS = MINUTE_SLOTS * HOUR_SLOTS

_HEADER = "Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash={:08x}:"


def _zeros(n: int) -> Callable[[], list[int]]:
    return lambda: [0] * n


@attrs.define(slots=True, eq=False)
class Counter:
    """One named event count.

    ``total`` is the number of events since the daemon started; hot paths
    may update it directly.  The remaining attributes are rate-window state
    owned by :meth:`Coverage.run`; treat them as read-only.

    Counters compare by identity: each name has exactly one counter per
    :class:`Coverage` registry.
    """

    name: str
    total: int = 0
    #: ``total`` as of the previous rate-window run.
    last_total: int = attrs.field(default=0, init=False, repr=False)
    #: Event count of each 5 s slot of the last minute.
    minute_slots: list[int] = attrs.field(factory=_zeros(MINUTE_SLOTS), init=False, repr=False)
    #: Event count of each 1 min slot of the last hour (the current one partial).
    hour_slots: list[int] = attrs.field(factory=_zeros(HOUR_SLOTS), init=False, repr=False)

    def inc(self) -> None:
        """Count one event."""
        self.total += 1

    def add(self, n: int) -> None:
        """Count ``n`` events at once."""
        self.total += n


class Coverage:
    """Explicit registry of coverage counters (no import-time globals).

    ``clock`` returns seconds on a monotonic scale; every time decision is
    taken from it, so tests can drive the rate windows with a fake clock.
    For :meth:`run_periodically` it must be on the same scale as trio's
    clock, or at least advance at the same speed (``time.monotonic`` does).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._counters: dict[str, Counter] = {}
        #: Called before counters are read: other processes' counts (PMD
        #: workers) are folded in there.
        self._refreshers: list[Callable[[], None]] = []
        # Ring position that the next run fills first.
        self._next_slot = 0
        self._due = clock() + RUN_INTERVAL

    # -- registration -----------------------------------------------------

    def define(self, name: str) -> Counter:
        """Return the counter called ``name``, creating it if needed.

        ``coverage/show`` lists counters in the order of their first
        definition, so components that define their counters at start-up
        get a stable listing.
        """
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Counter(name)
        return counter

    def get(self, name: str) -> Counter | None:
        """Return the counter called ``name``, or None if never defined."""
        return self._counters.get(name)

    def counters(self) -> list[Counter]:
        """All counters, in definition order."""
        return list(self._counters.values())

    def add_refresher(self, refresh: Callable[[], None]) -> None:
        """Call ``refresh`` before any report or rate run reads the counters.

        PMD worker processes count in their own process; the datapath folds
        their new events into these counters here, so totals and rates
        include them.
        """
        self._refreshers.append(refresh)

    def refresh(self) -> None:
        for refresh in self._refreshers:
            refresh()

    # -- rate windows -----------------------------------------------------

    @property
    def next_run_time(self) -> float:
        """Clock time at which :meth:`run` will next do any work."""
        return self._due

    def run(self) -> None:
        """Close the elapsed 5 s slot(s) if a run is due; otherwise do nothing.

        Meant to be called often (each main-loop iteration, or by
        :meth:`run_periodically`): when no run is due it costs one clock read.
        """
        now = self._clock()
        if now < self._due:
            return
        self.refresh()
        elapsed = math.floor((now - self._due) / RUN_INTERVAL) + 1
        start = self._next_slot
        for counter in self._counters.values():
            delta = counter.total - counter.last_total
            counter.last_total = counter.total
            _spread(counter, delta, elapsed, start)
        self._next_slot = (start + elapsed) % RING_SLOTS
        self._due = now + RUN_INTERVAL

    async def run_periodically(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Call :meth:`run` whenever it is due, forever.

        Start it with ``nursery.start`` in the daemon's nursery; it reports
        started at once and ends only by cancellation.
        """
        task_status.started()
        while True:
            # Re-read the clock each time: the injected clock and trio's may
            # disagree by a hair, and run() is a no-op until really due.
            delay = self._due - self._clock()
            if delay > 0:
                await trio.sleep(delay)
            else:
                await trio.lowlevel.checkpoint()
            self.run()

    def rates(self, counter: Counter) -> tuple[float, float, float]:
        """Per-second rates of ``counter`` over the last 5 s slot, minute and hour."""
        last = (self._next_slot - 1) % RING_SLOTS % MINUTE_SLOTS
        return (
            counter.minute_slots[last] / RUN_INTERVAL,
            sum(counter.minute_slots) / 60.0,
            sum(counter.hour_slots) / 3600.0,
        )

    # -- reporting --------------------------------------------------------

    def hash(self) -> int:
        """32-bit fingerprint of the counters' ranking, shown as ``hash=``.

        Counters are sorted by total (descending), then name (byte order);
        each run of equal non-zero totals contributes its rank (index of its
        first member) and its members' names, and the number of such groups
        closes the input.  As in OVS, only the ranking matters: two states
        whose counters sort into the same groups share a hash even if the
        totals differ, which is what lets repeated coverage dumps of the
        same "shape" be recognised.
        """
        ranked = sorted(self._counters.values(), key=lambda c: (-c.total, c.name.encode()))
        digest = hashlib.blake2b(digest_size=4)
        groups = 0
        i = 0
        while i < len(ranked) and ranked[i].total > 0:
            groups += 1
            # Tagged, length-prefixed fields keep the encoding unambiguous.
            digest.update(b"R" + i.to_bytes(8, "little"))
            j = i
            while j < len(ranked) and ranked[j].total == ranked[i].total:
                name = ranked[j].name.encode()
                digest.update(b"N" + len(name).to_bytes(8, "little") + name)
                j += 1
            i = j
        digest.update(b"G" + groups.to_bytes(8, "little"))
        return int.from_bytes(digest.digest(), "big")

    def format_show(self) -> str:
        """The ``coverage/show`` text, newline-terminated."""
        lines = [_HEADER.format(self.hash())]
        never_hit = 0
        for counter in self._counters.values():
            if counter.total <= 0:
                never_hit += 1
                continue
            five_s, minute, hour = self.rates(counter)
            lines.append(
                f"{counter.name:<24} {five_s:5.1f}/sec {minute:9.3f}/sec "
                f"{hour:13.4f}/sec   total: {counter.total}"
            )
        lines.append(f"{never_hit} events never hit")
        return "\n".join(lines) + "\n"

    def show_data(self) -> dict[str, Any]:
        """The ``coverage/show`` reply for JSON-mode clients.

        Schema::

            {
              "hash": "8fcb6005",          # same 8 hex digits as the text header
              "counters": [                # counters with total > 0, definition order
                {"name": str, "total": int,
                 "rate_5s": float, "rate_1m": float, "rate_1h": float},  # events/s
                ...
              ],
              "never_hit": int             # counters with total == 0
            }

        Rates are unrounded; the text form rounds them to 1, 3 and 4 decimals.
        """
        hit: list[dict[str, Any]] = []
        for counter in self._counters.values():
            if counter.total > 0:
                five_s, minute, hour = self.rates(counter)
                hit.append(
                    {
                        "name": counter.name,
                        "total": counter.total,
                        "rate_5s": five_s,
                        "rate_1m": minute,
                        "rate_1h": hour,
                    }
                )
        return {
            "hash": f"{self.hash():08x}",
            "counters": hit,
            "never_hit": len(self._counters) - len(hit),
        }

    # -- unixctl ----------------------------------------------------------

    def register_commands(self, registry: CommandRegistry) -> None:
        """Register ``coverage/show`` and ``coverage/read-counter``."""
        registry.register("coverage/show", "", 0, 0, self._cmd_show)
        registry.register("coverage/read-counter", "COUNTER", 1, 1, self._cmd_read_counter)

    def _cmd_show(self, context: CommandContext, args: Sequence[str]) -> Reply:
        self.refresh()
        return Reply.structured(self.format_show(), self.show_data())

    def _cmd_read_counter(self, context: CommandContext, args: Sequence[str]) -> Reply:
        self.refresh()
        counter = self._counters.get(args[0])
        if counter is None:
            raise CommandError("No such counter")
        return Reply.structured(
            f"{counter.total}\n", {"name": counter.name, "total": counter.total}
        )


def _spread(counter: Counter, delta: int, elapsed: int, start: int) -> None:
    """Record ``delta`` events over ``elapsed`` slots beginning at ring position ``start``."""
    portion, remainder = divmod(delta, elapsed)
    minute_slots = counter.minute_slots
    hour_slots = counter.hour_slots
    # Beyond one ring's worth, earlier slots are all overwritten by later
    # ones (each hour-slot is reset at its minute's first slot, which the
    # last RING_SLOTS positions always include), so skip them: a daemon
    # resumed after a day's suspension must not loop 17280 times per counter.
    for j in range(max(0, elapsed - RING_SLOTS), elapsed):
        position = (start + j) % RING_SLOTS
        m, h = position % MINUTE_SLOTS, position // MINUTE_SLOTS
        count = portion + remainder if j == elapsed - 1 else portion
        minute_slots[m] = count
        hour_slots[h] = count if m == 0 else hour_slots[h] + count
