"""The datapath's main task: polls the non-PMD ports, and sleeps when they are idle."""

from __future__ import annotations

import time

import pytest
import trio

from pyvswitchd.datapath import dp as dp_module
from pyvswitchd.netdev.dummy import DummyNetdev

from ..dp_harness import running_datapath

CONFIG = (
    '[other_config]\npmd-cpu-mask = "0x1"\n'
    '[[bridge]]\nname = "br0"\n'
    '[[bridge.port]]\nname = "p1"\ntype = "dummy"\n'
    '[[bridge.port]]\nname = "p2"\ntype = "dummy"\n'
)
FRAME = bytes.fromhex("ffffffffffff02000000000188b5") + bytes(50)


async def forwarding_time(src: DummyNetdev, dst: DummyNetdev) -> float:
    """Seconds from injecting a broadcast frame on ``src`` until ``dst`` sent it."""
    before = dst.stats.tx_packets
    t0 = time.monotonic()
    src.inject([FRAME])
    with trio.fail_after(1):
        while dst.stats.tx_packets == before:  # noqa: ASYNC110
            await trio.sleep(0.001)
    return time.monotonic() - t0


async def test_main_task_sleeps_until_a_port_has_packets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iterations = 0
    real = dp_module.Datapath._main_iteration

    def counting(self: dp_module.Datapath) -> None:
        nonlocal iterations
        iterations += 1
        real(self)

    monkeypatch.setattr(dp_module.Datapath, "_main_iteration", counting)
    async with running_datapath(CONFIG) as h:
        p1, p2 = (h.dp.port_by_name(n).netdev for n in ("p1", "p2"))
        assert isinstance(p1, DummyNetdev) and isinstance(p2, DummyNetdev)
        assert not p1.pmd and h.dp.main.poll_list
        await trio.sleep(0.05)
        # Idle: one pass per MAIN_IDLE_INTERVAL (20 ms), not one per millisecond.
        before = iterations
        await trio.sleep(0.2)
        assert iterations - before <= 0.2 / dp_module.MAIN_IDLE_INTERVAL + 3
        # A frame wakes it at once: flooded to p2 well within the idle interval.
        assert await forwarding_time(p1, p2) < dp_module.MAIN_IDLE_INTERVAL / 2


async def test_ports_that_cannot_wake_it_are_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    # A port type whose wait_readable is the base one (never returns).
    monkeypatch.setattr(DummyNetdev, "wait_readable", dp_module.Netdev.wait_readable, raising=True)
    async with running_datapath(CONFIG) as h:
        p1, p2 = (h.dp.port_by_name(n).netdev for n in ("p1", "p2"))
        assert isinstance(p1, DummyNetdev) and isinstance(p2, DummyNetdev)
        await trio.sleep(0.05)
        # Polled every MAIN_POLL_INTERVAL (1 ms), not left to the idle interval.
        assert await forwarding_time(p1, p2) < dp_module.MAIN_IDLE_INTERVAL / 2
