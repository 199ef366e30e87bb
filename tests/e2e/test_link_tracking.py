"""The real daemon following its interfaces: deleted and re-created veths, late ones.

Same topology as test_real_interfaces.py (hosts a, b, c on veths to the
switch namespace, the daemon inside it).  Needs CAP_NET_ADMIN and ping;
skipped with the reason otherwise.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import DaemonProcess
from .test_real_interfaces import (
    CONFIG,
    ETHTOOL,
    OFFLOADS_OFF,
    PING,
    SKIP,
    Topo,
    ping_ok,
    port,
    sh,
    start,
)
from .test_real_interfaces import topo as topo_fixture

topo = topo_fixture  # the fixture, under the name the tests ask for

pytestmark = [
    pytest.mark.skipif(SKIP is not None, reason=SKIP or ""),
    pytest.mark.skipif(PING is None, reason="ping is not installed (apt-get install iputils-ping)"),
]


def add_host(topo: Topo, host: str) -> None:
    """(Re)create host ``host``'s veth: eth0 in its namespace, v<host> in the switch's."""
    ns = topo.ns[host]
    sh("ip", "-n", topo.sw, "link", "add", f"v{host}", "type", "veth",
       "peer", "name", "eth0", "netns", ns)  # fmt: skip
    sh("ip", "-n", ns, "addr", "add", f"{topo.addr(host)}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", topo.sw, "link", "set", f"v{host}", "up")
    if ETHTOOL is not None:
        for where, dev in ((ns, "eth0"), (topo.sw, f"v{host}")):
            sh("ip", "netns", "exec", where, ETHTOOL, "-K", dev, *OFFLOADS_OFF, check=False)


def wait_show(d: DaemonProcess, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        show = d.call("dpctl/show")
        if re.search(pattern, show):
            return show
        if time.monotonic() > deadline:
            raise AssertionError(f"dpctl/show never matched {pattern!r}:\n{show}")
        time.sleep(0.05)


def test_deleted_and_recreated_veth_forwards_again(start_daemon, topo: Topo) -> None:  # type: ignore[no-untyped-def]
    d = start(start_daemon, topo, port("va"), port("vb"))
    ping_ok(topo, "a", "b")
    number = re.search(r"port (\d+): va ", d.call("dpctl/show")).group(1)  # type: ignore[union-attr]
    sh("ip", "-n", topo.sw, "link", "del", "va")
    wait_show(d, r"va \(system: .*error")
    add_host(topo, "a")
    # No reload: the link tracker reopens it, under the same port number.
    wait_show(d, rf"port {number}: va \(system: ifindex=\d+, link=up")
    ping_ok(topo, "a", "b")
    assert "reopened in datapath ovs-netdev" in d.log_path.read_text()
    assert d.proc.poll() is None


def test_interface_missing_at_start_joins_when_it_appears(start_daemon, topo: Topo) -> None:  # type: ignore[no-untyped-def]
    sh("ip", "-n", topo.sw, "link", "del", "vc")
    d = start(start_daemon, topo, port("va"), port("vc"))
    assert (
        '  port -: vc (system: error="could not open network device vc (No such device)")\n'
        in d.call("dpctl/show")
    )
    # Logged in ovs-vswitchd's words, once.
    assert "|WARN|could not open network device vc (No such device)\n" in d.log_path.read_text()
    add_host(topo, "c")
    wait_show(d, r"port \d+: vc \(system: ifindex=\d+, link=up")
    ping_ok(topo, "a", "c")


def test_link_tracking_without_pmds(start_daemon, topo: Topo) -> None:  # type: ignore[no-untyped-def]
    """The control side alone: no PMD polls the ports (mask 0), so no worker is involved."""
    sh("ip", "-n", topo.sw, "link", "del", "vc")
    config = CONFIG.replace('pmd-cpu-mask = "0x1"', 'pmd-cpu-mask = "0x0"')
    d: DaemonProcess = start_daemon(
        config.format(ports=port("va") + port("vc")), prefix=("ip", "netns", "exec", topo.sw)
    )
    # Missing at start: listed with its error, opened when it appears.
    assert '  port -: vc (system: error="could not open network device vc' in d.call("dpctl/show")
    add_host(topo, "c")
    wait_show(d, r"port \d+: vc \(system: ifindex=\d+, link=")
    # Deleted: marked gone at once (nothing polls it, so only the tracker can tell).
    show = d.call("dpctl/show")
    number, ifindex = re.search(r"port (\d+): va \(system: ifindex=(\d+)", show).groups()  # type: ignore[union-attr]
    sh("ip", "-n", topo.sw, "link", "del", "va")
    wait_show(d, rf"port {number}: va \(system: ifindex={ifindex}, error=\"device va disappeared")
    # Re-created: reopened, same port number, another interface index.
    add_host(topo, "a")
    show = wait_show(d, rf"port {number}: va \(system: ifindex=(?!{ifindex}\b)\d+, link=")
    log = d.log_path.read_text()
    assert f"Port {number} (va) reopened in datapath ovs-netdev" in log
    assert "va: device va disappeared; port disabled until the interface is back" in log
    # A reload with nothing changed keeps it as it is.
    assert d.appctl("config/reload").returncode == 0
    assert re.search(rf"port {number}: va \(system: ifindex=\d+, link=", d.call("dpctl/show"))
    assert d.proc.poll() is None
