"""Flow statistics as OVS main's own tests expect them, on the real daemon.

A datapath flow counts the packets that hit it, not the packet whose upcall
installed it: pmd.at 'PMD - same flow multiple threads' expects one flow per
PMD with ``packets:0, bytes:0, used:never`` after one packet reached each
PMD, and dpif-netdev.at 'datapath flow modification' expects ``packets:1,
bytes:64`` once a second packet followed the first.  (Their OpenFlow parts
-- ``action=controller``, ofctl monitors -- are out of scope: our bridges
are NORMAL learning switches, so keys and actions differ; the statistics
are what is compared.)
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.ovs_at import FLOW_DUMP_PREPEND_PMD, PARSE_PMD_RXQ_SHOW, STRIP_TIMERS, sh

PACKET = (
    "in_port(1),eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)
TWO_PMDS = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x3"
[[bridge]]
name = "br0"
[[bridge.port]]
name = "p1"
type = "dummy-pmd"
options = { n_rxq = 2 }
"""


def wait_until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_same_flow_multiple_threads(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """pmd.at 'PMD - same flow multiple threads'."""
    d = start_daemon(TWO_PMDS)
    rxqs = d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout
    assert sh(sh(rxqs, PARSE_PMD_RXQ_SHOW), "cut -f 4 -d ' ' | sort") == "0\n1\n"
    for qid in ("0", "1"):
        r = d.ovs_appctl("netdev-dummy/receive", "p1", "--qid", qid, PACKET)
        assert (r.returncode, r.stdout) == (0, "")

    def flows() -> list[str]:
        return sh(d.appctl("dpctl/dump-flows").stdout, FLOW_DUMP_PREPEND_PMD).splitlines()

    wait_until(lambda: len(flows()) == 2)
    # Both PMDs installed the flow; neither counts the packet of its upcall.
    pattern = (
        r"{pmd} recirc_id\(0\),in_port\(\d+\),packet_type\(ns=0,id=0\),"
        r"eth\(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a\),eth_type\(0x0800\),ipv4\(frag=no\), "
        r"packets:0, bytes:0, used:never, actions:\d+$"
    )
    for pmd, line in zip((0, 1), flows(), strict=True):
        assert re.match(pattern.format(pmd=pmd), line), line
    # dpctl/show's lookups agree: two misses, no hits.
    assert "  lookups: hit:0 missed:2 lost:0\n" in d.ovs_appctl("dpctl/show").stdout


@pytest.mark.parametrize("port_type", ["dummy", "dummy-pmd"])
def test_flow_counts_packets_after_the_first(start_daemon, port_type: str) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev.at 'datapath flow modification - dummy / dummy-pmd': the
    flow's counters as the test reads them after one, then two packets."""
    d = start_daemon(
        '[daemon]\nmetrics-address = "none"\n[other_config]\ndummy-numa = "0,0,0,0,1,1,1,1"\n'
        f'[[bridge]]\nname = "br0"\n[[bridge.port]]\nname = "p1"\ntype = "{port_type}"\n'
        f'[[bridge.port]]\nname = "p2"\ntype = "{port_type}"\n'
    )
    packet = (
        "in_port(1),packet_type(ns=0,id=0),eth(src=00:06:07:08:09:0a,dst=00:01:02:03:04:05),"
        "eth_type(0x8100),vlan(vid=1000,pcp=5),encap(eth_type(0x0800),"
        "ipv4(src=127.0.0.1,dst=127.0.0.1,proto=0,tos=0,ttl=64,frag=no))"
    )
    assert d.appctl("netdev-dummy/receive", "p1", packet, "--len", "64").returncode == 0

    def dump() -> str:
        return d.ovs_appctl("dpctl/dump-flows").stdout

    wait_until(lambda: "packets:" in dump())
    (line,) = [x for x in dump().splitlines() if "packets:" in x]
    assert ", packets:0, bytes:0, used:never, actions:" in line
    assert d.appctl("netdev-dummy/receive", "p1", packet, "--len", "64").returncode == 0
    wait_until(lambda: "packets:1," in dump())
    (line,) = [x for x in sh(dump(), STRIP_TIMERS).splitlines() if "packets:" in x]
    assert ", packets:1, bytes:64, used:0.0s, actions:" in line, line
