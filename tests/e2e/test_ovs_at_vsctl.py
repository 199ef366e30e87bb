"""OVS's PMD scenarios as their .at files run them: ovs-vsctl on a real database.

The other translations (test_ovs_pmd_logs.py and its kin) turn each
``ovs-vsctl`` step into TOML and ``config/set``.  Here the daemon runs
with ``--db`` and ``--dummy-numa`` as ovs-vswitchd runs in OVS's test
suite, and each step is the .at file's own ovs-vsctl command line: the
bridge of OVS_VSWITCHD_START (``datapath-type=dummy`` with its
other-config, fail-mode and protocols, which this switch does not use
but takes), ``add-port`` with ``type=dummy-pmd``, ``set Open_vSwitch .
other_config:...``.  The expected texts are the .at file's, unmasked:
``dummy@ovs-dummy``, ``br0 65534/100``, ``p0 1/1``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import DaemonProcess
from .ovs_log import OvsLog
from .ovsdb_server import SKIP, OvsdbServer
from .test_ovs_pmd_formats import (
    STATS_AFTER,
    STATS_BEFORE,
    send_stats_packets,
    stats_after,
    stats_before,
)
from .test_ovs_pmd_logs import EIGHT_RXQ_SHOW, ONE_RXQ_SHOW, rxq_groups, rxq_show_masked
from .test_ovsdb import DAEMON_ONLY

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

#: OVS_VSWITCHD_START's bridge (tests/ofproto-macros.at), as ovs-vsctl arguments.
VSWITCHD_START_BRIDGE = (
    "--", "add-br", "br0",
    "--", "set", "bridge", "br0", "datapath-type=dummy", "fail-mode=secure",
    "other-config:datapath-id=fedcba9876543210", "other-config:hwaddr=aa:55:aa:55:00:00",
    "protocols=[OpenFlow10,OpenFlow11,OpenFlow12,OpenFlow13,OpenFlow14,OpenFlow15]",
)  # fmt: skip
#: pmd.at's DUMMY_NUMA.
DUMMY_NUMA = "--dummy-numa=0,0,0,0"


def vswitchd_start(
    start_daemon: Callable[..., DaemonProcess], ovsdb: OvsdbServer, *vsctl_args: str
) -> tuple[DaemonProcess, OvsLog]:
    """OVS_VSWITCHD_START([VSCTL_ARGS], [], [], [DUMMY_NUMA]) against pyvswitchd."""
    d = start_daemon(DAEMON_ONLY, "--db", ovsdb.remote, DUMMY_NUMA)
    ovsdb.vsctl(*VSWITCHD_START_BRIDGE, "--", *vsctl_args)
    return d, OvsLog(d.log_path)


def test_pmd_creating_a_thread_add_port(start_daemon, ovsdb: OvsdbServer) -> None:  # type: ignore[no-untyped-def]
    """PMD - creating a thread/add-port."""
    d, log = vswitchd_start(
        start_daemon, ovsdb, "add-port", "br0", "p0", "--", "set", "Interface", "p0",
        "type=dummy-pmd",
    )  # fmt: skip
    log.check_cpu_discovered()
    log.check_pmd_threads_created()
    assert rxq_show_masked(d) == ONE_RXQ_SHOW
    assert d.ovs_appctl("dpif/show").stdout == (
        "dummy@ovs-dummy: hit:0 missed:0\n"
        "  br0:\n"
        "    br0 65534/100: (dummy-internal)\n"
        "    p0 1/1: (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0)\n"
    )


def test_pmd_cpu_mask_distribution_of_rx_queues(start_daemon, ovsdb: OvsdbServer) -> None:  # type: ignore[no-untyped-def]
    """PMD - pmd-cpu-mask/distribution of rx queues."""
    d, log = vswitchd_start(
        start_daemon, ovsdb, "add-port", "br0", "p0", "--", "set", "Interface", "p0",
        "type=dummy-pmd", "options:n_rxq=8",
    )  # fmt: skip
    log.check_cpu_discovered(2)
    log.check_pmd_threads_created()
    assert d.ovs_appctl("dpif/show").stdout == (
        "dummy@ovs-dummy: hit:0 missed:0\n"
        "  br0:\n"
        "    br0 65534/100: (dummy-internal)\n"
        "    p0 1/1: (dummy-pmd: n_rxq=8, n_txq=1, numa_id=0)\n"
    )
    assert rxq_show_masked(d) == EIGHT_RXQ_SHOW

    start = log.next_line_num()
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-rxq-assign=roundrobin")
    log.wait_grep("Performing pmd to rx queue assignment using roundrobin algorithm", start)

    start = log.next_line_num()
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3")
    log.check_pmd_threads_created(2, "", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 2 4 6", "port: p0 queue-id: 1 3 5 7"]

    start = log.next_line_num()
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-rxq-assign=cycles")
    log.wait_grep("Performing pmd to rx queue assignment using cycles algorithm", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 3 4 7", "port: p0 queue-id: 1 2 5 6"]

    start = log.next_line_num()
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-rxq-assign=group")
    log.wait_grep("Performing pmd to rx queue assignment using group algorithm", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 2 4 6", "port: p0 queue-id: 1 3 5 7"]

    start = log.next_line_num()
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x1")
    log.check_pmd_threads_created(1, "", start)
    assert rxq_show_masked(d) == EIGHT_RXQ_SHOW


def test_pmd_stats(start_daemon, ovsdb: OvsdbServer) -> None:  # type: ignore[no-untyped-def]
    """PMD - stats, with its ``ofport_request=7``: ``p0 7/1`` in ``dpif/show``.

    The scenario's ``ovs-ofctl add-flow br0 action=normal`` has no
    counterpart: this switch's bridges forward NORMAL without OpenFlow.
    """
    d, log = vswitchd_start(
        start_daemon, ovsdb, "add-port", "br0", "p0", "--", "set", "Interface", "p0",
        "ofport_request=7", "type=dummy-pmd", "options:n_rxq=4",
    )  # fmt: skip
    log.check_cpu_discovered()
    log.check_pmd_threads_created()
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:emc-insert-inv-prob=1")
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:smc-enable=true")
    assert d.ovs_appctl("dpif/show").stdout == (
        "dummy@ovs-dummy: hit:0 missed:0\n"
        "  br0:\n"
        "    br0 65534/100: (dummy-internal)\n"
        "    p0 7/1: (dummy-pmd: n_rxq=4, n_txq=1, numa_id=0)\n"
    )
    assert ovsdb.vsctl("get", "Interface", "p0", "ofport").strip() == "7"
    assert stats_before(d) == STATS_BEFORE
    send_stats_packets(d)
    log.wait_grep("miss upcall")
    assert log.after("miss upcall")[-1] == (
        "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0),ct_zone(0),"
        "ct_mark(0),ct_label(0),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:77,"
        "dst=50:54:00:00:01:78),eth_type(0x0800),ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,"
        "ttl=64,frag=no),icmp(type=8,code=0)"
    )
    assert log.flow_installs() == [
        "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:77,"
        "dst=50:54:00:00:01:78),eth_type(0x0800),ipv4(frag=no), actions: <del>"
    ]
    assert stats_after(d) == STATS_AFTER


def test_ofport_request_moves_a_port_to_a_free_number(start_daemon, ovsdb: OvsdbServer) -> None:  # type: ignore[no-untyped-def]
    """A request set later moves the port; one for a taken number leaves it."""
    d, _ = vswitchd_start(
        start_daemon, ovsdb, "add-port", "br0", "p1", "--", "set", "Interface", "p1",
        "type=dummy-pmd", "--", "add-port", "br0", "p2", "--", "set", "Interface", "p2",
        "type=dummy-pmd",
    )  # fmt: skip

    def ofports() -> tuple[str, str]:
        return (
            ovsdb.vsctl("get", "Interface", "p1", "ofport").strip(),
            ovsdb.vsctl("get", "Interface", "p2", "ofport").strip(),
        )

    assert ofports() == ("1", "2")
    ovsdb.vsctl("set", "Interface", "p1", "ofport_request=5")
    assert ofports() == ("5", "2")
    assert "    p1 5/" in d.ovs_appctl("dpif/show").stdout
    ovsdb.vsctl("set", "Interface", "p1", "ofport_request=2")  # p2's
    assert ofports() == ("5", "2")
    ovsdb.vsctl("del-port", "p2")
    assert ovsdb.vsctl("get", "Interface", "p1", "ofport").strip() == "2"
