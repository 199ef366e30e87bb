"""Run-time configuration of the real daemon: what config/show says is what is in effect.

``[daemon]`` keys set with ``config/set`` or a reload act at once (the
control socket's mode and group, the metrics listener) or are refused;
``config/show`` reports the values in effect, command-line overrides
included.
"""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from .conftest import TEST_CONFIG, DaemonProcess
from .test_lifecycle import wait_for
from .test_metrics import free_port


def metrics_config(port: int) -> str:
    return TEST_CONFIG.replace('metrics-address = "none"', f'metrics-address = "127.0.0.1:{port}"')


def serves(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def shown_daemon(d: DaemonProcess) -> dict[str, str]:
    data = json.loads(d.appctl("-f", "json", "config/show").stdout)
    return dict(data["daemon"])


def other_group() -> grp.struct_group:
    mine = os.getegid()
    for group in grp.getgrall():
        if group.gr_gid != mine:
            return group
    pytest.skip("no group other than the daemon's own on this system")


def test_ctl_mode_and_group_set_at_run_time_change_the_socket(daemon) -> None:  # type: ignore[no-untyped-def]
    path = daemon.ctl_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770
    r = daemon.appctl("config/set", "daemon:ctl-mode=0700")
    assert (r.returncode, r.stderr) == (0, "")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert shown_daemon(daemon)["ctl-mode"] == "0700"
    group = other_group()
    assert daemon.appctl("config/set", f"daemon:ctl-group={group.gr_name}").returncode == 0
    assert os.stat(path).st_gid == group.gr_gid
    assert shown_daemon(daemon)["ctl-group"] == group.gr_name
    # Back to the default: the daemon's own group.
    assert daemon.appctl("config/set", "daemon:ctl-group=").returncode == 0
    assert os.stat(path).st_gid == os.getegid()
    # A reload applies the file's values again.
    assert daemon.appctl("config/reload").returncode == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o770
    assert "control socket" in daemon.log_path.read_text()


def test_metrics_address_set_at_run_time_moves_the_listener(start_daemon) -> None:  # type: ignore[no-untyped-def]
    first, second = free_port(), free_port()
    d = start_daemon(metrics_config(first))
    assert serves(first)
    r = d.appctl("config/set", f"daemon:metrics-address=127.0.0.1:{second}")
    assert (r.returncode, r.stderr) == (0, "")
    assert serves(second) and not serves(first)
    assert shown_daemon(d)["metrics-address"] == f"127.0.0.1:{second}"
    assert d.appctl("config/set", "daemon:metrics-address=none").returncode == 0
    assert not serves(second)
    assert shown_daemon(d)["metrics-address"] == "none"
    # SIGHUP / config/reload: back to the file's address.
    assert d.appctl("config/reload").returncode == 0
    assert serves(first)


def test_metrics_address_that_cannot_be_bound_is_refused(start_daemon) -> None:  # type: ignore[no-untyped-def]
    first = free_port()
    d = start_daemon(metrics_config(first))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        r = d.appctl("config/set", f"daemon:metrics-address=127.0.0.1:{busy}", "max-idle=2000")
        assert r.returncode == 2
        assert r.stderr.startswith("configuration not changed: daemon:metrics-address: ")
        assert "cannot listen" in r.stderr
        # Nothing changed: neither the listener nor the other key.
        assert serves(first)
        assert shown_daemon(d)["metrics-address"] == f"127.0.0.1:{first}"
        assert "  max-idle=10000\n" in d.appctl("config/show").stdout
        # The same through a reload of the file.
        d.config_path.write_text(metrics_config(busy))
        r = d.appctl("config/reload")
        assert r.returncode == 2 and "daemon:metrics-address: cannot listen" in r.stderr
        assert serves(first)


def test_config_show_reports_the_command_line_metrics_address(start_daemon) -> None:  # type: ignore[no-untyped-def]
    configured, given = free_port(), free_port()
    d = start_daemon(metrics_config(configured), f"--metrics-address=127.0.0.1:{given}")
    assert serves(given) and not serves(configured)
    assert shown_daemon(d)["metrics-address"] == f"127.0.0.1:{given}"
    assert (
        f"  metrics-address=127.0.0.1:{given} (from --metrics-address)\n"
        in d.appctl("config/show").stdout
    )
    r = d.appctl("config/set", f"daemon:metrics-address=127.0.0.1:{configured}")
    assert r.returncode == 2 and "--metrics-address" in r.stderr and "restart" in r.stderr
    assert d.appctl("config/reload").returncode == 0
    assert serves(given) and not serves(configured)


def test_metrics_port_taken_at_start_fails_the_start(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """It used to run on without /metrics (config/show said why); now it does not start."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"127.0.0.1:{busy}: cannot listen: Address"):
            start_daemon(metrics_config(busy))


PORTS_CONFIG = (
    TEST_CONFIG
    + """\
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
  [[bridge.port]]
  name = "p1"
  type = "dummy"
"""
)


def port_names(d: DaemonProcess) -> list[str]:
    return [line.split()[2] for line in d.call("dpctl/show").splitlines() if "  port " in line]


def check_config(path: os.PathLike[str] | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_empty_file_is_refused_by_sighup_reload_and_check(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(PORTS_CONFIG)
    assert port_names(d) == ["ovs-netdev", "br0", "p0", "p1"]
    d.config_path.write_bytes(b"")  # the half-written file
    os.kill(d.pid, signal.SIGHUP)
    wait_for(lambda: "configuration not reloaded" in d.log_path.read_text())
    assert "holds no settings" in d.log_path.read_text()
    assert port_names(d) == ["ovs-netdev", "br0", "p0", "p1"]
    r = d.appctl("config/reload")
    assert r.returncode == 2 and "holds no settings" in r.stderr
    r = check_config(d.config_path)
    assert r.returncode == 1 and "holds no settings" in r.stderr
    assert port_names(d) == ["ovs-netdev", "br0", "p0", "p1"]


def test_reload_dropping_every_bridge_needs_the_file_to_say_so(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(PORTS_CONFIG)
    # Cut short after the first tables: valid TOML, but not a switch any more.
    d.config_path.write_text('[daemon]\nmetrics-address = "none"\n[other_config]\n')
    r = d.appctl("config/reload")
    assert r.returncode == 2
    assert "would remove every bridge (br0)" in r.stderr and "bridge = []" in r.stderr
    assert port_names(d) == ["ovs-netdev", "br0", "p0", "p1"]
    r = check_config(d.config_path)
    assert r.returncode == 0 and "bridge = []" in r.stdout
    # At the top: a bare key after a [table] header would belong to that table.
    d.config_path.write_text('bridge = []\n[daemon]\nmetrics-address = "none"\n')
    assert d.appctl("config/reload").returncode == 0
    assert port_names(d) == []


OVS_FALLBACKS = """\
[daemon]
metrics-address = "none"
[other_config]
pmd-cpu-mask = "0x1"
pmd-sleep-max = "-5"
[[bridge]]
name = "br0"
other_config = { mac-table-size = -1, mac-aging-time = "abc" }
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
"""
NOTES = (
    'other_config:pmd-sleep-max: invalid value "-5": entry "-5" is over 10000 us, capped; '
    'using "10000"',
    'bridge:br0:mac-table-size: invalid value "-1": expected an integer from 10 to 1000000; '
    "using 1000000",
    'bridge:br0:mac-aging-time: invalid value "abc": expected an integer from 15 to 3600 s; '
    "using 300",
)


def test_ovs_keys_are_read_as_ovs_does_and_never_silently(start_daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(OVS_FALLBACKS)
    log = d.log_path.read_text()
    for note in NOTES:
        assert f"|daemon|WARN|{note}" in log
    # Effective values: a sleep bound (OVS's strtoull wraps -5, then caps it), not busy polling.
    assert "Default max sleep: 10000 us" in d.call("dpif-netdev/pmd-sleep-show")
    show = d.appctl("config/show").stdout
    assert "  pmd-sleep-max=10000\n" in show
    assert "  mac-table-size=1000000\n" in show and "  mac-aging-time=300\n" in show
    r = d.appctl("config/set", "pmd-sleep-max=abc")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout == (
        'other_config:pmd-sleep-max: invalid value "abc": entry "abc" is not a number, '
        "ignored; using 0 us for every PMD (busy polling)\n"
    )
    assert "Default max sleep:    0 us" in d.call("dpif-netdev/pmd-sleep-show")
    # A reload logs them again; --check-config reports them.
    assert d.appctl("config/reload").returncode == 0
    assert d.log_path.read_text().count(NOTES[0]) == 2
    r = check_config(d.config_path)
    assert r.returncode == 0
    for note in NOTES:
        assert f"{d.config_path}: warning: {note}\n" in r.stdout


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ('  [[bridge.port]]\n  name = "p9"\n  type = "bogus"\n', 'unknown netdev type "bogus"'),
        (
            '  [[bridge.port]]\n  name = "p9"\n  type = "dummy-pmd"\n'
            "  options = { n_rxq = 100000 }\n",
            'bad n_rxq "100000"',
        ),
        (
            '  [[bridge.port]]\n  name = "src"\n  type = "traffic-source"\n'
            '  options = { pcap = "/nonexistent/replay.pcap" }\n',
            "/nonexistent/replay.pcap: ",
        ),
    ],
)
def test_bad_port_options_are_errors_everywhere(start_daemon, tmp_path, ports, message) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text(PORTS_CONFIG + ports)
    # --check-config
    r = check_config(bad)
    assert r.returncode == 1 and message in r.stderr and 'bridge "br0" port "' in r.stderr
    # start-up
    rundir = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--config", str(bad), "--rundir", str(rundir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and r.stderr.startswith("pyvswitchd: ") and message in r.stderr
    # reload (config/reload and SIGHUP): refused, nothing applied
    running = PORTS_CONFIG.replace("[other_config]\n", "[other_config]\nmax-idle = 5000\n")
    d = start_daemon(running)
    d.config_path.write_text(PORTS_CONFIG + ports)
    r = d.appctl("config/reload")
    assert r.returncode == 2 and r.stderr.startswith("configuration not reloaded: bridge ")
    assert message in r.stderr
    os.kill(d.pid, signal.SIGHUP)
    wait_for(lambda: d.log_path.read_text().count("keeping the running one") == 2)
    assert port_names(d) == ["ovs-netdev", "br0", "p0", "p1"]
    assert "  max-idle=5000\n" in d.appctl("config/show").stdout


def test_check_config_reports_what_start_would_only_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "warn.toml"
    path.write_text(
        PORTS_CONFIG
        + '  [[bridge.port]]\n  name = "pvsgone0"\n  type = "system"\n'
        + '  other_config = { pmd-rxq-affinity = "0:x" }\n'
    )
    r = check_config(path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f'{path}: warning: bridge "br0" port "pvsgone0": no network interface of that name '
        "(yet): the port waits for it",
        f'{path}: warning: bridge "br0" port "pvsgone0" other_config:pmd-rxq-affinity: '
        "invalid value \"0:x\": invalid pmd-rxq-affinity entry '0:x'; ignored, as OVS does "
        "(the queues keep their pinning)",
        f"{path}: OK (1 bridges, 3 ports)",
    ]
