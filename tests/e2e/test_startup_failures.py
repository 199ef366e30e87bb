"""A daemon that cannot start says why and what to do, in one line, and exits 1.

Each test starts the real process into one failure an operator meets on day
one and checks the last line of stderr: ``pyvswitchd: CAUSE; FIX``, no
traceback, no ERR or EMER line, and nothing left behind (pidfile, socket).
"""

from __future__ import annotations

import grp
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TEST_CONFIG

SETPRIV = shutil.which("setpriv")


def run_daemon(
    tmp_path: Path, *args: str, config: str = TEST_CONFIG, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "start.toml"
    cfg.write_text(config)
    return subprocess.run(
        [*prefix, sys.executable, "-m", "pyvswitchd", "--config", str(cfg),
         "--syslog-method=null", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def failure_line(r: subprocess.CompletedProcess[str]) -> str:
    """The one line that explains the failure (asserting the rest is clean)."""
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert lines and lines[-1].startswith("pyvswitchd: "), r.stderr
    assert sum(line.startswith("pyvswitchd: ") for line in lines) == 1, r.stderr
    assert not any("|ERR|" in line or "|EMER|" in line for line in lines), r.stderr
    return lines[-1]


def test_log_file_in_a_missing_directory(tmp_path: Path) -> None:
    log = tmp_path / "no-such-dir" / "pyvswitchd.log"
    r = run_daemon(tmp_path, "--rundir", str(tmp_path / "run"), f"--log-file={log}")
    line = failure_line(r)
    assert line == (
        f"pyvswitchd: --log-file {log}: cannot open: No such file or directory: directory "
        f"{log.parent} does not exist; create it (under systemd, LogsDirectory= does) or "
        "give --log-file a path in an existing directory"
    )
    assert r.stderr == line + "\n"  # nothing else was printed


def test_unixctl_in_a_missing_directory(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    ctl = tmp_path / "no-such-dir" / "x.ctl"
    r = run_daemon(tmp_path, "--rundir", str(rundir), "--unixctl", str(ctl))
    line = failure_line(r)
    assert line.startswith(
        f"pyvswitchd: --unixctl {ctl}: directory {ctl.parent} does not exist; create it or "
        "give --unixctl a path in an existing directory"
    )
    assert not (rundir / "pyvswitchd.pid").exists()


def test_run_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_daemon(tmp_path, "--rundir", str(blocker / "run"))
    line = failure_line(r)
    assert line.startswith(f"pyvswitchd: run directory {blocker / 'run'}: Not a directory: ")
    assert "--rundir" in line


def _foreign_group() -> str | None:
    mine = {os.getgid(), *os.getgroups()}
    return next((g.gr_name for g in grp.getgrall() if g.gr_gid not in mine), None)


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop CAP_CHOWN from a root daemon")
def test_ctl_group_without_cap_chown(tmp_path: Path) -> None:
    """Root without CAP_CHOWN (the old unit) cannot give the socket a foreign group."""
    group = _foreign_group()
    if group is None:
        pytest.skip("no group this user is not a member of")
    rundir = tmp_path / "run"
    drop_chown = (SETPRIV, "--inh-caps=-chown", "--bounding-set=-chown", "--")
    r = run_daemon(
        tmp_path,
        "--rundir",
        str(rundir),
        config=f'[daemon]\nmetrics-address = "none"\nctl-group = "{group}"\n\n'
        '[[bridge]]\nname = "br0"\n',
        prefix=drop_chown,
    )
    line = failure_line(r)
    assert line.startswith(f'pyvswitchd: daemon:ctl-group "{group}": cannot give the control ')
    assert "Operation not permitted" in line and f"SupplementaryGroups={group}" in line
    # No stale socket (nor pidfile) stays behind.
    assert sorted(p.name for p in rundir.iterdir()) == []


def metrics_config(port: int) -> str:
    return f'[daemon]\nmetrics-address = "127.0.0.1:{port}"\n\n[[bridge]]\nname = "br0"\n'


def test_metrics_port_taken_fails_the_start(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_daemon(tmp_path, "--rundir", str(rundir), config=metrics_config(port))
        line = failure_line(r)
        cfg = tmp_path / "start.toml"
        assert line.startswith(
            f"pyvswitchd: daemon:metrics-address in {cfg} 127.0.0.1:{port}: cannot listen: "
            f"Address already in use; another program holds port {port} "
        )
        assert f"ss -ltnp 'sport = :{port}'" in line
        # The command line's address names the flag instead.
        r = run_daemon(tmp_path, "--rundir", str(rundir), f"--metrics-address=127.0.0.1:{port}")
        assert failure_line(r).startswith(f"pyvswitchd: --metrics-address 127.0.0.1:{port}: ")
    assert sorted(p.name for p in rundir.iterdir()) == []
