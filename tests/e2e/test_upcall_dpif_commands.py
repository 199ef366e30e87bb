"""dpif/show, dpif/dump-dps, upcall/*, revalidator/* and dump-flows pmd= on the real daemon.

Each test redoes the part of an OVS test (tests/pmd.at, tests/dpif-netdev.at,
tests/ofproto-dpif.at on OVS main) that these commands serve, through
``pyappctl`` and the real ``ovs-appctl``, and checks the text the OVS test
expects after the same sed masking.  Where this switch differs (datapath
``netdev@ovs-netdev``, port numbers given in the file's order with the
bridge's own port first, no OpenFlow) the expected text says so.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest

from .ovs_at import PARSE_PMD_RXQ_SHOW, sh

CONFIG = """\
[daemon]
metrics-address = "none"

[other_config]
dummy-numa = "0,0,0,0"
{extra}

[[bridge]]
name = "br0"
{ports}
"""
PORT = '  [[bridge.port]]\n  name = "{}"\n  type = "{}"\n'

PACKET = (
    "in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),"
    "eth_type(0x0800),ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),"
    "icmp(type=8,code=0)"
)


def config(*ports: tuple[str, str], extra: str = "") -> str:
    return CONFIG.format(extra=extra, ports="".join(PORT.format(*p) for p in ports))


def strip_xout_keep_actions(text: str) -> str:
    """OVS's strip_xout_keep_actions (dpif-netdev.at): no ufids, stats zeroed, sorted."""
    out = []
    for line in text.splitlines():
        line = re.sub(r"mega_ufid:[-0-9a-f]* ", "", line)
        line = re.sub(r"ufid:[-0-9a-f]* ", "", line)
        line = re.sub(r"used:[0-9.][0-9.]*", "used:0.0", line)
        line = re.sub(r"packets:[0-9]*", "packets:0", line)
        line = re.sub(r"bytes:[0-9]*", "bytes:0", line)
        out.append(line)
    return "".join(f"{line}\n" for line in sorted(out))


def wait_until(check: Callable[[], bool], what: str, limit: float = 10) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def flows(d) -> list[str]:  # type: ignore[no-untyped-def]
    dump = d.appctl("dpctl/dump-flows").stdout
    return [line for line in dump.splitlines() if not line.startswith("flow-dump from")]


# -- dpif/show (pmd.at 'PMD - creating a thread/add-port', ofproto-dpif.at) ------------


def test_dpif_show_as_ovs_prints_it(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config(("p0", "dummy-pmd"), ("p3", "dummy")))
    # OVS: "dummy@ovs-dummy", br0 65534/100 and p0 1/1 (its dummy datapath
    # numbers ports after their names); here the bridge's port is 1.
    expected = (
        "netdev@ovs-netdev: hit:0 missed:0\n"
        "  br0:\n"
        "    br0 65534/1: (dummy-internal)\n"
        "    p0 1/2: (dummy-pmd: <cleared>)\n"
        "    p3 2/3: (dummy)\n"
    )
    for run in (d.appctl, d.ovs_appctl):
        r = run("dpif/show")
        assert (r.returncode, r.stderr) == (0, "")
        # ofproto-dpif.at's masking of the dummy-pmd configuration.
        assert re.sub(r"(dummy-pmd: ).*\)", r"\1<cleared>)", r.stdout) == expected

    r = d.appctl("-f", "json", "dpif/show")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert list(data) == ["netdev@ovs-netdev"]
    dp = data["netdev@ovs-netdev"]
    assert dp["stats"] == {"hit": "0", "missed": "0"}
    assert dp["bridges"]["br0"]["br0"] == {
        "ofport": "65534",
        "port_no": "1",
        "type": "dummy-internal",
    }
    assert dp["bridges"]["br0"]["p3"] == {"ofport": "2", "port_no": "3", "type": "dummy"}
    p0 = dp["bridges"]["br0"]["p0"]
    assert (p0["ofport"], p0["port_no"], p0["type"]) == ("1", "2", "dummy-pmd")
    assert p0["config"] and all(isinstance(v, str) for v in p0["config"].values())

    # A packet: one miss, then hits (EMC or megaflow) in the first line.
    for _ in range(3):
        d.appctl("netdev-dummy/receive", "p0", PACKET)
    wait_until(
        lambda: d.appctl("dpif/show").stdout.startswith("netdev@ovs-netdev: hit:2 missed:1\n"),
        "dpif/show counts 2 hits and 1 miss",
    )


def test_dump_dps(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config(("p1", "dummy")) + '[[bridge]]\nname = "br1"\n')
    for run in (d.appctl, d.ovs_appctl):
        # ofproto-dpif.at 'ovs-appctl dpif/dump-dps': "dummy@br0", "dummy@br1" in OVS.
        assert run("dpif/dump-dps").stdout == "netdev@br0\nnetdev@br1\n"
        assert run("dpctl/dump-dps").stdout == "netdev@ovs-netdev\n"


# -- upcall/* (dpif-netdev.at 'miss upcall key matches flow_install/flow_dump') -----------


def test_disable_megaflows_installs_exact_flows(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config(("p1", "dummy-pmd")))
    d.appctl("netdev-dummy/receive", "p1", PACKET)
    wait_until(lambda: len(flows(d)) == 1, "a megaflow")
    assert strip_xout_keep_actions("\n".join(flows(d))) == (
        "recirc_id(0),in_port(2),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),ipv4(frag=no),"
        " packets:0, bytes:0, used:never, actions:1\n"
    )
    r = d.ovs_appctl("upcall/disable-megaflows")
    assert (r.returncode, r.stdout) == (0, "megaflows disabled\n")
    assert flows(d) == []
    d.appctl("netdev-dummy/receive", "p1", PACKET)
    wait_until(lambda: len(flows(d)) == 1, "an exact-match flow")
    assert strip_xout_keep_actions("\n".join(flows(d))) == (
        "recirc_id(0),in_port(2),packet_type(ns=0,id=0),"
        "eth(src=50:54:00:00:00:09,dst=50:54:00:00:00:0a),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0),"
        " packets:0, bytes:0, used:never, actions:1\n"
    )
    r = d.appctl("upcall/enable-megaflows")
    assert (r.returncode, r.stdout) == (0, "megaflows enabled\n")
    assert flows(d) == []


def test_ufid_switch_and_upcall_show(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config(("p1", "dummy-pmd")))
    r = d.ovs_appctl("upcall/disable-ufid")
    assert (r.returncode, r.stdout, r.stderr) == (
        0,
        "Datapath dumping tersely using UFID disabled\n",
        "",
    )
    show = d.ovs_appctl("upcall/show").stdout
    assert re.fullmatch(
        r"netdev@ovs-netdev:\n"
        r"  flows         : \(current 0\) \(avg 0\) \(max 0\) \(limit \d+\)\n"
        r"  dump duration : \d+ms\n"
        r"  ufid enabled : false\n\n"
        r"  1: \(keys 0\)\n",
        show,
    ), show
    r = d.appctl("upcall/enable-ufid")
    assert r.stdout == "Datapath dumping tersely using UFID enabled for supported datapaths\n"
    assert "  ufid enabled : true\n" in d.appctl("upcall/show").stdout


# -- revalidator/* ---------------------------------------------------------------------------


def test_pause_add_flows_resume(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev.at 'check dpctl/add-flow wider ip match'."""
    d = start_daemon(config(("p1", "dummy")))
    # p1 is datapath port 2 here (1 in OVS's test).
    for args in (
        ("revalidator/pause",),
        (
            "dpctl/add-flow",
            "in_port(2),eth_type(0x0800),ipv4(src=0.0.0.0/192.0.0.0,dst=0.0.0.0/192.0.0.0,frag=no)",
            "3",
        ),
        (
            "dpctl/add-flow",
            "in_port(2),eth_type(0x0800),ipv4(src=192.1.1.1/0.0.0.0,dst=49.1.1.1/0.0.0.0,frag=no)",
            "3",
        ),
        ("revalidator/resume",),
    ):
        r = d.ovs_appctl(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), args


def test_flows_deleted_while_paused_leave_no_keys(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """dpif-netdev.at 'revalidators handle dp modification fail correctly', without OpenFlow."""
    d = start_daemon(config(("p1", "dummy"), ("p2", "dummy")))
    # OVS's packet: no Ethernet header written (zero MACs), no IP protocol.
    packet = "ipv4(src=10.0.0.1,dst=10.0.0.2),tcp(src=1,dst=2)"
    for run in (d.appctl, d.ovs_appctl):
        r = run("netdev-dummy/receive", "p1", packet)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    wait_until(lambda: "used:never" not in "".join(flows(d)), "the second packet's hit")
    # OVS's rule outputs to p2 without matching MACs; NORMAL learns the zero source
    # MAC on p1, so the same MAC as destination is on in_port: dropped.
    assert strip_xout_keep_actions("\n".join(flows(d))) == (
        "recirc_id(0),in_port(2),packet_type(ns=0,id=0),"
        "eth(src=00:00:00:00:00:00,dst=00:00:00:00:00:00),eth_type(0x0800),ipv4(frag=no),"
        " packets:0, bytes:0, used:0.0s, actions:drop\n"
    )
    for run in (d.appctl, d.ovs_appctl):
        assert run("revalidator/wait").returncode == 0
    assert d.ovs_appctl("revalidator/pause").returncode == 0
    assert d.ovs_appctl("dpctl/del-flows").returncode == 0
    assert d.ovs_appctl("revalidator/resume").returncode == 0
    assert d.ovs_appctl("revalidator/wait").returncode == 0
    # `upcall/show | grep keys | grep -q -v 0` must find nothing.
    keys = [line for line in d.ovs_appctl("upcall/show").stdout.splitlines() if "keys" in line]
    assert keys and not [line for line in keys if "0" not in line]


def test_purge(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config(("p1", "dummy-pmd")))
    d.appctl("netdev-dummy/receive", "p1", PACKET)
    wait_until(lambda: len(flows(d)) == 1, "a flow")
    r = d.ovs_appctl("revalidator/purge")
    assert (r.returncode, r.stdout) == (0, "")
    assert flows(d) == []
    assert "revalidator/purge" in d.appctl("list-commands").stdout
    assert "revalidator/pause" not in d.appctl("list-commands").stdout


# -- dpctl/dump-flows pmd= (pmd.at 'PMD - dpctl') ------------------------------------------


def test_dump_flows_filtered_by_thread(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config(("p1", "dummy-pmd"), ("p2", "dummy"), extra='pmd-cpu-mask = "0x1"'))
    flow = "in_port(2),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x1234)"
    line = (
        "recirc_id(0),in_port(2),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),"
        "eth_type(0x1234), packets:0, bytes:0, used:never, actions:3\n"
    )
    assert d.ovs_appctl("dpctl/add-flow", flow, "3").returncode == 0
    whole = d.ovs_appctl("dpctl/dump-flows").stdout
    assert sorted(whole.splitlines(keepends=True)) == sorted(
        ["flow-dump from pmd on cpu core: 0\n", "flow-dump from the main thread:\n", line, line]
    )
    for run in (d.appctl, d.ovs_appctl):
        assert run("dpctl/dump-flows", "pmd=0").stdout == line
        assert run("dpctl/dump-flows", "pmd=-1").stdout == line
        assert run("dpctl/dump-flows", "netdev@ovs-netdev", "pmd=0").stdout == line
        r = run("dpctl/dump-flows", "pmd=-2")
        assert (r.returncode, r.stdout) == (2, "")
    assert d.ovs_appctl("dpctl/del-flow", flow).returncode == 0
    assert d.ovs_appctl("dpctl/dump-flows").stdout == ""


# -- dpctl/add-dp, del-dp (pmd.at 'PMD - dpctl') -------------------------------------------


@pytest.mark.parametrize(("dp_type", "client"), [("dummy", "ovs-appctl"), ("netdev", "pyappctl")])
def test_pmd_dpctl_scenario(start_daemon, dp_type, client) -> None:  # type: ignore[no-untyped-def]
    """pmd.at 'PMD - dpctl', as written (``dummy@dp0``) and with the netdev type."""
    d = start_daemon(
        'bridge = []\n[daemon]\nmetrics-address = "none"\n[other_config]\ndummy-numa = "0,0"\n'
    )
    ok = (0, "", "")
    dp0 = f"{dp_type}@dp0"

    def run(*args: str) -> tuple[int, str, str]:
        r = d.ovs_appctl(*args) if client == "ovs-appctl" else d.appctl(*args)
        return r.returncode, r.stdout, r.stderr

    assert run("vlog/set", "dpif:dbg", "dpif_netdev:dbg") == ok
    assert run("dpctl/add-dp", dp0) == ok
    assert run("dpctl/add-if", dp0, "p1,type=dummy-pmd") == ok
    assert run("dpctl/add-if", dp0, "p2,type=dummy") == ok
    rxq = run("dpif-netdev/pmd-rxq-show", "dp0")[1]
    assert sh(rxq, PARSE_PMD_RXQ_SHOW) == "p1 0 0 0\n"
    assert run("dpctl/show", dp0) == (
        0,
        f"{dp0}:\n"
        "  lookups: hit:0 missed:0 lost:0\n"
        "  flows: 0\n"
        "  port 0: dp0 (dummy-internal)\n"
        "  port 1: p1 (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0)\n"
        "  port 2: p2 (dummy)\n",
        "",
    )
    assert run("dpctl/dump-dps") == (0, f"{dp0}\n", "")
    flow = "in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x1234)"
    line = (
        "recirc_id(0),in_port(1),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),"
        "eth_type(0x1234), packets:0, bytes:0, used:never, actions:2\n"
    )
    assert run("dpctl/add-flow", dp0, flow, "2") == ok
    dump = run("dpctl/dump-flows", dp0)[1]
    assert "".join(sorted(dump.splitlines(keepends=True))) == (
        "flow-dump from pmd on cpu core: 0\nflow-dump from the main thread:\n" + line + line
    )
    assert run("dpctl/dump-flows", dp0, "pmd=0") == (0, line, "")
    assert run("dpctl/dump-flows", dp0, "pmd=-1") == (0, line, "")
    assert run("dpctl/del-flow", dp0, flow) == ok
    assert run("dpctl/dump-flows", dp0) == ok
    # The other userspace type names no datapath of this one (OVS: EINVAL).
    other = "netdev@dp0" if dp_type == "dummy" else "dummy@dp0"
    code, out, err = run("dpctl/show", other)
    assert (code, out) == (2, "")
    assert err.startswith(f"pyvswitchd: opening datapath {other} failed (Invalid argument)\n")
    assert run("dpctl/del-dp", dp0) == ok
    assert d.appctl("dpctl/show").stdout == ""
    assert run("dpctl/dump-dps") == ok
