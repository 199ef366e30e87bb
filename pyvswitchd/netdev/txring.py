"""Transmit through an AF_PACKET socket's TPACKET_V2 ring (PACKET_TX_RING).

User space writes frames into slots whose status is TP_STATUS_AVAILABLE,
marks them TP_STATUS_SEND_REQUEST and "kicks" the kernel with one write
(:mod:`.txkick`).  The kernel walks the ring strictly in order from its own
head, sets each frame TP_STATUS_SENDING while an skb holds it and
TP_STATUS_AVAILABLE again when the skb is freed (on a veth that is during
the kick; on a real NIC at transmit completion).  Because the kernel stops
at the first slot that is not SEND_REQUEST, slots must be filled strictly in
ring order: a slot still owned by the kernel means the ring is full, it
cannot be skipped.  Layout numbers are in :mod:`.pktring`.
"""

from __future__ import annotations

import mmap
import socket
import struct
from array import array

from .pktring import (
    PACKET_LOSS,
    PACKET_TX_RING,
    PACKET_VERSION,
    PACKET_VNET_HDR,
    SOL_PACKET,
    STATUS_WORDS,
    TP_STATUS_AVAILABLE,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_SENDING,
    TPACKET_V2,
    TX_DATA_OFFSET,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VNET_HDR,
    VNET_HDR_LEN,
    rx_frame_size,
)
from .provider import NetdevStats

#: Transmit batches of at least this many slots take the strided paths of
#: put_many and reap (for fewer, slicing a memoryview costs more than it saves).
_RUN = 8
_SEND_REQUESTS = STATUS_WORDS[TP_STATUS_SEND_REQUEST]
_PAGE = mmap.PAGESIZE


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
        self, sock: socket.socket, mtu: int, stats: NetdevStats, *, offload: bool = False
    ) -> None:
        self.stats = stats
        size = rx_frame_size(mtu, VNET_HDR_LEN)
        block = max(size, _PAGE)
        nr = self.SLOTS
        # Every frame goes after a virtio-net header (tpacket_snd reads it since
        # Linux 4.12; it must be switched on before the ring exists).  A frame
        # with nothing to offload gets one whose hdr_len is the frame's length:
        # the kernel then copies it whole into the skb's linear area instead of
        # attaching ring pages as fragments, which the receiving stack has to
        # pull back; on a veth that saved a quarter to a third of the kernel's
        # transmit time per frame, 60 bytes or 1514.
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # Without PACKET_LOSS the kernel stops its head at a malformed frame for
        # good (TP_STATUS_WRONG_FORMAT); with it, it skips and frees such a frame.
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
        req = struct.pack("=4I", block, nr * size // block, size, nr)
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
        self._mm: mmap.mmap | None = mmap.mmap(sock.fileno(), nr * size)
        # Slot i's header starts at word a = i * stride: tp_status and tp_len are
        # words a and a + 1; the virtio-net header's hdr_len is half-word 2 * a + 17.
        self._words = memoryview(self._mm).cast("I")
        self._halves = memoryview(self._mm).cast("H")
        self._stride = size // 4
        self._nr = nr
        self._next = 0
        self._owner: list[TxBatch | None] = [None] * nr
        self._length = [0] * nr
        #: Where each slot's frame goes, after the virtio-net header.
        self._data = [i * size + TX_DATA_OFFSET + VNET_HDR_LEN for i in range(nr)]
        #: Whether frames come with headers of their own (userspace-tso).  If not,
        #: only hdr_len is ever written: the rest of each header stays zero.
        self._offload = offload
        #: Most bytes of frame one slot carries.
        self.capacity = size - TX_DATA_OFFSET - VNET_HDR_LEN

    def put_many(
        self, frames: list[bytes], lens: list[int], vnets: list[bytes] | None, batch: TxBatch
    ) -> int:
        """Queue ``frames`` (``lens`` their lengths; ``vnets`` their headers, if offloading).

        Returns how many fit, in order: stops at the first slot the kernel still owns.
        """
        mm, i, n, owner = self._mm, self._next, len(frames), self._owner
        if mm is None:
            return 0
        words, halves, stride = self._words, self._halves, self._stride
        if n >= _RUN and vnets is None and i + n <= self._nr:
            free = owner[i : i + n].count(None)
            if free != n and not any(words[i * stride : (i + n) * stride : stride]):
                # The kernel is done with the slots (status AVAILABLE), but their
                # completion was not read yet -- usual with asynchronous kicks.
                self._settle_run(i, n)
                free = n
            if free == n:
                # The hot path, shaped for speed: free slots up to the ring's end get one
                # slice assignment per frame and one strided store each for all tp_len,
                # hdr_len and tp_status.  (For fewer than _RUN frames the strided
                # stores cost more than they save.)
                for s, k, f in zip(self._data[i : i + n], lens, frames):  # noqa: B905 (slower)
                    mm[s : s + k] = f
                a, b = i * stride, (i + n) * stride
                words[a + 1 : b + 1 : stride] = array("I", [k + VNET_HDR_LEN for k in lens])
                halves[2 * a + 17 : 2 * b + 17 : 2 * stride] = array("H", lens)
                words[a:b:stride] = _SEND_REQUESTS[n]  # last: a kernel worker may be reading
                owner[i : i + n] = [batch] * n
                self._length[i : i + n] = lens
                batch.slots += range(i, i + n)
                batch.remaining += n
                self._next = (i + n) % self._nr
                return n
        done = 0  # slot by slot, settling completed slots of earlier batches on the way
        for frame, length in zip(frames, lens, strict=True):
            if owner[i] is not None and not self._settle(i):
                break
            a, start = i * stride, self._data[i]
            vnet = vnets[done] if vnets is not None else None
            if vnet is not None and (vnet[1] or vnet[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM):
                mm[start - VNET_HDR_LEN : start] = vnet
            elif self._offload:  # the slot may hold another frame's offload header
                mm[start - VNET_HDR_LEN : start] = VNET_HDR.pack(0, 0, length, 0, 0, 0)
            else:
                halves[2 * a + 17] = length  # hdr_len: a linear copy, see __init__
            mm[start : start + length] = frame
            words[a + 1] = length + VNET_HDR_LEN
            words[a] = TP_STATUS_SEND_REQUEST
            owner[i] = batch
            self._length[i] = length
            batch.slots.append(i)
            done += 1
            i = (i + 1) % self._nr
        self._next = i
        batch.remaining += done
        return done

    def _settle_run(self, i: int, n: int) -> None:
        """Account for slots ``i`` .. ``i + n - 1``, all back from the kernel (AVAILABLE)."""
        owners = self._owner[i : i + n]
        sent = 0
        for batch in set(owners):
            if batch is not None and batch is not ABANDONED:
                k = owners.count(batch)
                batch.remaining -= k
                sent += k
        if sent:
            stats = self.stats
            stats.tx_packets += sent
            stats.tx_bytes += sum(
                [k for k, b in zip(self._length[i : i + n], owners, strict=True)
                 if b is not None and b is not ABANDONED]
            )  # fmt: skip
        self._owner[i : i + n] = [None] * n

    def _settle(self, i: int) -> bool:
        """Account for slot ``i`` if the kernel gave it back; False while the kernel owns it."""
        a = i * self._stride
        status = self._words[a]
        if status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING):
            return False
        owner = self._owner[i]
        self._owner[i] = None
        self._words[a] = TP_STATUS_AVAILABLE  # from TP_STATUS_WRONG_FORMAT, if that
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
        n = batch.remaining
        if not n or self._mm is None:
            return n
        slots, owner, words, stride, stats = (
            batch.slots,
            self._owner,
            self._words,
            self._stride,
            self.stats,
        )
        i = slots[0]
        if (
            n >= _RUN
            and len(slots) == n
            and slots[-1] - i == n - 1
            and owner[i : i + n].count(batch) == n
            and not any(words[i * stride : (i + n) * stride : stride])
        ):
            # The hot path, shaped for speed: a batch in one run of slots that are
            # all back (TP_STATUS_AVAILABLE), settled with a few slice operations.
            owner[i : i + n] = [None] * n
            stats.tx_packets += n
            stats.tx_bytes += sum(self._length[i : i + n])
            batch.remaining = 0
            return 0
        done = nbytes = 0
        for i in slots:
            if owner[i] is batch:
                status = words[i * stride]
                if not status:  # the common case, inline: sent and freed
                    owner[i] = None
                    done += 1
                    nbytes += self._length[i]
                elif not status & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING):
                    self._settle(i)
        batch.remaining -= done
        stats.tx_packets += done
        stats.tx_bytes += nbytes
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

        They are the run of slots just before the cursor, the first of them
        where the kernel's head waits: moving the cursor back there keeps both
        in step.  Each counts in tx_dropped and in its batch's ``dropped``.
        """
        if self._mm is None:
            return 0
        n, i, words, owner = 0, self._next, self._words, self._owner
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
        """Stop tracking ``batch``'s slots the kernel still holds; they are reused once freed.

        The kernel took those frames (TP_STATUS_SENDING: queued in a qdisc or
        a driver) and will transmit them without us: they count as sent, as
        every frame handed to the kernel does.  Frames it never took are
        :meth:`unwind`'s, and those are the drops.
        """
        owner, length, stats = self._owner, self._length, self.stats
        for i in batch.slots:
            if owner[i] is batch:
                owner[i] = ABANDONED
                batch.remaining -= 1
                stats.tx_packets += 1
                stats.tx_bytes += length[i]

    def close(self) -> None:
        """Unmap the ring (idempotent); the socket is the owner's to close."""
        if self._mm is not None:
            self._words.release()
            self._halves.release()
            self._mm.close()
            self._mm = None
