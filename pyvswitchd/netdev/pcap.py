"""Classic libpcap capture files: a writer for netdev captures, a reader for replay.

The format is the original libpcap one that tcpdump, Wireshark and scapy all
read: a 24-byte file header (magic, version 2.4, snaplen, link type) followed
by records of a 16-byte header (seconds, sub-seconds, captured length,
original length) and the captured bytes.

* :class:`PcapWriter` writes ``LINKTYPE_ETHERNET`` files with microsecond
  time stamps in native byte order, as OVS's ``ovs_pcap_write_header`` does.
  Opened for appending to an existing capture it keeps that file's byte order
  and time stamp resolution, so the file stays consistent.  Every
  :meth:`PcapWriter.write_batch` ends with one flush, so a reader (or
  ``tcpdump -r``) sees whole batches while the daemon runs.
* :class:`PcapReader` reads either byte order and either resolution
  (microsecond magic ``0xa1b2c3d4``, nanosecond ``0xa1b23c4d``).

Anything wrong with a file — a missing or short header, an unknown magic, a
record longer than :data:`MAX_RECORD_LEN`, a record cut short — raises
:class:`PcapError` whose text names the file and the offset, never a bare
``struct.error`` or ``OSError``.

Deliberate difference from OVS: the snaplen written is 65535 (OVS writes
1518 yet records longer frames, which some readers reject); frames longer
than the snaplen are truncated to it, with the true length kept as the
record's original length.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import attrs

#: Link type of Ethernet captures (``DLT_EN10MB``).
LINKTYPE_ETHERNET = 1
#: Snapshot length written into new files.
DEFAULT_SNAPLEN = 65535
#: Largest captured length the reader accepts (libpcap's own sanity limit).
MAX_RECORD_LEN = 262144

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_FILE_HEADER_LEN = 24
_RECORD_HEADER_LEN = 16


class PcapError(Exception):
    """A capture file cannot be opened, read or written; the text says why."""


@attrs.frozen
class PcapRecord:
    """One captured frame: when, what was kept, and how long it really was."""

    ts_ns: int
    data: bytes
    orig_len: int


@attrs.frozen
class _Format:
    """How a file's records are encoded: byte order and time stamp unit."""

    endian: str  # "<" or ">"
    nsec: bool
    linktype: int
    snaplen: int

    @property
    def record(self) -> struct.Struct:
        return struct.Struct(self.endian + "IIII")


def _parse_file_header(header: bytes, path: str) -> _Format:
    if len(header) < _FILE_HEADER_LEN:
        raise PcapError(
            f"{path}: truncated pcap file header ({len(header)} of {_FILE_HEADER_LEN} bytes)"
        )
    for endian in ("<", ">"):
        (magic,) = struct.unpack_from(endian + "I", header)
        if magic in (_MAGIC_USEC, _MAGIC_NSEC):
            break
    else:
        (magic,) = struct.unpack_from("<I", header)
        raise PcapError(
            f"{path}: bad pcap magic 0x{magic:08x} (expected 0xa1b2c3d4 or 0xa1b23c4d, "
            "in either byte order)"
        )
    major, _minor, _zone, _sigfigs, snaplen, linktype = struct.unpack_from(
        endian + "HHiIII", header, 4
    )
    if major != 2:
        raise PcapError(f"{path}: unsupported pcap version {major} (expected 2)")
    # The upper 16 bits of the link type field carry FCS flags; the type is below.
    return _Format(endian, magic == _MAGIC_NSEC, linktype & 0xFFFF, snaplen)


class PcapWriter:
    """Appends frames to a capture file.

    ``mode`` is ``"a"`` (append; a new or empty file gets a header, an
    existing one must be a valid Ethernet capture) or ``"w"`` (truncate and
    start over).  Opening failures raise :class:`PcapError`.  Write failures
    (disk full) raise :class:`PcapError` too; callers on a data path catch it.
    """

    def __init__(self, path: str, mode: str = "a", *, snaplen: int = DEFAULT_SNAPLEN) -> None:
        if mode not in ("a", "w"):
            raise ValueError(f"pcap writer mode must be 'a' or 'w', not {mode!r}")
        self.path = path
        try:
            self._file: BinaryIO = open(path, "ab" if mode == "a" else "wb")  # noqa: SIM115
        except OSError as exc:
            raise PcapError(f"{path}: cannot open for {_verb(mode)} ({exc.strerror})") from None
        try:
            size = os.fstat(self._file.fileno()).st_size
            if size == 0:
                self._fmt = _Format("=", False, LINKTYPE_ETHERNET, snaplen)
                self._file.write(
                    struct.pack("=IHHiIII", _MAGIC_USEC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)
                )
                self._file.flush()
            else:
                with open(path, "rb") as existing:
                    self._fmt = _parse_file_header(existing.read(_FILE_HEADER_LEN), path)
                if self._fmt.linktype != LINKTYPE_ETHERNET:
                    raise PcapError(
                        f"{path}: cannot append Ethernet frames to a capture of link type "
                        f"{self._fmt.linktype}"
                    )
        except PcapError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise PcapError(f"{path}: cannot write pcap header ({exc.strerror})") from None
        self._record = self._fmt.record
        self._snaplen = self._fmt.snaplen or DEFAULT_SNAPLEN

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, frame: bytes, ts_ns: int | None = None) -> None:
        """Append one frame and flush."""
        self.write_batch((frame,), ts_ns)

    def write_batch(self, frames: Iterable[bytes], ts_ns: int | None = None) -> None:
        """Append ``frames``, all stamped ``ts_ns`` (now when None), then flush once."""
        if ts_ns is None:
            ts_ns = time.time_ns()
        sec, sub_ns = divmod(ts_ns, 1_000_000_000)
        sub = sub_ns if self._fmt.nsec else sub_ns // 1000
        sec &= 0xFFFFFFFF
        pack = self._record.pack
        snaplen = self._snaplen
        chunks: list[bytes] = []
        for frame in frames:
            n = len(frame)
            if n > snaplen:
                chunks.append(pack(sec, sub, snaplen, n))
                chunks.append(frame[:snaplen])
            else:
                chunks.append(pack(sec, sub, n, n))
                chunks.append(frame)
        try:
            self._file.write(b"".join(chunks))
            self._file.flush()
        except (OSError, ValueError) as exc:
            # ValueError: the file was closed under us.
            raise PcapError(f"{self.path}: write failed ({exc})") from None

    def close(self) -> None:
        # Every batch was flushed or failed already: a failing close loses nothing new.
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_appendable(path: str) -> None:
    """PcapError if :class:`PcapWriter` could not append to ``path``; creates nothing.

    The file must be an Ethernet capture (or empty) we may write, or not
    exist in a directory we may write to.
    """
    if os.path.isdir(path):
        raise PcapError(f"{path}: cannot open for appending (Is a directory)")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise PcapError(f"{path}: cannot open for appending (Permission denied)")
        try:
            with open(path, "rb") as existing:
                header = existing.read(_FILE_HEADER_LEN)
        except OSError as exc:
            raise PcapError(f"{path}: cannot read ({exc.strerror})") from None
        if header and _parse_file_header(header, path).linktype != LINKTYPE_ETHERNET:
            raise PcapError(f"{path}: cannot append Ethernet frames to a capture of another type")
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise PcapError(f"{path}: cannot open for appending (directory {directory} does not exist)")
    if not os.access(directory, os.W_OK):
        raise PcapError(f"{path}: cannot open for appending (directory {directory} not writable)")


def _verb(mode: str) -> str:
    return {"a": "appending", "w": "writing", "r": "reading"}[mode]


class PcapReader:
    """Iterates the records of a capture file (any link type: see :attr:`linktype`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise PcapError(f"{path}: cannot open for reading ({exc.strerror})") from None
        try:
            self._fmt = _parse_file_header(self._read(_FILE_HEADER_LEN), path)
        except PcapError:
            self._file.close()
            raise
        self._offset = _FILE_HEADER_LEN

    @property
    def linktype(self) -> int:
        return self._fmt.linktype

    @property
    def snaplen(self) -> int:
        return self._fmt.snaplen

    def _read(self, n: int) -> bytes:
        try:
            return self._file.read(n)
        except OSError as exc:
            raise PcapError(f"{self.path}: read failed ({exc.strerror})") from None

    def __iter__(self) -> Iterator[PcapRecord]:
        unpack = self._fmt.record.unpack
        scale = 1 if self._fmt.nsec else 1000
        while True:
            header = self._read(_RECORD_HEADER_LEN)
            if not header:
                return
            if len(header) < _RECORD_HEADER_LEN:
                raise PcapError(
                    f"{self.path}: truncated record header at offset {self._offset} "
                    f"({len(header)} of {_RECORD_HEADER_LEN} bytes)"
                )
            sec, sub, incl_len, orig_len = unpack(header)
            if incl_len > MAX_RECORD_LEN:
                raise PcapError(
                    f"{self.path}: bad record length {incl_len} at offset {self._offset} "
                    f"(more than {MAX_RECORD_LEN})"
                )
            data = self._read(incl_len)
            if len(data) < incl_len:
                raise PcapError(
                    f"{self.path}: truncated record at offset {self._offset} "
                    f"({len(data)} of {incl_len} bytes)"
                )
            self._offset += _RECORD_HEADER_LEN + incl_len
            yield PcapRecord(sec * 1_000_000_000 + sub * scale, data, max(orig_len, incl_len))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_frames(path: str, *, limit: int | None = None) -> list[bytes]:
    """The frames of the Ethernet capture ``path`` (at most ``limit``); PcapError if bad."""
    with PcapReader(path) as reader:
        if reader.linktype != LINKTYPE_ETHERNET:
            raise PcapError(
                f"{path}: link type {reader.linktype} is not Ethernet ({LINKTYPE_ETHERNET})"
            )
        frames: list[bytes] = []
        for record in reader:
            if limit is not None and len(frames) >= limit:
                raise PcapError(f"{path}: more than {limit} frames")
            frames.append(record.data)
        return frames
