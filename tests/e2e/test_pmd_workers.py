"""PMD worker processes, seen from outside: /proc, signals, the daemon's answers."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import DaemonProcess

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0,0,0"
pmd-cpu-mask = "{mask}"
pmd-rxq-assign = "roundrobin"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = {{ flows = 8, pps = 4000, n_rxq = 4, dst_mac = "02:00:00:00:00:fe" }}
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
  options = {{ n_rxq = 2 }}
"""
PMD_NAME = re.compile(r"pmd-c(\d\d)/id:(\d+)")


def wait(predicate: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its PMD workers and their zygote)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def workers(d: DaemonProcess) -> dict[int, int]:
    """Core -> pid of each PMD worker process of the daemon (by /proc comm)."""
    out = {}
    for pid in descendants(d.pid):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        m = PMD_NAME.fullmatch(comm)
        if m:
            out[int(m[1])] = pid
    return out


def affinity(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def src_rx(d: DaemonProcess) -> int:
    shown = d.call("dpctl/show", "-s")
    m = re.search(r"src0 \(traffic-source[^\n]*\n\s+RX packets:(\d+)", shown)
    assert m is not None, shown
    return int(m[1])


def test_one_pinned_worker_per_core_and_the_mask_is_followed(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG.format(mask="0x3"))
    wait(lambda: set(workers(d)) == {0, 1})
    cpus = os.cpu_count() or 1
    for core, pid in workers(d).items():
        if core < cpus:
            assert affinity(pid) == {core}
    # Both forward: each polls two of the source's four queues.
    rxq = d.call("dpif-netdev/pmd-rxq-show")
    assert "core_id 0:" in rxq and "core_id 1:" in rxq
    start = src_rx(d)
    wait(lambda: src_rx(d) > start + 400)
    # The mask shrinks: one worker ends, the other takes every queue.
    old = workers(d)
    d.call("config/set", "pmd-cpu-mask=0x1")
    wait(lambda: set(workers(d)) == {0})
    assert workers(d)[0] == old[0]
    assert old[1] not in descendants(d.pid)
    before = src_rx(d)
    wait(lambda: src_rx(d) > before + 400)
    # And grows again, on cores that may not exist here (dummy-numa): no pin then.
    d.call("config/set", "pmd-cpu-mask=0xf")
    wait(lambda: set(workers(d)) == {0, 1, 2, 3})
    for core, pid in workers(d).items():
        if core >= cpus:
            assert len(affinity(pid)) == len(os.sched_getaffinity(0))
    log = d.log_path.read_text()
    assert "PMD thread on numa_id: 0, core id:  1 destroyed." in log
    assert "PMD thread on numa_id: 0, core id:  3 created." in log


def test_a_killed_worker_is_replaced_and_counters_keep_going(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG.format(mask="0x3"))
    wait(lambda: set(workers(d)) == {0, 1})
    wait(lambda: src_rx(d) > 400)
    victim = workers(d)[1]
    survivor = workers(d)[0]
    before = src_rx(d)
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    wait(lambda: workers(d).get(1) not in (None, victim))
    restart = time.monotonic() - t0
    assert restart < 1.5, f"replaced after {restart:.2f} s"
    assert workers(d)[0] == survivor
    # Counters never go backwards, and forwarding resumes on both cores.
    assert src_rx(d) >= before
    after = src_rx(d)
    wait(lambda: src_rx(d) > after + 400)
    rxq = d.call("dpif-netdev/pmd-rxq-show")
    assert "core_id 1:" in rxq and "src0" in rxq
    log = d.log_path.read_text()
    assert re.search(
        r"\|dpif_netdev\|ERR\|PMD thread on numa_id: 0, core id:  1 \(pmd-c01/id:\d+, "
        rf"pid {victim}\) was killed by SIGKILL; restarting it with the same rx queues",
        log,
    ), log


def test_worker_log_lines_carry_the_pmd_name_and_follow_vlog_set(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG.format(mask="0x1"))
    wait(lambda: set(workers(d)) == {0})
    # Debug logging switched on at run time reaches the worker at once.
    d.call("vlog/set", "dpif_netdev_perf:file:dbg")
    d.call("dpif-netdev/pmd-perf-log-set", "on", "-us", "1")
    d.call("config/set", "pmd-perf-metrics=true")
    wait(lambda: "|dpif_netdev_perf(pmd-c00/id:" in d.log_path.read_text())
    assert re.search(
        r"\|dpif_netdev_perf\(pmd-c00/id:\d+\)\|WARN\|Suspicious iteration", d.log_path.read_text()
    )


def test_nothing_is_left_after_sigterm(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG.format(mask="0x3"))
    wait(lambda: set(workers(d)) == {0, 1})
    below = descendants(d.pid)
    assert len(below) >= 2
    shm_before = set(os.listdir("/dev/shm"))
    assert d.stop() == 0
    for pid in below:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), pid
    assert set(os.listdir("/dev/shm")) <= shm_before
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix in (".ctl", ".pid")]
    assert leftovers == []


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


@pytest.mark.parametrize("how", ["exit", "sigint"])
def test_exit_and_sigint_end_the_workers(start_daemon, how: str) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG.format(mask="0x1"))
    wait(lambda: set(workers(d)) == {0})
    below = descendants(d.pid)
    if how == "exit":
        d.call("exit")
    else:
        os.kill(d.pid, signal.SIGINT)
    d.proc.wait(20)
    wait(lambda: all(not Path(f"/proc/{pid}").exists() for pid in below), timeout=10)
