"""TxKick's modes: which kicks run here and which go to an io_uring worker (on pipes)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

import pytest

from pyvswitchd.netdev import txkick
from pyvswitchd.netdev.provider import NetdevStats
from pyvswitchd.netdev.txkick import BUSY_BYTES, WINDOW_NS, TxKick


@pytest.fixture
def wfd() -> Iterator[int]:
    r, w = os.pipe()
    yield w
    os.close(r)
    with contextlib.suppress(OSError):
        os.close(w)


class Clock:
    def __init__(self) -> None:
        self.ns = 10 * WINDOW_NS

    def __call__(self) -> int:
        return self.ns


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(txkick, "_now", c)
    return c


def kicker(fd: int, mode: str) -> TxKick:
    k = TxKick(fd, mode)
    if mode != "sync" and k.unavailable:
        pytest.skip(f"io_uring unavailable here ({k.unavailable})")
    return k


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="bad tx kick mode"):
        TxKick(0, "sometimes")


def test_sync_never_sets_up_io_uring(wfd: int) -> None:
    k = TxKick(wfd, "sync")
    assert k.effective == "sync" and k.unavailable == ""
    assert [k.kick(), k.kick(), k.kick_now(), k.settle()] == [0, 0, 0, 0]
    assert (k.sync_kicks, k.async_kicks) == (3, 0)
    k.close()


def test_async_one_in_flight_then_settle(wfd: int) -> None:
    k = kicker(wfd, "async")
    assert k.effective == "async"
    assert k.kick() == 0 and k.async_kicks == 1
    assert k.settle() == 0
    for _ in range(3):
        assert k.kick() == 0
        k.kick()  # skipped if the first is still running, else a new one
        assert k.settle() == 0
    assert 4 <= k.async_kicks <= 7 and k.sync_kicks == 0
    assert k.kick_now() == 0 and k.sync_kicks == 1  # waits, then writes here
    k.close()
    assert k.effective == "sync" and k.kick() == 0  # closed: plain writes


def test_auto_follows_the_port_byte_rate(wfd: int, clock: Clock) -> None:
    stats = NetdevStats()
    k = TxKick(wfd, "auto", stats)
    if k.unavailable:
        pytest.skip(f"io_uring unavailable here ({k.unavailable})")
    # Idle: kicks here, whatever the traffic, until a window has ended.
    for _ in range(4):
        k.kick(BUSY_BYTES)
    assert (k.sync_kicks, k.async_kicks) == (4, 0)
    clock.ns += WINDOW_NS  # that window queued 4 * BUSY_BYTES: busy from now on
    k.kick()
    k.settle()
    assert k.async_kicks == 1
    clock.ns += WINDOW_NS // 2
    k.kick()  # mid-window: unchanged
    k.settle()
    assert k.async_kicks == 2
    stats.rx_bytes += BUSY_BYTES // 4
    stats.tx_bytes += 10 * BUSY_BYTES  # completions do not count: they lag
    clock.ns += WINDOW_NS // 2
    k.kick(BUSY_BYTES // 4)  # the window closing here moved half of BUSY_BYTES: idle
    assert (k.sync_kicks, k.async_kicks) == (5, 2)
    # Received bytes count too, and busy is a rate: BUSY_BYTES per window over
    # a window stretched to three (slow kicks, say) is busy ...
    stats.rx_bytes += 2 * BUSY_BYTES
    k.kick(BUSY_BYTES)  # mid-window, still idle: here
    clock.ns += 3 * WINDOW_NS
    k.kick()
    k.settle()
    assert (k.sync_kicks, k.async_kicks) == (6, 3)
    # ... and a ping after ten windows of silence is not.
    stats.rx_bytes += 98
    clock.ns += 10 * WINDOW_NS
    k.kick(98)
    assert (k.sync_kicks, k.async_kicks) == (7, 3)
    k.close()


def test_auto_without_stats_stays_in_thread(wfd: int, clock: Clock) -> None:
    k = kicker(wfd, "auto")
    for _ in range(3):
        clock.ns += 2 * WINDOW_NS
        k.kick()
    assert (k.sync_kicks, k.async_kicks) == (3, 0)
    k.close()


def test_async_error_is_reported_by_the_next_kick(wfd: int) -> None:
    k = kicker(wfd, "async")
    os.close(wfd)
    assert k.kick() == 0  # submitted; it fails in the kernel
    # Reported once, by the kick (or settle) that finds it, before starting another.
    results = {k.settle()}
    assert results == {errno.EBADF}
    assert k.kick() == 0 and k.settle() == errno.EBADF
    k.close()


def test_unavailable_falls_back(wfd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(txkick, "open_write_ring", lambda fd: (None, "Function not implemented"))
    k = TxKick(wfd, "auto")
    assert k.effective == "sync" and k.unavailable == "Function not implemented"
    assert k.kick() == 0 and k.sync_kicks == 1
