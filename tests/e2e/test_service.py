"""The daemon under a service manager: watchdog, journal, log rotation, own user.

systemd itself is not running here, so each test provides what systemd
would: the notify socket and ``$WATCHDOG_USEC``, a stderr that
``$JOURNAL_STREAM`` names, logrotate with the shipped snippet, and the
unit's user and capability set through ``setpriv``.
"""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import TEST_CONFIG, DaemonProcess
from .test_real_interfaces import SKIP as NETNS_SKIP
from .test_real_interfaces import Topo, port

ROOT = Path(__file__).resolve().parents[2]
SETPRIV = shutil.which("setpriv")
LOGROTATE = shutil.which("logrotate")


def keepalives(sink: socket.socket, seconds: float) -> list[float]:
    """Arrival times of WATCHDOG=1 datagrams during ``seconds``."""
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sink.settimeout(left)
        try:
            data = sink.recv(4096)
        except TimeoutError:
            break
        if data == b"WATCHDOG=1":
            times.append(time.monotonic())
    return times


@pytest.fixture
def notify_sink(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    addr = str(tmp_path / "notify.sock")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(addr)
    try:
        yield addr, sink
    finally:
        sink.close()


def test_watchdog_keepalives_come_at_half_the_timeout(start_daemon, notify_sink) -> None:  # type: ignore[no-untyped-def]
    addr, sink = notify_sink
    start_daemon(TEST_CONFIG, env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "400000"})
    sink.settimeout(10)
    assert sink.recv(4096) == b"READY=1"
    times = keepalives(sink, 2.0)
    # Every 0.2 s: about 10 in 2 s (a loaded machine may delay a few).
    assert len(times) >= 5, times
    assert max(b - a for a, b in itertools.pairwise(times)) < 1.0


# A task that blocks the event loop for 1.5 s, planted at interpreter start-up.
WEDGE_HOOK = """\
import time
import trio
import pyvswitchd.observe.memory as memory


async def monitor(self, *, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    await trio.sleep(1.0)
    time.sleep(1.5)
    await trio.sleep_forever()


memory.Memory.monitor = monitor
"""


def test_a_wedged_event_loop_stops_the_keepalives(
    start_daemon, notify_sink, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """What makes systemd restart a stuck daemon: keep-alives come from the loop."""
    addr, sink = notify_sink
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(WEDGE_HOOK)
    start_daemon(
        TEST_CONFIG,
        env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "200000", "PYTHONPATH": str(hook)},
    )
    times = keepalives(sink, 4.0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # A WatchdogSec=0.2s unit would have been killed in the 1.5 s gap ...
    assert max(gaps) >= 1.3, gaps
    # ... and the keep-alives resume once the loop turns again.
    assert times[-1] - times[gaps.index(max(gaps)) + 1] > 0.5, times


def test_console_lines_carry_journal_priorities(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The harness reopens stderr.txt with truncation: same inode, known beforehand.
    stderr = tmp_path / "stderr.txt"
    stderr.write_text("")
    st = stderr.stat()
    d = start_daemon(TEST_CONFIG, env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    r = d.appctl("config/set", "pmd-rxq-assign=random")  # replaced, with a WARN line
    assert r.returncode == 0, r.stderr
    d.stop()
    lines = stderr.read_text().splitlines()
    assert lines and all(re.match(r"<[1-7]>\d{4}-", line) for line in lines), lines
    assert any(line.startswith("<5>") and "|INFO|" in line for line in lines), lines
    assert any(line.startswith("<4>") and "|WARN|" in line for line in lines), lines
    # The log file has no prefixes: it is not the journal.
    assert not d.log_path.read_text().startswith("<")


def test_log_renamed_without_reopen_is_followed(daemon) -> None:  # type: ignore[no-untyped-def]
    rotated = daemon.log_path.with_suffix(".log.1")
    daemon.log_path.rename(rotated)
    deadline = time.monotonic() + 10
    while not daemon.log_path.exists() and time.monotonic() < deadline:
        daemon.call("version")  # a line to log is what makes it look
        time.sleep(0.2)
    daemon.call("version")
    assert "was renamed or removed: reopening it" in rotated.read_text()
    assert "received request version" in daemon.log_path.read_text()


def fake_tools(bindir: Path, pyappctl_env: dict[str, str]) -> dict[str, str]:
    """PATH with a ``systemctl`` that says active and a ``pyappctl`` of this checkout."""
    bindir.mkdir()
    (bindir / "systemctl").write_text("#!/bin/sh\nexit 0\n")
    exports = "".join(f"export {k}='{v}'\n" for k, v in pyappctl_env.items())
    (bindir / "pyappctl").write_text(
        f'#!/bin/sh\n{exports}exec {sys.executable} -m pyappctl "$@"\n'
    )
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}


def logrotate_conf(tmp_path: Path, logdir: Path) -> Path:
    conf = tmp_path / "logrotate.conf"
    text = (ROOT / "etc" / "logrotate.d" / "pyvswitch").read_text()
    conf.write_text(text.replace("/var/log/pyvswitch", str(logdir)))
    return conf


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed")
def test_logrotate_snippet_rotates_a_running_daemon(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = fake_tools(tmp_path / "bin", {"PYVSWITCH_RUNDIR": str(daemon.rundir)})
    conf = logrotate_conf(tmp_path, daemon.rundir)
    r = subprocess.run(
        [LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    rotated = daemon.rundir / "pyvswitchd.log.1"
    assert rotated.exists()
    daemon.call("version")
    # vlog/reopen ran: the old file ends with the switch, the new one goes on.
    assert rotated.read_text().rstrip().endswith("|vlog|INFO|closing log file")
    assert "received request version" in daemon.log_path.read_text()


@pytest.fixture
def unprivileged_dir() -> Iterator[Path]:
    """A directory the nobody user owns (pytest's tmp_path is root's, mode 0700)."""
    try:
        nobody, nogroup = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("no user nobody or group nogroup")
    path = Path(tempfile.mkdtemp(prefix="pyvswitchd-unpriv-"))
    os.chown(path, nobody, nogroup)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


UNPRIVILEGED_CONFIG = """\
[daemon]
metrics-address = "none"
ctl-group = "nogroup"

[other_config]
pmd-cpu-mask = "0x1"
pmd-sleep-max = "10000"

[[bridge]]
name = "br0"
{ports}
"""

#: The unit's capability set, nothing more (CapabilityBoundingSet=,
#: AmbientCapabilities=), for user nobody.
UNIT_CAPS = "-all,+net_admin,+net_raw"
NET_ADMIN_RAW = (1 << 12) | (1 << 13)


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _drop_to_nobody() -> tuple[str, ...]:
    assert SETPRIV is not None
    return (
        SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        f"--inh-caps={UNIT_CAPS}", f"--ambient-caps={UNIT_CAPS}",
        f"--bounding-set={UNIT_CAPS}", "--no-new-privs", "--",
    )  # fmt: skip


def _python_for_nobody() -> tuple[str, dict[str, str]] | None:
    """An interpreter user nobody may run, and the environment that finds the packages.

    The test's own may live where nobody cannot go (a pyenv under /root);
    then the system's python3.11 runs the same code with the venv's
    pure-Python site-packages on PYTHONPATH.
    """
    site = sysconfig.get_paths()["purelib"]  # the venv's
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), site])}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if (
            python
            and subprocess.run(
                # Through a shell, as the daemon starts its PMD workers: by exec.
                [*_drop_to_nobody(), "/bin/sh", "-c", f"exec {python} -c 'import trio, h11'"],
                capture_output=True,
                env={**os.environ, **env},
            ).returncode
            == 0
        ):
            return python, env
    return None


@pytest.fixture
def tun_for_everyone() -> Iterator[None]:
    """/dev/net/tun as Debian's udev leaves it (0666); some VMs have it 0600."""
    tun = Path("/dev/net/tun")
    if not tun.exists():
        pytest.skip("no /dev/net/tun")
    mode = tun.stat().st_mode & 0o777
    tun.chmod(0o666)
    try:
        yield
    finally:
        tun.chmod(mode)


@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed")
@pytest.mark.skipif(NETNS_SKIP is not None, reason=NETNS_SKIP or "")
def test_runs_as_an_unprivileged_user_with_the_units_capabilities(  # type: ignore[no-untyped-def]
    unprivileged_dir: Path, tun_for_everyone: None, start_daemon
) -> None:
    """User=, AmbientCapabilities=NET_ADMIN NET_RAW: AF_PACKET, TAP, PMDs, ctl-group."""
    found = _python_for_nobody()
    if found is None:
        pytest.skip("no Python interpreter with this project's packages that nobody can run")
    python, env = found
    topo = Topo()
    topo.down()
    try:
        topo.up()
        # The harness appends `sys.executable -m pyvswitchd ...`: swap the interpreter.
        swap = ("/bin/sh", "-c", f'shift; exec {python} "$@"', "sh")
        drop = ("ip", "netns", "exec", topo.sw, *_drop_to_nobody(), *swap)
        ports = port("va") + port("vb") + port("t0", "tap")
        d: DaemonProcess = start_daemon(
            UNPRIVILEGED_CONFIG.format(ports=ports), rundir=unprivileged_dir, prefix=drop, env=env
        )
        status = _status(d.pid)
        assert status["Uid"].split()[0] == str(pwd.getpwnam("nobody").pw_uid)
        for key in ("CapEff", "CapAmb", "CapBnd"):
            assert int(status[key], 16) == NET_ADMIN_RAW, (key, status[key])
        # ctl-group works without CAP_CHOWN: the daemon's own group.
        assert os.stat(d.ctl_path).st_gid == grp.getgrnam("nogroup").gr_gid
        # AF_PACKET ports forward through a PMD worker ...
        for _ in range(5):
            ping = topo.ping("a", "b")
            if ping.returncode == 0:
                break
        assert ping.returncode == 0, ping.stdout + d.output()
        # ... pinned to its core (sched_setaffinity) and running as nobody too.
        pmds = [
            int(pid)
            for pid in os.listdir("/proc")
            if _comm(pid).startswith("pmd-c00") and _descends_from(int(pid), d.pid)
        ]
        assert pmds, "no PMD worker process"
        for pid in pmds:
            assert _status(pid)["Uid"] == status["Uid"]
            assert os.sched_getaffinity(pid) == {0}
        # The TAP port was created (CAP_NET_ADMIN, /dev/net/tun).
        show = d.call("dpctl/show")
        assert re.search(r"port \d+: t0 \(tap", show), show
        assert topo.exec("sw", "ip", "link", "show", "t0").returncode == 0
        # The log file in a directory the user owns, reopened on request.
        assert d.appctl("vlog/reopen").returncode == 0
        assert d.stop() == 0
    finally:
        topo.down()


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def test_program_name_makes_the_daemon_findable_as_ovs_vswitchd(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TEST_CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyvswitchd", "--config", str(cfg), "--rundir", str(tmp_path),
         "--syslog-method=null", "--program-name=ovs-vswitchd"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        ctl = tmp_path / f"ovs-vswitchd.{proc.pid}.ctl"
        deadline = time.monotonic() + 20
        while not ctl.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ctl.exists()
        assert (tmp_path / "ovs-vswitchd.pid").read_text().strip() == str(proc.pid)
        env = {**os.environ, "PYVSWITCH_RUNDIR": str(tmp_path)}
        for _ in range(100):  # the socket answers before start-up completes
            r = subprocess.run(
                [sys.executable, "-m", "pyappctl", "-t", "ovs-vswitchd", "version"],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.stdout.startswith("ovs-vswitchd (pyvswitch) "), r.stderr
        ovs_appctl = shutil.which("ovs-appctl")
        if ovs_appctl is not None:  # the real client, by program name
            r = subprocess.run(
                [ovs_appctl, "-t", "ovs-vswitchd", "version"],
                capture_output=True,
                text=True,
                env={**os.environ, "OVS_RUNDIR": str(tmp_path)},
                timeout=30,
            )
            assert r.stdout.startswith("ovs-vswitchd (pyvswitch) "), r.stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "|daemon|INFO|ovs-vswitchd (pyvswitch) " in err  # the "ready on" line
    r = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--program-name=../x", "--check-config", str(cfg)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "--program-name: invalid value" in r.stderr


def _descends_from(pid: int, ancestor: int) -> bool:
    # Other daemons (other tests, other checkouts) have PMDs too.
    while pid > 1:
        try:
            pid = int(_status(pid)["PPid"])
        except (OSError, KeyError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False
