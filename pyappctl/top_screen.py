"""``pyappctl top`` on a terminal: curses, keys, resizing, reconnecting.

The frames are :mod:`pyappctl.top`'s; this module shows them the way
ovs-dpctl-top shows its own, with the standard library's curses: the
screen is redrawn in place, lines are cut at the terminal's width instead
of wrapping, ``q`` quits at once (not at the next refresh), a resize
redraws at the new size, and when the daemon goes away (a restart, an
upgrade) the view says so and connects again through the same target,
which finds the new process by its pidfile.
"""

from __future__ import annotations

import contextlib
import curses
import time
from collections.abc import Callable, Sequence

from .client import ClientError, TargetError, UnixctlClient
from .top import Sampler, TopError, parse_args

_QUIT = frozenset((ord("q"), ord("Q")))


def run_top_screen(
    client: UnixctlClient | None,
    connect: Callable[[], UnixctlClient],
    args: Sequence[str],
) -> int:
    """Show frames until ``q`` (or ``-n`` frames); raises TopError on bad arguments.

    ``client`` is the first connection (None: make one with ``connect``),
    ``connect`` makes a new one after the daemon went away.
    """
    interval, iterations, queues = parse_args(args)
    screen = _Screen(client, connect, interval, iterations, Sampler(queues))
    try:
        return curses.wrapper(screen.run)
    finally:
        screen.close()


class _Screen:
    def __init__(
        self,
        client: UnixctlClient | None,
        connect: Callable[[], UnixctlClient],
        interval: float,
        iterations: int,
        sampler: Sampler,
    ) -> None:
        self.client = client
        self.connect = connect
        self.interval = interval
        self.iterations = iterations
        self.sampler = sampler
        self.started = False
        self.lines = ["connecting..."]
        self.shown = 0

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def run(self, stdscr: curses.window) -> int:
        with contextlib.suppress(curses.error):  # a terminal that cannot hide its cursor
            curses.curs_set(0)
        due = time.monotonic()
        while True:
            if time.monotonic() >= due:
                due = time.monotonic() + self.interval
                self._step()
                self._draw(stdscr)
                if self.iterations and self.shown >= self.iterations:
                    return 0
            stdscr.timeout(max(0, int((due - time.monotonic()) * 1000)))
            key = stdscr.getch()
            if key in _QUIT:
                return 0
            if key == curses.KEY_RESIZE:
                curses.update_lines_cols()
                self._draw(stdscr)

    def _step(self) -> None:
        """One sample, or one connection attempt; failures are shown, not raised."""
        try:
            if self.client is None:
                self.client = self.connect()
                self.started = False
            if not self.started:
                self.sampler.start(self.client)
                self.started = True
                what = "first rates" if self.shown == 0 else "reconnected: next rates"
                self.lines = [f"{what} in {self.interval:g} s (q quits)"]
                return
            self.lines = self.sampler.frame(self.client).splitlines()
            self.shown += 1
        except TopError as exc:
            # E.g. a daemon still starting ("please specify an existing
            # datapath"), or one that is not pyvswitchd: say it, keep trying.
            self.started = False
            self.lines = [
                f"the daemon answered: {exc}; trying again every {self.interval:g} s (q quits)"
            ]
        except (OSError, ClientError, TargetError) as exc:
            self.close()
            reason = exc.reason if isinstance(exc, ClientError) else str(exc)
            self.lines = [
                f"the daemon is not answering ({reason.strip()}): trying again every "
                f"{self.interval:g} s (q quits)",
                "",
                *self.lines[2:],
            ]

    def _draw(self, stdscr: curses.window) -> None:
        stdscr.erase()
        height, width = stdscr.getmaxyx()
        for y, line in enumerate(self.lines[:height]):
            # One column short: writing the bottom-right cell scrolls.
            with contextlib.suppress(curses.error):
                stdscr.addnstr(y, 0, line, max(0, width - 1))
        stdscr.refresh()
