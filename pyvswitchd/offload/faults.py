"""Fault injection for the ``dummy`` offload provider: a PMD work callback that raises or is slow.

The commands (``offload-dummy/fault``, ``offload-dummy/fault-show``) are
described for users in docs/fault-injection.md.

Like the netdev faults (:mod:`pyvswitchd.netdev.faults`, whose parsing and
trigger helpers this reuses) the commands exist only with
``--enable-fault-injection``, and only the ``dummy`` provider, a software
simulation used by tests, calls :meth:`OffloadFaults.before_work`.  One
state serves every open ``dummy`` provider, so ``every=N`` counts the
callback's runs over all PMDs together.  ``raise`` fires before the
callback touches a packet, so what it tests is the datapath's handling of
a failing callback (taken off that PMD's work list until its next
reload), not packet loss; ``slow`` blocks the thread inside the callback,
so the time lands in the PMD's offload cycles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from ..control.registry import UNLIMITED, CommandContext, CommandError, CommandRegistry
from ..netdev.faults import (
    DEFAULT_DELAY_US,
    LOG_BURST,
    LOG_RATE,
    MAX_DELAY_US,
    MAX_EVERY,
    TAG,
    Trigger,
    block,
    choice_value,
    int_value,
    parse_assignments,
)
from ..observe.ratelimit import RateLimit

if TYPE_CHECKING:
    from ..observe.coverage import Counter, Coverage
    from ..observe.vlog import Vlog, VlogModule
    from .provider import OffloadProvider

_MODES = ("none", "raise", "slow")
_KEYS = ("work", "every", "delay_us")


class OffloadFault(RuntimeError):
    """What ``work=raise`` raises from the provider's PMD work callback."""


@attrs.frozen
class OffloadFaultSpec:
    work: str = "none"
    every: int = 1
    delay_us: int = DEFAULT_DELAY_US

    def format(self) -> str:
        return f"work={self.work} every={self.every} delay_us={self.delay_us}"


class OffloadFaults:
    """The fault state of the dummy provider(s); :meth:`before_work` runs in the callback."""

    def __init__(
        self,
        log: VlogModule | None = None,
        counter: Counter | None = None,
        *,
        sleep: Callable[[int], None] = block,
    ) -> None:
        self.spec = OffloadFaultSpec()
        self.runs = Trigger()
        self._log = log
        self._counter = counter
        self._sleep = sleep
        self._rl = RateLimit(LOG_RATE, LOG_BURST)

    def set(self, spec: OffloadFaultSpec) -> None:
        if spec.work != self.spec.work or spec.every != self.spec.every:
            self.runs.bursts = 0
        self.spec = spec

    def before_work(self, provider: str, core_id: int) -> None:
        """Called first thing in the work callback of PMD ``core_id``; may raise or block."""
        spec = self.spec
        if spec.work == "none" or not self.runs.hit(spec.every):
            return
        self.runs.record(0)
        if self._counter is not None:
            self._counter.inc()
        if spec.work == "slow":
            if self._log is not None:
                self._log.warn(
                    f"{provider}: work callback held pmd-c{core_id:02d} for {spec.delay_us} us"
                    + TAG,
                    rl=self._rl,
                )
            self._sleep(spec.delay_us)
            return
        if self._log is not None:
            self._log.warn(
                f"{provider}: work callback raising on pmd-c{core_id:02d}" + TAG, rl=self._rl
            )
        raise OffloadFault(f"{provider}: injected work callback fault")

    def format(self, elsewhere: int = 0) -> str:
        """The ``fault-show`` text, with the runs PMD worker processes hit added."""
        return f"{self.spec.format()}\n  work: {self.runs.faults + elsewhere} runs hit\n"


class RemoteOffloadFaults(Protocol):
    """The PMD worker processes' copies of the providers (see netdev.faults.RemoteFaults)."""

    async def set_offload_fault(self, spec: OffloadFaultSpec) -> None: ...
    async def offload_fault_runs(self) -> int: ...


def parse_spec(args: Sequence[str], current: OffloadFaultSpec) -> OffloadFaultSpec:
    what = "dummy"
    spec = current
    for key, text in parse_assignments(what, args, _KEYS).items():
        if key == "work":
            spec = attrs.evolve(spec, work=choice_value(what, key, text, _MODES))
        elif key == "every":
            spec = attrs.evolve(spec, every=int_value(what, key, text, 1, MAX_EVERY))
        else:
            spec = attrs.evolve(spec, delay_us=int_value(what, key, text, 0, MAX_DELAY_US))
    return spec


def register_commands(
    registry: CommandRegistry,
    providers: Callable[[], Sequence[OffloadProvider]],
    vlog: Vlog,
    coverage: Coverage,
    remote: RemoteOffloadFaults | None = None,
) -> None:
    """Register ``offload-dummy/fault`` and ``offload-dummy/fault-show``.

    ``providers`` returns the open providers of the datapath (empty while
    offload is off).
    """
    from .dummy import DummyOffload

    state = OffloadFaults(
        vlog.module("dpif_offload_dummy"), coverage.define("offload_fault_injected")
    )

    async def fault(ctx: CommandContext, args: Sequence[str]) -> str:
        targets = [p for p in providers() if isinstance(p, DummyOffload)]
        if not targets:
            raise CommandError("no dummy offload provider is open (is hw-offload on?)")
        spec = OffloadFaultSpec() if list(args) == ["clear"] else parse_spec(args, state.spec)
        state.set(spec)
        for provider in targets:
            provider.fault = state if spec.work != "none" else None
        if remote is not None:
            await remote.set_offload_fault(spec)
        return spec.format() + "\n"

    async def show(ctx: CommandContext, args: Sequence[str]) -> str:
        return state.format(await remote.offload_fault_runs() if remote is not None else 0)

    registry.register(
        "offload-dummy/fault",
        "clear | [work=none|raise|slow] [every=N] [delay_us=N]",
        1,
        UNLIMITED,
        fault,
        mutating=True,
    )
    registry.register("offload-dummy/fault-show", "", 0, 0, show)
