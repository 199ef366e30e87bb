"""The shipped service files: systemd unit, sysusers file, logrotate snippet."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "pyvswitchd.service"
SYSUSERS = ROOT / "systemd" / "pyvswitch.sysusers"
#: Where README's install puts the daemon (a venv: pip into the system is refused).
INSTALLED = "/opt/pyvswitch/bin/pyvswitchd"
#: systemd-analyze security's score for the unit may only get better.
MAX_EXPOSURE = 2.6

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def unit_sections() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_unit_has_the_service_contract() -> None:
    service = unit_sections()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["RuntimeDirectory"] == "pyvswitch"
    assert set(service["CapabilityBoundingSet"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes"
    assert service["ProtectSystem"] == "strict"
    # AF_PACKET and TAP ports must stay possible under the hardening.
    assert "AF_PACKET" in service["RestrictAddressFamilies"].split()
    assert service["DeviceAllow"] == "/dev/net/tun rw"
    assert "--rundir /run/pyvswitch" in service["ExecStart"]


def test_unit_runs_the_venv_install_as_its_own_user() -> None:
    service = unit_sections()["Service"]
    assert service["ExecStart"].split()[0] == INSTALLED
    assert (service["User"], service["Group"]) == ("pyvswitch", "pyvswitch")
    # The user is what the sysusers file creates.
    users = [line.split() for line in SYSUSERS.read_text().splitlines() if line.startswith("u ")]
    assert [u[1] for u in users] == [service["User"]]
    assert set(service["AmbientCapabilities"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    # Journal: the console is the one destination (no second copy through syslog).
    assert "--syslog-method=null" in service["ExecStart"]


def test_unit_has_a_watchdog_and_protects_itself_from_the_oom_killer() -> None:
    service = unit_sections()["Service"]
    assert service["WatchdogSec"] == "30s"
    # Restart=on-failure also restarts after a watchdog timeout.
    assert service["Restart"] == "on-failure"
    assert -1000 < int(service["OOMScoreAdjust"]) < 0


def test_make_run_uses_the_built_in_demo() -> None:
    """etc/pyvswitchd.toml is inert: `make run` must not point at it."""
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "pyvswitchd --rundir" in recipe and "--config" not in recipe


def _verifiable_unit(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this environment's script.
    script = Path(sys.executable).with_name("pyvswitchd")
    unit = tmp_path / "pyvswitchd.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(script)))
    return unit


@needs_analyze
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    unit = _verifiable_unit(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert (r.returncode, r.stderr.strip()) == (0, "")


@needs_analyze
def test_systemd_analyze_security_score(tmp_path: Path) -> None:
    unit = _verifiable_unit(tmp_path)
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    if "--offline" in r.stderr and "unrecognized" in r.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or newer")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert found, r.stdout + r.stderr
    assert float(found[1]) <= MAX_EXPOSURE, r.stdout


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_file_creates_the_user(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    r = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    group = (tmp_path / "etc" / "group").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("pyvswitch:"))
    assert user[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    assert any(line.startswith(f"pyvswitch:x:{user[3]}:") for line in group)


def test_logrotate_snippet_reopens_the_log() -> None:
    text = (ROOT / "etc" / "logrotate.d" / "pyvswitch").read_text()
    assert "/var/log/pyvswitch/*.log" in text
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    reopen = next(line for line in lines if "vlog/reopen" in line)
    # Found on PATH, and its failure is not hidden.
    assert reopen == "pyappctl -t pyvswitchd -T 5 vlog/reopen"
    assert not any("/usr/local" in line or "/opt" in line for line in lines)


def _rotate_with(tmp_path: Path, pyappctl: str) -> subprocess.CompletedProcess[str]:
    """Force a rotation of a scratch log with stand-ins for systemctl and pyappctl."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "systemctl").write_text("#!/bin/sh\nexit 0\n")  # "the service is active"
    (bindir / "pyappctl").write_text(f"#!/bin/sh\n{pyappctl}\n")
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "pyvswitchd.log").write_text("x\n")
    conf = tmp_path / "pyvswitch"
    conf.write_text(
        (ROOT / "etc" / "logrotate.d" / "pyvswitch")
        .read_text()
        .replace("/var/log/pyvswitch", str(logs))
    )
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_reports_a_failed_reopen(tmp_path: Path) -> None:
    r = _rotate_with(tmp_path, 'echo "vlog/reopen: Permission denied" >&2; exit 2')
    assert r.returncode != 0
    assert "vlog/reopen: Permission denied" in r.stderr
    assert "error" in r.stderr.lower()


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_succeeds_when_the_reopen_does(tmp_path: Path) -> None:
    r = _rotate_with(tmp_path, 'test "$*" = "-t pyvswitchd -T 5 vlog/reopen"')
    assert (r.returncode, r.stderr) == (0, "")
    assert (tmp_path / "logs" / "pyvswitchd.log.1").read_text() == "x\n"


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_accepts_the_snippet(tmp_path: Path) -> None:
    conf = tmp_path / "pyvswitch"
    conf.write_text(
        (ROOT / "etc" / "logrotate.d" / "pyvswitch")
        .read_text()
        .replace("/var/log/pyvswitch", str(tmp_path))
    )
    (tmp_path / "pyvswitchd.log").write_text("x\n")
    r = subprocess.run(
        ["logrotate", "-d", "-s", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower()


OVSDB_UNIT = ROOT / "systemd" / "pyvswitch-ovsdb.service"
OVSDB_DROP_IN = ROOT / "systemd" / "pyvswitchd.service.d" / "ovsdb.conf"
OVSDB_SOCKET = "/run/pyvswitch-ovsdb/db.sock"


@needs_analyze
@pytest.mark.skipif(
    not all(os.path.exists(p) for p in ("/usr/sbin/ovsdb-server", "/usr/bin/ovs-vsctl")),
    reason="ovsdb-server or ovs-vsctl not installed (apt-get install openvswitch-switch)",
)
def test_ovsdb_unit_verifies_clean() -> None:
    r = subprocess.run(
        ["systemd-analyze", "verify", str(OVSDB_UNIT)], capture_output=True, text=True
    )
    assert (r.returncode, r.stderr.strip()) == (0, "")


def test_ovsdb_unit_serves_the_socket_the_docs_name() -> None:
    unit = OVSDB_UNIT.read_text()
    assert f"--remote=punix:{OVSDB_SOCKET}" in unit
    assert "User=pyvswitch" in unit and "RuntimeDirectory=pyvswitch-ovsdb" in unit
    assert "Before=pyvswitchd.service" in unit
    readme = (ROOT / "README.md").read_text()
    assert f'db = "unix:{OVSDB_SOCKET}"' in readme
    assert f"--db=unix:{OVSDB_SOCKET}" in readme
    drop_in = configparser.RawConfigParser()
    drop_in.optionxform = str  # type: ignore[assignment,method-assign]
    drop_in.read_string(OVSDB_DROP_IN.read_text())
    assert drop_in["Unit"]["After"] == "pyvswitch-ovsdb.service"
    # The switch outlives a restart of its database server: no Requires=.
    assert drop_in["Unit"]["Wants"] == "pyvswitch-ovsdb.service"
    assert "Requires" not in drop_in["Unit"]
