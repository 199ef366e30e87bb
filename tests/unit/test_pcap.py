"""The pcap writer and reader: format, append, errors, and what tcpdump makes of it."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pyvswitchd.netdev.pcap import (
    LINKTYPE_ETHERNET,
    MAX_RECORD_LEN,
    PcapError,
    PcapReader,
    PcapRecord,
    PcapWriter,
    read_frames,
)
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.key_text import parse_odp_key

ICMP_FLOW = (
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)
UDP_FLOW = (
    "eth(src=50:54:00:00:00:09,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
    "ipv4(src=10.0.0.9,dst=10.0.0.1,proto=17,tos=0,ttl=64,frag=no),udp(src=1234,dst=5678)"
)
TS = 1_700_000_000_123_456_789  # ns


def frame(n: int, size: int = 60) -> bytes:
    return bytes([n]) * size


def records(path: Path) -> list[PcapRecord]:
    with PcapReader(str(path)) as reader:
        return list(reader)


def test_new_file_header_is_classic_usec_ethernet(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write(frame(1), TS)
    data = path.read_bytes()
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("=IHHiIII", data)
    assert (magic, major, minor, zone, sigfigs) == (0xA1B2C3D4, 2, 4, 0, 0)
    assert (snaplen, linktype) == (65535, LINKTYPE_ETHERNET)
    sec, usec, incl, orig = struct.unpack_from("=IIII", data, 24)
    assert (sec, usec, incl, orig) == (TS // 10**9, TS % 10**9 // 1000, 60, 60)
    assert data[40:] == frame(1)


def test_round_trip_keeps_order_data_and_microsecond_time(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write_batch([frame(1), frame(2, 1514)], TS)
        writer.write(frame(3, 14), TS + 5_000)
    got = records(path)
    assert [r.data for r in got] == [frame(1), frame(2, 1514), frame(3, 14)]
    assert [r.orig_len for r in got] == [60, 1514, 14]
    usec_ts = TS // 1000 * 1000
    assert [r.ts_ns for r in got] == [usec_ts, usec_ts, (TS + 5_000) // 1000 * 1000]


def test_batch_is_flushed_without_closing(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    writer = PcapWriter(str(path))
    writer.write_batch([frame(1), frame(2)])
    assert read_frames(str(path)) == [frame(1), frame(2)]
    writer.close()
    assert writer.closed


def test_append_adds_records_without_a_second_header(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write(frame(1))
    with PcapWriter(str(path), "a") as writer:
        writer.write(frame(2))
    assert read_frames(str(path)) == [frame(1), frame(2)]


def test_write_mode_truncates(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write(frame(1))
    with PcapWriter(str(path), "w") as writer:
        writer.write(frame(2))
    assert read_frames(str(path)) == [frame(2)]


def test_append_keeps_an_existing_files_byte_order_and_resolution(tmp_path: Path) -> None:
    path = tmp_path / "be.pcap"
    # A big-endian, nanosecond capture written by someone else.
    path.write_bytes(
        struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)
        + struct.pack(">IIII", 10, 999_999_999, 3, 3)
        + b"abc"
    )
    with PcapWriter(str(path)) as writer:
        writer.write(frame(7, 20), 11_000_000_001)
    data = path.read_bytes()
    assert struct.unpack_from(">IIII", data, 24 + 16 + 3) == (11, 1, 20, 20)
    got = records(path)
    assert [(r.ts_ns, r.data) for r in got] == [
        (10_999_999_999, b"abc"),
        (11_000_000_001, frame(7, 20)),
    ]


def test_frames_beyond_snaplen_are_truncated_keeping_original_length(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path), snaplen=100) as writer:
        writer.write(frame(1, 150))
    (record,) = records(path)
    assert (len(record.data), record.orig_len) == (100, 150)


def test_reader_reports_link_type_and_read_frames_wants_ethernet(tmp_path: Path) -> None:
    path = tmp_path / "raw.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    with PcapReader(str(path)) as reader:
        assert reader.linktype == 101
        assert list(reader) == []
    with pytest.raises(PcapError, match="link type 101 is not Ethernet"):
        read_frames(str(path))


def test_read_frames_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write_batch([frame(i) for i in range(5)])
    assert len(read_frames(str(path), limit=5)) == 5
    with pytest.raises(PcapError, match="more than 4 frames"):
        read_frames(str(path), limit=4)


def _good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write_batch([frame(1), frame(2)])
    return path


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (0, r"truncated pcap file header \(0 of 24 bytes\)"),
        (10, r"truncated pcap file header \(10 of 24 bytes\)"),
        (24 + 16 + 60 + 5, r"truncated record header at offset 100 \(5 of 16 bytes\)"),
        (24 + 16 + 60 + 16 + 59, r"truncated record at offset 100 \(59 of 60 bytes\)"),
    ],
)
def test_truncated_files_raise_pcap_error(tmp_path: Path, cut: int, message: str) -> None:
    path = _good_file(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(PcapError, match=message):
        read_frames(str(path))


def test_bad_magic_version_and_record_length(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(PcapError, match="bad pcap magic 0x38464947"):
        PcapReader(str(path))
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 1, 0, 0, 0, 65535, 1))
    with pytest.raises(PcapError, match="unsupported pcap version 1"):
        PcapReader(str(path))
    path.write_bytes(
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
        + struct.pack("<IIII", 0, 0, MAX_RECORD_LEN + 1, 60)
    )
    with pytest.raises(PcapError, match=f"bad record length {MAX_RECORD_LEN + 1} at offset 24"):
        read_frames(str(path))


def test_open_errors_are_pcap_errors(tmp_path: Path) -> None:
    with pytest.raises(PcapError, match="cannot open for reading"):
        PcapReader(str(tmp_path / "missing.pcap"))
    with pytest.raises(PcapError, match="cannot open for appending"):
        PcapWriter(str(tmp_path / "no-dir" / "x.pcap"))
    with pytest.raises(PcapError, match="cannot open for appending"):
        PcapWriter(str(tmp_path))  # a directory
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"not a capture at all, no no no")
    with pytest.raises(PcapError, match="bad pcap magic"):
        PcapWriter(str(garbage))
    other = tmp_path / "raw.pcap"
    other.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    with pytest.raises(PcapError, match="cannot append Ethernet frames"):
        PcapWriter(str(other))


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_write_failure_is_a_pcap_error() -> None:
    with pytest.raises(PcapError, match="/dev/full: cannot write pcap header"):
        PcapWriter("/dev/full")


def test_write_after_close_is_a_pcap_error(tmp_path: Path) -> None:
    writer = PcapWriter(str(tmp_path / "a.pcap"))
    writer.close()
    with pytest.raises(PcapError, match="write failed"):
        writer.write(frame(1))


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_reads_our_capture_with_good_checksums(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    with PcapWriter(str(path)) as writer:
        writer.write_batch(
            [compose_packet(parse_odp_key(ICMP_FLOW)), compose_packet(parse_odp_key(UDP_FLOW))],
            TS,
        )
        writer.write(compose_packet(parse_odp_key(UDP_FLOW), 200), TS + 1000)
    result = subprocess.run(
        ["tcpdump", "-nn", "-vv", "-e", "-r", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    assert out.count("\n") >= 3, out
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert "50:54:00:00:00:05 > 50:54:00:00:00:07" in lines[0]
    assert "10.0.0.1 > 10.0.0.2: ICMP echo request" in out
    assert "10.0.0.9.1234 > 10.0.0.1.5678: [udp sum ok] UDP, length 64" in out
    assert "UDP, length 158" in out  # padded to 200 bytes: 200 - 14 - 20 - 8
    assert "length 106" in lines[0]
    assert "bad" not in out and "incorrect" not in out, out


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_reads_appended_capture(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    for _ in range(3):
        with PcapWriter(str(path)) as writer:
            writer.write(compose_packet(parse_odp_key(ICMP_FLOW)))
    result = subprocess.run(
        ["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.count("ICMP echo request") == 3
