"""Fault injection for the dummy netdev types: failing, stalling, slow and vanishing devices.

The commands (``netdev-dummy/fault``, ``netdev-dummy/fault-show``), the
modes and what each one costs in which counter are described for users in
docs/fault-injection.md.

Tests use faults to show that the daemon keeps serving and accounts for
every packet when a device misbehaves, so each mode is exact: ``every=N``
hits a predictable burst, and every packet a fault costs is counted by
the hook that cost it (in the device's stats), except in ``raise`` mode,
which stands for a buggy provider and leaves the counting to the
datapath.  The commands are registered only with
``--enable-fault-injection``, and only :class:`~.dummy.DummyNetdev` calls
the hooks (:meth:`NetdevFaults.allow_recv`, :meth:`NetdevFaults.on_send`),
and only while its ``fault`` is set: an unfaulted device pays one
``is None`` test per call.

``slow`` blocks the thread with ``time.sleep`` on purpose: it stands for a
driver call that does not yield.  Log lines are rate-limited per device
and direction (one a minute after the first) and end in :data:`TAG`.
The parsing helpers here are shared with :mod:`pyvswitchd.offload.faults`.
"""

from __future__ import annotations

import enum
import errno
import os
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs

from ..control.registry import UNLIMITED, CommandContext, CommandError, CommandRegistry
from ..observe.ratelimit import RateLimit
from ..odp.int_parse import bounded_int
from .provider import EINPROGRESS, Netdev

if TYPE_CHECKING:
    from ..observe.coverage import Counter, Coverage
    from ..observe.vlog import Vlog, VlogModule
    from ..odp.packet import Packet
    from .dummy import DummyNetdev

#: Every fault log line ends with this, so nobody mistakes one for a real failure.
TAG = " [fault injection]"
#: Errno of ``error`` mode (what a failing driver reports).
FAULT_ERRNO = errno.EIO
#: Errno of a vanished device.
VANISHED_ERRNO = errno.ENODEV
#: Fault log lines per minute and burst, per device and direction: the first
#: hit is logged at once, then one line a minute at most.
LOG_RATE = 1
LOG_BURST = 1
#: Bounds of the numeric keys.
MAX_EVERY = 1_000_000
MAX_DELAY_US = 10_000_000
DEFAULT_DELAY_US = 1000


class NetdevFault(RuntimeError):
    """What ``raise`` mode raises: a buggy provider, on purpose."""


class FaultMode(enum.Enum):
    NONE = "none"
    ERROR = "error"
    STALL = "stall"
    SLOW = "slow"
    RAISE = "raise"


# -- argument parsing, shared with the offload faults -------------------------------


def parse_assignments(what: str, args: Sequence[str], keys: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` words as a dict; CommandError naming the first bad or unknown one."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise CommandError(f'{what}: "{arg}": expected KEY=VALUE')
        if key not in keys:
            raise CommandError(
                f'{what}: unknown fault option "{key}" (value "{value}"; known: {", ".join(keys)})'
            )
        out[key] = value
    return out


def int_value(what: str, key: str, text: str, low: int, high: int) -> int:
    value = bounded_int(text, low, high)
    if value is None:
        raise CommandError(f'{what}: bad {key} "{text}" (expected an integer {low}..{high})')
    return value


def choice_value(what: str, key: str, text: str, choices: Sequence[str]) -> str:
    if text not in choices:
        expected = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise CommandError(f'{what}: bad {key} "{text}" (expected {expected})')
    return text


def bool_value(what: str, key: str, text: str) -> bool:
    return choice_value(what, key, text, ("true", "false")) == "true"


def block(delay_us: int) -> None:
    """Hold the daemon's only thread, as a blocking system call would."""
    # Deliberately not trio.sleep: the point is a call that does not yield.
    time.sleep(delay_us / 1e6)


@attrs.define
class Trigger:
    """Counts bursts in one direction and says which ones a fault hits (every N-th)."""

    bursts: int = 0
    faults: int = 0
    packets: int = 0

    def hit(self, every: int) -> bool:
        self.bursts += 1
        return self.bursts % every == 0

    def record(self, packets: int) -> None:
        self.faults += 1
        self.packets += packets


# -- the netdev side ------------------------------------------------------------------


@attrs.frozen
class FaultSpec:
    """One device's fault setting."""

    recv: FaultMode = FaultMode.NONE
    send: FaultMode = FaultMode.NONE
    every: int = 1
    delay_us: int = DEFAULT_DELAY_US
    vanish: bool = False

    def format(self) -> str:
        return (
            f"recv={self.recv.value} send={self.send.value} every={self.every} "
            f"delay_us={self.delay_us} vanish={'true' if self.vanish else 'false'}"
        )


_KEYS = ("recv", "send", "every", "delay_us", "vanish")
_MODES = tuple(m.value for m in FaultMode)


def parse_spec(name: str, args: Sequence[str], current: FaultSpec) -> FaultSpec:
    """``current`` with ``KEY=VALUE`` words applied; CommandError on a bad one."""
    given = parse_assignments(name, args, _KEYS)
    spec = current
    for key, text in given.items():
        if key == "recv":
            spec = attrs.evolve(spec, recv=FaultMode(choice_value(name, key, text, _MODES)))
        elif key == "send":
            spec = attrs.evolve(spec, send=FaultMode(choice_value(name, key, text, _MODES)))
        elif key == "every":
            spec = attrs.evolve(spec, every=int_value(name, key, text, 1, MAX_EVERY))
        elif key == "delay_us":
            spec = attrs.evolve(spec, delay_us=int_value(name, key, text, 0, MAX_DELAY_US))
        else:
            spec = attrs.evolve(spec, vanish=bool_value(name, key, text))
    return spec


class NetdevFaults:
    """The fault state of one dummy device; its hooks are called from the data path.

    A new setting restarts the burst numbering of the directions whose mode
    changed, so ``every=N`` counts from the command that set it.
    """

    def __init__(
        self,
        name: str,
        log: VlogModule | None = None,
        counter: Counter | None = None,
        *,
        sleep: Callable[[int], None] = block,
        announce: bool = True,
    ) -> None:
        """``announce``: log a device vanishing and coming back (a PMD worker's
        copy of the state does not: the daemon's copy already said so)."""
        self.name = name
        self._announce = announce
        self.spec = FaultSpec()
        self.rx = Trigger()
        self.tx = Trigger()
        self._log = log
        self._counter = counter
        self._sleep = sleep
        self._rl_rx = RateLimit(LOG_RATE, LOG_BURST)
        self._rl_tx = RateLimit(LOG_RATE, LOG_BURST)

    @property
    def vanished(self) -> bool:
        return self.spec.vanish

    @property
    def blocks_recv(self) -> bool:
        """Whether no receive can succeed now (so the device is never readable)."""
        s = self.spec
        return s.vanish or (s.recv is FaultMode.STALL and s.every == 1)

    @property
    def active(self) -> bool:
        s = self.spec
        return s.vanish or s.recv is not FaultMode.NONE or s.send is not FaultMode.NONE

    def set(self, spec: FaultSpec) -> None:
        old, self.spec = self.spec, spec
        if spec.recv is not old.recv or spec.every != old.every:
            self.rx.bursts = 0
        if spec.send is not old.send or spec.every != old.every:
            self.tx.bursts = 0
        if spec.vanish != old.vanish and self._log is not None and self._announce:
            if spec.vanish:
                self._log.warn(f"{self.name}: device vanished ({os.strerror(VANISHED_ERRNO)}){TAG}")
            else:
                self._log.info(f"{self.name}: device is back{TAG}")

    def _warn(self, rl: RateLimit, msg: str) -> None:
        if self._counter is not None:
            self._counter.inc()
        if self._log is not None:
            self._log.warn(msg + TAG, rl=rl)

    # -- hooks (DummyNetdev calls these only while its ``fault`` is set) ------------

    def allow_recv(self, netdev: DummyNetdev, qid: int) -> bool:
        """Called by ``recv`` when frames are queued; False: return none this time."""
        spec = self.spec
        if spec.vanish:
            return False
        mode = spec.recv
        if mode is FaultMode.NONE or not self.rx.hit(spec.every):
            return True
        if mode is FaultMode.ERROR:
            lost = netdev.discard(qid)
            self.rx.record(lost)
            self._warn(
                self._rl_rx,
                f"error receiving data from {self.name}: {os.strerror(FAULT_ERRNO)} "
                f"({lost} packets lost)",
            )
            return False
        # Stalled or slowed frames are not lost: they stay queued or go through.
        self.rx.record(0)
        if mode is FaultMode.STALL:
            self._warn(self._rl_rx, f"{self.name}: receive stalled on queue {qid}")
            return False
        if mode is FaultMode.SLOW:
            self._warn(self._rl_rx, f"{self.name}: receive held the thread for {spec.delay_us} us")
            self._sleep(spec.delay_us)
            return True
        self._warn(self._rl_rx, f"{self.name}: receive raising NetdevFault")
        raise NetdevFault(f"{self.name}: injected receive fault")

    def on_send(self, netdev: DummyNetdev, qid: int, batch: list[Packet]) -> int | None:
        """Called by ``send`` for a non-empty batch: None to transmit, else its return code.

        Whatever happens to the batch is accounted in ``netdev.stats`` here.
        """
        spec = self.spec
        n = len(batch)
        if spec.vanish:
            netdev.stats.tx_errors += n
            self.tx.record(n)
            self._warn(
                self._rl_tx, f"error sending packets on {self.name}: {os.strerror(VANISHED_ERRNO)}"
            )
            return VANISHED_ERRNO
        mode = spec.send
        if mode is FaultMode.NONE or not self.tx.hit(spec.every):
            return None
        if mode is FaultMode.SLOW:
            self.tx.record(0)
            self._warn(self._rl_tx, f"{self.name}: send held the thread for {spec.delay_us} us")
            self._sleep(spec.delay_us)
            return None
        self.tx.record(n)
        if mode is FaultMode.STALL:
            netdev.hold(qid, batch)
            self._warn(self._rl_tx, f"{self.name}: transmit queue {qid} stalled")
            return EINPROGRESS
        if mode is FaultMode.ERROR:
            netdev.stats.tx_errors += n
            self._warn(
                self._rl_tx, f"error sending packets on {self.name}: {os.strerror(FAULT_ERRNO)}"
            )
            return FAULT_ERRNO
        # A provider bug counts nothing: accounting for the batch is the caller's job.
        self._warn(self._rl_tx, f"{self.name}: send raising NetdevFault")
        raise NetdevFault(f"{self.name}: injected send fault")

    def counts(self) -> FaultCounts:
        """(recv bursts hit, recv packets, send bursts hit, send packets)."""
        return (self.rx.faults, self.rx.packets, self.tx.faults, self.tx.packets)

    def format(self, elsewhere: FaultCounts = (0, 0, 0, 0)) -> str:
        """The ``fault-show`` text, with what PMD worker processes counted added."""
        rf, rp, tf, tp = (a + b for a, b in zip(self.counts(), elsewhere, strict=True))
        return (
            f"{self.name}: {self.spec.format()}\n"
            f"  recv: {rf} bursts hit, {rp} packets\n"
            f"  send: {tf} bursts hit, {tp} packets\n"
        )


#: What a device's faults did: recv bursts hit, recv packets, send bursts hit, send packets.
FaultCounts = tuple[int, int, int, int]


class RemoteFaults(Protocol):
    """Where fault settings go besides the daemon's devices: its PMD worker processes.

    A PMD worker polls its own side of a dummy device and runs its own copy
    of the offload providers, so a fault must reach it to bite, and what it
    hit is counted there.
    """

    async def set_netdev_fault(self, name: str, spec: FaultSpec) -> None: ...
    async def netdev_fault_counts(self, name: str) -> FaultCounts: ...


def register_commands(
    registry: CommandRegistry,
    find_port: Callable[[str], Netdev | None],
    vlog: Vlog,
    coverage: Coverage,
    remote: RemoteFaults | None = None,
) -> None:
    """Register ``netdev-dummy/fault`` and ``netdev-dummy/fault-show``."""
    from .dummy import DummyNetdev

    log = vlog.module("netdev_dummy")
    counter = coverage.define("netdev_fault_injected")
    # Every device that ever had a fault, for fault-show (also once cleared);
    # a device re-created under the same name starts afresh.
    known: dict[str, NetdevFaults] = {}
    owners: dict[str, weakref.ref[DummyNetdev]] = {}

    async def fault(ctx: CommandContext, args: Sequence[str]) -> str:
        name = args[0]
        netdev = find_port(name)
        if not isinstance(netdev, DummyNetdev):
            raise CommandError("no such dummy netdev")
        state = netdev.fault
        if state is None:
            owner = owners.get(name)
            state = known.get(name)
            if state is None or owner is None or owner() is not netdev:
                state = NetdevFaults(name, log, counter)
                owners[name] = weakref.ref(netdev)
        if list(args[1:]) == ["clear"]:
            state.set(FaultSpec())
        else:
            state.set(parse_spec(name, args[1:], state.spec))
        netdev.set_fault(state if state.active else None)
        known[name] = state
        if remote is not None:
            await remote.set_netdev_fault(name, state.spec)
        return f"{name}: {state.spec.format()}\n"

    async def show(ctx: CommandContext, args: Sequence[str]) -> str:
        if args and args[0] not in known:
            raise CommandError(f"{args[0]}: no fault was ever set")
        names = args[:1] or sorted(known)
        out = []
        for n in names:
            elsewhere = await remote.netdev_fault_counts(n) if remote is not None else (0, 0, 0, 0)
            out.append(known[n].format(elsewhere))
        return "".join(out)

    registry.register(
        "netdev-dummy/fault",
        "name clear | name [recv=MODE] [send=MODE] [every=N] [delay_us=N] [vanish=true|false]",
        1,
        UNLIMITED,
        fault,
        mutating=True,
    )
    registry.register("netdev-dummy/fault-show", "[name]", 0, 1, show)
