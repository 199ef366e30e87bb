"""The ``traffic-source`` netdev: synthesised flows, pcap replay, rate and count limits."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import trio

from pyvswitchd.netdev.pcap import PcapWriter
from pyvswitchd.netdev.provider import OK, NetdevError
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.netdev.traffic_source import TrafficSource, synthesize_flows
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.key_text import VALUE, KeyAttr
from pyvswitchd.odp.packet import NETDEV_MAX_BURST, Packet


class FakeClock:
    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * 1e9)


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def decode_udp(frame: bytes) -> tuple[bytes, bytes, int, int, int, int]:
    """(dst MAC, src MAC, src IP, dst IP, src port, dst port), checking every checksum."""
    dst_mac, src_mac, eth_type = struct.unpack_from("!6s6sH", frame)
    assert eth_type == 0x0800
    ver_ihl, tot_len, proto, src, dst = struct.unpack_from("!BxH5xB2xII", frame, 14)
    assert (ver_ihl, proto, tot_len) == (0x45, 17, len(frame) - 14)
    assert inet_checksum(frame[14:34]) == 0xFFFF
    sport, dport, udp_len = struct.unpack_from("!HHH", frame, 34)
    assert udp_len == len(frame) - 34
    pseudo = struct.pack("!IIxBH", src, dst, 17, udp_len)
    assert inet_checksum(pseudo + frame[34:]) == 0xFFFF
    return dst_mac, src_mac, src, dst, sport, dport


def data(batch: list[Packet]) -> list[bytes]:
    return [p.data for p in batch]


def test_defaults_full_batches_cycling_16_flows() -> None:
    source = TrafficSource("src0")
    assert (source.type, source.pmd, source.n_rxq) == ("traffic-source", True, 1)
    assert source.status() == "flows=16, pps=0, rx_queues=1"
    frames = source.frames()
    assert len(frames) == 16 and all(len(f) == 64 for f in frames)
    first, second = source.recv(0), source.recv(0)
    assert len(first) == len(second) == NETDEV_MAX_BURST
    assert data(first) == frames * 2 and data(second) == frames * 2
    # The datapath never modifies a packet: the source hands out the same ones again.
    assert len({id(p) for p in first + second}) == 16
    assert (source.stats.rx_packets, source.stats.rx_bytes) == (64, 64 * 64)
    assert source.recv(1) == []


def test_flows_are_distinct_and_chain_so_a_mac_learner_learns_all() -> None:
    source = TrafficSource("src0", {"flows": "5", "len": "100"})
    decoded = [decode_udp(f) for f in source.frames()]
    assert all(len(f) == 100 for f in source.frames())
    src_macs = [d[1] for d in decoded]
    assert len(set(src_macs)) == len({d[2] for d in decoded}) == len({d[4] for d in decoded}) == 5
    for i, (dst_mac, _src_mac, _src_ip, dst_ip, _sport, _dport) in enumerate(decoded):
        peer = decoded[(i + 1) % 5]
        assert (dst_mac, dst_ip) == (peer[1], peer[2])
    assert {d[0] for d in decoded} == set(src_macs)
    assert all(mac[0] == 0x02 for mac in src_macs)  # locally administered unicast
    salt = zlib.crc32(b"src0") & 0xFFFF
    assert src_macs[0] == bytes([2]) + salt.to_bytes(2, "big") + b"\x00\x00\x01"
    assert decoded[0][2] == 0x0A000001 and decoded[0][4:] == (1024, 2048)


def test_sources_with_different_names_use_different_macs() -> None:
    a = {decode_udp(f)[1] for f in TrafficSource("a").frames()}
    b = {decode_udp(f)[1] for f in TrafficSource("b").frames()}
    assert not a & b


@pytest.mark.parametrize(("n", "length"), [(1, 42), (3, 64), (300, 77), (2000, 1514)])
def test_synthesized_frames_equal_composed_ones(n: int, length: int) -> None:
    frames = synthesize_flows(n, length, salt=0xBEEF)
    macs = [0x02 << 40 | 0xBEEF << 24 | (i + 1) for i in range(n)]
    for i in {0, n // 2, n - 1}:
        peer = (i + 1) % n
        key = [
            KeyAttr("eth", {"src": macs[i], "dst": macs[peer]}),
            KeyAttr("eth_type", {VALUE: 0x0800}),
            KeyAttr(
                "ipv4", {"src": 0x0A000001 + i, "dst": 0x0A000001 + peer, "proto": 17, "ttl": 64}
            ),
            KeyAttr("udp", {"src": 1024 + i, "dst": 2048 + i}),
        ]
        assert frames[i] == compose_packet(key, length)
        decode_udp(frames[i])


def test_single_flow_talks_to_itself() -> None:
    (frame,) = TrafficSource("s", {"flows": "1"}).frames()
    dst_mac, src_mac, *_ = decode_udp(frame)
    assert dst_mac == src_mac


def test_rx_queues_split_flows_like_rss() -> None:
    source = TrafficSource("s", {"flows": "10", "n_rxq": "4"})
    frames = source.frames()
    assert source.status() == "flows=10, pps=0, rx_queues=4"
    for q in range(4):
        got = data(source.recv(q))
        assert len(got) == NETDEV_MAX_BURST
        assert set(got) == set(frames[q::4])
    few = TrafficSource("s", {"flows": "2", "n_rxq": "3"})
    assert [set(data(few.recv(q))) for q in range(3)] == [
        {few.frames()[0]},
        {few.frames()[1]},
        {few.frames()[0]},
    ]


def test_count_stops_after_n_packets_in_total() -> None:
    source = TrafficSource("s", {"count": "50", "n_rxq": "2"})
    got = [len(source.recv(q)) for q in (0, 1, 0, 1)]
    assert got == [32, 18, 0, 0]
    assert source.status() == "flows=16, pps=0, rx_queues=2, count=50, produced=50"
    source.set_config({"count": "50", "n_rxq": "2"})  # unchanged: stays exhausted
    assert source.recv(0) == []
    source.set_config({"count": "10", "n_rxq": "2"})  # changed: counts again
    assert len(source.recv(1)) == 10 and source.recv(0) == []
    assert source.stats.rx_packets == 60


def test_pps_token_bucket_long_run_rate() -> None:
    clock = FakeClock()
    source = TrafficSource("s", {"pps": "1000", "n_rxq": "2"}, clock=clock)
    assert source.recv(0) == [] and source.recv(1) == []  # buckets start empty
    total = 0
    for _ in range(10_000):  # 10 s, each queue polled every millisecond
        clock.advance(0.001)
        total += len(source.recv(0)) + len(source.recv(1))
    assert total == 10_000
    # Idle time fills a bucket up to a batch at most: no huge burst afterwards.
    clock.advance(60)
    assert len(source.recv(0)) == NETDEV_MAX_BURST
    assert source.recv(0) == []
    clock.advance(0.002)  # 500 pps per queue: one more frame
    assert len(source.recv(0)) == 1


def test_pps_bucket_allows_10ms_of_catch_up_at_high_rates() -> None:
    clock = FakeClock()
    source = TrafficSource("s", {"pps": "1000000"}, clock=clock)
    source.recv(0)
    clock.advance(1)
    sizes = [len(source.recv(0)) for _ in range(400)]
    assert sum(sizes) == 10_000 and max(sizes) == NETDEV_MAX_BURST


def test_pcap_replay_loops_over_the_capture(tmp_path: Path) -> None:
    path = tmp_path / "in.pcap"
    frames = [bytes([i]) * (60 + i) for i in range(3)]
    with PcapWriter(str(path)) as writer:
        writer.write_batch(frames)
    source = TrafficSource("s", {"pcap": str(path), "pps": "0"})
    assert source.status() == f"pcap={path}, frames=3, pps=0, rx_queues=1"
    got = data(source.recv(0))
    assert got == (frames * 11)[:32]
    assert source.stats.rx_bytes == sum(len(f) for f in got)
    assert data(source.recv(0))[0] == frames[32 % 3]


def test_bad_pcap_files_are_netdev_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pcap"
    with pytest.raises(NetdevError, match=r"^s: .*missing.pcap: cannot open for reading"):
        TrafficSource("s", {"pcap": str(missing)})
    empty = tmp_path / "empty.pcap"
    PcapWriter(str(empty)).close()
    with pytest.raises(NetdevError, match="capture holds no frames"):
        TrafficSource("s", {"pcap": str(empty)})
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    with pytest.raises(NetdevError, match="link type 101 is not Ethernet"):
        TrafficSource("s", {"pcap": str(raw)})
    cut = tmp_path / "cut.pcap"
    with PcapWriter(str(cut)) as writer:
        writer.write(bytes(60))
    cut.write_bytes(cut.read_bytes()[:-1])
    with pytest.raises(NetdevError, match="truncated record"):
        TrafficSource("s", {"pcap": str(cut)})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"flows": "0"}, 's: bad flows "0" (expected an integer 1..65536)'),
        ({"flows": "65537"}, 's: bad flows "65537"'),
        ({"len": "41"}, 's: bad len "41" (expected an integer 42..9216)'),
        ({"pps": "-5"}, 's: bad pps "-5"'),
        ({"count": "many"}, 's: bad count "many"'),
        ({"n_rxq": "0"}, 's: bad n_rxq "0"'),
        ({"flows": "65536", "len": "9216"}, "s: flows=65536 of len=9216 need more than"),
        ({"pcap": "x.pcap", "flows": "3"}, "s: pcap cannot be combined with flows or len"),
        ({"rate": "1"}, 's: unknown option "rate" (value "1")'),
    ],
)
def test_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(NetdevError) as info:
        TrafficSource("s", options)
    assert str(info.value).startswith(message)


def test_queue_changes_wait_for_reconfigure_other_changes_apply_now() -> None:
    source = TrafficSource("s", {"flows": "4"})
    source.set_config({"flows": "8", "n_rxq": "2", "numa_id": "1"})
    assert len(source.frames()) == 8 and source.reconfigure_required
    assert (source.n_rxq, source.numa_id) == (1, 0)
    assert set(data(source.recv(0))) == set(source.frames())
    source.reconfigure()
    assert (source.n_rxq, source.numa_id, source.reconfigure_required) == (2, 1, False)
    assert set(data(source.recv(1))) == set(source.frames()[1::2])


def test_transmit_is_a_counting_sink() -> None:
    source = TrafficSource("s")
    assert source.send(0, [Packet(bytes(60)), Packet(bytes(70))]) == OK
    assert (source.stats.tx_packets, source.stats.tx_bytes) == (2, 130)


def test_created_through_the_default_registry() -> None:
    source = default_registry().create("traffic-source", "gen", {"flows": "3"})
    assert isinstance(source, TrafficSource) and len(source.frames()) == 3


async def test_wait_readable() -> None:
    await TrafficSource("s").wait_readable(0)  # always readable without a rate
    done = TrafficSource("s", {"count": "1"})
    done.recv(0)
    with trio.move_on_after(0.05) as scope:
        await done.wait_readable(0)
    assert scope.cancelled_caught
    clock = FakeClock()
    paced = TrafficSource("s", {"pps": "100"}, clock=clock)
    paced.recv(0)
    with trio.fail_after(1):
        await paced.wait_readable(0)  # sleeps about 10 ms of trio time


def test_validate_options_reads_the_capture(tmp_path: Path) -> None:
    assert TrafficSource.validate_options("src", {"flows": "4", "pps": "10"}) == []
    with pytest.raises(NetdevError, match=r"src: .*missing\.pcap"):
        TrafficSource.validate_options("src", {"pcap": str(tmp_path / "missing.pcap")})
    empty = tmp_path / "empty.pcap"
    PcapWriter(str(empty), "w").close()
    with pytest.raises(NetdevError, match="capture holds no frames"):
        TrafficSource.validate_options("src", {"pcap": str(empty)})
    with pytest.raises(NetdevError, match="pcap cannot be combined"):
        TrafficSource.validate_options("src", {"pcap": str(empty), "flows": "2"})
