"""Kernel TAP devices as switch ports: ``tap``, and ``internal`` (OVS's internal port type).

Options, link behaviour and the ``dpctl/show`` status are described for
users in docs/netdev-types.md; this is how the device is built.

The device is created, or joined when a tap of that name exists, through
``/dev/net/tun`` with ``IFF_TAP | IFF_NO_PI``: every ``read`` on a queue's
descriptor is one Ethernet frame the kernel sent out of the device, every
``write`` one frame the kernel takes as received by it.  Descriptors are
non-blocking; ``recv`` drains until EAGAIN or NETDEV_MAX_BURST frames, and
``wait_readable`` waits in trio's I/O manager.  With several queues the
device is ``IFF_MULTI_QUEUE``, one descriptor per queue, and transmit queue
q writes to descriptor ``q % n``.  ``userspace-tso`` adds ``IFF_VNET_HDR``
and advertises checksum and TSO offloads (``TUNSETOFFLOAD``); a joined
device's stale offloads are switched off otherwise, since without the
header a super-frame could not be told from a frame.

Opening brings the device up, unlike OVS: a port exists to carry traffic,
and a down tap refuses writes (EIO, counted as tx_dropped).  The MTU is
re-read on open, reconfiguration and every :meth:`TapNetdev.status`.

Queue or TSO changes re-attach the descriptors in :meth:`TapNetdev.reconfigure`.
Device-wide flags follow the first descriptor attached and a single-queue
tap takes one descriptor at a time, so all are detached and attached anew
while the device is made persistent for that moment (keeping its ifindex
and addresses).  The kernel cannot turn a single-queue tap into a
multi-queue one: ours is deleted and created again, one made persistent
by someone else is refused.  A failed re-attach restores the old queues
when it can.

Errors never raise on the data path: a device deleted under the port
(``ip link del``) puts the netdev in an error state (:attr:`TapNetdev.error`,
logged once, shown by ``status()``) in which ``recv`` returns nothing and
``send`` drops (ENODEV).  ``close()`` closes the descriptors, which deletes
a device this port created.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from ..odp.packet import NETDEV_MAX_BURST, Packet
from ..odp.protocols import ETH_HEADER_LEN, ETH_TYPE_VLAN_8021Q, VLAN_HEADER_LEN
from .dummy import int_option, reject_unknown
from .provider import OK, Netdev, NetdevError

# ioctl numbers from <linux/if_tun.h> and <linux/sockios.h> (the _IOW/_IOR
# encodings for an int/ifreq argument on every architecture with the generic layout).
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETIFF = 0x800454D2
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCGIFINDEX = 0x8933

IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_PERSIST = 0x0800
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

#: Size of struct virtio_net_hdr (no num_buffers field: not mergeable rx buffers).
VNET_HDR_LEN = 10
#: virtio_net_hdr.flags: the checksum from csum_start/csum_offset is still to be done.
VNET_HDR_F_NEEDS_CSUM = 1
#: Queues one tap may have (the kernel's MAX_TAP_QUEUES).
MAX_QUEUES = 256
#: Longest interface name the kernel accepts (IFNAMSIZ - 1).
IFNAMSIZ = 16

_TUN_PATH = "/dev/net/tun"
# struct ifreq: a 16-byte name, then a 24-byte union (flags: short, mtu/ifindex: int).
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_INT = struct.Struct("16si20x")
_VNET_ZERO = bytes(VNET_HDR_LEN)
_TPID_8021Q = ETH_TYPE_VLAN_8021Q.to_bytes(2, "big")
# Large enough for any frame a tap hands over, GSO super-frames included (the
# kernel caps those at 64 KiB); a read that fills it was truncated.
_RX_BUF_LEN = 1 << 17
# Errors after which the descriptor no longer reaches a device.
_GONE_ERRNOS = frozenset((errno.EBADFD, errno.ENODEV, errno.ENXIO, errno.EBADF, errno.EPIPE))

_BOOL_WORDS = {"true": True, "false": False}


def _ifreq_int(name: bytes, request: int, sock: socket.socket) -> int:
    return int(_IFREQ_INT.unpack(fcntl.ioctl(sock, request, _IFREQ_INT.pack(name, 0)))[1])


def _valid_ifname(name: str) -> bool:
    """What the kernel's dev_valid_name accepts, checked here for a clearer error."""
    raw = name.encode()
    return (
        0 < len(raw) < IFNAMSIZ
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in name)
    )


def _tap_options(name: str, options: Mapping[str, str]) -> tuple[int, bool]:
    """A tap's (n_rxq, userspace-tso); NetdevError naming a bad option."""
    if not _valid_ifname(name):
        raise NetdevError(f'{name}: invalid device name (1-15 bytes, no "/", ":" or spaces)')
    opts = dict(options)
    n_rxq = int_option(name, opts, "n_rxq", 1, 1, MAX_QUEUES)
    text = opts.pop("userspace-tso", "false")
    tso = _BOOL_WORDS.get(text.lower())
    if tso is None:
        raise NetdevError(f'{name}: bad userspace-tso "{text}" (expected true or false)')
    reject_unknown(name, opts)
    return n_rxq, tso


class TapNetdev(Netdev):
    """``tap``: a kernel TAP device, PMD-polled."""

    type = "tap"
    pmd = True
    waitable = True
    tso_capable = True

    def __init__(self, name: str, options: Mapping[str, str] | None = None) -> None:
        if not _valid_ifname(name):
            raise NetdevError(f'{name}: invalid device name (1-15 bytes, no "/", ":" or spaces)')
        # Set before the base constructor, which calls set_config and thereby opens the device.
        self._init_fields(name)
        super().__init__(name, options)

    def _init_fields(self, name: str) -> None:
        self._fds: list[int] = []
        #: A poll object per queue fd, for a syscall-only emptiness check (see recv).
        self._pollers: dict[int, select.poll] = {}
        self._vnet = False
        self._mq = False
        self._requested_tso = False
        self._closed = False
        self._buf = bytearray(_RX_BUF_LEN)
        self._view = memoryview(self._buf)
        self.ifindex = 0
        #: Whether opening found a tap of this name already there (we joined it).
        self.existed = False
        #: Why the device is unusable (it vanished, or a reconfiguration failed); None: fine.
        self.error: str | None = None
        self._bname = name.encode()

    # -- configuration ------------------------------------------------------

    def set_config(self, options: Mapping[str, str]) -> None:
        n_rxq, tso = _tap_options(self.name, options)
        if not self._fds and not self._closed and self.error is None:
            # First configuration: open now, so a bad device is reported at once.
            self.requested_n_rxq = self.requested_n_txq = n_rxq
            self._requested_tso = tso
            self._open_fresh()
            super().reconfigure()
            return
        if n_rxq > 1 and not self._mq and self._persistent_elsewhere():
            raise NetdevError(
                f"{self.name}: n_rxq={n_rxq} needs a multi-queue tap, but the device is a "
                "persistent single-queue tap created outside pyvswitchd"
            )
        if (n_rxq, tso) != (self.requested_n_rxq, self._requested_tso):
            self.requested_n_rxq = self.requested_n_txq = n_rxq
            self._requested_tso = tso
            self.reconfigure_required = True

    def reconfigure(self) -> None:
        n, tso = self.requested_n_rxq, self._requested_tso
        if self._fds and (n != len(self._fds) or tso != self._vnet):
            try:
                self._reattach(n, tso)
            except (OSError, NetdevError) as exc:
                if not self._fds:
                    self._fail(f"reconfiguration failed: {exc}")
                else:
                    # The old queues are back: keep running as before and say so.
                    self.requested_n_rxq = self.requested_n_txq = len(self._fds)
                    self._requested_tso = self._vnet
                    log = getattr(self, "log", None)
                    if log is not None:
                        log.warn(
                            f"{self.name}: reconfiguration failed ({exc}); running with "
                            f"{len(self._fds)} queues, userspace-tso={str(self._vnet).lower()}"
                        )
        if self._fds:
            self._refresh_mtu()
        super().reconfigure()

    def _open_fresh(self) -> None:
        """Create or join the device with the requested queues; NetdevError if impossible."""
        n = self.requested_n_rxq
        self.existed = self._ifindex_or_zero() != 0
        self._fds = self._attach(n, self._requested_tso, n > 1)
        self._mq = n > 1
        self._vnet = self._requested_tso
        try:
            self._bring_up()
        except OSError as exc:
            self._close_fds()
            raise NetdevError(f"{self.name}: cannot bring the tap up: {exc.strerror}") from None

    def _attach(self, n: int, vnet: bool, mq: bool) -> list[int]:
        """Open ``n`` descriptors on the device; all or none (NetdevError)."""
        flags = IFF_TAP | IFF_NO_PI | (IFF_MULTI_QUEUE if mq else 0) | (IFF_VNET_HDR if vnet else 0)
        fds: list[int] = []
        try:
            for _ in range(n):
                fd = os.open(_TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                fds.append(fd)
                fcntl.ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(self._bname, flags))
            # Offloads and the header size belong to the device, so the first fd sets them.
            if vnet:
                fcntl.ioctl(fds[0], TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                fcntl.ioctl(fds[0], TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
            else:
                # A device joined from an earlier user may still advertise offloads;
                # without a vnet header we could not tell a super-frame from a frame.
                fcntl.ioctl(fds[0], TUNSETOFFLOAD, 0)
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise NetdevError(self._open_error(exc, mq)) from None
        return fds

    def _open_error(self, exc: OSError, mq: bool) -> str:
        code = exc.errno
        if exc.filename == _TUN_PATH and code == errno.ENOENT:
            why = f"{_TUN_PATH} does not exist (load the tun module: modprobe tun)"
        elif code == errno.EPERM or code == errno.EACCES:
            why = "permission denied (creating a tap needs CAP_NET_ADMIN)"
        elif code == errno.EBUSY:
            why = "a single-queue tap of that name is already in use by another process"
        elif code == errno.EINVAL:
            kind = "multi-queue" if mq else "single-queue"
            why = (
                f"a device of that name exists and is not a {kind} tap "
                "(another kind of device, a tun, or a tap with the other queue mode)"
            )
        else:
            why = exc.strerror or str(exc)
        return f"{self.name}: cannot open tap device: {why}"

    def _reattach(self, n: int, vnet: bool) -> None:
        """Move the open device to ``n`` queues and vnet mode ``vnet``.

        Raises NetdevError or OSError when that fails; the old queues are then
        restored when possible (``self._fds`` non-empty) and the device is gone
        otherwise.
        """
        if not self._mq and n > 1:
            # The kernel cannot turn a single-queue tap into a multi-queue one, so
            # closing deletes it (it is ours: set_config refused the other case)
            # and it is created again; its addresses go with it.
            self._close_fds()
            self._fds = self._attach(n, vnet, True)
            self._mq = True
        else:
            # Device-wide flags (the vnet header) are taken from the first queue
            # attached, and a single-queue tap takes one descriptor at a time: so
            # detach every queue and attach anew, keeping the device (ifindex,
            # addresses) alive meanwhile by making it persistent for that moment.
            ours = not self._persistent_elsewhere()
            if ours:
                fcntl.ioctl(self._fds[0], TUNSETPERSIST, 1)
            old_n, old_vnet = len(self._fds), self._vnet
            self._close_fds()
            try:
                self._fds = self._attach(n, vnet, self._mq)
            except NetdevError:
                with contextlib.suppress(NetdevError):
                    self._fds = self._attach(old_n, old_vnet, self._mq)
                raise
            finally:
                if ours:
                    self._drop_persistence()
        self._vnet = vnet
        self._bring_up()

    def _drop_persistence(self) -> None:
        """Undo a temporary TUNSETPERSIST, through a throwaway descriptor if none is left."""
        if self._fds:
            fcntl.ioctl(self._fds[0], TUNSETPERSIST, 0)
            return
        # Nothing could be re-attached: delete the device rather than leak it.
        with contextlib.suppress(NetdevError, OSError):
            fd = self._attach(1, self._vnet, self._mq)[0]
            try:
                fcntl.ioctl(fd, TUNSETPERSIST, 0)
            finally:
                os.close(fd)

    def _persistent_elsewhere(self) -> bool:
        """Whether the device is persistent (made so by someone else: we never leave it so)."""
        if not self._fds:
            return False
        try:
            ifr = fcntl.ioctl(self._fds[0], TUNGETIFF, _IFREQ_FLAGS.pack(b"", 0))
        except OSError:
            return False
        return bool(_IFREQ_FLAGS.unpack(ifr)[1] & IFF_PERSIST)

    @classmethod
    def validate_options(cls, name: str, options: Mapping[str, str]) -> list[str]:
        _tap_options(name, options)
        return []

    # -- device queries -------------------------------------------------------

    def _bring_up(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            ifr = fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ_FLAGS.pack(self._bname, 0))
            flags = _IFREQ_FLAGS.unpack(ifr)[1]
            if not flags & IFF_UP:
                fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(self._bname, flags | IFF_UP))
            self.mtu = _ifreq_int(self._bname, SIOCGIFMTU, sock)
            self.ifindex = _ifreq_int(self._bname, SIOCGIFINDEX, sock)

    def _ifindex_or_zero(self) -> int:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                return _ifreq_int(self._bname, SIOCGIFINDEX, sock)
        except OSError:
            return 0

    def _refresh_mtu(self) -> None:
        # By name: after the device vanished a namesake may exist, so only while healthy.
        if self.error is not None:
            return
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                self.mtu = _ifreq_int(self._bname, SIOCGIFMTU, sock)
        except OSError:
            pass

    def _link_state(self) -> str:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                ifr = fcntl.ioctl(sock, SIOCGIFFLAGS, _IFREQ_FLAGS.pack(self._bname, 0))
        except OSError:
            return "unknown"
        return "up" if _IFREQ_FLAGS.unpack(ifr)[1] & IFF_UP else "down"

    def status(self) -> str:
        if self.error is None and self._fds:
            # PMD workers meet a vanished device on their own descriptors: look at ours.
            try:
                fcntl.ioctl(self._fds[0], TUNGETIFF, _IFREQ_FLAGS.pack(b"", 0))
            except OSError as exc:
                self._io_error(self._fds[0], exc, "status")
        if self.error is not None:
            return f"ifindex={self.ifindex}, link=gone, queues={len(self._fds)}, error={self.error}"
        if not self._fds:
            return "closed"
        self._refresh_mtu()
        text = (
            f"ifindex={self.ifindex}, link={self._link_state()}, mtu={self.mtu}, "
            f"queues={len(self._fds)}"
        )
        return text + (", userspace-tso=true" if self._vnet else "")

    # -- errors ---------------------------------------------------------------

    def device_gone(self, why: str) -> None:
        self._fail(why)

    def _fail(self, why: str) -> None:
        """Enter the error state (first cause wins) and log it once."""
        if self.error is not None:
            return
        self.error = why
        log = getattr(self, "log", None)
        if log is not None:
            log.err(f"{self.name}: {why}; port disabled until the device is back")

    def _io_error(self, fd: int, exc: OSError, what: str) -> bool:
        """True (and error state) when ``exc`` means the device is gone."""
        if exc.errno not in _GONE_ERRNOS:
            # Ask the descriptor itself: a detached one fails TUNGETIFF with EBADFD.
            try:
                fcntl.ioctl(fd, TUNGETIFF, _IFREQ_FLAGS.pack(b"", 0))
                return False
            except OSError:
                pass
        self._fail(f"device vanished ({what}: {exc.strerror or exc})")
        return True

    # -- data path ------------------------------------------------------------

    def recv(self, qid: int) -> list[Packet]:
        fds = self._fds
        if self.error is not None or not 0 <= qid < len(fds):
            return []
        fd = fds[qid]
        poller = self._pollers.get(fd)
        if poller is None:
            poller = self._pollers[fd] = select.poll()
            poller.register(fd, select.POLLIN)
        # An empty queue is the common case (a bridge port mostly idle): poll(0)
        # finds it in a third of the time readv's BlockingIOError takes.
        if not poller.poll(0):
            return []
        buf, view = self._buf, self._view
        readv = os.readv
        batch: list[Packet] = []
        nbytes = truncated = 0
        vnet = self._vnet
        while len(batch) < NETDEV_MAX_BURST:
            try:
                n = readv(fd, (buf,))
            except BlockingIOError:
                break
            except OSError as exc:
                if not self._io_error(fd, exc, "read"):
                    self.stats.rx_errors += 1
                break
            if n == _RX_BUF_LEN:
                truncated += 1
                continue
            if vnet:
                if n < VNET_HDR_LEN:
                    truncated += 1
                    continue
                # flags (NEEDS_CSUM) or gso_type set: the header asks the transmitter for work.
                asks = buf[0] & VNET_HDR_F_NEEDS_CSUM or buf[1]
                hdr = bytes(view[:VNET_HDR_LEN]) if asks else None
                batch.append(Packet(bytes(view[VNET_HDR_LEN:n]), vnet=hdr))
                nbytes += n - VNET_HDR_LEN
            else:
                batch.append(Packet(bytes(view[:n])))
                nbytes += n
        stats = self.stats
        stats.rx_packets += len(batch)
        stats.rx_bytes += nbytes
        stats.rx_errors += truncated
        return batch

    def send(self, qid: int, batch: list[Packet], concurrent: bool = False) -> int:
        fds = self._fds
        stats = self.stats
        if self.error is not None or not fds:
            stats.tx_dropped += len(batch)
            return errno.ENODEV
        fd = fds[qid % len(fds)]
        vnet = self._vnet
        max_len = self.mtu + ETH_HEADER_LEN
        write, writev = os.write, os.writev
        rc = OK
        sent = nbytes = 0
        for i, p in enumerate(batch):
            data = p.data
            size = len(data)
            if (size > max_len or size < ETH_HEADER_LEN) and not self._size_ok(p, max_len):
                stats.tx_errors += 1
                rc = errno.EMSGSIZE
                continue
            try:
                if vnet:
                    hdr = p.vnet
                    writev(fd, (hdr if hdr is not None else _VNET_ZERO, data))
                else:
                    write(fd, data)
            except OSError as exc:
                code = exc.errno or errno.EIO
                if code == errno.EAGAIN or code == errno.EIO:
                    # EAGAIN: the device's queue is full; EIO: the link is down.  Either
                    # way the rest of the batch would meet the same fate.
                    if code == errno.EIO and self._io_error(fd, exc, "write"):
                        code = errno.ENODEV
                    stats.tx_dropped += len(batch) - i
                    rc = code
                    break
                if self._io_error(fd, exc, "write"):
                    stats.tx_dropped += len(batch) - i
                    rc = errno.ENODEV
                    break
                stats.tx_errors += 1
                rc = code
                continue
            sent += 1
            nbytes += size
        stats.tx_packets += sent
        stats.tx_bytes += nbytes
        return rc

    def _size_ok(self, p: Packet, max_len: int) -> bool:
        """The slow check for a frame outside the plain size bounds."""
        size = len(p.data)
        if size < ETH_HEADER_LEN:
            return False
        if self._vnet and p.vnet is not None and p.vnet[1]:
            return True  # a GSO super-frame: the kernel segments it to the MTU
        return size <= max_len + VLAN_HEADER_LEN and p.data[12:14] == _TPID_8021Q

    def rx_fd(self, qid: int) -> int | None:
        if self.error is not None or not 0 <= qid < len(self._fds):
            return None
        return self._fds[qid]

    async def wait_readable(self, qid: int) -> None:
        if self.error is not None or not 0 <= qid < len(self._fds):
            await trio.sleep_forever()
        await trio.lowlevel.wait_readable(self._fds[qid])

    # -- PMD worker processes -------------------------------------------------

    def export_to_worker(self, qids: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
        """The descriptors of queues ``qids`` (or of queue 0 if none), and how to use them.

        The worker transmits on the descriptor of tx queue ``q % n`` when it
        has it, else on the first one passed: which queue a frame is written
        to does not matter to the kernel (it takes the frame in the writer's
        context either way), and no two writers need a lock.  The device
        stays the daemon's: it made it, and closing its descriptors deletes it.
        """
        fds = self._fds
        n = len(fds)
        polled = sorted({q for q in qids if 0 <= q < n})
        state: dict[str, Any] = {
            "n": n,
            "queues": polled,
            "vnet": self._vnet,
            "mtu": self.mtu,
            "ifindex": self.ifindex,
            "error": self.error,
        }
        if self.error is not None or not fds:
            state["error"] = self.error or "closed"
            return state, []
        return state, [fds[q] for q in polled] or [fds[0]]

    @classmethod
    def open_in_worker(cls, name: str, state: Mapping[str, Any], fds: Sequence[int]) -> Netdev:
        """The worker's side: the passed descriptors, in an error state if the daemon's is."""
        tap = cls.__new__(cls)
        tap._init_fields(name)
        tap._init_base(name)
        tap.mtu, tap.ifindex, tap._vnet = state["mtu"], state["ifindex"], state["vnet"]
        n = state["n"]
        tap.n_rxq = tap.n_txq = tap.requested_n_rxq = tap.requested_n_txq = max(n, 1)
        if state["error"] is not None or not fds:
            tap.error = state["error"] or "closed"
            tap._close_list(list(fds))
            return tap
        own = dict(zip(state["queues"], fds, strict=False))
        # Queues polled elsewhere map to the transmit descriptor: only send uses them.
        tap._fds = [own.get(q, fds[0]) for q in range(n)]
        return tap

    # -- teardown -------------------------------------------------------------

    def _close_list(self, fds: list[int]) -> None:
        # A worker's side lists one descriptor under several queues: close it once.
        for fd in dict.fromkeys(fds):
            # Wake any task parked in wait_readable on it before the number is reused;
            # outside trio.run (RuntimeError) nobody can be waiting.
            with contextlib.suppress(RuntimeError):
                trio.lowlevel.notify_closing(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _close_fds(self) -> None:
        fds, self._fds = self._fds, []
        self._pollers.clear()  # their fd numbers may come back as other files
        self._close_list(fds)

    def close(self) -> None:
        self._closed = True
        self._close_fds()


class InternalNetdev(TapNetdev):
    """``internal``: OVS's internal port type, which the userspace datapath makes a tap."""

    type = "internal"
