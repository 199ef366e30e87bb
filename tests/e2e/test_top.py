"""pyappctl top against the real daemon with the traffic source running."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from pyappctl.top import TopError, parse_args, thread_rates

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
pmd-sleep-max = "200"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = { flows = 4, pps = 5000, dst_mac = "02:00:00:00:00:fe" }
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
"""


def test_top_shows_rates_from_deltas(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG)
    r = subprocess.run(
        [sys.executable, "-m", "pyappctl", "-t", d.ctl_path, "top", "-i", "1", "-n", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    frames = r.stdout.split("pyvswitchd PMDs, rates over the last")
    assert len(frames) == 3
    row = re.search(r"\npmd c0\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", frames[2])
    assert row is not None, frames[2]
    usage, rx_kpps, tx_kpps = map(float, row.groups())
    assert 3.0 < rx_kpps < 7.0  # the source sends 5 kpps
    assert 2 * rx_kpps * 0.7 < tx_kpps  # flooded to p0 and br0
    assert 0 < usage < 100
    assert "busiest rx queues" in frames[2]
    # Nothing was cleared: pmd-perf-show still counts from the start.
    assert (
        int(re.search(r"Rx packets:\s+(\d+)", d.appctl("dpif-netdev/pmd-perf-show").stdout)[1])
        > 5000
    )  # type: ignore[index]


def test_top_argument_errors() -> None:
    assert parse_args(["-i", "0.5", "-n", "3", "-q", "4"]) == (0.5, 3, 4)
    for bad in (["-x"], ["-i"], ["-i", "abc"], ["-n", "-1"], ["-i", "0"]):
        with pytest.raises(TopError):
            parse_args(bad)


def test_rates_survive_a_stats_clear() -> None:
    old = {
        "busy_cycles": 5000,
        "rx_packets": 100,
        "tx_packets": 100,
        "offload_cycles": 0,
        "sleep_us": 0,
        "lookups": {"emc": 90},
        "work": {"deferred": 0},
    }
    new = {
        "busy_cycles": 1000,
        "rx_packets": 10,
        "tx_packets": 10,
        "offload_cycles": 0,
        "sleep_us": 0,
        "lookups": {"emc": 9},
        "work": {"deferred": 0},
    }
    rates = thread_rates(new, old, 1.0)
    assert rates["rx_kpps"] == pytest.approx(0.01) and rates["emc_per_s"] == 9


class Terminal:
    """``pyappctl top`` on a pseudo-terminal it controls (SIGWINCH reaches it)."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int, cols: int) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once, never return into pytest
            try:
                os.execve(sys.executable, [sys.executable, "-m", "pyappctl", *args], env)
            finally:
                os._exit(127)
        self.resize(rows, cols)
        self.output = b""
        self.status: int | None = None

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait_for(self, text: str, after: int = 0, timeout: float = 20.0) -> int:
        """Read until ``text`` appears past offset ``after``; its end offset."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(text.encode(), after)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not shown; got {self.output[after:][-2000:]!r}")
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:  # EIO: the child is gone
                    time.sleep(0.05)
        return found + len(text)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # drain, or the child may block writing
                if select.select([self.fd], [], [], 0.05)[0]:
                    self.output += os.read(self.fd, 65536)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        return None

    def close(self) -> None:
        if self.status is None and self.wait(0) is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_top_on_a_terminal_resizes_reconnects_and_quits(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG)
    env = {**os.environ, "TERM": "xterm", "PYVSWITCH_RUNDIR": str(tmp_path)}
    term = Terminal(["-t", "pyvswitchd", "top", "-i", "0.5"], env, rows=24, cols=60)
    try:
        at = term.wait_for("pmd c0")
        # 60 columns: the header is cut, not wrapped (its last column is defer/s).
        assert b"defer/s" not in term.output
        term.resize(30, 120)
        at = term.wait_for("defer/s", at)
        # The daemon restarts: the view says so and comes back by itself.
        d.stop()
        at = term.wait_for("not answering", at)
        start_daemon(CONFIG)
        at = term.wait_for("reconnected", at)
        term.wait_for("pmd c0", at)
        # q quits at once, whatever the interval.
        term.send(b"q")
        assert term.wait(5) == 0
    finally:
        term.close()
