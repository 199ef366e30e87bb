"""Pidfile locking and sd_notify datagrams."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pyvswitchd.pidfile import AlreadyRunning, PidFile
from pyvswitchd.sdnotify import Notifier, watchdog_interval


def test_pidfile_holds_a_lock_visible_to_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "d.pid"
    pf = PidFile(str(path))
    pf.acquire()
    # F_GETLK from another process sees our pid as the holder.  (Reading the
    # file from this process would drop the lock: POSIX locks die with any
    # close of the file by their owner.)
    code = (
        "import fcntl,os,struct,sys;f=open(sys.argv[1],'rb');"
        # struct flock is 32 bytes on Linux: the trailing pad matters.
        "r=fcntl.fcntl(f.fileno(),fcntl.F_GETLK,struct.pack('hhqqi4x',fcntl.F_WRLCK,0,0,0,0));"
        "print(struct.unpack('hhqqi4x',r)[4], f.read().decode().strip())"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.stdout.split() == [str(os.getpid())] * 2
    pf.release()
    assert not path.exists()


def test_second_owner_is_refused_while_first_lives(tmp_path: Path) -> None:
    path = tmp_path / "d.pid"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time;from pyvswitchd.pidfile import PidFile;p=PidFile(sys.argv[1]);"
            "p.acquire();print('ok',flush=True);time.sleep(30)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        with pytest.raises(AlreadyRunning) as info:
            PidFile(str(path)).acquire()
        assert info.value.pid == child.pid
        assert f"already running as pid {child.pid}" in str(info.value)
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    # The dead owner's file is stale: taking it over works.
    pf = PidFile(str(path))
    pf.acquire()
    pf.release()
    assert not path.exists()


def test_notifier_sends_datagrams(tmp_path: Path) -> None:
    addr = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(addr)
        n = Notifier(addr)
        assert n.ready() and n.reloading() and n.stopping()
        got = [sink.recv(4096).decode() for _ in range(3)]
    assert got[0] == "READY=1"
    assert got[1].startswith("RELOADING=1\nMONOTONIC_USEC=") and got[1].split("=")[-1].isdigit()
    assert got[2] == "STOPPING=1"


def test_notifier_is_a_noop_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and n.ready() is False
    assert Notifier("/nonexistent/socket").ready() is False


def test_watchdog_interval_is_half_of_what_systemd_allows() -> None:
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 15.0
    # WATCHDOG_PID is optional; without it the keep-alives are ours to send.
    assert watchdog_interval({"WATCHDOG_USEC": "400000"}) == 0.2
    # Another process's watchdog (a child that inherited the environment), none
    # at all, or values systemd never writes: no keep-alives.
    for env in (
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"},
        {},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"},
    ):
        assert watchdog_interval(env) is None, env


def test_notifier_sends_watchdog_keepalives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addr = str(tmp_path / "notify")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(addr)
        n = Notifier(addr)
        assert n.watchdog_interval == 1.0
        assert n.watchdog()
        assert sink.recv(4096) == b"WATCHDOG=1"
    # Outside systemd there is no one to keep alive.
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier().watchdog_interval is None
