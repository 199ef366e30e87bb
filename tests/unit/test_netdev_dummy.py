"""netdev-dummy types, the netdev registry and ``netdev-dummy/receive``."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

from pyvswitchd.control.registry import UNLIMITED, CommandContext, CommandError, CommandRegistry
from pyvswitchd.netdev import dummy as dummy_mod
from pyvswitchd.netdev.dummy import (
    ASYNC_FAIL_ERRNO,
    DummyInternalNetdev,
    DummyNetdev,
    DummyPmdNetdev,
    parse_hex_frame,
    register_commands,
)
from pyvswitchd.netdev.pcap import PcapError, PcapWriter, read_frames
from pyvswitchd.netdev.provider import EINPROGRESS, OK, Netdev, NetdevError
from pyvswitchd.netdev.registry import NetdevRegistry, default_registry
from pyvswitchd.netdev.traffic_source import TrafficSource
from pyvswitchd.odp.packet import Packet

# Replies of ovs-vswitchd 3.1 (see tests/golden/README.md).
REFERENCE = Path(__file__).resolve().parents[1] / "golden"
FLOW = (
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


def frames(n: int, size: int = 60, start: int = 0) -> list[bytes]:
    return [bytes([(start + i) % 256]) * size for i in range(n)]


def batch(data: Sequence[bytes]) -> list[Packet]:
    return [Packet(d) for d in data]


# -- registry ---------------------------------------------------------------------


def test_default_registry_types_and_creation() -> None:
    registry = default_registry()
    assert registry.types() == [
        "afpacket",
        "dummy",
        "dummy-internal",
        "dummy-pmd",
        "internal",
        "system",
        "tap",
        "traffic-source",
    ]
    assert default_registry() is not registry
    for type_, cls, pmd in [
        ("dummy", DummyNetdev, False),
        ("dummy-pmd", DummyPmdNetdev, True),
        ("dummy-internal", DummyInternalNetdev, False),
        ("traffic-source", TrafficSource, True),
    ]:
        netdev = registry.create(type_, "x", {})
        assert type(netdev) is cls and netdev.type == type_ and netdev.pmd is pmd
        assert registry.get(type_) is cls and type_ in registry


def test_unknown_type_error_lists_known_types() -> None:
    with pytest.raises(NetdevError) as info:
        default_registry().create("dpdk", "p9", None)
    assert str(info.value) == (
        'p9: unknown netdev type "dpdk" (known: afpacket, dummy, dummy-internal, dummy-pmd, '
        "internal, system, tap, traffic-source)"
    )


def test_registry_rejects_duplicates_and_nameless_types() -> None:
    registry = NetdevRegistry()
    registry.register(DummyNetdev)
    with pytest.raises(ValueError, match='"dummy" is already registered'):
        registry.register(DummyNetdev)
    with pytest.raises(ValueError, match="has no type name"):
        registry.register(Netdev)
    assert registry.types() == ["dummy"] and registry.get("dummy-pmd") is None


# -- configuration ----------------------------------------------------------------


def test_defaults_and_status_text() -> None:
    pmd = DummyPmdNetdev("p0")
    assert (pmd.n_rxq, pmd.n_txq, pmd.numa_id, pmd.reconfigure_required) == (1, 1, 0, False)
    # OVS main's text (pmd.at 'PMD - creating a thread/add-port').
    assert pmd.status() == "n_rxq=1, n_txq=1, numa_id=0"
    assert DummyNetdev("p2", {"n_rxq": "2"}).status() == ""
    assert DummyInternalNetdev("br0").status() == ""


def test_status_matches_reference_dpctl_show() -> None:
    show = (REFERENCE / "dpctl" / "show.out").read_text()
    p0 = DummyPmdNetdev("p0", {"n_rxq": "2"})
    assert f"port 1: p0 ({p0.type}: {p0.status()})" in show
    assert "port 2: p2 (dummy)\n" in show


def test_queue_options_apply_at_creation() -> None:
    netdev = DummyPmdNetdev("p0", {"n_rxq": "4", "n_txq": "3", "numa_id": "1"})
    assert (netdev.n_rxq, netdev.n_txq, netdev.numa_id) == (4, 3, 1)
    assert not netdev.reconfigure_required
    assert [netdev.queued(q) for q in range(4)] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_rxq": "0"}, 'p0: bad n_rxq "0" (expected an integer 1..1024)'),
        ({"n_rxq": "1025"}, 'p0: bad n_rxq "1025" (expected an integer 1..1024)'),
        ({"n_txq": "two"}, 'p0: bad n_txq "two" (expected an integer 1..1024)'),
        ({"numa_id": "-1"}, 'p0: bad numa_id "-1"'),
        ({"tx_async_polls": "x"}, 'p0: bad tx_async_polls "x"'),
        ({"tx_async_fail_rate": "1.5"}, 'p0: bad tx_async_fail_rate "1.5" (expected a number'),
        ({"tx_async_fail_rate": "nan"}, 'p0: bad tx_async_fail_rate "nan"'),
        ({"colour": "blue"}, 'p0: unknown option "colour" (value "blue")'),
        ({"pcap": "a", "tx_pcap": "b"}, "p0: pcap cannot be combined with rxq_pcap or tx_pcap"),
    ],
)
def test_bad_options_name_option_and_value(options: dict[str, str], message: str) -> None:
    with pytest.raises(NetdevError) as info:
        DummyPmdNetdev("p0", options)
    assert str(info.value).startswith(message)


def test_live_queue_change_waits_for_reconfigure() -> None:
    netdev = DummyPmdNetdev("p0", {"n_rxq": "3"})
    netdev.inject(frames(2), qid=2)
    netdev.set_config({"n_rxq": "3"})  # same again: nothing to do
    assert not netdev.reconfigure_required
    netdev.set_config({"n_rxq": "2", "numa_id": "1"})
    assert netdev.reconfigure_required
    assert (netdev.n_rxq, netdev.numa_id) == (3, 0)
    # What was asked for, as OVS main shows it, before the datapath applies it.
    assert netdev.status() == "n_rxq=2, n_txq=1, numa_id=1"
    netdev.reconfigure()
    assert (netdev.n_rxq, netdev.numa_id, netdev.reconfigure_required) == (2, 1, False)
    assert netdev.stats.rx_dropped == 2  # frames queued on the removed queue
    assert netdev.recv(2) == []


def test_bad_live_config_keeps_the_old_one(tmp_path: Path) -> None:
    netdev = DummyPmdNetdev("p0", {"n_rxq": "2"})
    with pytest.raises(NetdevError):
        netdev.set_config({"n_rxq": "4", "pcap": str(tmp_path / "missing-dir" / "x.pcap")})
    assert (netdev.requested_n_rxq, netdev.reconfigure_required) == (2, False)


# -- receive ----------------------------------------------------------------------


def test_recv_returns_fifo_batches_of_at_most_32_and_counts() -> None:
    netdev = DummyPmdNetdev("p0")
    data = frames(40, size=64)
    assert netdev.inject(data) == 40
    first, second = netdev.recv(0), netdev.recv(0)
    assert [p.data for p in first + second] == data
    assert (len(first), len(second), netdev.recv(0)) == (32, 8, [])
    assert (netdev.stats.rx_packets, netdev.stats.rx_bytes) == (40, 40 * 64)
    assert netdev.recv(7) == []  # no such queue: nothing, no exception


def test_queues_are_separate_and_bounded() -> None:
    netdev = DummyPmdNetdev("p0", {"n_rxq": "2"})
    netdev.MAX_RX_QUEUE = 5
    assert netdev.inject(frames(7), qid=1) == 5
    assert netdev.stats.rx_dropped == 2
    assert netdev.recv(0) == []
    assert [p.data for p in netdev.recv(1)] == frames(5)
    with pytest.raises(NetdevError, match="no rx queue 2"):
        netdev.inject(frames(1), qid=2)


async def test_wait_readable_wakes_on_inject() -> None:
    netdev = DummyPmdNetdev("p0", {"n_rxq": "2"})
    woke: list[int] = []

    async def waiter(qid: int) -> None:
        await netdev.wait_readable(qid)
        woke.append(qid)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, 0)
        nursery.start_soon(waiter, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        netdev.inject(frames(1), qid=1)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == [1]
        netdev.inject(frames(1), qid=0)
    assert woke == [1, 0]
    await netdev.wait_readable(0)  # readable already: returns at once


# -- transmit ---------------------------------------------------------------------


def test_send_counts_drops_and_keeps_a_ring_of_frames() -> None:
    class SmallRing(DummyNetdev):
        SENT_RING = 3

    netdev = SmallRing("p2")
    assert netdev.send(0, batch(frames(2, 100))) == OK
    assert (netdev.stats.tx_packets, netdev.stats.tx_bytes) == (2, 200)
    assert netdev.sent_frames() == frames(2, 100)
    for i in range(5):
        netdev.send(0, batch(frames(1, start=i)))
    assert netdev.sent_frames() == frames(3, start=2)
    assert DummyNetdev("p3").SENT_RING == 1024
    netdev.clear_sent()
    assert netdev.sent_frames() == []
    assert netdev.send(0, []) == OK


def test_send_rejects_bad_sizes_but_sends_the_rest() -> None:
    netdev = DummyPmdNetdev("p0")
    vlan_max = bytes(12) + b"\x81\x00" + bytes(1500 + 4)
    good = [bytes(60), bytes(1514), vlan_max]
    bad = [bytes(13), bytes(1515)]
    rc = netdev.send(0, batch([good[0], bad[0], good[1], bad[1], good[2]]))
    assert rc == errno.EMSGSIZE
    assert netdev.sent_frames() == good
    assert (netdev.stats.tx_packets, netdev.stats.tx_errors) == (3, 2)


def test_async_send_completes_after_n_polls() -> None:
    netdev = DummyPmdNetdev("p0", {"tx_async_polls": "3"})
    assert netdev.process_async(0, force=False) == OK  # nothing pending
    assert netdev.send(0, batch(frames(2))) == EINPROGRESS
    assert netdev.send(0, batch(frames(1, start=9))) == EINPROGRESS
    assert (netdev.stats.tx_packets, netdev.pending_async(0)) == (0, 2)
    assert [netdev.process_async(0, force=False) for _ in range(3)] == [
        EINPROGRESS,
        EINPROGRESS,
        EINPROGRESS,
    ]
    assert (netdev.stats.tx_packets, netdev.pending_async(0)) == (2, 1)
    assert [netdev.process_async(0, force=False) for _ in range(3)] == [
        EINPROGRESS,
        EINPROGRESS,
        OK,
    ]
    assert netdev.stats.tx_packets == 3 and netdev.pending_async(0) == 0
    assert netdev.sent_frames() == frames(2) + frames(1, start=9)
    assert netdev.process_async(1, force=True) == OK  # other queue: nothing pending


def test_forced_async_completion_and_deterministic_failures() -> None:
    netdev = DummyPmdNetdev("p0", {"tx_async_polls": "100", "tx_async_fail_rate": "0.5"})
    results = []
    for i in range(4):
        netdev.send(i % 2, batch(frames(3)))
        results.append(netdev.process_async(i % 2, force=True))
    assert results == [OK, ASYNC_FAIL_ERRNO, OK, ASYNC_FAIL_ERRNO]
    assert (netdev.stats.tx_packets, netdev.stats.tx_dropped) == (6, 6)
    netdev.set_config({"tx_async_polls": "100", "tx_async_fail_rate": "1"})
    netdev.send(0, batch(frames(1)))
    netdev.send(0, batch(frames(1)))
    assert netdev.process_async(0, force=True) == ASYNC_FAIL_ERRNO
    assert netdev.pending_async(0) == 0 and netdev.stats.tx_dropped == 8


def test_async_off_by_default_and_pending_dropped_on_close() -> None:
    assert DummyPmdNetdev("p0").send(0, batch(frames(1))) == OK
    netdev = DummyPmdNetdev("p0", {"tx_async_polls": "1"})
    netdev.send(0, batch(frames(4)))
    netdev.close()
    assert netdev.stats.tx_dropped == 4


# -- capture ----------------------------------------------------------------------


def test_pcap_captures_received_and_transmitted(tmp_path: Path) -> None:
    path = str(tmp_path / "p0.pcap")
    netdev = DummyPmdNetdev("p0", {"pcap": path})
    netdev.inject(frames(2, start=1))
    netdev.send(0, batch(frames(1, start=7)))
    netdev.set_config({"pcap": path})  # unchanged: keeps the open file
    netdev.inject(frames(1, start=3))
    assert read_frames(path) == frames(2, start=1) + frames(1, start=7) + frames(1, start=3)
    netdev.close()


def test_separate_rx_and_tx_captures_and_switching_files(tmp_path: Path) -> None:
    rx, tx, tx2 = (str(tmp_path / n) for n in ("rx.pcap", "tx.pcap", "tx2.pcap"))
    netdev = DummyNetdev("p2", {"rxq_pcap": rx, "tx_pcap": tx})
    netdev.MAX_RX_QUEUE = 1
    netdev.inject(frames(2))  # the second is dropped but still captured, as in OVS
    netdev.send(0, batch(frames(1, start=5)))
    netdev.set_config({"rxq_pcap": rx, "tx_pcap": tx2})
    netdev.send(0, batch(frames(1, start=6)))
    netdev.set_config({})
    netdev.send(0, batch(frames(1, start=8)))
    assert read_frames(rx) == frames(2)
    assert read_frames(tx) == frames(1, start=5)
    assert read_frames(tx2) == frames(1, start=6)
    netdev.close()


def test_capture_write_failure_stops_capture_not_the_data_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "p0.pcap")
    netdev = DummyPmdNetdev("p0", {"tx_pcap": path})

    def fail(self: PcapWriter, frames: object, ts_ns: object = None) -> None:
        raise PcapError(f"{self.path}: write failed (No space left on device)")

    monkeypatch.setattr(PcapWriter, "write_batch", fail)
    assert netdev.send(0, batch(frames(1))) == OK
    assert netdev.pcap_error == f"{path}: write failed (No space left on device)"
    assert netdev.send(0, batch(frames(1))) == OK and netdev.stats.tx_packets == 2
    monkeypatch.undo()
    netdev.set_config({"tx_pcap": path})  # naming the file again restarts capturing
    assert netdev.pcap_error is None
    netdev.send(0, batch(frames(1, start=4)))
    assert read_frames(path) == frames(1, start=4)
    netdev.close()


# -- netdev-dummy/receive ------------------------------------------------------------


@pytest.fixture
def ports() -> dict[str, Netdev]:
    return {
        "p0": DummyPmdNetdev("p0", {"n_rxq": "2"}),
        "p2": DummyNetdev("p2"),
        "br0": DummyInternalNetdev("br0"),
        "src": TrafficSource("src"),
    }


@pytest.fixture
def commands(ports: dict[str, Netdev]) -> CommandRegistry:
    registry = CommandRegistry()
    register_commands(registry, ports.get)
    return registry


async def receive(registry: CommandRegistry, *args: str) -> str:
    reply = await registry.invoke(CommandContext("netdev-dummy/receive"), list(args))
    return reply.text


def queued(netdev: Netdev, qid: int = 0) -> list[bytes]:
    return [p.data for p in netdev.recv(qid)]


def test_command_registration_matches_ovs(commands: CommandRegistry) -> None:
    command = commands.get("netdev-dummy/receive")
    assert command is not None
    assert (command.min_args, command.max_args, command.mutating) == (2, UNLIMITED, True)
    listing = (REFERENCE / "list-commands.out").read_text()
    assert f"  netdev-dummy/receive    {command.usage}\n" in listing


async def test_receive_flow_queues_ovs_sized_packet(
    commands: CommandRegistry, ports: dict[str, Netdev]
) -> None:
    assert await receive(commands, "p0", FLOW) == ""
    (frame,) = queued(ports["p0"])
    assert len(frame) == 106 and frame[:12].hex() == "505400000007505400000005"


async def test_receive_several_packets_hex_and_qid(
    commands: CommandRegistry, ports: dict[str, Netdev]
) -> None:
    hex_frame = "505400000007 505400000005.0800" + "00" * 46
    await receive(commands, "p0", "--qid", "1", FLOW, hex_frame, FLOW, "--len", "128")
    got = queued(ports["p0"], 1)
    assert [len(f) for f in got] == [106, 60, 128]
    assert got[1] == bytes.fromhex("5054000000075054000000050800") + bytes(46)
    assert queued(ports["p0"], 0) == []
    await receive(commands, "br0", hex_frame)  # internal ports are dummies too, as in OVS
    assert len(queued(ports["br0"])) == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nope", FLOW], "no such dummy netdev"),
        (["src", FLOW], "no such dummy netdev"),
        (["p0", "--qid", "2", FLOW], "bad rx queue id."),
        (["p0", "--qid", "-1", FLOW], "bad rx queue id."),
        (["p0", "--qid", "x", FLOW], "bad rx queue id."),
        (["p2", "--qid", "1", FLOW], "bad rx queue id."),
        (["p0", FLOW, "--len", "59"], "too small packet len"),
        (["p0", FLOW, "--len", "sixty"], "too small packet len"),
        (["p0", FLOW, "--len"], "too small packet len"),
        (["p0", FLOW, "eth(src=1)"], "bad packet or flow syntax"),
        (["p0", FLOW, "--len", "100", "--len", "100"], "bad packet or flow syntax"),
        (["p0", "0011223344"], "bad packet or flow syntax"),  # too short for Ethernet
        (["p0", "eth_type(0x0806),arp(op=256)"], "bad packet or flow syntax"),
        (
            ["p0", "eth_type(0x86dd),ipv6(proto=58),icmpv6(type=135,code=0),nd()", "--len", "60"],
            "bad packet or flow syntax",  # headers need 78 bytes
        ),
    ],
)
async def test_receive_errors_use_ovs_texts_and_queue_nothing(
    commands: CommandRegistry, ports: dict[str, Netdev], args: list[str], error: str
) -> None:
    with pytest.raises(CommandError) as info:
        await receive(commands, *args)
    assert str(info.value) == error
    assert all(queued(ports[p], q) == [] for p, q in [("p0", 0), ("p0", 1), ("p2", 0)])


async def test_receive_needs_two_arguments(commands: CommandRegistry) -> None:
    with pytest.raises(CommandError, match="requires at least 2 arguments"):
        await receive(commands, "p0")


def test_parse_hex_frame() -> None:
    assert parse_hex_frame("00" * 14) == bytes(14)
    assert parse_hex_frame(" 00.11\t22\n" + "33" * 11 + " ") == bytes.fromhex("001122" + "33" * 11)
    assert parse_hex_frame("00" * 13) is None
    assert parse_hex_frame("0" * 29) is None
    assert parse_hex_frame("zz" * 14) is None
    assert parse_hex_frame("0 0" + "00" * 14) is None  # separators only between bytes
    assert dummy_mod.ETH_TOTAL_MIN == 60


def test_validate_options_checks_without_opening(tmp_path: Path) -> None:
    for cls in (DummyNetdev, DummyPmdNetdev):
        assert cls.validate_options("p0", {"n_rxq": "4", "tx_async_polls": "2"}) == []
        with pytest.raises(NetdevError, match='p0: bad n_rxq "100000"'):
            cls.validate_options("p0", {"n_rxq": "100000"})
        with pytest.raises(NetdevError, match='p0: unknown option "x"'):
            cls.validate_options("p0", {"x": "1"})
    capture = tmp_path / "p0.pcap"
    assert DummyNetdev.validate_options("p0", {"pcap": str(capture)}) == []
    assert not capture.exists()  # nothing created
    with pytest.raises(NetdevError, match=r"directory .*/nope does not exist"):
        DummyNetdev.validate_options("p0", {"tx_pcap": str(tmp_path / "nope" / "x.pcap")})
    with pytest.raises(NetdevError, match="Is a directory"):
        DummyNetdev.validate_options("p0", {"rxq_pcap": str(tmp_path)})
    capture.write_bytes(b"not a capture at all, longer than a header")
    with pytest.raises(NetdevError, match="p0: "):
        DummyNetdev.validate_options("p0", {"pcap": str(capture)})
