"""Start, stop, reload and refuse-to-start behaviour of the real process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .conftest import TEST_CONFIG


def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_sigterm_stops_cleanly(daemon) -> None:  # type: ignore[no-untyped-def]
    ctl, pidfile = daemon.ctl_path, daemon.rundir / "pyvswitchd.pid"
    assert daemon.stop(signal.SIGTERM) == 0
    assert not os.path.exists(ctl) and not pidfile.exists()


def test_sigint_stops_cleanly(daemon) -> None:  # type: ignore[no-untyped-def]
    assert daemon.stop(signal.SIGINT) == 0
    assert not os.path.exists(daemon.ctl_path)


def test_exit_command_replies_then_exits(daemon) -> None:  # type: ignore[no-untyped-def]
    r = daemon.appctl("exit", "--cleanup")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert daemon.proc.wait(10) == 0
    assert not os.path.exists(daemon.ctl_path)
    assert not (daemon.rundir / "pyvswitchd.pid").exists()


def test_second_daemon_on_same_rundir_refuses(daemon) -> None:  # type: ignore[no-untyped-def]
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyvswitchd",
            "--config",
            str(daemon.config_path),
            "--rundir",
            str(daemon.rundir),
            "--syslog-method=null",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert f"already running as pid {daemon.pid}" in r.stderr
    assert daemon.call("version")  # the first one is untouched


def test_stale_socket_is_replaced(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stale = tmp_path / "fixed.ctl"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on: what a crashed daemon leaves
    d = start_daemon(TEST_CONFIG, unixctl="fixed.ctl")  # ready = answered on the fixed path
    assert d.ctl_path == str(stale)
    assert d.call("version")


def test_config_reload_bad_file_keeps_running_config(daemon) -> None:  # type: ignore[no-untyped-def]
    daemon.config_path.write_text('[daemon]\nctl-mode = "999"\n')
    r = daemon.appctl("config/reload")
    assert r.returncode == 2
    assert 'daemon:ctl-mode: invalid value "999"' in r.stderr
    # SIGHUP with the same bad file: logged, still serving.
    os.kill(daemon.pid, signal.SIGHUP)
    wait_for(lambda: daemon.log_path.read_text().count("configuration not reloaded") >= 2)
    assert daemon.call("version")
    daemon.config_path.write_text(TEST_CONFIG)
    assert daemon.appctl("config/reload").returncode == 0
    os.kill(daemon.pid, signal.SIGHUP)
    wait_for(lambda: "generation 3" in daemon.log_path.read_text())


def test_sd_notify_sequence(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    addr = str(tmp_path / "notify.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(addr)
    sink.settimeout(10)
    try:
        d = start_daemon(TEST_CONFIG, env={"NOTIFY_SOCKET": addr})
        assert sink.recv(4096) == b"READY=1"
        os.kill(d.pid, signal.SIGHUP)
        reloading = sink.recv(4096).decode().split("\n")
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert sink.recv(4096) == b"READY=1"
        assert d.stop() == 0
        assert sink.recv(4096) == b"STOPPING=1"
    finally:
        sink.close()


def test_check_config(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(TEST_CONFIG)
    r = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--check-config", str(good)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and "OK" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[other_config]\ndummy-numa = "banana"\n')
    r = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--check-config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("pyvswitchd: ") and 'dummy-numa: invalid value "banana"' in r.stderr


def test_bad_config_at_start_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[daemon]\nmetrics-address = "9475"\n')
    r = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--config", str(bad), "--rundir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and 'daemon:metrics-address: invalid value "9475"' in r.stderr
    assert not (tmp_path / "pyvswitchd.pid").exists()


def test_default_config_without_flag(tmp_path: Path) -> None:
    """A plain `pyvswitchd` (no --config) runs on the packaged default."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyvswitchd",
            "--rundir",
            str(tmp_path),
            "--syslog-method=null",
            "--metrics-address=none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: any(p.suffix == ".ctl" for p in tmp_path.iterdir()), 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_vlog_reopen_after_rotation(daemon) -> None:  # type: ignore[no-untyped-def]
    rotated = daemon.log_path.with_suffix(".log.1")
    daemon.log_path.rename(rotated)
    assert daemon.appctl("vlog/reopen").returncode == 0
    daemon.call("version")
    assert daemon.log_path.exists()
    assert "received request version" in daemon.log_path.read_text()


# A bug in a daemon task, planted at interpreter start-up (sitecustomize is
# imported before pyvswitchd runs): the memory monitor raises once the
# daemon has been serving for a moment.
CRASH_HOOK = """\
import trio
import pyvswitchd.observe.memory as memory


async def monitor(self, *, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    await trio.sleep(1.0)
    raise RuntimeError("injected crash")


memory.Memory.monitor = monitor
"""


def test_crash_is_logged_at_emer_everywhere(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    syslog_path = tmp_path / "syslog.sock"
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(syslog_path))
    syslog.settimeout(0.5)
    datagrams: list[str] = []

    def drain() -> None:  # a datagram socket queues only ~10 messages
        with contextlib.suppress(OSError):
            while True:
                with contextlib.suppress(TimeoutError):
                    datagrams.append(syslog.recv(65536).decode())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        d = start_daemon(
            TEST_CONFIG,
            f"--syslog-method=unix:{syslog_path}",
            env={"PYTHONPATH": str(hook)},
        )
        assert d.proc.wait(20) == 1
        time.sleep(0.6)
    finally:
        syslog.close()
        reader.join()
    log = d.log_path.read_text()
    console = d.stderr_path.read_text()
    for where, text in (("log file", log), ("console", console), ("syslog", "\n".join(datagrams))):
        assert "fatal error, exiting: RuntimeError('injected crash')" in text, where
        assert "Traceback (most recent call last):" in text, where
        assert "RuntimeError: injected crash" in text, where
    # Every line of the file keeps its time stamp and level, traceback included.
    emer = [line for line in log.splitlines() if "|daemon|EMER|" in line]
    assert len(emer) > 5 and any("in monitor" in line for line in emer)
    assert log.rstrip().endswith("|daemon|INFO|stopped")
    # The console got it through vlog only: no second, raw traceback from Python.
    assert console.count("fatal error, exiting") == 1
    assert all(re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z\|\d+\|", line) for line in console.splitlines())
