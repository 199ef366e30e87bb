"""Tests for pyvswitchd.datapath.channel: framing, the decoder and both endpoints."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import trio

from pyvswitchd.datapath import channel as ch
from pyvswitchd.datapath.channel import (
    MAX_FDS_PER_SEND,
    ChannelClosed,
    ChannelError,
    Decoder,
    SyncEndpoint,
    TrioEndpoint,
    encode,
    socket_pair,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket_pair()
    yield ours, theirs
    ours.close()
    theirs.close()


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


# -- framing and the decoder ------------------------------------------------------------


def test_decoder_round_trip_and_order() -> None:
    dec = Decoder()
    dec.feed(encode({"a": 1}) + encode(("b", 2)) + encode(None))
    got = [dec.next(), dec.next(), dec.next()]
    assert [r.message for r in got if r is not None] == [{"a": 1}, ("b", 2), None]
    assert all(r is not None and r.fds == [] for r in got)
    assert dec.next() is None


def test_decoder_partial_feeds_byte_by_byte() -> None:
    data = encode(list(range(100))) + encode("second")
    dec = Decoder()
    out = []
    for i in range(len(data)):
        dec.feed(data[i : i + 1])
        item = dec.next()
        if item is not None:
            out.append((i, item.message))
    # Each message appears exactly when its last byte arrives.
    first_end = len(encode(list(range(100)))) - 1
    assert out == [(first_end, list(range(100))), (len(data) - 1, "second")]


def test_decoder_descriptors_go_to_their_messages() -> None:
    dec = Decoder()
    first, second = encode("one", 2), encode("two", 1)
    # Descriptors arrive with the header bytes, ahead of the rest of the message.
    dec.feed(first[:3], [10, 11])
    assert dec.next() is None
    dec.feed(first[3:] + second[:1], [12])
    one = dec.next()
    assert one is not None and (one.message, one.fds) == ("one", [10, 11])
    assert dec.next() is None
    dec.feed(second[1:])
    two = dec.next()
    assert two is not None and (two.message, two.fds) == ("two", [12])


def test_decoder_message_without_its_descriptors_is_an_error() -> None:
    dec = Decoder()
    dec.feed(encode("needs fds", 3), [5])
    with pytest.raises(ChannelError, match="expects 3 descriptors, 1 arrived"):
        dec.next()


def test_decoder_corrupt_header_is_an_error() -> None:
    dec = Decoder()
    dec.feed(ch._HEADER.pack(ch.MAX_MESSAGE_BYTES + 1, 0))
    with pytest.raises(ChannelError, match="bytes announced"):
        dec.next()


def test_decoder_close_closes_unclaimed_descriptors() -> None:
    r, w = os.pipe()
    dec = Decoder()
    dec.feed(encode("x", 0)[:4], [r])
    dec.close()
    assert not fd_is_open(r)
    os.close(w)


def test_chunks_spread_many_descriptors_over_first_bytes() -> None:
    data = encode("many", 600)
    fds = list(range(600))
    pieces = ch._chunks(data, fds)
    assert [len(f) for _, f in pieces] == [MAX_FDS_PER_SEND, MAX_FDS_PER_SEND, 100]
    assert b"".join(p for p, _ in pieces) == data
    assert [fd for _, f in pieces for fd in f] == fds
    assert ch._chunks(data, fds[:MAX_FDS_PER_SEND]) == [(data, fds[:MAX_FDS_PER_SEND])]


# -- SyncEndpoint -------------------------------------------------------------------------


def test_sync_send_receive_and_poll(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    assert b.poll() == []
    a.send("one")
    a.send("two")
    assert b.receive().message == "one"
    assert [r.message for r in b.poll()] == ["two"]
    assert b.poll() == []


def test_sync_receive_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    b = SyncEndpoint(pair[1])
    t0 = time.monotonic()
    assert b.receive(timeout=0.05) is None
    assert 0.04 <= time.monotonic() - t0 < 0.5
    assert b.receive(timeout=0) is None
    SyncEndpoint(pair[0]).send(42)
    item = b.receive(timeout=1.0)
    assert item is not None and item.message == 42


def test_sync_set_aside_goes_to_next_poll(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    a.send("unrelated")
    a.send("reply")
    item = b.receive()
    b.set_aside(item)
    assert b.receive().message == "reply"  # receive() skips what was set aside
    a.send("later")
    assert [r.message for r in b.poll()] == ["unrelated", "later"]


def test_sync_large_message(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    big = os.urandom(3 << 20)  # more than the socket buffers: the reader must run meanwhile
    sender = threading.Thread(target=a.send, args=(big,))
    sender.start()
    try:
        assert b.receive().message == big
    finally:
        sender.join()


def test_sync_eof_is_channel_closed(pair: tuple[socket.socket, socket.socket]) -> None:
    b = SyncEndpoint(pair[1])
    pair[0].close()
    with pytest.raises(ChannelClosed):
        b.receive()
    with pytest.raises(ChannelClosed):
        b.poll()


def test_sync_receive_returns_what_arrived_before_eof(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    a.send("last words")
    a.close()
    assert b.receive().message == "last words"
    with pytest.raises(ChannelClosed):
        b.receive()


def test_sync_poll_returns_what_arrived_before_eof(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    a.send("reload")
    a.send("exit")
    a.close()
    # Messages sent before the close are delivered; the close is reported after them.
    assert [r.message for r in b.poll()] == ["reload", "exit"]
    with pytest.raises(ChannelClosed):
        b.poll()


def test_sync_send_to_closed_peer_is_channel_closed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a = SyncEndpoint(pair[0])
    pair[1].close()
    with pytest.raises(ChannelClosed):
        a.send("nobody listens")


def test_descriptors_cross_and_are_usable(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    r, w = os.pipe()
    try:
        a.send("pipe", [w])
        item = b.receive()
        assert item.message == "pipe" and len(item.fds) == 1
        theirs = item.fds[0]
        assert theirs != w
        assert os.get_inheritable(theirs) is False  # MSG_CMSG_CLOEXEC
        os.write(theirs, b"through the channel")
        os.close(theirs)
        assert os.read(r, 100) == b"through the channel"
    finally:
        os.close(r)
        os.close(w)


def test_more_descriptors_than_one_send_carries(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = SyncEndpoint(pair[0]), SyncEndpoint(pair[1])
    r, w = os.pipe()
    n = 2 * MAX_FDS_PER_SEND + 17
    dups = [os.dup(w) for _ in range(n)]
    try:
        a.send("first", [r])
        a.send(("many", n), dups)
        a.send("after")
        one = b.receive()
        many = b.receive()
        after = b.receive()
        assert (one.message, len(one.fds)) == ("first", 1)
        assert (many.message, len(many.fds)) == (("many", n), n)
        assert (after.message, after.fds) == ("after", [])
        # Each received descriptor is a write end of the pipe, in order of use.
        for i, fd in enumerate(many.fds[:: MAX_FDS_PER_SEND // 2]):
            os.write(fd, bytes([i]))
        assert os.read(one.fds[0], 100) == bytes(range(len(many.fds[:: MAX_FDS_PER_SEND // 2])))
        for fd in [*one.fds, *many.fds]:
            os.close(fd)
    finally:
        for fd in (r, w, *dups):
            os.close(fd)


# -- TrioEndpoint --------------------------------------------------------------------------


async def test_trio_endpoint_with_sync_peer_in_a_thread(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours = TrioEndpoint(pair[0])
    theirs = SyncEndpoint(pair[1])

    def echo() -> None:
        # The worker's shape: answer each message, with the descriptors it came with.
        while True:
            item = theirs.receive()
            if item.message == "stop":
                return
            theirs.send(("echo", item.message), item.fds)
            for fd in item.fds:
                os.close(fd)

    r, w = os.pipe()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, echo)
            await ours.send("hello")
            await ours.send("pipe", [w])
            first = await ours.receive()
            assert (first.message, first.fds) == (("echo", "hello"), [])
            second = await ours.receive()
            assert second.message == ("echo", "pipe") and len(second.fds) == 1
            os.write(second.fds[0], b"round trip")
            os.close(second.fds[0])
            assert os.read(r, 100) == b"round trip"
            await ours.send("stop")
    finally:
        os.close(r)
        os.close(w)


async def test_trio_endpoints_concurrent_sends_do_not_interleave(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = TrioEndpoint(pair[0]), TrioEndpoint(pair[1])
    big = [bytes([i]) * (200_000 + i) for i in range(8)]
    received: list[object] = []

    async def reader() -> None:
        for _ in big:
            received.append((await b.receive()).message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for payload in big:
            nursery.start_soon(a.send, payload)
    assert sorted(received, key=len) == big  # each arrived whole


async def test_trio_endpoint_eof_is_channel_closed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    b = TrioEndpoint(pair[1])
    SyncEndpoint(pair[0]).send("bye")
    pair[0].close()
    assert (await b.receive()).message == "bye"
    with pytest.raises(ChannelClosed):
        await b.receive()


async def test_trio_endpoint_send_to_closed_peer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a = TrioEndpoint(pair[0])
    pair[1].close()
    with pytest.raises(ChannelClosed):
        await a.send("x" * 100)


def test_socket_pair_is_a_unix_stream_pair() -> None:
    ours, theirs = socket_pair()
    try:
        assert ours.family == socket.AF_UNIX and ours.type == socket.SOCK_STREAM
        SyncEndpoint(theirs).send("ping")
        assert ours.recv(100) == encode("ping")
    finally:
        ours.close()
        theirs.close()
