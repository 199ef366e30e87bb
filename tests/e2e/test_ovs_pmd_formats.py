"""Formats where OVS main differs from 3.1, read as main's own tests read them.

``pmd-perf-show`` has no ``MFEX Opt hits`` line (pmd.at 'PMD - stats',
through that test's sed filters); ``dpctl/show`` gives a ``dummy-pmd``
port's requested ``n_rxq``, ``n_txq`` and ``numa_id`` (pmd.at 'PMD -
dpctl', 'PMD - multiqueue support', 'PMD - pmd-cpu-mask - dual NUMA',
'PMD - reconfigure n_rxq'); a flow whose in_port is not exact is refused as
dpif-netdev.at 'check dpctl/add-flow in_port exact match' expects.
"""

from __future__ import annotations

import re
import time

from tests.e2e.conftest import DaemonProcess
from tests.e2e.ovs_at import SED_NUMA_CORE_PATTERN, LogWatch, sh

STATS_CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0,0,0"
emc-insert-inv-prob = 1
smc-enable = true
[[bridge]]
name = "br0"
[[bridge.port]]
name = "p0"
type = "dummy-pmd"
options = { n_rxq = 4 }
ofport_request = 7
"""
STATS_PACKET = (
    "in_port(7),eth(src=50:54:00:00:00:77,dst=50:54:00:00:01:78),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)
PERF_FILTER = f"{SED_NUMA_CORE_PATTERN} | sed '/cycles/d' | sed '/[Ii]teration/d'"


#: 'PMD - stats': the PMD's block before any packet, through the scenario's filters ...
STATS_BEFORE = (
    "pmd thread numa_id <cleared> core_id <cleared>:\n"
    "\n"
    "  Rx packets:                    0\n"
    "  Tx packets:                    0\n"
)
#: ... and after its 20 packets.
STATS_AFTER = (
    "pmd thread numa_id <cleared> core_id <cleared>:\n"
    "\n"
    "  Datapath passes:              20  (1.00 passes/pkt)\n"
    "  - PHWOL hits:                  0  (  0.0 %)\n"
    "  - Simple Match hits:           0  (  0.0 %)\n"
    "  - EMC hits:                   19  ( 95.0 %)\n"
    "  - SMC hits:                    0  (  0.0 %)\n"
    "  - Megaflow hits:               0  (  0.0 %, 0.00 subtbl lookups/hit)\n"
    "  - Upcalls:                     1  (  5.0 %, <cleared> us/upcall)\n"
    "  - Lost upcalls:                0  (  0.0 %)\n"
    "  Tx packets:                   20  (<cleared> Kpps)\n"
    "  Tx batches:                   20  (1.00 pkts/batch)\n"
)


def stats_before(d: DaemonProcess) -> str:
    """'PMD - stats': ``pmd-perf-show | <filters> | grep pmd -A 3`` before the packets."""
    time.sleep(0.2)  # a measurement duration above zero
    return sh(d.ovs_appctl("dpif-netdev/pmd-perf-show").stdout, f"{PERF_FILTER} | grep pmd -A 3")


def send_stats_packets(d: DaemonProcess) -> None:
    """'PMD - stats': time stopped, 20 packets on p0 between two 100 ms warps."""
    assert d.ovs_appctl("time/stop").returncode == 0
    assert d.ovs_appctl("time/warp", "100").stdout == "warped\n"
    for _ in range(20):
        assert d.ovs_appctl("netdev-dummy/receive", "p0", STATS_PACKET).returncode == 0
    assert d.appctl("time/warp", "100").stdout == "warped\n"


def stats_after(d: DaemonProcess) -> str:
    """'PMD - stats': the PMD block once the 20 packets are out, through its filters."""
    deadline = time.monotonic() + 10
    while "  Tx packets:                   20" not in (
        out := d.ovs_appctl("dpif-netdev/pmd-perf-show").stdout
    ):
        assert time.monotonic() < deadline, out
        time.sleep(0.05)
    return sh(
        out,
        f"{PERF_FILTER} | sed 's/, .* us/, <cleared> us/' "
        "| sed 's/[0-9]* Kpps/<cleared> Kpps/' | grep pmd -A 11",
    )


def test_pmd_stats(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """pmd.at 'PMD - stats': pmd-perf-show before and after 20 packets."""
    d = start_daemon(STATS_CONFIG)
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    # The scenario's ofport_request=7 (the datapath number is the netdev datapath's).
    assert "\n    p0 7/2: (dummy-pmd: n_rxq=4" in d.ovs_appctl("dpif/show").stdout
    assert stats_before(d) == STATS_BEFORE
    send_stats_packets(d)
    assert stats_after(d) == STATS_AFTER
    # pmd-stats-show is the same command in main.
    alias = d.ovs_appctl("dpif-netdev/pmd-stats-show").stdout
    assert "MFEX" not in alias and "  - EMC hits:                   19  ( 95.0 %)\n" in alias


PORTS_CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "1,1,0,0"
pmd-cpu-mask = "1"
[[bridge]]
name = "br0"
[[bridge.port]]
name = "p0"
type = "dummy-pmd"
{options}
[[bridge.port]]
name = "p2"
type = "dummy"
"""


def port_lines(text: str) -> list[str]:
    return [
        re.sub(r"port \d+:", "port N:", x) for x in text.splitlines() if " p0 " in x or " p2 " in x
    ]


def test_dpctl_show_dummy_port_status(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """pmd.at: dummy-pmd ports show their requested queues and NUMA node,
    dummy ports their type alone ('PMD - dpctl'); n_rxq=8 on NUMA 1 ('PMD -
    multiqueue support', 'PMD - pmd-cpu-mask - dual NUMA'); back to one
    queue once the option is removed ('PMD - reconfigure n_rxq')."""
    d = start_daemon(PORTS_CONFIG.format(options="options = { n_rxq = 8, numa_id = 1 }"))
    assert port_lines(d.ovs_appctl("dpctl/show").stdout) == [
        "  port N: p0 (dummy-pmd: n_rxq=8, n_txq=1, numa_id=1)",
        "  port N: p2 (dummy)",
    ]
    d.config_path.write_text(PORTS_CONFIG.format(options=""))
    assert d.appctl("config/reload").returncode == 0
    assert port_lines(d.appctl("dpctl/show").stdout) == [
        "  port N: p0 (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0)",
        "  port N: p2 (dummy)",
    ]


def test_add_flow_without_exact_in_port(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev.at 'check dpctl/add-flow in_port exact match': EINVAL to
    the client, the reason in the log (at ERR, as main logs it)."""
    d = start_daemon(PORTS_CONFIG.format(options=""))
    log = LogWatch(d.log_path)
    log.mark()
    r = d.ovs_appctl("dpctl/add-flow", "eth(),eth_type(0x0800),ipv4()", "3")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines()[0] == "pyvswitchd: updating flow table (Invalid argument)"
    line = log.wait("flow: in_port is not an exact match")
    assert "|ERR|failed to put[create] flow: in_port is not an exact match" in line
