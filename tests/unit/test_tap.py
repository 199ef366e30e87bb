"""The ``tap`` / ``internal`` netdev against real kernel TAP devices.

Each test makes taps with unique names in the test process's own namespace,
gives them a /30 from 198.18.0.0/15 (the benchmarking range, so nothing on
the host routes it), and removes them again.  The kernel is the peer: it
ARPs for the far end of the /30 (which ``recv`` sees), learns a neighbour
from an ARP reply we ``send``, and delivers a UDP frame we compose to a
socket bound on the tap's address.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from pyvswitchd.netdev.provider import OK, NetdevError
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.netdev.tap import (
    IFF_MULTI_QUEUE,
    IFF_PERSIST,
    IFF_VNET_HDR,
    InternalNetdev,
    TapNetdev,
)
from pyvswitchd.odp.flow_compose import checksum, compose_packet
from pyvswitchd.odp.key_text import parse_odp_key
from pyvswitchd.odp.packet import NETDEV_MAX_BURST, Packet

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun"),
]

PEER_MAC = "02:5e:00:00:00:02"
_counter = itertools.count()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def tun_flags(name: str) -> int:
    return int(Path(f"/sys/class/net/{name}/tun_flags").read_text(), 16)


class Names:
    """Unique device names and /30 subnets for one test; deletes leftovers at the end."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def new(self) -> str:
        name = f"pvt{os.getpid() % 100000}x{next(_counter)}"
        self.made.append(name)
        return name

    @staticmethod
    def subnet(name: str) -> tuple[str, str]:
        """(our address, the peer's address) of a /30 derived from pid and counter."""
        k = int(name.rsplit("x", 1)[1])
        third = (os.getpid() + k // 64) % 256
        base = (k % 64) * 4
        return f"198.18.{third}.{base + 1}", f"198.18.{third}.{base + 2}"

    def cleanup(self) -> None:
        for name in self.made:
            if exists(name):
                ip("link", "del", name, check=False)


@pytest.fixture
def names() -> Iterator[Names]:
    made = Names()
    try:
        yield made
    finally:
        made.cleanup()


def recv_until(
    netdev: TapNetdev, want: Callable[[Packet], bool], qids: tuple[int, ...] = (0,)
) -> Packet:
    """Poll ``netdev`` until a received packet satisfies ``want``; fail after 3 s."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for qid in qids:
            for p in netdev.recv(qid):
                if want(p):
                    return p
        time.sleep(0.005)
    raise AssertionError("expected frame not received")


def is_arp_request_for(addr: str) -> Callable[[Packet], bool]:
    target = socket.inet_aton(addr)
    return lambda p: p.data[12:14] == b"\x08\x06" and p.data[21] == 1 and p.data[38:42] == target


def mac_of(name: str) -> str:
    return Path(f"/sys/class/net/{name}/address").read_text().strip()


def arp_reply(name: str, local: str, peer: str) -> bytes:
    mac = mac_of(name)
    key = (
        f"eth(src={PEER_MAC},dst={mac}),eth_type(0x0806),"
        f"arp(sip={peer},tip={local},op=2,sha={PEER_MAC},tha={mac})"
    )
    return compose_packet(parse_odp_key(key))


def udp_frame(name: str, local: str, peer: str, dport: int) -> bytes:
    key = (
        f"eth(src={PEER_MAC},dst={mac_of(name)}),eth_type(0x0800),"
        f"ipv4(src={peer},dst={local},proto=17,tos=0,ttl=64,frag=no),udp(src=4000,dst={dport})"
    )
    return compose_packet(parse_odp_key(key))


def open_with_address(names: Names, **options: str) -> tuple[TapNetdev, str, str]:
    name = names.new()
    netdev = TapNetdev(name, options)
    local, peer = names.subnet(name)
    # No IPv6 on the tap: keeps router solicitations and MLD reports out of the way.
    Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")
    ip("addr", "add", f"{local}/30", "dev", name)
    return netdev, local, peer


def udp_socket(local: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((local, 0))
    sock.settimeout(2)
    return sock


# -- tests ---------------------------------------------------------------------------


def test_registered_types_and_bad_options() -> None:
    registry = default_registry()
    assert registry.get("tap") is TapNetdev
    assert registry.get("internal") is InternalNetdev
    assert TapNetdev.pmd and InternalNetdev.pmd
    with pytest.raises(NetdevError, match='unknown option "n_txq"'):
        TapNetdev("pvtbad0", {"n_txq": "2"})
    with pytest.raises(NetdevError, match='bad userspace-tso "yes"'):
        TapNetdev("pvtbad0", {"userspace-tso": "yes"})
    with pytest.raises(NetdevError, match="invalid device name"):
        TapNetdev("a-name-that-is-too-long")
    assert not exists("pvtbad0")


def test_arp_and_udp_both_ways(names: Names) -> None:
    netdev, local, peer = open_with_address(names)
    name = netdev.name
    try:
        assert not netdev.existed
        status = netdev.status()
        assert status.startswith(f"ifindex={netdev.ifindex}, link=up, mtu=1500, queues=1")
        assert netdev.ifindex == int(Path(f"/sys/class/net/{name}/ifindex").read_text())

        # The kernel ARPs for the peer when a datagram is sent towards it.
        with udp_socket(local) as out:
            out.sendto(b"hello through the tap", (peer, 7777))
            recv_until(netdev, is_arp_request_for(peer))
            # Answer; the kernel learns the neighbour and releases the queued datagram.
            assert netdev.send(0, [Packet(arp_reply(name, local, peer))]) == OK
            udp = recv_until(netdev, lambda p: p.data[12:14] == b"\x08\x00")
        assert udp.data[:6] == bytes.fromhex(PEER_MAC.replace(":", ""))
        assert udp.data.endswith(b"hello through the tap")
        assert "lladdr " + PEER_MAC in ip("neigh", "show", peer, "dev", name).stdout

        # A backlog comes out in bursts of NETDEV_MAX_BURST.
        with udp_socket(local) as out:
            for i in range(40):
                out.sendto(b"burst %d" % i, (peer, 7777))
        first, second = netdev.recv(0), netdev.recv(0)
        assert len(first) == NETDEV_MAX_BURST and len(second) >= 40 - NETDEV_MAX_BURST
        assert [p.data[-7:] for p in first[:2]] == [b"burst 0", b"burst 1"]

        # A UDP frame we compose reaches a socket bound on the tap's address.
        with udp_socket(local) as sink:
            port = sink.getsockname()[1]
            assert netdev.send(0, [Packet(udp_frame(name, local, peer, port))]) == OK
            data, src = sink.recvfrom(2048)
        assert data == bytes(range(64)) and src == (peer, 4000)

        st = netdev.stats
        assert st.tx_packets == 2 and st.tx_errors == st.tx_dropped == 0
        assert st.rx_packets >= 42 and st.rx_bytes >= 42 + 63 + 40 * 49
    finally:
        netdev.close()
    assert not exists(name)  # not persistent: closing the last fd deletes it
    netdev.close()  # idempotent


def test_size_checks_and_link_down(names: Names) -> None:
    name = names.new()
    netdev = TapNetdev(name)
    try:
        eth = bytes(6) + bytes.fromhex("025e00000002") + b"\x08\x00"
        ok = Packet(eth + bytes(1500))
        vlan = Packet(eth[:12] + b"\x81\x00\x00\x05\x08\x00" + bytes(1500))
        too_long = Packet(eth + bytes(1501))
        runt = Packet(b"\x00" * 10)
        assert netdev.send(0, [ok, vlan, too_long, runt]) == errno.EMSGSIZE
        assert (netdev.stats.tx_packets, netdev.stats.tx_errors) == (2, 2)

        # The operator took the link down: frames are dropped, the port stays healthy.
        ip("link", "set", name, "down")
        assert "link=down" in netdev.status()
        assert netdev.send(0, [ok, ok]) == errno.EIO
        assert netdev.stats.tx_dropped == 2 and netdev.error is None
    finally:
        netdev.close()


def test_multi_queue(names: Names) -> None:
    netdev, local, peer = open_with_address(names, n_rxq="2")
    name = netdev.name
    try:
        assert (netdev.n_rxq, netdev.n_txq, len(netdev._fds)) == (2, 2, 2)
        assert tun_flags(name) & IFF_MULTI_QUEUE
        assert "queues=2" in netdev.status()
        assert sorted(os.listdir(f"/sys/class/net/{name}/queues")) == [
            "rx-0",
            "rx-1",
            "tx-0",
            "tx-1",
        ]
        with udp_socket(local) as out:
            out.sendto(b"x", (peer, 7777))
            recv_until(netdev, is_arp_request_for(peer), qids=(0, 1))
        # Transmit queue 3 maps onto descriptor 3 % 2.
        assert netdev.send(3, [Packet(arp_reply(name, local, peer))]) == OK
        assert netdev.stats.tx_packets == 1

        # More queues on a multi-queue tap: the device (and its address) stays.
        ifindex = netdev.ifindex
        netdev.set_config({"n_rxq": "3"})
        assert netdev.reconfigure_required and netdev.n_rxq == 2
        netdev.reconfigure()
        assert (netdev.n_rxq, len(netdev._fds), netdev.ifindex) == (3, 3, ifindex)
        assert local in ip("-4", "addr", "show", "dev", name).stdout
        # The vnet header on a multi-queue tap: every queue is re-attached.
        netdev.set_config({"n_rxq": "3", "userspace-tso": "true"})
        netdev.reconfigure()
        assert netdev.error is None and netdev.ifindex == ifindex
        assert tun_flags(name) & (IFF_VNET_HDR | IFF_PERSIST) == IFF_VNET_HDR
        assert local in ip("-4", "addr", "show", "dev", name).stdout
    finally:
        netdev.close()
    assert not exists(name)


def test_single_queue_reconfiguration(names: Names) -> None:
    netdev, local, _peer = open_with_address(names)
    name = netdev.name
    try:
        ifindex = netdev.ifindex
        # Turning on the vnet header swaps the descriptor but keeps the device.
        netdev.set_config({"userspace-tso": "true"})
        netdev.reconfigure()
        assert netdev.error is None and netdev.ifindex == ifindex
        assert tun_flags(name) & (IFF_VNET_HDR | IFF_PERSIST) == IFF_VNET_HDR
        assert local in ip("-4", "addr", "show", "dev", name).stdout
        assert "userspace-tso=true" in netdev.status()
        # Single- to multi-queue: the kernel cannot convert, so the device is re-created.
        netdev.set_config({"userspace-tso": "true", "n_rxq": "2"})
        netdev.reconfigure()
        assert netdev.error is None and len(netdev._fds) == 2
        assert tun_flags(name) & (IFF_MULTI_QUEUE | IFF_VNET_HDR) == IFF_MULTI_QUEUE | IFF_VNET_HDR
        assert "link=up" in netdev.status()
    finally:
        netdev.close()


async def test_device_deleted_under_the_netdev(names: Names) -> None:
    name = names.new()
    netdev = TapNetdev(name)
    logged: list[str] = []

    class Log:
        def err(self, msg: str) -> None:
            logged.append(msg)

    netdev.log = Log()  # type: ignore[assignment]
    try:
        ip("link", "del", name)
        # The descriptor reports an error condition, which wakes a waiter.
        with trio.fail_after(2):
            await netdev.wait_readable(0)
        assert netdev.recv(0) == []
        assert netdev.error is not None and "vanished" in netdev.error
        assert netdev.send(0, [Packet(bytes(60))]) == errno.ENODEV
        assert netdev.recv(0) == []
        assert netdev.stats.tx_dropped == 1
        assert "link=gone" in netdev.status() and "error=" in netdev.status()
        assert len(logged) == 1 and name in logged[0]
        # In the error state a waiter sleeps instead of spinning.
        with trio.move_on_after(0.05) as scope:
            await netdev.wait_readable(0)
        assert scope.cancelled_caught
    finally:
        netdev.close()
    netdev.close()


def worker_side(netdev: TapNetdev, qids: list[int]) -> TapNetdev:
    """What a PMD worker polling ``qids`` opens, from duplicated descriptors (as sent)."""
    state, fds = netdev.export_to_worker(qids)
    side = type(netdev).open_in_worker(netdev.name, state, [os.dup(fd) for fd in fds])
    assert isinstance(side, TapNetdev)
    return side


def test_worker_side_polls_its_queue_and_counts_apart(names: Names) -> None:
    netdev, local, peer = open_with_address(names, n_rxq="2")
    name = netdev.name
    try:
        # No queue polled: the worker only transmits, through queue 0's descriptor.
        assert netdev.export_to_worker([])[1] == [netdev._fds[0]]
        assert netdev.export_to_worker([1])[1] == [netdev._fds[1]]
        side = worker_side(netdev, [1])
        assert os.fstat(side.rx_fd(1) or -1).st_ino == os.fstat(netdev._fds[1]).st_ino
        with udp_socket(local) as out:
            out.sendto(b"x", (peer, 7777))
            recv_until(netdev, is_arp_request_for(peer), qids=(0, 1))
        # Any transmit queue: through the descriptor the worker has.
        assert side.send(0, [Packet(arp_reply(name, local, peer))]) == OK
        assert (side.stats.tx_packets, netdev.stats.tx_packets) == (1, 0)
        time.sleep(0.05)  # the datagram waiting for that reply comes out somewhere
        netdev.recv(0), side.recv(1)
        before = side.stats.rx_packets
        # Flows spread over both queues: the worker reads queue 1 only.
        with udp_socket(local) as out:
            for i in range(32):
                out.sendto(b"flow %02d" % i, (peer, 7000 + i))
        got: dict[str, list[bytes]] = {"daemon": [], "worker": []}
        deadline = time.monotonic() + 2
        while len(got["daemon"]) + len(got["worker"]) < 32 and time.monotonic() < deadline:
            got["daemon"] += [p.data[-7:] for p in netdev.recv(0) if b"flow" in p.data]
            got["worker"] += [p.data[-7:] for p in side.recv(1) if b"flow" in p.data]
            time.sleep(0.005)
        assert sorted(got["daemon"] + got["worker"]) == [b"flow %02d" % i for i in range(32)]
        assert got["worker"] and side.stats.rx_packets - before == len(got["worker"])
        side.close()
        # The device and the daemon's descriptors outlive the worker's side.
        assert exists(name) and netdev.send(1, [Packet(arp_reply(name, local, peer))]) == OK
    finally:
        netdev.close()
    assert not exists(name)


def test_worker_side_of_a_vanished_tap(names: Names) -> None:
    name = names.new()
    netdev = InternalNetdev(name)
    side = worker_side(netdev, [0])
    logged: list[str] = []

    class Log:
        def err(self, msg: str) -> None:
            logged.append(msg)

    side.log = Log()  # type: ignore[assignment]
    try:
        assert side.type == "internal"
        ip("link", "del", name)
        assert side.send(0, [Packet(bytes(60))] * 3) == errno.ENODEV
        assert side.error is not None and side.stats.tx_dropped == 3 and len(logged) == 1
        # The daemon's side has not sent anything, yet its status finds out.
        assert netdev.error is None
        assert "error=" in netdev.status() and netdev.error is not None
        # Exported in that state: a worker's side that drops, opened without raising.
        gone = worker_side(netdev, [0])
        assert gone.error is not None and gone.recv(0) == []
        assert gone.send(0, [Packet(bytes(60))]) == errno.ENODEV
        gone.close()
    finally:
        side.close()
        netdev.close()


async def test_wait_readable_wakes_on_traffic(names: Names) -> None:
    netdev, local, peer = open_with_address(names)
    try:
        with udp_socket(local) as out, trio.fail_after(2):
            out.sendto(b"x", (peer, 7777))
            await netdev.wait_readable(0)
        assert netdev.recv(0)
    finally:
        netdev.close()


def test_userspace_tso_vnet_header(names: Names) -> None:
    netdev, local, peer = open_with_address(names, **{"userspace-tso": "true"})
    name = netdev.name
    try:
        assert tun_flags(name) & IFF_VNET_HDR
        with udp_socket(local) as out:
            out.sendto(b"first", (peer, 7777))
            arp = recv_until(netdev, is_arp_request_for(peer))
            # The header is stripped and, asking for nothing, not kept.
            assert arp.vnet is None and len(arp.data) == 42
            assert netdev.send(0, [Packet(arp_reply(name, local, peer))]) == OK
            out.sendto(b"second datagram", (peer, 7777))
            frames = [recv_until(netdev, lambda p: p.data.endswith(b"datagram"))]
        # The tap offers checksum offload, so the kernel left the UDP checksum to us.
        hdr = frames[0].vnet
        assert hdr is not None
        flags, _gso, _hdr_len, _gso_size, start, offset = struct.unpack("=BBHHHH", hdr)
        assert flags & 1 and (start, offset) == (14 + 20, 6)

        # Transmit with a partial checksum of our own: the kernel accepts the frame.
        with udp_socket(local) as sink:
            port = sink.getsockname()[1]
            frame = bytearray(udp_frame(name, local, peer, port))
            pseudo = frame[26:34] + struct.pack("!HH", 17, len(frame) - 34)
            frame[40:42] = struct.pack("!H", checksum(bytes(pseudo)) ^ 0xFFFF)
            vnet = struct.pack("=BBHHHH", 1, 0, 0, 0, 34, 6)
            plain = udp_frame(name, local, peer, port)
            assert netdev.send(0, [Packet(bytes(frame), vnet=vnet), Packet(plain)]) == OK
            assert sink.recvfrom(2048)[0] == bytes(range(64))
            assert sink.recvfrom(2048)[0] == bytes(range(64))
    finally:
        netdev.close()


def test_attach_to_existing_and_open_errors(names: Names) -> None:
    name = names.new()
    ip("tuntap", "add", "dev", name, "mode", "tap")
    try:
        netdev = InternalNetdev(name)
        assert netdev.existed and netdev.type == "internal"
        assert "link=up" in netdev.status()
        # A single-queue tap serves one user.
        with pytest.raises(NetdevError, match="already in use"):
            TapNetdev(name)
        # ... and, persistent from outside, cannot be made multi-queue.
        with pytest.raises(NetdevError, match="persistent single-queue"):
            netdev.set_config({"n_rxq": "2"})
        netdev.close()
        assert exists(name)  # persistent: someone else's to delete
    finally:
        ip("tuntap", "del", "dev", name, "mode", "tap", check=False)
    with pytest.raises(NetdevError, match="exists and is not a single-queue tap"):
        TapNetdev("lo")


def test_validate_options_creates_no_device() -> None:
    name = "pvsvalid0"
    assert TapNetdev.validate_options(name, {"n_rxq": "2", "userspace-tso": "true"}) == []
    assert not os.path.exists(f"/sys/class/net/{name}")
    with pytest.raises(NetdevError, match='bad userspace-tso "maybe"'):
        TapNetdev.validate_options(name, {"userspace-tso": "maybe"})
    with pytest.raises(NetdevError, match="invalid device name"):
        TapNetdev.validate_options("a/b", {})
