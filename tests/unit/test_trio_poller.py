"""Unit tests for pyvswitchd.ovsdb.trio_poller: OVS's poller interface waited on with trio."""

from __future__ import annotations

import math
import select
import socket

import trio
from ovs import jsonrpc, timeval

from pyvswitchd.ovsdb.trio_poller import TrioPoller


async def test_nothing_asked_waits_until_the_limit() -> None:
    poller = TrioPoller()
    assert poller.timeout() == math.inf
    start = trio.current_time()
    await poller.block(limit=0.05)
    assert trio.current_time() - start >= 0.05


async def test_immediate_wake_returns_at_once() -> None:
    poller = TrioPoller()
    poller.timer_wait(10_000)
    poller.immediate_wake()
    assert poller.timeout() == 0
    with trio.fail_after(1):
        await poller.block()


async def test_timers_take_the_earliest() -> None:
    poller = TrioPoller()
    poller.timer_wait(5_000)
    poller.timer_wait_until(timeval.msec() + 30)
    poller.timer_wait(-1)  # "never"
    assert 0 < poller.timeout() <= 0.03
    with trio.fail_after(1):
        await poller.block()


async def test_a_readable_socket_wakes_it() -> None:
    a, b = socket.socketpair()
    with a, b:
        poller = TrioPoller()
        poller.fd_wait(a, select.POLLIN)  # a socket object, as OVS's streams pass
        with trio.fail_after(2):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poller.block)
                await trio.sleep(0.05)
                b.send(b"x")
        assert a.recv(1) == b"x"


async def test_a_writable_descriptor_wakes_it() -> None:
    a, b = socket.socketpair()
    with a, b:
        poller = TrioPoller()
        poller.fd_wait(a.fileno(), select.POLLOUT)
        with trio.fail_after(1):
            await poller.block()


async def test_drives_a_jsonrpc_session_to_a_refused_connection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A session to nowhere asks to be woken for its back-off timer; trio
    # sleeps meanwhile instead of blocking in poll(2).
    session = jsonrpc.Session.open(f"unix:{tmp_path}/absent.sock")
    try:
        session.run()
        assert not session.is_connected()
        poller = TrioPoller()
        session.wait(poller)
        session.recv_wait(poller)
        assert poller.timeout() < math.inf
        with trio.fail_after(10):
            await poller.block()
    finally:
        session.close()
