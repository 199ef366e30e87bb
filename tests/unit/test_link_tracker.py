"""Link tracking on real veths: a port follows its interface away and back.

A datapath with PMDs as trio tasks (the harness) and a ``system`` port on
the host end of a veth pair; the peer end sits in a private namespace and
sends and receives through a raw socket.  Needs CAP_NET_ADMIN (skipped
otherwise, by the ``make_pair`` fixture).
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from pyvswitchd.datapath.link_tracker import LinkTracker
from pyvswitchd.netdev.dummy import DummyNetdev
from pyvswitchd.netdev.link_monitor import LinkEvent

from ..dp_harness import Harness, running_datapath
from .veth import Pair, disable_ipv6, frame, is_test, netns, run

CONFIG = """\
[other_config]
pmd-cpu-mask = "0x1"
[[bridge]]
name = "br0"
# No tap in the test's own namespace.
other_config = {{ local-port-type = "dummy-internal" }}
  [[bridge.port]]
  name = "{host}"
  type = "system"
  [[bridge.port]]
  name = "p1"
  type = "dummy"
"""


@asynccontextmanager
async def switch(host: str, *, tracking: bool = True) -> AsyncIterator[Harness]:
    async with running_datapath(CONFIG.format(host=host)) as h, trio.open_nursery() as nursery:
        if tracking:
            await nursery.start(LinkTracker(h.dp).run)
        yield h
        nursery.cancel_scope.cancel()


def create(pair: Pair) -> None:
    """(Re)create the veth pair under its names, both ends up."""
    run("ip", "link", "add", pair.host, "type", "veth", "peer", "name", pair.peer,
        "netns", pair.ns)  # fmt: skip
    disable_ipv6(pair.host)
    with netns(pair.ns):
        disable_ipv6(pair.peer)
    run("ip", "link", "set", pair.host, "up")
    run("ip", "-n", pair.ns, "link", "set", pair.peer, "up")


def delete(pair: Pair) -> None:
    for sock in pair.sockets:
        sock.close()
    pair.sockets.clear()
    run("ip", "link", "del", pair.host)


def p1(h: Harness) -> DummyNetdev:
    port = h.dp.port_by_name("p1")
    assert port is not None and isinstance(port.netdev, DummyNetdev)
    return port.netdev


def status(h: Harness, name: str) -> str:
    port = h.dp.port_by_name(name)
    return port.netdev.status() if port is not None else "absent"


async def forwards(h: Harness, pair: Pair, n: int) -> None:
    """Frame ``n`` sent by the peer reaches p1, and a frame from p1 reaches the peer."""
    peer = pair.peer_socket()
    p1(h).clear_sent()
    peer.send(frame(n))
    await h.wait_for(lambda: any(is_test(f) and f == frame(n) for f in p1(h).sent_frames()))
    # Back: p1 sends to the MAC the peer used, learned on the veth port.
    back = frame(n + 1000)
    reply = back[6:12] + back[0:6] + back[12:]
    await h.call("netdev-dummy/receive", "p1", reply.hex())
    with trio.fail_after(5):
        while True:
            try:
                if peer.recv(2048) == reply:
                    return
            except BlockingIOError:
                await trio.sleep(0.01)


async def test_port_follows_its_veth_away_and_back(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair()
    async with switch(pair.host) as h:
        port = h.dp.port_by_name(pair.host)
        assert port is not None
        first = port.port_no, port.netdev.ifindex, port.generation
        await forwards(h, pair, 1)
        delete(pair)
        await h.wait_for(lambda: "disappeared" in status(h, pair.host))
        assert h.log().count("port disabled until the interface is back") == 1
        create(pair)
        await h.wait_for(lambda: "error" not in status(h, pair.host))
        port = h.dp.port_by_name(pair.host)
        assert port is not None
        assert port.port_no == first[0] and port.netdev.ifindex != first[1]
        assert port.generation > first[2]  # PMD workers reopen their side
        assert f"Port {first[0]} ({pair.host}) reopened in datapath ovs-netdev" in h.log()
        await forwards(h, pair, 2)
        # Statistics go on from where they were.
        assert port.netdev.stats.rx_packets >= 2


async def test_interface_missing_at_start_is_added_when_it_appears(
    make_pair: Callable[..., Pair],
) -> None:
    pair = make_pair()
    delete(pair)
    async with switch(pair.host) as h:
        show = await h.call("dpctl/show")
        assert (
            f'  port -: {pair.host} (system: error="could not open network device '
            f'{pair.host} (No such device)")\n'
        ) in show
        create(pair)
        await h.wait_for(lambda: h.dp.port_by_name(pair.host) is not None)
        show = await h.call("dpctl/show")
        assert "port -:" not in show
        assert re.search(rf"\n  port \d+: {pair.host} \(system: ifindex=\d+, link=up", show)
        await forwards(h, pair, 3)


async def test_reload_reopens_what_no_tracker_saw(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair()
    async with switch(pair.host, tracking=False) as h:
        before = h.dp.port_by_name(pair.host)
        assert before is not None
        ifindex = before.netdev.ifindex
        delete(pair)
        create(pair)
        assert socket.if_nametoindex(pair.host) != ifindex
        await h.reconfig(CONFIG.format(host=pair.host))
        after = h.dp.port_by_name(pair.host)
        assert after is not None and after.netdev.ifindex == socket.if_nametoindex(pair.host)
        await forwards(h, pair, 4)


def test_names_include_the_old_name_of_a_renamed_interface() -> None:
    class FakeNetdev:
        ifindex = 42

    class FakePort:
        name = "eth0"
        netdev = FakeNetdev()

    class FakeDp:
        log = None
        ports = {1: FakePort()}

    tracker = LinkTracker(FakeDp())  # type: ignore[arg-type]
    assert tracker._names([LinkEvent(False, 42, "renamed0", 0)]) == {"renamed0", "eth0"}
