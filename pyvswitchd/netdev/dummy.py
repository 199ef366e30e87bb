"""OVS's netdev-dummy: software ports for tests, ``dummy``, ``dummy-pmd``, ``dummy-internal``.

Options, limits, the ``dpctl/show`` status and the differences from OVS
are described for users in docs/netdev-types.md, the
``netdev-dummy/receive`` command in docs/commands.md.

All three types share :class:`DummyNetdev`; they differ only in who polls
them (``dummy-pmd``: PMD tasks; the others: the main task) and in what
``status()`` says (only ``dummy-pmd`` shows its queue counts, as in OVS).

Receive: each rx queue is a bounded FIFO filled by :meth:`DummyNetdev.inject`
and drained by :meth:`DummyNetdev.recv` in batches of up to NETDEV_MAX_BURST;
overflow counts in rx_dropped.  Transmit counts the frames and drops them,
as an OVS dummy with no stream connection does, keeping the last
:attr:`DummyNetdev.SENT_RING` for :meth:`DummyNetdev.sent_frames` so tests
can see what was forwarded.  The frame-size check runs once per batch when
every frame has the same size: this device is the sink of the pipeline
benchmark, so its send must cost as little as a NIC's.

Asynchronous transmit (``tx_async_polls``) keeps batches per queue and
completes them from ``process_async``, which is how tests exercise the
PMDs' deferred work; forced completions fail deterministically
(``tx_async_fail_rate``) so tests can predict which.  The device is also
the NIC side of the simulated offload providers
(:meth:`DummyNetdev.simulated_nic`): a provider's ``rx_offload``
classifier sees injected frames first.  Injected faults
(:attr:`DummyNetdev.fault`, :mod:`.faults`) hook into ``recv`` and
``send``; a device without one pays a single ``is None`` test.

Queue and NUMA changes on an open device set ``reconfigure_required`` and
are applied by :meth:`DummyNetdev.reconfigure`, while no PMD polls it
(frames queued on removed rx queues are dropped).
"""

from __future__ import annotations

import errno
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import attrs
import trio

from ..control.registry import UNLIMITED, CommandContext, CommandError, CommandRegistry
from ..odp.flow_compose import compose_packet
from ..odp.int_parse import bounded_int
from ..odp.key_text import parse_odp_key
from ..odp.packet import NETDEV_MAX_BURST, Packet
from ..odp.protocols import ETH_HEADER_LEN, ETH_TYPE_VLAN_8021Q, VLAN_HEADER_LEN
from .faults import VANISHED_ERRNO, NetdevFaults
from .pcap import PcapError, PcapWriter, check_appendable
from .provider import EINPROGRESS, OK, Netdev, NetdevError, RxClassifier, SimulatedNic

#: Most queues a dummy device may have (OVS's DUMMY_MAX_QUEUES_PER_PORT).
MAX_QUEUES = 1024
#: Errno returned by a forced asynchronous completion that drops its batch.
ASYNC_FAIL_ERRNO = errno.EIO
#: Shortest frame ``netdev-dummy/receive --len`` accepts (OVS's ETH_TOTAL_MIN).
ETH_TOTAL_MIN = 60
_TPID_8021Q = ETH_TYPE_VLAN_8021Q.to_bytes(2, "big")
_PPM = 1_000_000
_DATA = attrgetter("data")
_PCAP_OPTIONS = frozenset(("pcap", "rxq_pcap", "tx_pcap"))


def int_option(
    name: str, options: dict[str, str], key: str, default: int, low: int, high: int
) -> int:
    """Pop integer option ``key`` (``low``..``high``); NetdevError naming it when bad."""
    text = options.pop(key, None)
    if text is None:
        return default
    value = bounded_int(text, low, high)
    if value is None:
        raise NetdevError(f'{name}: bad {key} "{text}" (expected an integer {low}..{high})')
    return value


def float_option(
    name: str, options: dict[str, str], key: str, default: float, low: float, high: float
) -> float:
    """Pop number option ``key`` (``low``..``high``); NetdevError naming it when bad."""
    text = options.pop(key, None)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also rejects nan
        raise NetdevError(f'{name}: bad {key} "{text}" (expected a number {low}..{high})')
    return value


def queue_options(name: str, opts: dict[str, str]) -> tuple[int, int, int]:
    """Pop and check the options every queue-owning type shares: n_rxq, n_txq, numa_id."""
    return (
        int_option(name, opts, "n_rxq", 1, 1, MAX_QUEUES),
        int_option(name, opts, "n_txq", 1, 1, MAX_QUEUES),
        int_option(name, opts, "numa_id", 0, 0, 2**31 - 1),
    )


def reject_unknown(name: str, options: Mapping[str, str]) -> None:
    """NetdevError naming the first (sorted) option nobody consumed, if any."""
    if options:
        key = min(options)
        raise NetdevError(f'{name}: unknown option "{key}" (value "{options[key]}")')


@attrs.frozen
class _DummyOptions:
    """A dummy device's options, checked: (n_rxq, n_txq, numa_id), async tx, captures."""

    queues: tuple[int, int, int]
    async_polls: int
    fail_rate: float
    rx_pcap: str | None
    tx_pcap: str | None


@attrs.define
class _PendingTx:
    """A batch accepted by an asynchronous send and not yet transmitted."""

    batch: list[Packet]
    polls: int = 0
    #: Held by a stalled queue (fault injection): never completes, forcing drops it.
    stalled: bool = False


class DummyNetdev(Netdev):
    """``dummy``: a software port polled by the main task."""

    type = "dummy"
    pmd = False
    notifies_rx = True

    #: Frames one rx queue holds; more are dropped (``rx_dropped``).
    MAX_RX_QUEUE = 4096
    #: Transmitted frames kept for :meth:`sent_frames`.
    SENT_RING = 1024

    def __init__(self, name: str, options: Mapping[str, str] | None = None) -> None:
        # Set before the base constructor, which calls set_config.
        self._open = False
        self._rxqs: list[deque[Packet]] = [deque()]
        self._rx_events: dict[int, trio.Event] = {}
        self._sent: deque[Packet] = deque(maxlen=self.SENT_RING)
        self._rx_pcap: PcapWriter | None = None
        self._tx_pcap: PcapWriter | None = None
        self._pending: dict[int, deque[_PendingTx]] = {}
        self._async_polls = 0
        self._async_fail_ppm = 0
        self._forced = 0
        self.requested_numa_id = 0
        #: Why capturing stopped, when a capture file could not be written.
        self.pcap_error: str | None = None
        #: Receive-side offload classifier: frame -> (mark or None, taken by hardware).
        self.rx_offload: RxClassifier | None = None
        #: Injected faults (``netdev-dummy/fault``, tests only); None: none.
        self.fault: NetdevFaults | None = None
        #: The options as last set (what a PMD worker's side is opened with).
        self.options: dict[str, str] = {}
        #: Where transmitted frames go instead of a capture file: a PMD
        #: worker hands them to the daemon, the one writer of the file.
        self.tx_capture: Callable[[list[bytes]], None] | None = None
        #: In the daemon: hands ``netdev-dummy/receive`` frames to the PMD
        #: worker polling rx queue ``qid``; False when no worker polls it.
        self.rx_forward: Callable[[int, list[bytes]], Awaitable[bool]] | None = None
        super().__init__(name, options)
        self._open = True

    # -- configuration ------------------------------------------------------

    @classmethod
    def _parse_options(cls, name: str, options: Mapping[str, str]) -> _DummyOptions:
        opts = dict(options)
        queues = queue_options(name, opts)
        async_polls = int_option(name, opts, "tx_async_polls", 0, 0, 2**31 - 1)
        fail_rate = float_option(name, opts, "tx_async_fail_rate", 0.0, 0.0, 1.0)
        pcap, rx_path, tx_path = (opts.pop(k, None) for k in ("pcap", "rxq_pcap", "tx_pcap"))
        if pcap is not None:
            if rx_path is not None or tx_path is not None:
                raise NetdevError(f"{name}: pcap cannot be combined with rxq_pcap or tx_pcap")
            rx_path = tx_path = pcap
        reject_unknown(name, opts)
        return _DummyOptions(queues, async_polls, fail_rate, rx_path or None, tx_path or None)

    @classmethod
    def validate_options(cls, name: str, options: Mapping[str, str]) -> list[str]:
        parsed = cls._parse_options(name, options)
        for path in {parsed.rx_pcap, parsed.tx_pcap} - {None}:
            try:
                check_appendable(str(path))
            except PcapError as exc:
                raise NetdevError(f"{name}: {exc}") from None
        return []

    def set_config(self, options: Mapping[str, str]) -> None:
        if self.fault is not None and self.fault.vanished:
            raise NetdevError(f"{self.name}: {os.strerror(VANISHED_ERRNO)}")
        parsed = self._parse_options(self.name, options)
        self._set_pcaps(parsed.rx_pcap, parsed.tx_pcap)
        self.options = dict(options)
        self._async_polls = parsed.async_polls
        self._async_fail_ppm = round(parsed.fail_rate * _PPM)
        requested = parsed.queues
        if requested != (self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id):
            self.requested_n_rxq, self.requested_n_txq, self.requested_numa_id = requested
            if self._open:
                self.reconfigure_required = True
            else:
                self.reconfigure()

    def _set_pcaps(self, rx_path: str | None, tx_path: str | None) -> None:
        """Open the capture files that changed (all or nothing), then close the old ones."""
        old = {w for w in (self._rx_pcap, self._tx_pcap) if w is not None}
        current = {w.path: w for w in old if not w.closed}
        opened: dict[str, PcapWriter] = {}
        try:
            for path in (rx_path, tx_path):
                if path is not None and path not in current and path not in opened:
                    opened[path] = PcapWriter(path, "a")
        except PcapError as exc:
            for writer in opened.values():
                writer.close()
            raise NetdevError(f"{self.name}: {exc}") from None
        writers = current | opened
        self._rx_pcap = writers[rx_path] if rx_path is not None else None
        self._tx_pcap = writers[tx_path] if tx_path is not None else None
        if opened:
            self.pcap_error = None
        for writer in old - {self._rx_pcap, self._tx_pcap}:
            writer.close()

    def reconfigure(self) -> None:
        n = self.requested_n_rxq
        old = self._rxqs
        self.stats.rx_dropped += sum(len(q) for q in old[n:])
        self._rxqs = [old[i] if i < len(old) else deque() for i in range(n)]
        self.numa_id = self.requested_numa_id
        super().reconfigure()
        self._wake_all()

    def status(self) -> str:
        error = ""
        if self.fault is not None and self.fault.vanished:
            error = f'error="{os.strerror(VANISHED_ERRNO)}"'
        if not self.pmd:
            return error
        # OVS main shows the requested values (OVS 3.1 showed configured and
        # requested queue counts under longer names).
        return (
            f"n_rxq={self.requested_n_rxq}, n_txq={self.requested_n_txq}, "
            f"numa_id={self.requested_numa_id}" + (f", {error}" if error else "")
        )

    def simulated_nic(self) -> SimulatedNic | None:
        return self

    # -- receive ------------------------------------------------------------

    async def receive(self, frames: Sequence[bytes], qid: int = 0) -> None:
        """``netdev-dummy/receive``: queue here, or in the PMD worker that polls ``qid``."""
        forward = self.rx_forward
        vanished = self.fault is not None and self.fault.vanished
        if forward is None or vanished or not frames or not 0 <= qid < len(self._rxqs):
            self.inject(frames, qid)
            return
        if self._rx_pcap is not None:
            self._capture(self._rx_pcap, frames)
        if not await forward(qid, list(frames)):
            self.inject(frames, qid, capture=False)

    def inject(
        self, frames: Sequence[bytes], qid: int = 0, *, offload: bool = True, capture: bool = True
    ) -> int:
        """Queue ``frames`` for receive on rx queue ``qid``; return how many were queued.

        Frames beyond the queue's room are dropped (``rx_dropped``).  The rx
        capture sees every frame, dropped or not, as in OVS.  With an
        ``rx_offload`` classifier set (a hardware-simulating offload provider
        owns the port) each frame is offered to it first, as a NIC would:
        it may come back with a flow mark, or be taken over by "hardware"
        and never reach the queue (``offload=False``: the hardware's own
        re-injection, not classified again).
        """
        if not 0 <= qid < len(self._rxqs):
            raise NetdevError(f"{self.name}: no rx queue {qid} (device has {len(self._rxqs)})")
        if self.fault is not None and self.fault.vanished:
            self.stats.rx_dropped += len(frames)  # nothing arrives on a vanished device
            return 0
        if self._rx_pcap is not None and frames and capture:
            self._capture(self._rx_pcap, frames)
        queue = self._rxqs[qid]
        room = max(self.MAX_RX_QUEUE - len(queue), 0)
        classify = self.rx_offload if offload else None
        if classify is None:
            queue.extend(Packet(frame) for frame in frames[:room])
        else:
            for frame in frames[:room]:
                mark, stolen = classify(frame)
                if not stolen:
                    queue.append(Packet(frame, mark))
        self.stats.rx_dropped += max(len(frames) - room, 0)
        event = self._rx_events.pop(qid, None)
        if event is not None:
            event.set()
        if self.rx_listener is not None:
            self.rx_listener()
        return min(len(frames), room)

    def queued(self, qid: int = 0) -> int:
        """Frames waiting on rx queue ``qid``."""
        return len(self._rxqs[qid]) if 0 <= qid < len(self._rxqs) else 0

    def recv(self, qid: int) -> list[Packet]:
        try:
            queue = self._rxqs[qid]
        except IndexError:
            return []
        if not queue:
            return []
        if self.fault is not None and not self.fault.allow_recv(self, qid):
            return []
        if len(queue) <= NETDEV_MAX_BURST:
            batch = list(queue)
            queue.clear()
        else:
            pop = queue.popleft
            batch = [pop() for _ in range(NETDEV_MAX_BURST)]
        stats = self.stats
        stats.rx_packets += len(batch)
        stats.rx_bytes += sum(map(len, map(_DATA, batch)))
        return batch

    def discard(self, qid: int) -> int:
        """Lose the next burst of rx queue ``qid`` as a receive error would; how many."""
        queue = self._rxqs[qid]
        n = min(len(queue), NETDEV_MAX_BURST)
        for _ in range(n):
            queue.popleft()
        self.stats.rx_errors += n
        return n

    async def wait_readable(self, qid: int) -> None:
        # A stalled or vanished device is not readable, whatever it has queued.
        while not (0 <= qid < len(self._rxqs) and self._rxqs[qid]) or (
            self.fault is not None and self.fault.blocks_recv
        ):
            event = self._rx_events.get(qid)
            if event is None:
                event = self._rx_events[qid] = trio.Event()
            await event.wait()

    def set_fault(self, fault: NetdevFaults | None) -> None:
        """Install (or with None remove) injected faults; waiting PMDs look again."""
        self.fault = fault
        self._wake_all()

    def _wake_all(self) -> None:
        events, self._rx_events = self._rx_events, {}
        for event in events.values():
            event.set()
        if self.rx_listener is not None:
            self.rx_listener()

    # -- transmit -----------------------------------------------------------

    def send(self, qid: int, batch: list[Packet], concurrent: bool = False) -> int:
        if self.fault is not None and batch:
            rc = self.fault.on_send(self, qid, batch)
            if rc is not None:
                return rc
        if self._async_polls and batch:
            self._pending.setdefault(qid, deque()).append(_PendingTx(batch))
            return EINPROGRESS
        return self._transmit(batch)

    def _transmit(self, batch: list[Packet]) -> int:
        """Count, capture and keep ``batch``'s frames; EMSGSIZE if some had a bad size."""
        # Per batch, not per packet: this is the sink of the pipeline benchmark.
        sizes = [len(packet.data) for packet in batch]
        rc = OK
        max_size = self.mtu + ETH_HEADER_LEN
        # One frame size (steady traffic): count() compares by identity first,
        # far cheaper than min() and max().
        if sizes and (
            not ETH_HEADER_LEN <= sizes[0] <= max_size
            if sizes.count(sizes[0]) == len(sizes)
            else min(sizes) < ETH_HEADER_LEN or max(sizes) > max_size
        ):
            # Rare: re-check each frame, allowing 4 more bytes for an 802.1Q tag as OVS does.
            good = [
                p
                for p in batch
                if ETH_HEADER_LEN
                <= len(p.data)
                <= max_size + (VLAN_HEADER_LEN if p.data[12:14] == _TPID_8021Q else 0)
            ]
            if len(good) < len(batch):
                self.stats.tx_errors += len(batch) - len(good)
                rc = errno.EMSGSIZE
                batch = good
                sizes = [len(p.data) for p in batch]
        stats = self.stats
        stats.tx_packets += len(sizes)
        stats.tx_bytes += sum(sizes)
        # Packets, not frames: the frames are only read back by tests.
        self._sent.extend(batch)
        if self._tx_pcap is not None and batch:
            self._capture(self._tx_pcap, list(map(_DATA, batch)))
        elif self.tx_capture is not None and batch:
            self.tx_capture(list(map(_DATA, batch)))
        return rc

    def capture_sent(self, frames: list[bytes]) -> None:
        """Write frames a PMD worker transmitted to this port's capture file."""
        if self._tx_pcap is not None and frames:
            self._capture(self._tx_pcap, frames)

    # -- PMD worker processes -------------------------------------------------

    def export_to_worker(self, qids: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
        # Capture files stay with the daemon (one writer per file): the
        # worker sends transmitted frames back, and received frames are
        # captured here before they are handed to the worker.
        options = {k: v for k, v in self.options.items() if k not in _PCAP_OPTIONS}
        state = {
            "options": options,
            "mtu": self.mtu,
            "tx_capture": self._tx_pcap is not None,
            # Fault injection (tests only): the worker's side fails alike.
            "fault": self.fault.spec if self.fault is not None else None,
        }
        return state, []

    @classmethod
    def open_in_worker(cls, name: str, state: Mapping[str, Any], fds: Sequence[int]) -> Netdev:
        netdev = cls(name, state["options"])
        netdev.mtu = state["mtu"]
        return netdev

    def hold(self, qid: int, batch: list[Packet]) -> None:
        """Keep ``batch`` pending on ``qid`` for good: a stalled transmit queue."""
        self._pending.setdefault(qid, deque()).append(_PendingTx(batch, stalled=True))

    def process_async(self, qid: int, force: bool) -> int:
        pending = self._pending.get(qid)
        if not pending:
            return OK
        if not force:
            head = pending[0]
            head.polls += 1
            if head.stalled or head.polls < self._async_polls:
                return EINPROGRESS
            pending.popleft()
            rc = self._transmit(head.batch)
            return EINPROGRESS if pending else rc
        rc = OK
        while pending:
            tx = pending.popleft()
            batch = tx.batch
            if tx.stalled or self._forced_completion_fails():
                self.stats.tx_dropped += len(batch)
                rc = ASYNC_FAIL_ERRNO
            else:
                rc = self._transmit(batch) or rc
        return rc

    def _forced_completion_fails(self) -> bool:
        self._forced += 1
        k, ppm = self._forced, self._async_fail_ppm
        return (k * ppm) // _PPM > ((k - 1) * ppm) // _PPM

    def pending_async(self, qid: int) -> int:
        """Batches accepted by asynchronous send on ``qid`` and not yet finished."""
        return len(self._pending.get(qid, ()))

    def sent_frames(self) -> list[bytes]:
        """The last transmitted frames (up to :attr:`SENT_RING`), oldest first."""
        return list(map(_DATA, self._sent))

    def clear_sent(self) -> None:
        self._sent.clear()

    # -- capture and teardown -----------------------------------------------

    def _capture(self, writer: PcapWriter, frames: Iterable[bytes]) -> None:
        try:
            writer.write_batch(frames)
        except PcapError as exc:
            # Losing the capture must not take the data path down with it.
            self.pcap_error = str(exc)
            writer.close()
            if self._rx_pcap is writer:
                self._rx_pcap = None
            if self._tx_pcap is writer:
                self._tx_pcap = None

    def close(self) -> None:
        for writer in {w for w in (self._rx_pcap, self._tx_pcap) if w is not None}:
            writer.close()
        self._rx_pcap = self._tx_pcap = None
        for queue in self._rxqs:
            self.stats.rx_dropped += len(queue)
            queue.clear()
        for pending in self._pending.values():
            self.stats.tx_dropped += sum(len(tx.batch) for tx in pending)
        self._pending.clear()
        self._wake_all()


class DummyPmdNetdev(DummyNetdev):
    """``dummy-pmd``: a software port polled by PMD tasks."""

    type = "dummy-pmd"
    pmd = True


class DummyInternalNetdev(DummyNetdev):
    """``dummy-internal``: the datapath's own port and the bridges' local ports.

    Like OVS's, it is a full dummy device (``netdev-dummy/receive br0`` works);
    nothing injected means nothing received, and what it sends is dropped.
    """

    type = "dummy-internal"
    pmd = False


# -- netdev-dummy/receive ------------------------------------------------------------

_HEX_FRAME = re.compile(r"(?:[ .\t\r\n]*[0-9a-fA-F]{2})+[ .\t\r\n]*\Z")


def parse_hex_frame(text: str) -> bytes | None:
    """The frame written as hex bytes (spaces, dots allowed between bytes), or None.

    None also when it is shorter than an Ethernet header, as OVS's
    ``eth_from_hex`` refuses those.
    """
    if not _HEX_FRAME.match(text):
        return None
    frame = bytes.fromhex(re.sub(r"[ .\t\r\n]", "", text))
    return frame if len(frame) >= ETH_HEADER_LEN else None


def register_commands(registry: CommandRegistry, find_port: Callable[[str], Netdev | None]) -> None:
    """Register ``netdev-dummy/receive``; ``find_port`` finds a datapath port's netdev."""

    async def receive(ctx: CommandContext, args: Sequence[str]) -> str:
        netdev = find_port(args[0])
        if not isinstance(netdev, DummyNetdev):
            raise CommandError("no such dummy netdev")
        k, qid = 1, 0
        if len(args) > k + 1 and args[k] == "--qid":
            try:
                qid = int(args[k + 1], 10)
            except ValueError:
                qid = -1
            if not 0 <= qid < netdev.n_rxq:
                raise CommandError("bad rx queue id.")
            k += 2
        # Parse every packet before queueing any, so a bad one queues nothing.
        frames: list[bytes] = []
        i = k
        while i < len(args):
            frame = parse_hex_frame(args[i])
            if frame is None:
                flow, size = args[i], None
                if i + 1 < len(args) and args[i + 1] == "--len":
                    try:
                        size = int(args[i + 2], 10) if i + 2 < len(args) else 0
                    except ValueError:
                        size = 0
                    if size < ETH_TOTAL_MIN:
                        raise CommandError("too small packet len")
                    i += 2
                try:
                    frame = compose_packet(parse_odp_key(flow), size)
                except ValueError:
                    raise CommandError("bad packet or flow syntax") from None
            frames.append(frame)
            i += 1
        await netdev.receive(frames, qid)
        return ""

    registry.register(
        "netdev-dummy/receive",
        "name [--qid queue_id] packet|flow [--len packet_len]",
        2,
        UNLIMITED,
        receive,
        mutating=True,
    )
