"""OVS's tests/dpif-netdev.at scenarios that read the upcall and flow-install lines.

Named after the OVS tests (OVS main's tests/dpif-netdev.at), with their
expected texts after their masking (``filter_flow_install | strip_xout``).
OVS's ``ovs-ofctl add-flow br0 action=normal`` is what the bridge does
here anyway.  Left out: ``ofproto/trace`` and the ports' ``pstream`` options (dummy
stream connections), which this daemon does not have.
"""

from __future__ import annotations

import re

import pytest

from .conftest import DaemonProcess
from .ovs_at import FILTER_FLOW_DUMP, STRIP_XOUT, sh
from .ovs_log import OvsLog, ovs_config, port, port_no, renumber
from .test_lifecycle import wait_for

META = (
    "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0),ct_zone(0),"
    "ct_mark(0),ct_label(0),packet_type(ns=0,id=0),"
)


def debug_upcalls(d: DaemonProcess) -> None:
    """``ovs-appctl vlog/set dpif:dbg dpif_netdev:dbg``."""
    r = d.ovs_appctl("vlog/set", "dpif:dbg", "dpif_netdev:dbg")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_dpif_netdev_netdev_dummy_receive(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev - netdev-dummy/receive."""
    d = start_daemon(ovs_config(port("p1", "dummy")))
    log = OvsLog(d.log_path)
    debug_upcalls(d)
    tcp = (
        "in_port(1),eth(src=50:54:00:00:00:01,dst=50:54:00:00:02:00),eth_type(0x0800),"
        "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=8,dst=9),"
        "tcp_flags(ack)"
    )
    p1 = port_no(d, "p1")
    assert d.appctl("netdev-dummy/receive", "p1", tcp).returncode == 0
    log.wait_grep("miss upcall")
    assert log.after("miss upcall")[-1] == renumber(META, p1) + (
        "eth(src=50:54:00:00:00:01,dst=50:54:00:00:02:00),eth_type(0x0800),"
        "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=8,dst=9),"
        "tcp_flags(ack)"
    )
    other = tcp.replace("00:01,dst=50:54:00:00:02:00", "00:05,dst=50:54:00:00:06:00")
    other = other.replace("src=10.0.0.1,dst=10.0.0.2", "src=10.0.0.5,dst=10.0.0.6")
    assert d.ovs_appctl("netdev-dummy/receive", "p1", other, "--len", "1024").returncode == 0
    log.wait_count("miss upcall", 2)
    assert log.after("miss upcall")[-1] == renumber(META, p1) + (
        "eth(src=50:54:00:00:00:05,dst=50:54:00:00:06:00),eth_type(0x0800),"
        "ipv4(src=10.0.0.5,dst=10.0.0.6,proto=6,tos=0,ttl=64,frag=no),tcp(src=8,dst=9),"
        "tcp_flags(ack)"
    )


ICMP = (
    "in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),"
    "eth_type(0x0800),ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),"
    "icmp(type=8,code=0)"
)


@pytest.mark.parametrize(
    ("type_", "numa"),
    [("dummy", None), ("dummy-pmd", "0,0,0,0,1,1,1,1")],
    ids=["dummy", "dummy-pmd"],
)
def test_dpif_netdev_miss_upcall_key_matches_flow_install(start_daemon, type_, numa) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev - miss upcall key matches flow_install - dummy / dummy-pmd."""
    d = start_daemon(ovs_config(port("p1", type_), numa=numa))
    log = OvsLog(d.log_path)
    debug_upcalls(d)
    p1 = port_no(d, "p1")
    assert d.appctl("netdev-dummy/receive", "p1", ICMP).returncode == 0
    log.wait_grep("miss upcall")
    assert log.after("miss upcall")[-1] == renumber(META, p1) + (
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
    )
    log.wait_grep("flow_add")
    assert log.flow_installs() == [
        renumber(
            "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,"
            "dst=50:54:00:00:00:0a),eth_type(0x0800),ipv4(frag=no), actions: <del>",
            p1,
        )
    ]
    # The flow the line announced is the one installed (the PMD may still be at it).
    ufid = re.search("flow_add: ufid:([-0-9a-f]*) ", log.grep("flow_add")[0])
    assert ufid is not None
    wait_for(lambda: f"ufid:{ufid[1]}," in d.call("dpctl/dump-flows", "-m"))

    # Now, the same again without megaflows.
    r = d.ovs_appctl("upcall/disable-megaflows")
    assert (r.returncode, r.stdout) == (0, "megaflows disabled\n")
    assert d.appctl("netdev-dummy/receive", "p1", ICMP).returncode == 0
    log.wait_count("miss upcall", 2)
    assert log.after("miss upcall")[-1] == renumber(META, p1) + (
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
    )
    log.wait_count("flow_add", 2)
    assert log.flow_installs() == [
        renumber(line, p1)
        for line in (
            "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),"
            "ct_state(-new-est-rel-rpl-inv-trk-snat-dnat),ct_zone(0),ct_mark(0),ct_label(0),"
            "packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),"
            "eth_type(0x0800),ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),"
            "icmp(type=8,code=0), actions: <del>",
            "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,"
            "dst=50:54:00:00:00:0a),eth_type(0x0800),ipv4(frag=no), actions: <del>",
        )
    ]


def test_dpif_netdev_mega_flow_ufid_uniqueness_for_different_wildcards(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev - mega flow ufid uniqueness for different wildcards."""
    d = start_daemon(ovs_config(port("p1", "dummy")))
    log = OvsLog(d.log_path)
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    assert d.ovs_appctl("vlog/disable-rate-limit", "dpif_netdev").returncode == 0
    # Two flows, different wildcards, the same masked flow (TOS 0x20 under mask 0 is 0).
    p1 = port_no(d, "p1")
    for tos in ("0x20/0", "0"):
        flow = (
            f"in_port({p1}),eth(),eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,"
            f"tos={tos},ttl=64,frag=no),tcp(src=80,dst=8080)"
        )
        r = d.ovs_appctl("dpctl/add-flow", flow, "3")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    lines = log.grep(r"flow_add.*tcp\(src=80,dst=8080\)")
    mega = {m[1] for line in lines if (m := re.search("mega_ufid:([0-9a-f-]*)", line))}
    assert len(mega) == 2


def test_dpif_netdev_check_dpctl_add_flow_in_port_exact_match(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev - check dpctl/add-flow in_port exact match."""
    d = start_daemon(ovs_config(port("p1", "dummy")))
    r = d.ovs_appctl("dpctl/add-flow", "eth(),eth_type(0x0800),ipv4()", "3")
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.startswith("pyvswitchd: updating flow table (Invalid argument)\n")
    OvsLog(d.log_path).wait_grep("flow: in_port is not an exact match")


def test_dpif_vlog_module_is_known_and_logs_dpctl_operations(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """``vlog/set dpif:dbg`` and ``vlog/disable-rate-limit dpif``, as dpif-netdev.at uses them."""
    d = start_daemon(ovs_config(port("p1", "dummy")))
    for args in (("vlog/set", "dpif:dbg"), ("vlog/disable-rate-limit", "dpif")):
        r = d.appctl(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert "(rate limiting disabled)" in next(
        line for line in d.appctl("vlog/list").stdout.splitlines() if line.startswith("dpif ")
    )
    p1 = port_no(d, "p1")
    flow = f"in_port({p1}),eth(),eth_type(0x1234)"
    assert d.appctl("dpctl/add-flow", flow, "2").returncode == 0
    assert d.appctl("dpctl/del-flow", flow).returncode == 0
    log = OvsLog(d.log_path)
    # The dpif layer names the datapath in full, as OVS's dpif_name() does.
    put = log.wait_grep(r"\|dpif(\(.*\))?\|DBG\|netdev@ovs-netdev: put\[create\] ufid:")[0]
    assert put.endswith(f"recirc_id(0),in_port({p1}),eth(),eth_type(0x1234), actions:2")
    log.wait_grep(r"\|dpif(\(.*\))?\|DBG\|netdev@ovs-netdev: flow_del ufid:")


@pytest.mark.parametrize(
    ("type_", "numa"),
    [("dummy", None), ("dummy-pmd", "0,0,0,0,1,1,1,1")],
    ids=["dummy", "dummy-pmd"],
)
def test_dpif_netdev_miss_upcall_key_matches_flow_dump(start_daemon, type_, numa) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev - miss upcall key matches flow_dump - dummy / dummy-pmd."""
    d = start_daemon(ovs_config(port("p1", type_), numa=numa))
    log = OvsLog(d.log_path)
    r = d.ovs_appctl("upcall/disable-ufid")
    assert (r.returncode, r.stdout) == (0, "Datapath dumping tersely using UFID disabled\n")
    debug_upcalls(d)
    r = d.appctl("vlog/disable-rate-limit", "dpif")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    p1 = port_no(d, "p1")
    upcall_key = renumber(META, p1) + (
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
    )

    def flow_dumps() -> str:
        return sh(d.log_path.read_text(), f"{FILTER_FLOW_DUMP} | {STRIP_XOUT}")

    assert d.appctl("netdev-dummy/receive", "p1", ICMP).returncode == 0
    log.wait_grep("miss upcall")
    assert log.after("miss upcall")[-1] == upcall_key
    assert d.ovs_appctl("revalidator/wait").returncode == 0
    megaflow = renumber(
        "recirc_id(0),dp_hash(0/0),skb_priority(0/0),in_port(1),skb_mark(0/0),ct_state(0/0),"
        "ct_zone(0/0),ct_mark(0/0),ct_label(0/0),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2/0.0.0.0,dst=10.0.0.1/0.0.0.0,proto=1/0,tos=0/0,ttl=64/0,frag=no),"
        "icmp(type=8/0,code=0/0), packets:0, bytes:0, used:never, actions: <del>\n",
        p1,
    )
    assert flow_dumps() == megaflow

    # Now, the same again without megaflows.
    r = d.appctl("upcall/disable-megaflows")
    assert (r.returncode, r.stdout) == (0, "megaflows disabled\n")
    r = d.appctl("upcall/disable-ufid")
    assert (r.returncode, r.stdout) == (0, "Datapath dumping tersely using UFID disabled\n")
    assert d.ovs_appctl("netdev-dummy/receive", "p1", ICMP).returncode == 0
    log.wait_count("miss upcall", 2)
    assert log.after("miss upcall")[-1] == upcall_key
    assert d.appctl("revalidator/wait").returncode == 0
    exact = renumber(
        "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0/0xff),"
        "ct_zone(0),ct_mark(0),ct_label(0),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0),"
        " packets:0, bytes:0, used:never, actions: <del>\n",
        p1,
    )
    assert flow_dumps() == exact + megaflow


def test_flow_dump_lines_are_terse_while_ufids_are_used(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """OVS's revalidator dumps tersely by default: ufid and statistics, no key or actions."""
    d = start_daemon(ovs_config(port("p1", "dummy")))
    log = OvsLog(d.log_path)
    assert d.appctl("vlog/set", "dpif:dbg").returncode == 0
    assert d.appctl("netdev-dummy/receive", "p1", ICMP).returncode == 0
    wait_for(lambda: d.call("dpctl/dump-flows") != "")
    assert d.appctl("revalidator/wait").returncode == 0
    line = log.wait_grep(r"\|dpif\|DBG\|netdev@ovs-netdev: flow_dump ufid:")[-1]
    assert re.search(
        r"flow_dump ufid:[-0-9a-f]{36} <empty>, packets:0, bytes:0, used:never$", line
    ), line
    log.wait_grep(r"\|dpif\|DBG\|netdev@ovs-netdev: dumped all flows$")
