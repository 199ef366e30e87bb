"""Receive paths of AF_PACKET sockets (PACKET_MMAP rings, plain receive), and their layouts.

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

Receive without a ring (:class:`PlainRx`): one non-blocking ``recvmsg`` per
frame, with PACKET_AUXDATA for the VLAN tag.  Needed for GSO super-frames
of up to 64 KiB (PACKET_VNET_HDR), which do not fit ring frames.

Transmit is :mod:`.txring`; the ``linux/if_packet.h`` numbers both use are here.

The rings copy every frame out (``bytes``) as soon as they see it, so the
kernel gets its slot back at once; ``close`` releases the ring's memoryviews
(word views for header fields) before it unmaps.

Speed: this runs for every frame the switch forwards, on CPUs shared with
the traffic's endpoints, so the hot paths were shaped by instruction counts
(valgrind) and ``benchmarks/afpacket_bench.py``: header fields through word
views or one unpack, one slice per frame copy, strided stores for whole
runs of status words where that pays, map() over per-element loops.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
from array import array
from typing import ClassVar

from ..odp.packet import NETDEV_MAX_BURST, Packet
from ..odp.protocols import ETH_TYPE_VLAN_8021Q
from .provider import NetdevStats

# -- <linux/if_packet.h> ---------------------------------------------------------
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_VNET_HDR = 15
TPACKET_V2 = 1
TPACKET_V3 = 2

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

# tpacket2_hdr: tp_status, tp_len, tp_snaplen, tp_mac (then tp_net, sec, nsec, vlan tci/tpid).
_V2_HDR = struct.Struct("=IIIH")
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
#: Status words for a strided store into n slots: ``STATUS_WORDS[status][n]``.
STATUS_WORDS = {
    status: [memoryview(array("I", [status] * n)) for n in range(NETDEV_MAX_BURST + 1)]
    for status in (TP_STATUS_KERNEL, TP_STATUS_SEND_REQUEST)
}
_ZEROS = STATUS_WORDS[TP_STATUS_KERNEL]
#: Receive statuses that need RxPath._odd_frame: a VLAN tag to put back.
_RX_ODD = TP_STATUS_VLAN_VALID
_AUXDATA = struct.Struct("=IIIHHHH")  # tpacket_auxdata: status, len, snaplen, mac, net, tci, tpid
VNET_HDR = struct.Struct("<BBHHHH")  # virtio_net_hdr, little endian as the kernel gives it here
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
#: Errnos of a device gone down or away, which :meth:`RxPath.read` passes on.
LINK_ERRNOS = frozenset((errno.ENODEV, errno.ENXIO, errno.ENETDOWN))
# Plain ints: socket's IntFlag members make every ``&`` an enum operation.
MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
_MSG_TRUNC = int(socket.MSG_TRUNC)


def _pow2_at_least(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


def rx_frame_size(mtu: int, extra: int = 0) -> int:
    """Ring frame size for ``mtu``: headers, a VLAN-tagged frame and ``extra`` bytes, as 2^k.

    The kernel places the frame at roughly TPACKET2_HDRLEN + 16 bytes plus
    alignment; 128 bytes of room covers that for every header variant.
    """
    return max(2048, _pow2_at_least(128 + extra + mtu + 18))


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

    def check_step(self) -> int:
        """Called now and then while reads come back empty; see :meth:`RxRingV2.check_step`."""
        return 0

    #: How the ring was laid out (sizes and counts), for another process to map
    #: it with ``layout=``; () without a ring.
    layout: tuple[int, ...] = ()

    def position(self) -> tuple[int, int, int]:
        """Where the next read starts: enough for another reader to continue exactly."""
        return (0, 0, 0)

    def seek(self, position: tuple[int, int, int]) -> None:
        """Continue from ``position`` (from :meth:`position` of the queue's last reader)."""

    def resync(self) -> int:
        """Find the oldest frame the kernel filled, the last reader's position being unknown.

        For a reader taking over from one that ended abruptly; how many
        ring positions it moved (0: stayed).
        """
        return 0

    def _odd_frame(
        self, mm: mmap.mmap, status: int, length: int, snaplen: int, start: int,
        vlan: tuple[struct.Struct, int], frames: list[bytes],
    ) -> None:  # fmt: skip
        """Take the ring frame at ``start`` if not truncated (rx_errors), with its VLAN tag.

        ``vlan``: how to unpack (tci, tpid) from the header, and where.  The tag
        the kernel moved into metadata goes back after the MAC addresses.
        """
        if snaplen != length:
            self.stats.rx_errors += 1  # larger than a ring frame: truncated
        elif status & TP_STATUS_VLAN_VALID:
            tci, tpid = vlan[0].unpack_from(mm, vlan[1])
            if not status & TP_STATUS_VLAN_TPID_VALID:
                tpid = ETH_TYPE_VLAN_8021Q
            tag, mid = _TAG.pack(tpid, tci & 0xFFFF), start + ETH_ALEN2
            frames.append(mm[start:mid] + tag + mm[mid : start + snaplen])
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

    def __init__(
        self, sock: socket.socket, mtu: int, stats: NetdevStats, *, layout: tuple[int, ...] = ()
    ) -> None:
        """Set up a ring on ``sock`` for ``mtu``, or with ``layout``, map the one it has."""
        super().__init__(sock, stats)
        if layout:
            block, size, nr = layout
        else:
            size = rx_frame_size(mtu)
            block = max(size, 1 << 16)
            nr = max(self.RING_BYTES // size, self.MIN_FRAMES)
            nr -= nr % (block // size)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            # tpacket_req: block_size, block_nr, frame_size, frame_nr.
            req = struct.pack("=4I", block, nr * size // block, size, nr)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.layout = (block, size, nr)
        # Blocks are whole multiples of the frame size, so frame i is at i * size.
        mm = self._mm = mmap.mmap(sock.fileno(), nr * size)
        # tp_status of the frame at byte offset off is word off >> 2 of this view.
        self._words = memoryview(mm).cast("I")
        self._views = (self._words,)
        self._size = size
        self._bytes = nr * size
        self._next = 0
        #: ``_next`` at the last check_step that found the ring out of step.
        self._stuck_at: int | None = None

    def ready(self) -> bool:
        # A frame is either the kernel's (status exactly TP_STATUS_KERNEL: the
        # kernel only fills such a frame and sets the status last) or ours.
        return self._mm is not None and bool(self._words[self._next * self._size >> 2])

    def check_step(self) -> int:
        """Re-align with the kernel if our next frame stays empty while others fill.

        The kernel fills frames strictly in ring order and we read them in
        the same order, so an empty frame at our position with filled ones
        elsewhere is normal only for the moment another CPU is still copying
        into ours.  Seen twice in a row (the owner calls this only after
        many empty reads, a millisecond or more apart), the two positions
        have come apart: the kernel waits for us to free a frame we will
        never reach, and drops everything.  Under heavy TCP through veths
        this was seen after a few minutes, cause not found.  We then move to
        the oldest filled frame, the first one after the run of empty frames
        at our position, and return how many frames that skipped (all empty:
        nothing is lost that was not lost already).  0 when in step.
        """
        if self._mm is None:
            return 0
        statuses = self._words[:: self._size >> 2].tolist()
        nxt = self._next
        if statuses[nxt] or not any(statuses):
            self._stuck_at = None
            return 0
        if self._stuck_at != nxt:
            self._stuck_at = nxt  # maybe a copy in progress: look again next time
            return 0
        self._stuck_at = None
        n = len(statuses)
        skipped = 1
        while not statuses[(nxt + skipped) % n]:
            skipped += 1
        self._next = (nxt + skipped) % n
        return skipped

    def position(self) -> tuple[int, int, int]:
        return (self._next, 0, 0)

    def seek(self, position: tuple[int, int, int]) -> None:
        self._next = position[0] % (self._bytes // self._size)
        self._stuck_at = None

    def resync(self) -> int:
        # check_step's rule, without its second look: nobody else reads the
        # ring now, and a frame the kernel is still copying into is at worst
        # read after the ones behind it.
        self._stuck_at = None
        self.check_step()
        return self.check_step()

    def read(self, want: int = NETDEV_MAX_BURST) -> list[Packet]:
        # The hot path, shaped for speed: one unpack per header, one slice per
        # frame to copy it, one strided store to hand the whole run back to the
        # kernel, map() to make the packets.
        mm = self._mm
        if mm is None:
            return []
        size, words = self._size, self._words
        first = self._next * size
        if not words[first >> 2]:
            return []
        unpack = _V2_HDR.unpack_from
        frames: list[bytes] = []
        append = frames.append
        end = first + want * size
        if end > self._bytes:  # a strided store cannot wrap: see below
            end = self._bytes
        for off in range(first, end, size):
            status, length, snaplen, mac = unpack(mm, off)
            if not status:  # TP_STATUS_KERNEL: the kernel fills frames in ring order
                break
            if status & _RX_ODD or snaplen != length:
                vlan = (_VLAN, off + _V2_VLAN_OFF)
                self._odd_frame(mm, status, length, snaplen, off + mac, vlan, frames)
            else:
                start = off + mac
                append(mm[start : start + snaplen])
        else:
            off = end
        n, stride = (off - first) // size, size >> 2
        # The kernel flags every frame while it has drops not yet read through
        # PACKET_STATISTICS, so the run's last frame tells for the whole run.
        if words[(off - size) >> 2] & TP_STATUS_LOSING:
            self.losing = True
        words[first >> 2 : (off >> 2) : stride] = _ZEROS[n]  # TP_STATUS_KERNEL: the kernel's
        self._next = off // size if off < self._bytes else 0
        if off == self._bytes and n < want:
            return _packets(frames, self.stats) + self.read(want - n)  # on from the ring's start
        return _packets(frames, self.stats)


def _packets(frames: list[bytes], stats: NetdevStats) -> list[Packet]:
    """``frames`` as packets, counted in rx_packets and rx_bytes."""
    stats.rx_packets += len(frames)
    stats.rx_bytes += sum(map(len, frames))
    return list(map(Packet, frames))


class RxRingV3(RxPath):
    """TPACKET_V3 receive ring: blocks handed over when full or after V3_RETIRE_MS."""

    version = "v3"
    BLOCK_SIZE = 1 << 16
    BLOCK_NR = 32

    def __init__(
        self, sock: socket.socket, mtu: int, stats: NetdevStats, *, layout: tuple[int, ...] = ()
    ) -> None:
        """Set up a ring on ``sock`` for ``mtu``, or with ``layout``, map the one it has."""
        super().__init__(sock, stats)
        if layout:
            block, nr = layout
        else:
            # A frame never spans blocks: a block must hold the largest frame.
            block = max(self.BLOCK_SIZE, _pow2_at_least(rx_frame_size(mtu) + 64))
            nr = self.BLOCK_NR
            frame = 2048  # only used by the kernel to check frame_nr
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            # tpacket_req3: block_size, block_nr, frame_size, frame_nr, retire_blk_tov,
            # sizeof_priv, feature_req_word.
            req = struct.pack("=7I", block, nr, frame, block * nr // frame, V3_RETIRE_MS, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.layout = (block, nr)
        self._mm = mmap.mmap(sock.fileno(), block * nr)
        self._views = (memoryview(self._mm).cast("I"),)  # block_status: word (block * k + 8) / 4
        self._block = block
        self._nr = nr
        self._cur = 0  # block being read
        self._left = 0  # frames of the current block not yet read
        self._off = 0  # offset of the next frame in the mmap

    def ready(self) -> bool:
        if self._mm is None:
            return False
        status = self._views[0][(self._cur * self._block + _V3_BLOCK_STATUS_OFF) >> 2]
        return bool(self._left or status & TP_STATUS_USER)

    def _release(self) -> None:
        self._views[0][(self._cur * self._block + _V3_BLOCK_STATUS_OFF) >> 2] = TP_STATUS_KERNEL
        self._cur = (self._cur + 1) % self._nr

    def position(self) -> tuple[int, int, int]:
        return (self._cur, self._left, self._off)

    def seek(self, position: tuple[int, int, int]) -> None:
        cur, left, off = position
        self._cur = cur % self._nr
        # A block part-read: the rest of it, from the frame the last reader stopped at.
        inside = left and self._cur * self._block <= off < (self._cur + 1) * self._block
        self._left, self._off = (left, off) if inside else (0, 0)

    def resync(self) -> int:
        # Blocks go to user space in ring order too: the oldest one ours is the
        # first after the run of the kernel's blocks at our position.
        if self._mm is None:
            return 0
        words, stride = self._views[0], self._block >> 2
        statuses = [words[b * stride + (_V3_BLOCK_STATUS_OFF >> 2)] & TP_STATUS_USER
                    for b in range(self._nr)]  # fmt: skip
        cur = self._cur
        if statuses[cur] or not any(statuses):
            return 0
        moved = 1
        while not statuses[(cur + moved) % self._nr]:
            moved += 1
        self._cur, self._left, self._off = (cur + moved) % self._nr, 0, 0
        return moved

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
                            tpid = ETH_TYPE_VLAN_8021Q
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
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack(vnet)
    if hdr_len:
        hdr_len += by
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        csum_start += by
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
