"""``afpacket`` / ``system``: existing Linux network interfaces through AF_PACKET sockets.

Options, defaults, limits and the ``dpctl/show`` status are described for
users in docs/netdev-types.md; this is how the device is built.

Each rx queue has its own socket (several join one PACKET_FANOUT hash
group); transmit uses one more socket, bound with protocol 0 so that it
never receives, for every tx queue id of one process.  A PMD worker
process polls the queues it was given through the daemon's sockets and
transmits through a socket and ring of its own (see :mod:`.afpacket_worker`),
so nothing needs a lock.  No call blocks; only
:meth:`AfPacketNetdev.wait_readable` waits, through trio.

Receive is an rx path object per queue (:mod:`.pktring`).  The TPACKET_V2
ring is the default because it flags every frame as soon as the kernel has
written it, which is what keeps a ping through the switch at or under
0.3 ms; V3 blocks wake less often but hold a frame up to their retire
timer.  Super-frames (``userspace-tso``) do not fit ring frames, so TSO
means plain ``recvmsg``; so does a ring that cannot be set up (logged).
Frames are copied out of the ring at once so the kernel gets the slot back.

Transmit (:mod:`.afpacket_tx`, the device's tx path) copies a batch into
TPACKET_V2 TX ring slots and kicks the kernel with one zero-length write,
in the daemon's thread or in an io_uring worker (:mod:`.txkick`).  ``send``
returns OK when every slot is back by then (a veth transmits during a
synchronous kick), else EINPROGRESS, and :meth:`AfPacketNetdev.process_async`
finishes the batch from the PMD's deferred work.  So tx_packets count at
completion, and a frame the kernel never took or never returned counts in
tx_dropped.  Ring frames always follow a virtio-net header: for a plain
frame it asks the kernel for a linear copy, cheaper for it than attaching
ring pages (see ``TxRing``).

A device that went down drops what it is sent; one that disappeared
(ENODEV, ENXIO, or ENETDOWN with its ifindex gone) enters an error state
instead of raising: :attr:`AfPacketNetdev.error` says why, it is logged
once, ``recv`` returns nothing and ``wait_readable`` sleeps forever.  A
new interface that takes the name is not adopted by this object: the
datapath opens a new netdev on it (link tracking).  Rings never report
socket errors themselves, so ``recv`` reads the socket's pending error
every so many empty polls, and realigns a V2 ring found out of step with
the kernel (counted as ``rx_ring_resyncs``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from ..observe.ratelimit import RateLimit
from ..odp.packet import Packet
from .afpacket_tx import AfPacketTx
from .afpacket_worker import NotPolled, RxCursors, export_side, open_side, release_cursors
from .dummy import queue_options, reject_unknown
from .pktring import (
    PACKET_VNET_HDR,
    SOL_PACKET,
    PlainRx,
    RxPath,
    RxRingV2,
    RxRingV3,
)
from .provider import OK, Netdev, NetdevError
from .txkick import MODES as TX_KICK_MODES
from .txkick import TxKick
from .txring import TxRing

if TYPE_CHECKING:
    from ..observe.vlog import VlogModule

# <linux/if_packet.h>, beyond what pktring needs.
PACKET_ADD_MEMBERSHIP = 1
PACKET_STATISTICS = 6
PACKET_FANOUT = 18
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000
ETH_P_ALL = 3
SIOCGIFNAME = 0x8910
SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
IFF_UP = 0x1
IFF_RUNNING = 0x40

_IFREQ = struct.Struct("=16si20x")  # ifr_name, then an int (ifindex / mtu) of the union
_IFREQ_FLAGS = struct.Struct("=16sh22x")
_GONE_ERRNOS = frozenset((errno.ENODEV, errno.ENXIO))
_SOCK_BUF = 4 << 20
#: Empty ring reads between checks of the socket's pending error (device gone?).
_ERROR_POLL_EVERY = 1024
#: While the link is down, how often ``send`` re-reads its state (seconds).
_LINK_RECHECK = 0.1
_RX_RINGS: dict[str, type[RxRingV2] | type[RxRingV3] | None] = {
    "v2": RxRingV2,
    "v3": RxRingV3,
    "none": None,
}


def _bool_option(name: str, opts: dict[str, str], key: str, default: bool) -> bool:
    text = opts.pop(key, None)
    if text is None:
        return default
    if text not in ("true", "false"):
        raise NetdevError(f'{name}: bad {key} "{text}" (expected true or false)')
    return text == "true"


def _packet_socket(vnet: bool) -> socket.socket:
    """A non-blocking AF_PACKET socket that receives nothing until bound with a protocol."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.setblocking(False)
        if vnet:  # must precede any ring setup
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    except OSError:
        sock.close()
        raise
    return sock


def _set_buf(sock: socket.socket, option: int, force_option: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_option, _SOCK_BUF)
    except OSError:  # no CAP_NET_ADMIN: the plain option, capped by the sysctl
        sock.setsockopt(socket.SOL_SOCKET, option, _SOCK_BUF)


class AfPacketNetdev(Netdev):
    """``afpacket``: see the module documentation.

    ``error`` is None, or why the device is out of use for good;
    ``link_up`` the link state last seen; ``rx_ring`` ("v2", "v3", "none"),
    ``tx_ring`` and ``tso`` what is in use (a ring that could not be set up
    falls back to plain sockets).  The receive side is one rx path per
    queue, the transmit side one :class:`~.afpacket_tx.AfPacketTx`
    (``tx_path``), both made when the device is opened.
    """

    type = "afpacket"
    pmd = True
    waitable = True
    tso_capable = True

    def __init__(self, name: str, options: Mapping[str, str] | None = None) -> None:
        # Set before the base constructor, which calls set_config.
        self._init_fields()
        super().__init__(name, options)
        self._open = True

    def _init_fields(self) -> None:
        self.error: str | None = None
        self.ifindex = 0
        self.link_up = True
        self.rx_ring = "v2"
        self.tx_ring = True
        self.tso = False
        self.requested_numa_id = 0
        self._log: VlogModule | None = None
        self._unlogged: list[str] = []
        #: Times an rx ring was found out of step with the kernel and re-aligned.
        self.ring_resyncs = 0
        self._resync_rl = RateLimit(1, 5)
        self._wanted: tuple[str, bool, bool, str] = ("v2", True, False, "auto")
        self._applied: tuple[object, ...] = ()
        self._open = False
        self._rxqs: list[RxPath] = []
        #: The transmit side while the device is open.
        self.tx_path: AfPacketTx | None = None
        self._link_checked = 0.0
        #: Ring positions shared with PMD worker processes (see :mod:`.afpacket_worker`),
        #: made at the first export; in a worker, the rx queues it took over.
        self._cursors: RxCursors | None = None
        self._exported: set[int] = set()

    @property
    def kicker(self) -> TxKick | None:
        """How the TX ring is kicked (None without one): mode in use, kicks made each way."""
        return self.tx_path.kicker if self.tx_path is not None else None

    @property
    def log(self) -> VlogModule | None:
        return self._log

    @log.setter
    def log(self, log: VlogModule | None) -> None:
        # Problems met while opening (log not yet set) are reported when it is.
        self._log = log
        if log is not None:
            for text in self._unlogged:
                log.warn(text)
            self._unlogged.clear()

    def _warn(self, text: str) -> None:
        if self._log is not None:
            self._log.warn(text)
        else:
            self._unlogged.append(text)

    # -- configuration ------------------------------------------------------

    @classmethod
    def _parse_options(
        cls, name: str, options: Mapping[str, str]
    ) -> tuple[tuple[str, bool, bool, str], tuple[int, int, int]]:
        """(rx-ring, tx-ring, userspace-tso, tx-kick) and (n_rxq, n_txq, numa_id)."""
        opts = dict(options)
        requested = queue_options(name, opts)
        rx_ring = opts.pop("rx-ring", "v2")
        if rx_ring not in _RX_RINGS:
            raise NetdevError(f'{name}: bad rx-ring "{rx_ring}" (expected v2, v3 or none)')
        tx_ring = _bool_option(name, opts, "tx-ring", True)
        tso = _bool_option(name, opts, "userspace-tso", False)
        tx_kick = opts.pop("tx-kick", "auto")
        if tx_kick not in TX_KICK_MODES:
            raise NetdevError(f'{name}: bad tx-kick "{tx_kick}" (expected auto, async or sync)')
        reject_unknown(name, opts)
        return (rx_ring, tx_ring, tso, tx_kick), requested

    @classmethod
    def validate_options(cls, name: str, options: Mapping[str, str]) -> list[str]:
        cls._parse_options(name, options)
        try:
            socket.if_nametoindex(name)
        except OSError:
            return [f"{name}: no network interface of that name (yet): the port waits for it"]
        return []

    def set_config(self, options: Mapping[str, str]) -> None:
        self._wanted, requested = self._parse_options(self.name, options)
        self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id = requested
        if not self._open:
            self._setup()
        elif (self._wanted, requested) != self._applied:
            self.reconfigure_required = True

    def reconfigure(self) -> None:
        """Reopen sockets and rings if the configuration changed; never raises.

        If the device cannot be reopened (it is gone), the netdev enters the
        error state instead.
        """
        requested = (self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id)
        self.reconfigure_required = False
        if (self._wanted, requested) == self._applied:
            return
        self._teardown()
        try:
            self._setup()
        except NetdevError as exc:
            self._fail(str(exc).removeprefix(f"{self.name}: "))

    def _setup(self) -> None:
        """Open the sockets and rings for the wanted configuration; NetdevError if impossible."""
        name = self.name
        requested = (self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id)
        self.n_rxq, self.n_txq, self.numa_id = requested
        self._applied = (self._wanted, requested)
        self.reconfigure_required = False
        try:
            self.ifindex = socket.if_nametoindex(name)
            probe = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            text = exc.strerror or "No such device"
            raise NetdevError(f"{name}: could not open network device {name} ({text})") from None
        try:
            self.mtu = self._ioctl_int(probe, SIOCGIFMTU)
            self._open_rx()
            self._open_tx()
        except OSError as exc:
            self._teardown()
            text = exc.strerror or str(exc)
            raise NetdevError(f"{name}: could not open network device {name} ({text})") from None
        finally:
            probe.close()
        self.error = None
        self.link_up = True

    def _open_rx(self) -> None:
        rx_kind, _, tso, _ = self._wanted
        self.rx_ring = "none" if tso else rx_kind
        fanout = 0
        for q in range(self.n_rxq):
            sock = _packet_socket(tso)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                path = self._rx_path(sock)
                # Bound only once set up, so no frame of another interface slips in.
                sock.bind((self.name, ETH_P_ALL))
                if q == 0:
                    mreq = struct.pack("=iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                if self.n_rxq > 1:
                    if q == 0:  # the kernel picks a group id no one else uses
                        arg = (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16
                        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
                        fanout = sock.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFF
                    else:
                        arg = fanout | PACKET_FANOUT_HASH << 16
                        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
            except BaseException:
                sock.close()
                raise
            self._rxqs.append(path)

    def _rx_path(self, sock: socket.socket) -> RxPath:
        """The receive path for ``sock``: the wanted ring, else plain receive (logged)."""
        cls = _RX_RINGS[self.rx_ring]
        if cls is not None:
            try:
                return cls(sock, self.mtu, self.stats)
            except OSError as exc:
                self._warn(f"{self.name}: {self.rx_ring} rx ring setup failed "
                           f"({exc.strerror}), receiving without a ring")  # fmt: skip
                self.rx_ring = "none"
        _set_buf(sock, socket.SO_RCVBUF, SO_RCVBUFFORCE)
        return PlainRx(sock, self.stats, vnet=self._wanted[2])

    def _open_tx(self) -> None:
        _, use_ring, tso, kick_mode = self._wanted
        self.tso = tso
        sock = _packet_socket(tso)
        _set_buf(sock, socket.SO_SNDBUF, SO_SNDBUFFORCE)
        ring: TxRing | None = None
        kicker: TxKick | None = None
        plain: socket.socket | None = None
        self.tx_ring = False
        try:
            if use_ring:
                try:
                    ring = TxRing(sock, self.mtu, self.stats, offload=tso)
                    self.tx_ring = True
                except OSError as exc:
                    self._warn(f"{self.name}: tx ring setup failed ({exc.strerror}), "
                               "sending without a ring")  # fmt: skip
                    sock.close()
                    sock = _packet_socket(tso)
            sock.bind((self.name, 0))  # protocol 0: this socket never receives
            if ring is not None:
                kicker = TxKick(sock.fileno(), kick_mode, self.stats)
                if kicker.unavailable:
                    self._warn(f"{self.name}: io_uring unavailable ({kicker.unavailable}), "
                               "tx ring kicked synchronously")  # fmt: skip
            if ring is None:
                plain = sock
            elif tso:
                plain = _packet_socket(tso)
                plain.bind((self.name, 0))
        except BaseException:
            for thing in (kicker, ring, plain, sock):
                if thing is not None:
                    thing.close()
            raise
        self.tx_path = AfPacketTx(
            self, self.stats, sock=sock, ring=ring, kicker=kicker, plain=plain, tso=tso
        )

    def _teardown(self) -> None:
        """Close every socket and ring; pending transmits are given up (tx_dropped).

        In a PMD worker these are its own copies and its own transmit side;
        the queues it read say where it stopped (see :mod:`.afpacket_worker`).
        """
        if self.tx_path is not None:
            self.tx_path.close()
            self.tx_path = None
        if self._cursors is not None:
            release_cursors(self._cursors, self._rxqs)
            self._cursors = None
        self._exported = set()
        for path in self._rxqs:
            if isinstance(path, NotPolled):
                continue
            self._fold_drops(path)
            path.close()
            path.sock.close()
        self._rxqs = []

    def close(self) -> None:
        self._teardown()

    def status(self) -> str:
        # The link state first: it finds a vanished device that only PMD workers met so far.
        state = self._link_state()
        if self.error is not None:
            return f'ifindex={self.ifindex}, error="{self.error}"'
        if self._rxqs:
            with contextlib.suppress(OSError):
                self.mtu = self._ioctl_int(self._rxqs[0].sock, SIOCGIFMTU)
            for path in self._rxqs:
                self._fold_drops(path)
        text = (
            f"ifindex={self.ifindex}, link={state}, mtu={self.mtu}, rx_ring={self.rx_ring}, "
            f"tx_ring={'on' if self.tx_ring else 'off'}"
        )
        kicker = self.kicker
        if kicker is not None:  # there is one exactly when there is a tx ring
            text += f", tx_kick={kicker.effective}"
        if self.tso:
            text += ", userspace_tso=on"
        if self.n_rxq > 1:
            text += f", rx_queues={self.n_rxq}"
        if self.ring_resyncs:
            text += f", rx_ring_resyncs={self.ring_resyncs}"
        return text

    # -- device state -------------------------------------------------------

    def _ioctl_int(self, sock: socket.socket, request: int) -> int:
        ifreq = fcntl.ioctl(sock.fileno(), request, _IFREQ.pack(self.name.encode(), 0))
        return int(_IFREQ.unpack(ifreq)[1])

    def _link_state(self) -> str:
        """ "up", "down" or "gone" (then also entering the error state), by two ioctls."""
        if self.error is not None:
            return "gone"
        # A worker's side always has a transmit socket, and maybe no rx queue of its own.
        tx_sock = self.tx_path.sock if self.tx_path is not None else None
        sock = tx_sock or (self._rxqs[0].sock if self._rxqs else None)
        if sock is None:
            return "gone"
        try:
            # By ifindex: a new interface that took the name is not ours.  (If ours
            # was renamed, the name it has now is what SIOCGIFFLAGS needs.)
            ifreq = fcntl.ioctl(sock.fileno(), SIOCGIFNAME, _IFREQ.pack(b"", self.ifindex))
            flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifreq))[1]
        except OSError as exc:
            if exc.errno in _GONE_ERRNOS:
                self._fail(f"device {self.name} disappeared ({exc.strerror})")
                return "gone"
            return "up" if self.link_up else "down"
        self.link_up = bool(flags & IFF_UP and flags & IFF_RUNNING)
        self._link_checked = time.monotonic()
        return "up" if self.link_up else "down"

    # -- PMD worker processes -------------------------------------------------

    def export_to_worker(self, qids: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
        return export_side(self, qids)

    @classmethod
    def open_in_worker(cls, name: str, state: Mapping[str, Any], fds: Sequence[int]) -> Netdev:
        return open_side(cls, name, state, fds)

    def link_error(self, err: int) -> None:
        """React to ``err`` from a socket call: the device went down or away."""
        if err in _GONE_ERRNOS:
            self._fail(f"device {self.name} disappeared ({errno.errorcode.get(err, err)})")
        else:
            self._link_state()

    def device_gone(self, why: str) -> None:
        self._fail(why)

    def _fail(self, reason: str) -> None:
        """Enter the error state (once): stop using the device, say why."""
        if self.error is not None:
            return
        self.error = reason
        self.link_up = False
        self._warn(f"{self.name}: {reason}; port disabled until the interface is back")
        if self.tx_path is not None:
            self.tx_path.unwind()

    def _fold_drops(self, path: RxPath) -> None:
        """Add the kernel's drop count of ``path`` (reset by each read) to rx_dropped."""
        path.losing = False
        try:
            raw = path.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        except OSError:
            return
        self.stats.rx_dropped += struct.unpack_from("=I", raw, 4)[0]  # tp_drops

    def _check_rx_error(self, path: RxPath) -> None:
        """Consume ``path``'s pending socket error (link down / device gone), if any."""
        try:
            err = path.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            err = exc.errno or errno.EBADF
        if err:
            self.link_error(err)

    # -- transmit -----------------------------------------------------------

    def send(self, qid: int, batch: list[Packet], concurrent: bool = False) -> int:
        # Device state first; the tx path does the rest.
        if self.error is not None:
            self.stats.tx_dropped += len(batch)
            return errno.ENODEV
        if not self.link_up and not self._link_back():
            self.stats.tx_dropped += len(batch)
            return errno.ENODEV if self.error is not None else errno.ENETDOWN
        tx = self.tx_path
        if tx is None:  # not open: cannot happen outside the error state
            self.stats.tx_dropped += len(batch)
            return errno.ENODEV
        return tx.send(qid, batch)

    def process_async(self, qid: int, force: bool) -> int:
        tx = self.tx_path
        return tx.process_async(qid, force) if tx is not None else OK

    def _link_back(self) -> bool:
        """While the link is down: whether it is up again (re-read at most every 100 ms)."""
        if time.monotonic() - self._link_checked < _LINK_RECHECK:
            return False
        return self._link_state() == "up"

    # -- receive ------------------------------------------------------------

    def recv(self, qid: int) -> list[Packet]:
        if self.error is not None or qid >= len(self._rxqs):
            return []
        path = self._rxqs[qid]
        try:
            batch = path.read()
        except OSError as exc:  # only LINK_ERRNOS get here
            self.link_error(exc.errno or errno.ENETDOWN)
            return []
        if batch:
            if path.losing:
                self._fold_drops(path)
        elif path.mmapped:
            # A ring never reports errors itself: look now and then.
            path.empty_polls += 1
            if path.empty_polls >= _ERROR_POLL_EVERY:
                path.empty_polls = 0
                self._check_rx_error(path)
                skipped = path.check_step()
                if skipped:
                    self.ring_resyncs += 1
                    if self._log is not None:
                        self._log.warn(
                            f"{self.name}: rx queue {qid}: ring out of step with the kernel, "
                            f"skipped {skipped} empty frames to catch up",
                            rl=self._resync_rl,
                        )
        return batch

    def rx_fd(self, qid: int) -> int | None:
        if self.error is not None or qid >= len(self._rxqs):
            return None
        return self._rxqs[qid].sock.fileno()

    async def wait_readable(self, qid: int) -> None:
        if self.error is not None or qid >= len(self._rxqs):
            await trio.sleep_forever()
        path = self._rxqs[qid]
        if path.ready():
            return
        await trio.lowlevel.wait_readable(path.sock)
        if not path.mmapped or path.ready():
            return  # plain receive meets a pending error itself
        # Woken without a frame: POLLERR (link down, device gone), which stays
        # raised, and so keeps waking us, until the error is read.
        self._check_rx_error(path)
        if self.error is not None:
            await trio.sleep_forever()


class SystemNetdev(AfPacketNetdev):
    """``system``: OVS's name for the same thing, a kernel network interface."""

    type = "system"
