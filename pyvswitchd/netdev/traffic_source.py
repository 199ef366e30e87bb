"""``traffic-source``: a PMD-polled port that generates traffic, for demos and benchmarks.

Options, limits and the ``dpctl/show`` status are described for users in
docs/netdev-types.md; this is how the source is built.

Each poll of an rx queue returns the next frames of a fixed list, cycling
(until ``count`` frames were produced, when set).  The list is synthesised
or read from a capture file whenever the options change, never on the data
path, so a poll costs one slice and two subtractions (see
:class:`_SourceQueue`).

Synthetic flow i has source MAC ``02:ss:ss`` followed by the 24-bit
number (i mod ``macs``) + 1, where ``ss:ss`` comes from a hash of the port
name (two sources on one bridge must not share MACs); source IP
10.0.0.0 + i + 1; UDP ports 1024 + i and 2048 + i, modulo the port range.
Its destination MAC and IP are flow (i + 1) mod N's, so a learning switch
fed only by this source learns every address it sends to.

Frames are dealt to rx queues as RSS deals flows: queue q gets frames q,
q + n_rxq, ...  With ``pps`` each queue has an integer token bucket on
``time.monotonic_ns()`` (see :meth:`TrafficSource._set_bucket`), capped so
that a queue polled late catches up without bursting.

The same Packet objects are handed out on every lap: a packet is never
modified once made (an action that edits a frame makes a new packet), just
as a NIC replaying a capture hands out equal frames.  Transmit is a
sink that counts and drops.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import attrs
import trio

from ..odp.flow_compose import compose_packet
from ..odp.key_text import VALUE, KeyAttr
from ..odp.packet import NETDEV_MAX_BURST, Packet
from ..odp.protocols import ETH_TYPE_IP, IPPROTO_UDP
from .dummy import int_option, queue_options, reject_unknown
from .pcap import PcapError, read_frames
from .provider import OK, Netdev, NetdevError

MAX_FLOWS = 65536
MIN_LEN = 42  # Ethernet + IPv4 + UDP headers
MAX_LEN = 9216
#: Most frames a replayed capture may hold (they all stay in memory).
MAX_PCAP_FRAMES = 1_000_000
#: Most bytes ``flows`` x ``len`` may add up to (they all stay in memory).
MAX_SYNTH_BYTES = 64 << 20
_NS = 1_000_000_000
#: A bucket holds at least this much time's worth of its rate.
_BUCKET_NS = 10_000_000


def _word_sum(data: bytes) -> int:
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    return sum(words)


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _parse_mac(name: str, text: str) -> bytes:
    parts = text.split(":")
    try:
        if len(parts) != 6:
            raise ValueError
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise NetdevError(
            f'{name}: dst_mac: invalid value "{text}": expected xx:xx:xx:xx:xx:xx'
        ) from None


def synthesize_flows(
    n_flows: int,
    length: int,
    salt: int = 0,
    *,
    n_macs: int | None = None,
    dst_mac: bytes | None = None,
) -> list[bytes]:
    """``n_flows`` UDP frames of ``length`` bytes; see the module text for the addresses.

    ``n_macs`` (default ``n_flows``) distinct source MACs are used round
    robin; ``dst_mac``, when given, is every frame's destination MAC instead
    of the next flow's source MAC.

    One frame is composed and the others patched from it with incrementally
    computed checksums: composing 65536 frames one by one takes a second of
    the daemon's only thread.  The result equals composing each frame.
    """
    n_macs = n_flows if n_macs is None else max(1, min(n_macs, n_flows))
    macs = [
        (0x02 << 40 | (salt & 0xFFFF) << 24 | (i % n_macs + 1)).to_bytes(6, "big")
        for i in range(n_flows)
    ]
    ips = [0x0A000000 | (i + 1) for i in range(n_flows)]
    template = compose_packet(
        [
            KeyAttr("eth"),
            KeyAttr("eth_type", {VALUE: ETH_TYPE_IP}),
            KeyAttr("ipv4", {"proto": IPPROTO_UDP, "ttl": 64}),
            KeyAttr("udp"),
        ],
        length,
    )
    # The template has zero addresses and ports; zero its checksums too, and what
    # is left sums to the constant part of each frame's checksums.
    ip_base = _word_sum(template[14:24] + template[26:34])
    l4 = template[34:]
    pseudo = struct.pack("!xBH", IPPROTO_UDP, len(l4))
    udp_base = _word_sum(pseudo + l4[:6] + l4[8:] + (b"\0" if len(l4) & 1 else b""))
    head, mid, tail = template[12:24], template[38:40], template[42:]
    pack = struct.pack
    frames = []
    for i in range(n_flows):
        peer = (i + 1) % n_flows
        src, dst = ips[i], ips[peer]
        sport, dport = 1024 + i % 64512, 2048 + i % 63488
        addr_sum = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
        ip_csum = ~_fold(ip_base + addr_sum) & 0xFFFF
        udp_csum = ~_fold(udp_base + addr_sum + sport + dport) & 0xFFFF or 0xFFFF
        frames.append(
            (dst_mac or macs[peer])
            + macs[i]
            + head
            + pack("!HIIHH", ip_csum, src, dst, sport, dport)
            + mid
            + pack("!H", udp_csum)
            + tail
        )
    return frames


_DATA = attrgetter("data")


@attrs.frozen
class _Source:
    """Where the frames come from: a capture file, or flows synthesized from options."""

    pcap: str | None = None
    flows: int = 16
    length: int = 64
    n_macs: int = 16
    dst_mac: bytes | None = None


def _load_pcap(name: str, path: str) -> list[bytes]:
    try:
        frames = read_frames(path, limit=MAX_PCAP_FRAMES)
    except PcapError as exc:
        raise NetdevError(f"{name}: {exc}") from None
    if not frames:
        raise NetdevError(f"{name}: {path}: capture holds no frames")
    return frames


@attrs.define(slots=True)
class _SourceQueue:
    """One rx queue: its share of the frames and its token bucket.

    ``ring`` is the queue's frames, as packets built once, followed by its
    first NETDEV_MAX_BURST again, so any batch is one slice; ``sizes`` are
    prefix sums of the ring's frame lengths, so a batch's byte count is one
    subtraction.  Handing out the same packet objects again is safe because
    the datapath never modifies a packet (actions that edit a frame make a
    new one), just as a NIC replaying a capture hands out equal frames.
    """

    ring: list[Packet]
    sizes: list[int]
    period: int
    pos: int = 0
    credit: int = 0
    last_ns: int | None = None

    @classmethod
    def build(cls, frames: list[bytes]) -> _SourceQueue:
        packets = [Packet(frame) for frame in frames]
        ring = list(packets)
        while len(ring) < len(packets) + NETDEV_MAX_BURST:
            ring.extend(packets)
        sizes = [0]
        for packet in ring:
            sizes.append(sizes[-1] + len(packet.data))
        return cls(ring, sizes, len(frames))


class TrafficSource(Netdev):
    """``traffic-source``: see the module documentation."""

    type = "traffic-source"
    pmd = True

    def __init__(
        self,
        name: str,
        options: Mapping[str, str] | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        # Set before the base constructor, which calls set_config.
        self._clock = clock
        self._open = False
        self._source: _Source | None = None
        self._frames: list[bytes] = []
        self._queues: list[_SourceQueue] = []
        self._pps = 0
        self._cost = _NS
        self._cap = 0
        self._count = 0
        self._emitted = 0
        self.requested_numa_id = 0
        #: The options as last set (what a PMD worker's side is opened with).
        self.options: dict[str, str] = {}
        super().__init__(name, options)
        self._open = True

    # -- configuration ------------------------------------------------------

    @classmethod
    def _parse_options(
        cls, name: str, options: Mapping[str, str]
    ) -> tuple[tuple[int, int, int], int, int, _Source]:
        """(n_rxq, n_txq, numa_id), pps, count and the frame source of ``options``."""
        opts = dict(options)
        queues = queue_options(name, opts)
        pps = int_option(name, opts, "pps", 0, 0, 10**12)
        count = int_option(name, opts, "count", 0, 0, 2**63 - 1)
        pcap = opts.pop("pcap", None)
        if pcap is not None and ("flows" in opts or "len" in opts):
            raise NetdevError(f"{name}: pcap cannot be combined with flows or len")
        flows = int_option(name, opts, "flows", 16, 1, MAX_FLOWS)
        length = int_option(name, opts, "len", 64, MIN_LEN, MAX_LEN)
        n_macs = int_option(name, opts, "macs", flows, 1, MAX_FLOWS)
        dst_text = opts.pop("dst_mac", None)
        dst_mac = _parse_mac(name, dst_text) if dst_text is not None else None
        reject_unknown(name, opts)
        if flows * length > MAX_SYNTH_BYTES:
            raise NetdevError(
                f"{name}: flows={flows} of len={length} need more than {MAX_SYNTH_BYTES} bytes"
            )
        if pcap is not None:
            return queues, pps, count, _Source(pcap=pcap)
        return queues, pps, count, _Source(None, flows, length, n_macs, dst_mac)

    @classmethod
    def validate_options(cls, name: str, options: Mapping[str, str]) -> list[str]:
        *_, source = cls._parse_options(name, options)
        if source.pcap is not None:
            _load_pcap(name, source.pcap)
        return []

    def set_config(self, options: Mapping[str, str]) -> None:
        name = self.name
        requested, pps, count, source = self._parse_options(name, options)
        if source != self._source:
            if source.pcap is not None:
                frames = _load_pcap(name, source.pcap)
            else:
                frames = synthesize_flows(
                    source.flows,
                    source.length,
                    zlib.crc32(name.encode()),
                    n_macs=source.n_macs,
                    dst_mac=source.dst_mac,
                )
            self._source, self._frames = source, frames
            self._build_queues()
        if count != self._count:
            self._count, self._emitted = count, 0
        self._pps = pps
        self._set_bucket()
        self.options = dict(options)

        if requested != (self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id):
            self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id = requested
            if self._open:
                self.reconfigure_required = True
            else:
                self.reconfigure()

    def _build_queues(self) -> None:
        n, frames = self.n_rxq, self._frames
        self._queues = [
            _SourceQueue.build(frames[q::n] or [frames[q % len(frames)]]) for q in range(n)
        ]

    def _set_bucket(self) -> None:
        # Credit is in units where one elapsed ns adds ``pps`` and one frame costs
        # 1e9 * n_rxq: each queue then earns pps / n_rxq frames a second, in integers.
        self._cost = _NS * self.n_rxq
        self._cap = max(NETDEV_MAX_BURST * self._cost, _BUCKET_NS * self._pps)
        for queue in self._queues:
            queue.credit = min(queue.credit, self._cap)

    def reconfigure(self) -> None:
        self.numa_id = self.requested_numa_id
        super().reconfigure()
        self._build_queues()
        self._set_bucket()

    def status(self) -> str:
        source = self._source or _Source()
        if source.pcap is not None:
            text = f"pcap={source.pcap}, frames={len(self._frames)}"
        else:
            text = f"flows={source.flows}"
        text += f", pps={self._pps}, rx_queues={self.n_rxq}"
        if self._count:
            text += f", count={self._count}, produced={self._emitted}"
        return text

    def frames(self) -> list[bytes]:
        """The frames this source cycles through, in order."""
        return list(self._frames)

    # -- data path ----------------------------------------------------------

    def recv(self, qid: int) -> list[Packet]:
        try:
            queue = self._queues[qid]
        except IndexError:
            return []
        n = NETDEV_MAX_BURST
        if self._pps:
            now = self._clock()
            last = queue.last_ns
            queue.last_ns = now
            if last is None:
                return []  # the bucket starts empty: the rate is measured from here
            credit = min(queue.credit + (now - last) * self._pps, self._cap)
            n = min(n, credit // self._cost)
            queue.credit = credit - n * self._cost
        if self._count:
            n = min(n, self._count - self._emitted)
        if n <= 0:
            return []
        self._emitted += n
        pos = queue.pos
        batch = queue.ring[pos : pos + n]
        stats = self.stats
        stats.rx_packets += n
        stats.rx_bytes += queue.sizes[pos + n] - queue.sizes[pos]
        queue.pos = (pos + n) % queue.period
        return batch

    # -- PMD worker processes -------------------------------------------------

    def export_to_worker(self, qids: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
        # Each worker generates its own queues' frames.  ``count`` is shared
        # out the way frames are (queue q gets frames q, q + n_rxq, ...), so
        # the workers together stop after ``count`` frames.
        options = dict(self.options)
        if self._count:
            n = self.n_rxq
            share = sum(self._count // n + (q < self._count % n) for q in qids)
            options["count"] = str(share)
            if not share:
                options["count"] = "1"
                options["_idle"] = "1"
        return {"options": options}, []

    @classmethod
    def open_in_worker(cls, name: str, state: Mapping[str, Any], fds: Sequence[int]) -> Netdev:
        options = dict(state["options"])
        idle = options.pop("_idle", None)
        source = cls(name, options)
        if idle:
            source._emitted = source._count  # this worker's share is nothing
        return source

    async def wait_readable(self, qid: int) -> None:
        if (self._count and self._emitted >= self._count) or qid >= len(self._queues):
            await trio.sleep_forever()
        if self._pps:
            queue = self._queues[qid]
            if queue.last_ns is not None:
                earned = queue.credit + (self._clock() - queue.last_ns) * self._pps
                if earned < self._cost:
                    await trio.sleep((self._cost - earned) / self._pps / _NS)

    def send(self, qid: int, batch: list[Packet], concurrent: bool = False) -> int:
        stats = self.stats
        stats.tx_packets += len(batch)
        stats.tx_bytes += sum(map(len, map(_DATA, batch)))
        return OK
