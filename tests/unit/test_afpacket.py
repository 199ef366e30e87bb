"""The ``afpacket`` / ``system`` netdev on real veth pairs: opening, receive, link state, TSO.

Every test builds its own veth pair (``make_pair``, see veth.py): the netdev
binds the end in this namespace, the other end lives in a private namespace
where the test sends and receives through raw sockets.  Transmit is in
test_afpacket_tx.py.  Needs CAP_NET_ADMIN and iproute2.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import socket
import struct
import time
from collections.abc import Callable

import pytest
import trio
import trio.lowlevel

from pyvswitchd.netdev import afpacket
from pyvswitchd.netdev.afpacket import AfPacketNetdev, SystemNetdev
from pyvswitchd.netdev.provider import EINPROGRESS, OK, NetdevError
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.odp.packet import Packet

from .veth import (
    IFF_PROMISC,
    FakeLog,
    Pair,
    frame,
    iface_flags,
    is_test,
    netns,
    peer_frames,
    recv_frames,
    run,
)

pytestmark = pytest.mark.needs_root


# -- opening and configuration ------------------------------------------------------


def test_missing_device_is_a_clear_error() -> None:
    with pytest.raises(NetdevError) as info:
        AfPacketNetdev("pvnosuchdev9")
    assert str(info.value) == (
        "pvnosuchdev9: could not open network device pvnosuchdev9 (No such device)"
    )


def test_registry_types_and_bad_options(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair()
    registry = default_registry()
    nd = registry.create("system", pair.host, {})
    try:
        assert type(nd) is SystemNetdev and nd.pmd and registry.get("afpacket") is AfPacketNetdev
        assert nd.status() == (
            f"ifindex={socket.if_nametoindex(pair.host)}, link=up, mtu=1500, rx_ring=v2, "
            "tx_ring=on, tx_kick=auto"
        )
    finally:
        nd.close()
    for options, text in [
        ({"rx-ring": "v4"}, 'bad rx-ring "v4"'),
        ({"tx-ring": "yes"}, 'bad tx-ring "yes"'),
        ({"userspace-tso": "1"}, 'bad userspace-tso "1"'),
        ({"tx-kick": "later"}, 'bad tx-kick "later"'),
        ({"bogus": "x"}, 'unknown option "bogus"'),
    ]:
        with pytest.raises(NetdevError, match=text):
            AfPacketNetdev(pair.host, options)


def test_reconfigure_switches_ring_and_mtu_promisc(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(mtu=1400)
    nd = AfPacketNetdev(pair.host)
    try:
        assert nd.mtu == 1400
        assert iface_flags(pair.host) & IFF_PROMISC
        nd.set_config({"rx-ring": "v3", "tx-ring": "false"})
        assert nd.reconfigure_required and "rx_ring=v2" in nd.status()
        nd.reconfigure()
        assert not nd.reconfigure_required
        assert "mtu=1400, rx_ring=v3, tx_ring=off" in nd.status()
        assert iface_flags(pair.host) & IFF_PROMISC
    finally:
        nd.close()
        nd.close()  # idempotent
    assert not iface_flags(pair.host) & IFF_PROMISC


def test_ring_setup_failure_falls_back_and_is_logged(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_ring(*args: object) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setitem(afpacket._RX_RINGS, "v2", no_ring)
    pair = make_pair()
    nd = make_netdev(pair.host)
    assert "rx_ring=none" in nd.status()
    log = FakeLog()
    nd.log = log  # type: ignore[assignment]
    assert log.warnings == [
        f"{pair.host}: v2 rx ring setup failed (Cannot allocate memory), receiving without a ring"
    ]
    pair.peer_socket().send(frame(1))
    assert recv_frames(nd, 1) == [frame(1)]


def test_reconfigure_keeps_or_fails_quietly(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host)
    rx_sock = nd._rxqs[0].sock
    nd.set_config({})  # unchanged: nothing to do
    assert not nd.reconfigure_required
    nd.reconfigure()
    assert nd._rxqs[0].sock is rx_sock  # the sockets (and ring contents) were kept
    nd.set_config({"n_rxq": "2"})
    run("ip", "link", "del", pair.host)
    nd.reconfigure()  # the device is gone: error state, no exception
    assert nd.error is not None and "No such device" in nd.error
    assert nd.recv(0) == [] and nd.send(0, [Packet(frame(1))]) == errno.ENODEV


# -- receive ------------------------------------------------------------------------


@pytest.mark.parametrize("ring", ["v2", "v3", "none"])
def test_rx_exactly_the_injected_frames(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], ring: str
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"rx-ring": ring})
    sock = pair.peer_socket()
    sent = [frame(i, 60 + i * 7) for i in range(100)]
    sent.append(frame(100, vlan=0x2005))  # the kernel strips the tag; it must come back
    for data in sent:
        sock.send(data)
    got = recv_frames(nd, len(sent))
    assert got == sent
    assert nd.stats.rx_packets >= len(sent)
    assert nd.stats.rx_errors == 0 and nd.stats.rx_dropped == 0
    assert f"rx_ring={ring}" in nd.status()


@pytest.fixture
def small_ring_port(
    make_pair: Callable[..., Pair],
    make_netdev: Callable[..., AfPacketNetdev],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[AfPacketNetdev, socket.socket]:
    """A netdev whose TPACKET_V2 rx ring is 32 frames long, so tests can fill
    and wrap it, and the socket that sends into it from the peer end."""
    monkeypatch.setattr(afpacket.RxRingV2, "RING_BYTES", 0)
    monkeypatch.setattr(afpacket.RxRingV2, "MIN_FRAMES", 32)
    pair = make_pair()
    return make_netdev(pair.host), pair.peer_socket()


def test_rx_ring_wraps_around_in_order(
    small_ring_port: tuple[AfPacketNetdev, socket.socket],
) -> None:
    # A 32-frame ring, filled 25 frames at a time: runs cross the ring's end
    # (read in two pieces), and a VLAN-tagged frame sits inside a run.
    nd, sock = small_ring_port
    total = 0
    for round_ in range(5):
        sent = [frame(round_ * 25 + k, 60 + (k * 53) % 1400) for k in range(25)]
        sent[11] = frame(round_ * 25 + 11, 100, vlan=7)
        for data in sent:
            sock.send(data)
        assert recv_frames(nd, len(sent)) == sent
        total += sum(map(len, sent))
    assert nd.stats.rx_packets == 125 and nd.stats.rx_bytes == total
    assert nd.stats.rx_errors == nd.stats.rx_dropped == 0


def test_rx_ring_overflow_counts_drops(
    small_ring_port: tuple[AfPacketNetdev, socket.socket],
) -> None:
    nd, sock = small_ring_port
    sent = [frame(i) for i in range(100)]
    for data in sent:
        sock.send(data)
    assert recv_frames(nd, 32) == sent[:32]  # the ring held the first 32
    # Frames written while drops are unread carry TP_STATUS_LOSING: the next
    # receive reads the kernel's count.
    sock.send(frame(100))
    assert recv_frames(nd, 1) == [frame(100)]
    assert nd.stats.rx_dropped == 68


def test_rx_ring_out_of_step_is_realigned(
    small_ring_port: tuple[AfPacketNetdev, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Put the reader's position among empty frames while the kernel fills
    # others, as seen once under heavy TCP: without re-alignment the port
    # would never receive again.
    monkeypatch.setattr(afpacket, "_ERROR_POLL_EVERY", 4)
    nd, sock = small_ring_port
    ring = nd._rxqs[0]
    assert isinstance(ring, afpacket.RxRingV2)
    assert ring.check_step() == 0  # empty ring: in step
    sent = [frame(i) for i in range(10)]
    for data in sent:
        sock.send(data)
    time.sleep(0.05)
    assert ring.check_step() == ring.check_step() == 0  # our frame is filled: in step
    ring._next = 20  # frames 20..31 empty, 0.. filled: out of step
    assert nd.recv(0) == []
    got = recv_frames(nd, len(sent))
    assert got == sent
    assert nd.ring_resyncs == 1 and "rx_ring_resyncs=1" in nd.status()
    # In step again: later frames arrive in order, with no further skips.
    for chunk in range(1, 5):
        more = [frame(chunk * 10 + k) for k in range(10)]
        for data in more:
            sock.send(data)
        assert recv_frames(nd, len(more)) == more
    assert nd.ring_resyncs == 1 and nd.stats.rx_dropped == 0


def test_rx_fanout_over_two_queues(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"n_rxq": "2"})
    assert nd.n_rxq == 2 and "rx_queues=2" in nd.status()
    sock = pair.peer_socket()
    sent = []
    for i in range(64):  # IPv4/UDP, one flow each, so the fanout hash spreads them
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 1, i]))  # fmt: skip
        udp = struct.pack("!HHHH", 1000 + i, 2000 + i * 3, 8, 0)
        sent.append(b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + udp)
    for data in sent:
        sock.send(data)
    got: list[bytes] = []
    deadline = time.monotonic() + 2
    while len(got) < len(sent) and time.monotonic() < deadline:
        for qid in (0, 1):
            got += [p.data for p in nd.recv(qid) if p.data in sent]
        time.sleep(0.001)
    assert sorted(got) == sorted(sent)


def test_own_frames_are_not_received(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair()
    nd = AfPacketNetdev(pair.host)
    other = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        peer = pair.peer_socket()
        assert nd.send(0, [Packet(frame(i)) for i in range(10)]) == OK
        other.bind((pair.host, 0))
        other.send(frame(99))  # someone else transmitting on the port: outgoing too
        assert len(peer_frames(peer, 11)) == 11
        assert recv_frames(nd, 1, timeout=0.1) == []
    finally:
        other.close()
        nd.close()


@pytest.mark.parametrize("ring", ["v2", "v3"])
async def test_wait_readable_wakes_for_a_frame(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev], ring: str
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host, {"rx-ring": ring})
    sock = pair.peer_socket()
    with trio.move_on_after(0.05) as idle:
        await nd.wait_readable(0)  # nothing there: it must sleep
    assert idle.cancelled_caught
    start = trio.current_time()
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(nd.wait_readable, 0)
            await trio.sleep(0.01)
            sock.send(frame(1))
    # v3 hands a block over when its 1 ms timer retires it: allow generous slack.
    assert trio.current_time() - start < 0.5
    assert [p.data for p in nd.recv(0) if is_test(p.data)] == [frame(1)]


# -- link state and errors ----------------------------------------------------------


def test_link_down_drops_then_recovers(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host)
    peer = pair.peer_socket()
    run("ip", "link", "set", pair.host, "down")
    assert nd.send(0, [Packet(frame(1)), Packet(frame(2))]) == errno.ENETDOWN
    assert nd.stats.tx_dropped == 2 and nd.error is None
    assert nd.send(0, [Packet(frame(3))]) == errno.ENETDOWN
    assert nd.stats.tx_dropped == 3
    assert nd.recv(0) == [] and "link=down" in nd.status()
    run("ip", "link", "set", pair.host, "up")
    time.sleep(0.12)  # a down link is re-read at most every 100 ms
    deadline = time.monotonic() + 2
    while (rc := nd.send(0, [Packet(frame(4))])) != OK and time.monotonic() < deadline:
        time.sleep(0.02)  # carrier comes back a moment after "up"
    assert rc == OK and "link=up" in nd.status()
    assert frame(4) in peer_frames(peer, 1)


@pytest.mark.parametrize("ring", ["v2", "none"])
async def test_deleted_interface_error_state(make_pair: Callable[..., Pair], ring: str) -> None:
    pair = make_pair()
    nd = AfPacketNetdev(pair.host, {"rx-ring": ring})
    log = FakeLog()
    nd.log = log  # type: ignore[assignment]
    try:
        run("ip", "link", "del", pair.host)
        with trio.fail_after(1):
            while nd.error is None:
                with trio.move_on_after(0.2):
                    await nd.wait_readable(0)
                nd.recv(0)
        assert "disappeared" in nd.error
        assert nd.recv(0) == []
        assert nd.send(0, [Packet(frame(1))]) == errno.ENODEV
        assert nd.stats.tx_dropped == 1
        assert nd.process_async(0, True) == OK
        assert f'error="{nd.error}"' in nd.status()
        with trio.move_on_after(0.05) as asleep:
            await nd.wait_readable(0)
        assert asleep.cancelled_caught
        assert len(log.warnings) == 1 and pair.host in log.warnings[0]
    finally:
        nd.close()


def test_deleted_interface_seen_by_send(
    make_pair: Callable[..., Pair], make_netdev: Callable[..., AfPacketNetdev]
) -> None:
    pair = make_pair()
    nd = make_netdev(pair.host)
    run("ip", "link", "del", pair.host)
    assert nd.send(0, [Packet(frame(1)), Packet(frame(2))]) in (errno.ENODEV, errno.ENXIO)
    assert nd.error is not None and nd.stats.tx_dropped == 2
    assert nd.send(0, [Packet(frame(3))]) == errno.ENODEV and nd.stats.tx_dropped == 3


# -- userspace TSO ------------------------------------------------------------------


async def forward(a: AfPacketNetdev, b: AfPacketNetdev) -> None:
    """A two-port wire: whatever one netdev receives, the other sends."""
    while True:
        moved = False
        for src, dst in ((a, b), (b, a)):
            batch = src.recv(0)
            if batch:
                moved = True
                rc = dst.send(0, batch)
                while rc == EINPROGRESS:
                    rc = dst.process_async(0, False)
        if moved:
            await trio.lowlevel.checkpoint()
            continue
        async with trio.open_nursery() as nursery:

            async def wake(
                nd: AfPacketNetdev, scope: trio.CancelScope = nursery.cancel_scope
            ) -> None:
                await nd.wait_readable(0)
                scope.cancel()

            nursery.start_soon(wake, a)
            nursery.start_soon(wake, b)


async def test_userspace_tso_forwards_tcp_with_offloads_on(
    make_pair: Callable[..., Pair],
) -> None:
    if shutil.which("ethtool") is None:
        pytest.skip("needs ethtool to turn segmentation offloads on")
    left, right = make_pair(addr="10.199.0.1/24"), make_pair(addr="10.199.0.2/24")
    for pair in (left, right):
        pair.in_ns("ethtool", "-K", pair.peer, "tso", "on", "gso", "on", "tx", "on")
        run("ethtool", "-K", pair.host, "tso", "on", "gso", "on", "tx", "on")
    a = AfPacketNetdev(left.host, {"userspace-tso": "true"})
    b = AfPacketNetdev(right.host, {"userspace-tso": "true"})
    gso_seen = 0
    total = 16 << 20
    with netns(right.ns):
        listener = socket.socket()
    with netns(left.ns):
        client = socket.socket()
    left.sockets.append(client)
    right.sockets.append(listener)
    try:
        assert "rx_ring=none, tx_ring=on, tx_kick=auto, userspace_tso=on" in a.status()
        listener.bind(("10.199.0.2", 5001))
        listener.listen()
        tlisten = trio.socket.from_stdlib_socket(listener)
        tclient = trio.socket.from_stdlib_socket(client)
        pattern = hashlib.sha256(b"pyvswitch").digest() * 2048  # 64 KiB
        received = hashlib.sha256()
        got = 0

        async def server() -> None:
            nonlocal got
            conn, _ = await tlisten.accept()
            with conn:
                while data := await conn.recv(1 << 20):
                    received.update(data)
                    got += len(data)

        real_recv = a.recv

        def counting_recv(qid: int) -> list[Packet]:
            nonlocal gso_seen
            batch = real_recv(qid)
            gso_seen += sum(1 for p in batch if p.vnet is not None and p.vnet[1])
            return batch

        a.recv = counting_recv  # type: ignore[method-assign]
        with trio.fail_after(15):
            async with trio.open_nursery() as outer:
                outer.start_soon(forward, a, b)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(server)
                    await tclient.connect(("10.199.0.2", 5001))
                    sent = 0
                    view = memoryview(pattern)
                    while sent < total:
                        sent += await tclient.send(view[sent % len(pattern) :])
                    tclient.close()
                outer.cancel_scope.cancel()
        expected = hashlib.sha256(pattern * (total // len(pattern)))
        assert got == total and received.digest() == expected.digest()
        assert gso_seen > 0  # super-frames really went through, not MTU-sized segments
        assert a.stats.tx_errors == b.stats.tx_errors == 0
    finally:
        a.close()
        b.close()


def test_validate_options_opens_nothing() -> None:
    assert SystemNetdev.validate_options("lo", {"n_rxq": "2", "rx-ring": "v3"}) == []
    assert AfPacketNetdev.validate_options("pvsnosuch0", {}) == [
        "pvsnosuch0: no network interface of that name (yet): the port waits for it"
    ]
    with pytest.raises(NetdevError, match='lo: bad tx-kick "x"'):
        SystemNetdev.validate_options("lo", {"tx-kick": "x"})
    with pytest.raises(NetdevError, match='lo: unknown option "mtu"'):
        SystemNetdev.validate_options("lo", {"mtu": "9000"})
