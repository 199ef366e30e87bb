"""Tests for pyvswitchd.datapath.clock: time/stop and time/warp, and what they drive."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import trio

from pyvswitchd.control.registry import CommandContext, CommandError, CommandRegistry
from pyvswitchd.datapath.clock import Clock, ClockState, TimeCommands
from pyvswitchd.datapath.perf import Stat
from tests.dp_harness import running_datapath

LIST_COMMANDS = Path(__file__).resolve().parents[1] / "golden" / "list-commands.out"
ICMP = (
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


class Source:
    """A settable CLOCK_MONOTONIC, ns."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def test_untouched_clock_follows_its_source() -> None:
    src = Source()
    clock = Clock(src)
    assert (clock.ns(), clock.ms(), clock.seconds()) == (10**9, 1000, 1.0)
    src.now += 5_000_000
    assert clock.ms() == 1005
    assert clock.state == ClockState()


def test_stop_freezes_and_warp_adds() -> None:
    src = Source()
    clock = Clock(src)
    clock.warp(100)  # running and warped: still ticks
    src.now += 1_000_000
    assert clock.ms() == 1101
    clock.stop()
    src.now += 7_000_000_000
    assert clock.ms() == 1101  # stopped
    clock.stop()  # a second stop keeps the first stop's time
    assert clock.ms() == 1101
    clock.warp(2000)
    assert clock.ms() == 3101
    assert clock.state == ClockState(stopped_ns=1_001_000_000, warp_ns=2_100_000_000)


def test_seconds_is_time_monotonic_until_stopped_or_warped() -> None:
    clock = Clock()
    assert clock.seconds is time.monotonic  # no detour on the packet path
    clock.warp(1500)
    assert clock.seconds is not time.monotonic
    assert 1.49 < clock.seconds() - time.monotonic() < 1.51
    clock.set_state(ClockState())
    assert clock.seconds is time.monotonic


def test_state_carries_the_time_to_another_clock() -> None:
    src = Source()
    daemon, worker = Clock(src), Clock(src)
    daemon.stop()
    daemon.warp(600_000)
    src.now += 3_000_000_000
    worker.set_state(daemon.state)
    assert worker.ns() == daemon.ns() == 601_000_000_000


class Recorder:
    """The ``changed`` hook: the clock's time at every call."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.seen: list[int] = []

    async def __call__(self) -> None:
        self.seen.append(self.clock.ms())


def commands(src: Source | None = None) -> tuple[Clock, Recorder, CommandRegistry]:
    clock = Clock(src or Source())
    clock.stop()
    recorder = Recorder(clock)
    registry = CommandRegistry()
    TimeCommands(clock, recorder).register(registry)
    return clock, recorder, registry


async def call(registry: CommandRegistry, *args: str) -> str:
    reply = await registry.invoke(CommandContext(name=args[0]), list(args[1:]))
    return reply.text


@pytest.mark.parametrize(
    ("args", "steps"),
    [
        (("100",), [1100]),
        (("0", "100"), [1100]),  # LARGE_MSECS 0: one step of MSECS
        (("25000", "10000"), [11000, 21000, 26000]),  # whole steps, then the rest
        (("500", "2000"), [1500]),  # pmd.at's "time/warp 500 2000" warps 500
        (("600000", "10000"), [1000 + 10000 * i for i in range(1, 61)]),
    ],
)
async def test_warp_steps_like_ovs(
    args: tuple[str, ...], steps: list[int], autojump_clock: trio.abc.Clock
) -> None:
    clock, recorder, registry = commands()
    assert await call(registry, "time/warp", *args) == "warped"
    assert recorder.seen == steps
    assert clock.ms() == steps[-1]


@pytest.mark.parametrize("args", [("0",), ("-5",), ("x",), ("-1", "10"), ("100", "0")])
async def test_bad_warp_is_refused(args: tuple[str, ...]) -> None:
    clock, recorder, registry = commands()
    with pytest.raises(CommandError, match=r"^invalid MSECS$"):
        await call(registry, "time/warp", *args)
    assert recorder.seen == [] and clock.ms() == 1000


async def test_one_warp_at_a_time(autojump_clock: trio.abc.Clock) -> None:
    clock, _, registry = commands()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, registry, "time/warp", "100000", "1000")
        await trio.sleep(0.05)  # the long warp is under way
        with pytest.raises(CommandError, match=r"^A previous warp in progress$"):
            await call(registry, "time/warp", "5")
    assert clock.ms() == 101_000
    assert await call(registry, "time/warp", "5") == "warped"


async def test_stop_replies_nothing() -> None:
    src = Source()
    clock, recorder, registry = commands(src)
    assert await call(registry, "time/stop") == ""
    src.now += 10**9
    assert clock.ms() == 1000 and recorder.seen == [1000]


def test_usage_matches_ovs() -> None:
    listed = LIST_COMMANDS.read_text().splitlines()
    _, _, registry = commands()
    for name in ("time/stop", "time/warp"):
        command = registry.get(name)
        assert command is not None and command.mutating
        assert f"  {name:<23} {command.usage}".rstrip() in [line.rstrip() for line in listed]


# -- what the warped clock drives, on a datapath in this process -----------------------

ONE_PORT = """
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
{extra}
[[bridge]]
name = "br0"
[[bridge.port]]
name = "p1"
type = "dummy-pmd"
[[bridge.port]]
name = "p2"
type = "dummy-pmd"
"""


def tx(h, name: str) -> int:  # type: ignore[no-untyped-def]
    return h.dp.port_by_name(name).netdev.stats.tx_packets  # type: ignore[no-any-return]


async def test_warp_closes_pmd_measurement_intervals() -> None:
    async with running_datapath(ONE_PORT.format(extra="")) as h:
        pmd = h.dp.pmds[0]
        await trio.sleep(0.1)
        assert pmd.busy_idx == 0  # a 5 s interval has not passed
        # The PMD closes its interval as the warp happens, not a thousand
        # iterations later, and one per 5 s step of a large warp.
        assert await h.call("time/warp", "6000") == "warped"
        assert pmd.busy_idx == 1
        assert await h.call("time/warp", "20000", "5000") == "warped"
        assert pmd.busy_idx == 5
        assert pmd.intrvl_cycles > 0  # real cycles between two stores


async def test_stopped_clock_shows_flows_used_now_and_warp_expires_them() -> None:
    async with running_datapath(ONE_PORT.format(extra="max-idle = 10000")) as h:
        await h.call("time/stop")
        for n in (1, 2):
            await h.call("netdev-dummy/receive", "p1", ICMP)
            await h.wait_for(lambda n=n: tx(h, "p2") == n)  # type: ignore[misc]
        # Time stands still: the flow was used "0.000s" ago, whatever the delay.
        await trio.sleep(0.05)
        assert re.search(r" packets:1, bytes:106, used:0\.000s,", await h.call("dpctl/dump-flows"))
        await h.call("time/warp", "5000")
        assert " used:5.000s," in await h.call("dpctl/dump-flows")
        # Past max-idle: the next revalidator pass removes it, well before 10 s.
        await h.call("time/warp", "6000")
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 0, limit=3)
        assert await h.call("dpctl/dump-flows") == ""
        expired = h.coverage.get("revalidate_flow_expired")
        assert expired is not None and expired.total == 1


async def test_warp_ages_mac_entries() -> None:
    async with running_datapath(ONE_PORT.format(extra="")) as h:
        await h.call("netdev-dummy/receive", "p1", ICMP)
        await h.wait_for(lambda: tx(h, "p2") == 1)
        assert "50:54:00:00:00:05" in await h.call("fdb/show", "br0")
        await h.call("time/warp", "301000")  # mac-aging-time: 300 s
        with trio.fail_after(3):
            while "50:54:00:00:00:05" in await h.call("fdb/show", "br0"):  # noqa: ASYNC110
                await trio.sleep(0.05)


async def test_warp_drives_auto_load_balance() -> None:
    """alb.at 'ALB - min num PMD/RxQ', first step: one PMD, two rx queues."""
    text = ONE_PORT.format(extra="pmd-auto-lb = true\npmd-auto-lb-load-threshold = 0").replace(
        'name = "p1"\ntype = "dummy-pmd"',
        'name = "p1"\ntype = "dummy-pmd"\noptions = { n_rxq = 2 }',
    )
    async with running_datapath(text, debug=True) as h:
        assert await h.call("time/warp", "600000", "10000") == "warped"
        await h.wait_for(
            lambda: (
                "PMD auto load balance nothing to do, not enough non-isolated PMDs or RxQs."
                in h.log_lines()
            ),
            limit=5,
        )
        assert h.dp.pmds[0].perf.get(Stat.RECV) == 0
