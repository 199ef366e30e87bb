"""Control-socket access control: mutating commands need an administrator."""

from __future__ import annotations

import os

import pytest

from pyappctl.client import UnixctlClient

from .conftest import TEST_CONFIG

NOBODY = 65534


def as_nobody(path: str, command: str, *args: str) -> tuple[str | None, object]:
    """Transact as uid/gid 65534 in a forked child (nobody cannot run this venv's python)."""
    import json

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, transact, report, vanish
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                with UnixctlClient(path, timeout=10) as client:
                    outcome = client.transact(command, list(args))
            except Exception as exc:  # report it: the parent asserts on it
                outcome = (f"client failed: {exc!r}", None)
            os.write(write_fd, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    error, result = json.loads(data)
    return error, result


@pytest.fixture
def open_rundir():  # type: ignore[no-untyped-def]
    """A run directory other users can reach (pytest's tmp_path is private to root)."""
    import shutil
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="pyvswitch-access-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as nobody")


@needs_root
def test_unprivileged_peer_may_read_but_not_change(open_rundir, start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(
        TEST_CONFIG.replace("[daemon]", '[daemon]\nctl-mode = "0777"'), rundir=open_rundir
    )
    error, result = as_nobody(d.ctl_path, "version")
    assert error is None and str(result).startswith("pyvswitchd")
    for command in (["exit"], ["vlog/set", "dbg"], ["config/set", "max-idle=1000"]):
        error, _ = as_nobody(d.ctl_path, *command)
        assert error is not None, command
        assert f'"{command[0]}" changes the daemon: permission denied' in error
    assert d.proc.poll() is None  # still running: exit was refused
    assert d.call("coverage/read-counter", "unixctl_refused") == "3\n"
    assert 'refused "exit" from uid 65534' in d.log_path.read_text()
    # Root (this test) may.
    assert d.appctl("vlog/set", "unixctl:file:dbg").returncode == 0


@needs_root
def test_admin_group_members_may_change(open_rundir, start_daemon) -> None:  # type: ignore[no-untyped-def]
    config = TEST_CONFIG.replace(
        "[daemon]", '[daemon]\nctl-mode = "0770"\nctl-group = "nogroup"\nadmin-group = "nogroup"'
    )
    d = start_daemon(config, rundir=open_rundir)
    assert os.stat(d.ctl_path).st_gid == NOBODY
    assert as_nobody(d.ctl_path, "config/set", "max-idle=2000") == (None, "")
    assert "max-idle=2000" in d.call("config/show")


def test_unknown_admin_group_is_a_config_error() -> None:
    from pyvswitchd import config

    with pytest.raises(config.ConfigError, match='daemon:admin-group: invalid value "no-such-grp"'):
        config.loads('[daemon]\nadmin-group = "no-such-grp"\n')


def flood_as_nobody(path: str, n: int) -> tuple[int, int, int, int]:
    """Fork a child that opens ``n`` idle connections as nobody and holds them.

    Returns (child pid, write end of the pipe to close to end it, connections
    still open, connections the daemon closed).
    """
    import socket
    import time

    report_r, report_w = os.pipe()
    stop_r, stop_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(report_r)
            os.close(stop_w)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            held = []
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                held.append(s)
            time.sleep(0.5)  # let the daemon accept (and refuse) them all
            closed = 0
            for s in held:
                s.setblocking(False)
                try:
                    closed += s.recv(1) == b""
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    closed += 1
            os.write(report_w, f"{n - closed} {closed}".encode())
            os.close(report_w)
            os.read(stop_r, 1)  # hold them until the parent is done
        finally:
            os._exit(0)
    os.close(report_w)
    os.close(stop_r)
    with os.fdopen(report_r, "rb") as pipe:
        kept, closed = map(int, pipe.read().split())
    return pid, stop_w, kept, closed


@needs_root
def test_one_user_cannot_lock_out_the_others(open_rundir, start_daemon) -> None:  # type: ignore[no-untyped-def]
    import time

    from pyvswitchd.control.slots import MAX_CONNECTIONS, MAX_PER_UID

    d = start_daemon(
        TEST_CONFIG.replace("[daemon]", '[daemon]\nctl-mode = "0777"'), rundir=open_rundir
    )
    pid, stop, kept, closed = flood_as_nobody(d.ctl_path, MAX_CONNECTIONS + 88)
    try:
        # nobody keeps its share; everything past it was closed on accept.
        assert (kept, closed) == (MAX_PER_UID, MAX_CONNECTIONS + 88 - MAX_PER_UID)
        start = time.monotonic()
        assert d.call("version").startswith("pyvswitchd")  # root still gets in...
        assert time.monotonic() - start < 2
        error, _ = as_nobody(d.ctl_path, "version")  # ...nobody does not, for now
        assert error is not None and "client failed" in error
    finally:
        os.close(stop)
        os.waitpid(pid, 0)
    assert as_nobody(d.ctl_path, "version")[0] is None  # its connections are gone
    log = d.log_path.read_text()
    assert f"closing new connection from uid {NOBODY} (pid " in log
    assert f"uid {NOBODY} already has {MAX_PER_UID} connections" in log
