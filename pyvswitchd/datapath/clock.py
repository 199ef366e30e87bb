"""The datapath's monotonic clock, which tests may stop and warp.

OVS's own test suite drives time with two unixctl commands of its
``timeval`` module, and so does ours:

* ``time/stop`` freezes the monotonic clock where it is;
* ``time/warp MSECS`` moves it forward by MSECS at once;
  ``time/warp LARGE_MSECS MSECS`` moves it forward by LARGE_MSECS, MSECS
  at a time, pausing after each step so that the PMDs and the main task see
  every step (reply ``warped`` once the last step is done).

A warped clock keeps running at the normal rate unless it was stopped too.
The wall clock (log time stamps, ``Time:`` of ``pmd-perf-show``) never
moves.  Everything of the datapath that OVS times on its monotonic clock
reads this one: flows' ``used`` times and their expiry after
``max-idle``, MAC learning's ages, the auto load balance timer, and each
PMD's 5 s measurement intervals (pmd-rxq-show's and auto load balance's)
and classifier re-ranking.  Cycle counts stay real: an interval's load is
the CPU it really took.

``CLOCK_MONOTONIC`` is the same in every process of the machine, so a
:class:`ClockState` (where the clock stopped, how far it was warped) is all
a PMD worker needs to read the daemon's time; workers get it with their
knobs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from ..control.registry import CommandContext, CommandError, CommandRegistry

#: Pause after each step of a large warp, s (OVS's timewarp pauses 10 ms).
WARP_STEP_PAUSE = 0.01


@attrs.frozen
class ClockState:
    """What makes a :class:`Clock` differ from ``CLOCK_MONOTONIC``."""

    #: The ``CLOCK_MONOTONIC`` reading (ns) the clock stopped at; None: running.
    stopped_ns: int | None = None
    #: How far it was warped forward, ns.
    warp_ns: int = 0


class Clock:
    """A monotonic clock that ``time/stop`` and ``time/warp`` act on."""

    def __init__(self, source: Callable[[], int] = time.monotonic_ns) -> None:
        self._source = source
        self._stopped_ns: int | None = None
        self._warp_ns = 0
        #: The time in seconds, on ``time.monotonic()``'s scale.  Read per
        #: received batch (flows' ``used``): while the clock is untouched it
        #: is ``time.monotonic`` itself, the same clock without the detour.
        #: So call it through the clock, ``clock.seconds()``: a reference
        #: kept to the function would miss a later stop or warp.
        self.seconds: Callable[[], float] = self._seconds
        self._changed()

    def ns(self) -> int:
        stopped = self._stopped_ns
        return (self._source() if stopped is None else stopped) + self._warp_ns

    def _seconds(self) -> float:
        return self.ns() / 1e9

    def ms(self) -> int:
        return self.ns() // 1_000_000

    @property
    def state(self) -> ClockState:
        return ClockState(self._stopped_ns, self._warp_ns)

    def set_state(self, state: ClockState) -> None:
        """Adopt another clock's state (a PMD worker, the daemon's)."""
        self._stopped_ns = state.stopped_ns
        self._warp_ns = state.warp_ns
        self._changed()

    def stop(self) -> None:
        if self._stopped_ns is None:
            self._stopped_ns = self._source()
            self._changed()

    def warp(self, ms: int) -> None:
        self._warp_ns += ms * 1_000_000
        self._changed()

    def _changed(self) -> None:
        untouched = (
            self._stopped_ns is None and not self._warp_ns and self._source is time.monotonic_ns
        )
        self.seconds = time.monotonic if untouched else self._seconds


def _leading_int(text: str) -> int:
    """A number as C's ``atoll`` reads it: leading digits, else 0."""
    text = text.lstrip()
    end = 1 if text[:1] in ("-", "+") else 0
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0


class TimeCommands:
    """``time/stop`` and ``time/warp`` on ``clock``.

    ``changed`` is awaited after every change, before the command goes on:
    it hands the new state to whoever keeps a copy (PMD workers).
    """

    def __init__(self, clock: Clock, changed: Callable[[], Awaitable[None]]) -> None:
        self._clock = clock
        self._changed = changed
        self._warping = False

    def register(self, registry: CommandRegistry) -> None:
        registry.register("time/stop", "", 0, 0, self.stop, mutating=True)
        registry.register("time/warp", "[large_msecs] msecs", 1, 2, self.warp, mutating=True)

    async def stop(self, ctx: CommandContext, args: Sequence[str]) -> str:
        self._clock.stop()
        await self._changed()
        return ""

    async def warp(self, ctx: CommandContext, args: Sequence[str]) -> str:
        total = _leading_int(args[0]) if len(args) > 1 else 0
        step = _leading_int(args[-1])
        if step <= 0 or total < 0:
            raise CommandError("invalid MSECS")
        if self._warping:
            raise CommandError("A previous warp in progress")
        self._warping = True
        try:
            while True:
                # As OVS: whole steps while they fit, then the rest; a lone
                # MSECS (or LARGE_MSECS 0) is one step of MSECS.
                advance = step if total == 0 or total >= step else total
                total = max(total - step, 0)
                self._clock.warp(advance)
                await self._changed()
                if total == 0:
                    return "warped"
                await trio.sleep(WARP_STEP_PAUSE)
        finally:
            self._warping = False
