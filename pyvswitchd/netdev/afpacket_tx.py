"""The ``afpacket`` netdev's transmit side: the TX ring, its kicks, completion.

``send`` copies the batch into free slots of the TPACKET_V2 ring
(:mod:`.txring`), kicks the kernel (:mod:`.txkick`: in the daemon's thread
or in an io_uring worker) and returns OK if every slot is back by then,
else EINPROGRESS for :meth:`AfPacketTx.process_async` to finish through
the deferred work ring.  Without a ring (``tx-ring=false``), and for GSO
super-frames too large for a slot, one synchronous ``send()`` per frame.
Size checks, accounting and link-state handling are described in
:mod:`.afpacket`: an :class:`~.afpacket.AfPacketNetdev` opens the sockets,
ring and kicker, and holds one :class:`AfPacketTx` over them (as it holds
an rx path per receive queue) until it closes or reopens them.
"""

from __future__ import annotations

import errno
import operator
import socket
from collections import deque
from typing import TYPE_CHECKING, Protocol

from ..odp.packet import Packet
from ..odp.protocols import ETH_HEADER_LEN, ETH_TYPE_VLAN_8021Q, VLAN_HEADER_LEN
from .pktring import LINK_ERRNOS, MSG_DONTWAIT, VNET_HDR_LEN, PlainRx
from .provider import EINPROGRESS, OK, NetdevStats
from .txring import TxBatch, TxRing

if TYPE_CHECKING:
    from .txkick import TxKick

_ZERO_VNET = bytes(VNET_HDR_LEN)
_DATA = operator.attrgetter("data")
_TPID_8021Q_BYTES = ETH_TYPE_VLAN_8021Q.to_bytes(2, "big")
#: What a forced completion that had to drop frames returns.
ERR_FORCED = errno.ETIMEDOUT


class TxDevice(Protocol):
    """What the transmit side sees of its device: its state, and where link trouble goes."""

    @property
    def error(self) -> str | None: ...
    @property
    def link_up(self) -> bool: ...
    @property
    def mtu(self) -> int: ...

    def link_error(self, err: int) -> None:
        """A socket call failed with ``err``: the link went down or the device away?"""
        ...


class AfPacketTx:
    """The transmit side of one opened :class:`~.afpacket.AfPacketNetdev` (see the module text).

    ``sock`` is the transmit socket (bound, protocol 0) and ``fd`` its
    descriptor, which kicks write to; ``ring`` and ``kicker`` exist
    together, or neither (``tx-ring=false``); ``plain`` is the socket for
    frames sent one by one (``sock`` itself without a ring; with
    ``userspace-tso``, a second socket for frames too large for a slot).
    """

    def __init__(
        self,
        device: TxDevice,
        stats: NetdevStats,
        *,
        sock: socket.socket,
        ring: TxRing | None,
        kicker: TxKick | None,
        plain: socket.socket | None,
        tso: bool,
    ) -> None:
        self.device = device
        self.stats = stats
        self.sock = sock
        self.fd = sock.fileno()
        self.ring = ring
        self.kicker = kicker
        self.plain = plain
        self.tso = tso
        #: Per tx queue id: batches ``send`` left in progress, oldest first.
        self.pending: dict[int, deque[TxBatch]] = {}

    def close(self) -> None:
        """Give up what is pending (tx_dropped) and close the ring, kicker and sockets."""
        if self.kicker is not None:
            self.kicker.settle()
        for pending in self.pending.values():
            for batch in pending:
                self._give_up(batch)
        self.pending.clear()
        if self.kicker is not None:
            self.kicker.close()
            self.kicker = None
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        self.sock.close()
        if self.plain is not None:
            self.plain.close()
            self.plain = None
        self.fd = -1

    def send(self, qid: int, batch: list[Packet]) -> int:
        """Transmit ``batch`` on tx queue ``qid`` (the device checked its state first)."""
        # The hot path, shaped for speed: map() where a comprehension would do.
        stats = self.stats
        ring = self.ring
        txb = TxBatch(qid)
        frames = list(map(_DATA, batch))
        vnets = [p.vnet or _ZERO_VNET for p in batch] if self.tso else None
        if ring is None:
            return self._send_checked(None, frames, vnets, txb)
        lens = list(map(len, frames))
        rc = OK
        nbytes = 0
        if lens and min(lens) >= ETH_HEADER_LEN and max(lens) <= self.device.mtu + ETH_HEADER_LEN:
            placed = ring.put_many(frames, lens, vnets, txb)
            if placed < len(frames):  # ring full: let the kernel drain it, then try once more
                self._kick_now()
                placed += ring.put_many(
                    frames[placed:], lens[placed:], vnets and vnets[placed:], txb
                )
                if placed < len(frames):
                    stats.tx_dropped += len(frames) - placed
                    rc = errno.ENOBUFS
            nbytes = sum(lens)
        else:
            rc = self._send_checked(ring, frames, vnets, txb)
        if not txb.slots:
            return rc
        err = self._kick(nbytes)
        if ring.reap(txb):
            self.pending.setdefault(qid, deque()).append(txb)
            return EINPROGRESS
        if txb.dropped:
            return err or errno.ENOBUFS
        return rc

    def _send_checked(
        self, ring: TxRing | None, frames: list[bytes], vnets: list[bytes] | None, txb: TxBatch
    ) -> int:
        """``send`` one frame at a time: without a ring, or for a frame of unusual size."""
        stats = self.stats
        limit = self.device.mtu + ETH_HEADER_LEN
        capacity = ring.capacity if ring else 0
        rc = OK
        kicked = False
        for k, data in enumerate(frames):
            vnet = vnets[k] if vnets is not None else None
            n = len(data)
            if (n > limit or n < ETH_HEADER_LEN) and not self._size_ok(data, vnet):
                stats.tx_errors += 1
                rc = errno.EMSGSIZE
                continue
            if ring is None or n > capacity:
                if ring is not None and txb.remaining:
                    self._kick_now()  # a GSO frame too big for a slot: ring frames go first
                rc = self._send_one(data, vnet) or rc
                continue
            one = None if vnet is None else [vnet]
            if not ring.put_many([data], [n], one, txb):
                if not kicked:
                    kicked = True
                    self._kick_now()
                    if ring.put_many([data], [n], one, txb):
                        continue
                stats.tx_dropped += len(frames) - k
                return errno.ENOBUFS
        return rc

    def _size_ok(self, data: bytes, vnet: bytes | None) -> bool:
        """Whether ``data``, not plainly within the MTU, may still be sent."""
        n = len(data)
        if n < ETH_HEADER_LEN:
            return False
        if vnet is not None and vnet[1]:  # a GSO super-frame: the kernel segments it
            return n <= PlainRx.MAX_FRAME
        limit = self.device.mtu + ETH_HEADER_LEN
        return n <= limit + VLAN_HEADER_LEN and data[12:14] == _TPID_8021Q_BYTES

    def _kick(self, queued: int = 0) -> int:
        """Ask the kernel to transmit the ring's queued frames; 0 or an errno it gave.

        ``queued``: bytes just queued (for ``tx-kick=auto``).  The kick may
        run in a kernel worker (see :mod:`.txkick`); on this non-blocking
        socket the kernel never waits for completions: a veth completes
        frames during the kick, a NIC's reach ``reap`` later.
        """
        kicker = self.kicker
        if kicker is None:
            return errno.EBADF
        err = kicker.kick(queued)
        return self._kick_failed(err) if err else OK

    def _kick_now(self) -> int:
        """:meth:`_kick`, but the kernel's pass over the ring is over on return."""
        kicker = self.kicker
        if kicker is None:
            return errno.EBADF
        err = kicker.kick_now()
        return self._kick_failed(err) if err else OK

    def _kick_failed(self, err: int) -> int:
        if err in (errno.EAGAIN, errno.ENOBUFS):
            # Congestion: the kernel keeps the rest queued and retries at the next kick.
            return err
        device = self.device
        device.link_error(err)
        if device.error is not None or not device.link_up:
            self.unwind()
        return err

    def unwind(self) -> None:
        """Take back the frames the kernel has not taken (tx_dropped)."""
        if self.ring is not None:
            if self.kicker is not None:
                self.kicker.settle()  # a kick in flight could be taking them
            self.ring.unwind()

    def _send_one(self, data: bytes, vnet: bytes | None) -> int:
        """Send one frame through the plain socket, synchronously; 0 or an errno."""
        sock = self.plain
        stats = self.stats
        if sock is None or self.device.error is not None:
            stats.tx_dropped += 1
            return errno.ENODEV
        try:
            if vnet is None:
                sock.send(data, MSG_DONTWAIT)
            else:
                sock.sendmsg([vnet, data], [], MSG_DONTWAIT)
        except OSError as exc:
            err = exc.errno or errno.EIO
            if err in (errno.EMSGSIZE, errno.EINVAL):
                stats.tx_errors += 1
            else:
                stats.tx_dropped += 1
                if err in LINK_ERRNOS:
                    self.device.link_error(err)
            return err
        stats.tx_packets += 1
        stats.tx_bytes += len(data)
        return OK

    def process_async(self, qid: int, force: bool) -> int:
        """Finish the oldest batch ``send`` left in progress on ``qid``.

        Re-checks its slots: all back from the kernel: OK.  Some not yet
        taken by the kernel (it was congested): kick again.  Still pending
        and not ``force``: EINPROGRESS.  With ``force`` (or in the error
        state): one more kick, then frames the kernel never took are
        reclaimed and counted tx_dropped (ETIMEDOUT, or ENODEV in the error
        state, is returned), and frames it still holds (it accepted them for
        transmit) are left to it and counted sent: OK if nothing was
        reclaimed.  An abandoned slot stays the kernel's until it frees it;
        until then the ring is full at that slot.
        """
        pending = self.pending.get(qid)
        ring = self.ring
        if not pending or ring is None:
            return OK
        kicker = self.kicker
        if not force and kicker is not None and kicker.running:
            # Reading slot statuses the worker is writing costs cache misses
            # for little: look once the kick is over.
            return EINPROGRESS
        txb = pending[0]
        if ring.reap(txb):
            if self.device.error is None and (force or ring.unsent(txb)):
                if force:
                    self._kick_now()
                else:
                    self._kick()
                ring.reap(txb)
            if txb.remaining:
                if not force and self.device.error is None:
                    return EINPROGRESS
                self._give_up(txb)
        pending.popleft()
        if txb.dropped:
            return errno.ENODEV if self.device.error is not None else ERR_FORCED
        return OK

    def _give_up(self, txb: TxBatch) -> None:
        """Drop what ``txb`` still has in the ring: reclaim unsent frames, abandon the rest."""
        ring = self.ring
        if ring is None or not ring.reap(txb):
            return
        if ring.unsent(txb):
            self.unwind()
        ring.abandon(txb)
