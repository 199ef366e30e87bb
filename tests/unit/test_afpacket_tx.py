"""Transmit through the ``afpacket`` netdev's TX ring, kicked in each ``tx-kick`` mode.

``sync`` kicks run the kernel's transmit in this thread, so a veth's frames
are complete when ``send`` returns; ``async`` kicks run in an io_uring
kernel worker, so ``send`` usually returns EINPROGRESS and ``process_async``
finishes the batch; ``auto`` switches between the two by the port's load.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

import pytest

from pyvswitchd.netdev import txkick
from pyvswitchd.netdev.afpacket import AfPacketNetdev
from pyvswitchd.netdev.provider import EINPROGRESS, OK
from pyvswitchd.netdev.txring import TxBatch, TxRing
from pyvswitchd.odp.packet import Packet

from .veth import FakeLog, Pair, frame, peer_frames, run

pytestmark = pytest.mark.needs_root


def complete(nd: AfPacketNetdev, qid: int, rc: int, timeout: float = 2.0) -> int:
    """``rc`` of a ``send`` on ``qid``, or what its completion returns if it was EINPROGRESS."""
    deadline = time.monotonic() + timeout
    while rc == EINPROGRESS and time.monotonic() < deadline:
        rc = nd.process_async(qid, False)
    return rc


def needs_io_uring(nd: AfPacketNetdev) -> None:
    assert nd.kicker is not None
    if nd.kicker.unavailable:
        pytest.skip(f"io_uring unavailable here ({nd.kicker.unavailable})")


@pytest.mark.parametrize(
    "options", [{"tx-ring": "false"}, {"tx-kick": "sync"}, {"tx-kick": "async"}], ids=str
)
def test_tx_arrives_once_and_identical(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    options: dict[str, str],
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, options)
    peer = pair.peer_socket()
    sent = [frame(i, 60 + (i * 37) % 1400) for i in range(96)]
    for k in range(0, 96, 32):
        assert complete(nd, k // 32, nd.send(k // 32, [Packet(d) for d in sent[k : k + 32]])) == OK
    assert peer_frames(peer, len(sent)) == sent
    assert nd.stats.tx_packets == 96 and nd.stats.tx_bytes == sum(map(len, sent))
    assert nd.stats.tx_dropped == nd.stats.tx_errors == 0
    # Longer than the MTU: not sent, counted; 4 bytes more are allowed for a VLAN tag.
    too_long, tagged = frame(200, 1515), frame(201, 1518, vlan=5)
    rc = nd.send(0, [Packet(too_long), Packet(tagged)])
    assert rc == errno.EMSGSIZE or complete(nd, 0, rc) == OK
    # The peer's plain socket gets the tag as metadata, like any receiver.
    assert peer_frames(peer, 1) == [tagged[:12] + tagged[16:]]
    assert nd.stats.tx_errors == 1 and nd.stats.tx_packets == 97


@pytest.mark.parametrize("kick", ["sync", "async"])
def test_tx_ring_wraps_around_in_order(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    monkeypatch: pytest.MonkeyPatch,
    kick: str,
) -> None:
    # 40 slots: batches of 32 and 5 start anywhere, and some cross the ring's end.
    monkeypatch.setattr(TxRing, "SLOTS", 40)
    pair = make_pair()
    nd = make_netdev(pair.host, {"tx-kick": kick})
    peer = pair.peer_socket()
    sent: list[bytes] = []
    for q in range(8):
        batch = [frame(len(sent) + k, 60 + (k * 97) % 1440) for k in range(32 if q % 3 else 5)]
        assert complete(nd, q % 2, nd.send(q % 2, [Packet(d) for d in batch])) == OK
        assert peer_frames(peer, len(batch)) == batch  # (read often: the peer's buffer)
        sent += batch
    assert nd.stats.tx_packets == len(sent) and nd.stats.tx_bytes == sum(map(len, sent))
    assert nd.stats.tx_dropped == nd.stats.tx_errors == 0


@pytest.mark.parametrize("kick", ["auto", "async"])
def test_tx_async_completion_force_and_ring_full(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], kick: str
) -> None:
    pair = make_pair()
    # A slow token bucket holds the frames in the qdisc: their slots stay the kernel's.
    if run("tc", "qdisc", "add", "dev", pair.host, "root", "tbf", "rate", "400kbit",
           "burst", "1600", "limit", "200000", check=False).returncode:  # fmt: skip
        pytest.skip("needs tc with the tbf qdisc")
    nd = make_netdev(pair.host, {"tx-kick": kick})
    peer = pair.peer_socket()
    sent = [frame(i, 100) for i in range(32)]  # 25.6 kbit: about 64 ms at 400 kbit/s
    assert nd.send(0, [Packet(d) for d in sent]) == EINPROGRESS
    assert nd.stats.tx_packets < 32  # counted at completion
    deadline = time.monotonic() + 2
    while (rc := nd.process_async(0, False)) == EINPROGRESS and time.monotonic() < deadline:
        time.sleep(0.005)
    assert rc == OK and nd.stats.tx_packets == 32 and nd.process_async(0, False) == OK
    assert peer_frames(peer, 32) == sent

    # Forced while still in the qdisc: the kernel took the frames and will send
    # them, so they count as sent; the slots stay the kernel's until then.
    assert nd.send(1, [Packet(frame(i, 100)) for i in range(32, 64)]) == EINPROGRESS
    assert nd.process_async(1, True) == OK
    assert nd.stats.tx_packets == 64 and nd.stats.tx_dropped == 0

    # 20 batches into a 512-slot ring behind a slow qdisc: the ring fills up.
    results = [nd.send(q % 4, [Packet(frame(64 + q * 32 + i, 100)) for i in range(32)])
               for q in range(20)]  # fmt: skip
    assert errno.ENOBUFS in results and nd.stats.tx_dropped > 0
    for q in range(20):
        if results[q] == EINPROGRESS:  # each deferred batch gets its own completion
            assert nd.process_async(q % 4, True) in (OK, errno.ETIMEDOUT)
    for q in range(4):
        assert nd.process_async(q, False) == OK  # nothing left pending
    stats = nd.stats
    assert stats.tx_packets + stats.tx_dropped + stats.tx_errors == 64 + 640
    run("tc", "qdisc", "del", "dev", pair.host, "root")
    # The abandoned slots come back; later sends go through and count normally.
    time.sleep(0.05)
    before = stats.tx_packets
    for _ in range(200):
        rc = complete(nd, 0, nd.send(0, [Packet(frame(5000))]))
        if rc == OK:
            break
        time.sleep(0.01)
    assert rc == OK and stats.tx_packets == before + 1


# -- tx-kick ------------------------------------------------------------------------


def test_async_kicks_leave_the_kernel_work_to_a_worker(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"tx-kick": "async"})
    needs_io_uring(nd)
    assert nd.kicker is not None and "tx_kick=async" in nd.status()
    # A kick's result is the bytes the ring sent, not an error: no link re-check.
    checks: list[str] = []

    def link_state() -> str:
        checks.append("checked")
        return "up"

    monkeypatch.setattr(nd, "_link_state", link_state)
    peer = pair.peer_socket()
    sent = [frame(i, 1000) for i in range(320)]
    for k in range(0, 320, 32):
        assert complete(nd, 0, nd.send(0, [Packet(d) for d in sent[k : k + 32]])) == OK
    assert peer_frames(peer, len(sent)) == sent
    # The first kick of every batch went to io_uring; none ran in this thread
    # (a re-kick for frames a running kick missed may, but never the first).
    assert nd.kicker.async_kicks >= 10 and nd.kicker.sync_kicks == 0
    assert checks == []
    assert nd.stats.tx_packets == 320 and nd.stats.tx_dropped == 0


def test_auto_kicks_here_when_idle_and_in_a_worker_when_busy(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host)  # tx-kick=auto is the default
    needs_io_uring(nd)
    kicker = nd.kicker
    assert kicker is not None
    peer = pair.peer_socket()
    # A lone frame on an idle port: kicked at once, in this thread.
    assert nd.send(0, [Packet(frame(0))]) == OK and kicker.sync_kicks == 1
    # 32 frames of 1000 bytes about every 100 us, 60 times: some 200 kB per
    # ms, far past BUSY_BYTES, for several windows.
    n = 60 * 32
    sent = [frame(i, 1000) for i in range(1, n + 1)]  # made first: making them is slow
    for k in range(0, n, 32):
        complete(nd, 0, nd.send(0, [Packet(d) for d in sent[k : k + 32]]))
        time.sleep(0.0001)
    assert kicker.async_kicks > 0
    assert peer_frames(peer, n + 1) == [frame(0), *sent]  # in order, none lost
    # Idle for a while: the next lone frame goes out here.
    time.sleep(20 * txkick.WINDOW_NS / 1e9)
    before = kicker.sync_kicks
    assert complete(nd, 0, nd.send(0, [Packet(frame(n + 1))])) == OK
    assert kicker.sync_kicks == before + 1


def test_without_io_uring_every_mode_kicks_here(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(txkick, "open_write_ring", lambda fd: (None, "Operation not permitted"))
    pair = make_pair()
    nd = make_netdev(pair.host, {"tx-kick": "async"})
    log = FakeLog()
    nd.log = log  # type: ignore[assignment]
    assert log.warnings == [
        f"{pair.host}: io_uring unavailable (Operation not permitted), tx ring kicked synchronously"
    ]
    assert "tx_kick=sync" in nd.status()
    peer = pair.peer_socket()
    assert nd.send(0, [Packet(frame(i)) for i in range(8)]) == OK
    assert peer_frames(peer, 8) == [frame(i) for i in range(8)]


@pytest.mark.parametrize("kick", ["sync", "async"])
def test_interface_deleted_with_kicks_in_flight(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], kick: str
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"tx-kick": kick})
    results = [nd.send(0, [Packet(frame(32 * q + k, 1400)) for k in range(32)]) for q in range(4)]
    run("ip", "link", "del", pair.host)
    results += [nd.send(0, [Packet(frame(128 + k)) for k in range(32)]) for _ in range(4)]
    for rc in results:
        if rc == EINPROGRESS:
            assert nd.process_async(0, True) in (OK, errno.ENODEV, errno.ETIMEDOUT)
    total = 256
    deadline = time.monotonic() + 2
    while nd.error is None and time.monotonic() < deadline:
        rc = nd.send(0, [Packet(frame(999))])
        total += 1
        if rc == EINPROGRESS:
            nd.process_async(0, True)
        time.sleep(0.01)
    assert nd.error is not None and "disappeared" in nd.error
    stats = nd.stats
    # Every frame is accounted for exactly once: sent, dropped or in error.
    assert stats.tx_packets + stats.tx_dropped + stats.tx_errors == total
    assert nd.send(0, [Packet(frame(1000))]) == errno.ENODEV


def test_slots_back_but_unread_are_settled_in_bulk(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 64 slots, batches of 32: the third batch lands on the first one's slots,
    # which the kernel gave back but nobody has read (reaped) yet -- the state
    # asynchronous kicks leave behind.  Driven on the ring itself, kicked by
    # hand, so that nothing reaps in between.
    monkeypatch.setattr(TxRing, "SLOTS", 64)
    settled: list[int] = []
    real = TxRing._settle_run

    def settle_run(ring: TxRing, i: int, n: int) -> None:
        settled.append(n)
        real(ring, i, n)

    monkeypatch.setattr(TxRing, "_settle_run", settle_run)
    pair = make_pair()
    nd = make_netdev(pair.host, {"tx-kick": "sync"})
    ring, stats = nd.tx_path.ring, nd.stats
    assert ring is not None
    peer = pair.peer_socket()
    sent = [frame(i, 200) for i in range(96)]
    batches = [TxBatch(0) for _ in range(3)]
    for k, batch in enumerate(batches):
        frames = sent[32 * k : 32 * k + 32]
        assert ring.put_many(frames, [200] * 32, None, batch) == 32
        os.write(nd.tx_path.fd, b"")  # a veth: every slot is back when this returns
    assert settled == [32] and batches[0].remaining == 0
    assert stats.tx_packets == 32 and stats.tx_bytes == 32 * 200  # the first batch
    assert [ring.reap(b) for b in batches] == [0, 0, 0]
    assert stats.tx_packets == 96 and stats.tx_bytes == 96 * 200
    assert peer_frames(peer, 96) == sent
