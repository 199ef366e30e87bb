"""OVS's tests/alb.at scenarios that read the log, redone against the real daemon.

Named after the OVS tests (OVS main's tests/alb.at); ``ovs-vsctl set
Open_vSwitch . other_config:K=V`` is ``config/set K=V``.  The values OVS
does not refuse but replaces (``-1``, ``101``, ``20001``) are taken here
too, with the value used in the ``set to`` line.  The parts of alb.at that
need ``time/warp`` (the dry runs) are not here.
"""

from __future__ import annotations

import pytest

from .conftest import DaemonProcess
from .ovs_log import OvsLog, ovs_config, port

DUMMY_NUMA = "0,0"


def set_other(d: DaemonProcess, assignment: str, *, py: bool = False) -> None:
    """``ovs-vsctl set Open_vSwitch . other_config:K=V``: the real ovs-appctl, or pyappctl."""
    r = d.appctl("config/set", assignment) if py else d.ovs_appctl("config/set", assignment)
    assert r.returncode == 0, r.stderr


def test_alb_default_state(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """ALB - default state."""
    d = start_daemon(ovs_config())
    OvsLog(d.log_path).wait_grep("PMD auto load balance is disabled")


def test_alb_enable_disable(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """ALB - enable/disable."""
    d = start_daemon(
        ovs_config(
            port("p0", options="n_rxq = 1"),
            numa=DUMMY_NUMA,
            other='pmd-cpu-mask = "1"\npmd-auto-lb = "true"\n',
        )
    )
    log = OvsLog(d.log_path)
    log.wait_grep("PMD auto load balance is enabled")
    assert log.grep(
        "PMD auto load balance is enabled, interval 1 mins, pmd load threshold 95%, "
        "improvement threshold 25%."
    )
    start = log.next_line_num()
    set_other(d, "pmd-auto-lb=false", py=True)
    log.wait_grep("PMD auto load balance is disabled", start)
    start = log.next_line_num()
    set_other(d, "pmd-auto-lb=true")
    log.wait_grep("PMD auto load balance is enabled", start)


def test_alb_pmd_rxq_assignment_type(start_daemon) -> None:  # type: ignore[no-untyped-def]
    """ALB - PMD/RxQ assignment type (the mode changes; the dry runs need time/warp)."""
    d = start_daemon(
        ovs_config(
            port("p0", options="n_rxq = 3"),
            numa=DUMMY_NUMA,
            other='pmd-cpu-mask = "3"\npmd-auto-lb = "true"\npmd-auto-lb-load-threshold = 0\n',
        )
    )
    log = OvsLog(d.log_path)
    log.wait_grep("PMD auto load balance is enabled")
    for mode in ("roundrobin", "cycles", "group"):
        start = log.next_line_num()
        set_other(d, f"pmd-rxq-assign={mode}")
        log.wait_grep(f"mode changed to: '{mode}'", start)
        start = log.next_line_num()
        set_other(d, "pmd-auto-lb=false")
        log.wait_grep("PMD auto load balance is disabled", start)
        start = log.next_line_num()
        set_other(d, "pmd-auto-lb=true")
        log.wait_grep("PMD auto load balance is enabled", start)


@pytest.mark.parametrize(
    ("key", "param", "default", "steps"),
    [
        (
            "pmd-auto-lb-rebal-interval",
            "interval",
            "1 mins",
            [
                ("10", "10 mins"),
                ("1", "1 mins"),  # min
                ("20000", "20000 mins"),  # max
                ("0", "1 mins"),  # below min
                ("100", "100 mins"),
                ("20001", "1 mins"),  # above max
                ("1000", "1000 mins"),
                ("-1", "1 mins"),  # negative
            ],
        ),
        (
            "pmd-auto-lb-improvement-threshold",
            "improvement threshold",
            "25%",
            [("60", "60%"), ("0", "0%"), ("-1", "25%"), ("100", "100%"), ("101", "25%")],
        ),
        (
            "pmd-auto-lb-load-threshold",
            "load threshold",
            "95%",
            [("70", "70%"), ("0", "0%"), ("-1", "95%"), ("100", "100%"), ("101", "95%")],
        ),
    ],
    ids=["interval", "improvement", "load"],
)
def test_alb_param(start_daemon, key, param, default, steps) -> None:  # type: ignore[no-untyped-def]
    """ALB - interval param / improvement param / load param."""
    d = start_daemon(ovs_config())
    log = OvsLog(d.log_path)
    log.wait_grep("PMD auto load balance is disabled")
    log.check_alb_param(param, default)
    for value, used in steps:
        start = log.next_line_num()
        set_other(d, f"{key}={value}")
        log.check_alb_param(param, used, start)
