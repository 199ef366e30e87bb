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
