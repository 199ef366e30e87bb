"""Start-up failure lines: cause and fix, one line each."""

from __future__ import annotations

import errno
import os

import pytest

from pyvswitchd import startup


def err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOENT, ["directory /nope does not exist", "create it", "LogsDirectory="]),
        (errno.EACCES, ["Permission denied", "write access to /nope"]),
        (errno.EISDIR, ["Is a directory", "another path"]),
    ],
)
def test_log_file(code: int, words: list[str]) -> None:
    line = startup.log_file_failure("/nope/d.log", err(code))
    assert line.startswith("--log-file /nope/d.log: cannot open: ")
    assert "\n" not in line and all(w in line for w in words)


def test_control_socket() -> None:
    line = startup.control_socket_failure(
        "/nope/x.ctl", err(errno.ENOENT), given=True, rundir="/run/pyvswitch"
    )
    assert line.startswith("--unixctl /nope/x.ctl: directory /nope does not exist; create it")
    assert "inside /run/pyvswitch" in line
    line = startup.control_socket_failure(
        "/run/p/d.1.ctl", err(errno.EACCES), given=False, rundir="/run/p"
    )
    assert line.startswith("control socket /run/p/d.1.ctl: cannot create: Permission denied")
    assert "--rundir" in line
    busy = OSError(errno.EADDRINUSE, "/run/p/x.ctl is in use by a running process")
    line = startup.control_socket_failure("/run/p/x.ctl", busy, given=True, rundir="/run/p")
    assert "in use by a running process; stop that process" in line


def test_socket_group() -> None:
    line = startup.socket_group_failure("/run/p/x.ctl", "netops", err(errno.EPERM))
    assert line.startswith('daemon:ctl-group "netops": cannot give the control socket')
    assert "Operation not permitted" in line
    assert "SupplementaryGroups=netops" in line and "CAP_CHOWN" in line


def test_rundir() -> None:
    line = startup.rundir_failure("/run/pyvswitch", err(errno.EACCES))
    assert line.startswith("run directory /run/pyvswitch: Permission denied: ")
    assert "RuntimeDirectory=" in line and "--rundir" in line


def test_metrics() -> None:
    line = startup.metrics_failure(
        "127.0.0.1:10099", err(errno.EADDRINUSE), origin="--metrics-address"
    )
    assert line.startswith("--metrics-address 127.0.0.1:10099: cannot listen: Address already")
    assert "ss -ltnp 'sport = :10099'" in line and '"none"' in line
    line = startup.metrics_failure("0.0.0.0:80", err(errno.EACCES), origin="x")
    assert "CAP_NET_BIND_SERVICE" in line
    line = startup.metrics_failure("10.9.9.9:1", err(errno.EADDRNOTAVAIL), origin="x")
    assert "Cannot assign requested address" in line and "choose another address" in line
