"""The minimal io_uring: zero-length writes run by a kernel worker (on pipes here)."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator

import pytest

from pyvswitchd.netdev import uring
from pyvswitchd.netdev.uring import WriteRing, open_write_ring


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def ring_on(fd: int) -> WriteRing:
    ring, why = open_write_ring(fd)
    if ring is None:
        pytest.skip(f"io_uring unavailable here ({why})")
    return ring


def test_submit_poll_wait(pipe: tuple[int, int]) -> None:
    ring = ring_on(pipe[1])
    try:
        assert not ring.busy and ring.poll() is None and ring.wait() is None
        for _ in range(5):  # more writes than the ring has entries: it wraps
            ring.submit()
            assert ring.busy
            assert ring.wait() == 0
            assert not ring.busy and ring.poll() is None
        ring.submit()
        deadline = time.monotonic() + 2
        while (result := ring.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert result == 0 and not ring.busy
    finally:
        ring.close()
    assert ring.fd == -1
    ring.close()  # idempotent


def test_errors_come_back_as_negative_errno(pipe: tuple[int, int]) -> None:
    _r, w = pipe
    ring = ring_on(w)
    try:
        os.close(w)  # the prepared entry names a descriptor that is gone now
        ring.submit()
        assert ring.wait() == -errno.EBADF
    finally:
        ring.close()


def test_unavailable_is_reported_not_raised(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        import ctypes

        ctypes.set_errno(errno.EPERM)
        return -1

    monkeypatch.setattr(uring, "_syscall", refuse)
    ring, why = open_write_ring(pipe[1])
    assert ring is None and why == os.strerror(errno.EPERM)
