"""``time/stop`` and ``time/warp`` on the real daemon, and the OVS scenarios
that drive time with them (alb.at, pmd.at, dpif-netdev.at on OVS main).

The PMDs are worker processes here: a warp reaches them with their knobs,
and their 5 s measurement intervals -- which auto load balance counts --
close on the warped clock, so ten minutes of auto load balance pass in a
second, as in OVS's test suite.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.ovs_at import LogWatch

ICMP = (
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)
NOT_ENOUGH = "PMD auto load balance nothing to do, not enough non-isolated PMDs or RxQs."
DRY_RUN = "PMD auto load balance performing dry run."
CROSS_NUMA = "PMD auto load balance detected cross-numa polling"


def config(other: str, p0: str, port_type: str = "dummy-pmd") -> str:
    return (
        f'[daemon]\nmetrics-address = "none"\n[other_config]\n{other}\n'
        f'[[bridge]]\nname = "br0"\n[[bridge.port]]\nname = "p0"\ntype = "{port_type}"\n{p0}\n'
    )


def warp(d, *args: str) -> None:  # type: ignore[no-untyped-def]
    """``ovs-appctl time/warp ARGS``: returns once every step is done."""
    r = d.ovs_appctl("time/warp", *args)
    assert (r.returncode, r.stdout) == (0, "warped\n"), r.stderr


def reload(d, text: str) -> None:  # type: ignore[no-untyped-def]
    """ovs-vsctl's part: the changed configuration, applied."""
    d.config_path.write_text(text)
    r = d.appctl("config/reload")
    assert r.returncode == 0, r.stderr


def test_time_commands_reply_as_ovs(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(config("", ""))
    r = d.ovs_appctl("time/stop")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    warp(d, "100")
    warp(d, "500", "2000")  # pmd.at 'revalidator modify overlapping flows'
    for args in (("0",), ("10", "0")):
        r = d.ovs_appctl("time/warp", *args)
        assert r.returncode == 2
        assert r.stderr.splitlines()[0] == "invalid MSECS"
    r = d.appctl("time/warp", "-1", "10")  # pyappctl passes "-1" on as an argument
    assert (r.returncode, r.stderr.splitlines()[0]) == (2, "invalid MSECS")
    r = d.appctl("time/warp")
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == '"time/warp" command requires at least 1 arguments'
    listing = d.appctl("list-commands").stdout
    assert "  time/stop\n" in listing or "  time/stop " in listing
    assert "  time/warp               [large_msecs] msecs\n" in listing


def test_stopped_time_and_warp_drive_flow_used_and_expiry(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """As pmd.at 'revalidator modify overlapping flows' relies on: with time
    stopped, a flow just hit was used 0.0 s ago; and a warp past max-idle
    expires flows at the next revalidation, in a PMD worker too."""
    d = start_daemon(config('dummy-numa = "0,0"\npmd-cpu-mask = "0x1"', ""))
    assert d.ovs_appctl("time/stop").returncode == 0
    for _ in range(2):
        assert d.ovs_appctl("netdev-dummy/receive", "p0", ICMP).returncode == 0

    def dump() -> str:
        return d.ovs_appctl("dpctl/dump-flows").stdout

    deadline = time.monotonic() + 10
    while "packets:1," not in dump():
        assert time.monotonic() < deadline, dump()
        time.sleep(0.05)
    time.sleep(0.2)  # time stands still meanwhile
    assert " packets:1, bytes:106, used:0.000s, " in dump()
    warp(d, "3000")
    assert " used:3.000s, " in dump()
    warp(d, "8000")  # past max-idle (10 s)
    deadline = time.monotonic() + 5
    while dump():
        assert time.monotonic() < deadline, dump()
        time.sleep(0.05)
    # MAC learning ages on the same clock (mac-aging-time 300 s).
    assert "50:54:00:00:00:05" in d.ovs_appctl("fdb/show", "br0").stdout
    warp(d, "300000")
    deadline = time.monotonic() + 5
    while "50:54:00:00:00:05" in d.ovs_appctl("fdb/show", "br0").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)


ALB = 'pmd-auto-lb = true\npmd-auto-lb-load-threshold = 0\ndummy-numa = "0,0"\n'


def test_alb_min_num_pmd_rxq(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """alb.at 'ALB - min num PMD/RxQ'."""
    d = start_daemon(config(ALB + 'pmd-cpu-mask = "1"', "options = { n_rxq = 2 }"))
    log = LogWatch(d.log_path)
    log.wait("PMD auto load balance is enabled")
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    # 1 PMD, 2 rx queues.
    log.mark()
    warp(d, "600000", "10000")
    log.wait(NOT_ENOUGH)
    # 2 PMDs, 2 rx queues.
    log.mark()
    assert d.appctl("config/set", "pmd-cpu-mask=0x3").returncode == 0
    log.wait("There are 2 pmd threads on numa node")
    warp(d, "600000", "10000")
    log.wait(NOT_ENOUGH)
    # 2 PMDs, 3 rx queues.
    log.mark()
    reload(d, config(ALB + 'pmd-cpu-mask = "0x3"', "options = { n_rxq = 3 }"))
    warp(d, "600000", "10000")
    log.wait(DRY_RUN)
    # 1 PMD, 3 rx queues.
    log.mark()
    assert d.appctl("config/set", "pmd-cpu-mask=0x1").returncode == 0
    log.wait("There are 1 pmd threads on numa node")
    warp(d, "600000", "10000")
    log.wait(NOT_ENOUGH)
    # Same configuration as last time.
    log.mark()
    warp(d, "600000", "10000")
    log.wait("PMD auto load balance nothing to do, no configuration changes since last check.")


def test_alb_cross_numa(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """alb.at 'ALB - cross-numa'."""
    other = (
        'dummy-numa = "1,2,1,2"\npmd-cpu-mask = "0x3"\npmd-rxq-assign = "group"\n'
        "pmd-rxq-isolate = false\npmd-auto-lb = true\npmd-auto-lb-load-threshold = 0"
    )

    def p0(n_rxq: int, affinity: str = "") -> str:
        text = f"options = {{ n_rxq = {n_rxq}, numa_id = 0 }}"
        if affinity:
            text += f'\nother_config = {{ pmd-rxq-affinity = "{affinity}" }}'
        return text

    d = start_daemon(config(other, p0(4)))
    log = LogWatch(d.log_path)
    log.wait("PMD auto load balance is enabled")
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    # No pinned rx queues: the cross-numa PMD could change.
    log.mark()
    warp(d, "600000", "10000")
    log.wait(DRY_RUN)
    log.wait(CROSS_NUMA)
    # All pinned: nothing can move.
    reload(d, config(other, p0(4, "0:0,1:0,2:1,3:1")))
    log.mark()
    warp(d, "600000", "10000")
    log.wait(DRY_RUN)
    log.wait("Variance improvement 0%.")
    # Pinned (non-isolated) and unpinned: cross-numa again.
    reload(d, config(other, p0(4, "0:0,1:0,2:1")))
    log.mark()
    warp(d, "600000", "10000")
    log.wait(DRY_RUN)
    log.wait(CROSS_NUMA)
    # Pinned (isolated) and unpinned on four PMDs.
    isolated = other.replace('"0x3"', '"0xf"').replace("isolate = false", "isolate = true")
    reload(d, config(isolated, p0(6, "0:0,1:0,2:1")))
    log.mark()
    warp(d, "600000", "10000")
    log.wait(DRY_RUN)
    log.wait(CROSS_NUMA)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("group", DRY_RUN),
        ("cycles", DRY_RUN),
        ("roundrobin", "nothing to do, pmd-rxq-assign=roundrobin assignment type configured."),
    ],
)
def test_alb_assignment_type(start_daemon, algorithm: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    """alb.at 'ALB - PMD/RxQ assignment type', the dry-run half: what a
    rebalance check does with each pmd-rxq-assign."""
    d = start_daemon(config(ALB + 'pmd-cpu-mask = "3"', "options = { n_rxq = 3 }"))
    log = LogWatch(d.log_path)
    log.wait("PMD auto load balance is enabled")
    assert d.ovs_appctl("vlog/set", "dpif_netdev:dbg").returncode == 0
    log.mark()
    assert d.appctl("config/set", f"pmd-rxq-assign={algorithm}").returncode == 0
    if algorithm != "cycles":  # the default: no change to log
        log.wait(f"mode changed to: '{algorithm}'")
    warp(d, "600000", "10000")
    log.wait(expected)
