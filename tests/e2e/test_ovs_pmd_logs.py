"""OVS's tests/pmd.at scenarios that read the log, redone against the real daemon.

Each test is named after the OVS test it follows (OVS main's tests/pmd.at)
and expects the same lines and texts, after the same masking.  OVS's
``ovs-vsctl set Open_vSwitch . other_config:K=V`` is ``config/set K=V``
here; changes to ports (``options:n_rxq``, ``pmd-rxq-affinity``) are made
in the configuration file, followed by ``config/reload``, which then
carries the other_config keys of the scenario too.  ``ovs-appctl`` is the
real one throughout (a C program: the Python client's start-up time would
dominate these tests; the ALB and dpif-netdev tests use ``pyappctl`` too).
"""

from __future__ import annotations

import re

from .conftest import DaemonProcess
from .ovs_log import OvsLog, ovs_config, port, port_no, renumber

SED_NUMA_CORE = re.compile(r"(numa_id )[0-9]*( core_id )[0-9]*:")

ONE_RXQ_SHOW = (
    "Displaying last 60 seconds pmd usage %\n"
    "pmd thread numa_id <cleared> core_id <cleared>:\n"
    "  isolated : false\n"
    "  port: p0                queue-id:  0 (enabled)   pmd usage: NOT AVAIL\n"
    "  overhead: NOT AVAIL\n"
)


def rxq_lines(core: str, qids: range, port_name: str = "p0") -> str:
    return f"pmd thread numa_id {core}:\n  isolated : false\n" + "".join(
        f"  port: {port_name}                queue-id:  {q} (enabled)   pmd usage: NOT AVAIL\n"
        for q in qids
    )


EIGHT_RXQ_SHOW = (
    "Displaying last 60 seconds pmd usage %\n"
    + rxq_lines("<cleared> core_id <cleared>", range(8))
    + "  overhead: NOT AVAIL\n"
)


def set_other(d: DaemonProcess, *assignments: str) -> None:
    """``ovs-vsctl set Open_vSwitch . other_config:K=V ...`` (through the real ovs-appctl)."""
    r = d.ovs_appctl("config/set", *assignments)
    assert r.returncode == 0, r.stderr


def reload_with(d: DaemonProcess, config_text: str) -> None:
    """Rewrite the configuration file and reload it (OVSDB changes to ports)."""
    d.config_path.write_text(config_text)
    r = d.ovs_appctl("config/reload")
    assert r.returncode == 0, r.stderr


def rxq_show_masked(d: DaemonProcess) -> str:
    """``ovs-appctl dpif-netdev/pmd-rxq-show | sed SED_NUMA_CORE_PATTERN``."""
    out = d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout
    return "".join(
        SED_NUMA_CORE.sub(r"\1<cleared>\2<cleared>:", line, count=1)
        for line in out.splitlines(keepends=True)
    )


def parse_pmd_rxq_show(text: str) -> list[str]:
    """pmd.at's ``parse_pmd_rxq_show``: "port qid numa core" per rx queue, sorted."""
    rows, numa, core = [], "", ""
    for line in text.splitlines():
        words = line.split()
        if "pmd thread" in line:
            numa, core = words[3], words[5][:-1]
        elif line.startswith("  port:"):
            rows.append(f"{words[1]} {words[3]} {numa} {core}")
    return sorted(rows)


def parse_pmd_rxq_show_group(text: str) -> list[str]:
    """pmd.at's ``parse_pmd_rxq_show_group | sort``: each PMD's queue ids on one line."""
    groups: list[list[str]] = []
    for line in text.splitlines():
        if "pmd thread" in line:
            groups.append([])
        elif line.startswith("  port:") and groups:
            groups[-1].append(line.split()[3])
    return sorted("port: p0 queue-id: " + " ".join(g[:4]) for g in groups if g)


def rxq_groups(d: DaemonProcess) -> list[str]:
    return parse_pmd_rxq_show_group(d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout)


def test_pmd_creating_a_thread_add_port(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - creating a thread/add-port."""
    d = start_daemon(ovs_config(port("p0"), numa="0,0,0,0"))
    log = OvsLog(d.log_path)
    assert log.check_cpu_discovered() == 4
    log.check_pmd_threads_created()
    assert log.grep(r"\|ovs_numa\|INFO\|Discovered 4 CPU cores on NUMA node 0$")
    assert rxq_show_masked(d) == ONE_RXQ_SHOW


def test_pmd_multiqueue_support(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - multiqueue support."""
    d = start_daemon(ovs_config(port("p0"), numa="0,0,0,0"))
    log = OvsLog(d.log_path)
    log.check_cpu_discovered()
    log.check_pmd_threads_created()
    reload_with(d, ovs_config(port("p0", options="n_rxq = 8"), numa="0,0,0,0"))
    assert rxq_show_masked(d) == EIGHT_RXQ_SHOW
    # The same cores: not discovered again.
    assert len(log.grep("Discovered [0-9]* NUMA nodes")) == 1


def test_pmd_cpu_mask_distribution_of_rx_queues(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - pmd-cpu-mask/distribution of rx queues."""
    d = start_daemon(ovs_config(port("p0", options="n_rxq = 8"), numa="0,0,0,0"))
    log = OvsLog(d.log_path)
    log.check_cpu_discovered(2)
    log.check_pmd_threads_created()
    assert rxq_show_masked(d) == EIGHT_RXQ_SHOW

    start = log.next_line_num()
    set_other(d, "pmd-rxq-assign=roundrobin")
    log.wait_grep("Performing pmd to rx queue assignment using roundrobin algorithm", start)

    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=0x3")
    log.check_pmd_threads_created(2, "", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 2 4 6", "port: p0 queue-id: 1 3 5 7"]

    start = log.next_line_num()
    set_other(d, "pmd-rxq-assign=cycles")
    log.wait_grep("Performing pmd to rx queue assignment using cycles algorithm", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 3 4 7", "port: p0 queue-id: 1 2 5 6"]

    start = log.next_line_num()
    set_other(d, "pmd-rxq-assign=group")
    log.wait_grep("Performing pmd to rx queue assignment using group algorithm", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 2 4 6", "port: p0 queue-id: 1 3 5 7"]

    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=0x1")
    log.check_pmd_threads_created(1, "", start)
    assert rxq_show_masked(d) == EIGHT_RXQ_SHOW


CROSS_NUMA = (
    "There's no available (non-isolated) pmd thread on numa node 1. Port 'p0' rx queue 7 "
    "will be assigned to a pmd on numa node 0. This may lead to reduced performance."
)


def test_pmd_cpu_mask_dual_numa(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - pmd-cpu-mask - dual NUMA."""
    d = start_daemon(
        ovs_config(
            port("p0", options="n_rxq = 8, numa_id = 1"),
            numa="1,1,0,0",
            other='pmd-cpu-mask = "1"\n',
        )
    )
    log = OvsLog(d.log_path)
    log.check_cpu_discovered(4)
    log.check_pmd_threads_created()
    assert rxq_show_masked(d) == EIGHT_RXQ_SHOW

    # Force cross-numa polling.
    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=0xc")
    log.check_pmd_threads_created(2, "0", start)
    log.wait_grep("Performing pmd to rx queue assignment using cycles algorithm", start)
    log.wait_grep(re.escape(CROSS_NUMA), start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 3 4 7", "port: p0 queue-id: 1 2 5 6"]

    for algorithm in ("roundrobin", "group"):
        start = log.next_line_num()
        set_other(d, f"pmd-rxq-assign={algorithm}")
        log.wait_grep(f"Performing pmd to rx queue assignment using {algorithm} algorithm", start)
        log.wait_grep(re.escape(CROSS_NUMA), start)
        assert rxq_groups(d) == ["port: p0 queue-id: 0 2 4 6", "port: p0 queue-id: 1 3 5 7"]

    # Switch back to the same NUMA node.
    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=0x3")
    log.check_pmd_threads_created(2, "1", start)
    log.wait_grep("Performing pmd to rx queue assignment using group algorithm", start)
    assert rxq_groups(d) == ["port: p0 queue-id: 0 2 4 6", "port: p0 queue-id: 1 3 5 7"]

    # The local NUMA node is used alone when it has a PMD.
    local_only = (
        "Displaying last 60 seconds pmd usage %\n"
        + rxq_lines("1 core_id 1", range(8))
        + "  overhead: NOT AVAIL\n"
        "pmd thread numa_id 0 core_id 2:\n  isolated : false\n"
    )
    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=0x6")
    log.check_pmd_threads_created(1, "0", start)
    log.check_pmd_threads_created(1, "1", start)
    log.wait_grep("Performing pmd to rx queue assignment using group algorithm", start)
    assert d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout == local_only
    for algorithm in ("roundrobin", "cycles"):
        start = log.next_line_num()
        set_other(d, f"pmd-rxq-assign={algorithm}")
        log.wait_grep(f"Performing pmd to rx queue assignment using {algorithm} algorithm", start)
        assert d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout == local_only

    # From mixed NUMA nodes back to one.
    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=0x1")
    log.check_pmd_threads_created(1, "1", start)
    assert d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout == (
        "Displaying last 60 seconds pmd usage %\n"
        + rxq_lines("1 core_id 0", range(8))
        + "  overhead: NOT AVAIL\n"
    )


def test_pmd_cpu_mask_multi_numa(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - pmd-cpu-mask - multi NUMA."""
    d = start_daemon(
        ovs_config(
            port("p0", options="n_rxq = 4, numa_id = 0"),
            numa="1,2,1,2",
            other='pmd-cpu-mask = "0xf"\npmd-rxq-assign = "cycles"\n',
        )
    )
    log = OvsLog(d.log_path)
    for algorithm in ("group", "cycles", "roundrobin"):
        start = log.next_line_num()
        set_other(d, f"pmd-rxq-assign={algorithm}")
        log.wait_grep(f"Performing pmd to rx queue assignment using {algorithm} algorithm", start)
        log.wait_grep(
            re.escape("There's no available (non-isolated) pmd thread on numa node 0."), start
        )
        # Every PMD of both non-local NUMA nodes gets a queue.
        assert len(rxq_groups(d)) == 4


STATS_PACKET = (
    "in_port(7),eth(src=50:54:00:00:00:77,dst=50:54:00:00:01:78),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


def test_pmd_stats(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - stats: the upcall and flow-install lines (NORMAL stands for action=normal)."""
    d = start_daemon(ovs_config(port("p0", options="n_rxq = 4"), numa="0,0,0,0"))
    log = OvsLog(d.log_path)
    log.check_cpu_discovered()
    log.check_pmd_threads_created()
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    set_other(d, "emc-insert-inv-prob=1", "smc-enable=true")
    for _ in range(20):
        d.call("netdev-dummy/receive", "p0", STATS_PACKET)
    log.wait_grep("miss upcall")
    p0 = port_no(d, "p0")
    assert log.after("miss upcall")[-1] == renumber(
        "recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0),ct_zone(0),"
        "ct_mark(0),ct_label(0),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:77,"
        "dst=50:54:00:00:01:78),eth_type(0x0800),ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,"
        "ttl=64,frag=no),icmp(type=8,code=0)",
        p0,
    )
    assert log.flow_installs() == [
        renumber(
            "recirc_id(0),in_port(1),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:77,"
            "dst=50:54:00:00:01:78),eth_type(0x0800),ipv4(frag=no), actions: <del>",
            p0,
        )
    ]
    # One upcall: the other 19 packets hit the flow it installed.
    assert len(log.grep("miss upcall")) == 1


def sleep_show(default: int, pmds: list[tuple[int, int, int]]) -> str:
    """``dpif-netdev/pmd-sleep-show`` for (numa, core, sleep) PMDs."""
    return f"Default max sleep: {default:4d} us\n" + "".join(
        f"pmd thread numa_id {n} core_id {c}:\n  max sleep: {s:4d} us\n" for n, c, s in pmds
    )


def check_sleeps(
    log: OvsLog, d: DaemonProcess, default: int, pmds: list[tuple[int, int, int]], start: int = 1
) -> None:
    log.check_dp_sleep_max(default, start)
    for numa, core, us in pmds:
        log.check_pmd_sleep_max(numa, core, us, start)
    assert d.ovs_appctl("dpif-netdev/pmd-sleep-show").stdout == sleep_show(default, pmds)


SLEEP_NUMA = "0,0,0,1,1,8,8"


def test_pmd_sleep(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - pmd sleep."""
    d = start_daemon(ovs_config(port("p0", options="n_rxq = 8, numa_id = 1"), numa=SLEEP_NUMA))
    log = OvsLog(d.log_path)
    check_sleeps(log, d, 0, [(0, 0, 0), (1, 3, 0), (8, 5, 0)])
    # Low, high, zero, above the maximum (capped), then values kept as they are.
    for given, used in (
        ("1", 1),
        ("10000", 10000),
        ("0", 0),
        ("10001", 10000),
        ("490", 490),
        ("499", 499),
    ):
        start = log.next_line_num()
        set_other(d, f"pmd-sleep-max={given}")
        check_sleeps(log, d, used, [(0, 0, used), (1, 3, used), (8, 5, used)], start)


def test_pmd_per_pmd_sleep(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - per PMD sleep."""
    d = start_daemon(ovs_config(port("p0", options="n_rxq = 8, numa_id = 1"), numa=SLEEP_NUMA))
    log = OvsLog(d.log_path)
    check_sleeps(log, d, 0, [(0, 0, 0), (1, 3, 0), (8, 5, 0)])
    steps: list[tuple[str, int, list[tuple[int, int, int]]]] = [
        ("3:300,0:100,5:400", 0, [(0, 0, 100), (1, 3, 300), (8, 5, 400)]),
        ("50,3:300,0:100,5:200", 50, [(0, 0, 100), (1, 3, 300), (8, 5, 200)]),
        ("50,3:300", 50, [(0, 0, 50), (1, 3, 300), (8, 5, 50)]),
        ("3:400,200", 200, [(0, 0, 200), (1, 3, 400), (8, 5, 200)]),
        # Values for PMDs that do not exist yet.
        ("2:600,50,3:300,0:100,6:400,5:200", 50, [(0, 0, 100), (1, 3, 300), (8, 5, 200)]),
    ]
    for value, default, pmds in steps:
        start = log.next_line_num()
        set_other(d, f"pmd-sleep-max={value}")
        check_sleeps(log, d, default, pmds, start)

    # More cores: the new PMDs take their values.
    start = log.next_line_num()
    set_other(d, "pmd-cpu-mask=7f")
    seven = [
        (0, 0, 100),
        (0, 1, 50),
        (0, 2, 600),
        (1, 3, 300),
        (1, 4, 50),
        (8, 5, 200),
        (8, 6, 400),
    ]
    for numa, core, us in ((0, 1, 50), (0, 2, 600), (1, 4, 50), (8, 6, 400)):
        log.check_pmd_sleep_max(numa, core, us, start)
    assert d.ovs_appctl("dpif-netdev/pmd-sleep-show").stdout == sleep_show(50, seven)

    def every(us: int, overrides: dict[int, int] | None = None) -> list[tuple[int, int, int]]:
        return [(n, c, (overrides or {}).get(c, us)) for n, c, _ in seven]

    for value, default, pmds in (
        ("90", 90, every(90)),  # back to one value for all
        ("qwe", 0, every(0)),  # not a number
        ("50,1:qwe,2:0", 50, every(50, {2: 0})),  # a bad entry among good ones
    ):
        start = log.next_line_num()
        set_other(d, f"pmd-sleep-max={value}")
        check_sleeps(log, d, default, pmds, start)
    # Removing the key (an empty value returns it to its default).
    start = log.next_line_num()
    set_other(d, "pmd-sleep-max=")
    check_sleeps(log, d, 0, every(0), start)


AFFINITY_NUMA = "0,0,0,0,0,0,0,0,0"


def affinity_config(pmd_other: str, affinity: str | None) -> str:
    pin = f'"pmd-rxq-affinity" = "{affinity}"' if affinity else ""
    return ovs_config(
        port("p1", options="n_rxq = 4", other_config=pin), numa=AFFINITY_NUMA, other=pmd_other
    )


def test_pmd_rxq_affinity_non_isolate(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """PMD - rxq affinity - non-isolate (its log lines and layouts)."""
    mask = 'pmd-cpu-mask = "0x1fe"\n'
    d = start_daemon(affinity_config(mask, "0:3,1:7,2:2,3:8"))
    log = OvsLog(d.log_path)
    pinned = ["p1 0 0 3", "p1 1 0 7", "p1 2 0 2", "p1 3 0 8"]

    def layout() -> list[str]:
        return parse_pmd_rxq_show(d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout)

    assert layout() == pinned
    group = mask + 'pmd-rxq-assign = "group"\n'
    reload_with(d, affinity_config(group, "0:3,1:7,2:2,3:8"))
    assert layout() == pinned

    # Pinned but not isolating: nothing moves while every queue is pinned.
    start = log.next_line_num()
    non_isolated = group + 'pmd-rxq-isolate = "false"\n'
    reload_with(d, affinity_config(non_isolated, "0:3,1:7,2:2,3:8"))
    log.wait_grep("pmd-rxq-affinity does not isolate PMD core", start)
    assert layout() == pinned

    # One queue pinned to core 1, which still takes other queues.
    two_cores = non_isolated.replace("0x1fe", "6")
    reload_with(d, affinity_config(two_cores, "0:1"))
    assert layout() == ["p1 0 0 1", "p1 1 0 2", "p1 2 0 1", "p1 3 0 2"]

    # An algorithm that cannot pin without isolating.
    start = log.next_line_num()
    reload_with(d, affinity_config(two_cores.replace('"group"', '"cycles"'), "0:1"))
    log.wait_grep("pmd-rxq-isolate can only be set false when using pmd-rxq-assign=group", start)
    log.wait_grep("pmd-rxq-affinity isolates PMD core", start)
    log.wait_grep("Performing pmd to rx queue assignment using cycles algorithm", start)
    assert layout() == ["p1 0 0 1", "p1 1 0 2", "p1 2 0 2", "p1 3 0 2"]

    start = log.next_line_num()
    reload_with(d, affinity_config(two_cores, "0:1"))
    log.wait_grep("pmd-rxq-affinity does not isolate PMD core", start)
    log.wait_grep("Performing pmd to rx queue assignment using group algorithm", start)
    assert layout() == ["p1 0 0 1", "p1 1 0 2", "p1 2 0 1", "p1 3 0 2"]
