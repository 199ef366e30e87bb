"""The netdev provider API: what a network device type implements.

A netdev is a named device with receive queues and transmit queues.  The
datapath polls each rx queue (from a PMD task, or from the main task for
types that are not PMD-polled) with :meth:`Netdev.recv`, and hands output
batches to :meth:`Netdev.send`.  A send may complete asynchronously: it
returns EINPROGRESS and the datapath later calls :meth:`Netdev.process_async`
for that queue until it stops returning EINPROGRESS (the per-PMD deferred
work ring drives this).

Return codes are errno values: 0 for success, ``errno.EINPROGRESS`` for
"accepted, completion pending", any other positive errno for failure.  No
method raises on a data-path call; configuration errors raise NetdevError.

Threading: everything runs in the daemon's single trio thread.  ``recv``,
``send`` and ``process_async`` must not block; a type that needs to wait for
readiness implements :meth:`Netdev.wait_readable`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias

import attrs

from ..odp.packet import Packet

if TYPE_CHECKING:
    from ..observe.vlog import VlogModule

#: Return codes of send / process_async, named so call sites read as intent.
OK = 0
EINPROGRESS = errno.EINPROGRESS
EAGAIN = errno.EAGAIN


#: A simulated NIC's receive classifier: frame -> (flow mark or None, taken by hardware).
RxClassifier: TypeAlias = Callable[[bytes], tuple[int | None, bool]]


class SimulatedNic(Protocol):
    """The NIC side of a device whose hardware offload is simulated in software.

    A hardware-simulating offload provider that owns the device's port sets
    ``rx_offload``, which then sees every received frame first, as a NIC
    would; frames its pipeline cannot finish come back to software receive
    through ``inject(..., offload=False)``, not classified again.  See
    :meth:`Netdev.simulated_nic`.
    """

    rx_offload: RxClassifier | None

    def inject(self, frames: Sequence[bytes], qid: int = 0, *, offload: bool = True) -> int: ...


class NetdevError(Exception):
    """A netdev cannot be opened or configured as asked; the text says why."""


@attrs.define
class NetdevStats:
    """Per-device counters (``dpctl/show -s``, Prometheus)."""

    rx_packets: int = 0
    rx_bytes: int = 0
    rx_dropped: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0


class Netdev:
    """Base class of every netdev type.

    Subclasses set ``type`` and ``pmd`` and override what they support.  The
    constructor takes the device name and its ``options`` (OVSDB
    Interface options, strings); bad options raise NetdevError.
    """

    #: The type name used in configuration (``type = "dummy-pmd"``).
    type: ClassVar[str] = ""
    #: True when PMD tasks poll this type's rx queues; False: the main task does.
    pmd: ClassVar[bool] = False
    #: True when :meth:`wait_readable` returns as soon as a queue may have
    #: packets (a kernel file descriptor): a PMD whose queues are all such
    #: waits on them when idle instead of spinning.
    waitable: ClassVar[bool] = False
    #: True when the type takes the ``userspace-tso`` option, which the
    #: datapath sets from other_config ``userspace-tso-enable``.
    tso_capable: ClassVar[bool] = False
    #: True when the device calls :attr:`rx_listener` as frames arrive on any
    #: of its rx queues (software devices filled from the daemon's own thread).
    notifies_rx: ClassVar[bool] = False
    #: Told that frames arrived (only types with :attr:`notifies_rx`): the
    #: datapath's main task sleeps until one of its ports says so.
    rx_listener: Callable[[], None] | None = None
    #: Types backed by a kernel interface: its index, and why the device is
    #: out of use (it vanished); None while it is fine.  The datapath opens
    #: such a port anew when its interface comes back.
    ifindex: int = 0
    error: str | None = None

    def __init__(self, name: str, options: Mapping[str, str] | None = None) -> None:
        self._init_base(name)
        self.set_config(dict(options or {}))

    def _init_base(self, name: str) -> None:
        """The attributes every netdev has; for :meth:`open_in_worker`, which skips ``__init__``."""
        self.name = name
        self.stats = NetdevStats()
        self.numa_id = 0
        self.n_rxq = 1
        self.n_txq = 1
        self.requested_n_rxq = 1
        self.requested_n_txq = 1
        self.mtu = 1500
        #: Set when the device changed in a way that needs a datapath reconfigure.
        self.reconfigure_required = False
        #: Where the device logs problems it finds on the data path; set by the
        #: datapath after opening (None in unit tests: then nothing is logged).
        self.log: VlogModule | None = None

    # -- configuration ------------------------------------------------------

    def set_config(self, options: Mapping[str, str]) -> None:
        """Apply Interface options; raise NetdevError on a bad one.

        Changes that alter queue counts or NUMA placement set
        ``reconfigure_required``; the datapath then calls :meth:`reconfigure`
        while no PMD polls this device.
        """
        if options:
            raise NetdevError(f"{self.name}: unknown options: {', '.join(sorted(options))}")

    @classmethod
    def validate_options(cls, name: str, options: Mapping[str, str]) -> list[str]:
        """Check ``options`` for a device ``name`` of this type without opening it.

        Raises NetdevError naming the first bad option (what opening would
        raise); returns warnings about what opening would meet but that
        does not make the configuration wrong (a kernel interface that does
        not exist yet).  ``--check-config``, start-up, reloads and
        ``config/set`` call it, so a bad option is refused everywhere alike.
        """
        if options:
            raise NetdevError(f"{name}: unknown options: {', '.join(sorted(options))}")
        return []

    def reconfigure(self) -> None:
        """Apply requested queue counts; called only while no PMD polls the device."""
        self.n_rxq = self.requested_n_rxq
        self.n_txq = self.requested_n_txq
        self.reconfigure_required = False

    def device_gone(self, why: str) -> None:
        """The kernel deleted the device's interface: stop using it, say ``why`` (once).

        Only types backed by a kernel interface have one to lose.
        """

    def status(self) -> str:
        """Text after the type in ``dpctl/show`` (``dummy-pmd: n_rxq=1, n_txq=1, numa_id=0``)."""
        return ""

    # -- data path ----------------------------------------------------------

    def recv(self, qid: int) -> list[Packet]:
        """Up to NETDEV_MAX_BURST packets from rx queue ``qid`` (empty list: none)."""
        return []

    def send(self, qid: int, batch: list[Packet], concurrent: bool = False) -> int:
        """Transmit ``batch`` on tx queue ``qid``; 0, EINPROGRESS or an errno.

        The netdev owns the packets from here on; on EINPROGRESS it keeps
        them until :meth:`process_async` reports completion.
        """
        self.stats.tx_dropped += len(batch)
        return errno.EOPNOTSUPP

    def process_async(self, qid: int, force: bool) -> int:
        """Advance asynchronous transmit on ``qid``.

        With ``force`` false it may return EINPROGRESS (still pending).  With
        ``force`` true it must finish: complete or drop what is pending,
        account for it, and return 0 or an errno (non-zero = dropped).
        """
        return OK

    def rx_fd(self, qid: int) -> int | None:
        """A file descriptor that polls readable when rx queue ``qid`` may have packets.

        Only :attr:`waitable` types have one; None when there is none (or
        the device is out of use).  An idle PMD waits on all of its queues'
        descriptors with one epoll set, far cheaper than a task per queue;
        a descriptor that keeps waking it with nothing to receive (a pending
        error) makes it fall back to :meth:`wait_readable`, which deals with
        the error.
        """
        return None

    async def wait_readable(self, qid: int) -> None:
        """Return when rx queue ``qid`` may have packets (for idle PMDs that sleep).

        The default never returns: such devices are simply polled.
        """
        import trio

        await trio.sleep_forever()

    def simulated_nic(self) -> SimulatedNic | None:
        """The device's simulated NIC side (the dummy types); None for real devices."""
        return None

    # -- PMD worker processes -----------------------------------------------

    def export_to_worker(self, qids: Sequence[int]) -> tuple[dict[str, Any], list[int]]:
        """What a PMD worker process needs to poll rx queues ``qids`` and to transmit.

        Returns picklable state and file descriptors (which the worker
        receives duplicated; this object keeps its own).  The worker
        rebuilds its side of the device with :meth:`open_in_worker`.  Every
        PMD-polled type implements both; the default refuses.
        """
        raise NetdevError(f"{self.name}: a {self.type} port cannot be polled by a PMD process")

    @classmethod
    def open_in_worker(cls, name: str, state: Mapping[str, Any], fds: Sequence[int]) -> Netdev:
        """The worker's side of a device exported by :meth:`export_to_worker`.

        It serves ``recv`` for the exported queues and ``send`` and
        ``process_async``; its ``stats`` count what this process did.
        """
        raise NetdevError(f"{name}: a {cls.type} port cannot be polled by a PMD process")

    def close(self) -> None:
        """Release the device; no other method is called afterwards."""
