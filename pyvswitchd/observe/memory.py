"""memory/show and the peak-RSS monitor.

Each subsystem that holds a growable collection contributes a reporter
returning ``{name: count}``; ``memory/show`` merges them into OVS's single
line of ``name:value`` pairs sorted by name.  The monitor logs the peak
resident set size once after start-up and again whenever it has grown by
half, as ovs-vswitchd does, so a leak shows in the log without polling.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Sequence

import trio

from ..control.registry import CommandContext, CommandRegistry, Reply
from .vlog import Vlog

Reporter = Callable[[], dict[str, int]]

#: Seconds after start-up at which the first peak-RSS line is logged (OVS: 10 s).
FIRST_REPORT_SECS = 10.0
#: Growth factor of the peak RSS that earns a new log line (OVS: 1.5).
GROWTH_FACTOR = 1.5


def peak_rss_kb() -> int:
    # ru_maxrss is in kilobytes on Linux.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Memory:
    """Registry of memory reporters plus the monitor task."""

    def __init__(self, vlog: Vlog, rss: Callable[[], int] = peak_rss_kb) -> None:
        self._reporters: list[Reporter] = []
        self._log = vlog.module("memory")
        self._rss = rss

    def add_reporter(self, reporter: Reporter) -> None:
        self._reporters.append(reporter)

    def usage(self) -> dict[str, int]:
        merged: dict[str, int] = {}
        for reporter in self._reporters:
            merged.update(reporter())
        return dict(sorted(merged.items()))

    def format_show(self) -> str:
        return " ".join(f"{k}:{v}" for k, v in self.usage().items()) + "\n"

    def register_commands(self, registry: CommandRegistry) -> None:
        def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
            usage = self.usage()
            return Reply.structured(" ".join(f"{k}:{v}" for k, v in usage.items()) + "\n", usage)

        registry.register("memory/show", "", 0, 0, show)

    async def monitor(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Log peak RSS after FIRST_REPORT_SECS, then on every 50 % growth."""
        start = trio.current_time()
        task_status.started()
        await trio.sleep(FIRST_REPORT_SECS)
        last = self._rss()
        self._log.info(
            f"{last} kB peak resident set size after {trio.current_time() - start:.1f} seconds"
        )
        last_time = trio.current_time()
        while True:
            await trio.sleep(FIRST_REPORT_SECS)
            now_kb = self._rss()
            if now_kb >= last * GROWTH_FACTOR:
                now = trio.current_time()
                self._log.info(
                    f"peak resident set size grew {100 * (now_kb - last) // last}% in last "
                    f"{now - last_time:.1f} seconds, from {last} kB to {now_kb} kB"
                )
                self._log.info(self.format_show().rstrip("\n"))
                last, last_time = now_kb, now
