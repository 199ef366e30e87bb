"""The ``afpacket`` netdev's PMD-worker side (afpacket_worker.py) on real veth pairs.

Most tests open the worker's side in this process, from duplicates of the
descriptors the daemon's side exports (what the worker channel does); the
last ones run real worker processes (as test_worker_pmd.py does) that
forward between two afpacket ports.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

from pyvswitchd.datapath import stats_block as sb
from pyvswitchd.datapath import worker_messages as msg
from pyvswitchd.datapath.port import Port
from pyvswitchd.datapath.worker_pmd import WorkerPmd
from pyvswitchd.datapath.worker_spawner import WorkerSpawner
from pyvswitchd.netdev.afpacket import AfPacketNetdev
from pyvswitchd.netdev.afpacket_worker import NotPolled
from pyvswitchd.netdev.provider import EINPROGRESS, OK, Netdev
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp.packet import Packet

from .test_worker_pmd import FakeHost, wait_for
from .veth import FakeLog, Pair, frame, is_test, peer_frames, recv_frames, run

pytestmark = pytest.mark.needs_root


def worker_side(nd: AfPacketNetdev, qids: Sequence[int]) -> AfPacketNetdev:
    """What a worker polling ``qids`` opens, from duplicated descriptors, as over the channel."""
    state, fds = nd.export_to_worker(qids)
    side = AfPacketNetdev.open_in_worker(nd.name, state, [os.dup(fd) for fd in fds])
    assert isinstance(side, AfPacketNetdev)
    return side


def send_all(side: Netdev, frames: list[bytes]) -> None:
    rc = side.send(0, [Packet(f) for f in frames])
    deadline = time.monotonic() + 2
    while rc == EINPROGRESS and time.monotonic() < deadline:
        rc = side.process_async(0, False)
    assert rc == OK


def inode(fd: int) -> int:
    return os.fstat(fd).st_ino


@pytest.mark.parametrize("ring", ["v2", "v3", "none"])
def test_worker_side_shares_rx_queue_and_counts_apart(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], ring: str
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"rx-ring": ring})
    side = worker_side(nd, [0])
    try:
        assert side.rx_ring == ring and side.error is None
        # The same socket (no new fanout member), a transmit socket of its own.
        daemon_rx, side_rx = nd.rx_fd(0), side.rx_fd(0)
        assert daemon_rx is not None and side_rx is not None and daemon_rx != side_rx
        assert inode(daemon_rx) == inode(side_rx)
        assert side.tx_path is not None and nd.tx_path is not None
        assert inode(side.tx_path.fd) != inode(nd.tx_path.fd)
        peer = pair.peer_socket()
        sent = [frame(i, 60 + i) for i in range(50)]
        for data in sent:
            peer.send(data)
        assert recv_frames(side, len(sent)) == sent
        out = [frame(100 + i) for i in range(20)]
        send_all(side, out)
        assert peer_frames(peer, len(out)) == out
        # Each side counts what it did: the daemon adds them up.
        assert (side.stats.rx_packets, side.stats.tx_packets) == (50, 20)
        assert (nd.stats.rx_packets, nd.stats.tx_packets) == (0, 0)
    finally:
        side.close()
    # Closing the worker's side closed its copies only.
    assert nd.rx_fd(0) is not None and inode(nd.rx_fd(0) or -1) > 0
    send_all(nd, [frame(200)])
    assert peer_frames(peer, 1) == [frame(200)]


@pytest.mark.parametrize("ring", ["v2", "v3"])
def test_queue_handed_over_continues_at_the_ring_position(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], ring: str
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"rx-ring": ring})
    peer = pair.peer_socket()
    sent = [frame(i) for i in range(45)]
    for data in sent:
        peer.send(data)
    time.sleep(0.05)  # v3: the block timer hands the block over
    first = worker_side(nd, [0])
    got = [p.data for p in first.recv(0) if is_test(p.data)]
    assert got == sent[: len(got)] and 0 < len(got) < len(sent)  # one burst, mid-block for v3
    first.close()  # a reload: the reader lets go and says where it stopped
    second = worker_side(nd, [0])
    assert recv_frames(second, len(sent) - len(got)) == sent[len(got) :]
    second.close()
    # Taken over with the ring empty: only the position handed over tells
    # where the kernel writes next.
    third = worker_side(nd, [0])
    try:
        more = [frame(100 + i) for i in range(40)]
        for data in more:
            peer.send(data)
        assert recv_frames(third, len(more), timeout=0.5) == more
        assert third.stats.rx_dropped == 0
    finally:
        third.close()


@pytest.mark.parametrize("ring", ["v2", "v3"])
def test_reader_that_vanished_is_followed_at_the_oldest_frame(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], ring: str
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"rx-ring": ring})
    peer = pair.peer_socket()
    dead = worker_side(nd, [0])
    sent = [frame(i) for i in range(10)]
    for data in sent:
        peer.send(data)
    assert recv_frames(dead, len(sent)) == sent
    # Killed: its position was never written (the cursor still says 0, held).
    assert dead._cursors is not None
    dead._cursors.close()
    dead._cursors = None
    dead.close()
    later = [frame(100 + i) for i in range(5)]
    for data in later:
        peer.send(data)
    time.sleep(0.05)
    side = worker_side(nd, [0])
    try:
        log = FakeLog()
        side.log = log  # type: ignore[assignment]
        assert any("ended abruptly" in w for w in log.warnings), log.warnings
        assert recv_frames(side, len(later)) == later
    finally:
        side.close()


def test_worker_sides_have_their_own_tx_rings(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"n_rxq": "2", "tx-kick": "async"})
    one, two = worker_side(nd, [0]), worker_side(nd, [1])
    try:
        assert isinstance(one._rxqs[1], NotPolled) and one.recv(1) == [] and one.rx_fd(0)
        assert isinstance(two._rxqs[0], NotPolled) and two.recv(0) == []
        assert one.tx_path and two.tx_path and one.tx_path.ring and two.tx_path.ring
        assert inode(one.tx_path.fd) != inode(two.tx_path.fd)
        kicker = one.kicker
        assert kicker is not None and kicker.mode == "async"
        peer = pair.peer_socket()
        a = [frame(i) for i in range(64)]
        b = [frame(100 + i) for i in range(64)]
        for k in range(0, 64, 16):
            send_all(one, a[k : k + 16])
            send_all(two, b[k : k + 16])
        got = peer_frames(peer, 128)
        assert sorted(got) == sorted(a + b)
        assert one.stats.tx_packets == two.stats.tx_packets == 64
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize(
    ("options", "tx_ring", "rx_ring", "tso"),
    [
        ({"tx-ring": "false"}, False, "v2", False),
        ({"rx-ring": "none", "tx-kick": "sync"}, True, "none", False),
        ({"userspace-tso": "true"}, True, "none", True),
    ],
)
def test_options_carry_over(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    options: dict[str, str],
    tx_ring: bool,
    rx_ring: str,
    tso: bool,
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, options)
    side = worker_side(nd, [0])
    try:
        assert (side.tx_ring, side.rx_ring, side.tso) == (tx_ring, rx_ring, tso)
        assert side.tx_path is not None and (side.tx_path.ring is not None) == tx_ring
        if tx_ring:
            assert side.kicker is not None and side.kicker.mode == nd._wanted[3]
        peer = pair.peer_socket()
        peer.send(frame(1))
        assert recv_frames(side, 1) == [frame(1)]
        send_all(side, [frame(2)])
        assert peer_frames(peer, 1) == [frame(2)]
    finally:
        side.close()


def test_vanished_interface_is_contained_in_the_worker_side(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host)
    side = worker_side(nd, [0])
    log = FakeLog()
    side.log = log  # type: ignore[assignment]
    run("ip", "link", "del", pair.host)
    try:
        batch = [Packet(frame(i)) for i in range(4)]
        side.send(0, batch)  # the kernel says no: error state
        assert side.error is not None and "disappeared" in side.error
        assert side.send(0, batch) == errno.ENODEV
        assert side.stats.tx_dropped == 8 and side.recv(0) == []
        assert len([w for w in log.warnings if "disappeared" in w]) == 1
        # The daemon's side had not met it, and finds it when asked.
        assert nd.error is None and nd.stats.tx_dropped == 0
        assert "error=" in nd.status() and nd.error is not None
        # Exported in that state, a worker's side opens (no raise) and drops.
        gone = worker_side(nd, [0])
        assert gone.error is not None and gone.rx_fd(0) is None
        assert gone.send(0, batch) == errno.ENODEV and gone.stats.tx_dropped == 4
        gone.close()
    finally:
        side.close()


def test_interface_gone_before_the_worker_opens(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host)
    state, fds = nd.export_to_worker([0])
    run("ip", "link", "del", pair.host)
    side = AfPacketNetdev.open_in_worker(nd.name, state, [os.dup(fd) for fd in fds])
    assert isinstance(side, AfPacketNetdev)
    log = FakeLog()
    side.log = log  # type: ignore[assignment]
    assert side.error is not None and log.warnings
    assert side.send(0, [Packet(frame(1))]) == errno.ENODEV
    side.close()


# -- real worker processes ---------------------------------------------------------------


class VethHost(FakeHost):
    """FakeHost, with ports reopened when their queue set changes (as the datapath does)."""

    def export_port(
        self, pmd: WorkerPmd, port: Port, qids: Sequence[int]
    ) -> tuple[msg.PortSpec, list[int]]:
        state, fds = port.netdev.export_to_worker(qids)
        spec = msg.PortSpec(
            port.port_no, port.name, port.type, port.port_no, (0, tuple(qids)), state, len(fds)
        )
        return spec, fds


@asynccontextmanager
async def workers(
    netdevs: Sequence[AfPacketNetdev], cores: Sequence[int]
) -> AsyncIterator[tuple[list[WorkerPmd], VethHost]]:
    ports = {no: Port(no, nd, "br0") for no, nd in enumerate(netdevs, start=1)}
    host = VethHost(ports)
    log = Vlog("test", syslog_method="null").module("dpif_netdev")
    spawner = WorkerSpawner(log)
    pmds = [
        WorkerPmd(core, 0, serial, host, log, spawner) for serial, core in enumerate(cores, start=1)
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(spawner.run)
        for pmd in pmds:
            await nursery.start(pmd.supervise)
        try:
            yield pmds, host
        finally:
            with trio.fail_after(10):
                for pmd in pmds:
                    await pmd.request_exit()
            for pmd in pmds:
                pmd.close()
            nursery.cancel_scope.cancel()


async def collect(sock: socket.socket, want: int, limit: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    with trio.move_on_after(limit):
        while len(got) < want:
            try:
                data = sock.recv(70000)
            except BlockingIOError:
                await trio.sleep(0.002)
                continue
            if is_test(data):
                got.append(data)
    return got


async def test_worker_processes_forward_and_hand_a_queue_over(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    a, b = make_pair(), make_pair()
    nd_a, nd_b = make_netdev(a.host), make_netdev(b.host)
    peer_a, peer_b = a.peer_socket(), b.peer_socket()
    async with workers([nd_a, nd_b], [0, 1]) as (pmds, host):
        first, second = pmds
        rxq = host.ports[1].rxqs[0]
        tx = {1: 0, 2: 0}
        await first.reload([rxq], tx)
        sent = [frame(i) for i in range(200)]
        for data in sent[:100]:
            peer_a.send(data)
        assert await collect(peer_b, 100) == sent[:100]
        # Frames wait in the ring while the queue moves: the worker that had
        # it lets go first, the next one starts where it stopped.
        await first.reload([], {})
        for data in sent[100:]:
            peer_a.send(data)
        await second.reload([rxq], {1: 1, 2: 1})
        assert await collect(peer_b, 100) == sent[100:]
        await trio.sleep(0.05)
        assert await collect(peer_b, 1, limit=0.1) == []  # nothing twice
        # Port counts: the daemon's side did nothing, each worker its part.
        for pmd in pmds:
            pmd.refresh()
        rx = [pmd.view.port(1)[sb.PORT_FIELDS.index("rx_packets")] for pmd in pmds]
        tx_b = [pmd.view.port(2)[sb.PORT_FIELDS.index("tx_packets")] for pmd in pmds]
        assert nd_a.stats.rx_packets == 0 and nd_b.stats.tx_packets == 0
        assert sum(rx) >= 200 and sum(tx_b) >= 200 and min(rx) >= 100


async def test_killed_worker_replacement_resumes_the_queue(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    a, b = make_pair(), make_pair()
    nd_a, nd_b = make_netdev(a.host), make_netdev(b.host)
    peer_a, peer_b = a.peer_socket(), b.peer_socket()
    async with workers([nd_a, nd_b], [0]) as (pmds, host):
        (pmd,) = pmds
        await pmd.reload([host.ports[1].rxqs[0]], {1: 0, 2: 0})
        for i in range(50):
            peer_a.send(frame(i))
        assert await collect(peer_b, 50) == [frame(i) for i in range(50)]
        old = pmd.pid
        assert old is not None
        os.kill(old, 9)
        await wait_for(lambda: pmd.pid != old and pmd.reloads >= 2, limit=10)
        later = [frame(100 + i) for i in range(50)]
        for data in later:
            peer_a.send(data)
        assert await collect(peer_b, 50) == later
        assert any("ended abruptly" in r.text for r in host.logs), host.logs
