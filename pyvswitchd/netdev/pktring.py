"""Receive and transmit paths of AF_PACKET sockets: PACKET_MMAP rings, and plain receive.

Layouts follow ``linux/if_packet.h`` and the kernel's
``Documentation/networking/packet_mmap.rst``.  All numbers are host order.

Receive, TPACKET_V2 (:class:`RxRingV2`): fixed-size frames, each starting
with a ``tpacket2_hdr``.  The kernel fills frames in ring order and flips a
frame's ``tp_status`` to TP_STATUS_USER when it is complete (and wakes poll
per frame); user space hands it back by writing TP_STATUS_KERNEL.

Receive, TPACKET_V3 (:class:`RxRingV3`): blocks of variable-size frames.  A
block is handed to user space whole, when it is full or its retire timer
(:data:`V3_RETIRE_MS`) expires, which is also when poll wakes: up to that
much latency per frame, in exchange for fewer wake-ups under load.

Transmit, TPACKET_V2 (:class:`TxRing`): user space writes frames into slots
whose status is TP_STATUS_AVAILABLE, marks them TP_STATUS_SEND_REQUEST and
"kicks" the kernel with one ``send()``.  The kernel walks the ring strictly
in order from its own head, sets each frame TP_STATUS_SENDING while an skb
holds it and TP_STATUS_AVAILABLE again when the skb is freed (on a veth that
is during the kick; on a real NIC at transmit completion).  Because the
kernel stops at the first slot that is not SEND_REQUEST, slots must be
filled strictly in ring order: a slot still owned by the kernel means the
ring is full, it cannot be skipped.

Receive without a ring (:class:`PlainRx`): one non-blocking ``recvmsg`` per
frame, with PACKET_AUXDATA for the VLAN tag.  Needed for GSO super-frames
of up to 64 KiB (PACKET_VNET_HDR), which do not fit ring frames.

The rings copy every frame out (``bytes``) as soon as they see it, so the
kernel gets its slot back at once.  The only memoryviews of a ring are the
word views its owner keeps for strided header access, released by ``close``
before it unmaps.

Speed: receive and transmit run for every frame the switch forwards, and
the machine's CPUs are shared with the traffic's own endpoints, so the ring
paths work on whole runs of slots: one strided slice of a word view reads
(or writes) one header field of up to 32 frames, leaving per-frame Python
only for the copy itself (one slice each) and the Packet.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
from array import array
from typing import ClassVar

from ..datapath.packet import NETDEV_MAX_BURST, Packet
from .provider import NetdevStats

# -- <linux/if_packet.h> ---------------------------------------------------------
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
TPACKET_V2 = 1
TPACKET_V3 = 2
ETH_P_ALL = 3

# Receive status bits.
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 0x1
TP_STATUS_LOSING = 0x4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
# Transmit status values.
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 0x1
TP_STATUS_SENDING = 0x2
TP_STATUS_WRONG_FORMAT = 0x4

#: TPACKET_ALIGN(sizeof(struct tpacket2_hdr)) + sizeof(struct sockaddr_ll).
TPACKET2_HDRLEN = 32 + 20
#: Where a V2 transmit frame's data starts (no PACKET_TX_HAS_OFF): TPACKET2_HDRLEN - sockaddr_ll.
TX_DATA_OFFSET = 32
#: sizeof(struct virtio_net_hdr).
VNET_HDR_LEN = 10
#: retire_blk_tov of V3 rings, in ms: the longest a frame waits in an unfilled block.
V3_RETIRE_MS = 1

ETH_ALEN2 = 12  # the two MAC addresses, before the EtherType / VLAN tag
TPID_8021Q = 0x8100

# tpacket2_hdr: tp_status, tp_len, tp_snaplen (u32), tp_mac, tp_net (u16), sec, nsec, vlan
# tci/tpid (u16).
_V2_VLAN_OFF = 24
# tpacket3_hdr: tp_next_offset, sec, nsec, tp_snaplen, tp_len, tp_status, tp_mac.
_V3_HDR = struct.Struct("=I8xIIIH")
_V3_VLAN_OFF = 32  # hv1.tp_vlan_tci (u32), then tp_vlan_tpid (u16)
_V3_VLAN = struct.Struct("=IH")
# tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1: block_status,
# num_pkts, offset_to_first_pkt.
_V3_BLOCK_STATUS_OFF = 8
_V3_BLOCK = struct.Struct("=III")
_VLAN = struct.Struct("=HH")
_TAG = struct.Struct("!HH")
_U32 = struct.Struct("=I")
_ZERO32 = b"\0\0\0\0"
#: Runs of at least this many slots are read or written with strided slices.
_RUN = 8
#: Status words for a strided store into n slots: ``_ZEROS[n]``, ``_SEND_REQUESTS[n]``.
_ZEROS = [memoryview(array("I", [TP_STATUS_KERNEL] * n)) for n in range(NETDEV_MAX_BURST + 1)]
_SEND_REQUESTS = [
    memoryview(array("I", [TP_STATUS_SEND_REQUEST] * n)) for n in range(NETDEV_MAX_BURST + 1)
]
#: Receive statuses that need the per-frame path: drops to report, a VLAN tag to put back.
_RX_ODD = TP_STATUS_LOSING | TP_STATUS_VLAN_VALID
_AUXDATA = struct.Struct("=IIIHHHH")  # tpacket_auxdata: status, len, snaplen, mac, net, tci, tpid
_VNET = struct.Struct("<BBHHHH")  # virtio_net_hdr, little endian as the kernel gives it here
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
#: Errnos of a device gone down or away, which :meth:`RxPath.read` passes on.
LINK_ERRNOS = frozenset((errno.ENODEV, errno.ENXIO, errno.ENETDOWN))
# Plain ints: socket's IntFlag members make every ``&`` an enum operation.
MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_MSG_TRUNC = int(socket.MSG_TRUNC)

_PAGE = mmap.PAGESIZE


def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def rx_frame_size(mtu: int, extra: int = 0) -> int:
    """Ring frame size for ``mtu``: headers, a VLAN-tagged frame and ``extra`` bytes, as 2^k.

    The kernel places the frame at roughly TPACKET2_HDRLEN + 16 bytes plus
    alignment; 128 bytes of room covers that for every header variant.
    """
    return max(2048, _pow2_at_least(128 + extra + mtu + 18))


def _vlan_frame(mm: mmap.mmap, start: int, size: int, tpid: int, tci: int) -> bytes:
    """The frame at ``start`` with the 802.1Q tag the kernel moved to metadata put back."""
    tag = _TAG.pack(tpid, tci)
    return mm[start : start + ETH_ALEN2] + tag + mm[start + ETH_ALEN2 : start + size]


class RxPath:
    """How one rx queue receives: from an mmap'd ring, or by plain ``recvmsg``.

    ``read`` returns up to NETDEV_MAX_BURST packets and counts them in
    ``stats`` (rx_packets, rx_bytes; truncated frames in rx_errors); it
    raises OSError only for an errno of :data:`LINK_ERRNOS` (device down or
    gone).  ``losing`` turns true when the kernel may have dropped frames;
    the owner then reads PACKET_STATISTICS and clears it.
    """

    #: Name for status output ("v2", "v3", "none").
    version: ClassVar[str] = ""
    #: Whether frames sit in a ring, so that ``ready`` can tell without a syscall.
    mmapped: ClassVar[bool] = True

    def __init__(self, sock: socket.socket, stats: NetdevStats) -> None:
        self.sock = sock
        self.stats = stats
        self.losing = False
        #: Empty reads since the owner last checked the socket for a pending error.
        self.empty_polls = 0
        self._mm: mmap.mmap | None = None
        #: Views of ``_mm``, which must be released before it can be unmapped.
        self._views: tuple[memoryview, ...] = ()

    def read(self) -> list[Packet]:
        raise NotImplementedError

    def ready(self) -> bool:
        """True when ``read`` would return at least one frame (rings only)."""
        return False

    def _odd_frame(
        self, mm: mmap.mmap, status: int, length: int, snaplen: int, start: int,
        vlan: tuple[struct.Struct, int], frames: list[bytes],
    ) -> None:  # fmt: skip
        """Take a ring frame that is not plain: truncated (rx_errors), VLAN-tagged, or losing.

        The frame starts at ``start``; ``vlan`` unpacks the header's (tci, tpid)
        at the offset that comes with it.
        """
        if status & TP_STATUS_LOSING:
            self.losing = True
        if snaplen != length:
            self.stats.rx_errors += 1  # larger than a ring frame: truncated
        elif status & TP_STATUS_VLAN_VALID:
            tci, tpid = vlan[0].unpack_from(mm, vlan[1])
            if not status & TP_STATUS_VLAN_TPID_VALID:
                tpid = TPID_8021Q
            frames.append(_vlan_frame(mm, start, snaplen, tpid, tci & 0xFFFF))
        else:
            frames.append(mm[start : start + snaplen])

    def close(self) -> None:
        """Release the ring or buffer (idempotent); the socket is the owner's to close."""
        for view in self._views:
            view.release()
        self._views = ()
        if self._mm is not None:
            self._mm.close()
            self._mm = None


class RxRingV2(RxPath):
    """TPACKET_V2 receive ring: per-frame status, a wake-up per frame."""

    version = "v2"
    #: Bytes of ring memory (at least MIN_FRAMES frames).
    RING_BYTES = 2 << 20
    MIN_FRAMES = 256

    def __init__(self, sock: socket.socket, mtu: int, stats: NetdevStats) -> None:
        super().__init__(sock, stats)
        size = rx_frame_size(mtu)
        block = max(size, 1 << 16)
        nr = max(self.RING_BYTES // size, self.MIN_FRAMES)
        nr -= nr % (block // size)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # tpacket_req: block_size, block_nr, frame_size, frame_nr.
        req = struct.pack("=4I", block, nr * size // block, size, nr)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        # Blocks are whole multiples of the frame size, so frame i is at i * size.
        mm = self._mm = mmap.mmap(sock.fileno(), nr * size)
        # Word and half-word views: the header of frame i starts at word
        # a = i * stride = _hdrs[i]; tp_status, tp_len and tp_snaplen are words
        # a, a + 1, a + 2, tp_mac is half-word 2 * a + 6.
        self._views = self._words, self._halves = memoryview(mm).cast("I"), memoryview(mm).cast("H")
        self._stride = size // 4
        self._hdrs = list(range(0, nr * self._stride, self._stride))
        self._nr = nr
        self._next = 0

    def ready(self) -> bool:
        # A frame is either the kernel's (status exactly TP_STATUS_KERNEL: the
        # kernel only fills such a frame and sets the status last) or ours.
        return self._mm is not None and bool(self._words[self._hdrs[self._next]])

    def read(self, want: int = NETDEV_MAX_BURST) -> list[Packet]:
        # The hot path, shaped for speed: header fields are read through the word
        # views (an index costs far less than a struct unpack, and less than a
        # strided slice for all but the longest runs), over precomputed header
        # positions, so that a plain frame costs a few indexes, one slice (the
        # copy), one store (the status) and its Packet.
        mm = self._mm
        if mm is None:
            return []
        words, halves, i = self._words, self._halves, self._next
        if not words[self._hdrs[i]]:
            return []
        hdrs = self._hdrs[i : i + want]  # not past the ring's end: see below
        end = i + len(hdrs)
        frames: list[bytes] = []
        append = frames.append
        for a in hdrs:
            status = words[a]
            if not status:
                end = a // self._stride
                break
            snaplen = words[a + 2]
            start = 4 * a + halves[2 * a + 6]  # tp_mac
            if status & _RX_ODD or snaplen != words[a + 1]:
                vlan = (_VLAN, 4 * a + _V2_VLAN_OFF)
                self._odd_frame(mm, status, words[a + 1], snaplen, start, vlan, frames)
            else:
                append(mm[start : start + snaplen])
            words[a] = TP_STATUS_KERNEL  # copied out: the slot is the kernel's again
        self._next = end if end < self._nr else 0
        out = _packets(frames, self.stats)
        if end == self._nr and end - i < want:
            out += self.read(want - (end - i))  # the run goes on at the ring's start
        return out


def _packets(frames: list[bytes], stats: NetdevStats) -> list[Packet]:
    """``frames`` as packets, counted in rx_packets and rx_bytes."""
    stats.rx_packets += len(frames)
    stats.rx_bytes += sum(map(len, frames))
    return [Packet(frame) for frame in frames]


class RxRingV3(RxPath):
    """TPACKET_V3 receive ring: blocks handed over when full or after V3_RETIRE_MS."""

    version = "v3"
    BLOCK_SIZE = 1 << 16
    BLOCK_NR = 32

    def __init__(self, sock: socket.socket, mtu: int, stats: NetdevStats) -> None:
        super().__init__(sock, stats)
        # A frame never spans blocks: a block must hold the largest frame.
        block = max(self.BLOCK_SIZE, _pow2_at_least(rx_frame_size(mtu) + 64))
        frame = 2048  # only used by the kernel to check frame_nr
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        # tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov,
        # sizeof_priv, feature_req_word.
        req = struct.pack(
            "=7I", block, self.BLOCK_NR, frame, block * self.BLOCK_NR // frame, V3_RETIRE_MS, 0, 0
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self._mm = mmap.mmap(sock.fileno(), block * self.BLOCK_NR)
        self._block = block
        self._nr = self.BLOCK_NR
        self._cur = 0  # block being read
        self._left = 0  # frames of the current block not yet read
        self._off = 0  # offset of the next frame in the mmap

    def ready(self) -> bool:
        mm = self._mm
        if mm is None:
            return False
        if self._left:
            return True
        status = _U32.unpack_from(mm, self._cur * self._block + _V3_BLOCK_STATUS_OFF)[0]
        return bool(status & TP_STATUS_USER)

    def _release(self) -> None:
        mm = self._mm
        assert mm is not None
        base = self._cur * self._block + _V3_BLOCK_STATUS_OFF
        mm[base : base + 4] = _ZERO32
        self._cur = (self._cur + 1) % self._nr

    def read(self) -> list[Packet]:
        # The hot path, shaped for speed: frames of a block are chained by
        # tp_next_offset, so they are walked one by one, but with one header
        # unpack each and a block's count taken at once; packets are made at the end.
        mm = self._mm
        if mm is None:
            return []
        unpack = _V3_HDR.unpack_from
        frames: list[bytes] = []
        append = frames.append
        want = NETDEV_MAX_BURST
        left, off = self._left, self._off
        while want:
            if not left:
                base = self._cur * self._block
                status, num, first = _V3_BLOCK.unpack_from(mm, base + _V3_BLOCK_STATUS_OFF)
                if not status & TP_STATUS_USER:
                    break
                if status & TP_STATUS_LOSING:
                    self.losing = True
                if not num:
                    self._release()
                    continue
                left, off = num, base + first
            take = min(left, want)
            for _ in range(take):
                nxt, snaplen, length, status, mac = unpack(mm, off)
                if status & _RX_ODD or snaplen != length:
                    vlan = (_V3_VLAN, off + _V3_VLAN_OFF)
                    self._odd_frame(mm, status, length, snaplen, off + mac, vlan, frames)
                else:
                    start = off + mac
                    append(mm[start : start + snaplen])
                off += nxt
            left -= take
            want -= take
            if not left:
                self._release()  # every frame copied out: hand the block back now
        self._left, self._off = left, off
        return _packets(frames, self.stats)


class PlainRx(RxPath):
    """No ring: a non-blocking ``recvmsg`` per frame (``vnet``: after a virtio-net header)."""

    version = "none"
    mmapped = False
    #: Largest frame taken whole (a GSO super-frame); longer ones are rx_errors.
    MAX_FRAME = 0x40000
    #: Full bursts between two ``losing`` flags: drops happen when we fall behind.
    DROPS_POLL_EVERY = 64

    def __init__(self, sock: socket.socket, stats: NetdevStats, *, vnet: bool) -> None:
        super().__init__(sock, stats)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self._buf = bytearray(self.MAX_FRAME + VNET_HDR_LEN)
        self._view = memoryview(self._buf)
        self._anc = socket.CMSG_SPACE(_AUXDATA.size)
        self._vnet = vnet
        self._full = 0

    def read(self) -> list[Packet]:
        recvmsg = self.sock.recvmsg_into
        buf, view, anc, vnet_mode, stats = self._buf, self._view, self._anc, self._vnet, self.stats
        out: list[Packet] = []
        nbytes = 0
        while len(out) < NETDEV_MAX_BURST:
            try:
                n, ancdata, flags, _ = recvmsg([buf], anc, MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in LINK_ERRNOS:
                    raise
                stats.rx_errors += 1
                continue
            if flags & _MSG_TRUNC:
                stats.rx_errors += 1
                continue
            vnet = None
            if vnet_mode:
                if buf[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM or buf[1]:  # else: an ordinary frame
                    vnet = bytes(view[:VNET_HDR_LEN])
                frame = bytes(view[VNET_HDR_LEN:n])
            else:
                frame = bytes(view[:n])
            for level, kind, data in ancdata:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, _, _, _, _, tci, tpid = _AUXDATA.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = TPID_8021Q
                        frame = frame[:ETH_ALEN2] + _TAG.pack(tpid, tci) + frame[ETH_ALEN2:]
                        if vnet is not None:
                            vnet = shift_vnet(vnet, 4)
            out.append(Packet(frame, vnet=vnet))
            nbytes += len(frame)
        stats.rx_packets += len(out)
        stats.rx_bytes += nbytes
        if len(out) == NETDEV_MAX_BURST:
            self._full += 1
            if self._full >= self.DROPS_POLL_EVERY:
                self._full = 0
                self.losing = True
        return out

    def close(self) -> None:
        self._view.release()


def shift_vnet(vnet: bytes, by: int) -> bytes:
    """``vnet`` with its header length and checksum start moved ``by`` bytes later."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = _VNET.unpack(vnet)
    if hdr_len:
        hdr_len += by
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        csum_start += by
    return _VNET.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


class TxBatch:
    """The ring slots one ``send`` filled and whose fate is not known yet.

    ``remaining`` counts slots still owned by this batch; ``dropped`` those
    the ring gave up on (reclaimed unsent, or abandoned to the kernel).
    """

    __slots__ = ("dropped", "qid", "remaining", "slots")

    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.slots: list[int] = []
        self.remaining = 0
        self.dropped = 0


#: Owner of slots given up on while the kernel still held them (already counted dropped).
ABANDONED = TxBatch(-1)


class TxRing:
    """TPACKET_V2 transmit ring, filled strictly in ring order (see the module text).

    Accounting into ``stats``: a frame counts in tx_packets/tx_bytes when its
    slot is seen back in TP_STATUS_AVAILABLE (completion, not submission);
    in tx_dropped when :meth:`unwind` reclaims it unsent or :meth:`abandon`
    gives up on it; in tx_errors if the kernel rejected it as
    TP_STATUS_WRONG_FORMAT.  tx_bytes excludes the virtio-net header.

    A slot whose owner is None is free and has status TP_STATUS_AVAILABLE:
    every path that clears an owner has seen or written that status.
    """

    #: Slots in the ring.
    SLOTS = 512

    def __init__(
        self, sock: socket.socket, mtu: int, stats: NetdevStats, *, vnet: bool = False
    ) -> None:
        self.stats = stats
        size = rx_frame_size(mtu, VNET_HDR_LEN if vnet else 0)
        block = max(size, _PAGE)
        nr = self.SLOTS
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # Without PACKET_LOSS the kernel stops its head at a malformed frame for
        # good (TP_STATUS_WRONG_FORMAT); with it, it skips and frees such a frame.
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
        req = struct.pack("=4I", block, nr * size // block, size, nr)
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
        self._mm: mmap.mmap | None = mmap.mmap(sock.fileno(), nr * size)
        # tp_status and tp_len of slot i are words i * stride and i * stride + 1.
        self._words = memoryview(self._mm).cast("I")
        self._stride = size // 4
        self._size = size
        self._nr = nr
        self._next = 0
        self._owner: list[TxBatch | None] = [None] * nr
        self._length = [0] * nr
        #: Where each slot's frame goes.
        self._data = [i * size + TX_DATA_OFFSET for i in range(nr)]
        #: Most bytes (virtio-net header included) one slot carries.
        self.capacity = size - TX_DATA_OFFSET

    def put_many(
        self, frames: list[bytes], lens: list[int], vnets: list[bytes] | None, batch: TxBatch
    ) -> int:
        """Queue ``frames`` (``lens`` their lengths; each after ``vnets[k]``, if given) in order.

        Returns how many fit: stops at the first slot the kernel still owns.
        """
        # The hot path, shaped for speed: a run of at least _RUN free slots before
        # the ring's end gets one slice assignment per frame and one strided store
        # each for all lengths and all statuses; anything else goes slot by slot.
        i, n = self._next, len(frames)
        owner = self._owner
        if (
            n < _RUN
            or vnets is not None
            or i + n > self._nr
            or owner[i : i + n].count(None) != n
            or self._mm is None
        ):
            return self._put_each(frames, vnets, batch)
        mm, words, stride = self._mm, self._words, self._stride
        for s, k, f in zip(self._data[i : i + n], lens, frames, strict=True):
            mm[s : s + k] = f
        a = i * stride
        b = a + n * stride
        words[a + 1 : b + 1 : stride] = array("I", lens)
        words[a:b:stride] = _SEND_REQUESTS[n]  # last, although the kernel reads only when kicked
        owner[i : i + n] = [batch] * n
        self._length[i : i + n] = lens
        batch.slots += range(i, i + n)
        batch.remaining += n
        self._next = i + n if i + n < self._nr else 0
        return n

    def _put_each(self, frames: list[bytes], vnets: list[bytes] | None, batch: TxBatch) -> int:
        """``put_many`` slot by slot, settling completed slots of earlier batches on the way."""
        mm = self._mm
        if mm is None:
            return 0
        words, stride, nr, owner, lengths = (
            self._words,
            self._stride,
            self._nr,
            self._owner,
            self._length,
        )
        slots = batch.slots
        i = self._next
        n = 0
        for frame in frames:
            if owner[i] is not None and not self._settle(i):
                break
            a = i * stride
            start = self._data[i]
            length = total = len(frame)
            if vnets is not None:
                mm[start : start + VNET_HDR_LEN] = vnets[n]
                start += VNET_HDR_LEN
                total += VNET_HDR_LEN
            mm[start : start + length] = frame
            words[a + 1] = total
            words[a] = TP_STATUS_SEND_REQUEST
            owner[i] = batch
            lengths[i] = length
            slots.append(i)
            n += 1
            i += 1
            if i == nr:
                i = 0
        self._next = i
        batch.remaining += n
        return n

    def _settle(self, i: int) -> bool:
        """Account for slot ``i`` if the kernel gave it back; False while the kernel owns it."""
        words = self._words
        a = i * self._stride
        status = words[a]
        if status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING):
            return False
        owner = self._owner[i]
        self._owner[i] = None
        words[a] = TP_STATUS_AVAILABLE  # from TP_STATUS_WRONG_FORMAT, if that
        if owner is None or owner is ABANDONED:
            return True
        owner.remaining -= 1
        if status:
            self.stats.tx_errors += 1
        else:
            self.stats.tx_packets += 1
            self.stats.tx_bytes += self._length[i]
        return True

    def reap(self, batch: TxBatch) -> int:
        """Account for ``batch``'s slots the kernel gave back; return how many it still owns."""
        # The hot path, shaped for speed: a batch of _RUN or more slots in one run
        # (not wrapping) that are all back is settled with one strided read and a
        # few slice operations; anything else slot by slot.
        slots = batch.slots
        n = batch.remaining
        if not n or self._mm is None:
            return n
        i, stride, owner = slots[0], self._stride, self._owner
        if (
            n < _RUN
            or len(slots) != n
            or slots[-1] - i != n - 1
            or owner[i : i + n].count(batch) != n
            or any(self._words[i * stride : (i + n) * stride : stride])
        ):
            return self._reap_each(batch)
        owner[i : i + n] = [None] * n
        stats = self.stats
        stats.tx_packets += n
        stats.tx_bytes += sum(self._length[i : i + n])
        batch.remaining = 0
        return 0

    def _reap_each(self, batch: TxBatch) -> int:
        """``reap`` slot by slot."""
        if self._mm is None:
            return batch.remaining
        words, stride, owner, lengths = self._words, self._stride, self._owner, self._length
        done = nbytes = 0
        for i in batch.slots:
            if owner[i] is batch:
                status = words[i * stride]
                if not status:  # the common case, inline: sent and freed
                    owner[i] = None
                    done += 1
                    nbytes += lengths[i]
                elif not status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING):
                    self._settle(i)
        batch.remaining -= done
        self.stats.tx_packets += done
        self.stats.tx_bytes += nbytes
        return batch.remaining

    def unsent(self, batch: TxBatch) -> bool:
        """True if the kernel has not taken some slot of ``batch`` yet (needs a kick)."""
        if self._mm is None:
            return False
        words, stride, owner = self._words, self._stride, self._owner
        return any(
            owner[i] is batch and words[i * stride] == TP_STATUS_SEND_REQUEST for i in batch.slots
        )

    def unwind(self) -> int:
        """Reclaim every frame the kernel has not taken (TP_STATUS_SEND_REQUEST); return how many.

        They are the run of slots just before the cursor, and the first of
        them is where the kernel's head waits; moving the cursor back there
        keeps kernel and ring in step.  Each is counted tx_dropped and in
        its batch's ``dropped``.
        """
        if self._mm is None:
            return 0
        n = 0
        i = self._next
        words, owner = self._words, self._owner
        while n < self._nr:
            j = (i - 1) % self._nr
            a = j * self._stride
            if words[a] != TP_STATUS_SEND_REQUEST:
                break
            words[a] = TP_STATUS_AVAILABLE
            batch = owner[j]
            owner[j] = None
            if batch is not None and batch is not ABANDONED:
                batch.remaining -= 1
                batch.dropped += 1
                self.stats.tx_dropped += 1
            i = j
            n += 1
        self._next = i
        return n

    def abandon(self, batch: TxBatch) -> None:
        """Give up on ``batch``'s slots the kernel still holds: tx_dropped, reused once freed."""
        owner = self._owner
        for i in batch.slots:
            if owner[i] is batch:
                owner[i] = ABANDONED
                batch.remaining -= 1
                batch.dropped += 1
                self.stats.tx_dropped += 1

    def close(self) -> None:
        """Unmap the ring (idempotent); the socket is the owner's to close."""
        if self._mm is not None:
            self._words.release()
            self._mm.close()
            self._mm = None
