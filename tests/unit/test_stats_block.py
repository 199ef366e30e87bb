"""Tests for pyvswitchd.datapath.stats_block: layout, publishing and consistent snapshots."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import pickle
import time
from collections.abc import Iterator
from multiprocessing.synchronize import Event

import pytest

from pyvswitchd.datapath import stats_block as sb
from pyvswitchd.datapath.perf import N_STATS
from pyvswitchd.datapath.port import PMD_INTERVAL_MAX
from pyvswitchd.datapath.stats_block import StatsBlock
from pyvswitchd.netdev.provider import NetdevStats


@pytest.fixture
def block() -> Iterator[StatsBlock]:
    b = StatsBlock.create("test-block")
    yield b
    b.close()


def test_regions_tile_the_block_without_overlap() -> None:
    spans = sorted(sb._OFFSETS.values())
    assert spans[0][0] == 0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start
    assert spans[-1][1] == sb.TOTAL_WORDS
    assert sb.SIZE == sb.TOTAL_WORDS * 8
    assert [name for name, _ in sb._REGIONS] == list(sb._OFFSETS)
    for name, n in sb._REGIONS:
        start, end = sb._OFFSETS[name]
        assert end - start == n
    header_fields = (
        sb.DOORBELL, sb.PID, sb.PUBLISHED_NS, sb.ITERATIONS, sb.START_MS, sb.POLLING,
        sb.INTRVL_CYCLES, sb.BUSY_IDX, sb.INTERVAL_SEQ, sb.LAST_IDLE, sb.LAST_BUSY,
        sb.LAST_SLEEP, sb.LAST_OFFLOAD, sb.FLOWS, sb.SEQ,
    )  # fmt: skip
    assert len(set(header_fields)) == len(header_fields)
    assert max(header_fields) < sb.HEADER_WORDS


def test_views_have_their_region_sizes(block: StatsBlock) -> None:
    assert len(block.words) == sb.TOTAL_WORDS
    assert len(block.header) == sb.HEADER_WORDS
    assert len(block.rxqs) == sb.MAX_RXQS * sb.RXQ_WORDS
    assert len(block.ports) == sb.MAX_PORT_SLOTS * sb.PORT_WORDS
    assert len(block.coverage) == sb.MAX_COUNTERS
    assert sb.RXQ_WORDS == 4 + PMD_INTERVAL_MAX
    assert os.fstat(block.fd).st_size == sb.SIZE
    assert not any(block.words)


def test_memfd_not_under_dev_shm() -> None:
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    b = StatsBlock.create("pyvswitchd-test-shm")
    try:
        after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
        assert after == before
        assert os.readlink(f"/proc/self/fd/{b.fd}").startswith("/memfd:pyvswitchd-test-shm")
        assert os.get_inheritable(b.fd) is False
    finally:
        b.close()
    assert b.fd == -1


def test_publish_and_read_round_trips(block: StatsBlock) -> None:
    n = list(range(100, 100 + N_STATS))
    zero = [5] * N_STATS
    zero[0] = 500  # a clear that makes a counter negative reads as 0
    block.begin_publish()
    block.publish_perf(n, zero)
    block.publish_rxq(3, 11, 22, 33, 4, list(range(PMD_INTERVAL_MAX)))
    block.publish_port(7, [1, 2, 3, 4, 5, 6, 7, 8])
    block.publish_coverage([9, 8, 7])
    block.end_publish()
    view = block.snapshot()
    try:
        assert view.perf_raw() == n
        assert view.perf_counters() == [0] + [v - 5 for v in n[1:]]
        assert view.rxq(3) == (11, 22, 33, 4, list(range(PMD_INTERVAL_MAX)))
        assert view.rxq(2) == (0, 0, 0, 0, [0] * PMD_INTERVAL_MAX)
        assert view.port(7) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert view.port(6) == [0] * sb.PORT_WORDS and view.port(8) == [0] * sb.PORT_WORDS
        assert view.coverage_totals(3) == [9, 8, 7]
        assert view.header[sb.SEQ] == 2
    finally:
        view.release()


def test_a_second_mapping_of_the_fd_sees_the_writes(block: StatsBlock) -> None:
    # What the worker does with the descriptor it receives.
    fd = os.dup(block.fd)
    other = StatsBlock(fd, owner=False)
    try:
        other.begin_publish()
        other.publish_port(0, [1] * sb.PORT_WORDS)
        other.end_publish()
        assert block.port(0) == [1] * sb.PORT_WORDS
        block.ring_doorbell()
        assert other.header[sb.DOORBELL] == 1
    finally:
        other.close()
    assert not _fd_open(fd)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_doorbell_wraps(block: StatsBlock) -> None:
    block.header[sb.DOORBELL] = 2**64 - 1
    block.ring_doorbell()
    assert block.header[sb.DOORBELL] == 0


def test_clear_port_and_rxqs(block: StatsBlock) -> None:
    for slot in (4, 5, 6):
        block.publish_port(slot, [slot] * sb.PORT_WORDS)
    block.publish_rxq(0, 1, 2, 3, 4, [5] * PMD_INTERVAL_MAX)
    block.publish_rxq(sb.MAX_RXQS - 1, 1, 2, 3, 4, [5] * PMD_INTERVAL_MAX)
    block.publish_coverage([1])
    block.clear_port(5)
    assert block.port(4) == [4] * sb.PORT_WORDS
    assert block.port(5) == [0] * sb.PORT_WORDS
    assert block.port(6) == [6] * sb.PORT_WORDS
    block.clear_rxqs()
    assert not any(block.rxqs)
    assert block.coverage_totals(1) == [1]  # other regions untouched


def test_snapshot_is_a_private_copy(block: StatsBlock) -> None:
    block.publish_port(0, [1] * sb.PORT_WORDS)
    view = block.snapshot()
    block.publish_port(0, [2] * sb.PORT_WORDS)
    assert view.port(0) == [1] * sb.PORT_WORDS
    view.release()


def test_snapshot_of_a_dead_writer_is_the_last_consistent_one(block: StatsBlock) -> None:
    block.publish_port(0, [3] * sb.PORT_WORDS)
    block.snapshot().release()
    block.begin_publish()  # and never ends: the writer was killed mid-publication
    block.publish_port(0, [4] * sb.PORT_WORDS)
    t0 = time.monotonic()
    view = block.snapshot()
    waited = time.monotonic() - t0
    # Not torn, and the daemon's loop is not held up for long.
    assert view.port(0) == [3] * sb.PORT_WORDS
    assert not view.header[sb.SEQ] & 1
    assert sb._SNAPSHOT_PATIENCE <= waited < 0.1
    view.release()


def test_a_block_never_read_consistently_is_copied_as_it_is(block: StatsBlock) -> None:
    block.begin_publish()
    block.publish_port(0, [5] * sb.PORT_WORDS)
    view = block.snapshot()
    assert view.port(0) == [5] * sb.PORT_WORDS
    assert view.header[sb.SEQ] & 1
    view.release()


def _hammer(fd: int, ready: Event, stop: Event) -> None:
    """A worker publishing related figures every 20 us (a real one: every ms at most)."""
    b = StatsBlock(fd, owner=False)
    perf = [0] * N_STATS
    zero = [0] * N_STATS
    ready.set()
    i = 0
    clock = time.perf_counter_ns
    while not stop.is_set():
        for _ in range(1000):
            i += 1
            pause_until = clock() + 20_000
            while clock() < pause_until:
                pass
            b.begin_publish()
            perf[0] = i
            b.publish_perf(perf, zero)
            b.publish_port(9, [i] * sb.PORT_WORDS)
            b.publish_coverage([i, 2 * i])
            b.header[sb.ITERATIONS] = i
            b.end_publish()
    b.close()


def test_snapshots_are_consistent_while_a_process_publishes(block: StatsBlock) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_hammer, args=(block.fd, ready, stop), daemon=True)
    block.snapshot().release()  # the block before the writer starts: consistent
    writer.start()
    try:
        assert ready.wait(10)
        seen: list[int] = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            # Every snapshot is consistent: a fresh one, or (the writer off
            # its CPU mid-publication) the last consistent one.
            view = block.snapshot()
            i = view.perf_raw()[0]
            # One instant of the writer: every figure from the same round.
            assert view.port(9) == [i] * sb.PORT_WORDS
            assert view.coverage_totals(2) == [i, 2 * i]
            assert view.header[sb.ITERATIONS] == i
            assert not view.header[sb.SEQ] & 1
            assert not seen or i >= seen[-1]  # never backwards
            seen.append(i)
            view.release()
        # The reader really ran alongside the writer.
        assert len(set(seen)) > 10, len(seen)
    finally:
        stop.set()
        writer.join(10)
        if writer.is_alive():
            writer.kill()
            writer.join()
    assert writer.exitcode == 0


def test_port_stats_helpers() -> None:
    stats = NetdevStats(rx_packets=1, tx_bytes=10)
    values = sb.port_values(stats)
    assert len(values) == sb.PORT_WORDS
    assert values[sb.PORT_FIELDS.index("rx_packets")] == 1
    sb.add_port_stats(stats, list(range(1, sb.PORT_WORDS + 1)))
    assert stats.rx_packets == 2
    assert stats.tx_bytes == 10 + sb.PORT_FIELDS.index("tx_bytes") + 1
    assert all(hasattr(stats, f) for f in sb.PORT_FIELDS)


def test_block_view_over_a_pickled_copy(block: StatsBlock) -> None:
    block.publish_coverage([42])
    view = sb.BlockView(bytearray(pickle.loads(pickle.dumps(bytes(block._map)))))
    assert view.coverage_totals(1) == [42]
    view.release()
