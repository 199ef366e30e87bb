"""Tests for pyvswitchd.datapath.worker_host: the daemon's figures from its workers' blocks."""

from __future__ import annotations

import io
from collections.abc import Iterator

import attrs
import pytest

from pyvswitchd.datapath import stats_block as sb
from pyvswitchd.datapath import worker_messages as msg
from pyvswitchd.datapath.port import Port
from pyvswitchd.datapath.stats_block import StatsBlock
from pyvswitchd.datapath.worker_host import WorkerHost
from pyvswitchd.netdev.dummy import DummyNetdev
from pyvswitchd.netdev.provider import NetdevStats
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Level, Vlog


class FakeDp:
    """What WorkerHost reads of the Datapath for counters and logs."""

    def __init__(self) -> None:
        self.console = io.StringIO()
        self.vlog = Vlog("test", console=self.console, syslog_method="null")
        self.log = self.vlog.module("dpif_netdev")
        self.coverage = Coverage()
        self.ports: dict[int, Port] = {}


class FakePmd:
    """A WorkerPmd's counter side: its serial, block, snapshot and coverage names."""

    def __init__(self, serial: int, core_id: int = 0) -> None:
        self.serial = serial
        self.core_id = core_id
        self.numa_id = 0
        self.thread_name = f"pmd-c{core_id:02d}/id:{serial}"
        self.pid = 4000 + serial
        self.block = StatsBlock.create(self.thread_name)
        self.view: sb.BlockView = self.block.snapshot()
        self.coverage_names: tuple[str, ...] = ()
        self.closed = False

    def refresh(self) -> None:
        self.view.release()
        self.view = self.block.snapshot()

    def publish_port(self, slot: int, values: list[int]) -> None:
        self.block.begin_publish()
        self.block.publish_port(slot, values)
        self.block.end_publish()
        self.refresh()

    def publish_coverage(self, counts: dict[str, int]) -> None:
        self.coverage_names = tuple(counts)
        self.block.publish_coverage(list(counts.values()))

    def close(self) -> None:
        if not self.closed:
            self.view.release()
            self.block.close()
            self.closed = True


@attrs.define
class Rig:
    dp: FakeDp
    host: WorkerHost
    pmds: list[FakePmd]

    def pmd(self, serial: int, core_id: int = 0) -> FakePmd:
        pmd = FakePmd(serial, core_id)
        self.pmds.append(pmd)
        self.host.add(pmd)  # type: ignore[arg-type]
        return pmd

    def port(self, port_no: int, **stats: int) -> Port:
        port = Port(port_no, DummyNetdev(f"p{port_no}"), "br0")
        port.stats_slot = self.host.allocate_slot()
        for field, value in stats.items():
            setattr(port.netdev.stats, field, value)
        self.dp.ports[port_no] = port
        return port

    def total(self, name: str) -> int:
        counter = self.dp.coverage.get(name)
        return 0 if counter is None else counter.total


@pytest.fixture
def rig() -> Iterator[Rig]:
    dp = FakeDp()
    r = Rig(dp, WorkerHost(dp), [])  # type: ignore[arg-type]
    yield r
    for pmd in r.pmds:
        pmd.close()


def values(**fields: int) -> list[int]:
    return sb.port_values(NetdevStats(**fields))


# -- port slots and statistics ---------------------------------------------------------------


def test_slots_are_allocated_and_reused(rig: Rig) -> None:
    host = rig.host
    assert [host.allocate_slot() for _ in range(3)] == [0, 1, 2]
    host.free_slot(1)
    assert host.allocate_slot() == 1
    for _ in range(sb.MAX_PORT_SLOTS - 3):
        host.allocate_slot()
    with pytest.raises(RuntimeError, match=f"more than {sb.MAX_PORT_SLOTS} ports"):
        host.allocate_slot()


def test_port_stats_sum_daemon_and_workers(rig: Rig) -> None:
    port = rig.port(1, rx_packets=1, tx_bytes=100)
    other = rig.port(2)
    w1, w2 = rig.pmd(1), rig.pmd(2, core_id=1)
    w1.publish_port(port.stats_slot, values(rx_packets=10, rx_bytes=600, tx_errors=1))
    w2.publish_port(port.stats_slot, values(rx_packets=5, tx_bytes=50))
    w2.publish_port(other.stats_slot, values(tx_dropped=9))
    stats = rig.host.port_stats(port)
    assert stats == NetdevStats(rx_packets=16, rx_bytes=600, tx_bytes=150, tx_errors=1)
    assert rig.host.port_stats(other) == NetdevStats(tx_dropped=9)
    # The daemon's own netdev counts are read, not changed.
    assert port.netdev.stats == NetdevStats(rx_packets=1, tx_bytes=100)


def test_port_stats_read_the_last_snapshot(rig: Rig) -> None:
    port = rig.port(1)
    w = rig.pmd(1)
    w.publish_port(port.stats_slot, values(rx_packets=3))
    w.block.publish_port(port.stats_slot, values(rx_packets=4))  # not refreshed yet
    assert rig.host.port_stats(port).rx_packets == 3
    w.refresh()
    assert rig.host.port_stats(port).rx_packets == 4


def test_retire_keeps_what_the_worker_counted(rig: Rig) -> None:
    port = rig.port(1, rx_packets=1)
    idle = rig.port(2)
    w1, w2 = rig.pmd(1), rig.pmd(2)
    w1.publish_port(port.stats_slot, values(rx_packets=10, tx_packets=7))
    w2.publish_port(port.stats_slot, values(rx_packets=5))
    rig.host.retire(w1)  # type: ignore[arg-type]
    assert w1.closed and 1 not in rig.host.workers
    assert rig.host.port_stats(port) == NetdevStats(rx_packets=16, tx_packets=7)
    rig.host.retire(w2)  # type: ignore[arg-type]
    assert rig.host.workers == {}
    assert rig.host.port_stats(port) == NetdevStats(rx_packets=16, tx_packets=7)
    assert rig.host.port_stats(idle) == NetdevStats()
    # A new worker's counts add to the retired ones.
    w3 = rig.pmd(3)
    w3.publish_port(port.stats_slot, values(rx_packets=100))
    assert rig.host.port_stats(port).rx_packets == 116


def test_free_slot_clears_it_everywhere(rig: Rig) -> None:
    port = rig.port(1)
    w1, w2 = rig.pmd(1), rig.pmd(2)
    for w in (w1, w2):
        w.publish_port(port.stats_slot, values(rx_packets=10))
    rig.host.retire(w1)  # type: ignore[arg-type]
    slot = port.stats_slot
    del rig.dp.ports[1]
    rig.host.free_slot(slot)
    assert w2.block.port(slot) == [0] * sb.PORT_WORDS
    # The next port in that slot starts from zero: no retired counts either.
    again = rig.port(5)
    assert again.stats_slot == slot
    w2.refresh()
    assert rig.host.port_stats(again) == NetdevStats()


# -- coverage ------------------------------------------------------------------------------------


def test_fold_coverage_adds_deltas(rig: Rig) -> None:
    w1, w2 = rig.pmd(1), rig.pmd(2)
    rig.dp.coverage.define("netdev_sent").add(1)  # the daemon's own
    w1.publish_coverage({"netdev_sent": 10, "netdev_received": 4})
    w2.publish_coverage({"netdev_sent": 5})
    rig.host.fold_coverage()
    assert rig.total("netdev_sent") == 16 and rig.total("netdev_received") == 4
    rig.host.fold_coverage()  # nothing new
    assert rig.total("netdev_sent") == 16
    w1.publish_coverage({"netdev_sent": 12, "netdev_received": 4, "upcall": 2})
    rig.host.fold_coverage()
    assert rig.total("netdev_sent") == 18 and rig.total("upcall") == 2


def test_fold_coverage_continues_across_a_restart(rig: Rig) -> None:
    w = rig.pmd(1)
    w.publish_coverage({"netdev_sent": 10})
    rig.host.fold_coverage()
    # The worker dies; its replacement (same serial, same block) starts from
    # what the dead one published and counts on.
    rig.host.worker_died(w, "was killed by SIGKILL")  # type: ignore[arg-type]
    w.publish_coverage({"netdev_sent": 10})
    rig.host.fold_coverage()
    assert rig.total("netdev_sent") == 10
    w.publish_coverage({"netdev_sent": 13})
    rig.host.fold_coverage()
    assert rig.total("netdev_sent") == 13
    # A block that read lower (cleared slot) never takes the total back.
    w.publish_coverage({"netdev_sent": 2})
    rig.host.fold_coverage()
    assert rig.total("netdev_sent") == 13


def test_retire_folds_first_and_forgets_the_serial(rig: Rig) -> None:
    w = rig.pmd(1)
    w.publish_coverage({"netdev_sent": 10})
    rig.host.fold_coverage()
    w.publish_coverage({"netdev_sent": 15})
    rig.host.retire(w)  # type: ignore[arg-type]
    assert rig.total("netdev_sent") == 15
    assert rig.host._folded == {}
    # A later worker may reuse nothing of it: its own counts add in full.
    w2 = rig.pmd(2)
    w2.publish_coverage({"netdev_sent": 3})
    rig.host.fold_coverage()
    assert rig.total("netdev_sent") == 18


# -- what workers say ---------------------------------------------------------------------------


def test_worker_died_is_logged_naming_the_core(rig: Rig) -> None:
    w = rig.pmd(2, core_id=1)
    w.publish_coverage({"netdev_sent": 4})
    rig.host.worker_died(w, "was killed by SIGKILL")  # type: ignore[arg-type]
    line = rig.dp.console.getvalue().splitlines()[-1]
    assert line.endswith(
        "|dpif_netdev|ERR|PMD thread on numa_id: 0, core id:  1 (pmd-c01/id:2, pid 4002) "
        "was killed by SIGKILL; restarting it with the same rx queues"
    )
    assert rig.total("netdev_sent") == 4  # folded before the restart


def test_worker_log_records_carry_the_thread_name(rig: Rig) -> None:
    w = rig.pmd(7, core_id=3)
    rig.host.worker_log(w, msg.LogRecord("dpif_netdev", int(Level.WARN), "careful"))  # type: ignore[arg-type]
    rig.host.worker_log(w, msg.LogRecord("dpif_netdev", 99, "odd level"))  # type: ignore[arg-type]
    lines = rig.dp.console.getvalue().splitlines()
    assert lines[-2].endswith("|dpif_netdev(pmd-c03/id:7)|WARN|careful")
    assert lines[-1].endswith("|dpif_netdev(pmd-c03/id:7)|ERR|odd level")


def test_worker_coverage_names_are_defined(rig: Rig) -> None:
    w = rig.pmd(1)
    rig.host.worker_coverage_names(w, ("a_counter", "b_counter"))  # type: ignore[arg-type]
    assert [c.name for c in rig.dp.coverage.counters()][-2:] == ["a_counter", "b_counter"]
