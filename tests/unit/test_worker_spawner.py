"""Tests for pyvswitchd.datapath.worker_spawner: the zygote and the daemon's side of it."""

from __future__ import annotations

import array
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from pyvswitchd.datapath.worker_spawner import (
    ZYGOTE_NAME,
    WorkerProcess,
    WorkerSpawner,
    _status_code,
    describe_exit,
    worker_env,
)
from pyvswitchd.observe.vlog import Vlog


def test_describe_exit() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "was killed by SIGSEGV"
    assert describe_exit(-200) == "was killed by signal 200"
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(0) == "exited with status 0"


def test_status_code_like_subprocess() -> None:
    for argv, expected in (
        (["true"], 0),
        (["sh", "-c", "exit 3"], 3),
        (["sh", "-c", "kill -9 $$"], -9),
        (["sh", "-c", "kill -TERM $$"], -15),
    ):
        pid = os.posix_spawnp(argv[0], argv, os.environ)
        _, status = os.waitpid(pid, 0)
        assert _status_code(status) == expected == subprocess.run(argv).returncode


def test_worker_env_makes_the_package_importable_anywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    env = worker_env()
    assert "NOTIFY_SOCKET" not in env
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths[1:] == ["/somewhere/else"]
    assert os.path.isfile(os.path.join(paths[0], "pyvswitchd", "datapath", "worker.py"))


async def test_worker_process_handle() -> None:
    proc = WorkerProcess(12345)
    assert proc.returncode is None
    proc.ended(-9)
    proc.ended(0)  # the first report wins
    assert await proc.wait() == -9
    proc.kill()  # ended: no signal goes to a pid that may have been reused


def _spawner() -> WorkerSpawner:
    return WorkerSpawner(Vlog("test", syslog_method="null").module("dpif_netdev"))


@asynccontextmanager
async def running_spawner(*, zygote: bool = True) -> AsyncIterator[WorkerSpawner]:
    spawner = _spawner()
    async with trio.open_nursery() as nursery:
        if zygote:
            await nursery.start(spawner.run)
            await spawner.settled()  # run() reports started before its zygote is up
        try:
            yield spawner
        finally:
            nursery.cancel_scope.cancel()


async def spawn_unattended(
    spawner: WorkerSpawner, *, closed_first: bool = False
) -> WorkerProcess | trio.Process:
    """A worker whose daemon end of the channel closes (before its spawn, or right after).

    It reads EOF where it expects its Init and ends, with status 0.
    """
    ours, theirs = socket.socketpair()
    with ours, theirs:
        if closed_first:
            ours.close()
        return await spawner.spawn(theirs.fileno())


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


async def test_spawn_through_the_zygote_reports_pid_and_exit() -> None:
    async with running_spawner() as spawner:
        zygote = spawner._zygote
        assert zygote is not None and _comm(zygote.pid) == ZYGOTE_NAME
        ours, theirs = socket.socketpair()
        with ours, theirs:
            proc = await spawner.spawn(theirs.fileno())
            assert isinstance(proc, WorkerProcess)
            assert _parent(proc.pid) == zygote.pid
            assert proc.returncode is None
            os.kill(proc.pid, signal.SIGKILL)
            with trio.fail_after(5):
                assert await proc.wait() == -signal.SIGKILL
        # A worker whose daemon end closes ends on its own, with status 0.
        proc = await spawn_unattended(spawner)
        with trio.fail_after(5):
            assert await proc.wait() == 0


async def test_spawn_without_a_zygote_starts_a_fresh_interpreter() -> None:
    async with running_spawner(zygote=False) as spawner:
        proc = await spawn_unattended(spawner)
        assert isinstance(proc, trio.Process)
        assert _parent(proc.pid) == os.getpid()
        with trio.fail_after(30):
            assert await proc.wait() == 0


async def test_a_dead_zygote_is_replaced_and_its_children_reported_gone() -> None:
    async with running_spawner() as spawner:
        zygote = spawner._zygote
        assert zygote is not None
        ours, theirs = socket.socketpair()
        with ours, theirs:
            proc = await spawner.spawn(theirs.fileno())
            assert isinstance(proc, WorkerProcess)
            zygote.kill()
            with trio.fail_after(5):
                assert await proc.wait() == -signal.SIGKILL
        # Until a new zygote is up, workers start from scratch.
        if spawner._sock is None:
            fresh = await spawn_unattended(spawner)
            assert isinstance(fresh, trio.Process)
            with trio.fail_after(30):
                assert await fresh.wait() == 0
        with trio.fail_after(30):
            while spawner._sock is None or spawner._zygote is zygote:  # noqa: ASYNC110
                await trio.sleep(0.05)
        forked = await spawn_unattended(spawner)
        assert isinstance(forked, WorkerProcess)
        assert _parent(forked.pid) == spawner._zygote.pid
        with trio.fail_after(5):
            assert await forked.wait() == 0


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_zygote_ends_and_kills_children_when_the_daemon_side_closes() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        zygote = subprocess.Popen(
            [sys.executable, "-m", "pyvswitchd.datapath.worker_spawner", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=worker_env(),
        )
        theirs.close()
        try:
            ours.settimeout(30)
            assert pickle.loads(ours.recv(4096)) == ("ready",)
            channel, worker_end = socket.socketpair()
            with channel, worker_end:
                fds = array.array("i", [worker_end.fileno()]).tobytes()
                request = pickle.dumps(("spawn", 7))
                ours.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                kind, token, child = pickle.loads(ours.recv(4096))
                assert (kind, token) == ("spawned", 7)
                assert _parent(child) == zygote.pid
                ours.close()  # the daemon is gone
                assert zygote.wait(10) == 0
                deadline = time.monotonic() + 5
                while not _gone(child) and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert _gone(child)  # killed by the zygote: its channel is still open
        finally:
            if zygote.poll() is None:
                zygote.kill()
                zygote.wait()


async def test_a_worker_that_ends_at_once_is_reported() -> None:
    # Its "exited" may reach the daemon right behind its "spawned".
    async with running_spawner() as spawner:
        for _ in range(20):
            proc = await spawn_unattended(spawner, closed_first=True)
            assert isinstance(proc, WorkerProcess)
            with trio.fail_after(5):
                assert await proc.wait() == 0


async def _fake_zygote(sock: socket.socket, pid: int) -> None:
    """Answer one spawn request with "spawned" and "exited" at once (the worker died at once)."""
    _, ancdata, _, _ = await trio.to_thread.run_sync(sock.recvmsg, 4096, 64)
    for _, _, data in ancdata:
        for fd in array.array("i", data):
            os.close(fd)
    sock.send(pickle.dumps(("spawned", 1, pid)))
    sock.send(pickle.dumps(("exited", pid, 3)))


async def test_exit_reported_right_behind_the_spawn_is_not_lost() -> None:
    for attempt in range(10):
        spawner = _spawner()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        with ours, theirs:
            sock = spawner._sock = trio.socket.from_stdlib_socket(ours)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(spawner._serve, sock)
                nursery.start_soon(_fake_zygote, theirs, 4_000_000 + attempt)
                proc = await spawner.spawn(0)
                assert isinstance(proc, WorkerProcess)
                with trio.fail_after(2):
                    assert await proc.wait() == 3, attempt
                nursery.cancel_scope.cancel()
