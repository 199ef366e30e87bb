"""The minimal io_uring: zero-length writes run by a kernel worker (on pipes here)."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator

import pytest

from pyvswitchd.netdev import uring
from pyvswitchd.netdev.uring import WriteRing, batch_workers, open_write_ring


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


def worker_tids() -> list[int]:
    tids = []
    for name in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{name}/comm", "rb") as f:
                if f.read().startswith(b"iou-wrk"):
                    tids.append(int(name))
        except OSError:
            continue
    return tids


def test_batch_workers_demotes_io_wq_threads(pipe: tuple[int, int]) -> None:
    ring = ring_on(pipe[1])
    try:
        ring.submit()  # IOSQE_ASYNC: an io-wq worker thread of this process runs it
        assert ring.wait() == 0
        tids = worker_tids()
        if not tids:
            pytest.skip("no io-wq worker thread visible in /proc/self/task")
        for tid in tids:  # an earlier test may have demoted a worker still alive
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        assert batch_workers() == len(tids)
        # Only the workers: this (the main) thread keeps its policy.
        assert {os.sched_getscheduler(t) for t in worker_tids()} == {os.SCHED_BATCH}
        assert os.sched_getscheduler(0) != os.SCHED_BATCH
        assert batch_workers() == 0  # already done
    finally:
        ring.close()
    assert batch_workers("/nonexistent") == 0


PINNED_CHILD = """
import os, sys
from pyvswitchd.netdev.uring import open_write_ring
os.sched_setaffinity(0, {0})
r, w = os.pipe()
ring, why = open_write_ring(w)
if ring is None:
    print("unavailable", why)
    sys.exit(0)
ring.submit()
assert ring.wait() == 0
workers = []
for name in os.listdir("/proc/self/task"):
    with open(f"/proc/self/task/{name}/comm") as f:
        if f.read().startswith("iou-wrk"):
            workers.append(sorted(os.sched_getaffinity(int(name))))
print("ring", sorted(ring.iowq_cpus), "workers", workers)
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two CPUs")
def test_a_pinned_threads_io_wq_workers_run_on_the_other_cpus() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", PINNED_CHILD], capture_output=True, text=True, check=True
    ).stdout
    if out.startswith("unavailable"):
        pytest.skip(f"io_uring {out.strip()}")
    others = list(range(1, os.cpu_count() or 1))
    assert out.startswith(f"ring {others} workers "), out
    workers = eval(out.split("workers ", 1)[1])
    if not workers:
        pytest.skip("no io-wq worker thread visible in /proc/self/task")
    assert all(cpus == others for cpus in workers), out
