"""In-process datapath harness: a real Datapath with PMD tasks under trio.

Scenario tests (OVS's tests/pmd.at and alb.at, redone) build one from a
TOML snippet, drive it through the same unixctl commands users call, and
read the log it wrote.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from pyvswitchd import config
from pyvswitchd.control.registry import CommandContext, CommandError, CommandRegistry
from pyvswitchd.datapath import commands
from pyvswitchd.datapath.dp import Datapath
from pyvswitchd.netdev import dummy
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog


class Harness:
    def __init__(
        self, dp: Datapath, registry: CommandRegistry, log: io.StringIO, coverage: Coverage
    ) -> None:
        self.dp = dp
        self.registry = registry
        self._log = log
        self.coverage = coverage

    async def call(self, command: str, *args: str) -> str:
        reply = await self.registry.invoke(CommandContext(name=command), list(args))
        return reply.text

    async def call_error(self, command: str, *args: str) -> str:
        try:
            await self.registry.invoke(CommandContext(name=command), list(args))
        except CommandError as exc:
            return str(exc)
        raise AssertionError(f"{command} {args} succeeded")

    async def reconfig(self, text: str) -> None:
        await self.dp.apply_config(config.loads(text))

    def log(self) -> str:
        return self._log.getvalue()

    def log_lines(self, module: str = "dpif_netdev") -> list[str]:
        """Messages (the text after the level) logged by ``module``."""
        out = []
        for line in self.log().splitlines():
            parts = line.split("|", 4)
            # The module column carries "(thread)" for lines logged by PMD tasks.
            if len(parts) == 5 and parts[2].split("(")[0] == module:
                out.append(parts[4])
        return out

    async def wait_for(self, predicate, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        # The state is owned by PMD tasks that signal nothing: poll it.
        with trio.fail_after(limit):
            while not predicate():  # noqa: ASYNC110
                await trio.sleep(0.01)

    def dp_dump(self) -> str:
        """Synchronous dpctl/dump-flows text (for wait_for predicates)."""
        from pyvswitchd.datapath.flow_commands import format_flow_line

        now = self.dp.clock.seconds()
        return "".join(
            format_flow_line(self.dp, f, now, verbose=False, names=False) + "\n"
            for pmd in self.dp.sorted_pmds()
            for f in pmd.flow_table
        )

    def rxq_layout(self) -> dict[int, list[tuple[str, int]]]:
        """core -> [(port, qid)] as the PMDs actually poll them."""
        return {
            core: sorted((r.port.name, r.qid) for r in pmd.poll_list)
            for core, pmd in sorted(self.dp.pmds.items())
        }


@asynccontextmanager
async def running_datapath(
    text: str,
    *,
    debug: bool = False,
    vlog_spec: str | None = None,
    pmd_processes: bool = False,
) -> AsyncIterator[Harness]:
    stream = io.StringIO()
    vlog = Vlog("test", console=stream, syslog_method="null")
    coverage = Coverage()
    registry = CommandRegistry()
    dp = Datapath(vlog, coverage, default_registry(), pmd_processes=pmd_processes)
    commands.register_commands(dp, registry)
    dummy.register_commands(registry, dp.netdev_by_name)
    if debug:
        vlog.set_levels_from_string("dpif_netdev:console:dbg")
    if vlog_spec:
        vlog.module(vlog_spec.split(":")[0])  # modules of not-yet-opened parts too
        vlog.set_levels_from_string(vlog_spec)
    async with trio.open_nursery() as nursery:
        await nursery.start(dp.run)
        await dp.apply_config(config.loads(text))
        try:
            yield Harness(dp, registry, stream, coverage)
        finally:
            await dp.shutdown()
            nursery.cancel_scope.cancel()
