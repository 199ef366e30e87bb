"""The shipped service files: systemd unit and logrotate snippet."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "pyvswitchd.service"


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


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this environment's script.
    script = Path(sys.executable).with_name("pyvswitchd")
    unit = tmp_path / "pyvswitchd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/pyvswitchd", str(script)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert (r.returncode, r.stderr.strip()) == (0, "")


def test_logrotate_snippet_reopens_the_log() -> None:
    text = (ROOT / "etc" / "logrotate.d" / "pyvswitch").read_text()
    assert "/var/log/pyvswitch/*.log" in text
    assert "pyappctl -t pyvswitchd -T 5 vlog/reopen" in text


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
