"""TxKick's modes: which kicks run here and which go to an io_uring worker (on pipes)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

import pytest

from pyvswitchd.netdev import txkick
from pyvswitchd.netdev.txkick import BUSY_FRAMES, WINDOW_NS, TxKick


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
    assert [k.kick(32), k.kick(32), k.kick_now(), k.settle()] == [0, 0, 0, 0]
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


def test_auto_follows_the_load(wfd: int, clock: Clock) -> None:
    k = kicker(wfd, "auto")
    # Idle: every kick here, however many frames, until a window has ended.
    for _ in range(4):
        k.kick(BUSY_FRAMES)
    assert (k.sync_kicks, k.async_kicks) == (4, 0)
    clock.ns += WINDOW_NS  # that window held 4 * BUSY_FRAMES: busy from now on
    k.kick(1)
    k.settle()
    assert k.async_kicks == 1
    clock.ns += WINDOW_NS // 2
    k.kick(1)
    k.settle()
    assert k.async_kicks == 2
    clock.ns += WINDOW_NS // 2  # that window held 2 frames: idle again
    k.kick(1)
    assert (k.sync_kicks, k.async_kicks) == (5, 2)
    # Busy is a rate: BUSY_FRAMES per window, over a window stretched to three
    # (in-thread kicks that took long, say), is still busy ...
    k.kick(3 * BUSY_FRAMES - 1)
    clock.ns += 3 * WINDOW_NS
    k.kick(1)
    k.settle()
    assert (k.sync_kicks, k.async_kicks) == (6, 3)
    # ... and a frame after ten windows of silence is not.
    clock.ns += 10 * WINDOW_NS
    k.kick(1)
    assert (k.sync_kicks, k.async_kicks) == (7, 3)
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
    assert k.kick(100) == 0 and k.sync_kicks == 1
