"""End-to-end harness: a real pyvswitchd process in a temporary run directory.

Tests talk to it the way users do: ``pyappctl`` (as a subprocess), the real
``ovs-appctl`` binary, or the Python ``ovs`` library.  When a test fails,
the daemon's log file and stderr are printed with the failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pyappctl.client import UnixctlClient

from .ovsdb_server import OvsdbServer

TEST_CONFIG = """\
[daemon]
metrics-address = "none"

[other_config]
pmd-cpu-mask = "0x1"

[[bridge]]
name = "br0"
"""

OVS_APPCTL = shutil.which("ovs-appctl")


class DaemonProcess:
    """One running pyvswitchd and the ways to reach it."""

    def __init__(
        self,
        rundir: Path,
        config_text: str,
        *extra_args: str,
        env: dict[str, str] | None = None,
        unixctl: str | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        self.rundir = rundir
        self._unixctl = unixctl
        self.config_path = rundir / "pyvswitchd.toml"
        self.config_path.write_text(config_text)
        self.log_path = rundir / "pyvswitchd.log"
        self.stderr_path = rundir / "stderr.txt"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        # ``prefix`` runs the daemon under a wrapper that execs it (so the pid
        # stays the daemon's), e.g. ``ip netns exec NS``.
        self.args = [
            *prefix,
            sys.executable,
            "-m",
            "pyvswitchd",
            "--config",
            str(self.config_path),
            "--rundir",
            str(rundir),
            f"--log-file={self.log_path}",
            "--syslog-method=null",
            "-v",
            "unixctl:file:dbg",
            *(["--unixctl", unixctl] if unixctl else []),
            *extra_args,
        ]
        self.env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            env=self.env,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def ctl_path(self) -> str:
        if self._unixctl:
            return str(self.rundir / self._unixctl)
        return str(self.rundir / f"pyvswitchd.{self.pid}.ctl")

    def _logged_ready(self) -> bool:
        try:
            return " ready on " in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"pyvswitchd exited with {self.proc.returncode}:\n{self.output()}"
                )
            # The socket answers before start-up completes (datapath, metrics):
            # "ready on" in the log is what sd_notify's READY=1 accompanies.
            if os.path.exists(self.ctl_path) and self._logged_ready():
                try:
                    with UnixctlClient(self.ctl_path, timeout=5) as c:
                        c.transact("version")
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"pyvswitchd did not become ready:\n{self.output()}")

    def appctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run pyappctl against this daemon (by socket path)."""
        return subprocess.run(
            [sys.executable, "-m", "pyappctl", "-t", self.ctl_path, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ovs_appctl(
        self, *args: str, target: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        if OVS_APPCTL is None:
            pytest.skip("the real ovs-appctl is not installed (apt-get install openvswitch-common)")
        return subprocess.run(
            [OVS_APPCTL, "-t", target or self.ctl_path, *args],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **(env or {})},
        )

    def call(self, command: str, *args: str) -> str:
        """Transact directly; fail the test on an error reply."""
        with UnixctlClient(self.ctl_path, timeout=30) as c:
            error, result = c.transact(command, list(args))
        assert error is None, error
        assert isinstance(result, str)
        return result

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def output(self) -> str:
        parts = []
        for path in (self.log_path, self.stderr_path):
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def start_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Factory: ``start_daemon(config_text=TEST_CONFIG, *args, env=None)``."""
    started: list[DaemonProcess] = []

    def start(
        config_text: str = TEST_CONFIG,
        *args: str,
        env: dict[str, str] | None = None,
        rundir: Path | None = None,
        unixctl: str | None = None,
        prefix: Sequence[str] = (),
    ) -> DaemonProcess:
        d = DaemonProcess(
            rundir or tmp_path, config_text, *args, env=env, unixctl=unixctl, prefix=prefix
        )
        started.append(d)
        return d

    yield start
    failed = getattr(request.node, "rep_call", None)
    for d in started:
        d.stop()
        if failed is not None and failed.failed:
            print(f"\n===== pyvswitchd pid {d.pid} output =====\n{d.output()}")


@pytest.fixture
def daemon(start_daemon) -> DaemonProcess:  # type: ignore[no-untyped-def]
    return start_daemon()  # type: ignore[no-any-return]


@pytest.fixture
def ovsdb(tmp_path: Path) -> Iterator[OvsdbServer]:
    """A real ovsdb-server with the Open_vSwitch schema, in the test's directory."""
    server = OvsdbServer(tmp_path / "ovsdb")
    yield server
    server.stop()
