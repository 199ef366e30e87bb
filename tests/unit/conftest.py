"""Fixtures for the unit tests on real interfaces (see veth.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from pyvswitchd.netdev.afpacket import AfPacketNetdev

from .veth import Pair, disable_ipv6, netns, next_id, run


@pytest.fixture
def make_pair() -> Iterator[Callable[..., Pair]]:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip)")
    pairs: list[Pair] = []

    def make(mtu: int | None = None, addr: str | None = None) -> Pair:
        n = next_id()
        tag = f"pv{os.getpid() % 10000}"
        pair = Pair(f"{tag}h{n}", f"{tag}p{n}", f"pvt-{os.getpid()}-{n}")
        if run("ip", "netns", "add", pair.ns, check=False).returncode:
            pytest.skip("needs CAP_NET_ADMIN (could not create a network namespace)")
        pairs.append(pair)
        run("ip", "link", "add", pair.host, "type", "veth", "peer", "name", pair.peer,
            "netns", pair.ns)  # fmt: skip
        disable_ipv6(pair.host)
        with netns(pair.ns):
            disable_ipv6(pair.peer)
        if mtu is not None:
            run("ip", "link", "set", pair.host, "mtu", str(mtu))
            run("ip", "-n", pair.ns, "link", "set", pair.peer, "mtu", str(mtu))
        if addr is not None:
            run("ip", "-n", pair.ns, "addr", "add", addr, "dev", pair.peer)
        run("ip", "link", "set", pair.host, "up")
        run("ip", "-n", pair.ns, "link", "set", pair.peer, "up")
        return pair

    yield make
    for pair in pairs:
        for sock in pair.sockets:
            sock.close()
        run("ip", "link", "del", pair.host, check=False)
        run("ip", "netns", "del", pair.ns, check=False)


@pytest.fixture
def make_netdev(make_pair: Callable[..., Pair]) -> Iterator[Callable[..., AfPacketNetdev]]:
    """Open AfPacketNetdevs, closed at teardown (before their veth pairs go)."""
    opened: list[AfPacketNetdev] = []

    def make(name: str, options: dict[str, str] | None = None) -> AfPacketNetdev:
        nd = AfPacketNetdev(name, options)
        opened.append(nd)
        return nd

    yield make
    for nd in opened:
        nd.close()
