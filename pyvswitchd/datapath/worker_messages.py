"""What the daemon and a PMD worker process say to each other.

Every message is an attrs class pickled over the worker's channel
(:mod:`.channel`).  The daemon drives: it starts the worker with
:class:`Init`, hands it poll lists with :class:`Reload` (OVS's reload
handshake, acknowledged by :class:`Reloaded`), pushes the knobs PMDs read
live with :class:`Knobs`, answers upcalls and asks for what shared memory
does not carry (:class:`Request` / :class:`Reply`).  The worker speaks
first only for upcalls, log records, coverage counter names and
transmitted frames that go to a capture file.

Requests are small attrs classes too (``DumpFlows``, ``PutFlow``, ...);
the worker's dispatch table is keyed by their type.
"""

from __future__ import annotations

from typing import Any

import attrs

from .clock import ClockState
from .perf import PerfLogConfig

# -- daemon -> worker ----------------------------------------------------------


@attrs.frozen
class Knobs:
    """Datapath settings a PMD reads every iteration (no reload needed)."""

    tx_flush_interval_us: int = 0
    perf_metrics: bool = False
    emc_insert_min: int = 0
    smc_enable: bool = False
    max_sleep_us: int = 0
    interval_ns: int = 5_000_000_000
    max_idle_ms: int = 10000
    perf_log: PerfLogConfig = attrs.field(factory=PerfLogConfig)
    #: The daemon's clock as ``time/stop`` and ``time/warp`` left it.
    clock: ClockState = attrs.field(factory=ClockState)


@attrs.frozen
class OffloadSetup:
    """What a worker needs to open its own copy of the offload providers."""

    enabled: bool
    global_config: dict[str, str]
    interfaces: dict[str, dict[str, str]]
    #: Fault injection on the dummy provider (tests only): its current setting.
    fault: Any = None


@attrs.frozen
class Init:
    """The first message: who the worker is.  Carries the stats block's memfd."""

    core_id: int
    numa_id: int
    thread_name: str
    knobs: Knobs
    #: Module name -> (lowest level any destination logs, rate limiting on).
    log_levels: dict[str, tuple[int, bool]]
    offload: OffloadSetup | None = None
    #: Whether fault injection commands exist (their state is sent per port).
    fault_injection: bool = False
    #: The coverage counters a predecessor published, in slot order: a
    #: replacement defines them first, so the slots keep their meaning.
    coverage_names: tuple[str, ...] = ()


@attrs.frozen
class PortSpec:
    """One port a worker polls or transmits on, and how to open its side of it.

    ``state`` is what the netdev type exported (picklable); ``n_fds`` of
    the descriptors sent with the :class:`Reload` belong to this port, in
    port order.  ``generation`` changes whenever the daemon re-exported the
    port (queues changed, reconfigured), telling the worker to reopen it.
    """

    port_no: int
    name: str
    type: str
    stats_slot: int
    generation: object
    state: dict[str, Any]
    n_fds: int = 0


@attrs.frozen
class Reload:
    """A new poll list and tx port set (and whether to end instead)."""

    seq: int
    ports: tuple[PortSpec, ...] = ()
    #: (port_no, qid) in polling order; position i publishes in rxq slot i.
    poll: tuple[tuple[int, int], ...] = ()
    #: port_no -> tx queue id.
    tx: dict[int, int] = attrs.field(factory=dict)
    isolated: bool = False
    #: The offload providers' setup (None: offload off), applied at the reload point.
    offload: OffloadSetup | None = None
    exit: bool = False


@attrs.frozen
class LogLevels:
    levels: dict[str, tuple[int, bool]]


@attrs.frozen
class Request:
    id: int
    body: Any


@attrs.frozen
class UpcallAnswer:
    seq: int
    #: One per key: a Decision, the index of an earlier key whose megaflow
    #: covers this one, or None (lost).
    answers: tuple[Any, ...]


# -- worker -> daemon ----------------------------------------------------------------


@attrs.frozen
class Ready:
    pid: int


@attrs.frozen
class Reloaded:
    """The reload happened; cumulative figures of the rx queues it let go of.

    ``released`` holds (port_no, qid, packets, cycles) for every queue of
    the previous poll list: their slots start again from zero.
    """

    seq: int
    released: tuple[tuple[int, int, int, int], ...] = ()


@attrs.frozen
class Reply:
    id: int
    value: Any = None
    error: str | None = None


@attrs.frozen
class UpcallQuestion:
    seq: int
    keys: tuple[tuple[int, ...], ...]


@attrs.frozen
class LogRecord:
    module: str
    level: int
    text: str


@attrs.frozen
class CoverageNames:
    """The worker's coverage counters, in stats block slot order (sent as it grows)."""

    names: tuple[str, ...]


@attrs.frozen
class Captured:
    """Frames a worker transmitted on a port with a capture file (one writer: the daemon)."""

    port_no: int
    frames: tuple[bytes, ...]


# -- requests (the body of a Request; the worker answers with a Reply) --------------


@attrs.frozen
class PerfDetail:
    """Histograms and, with ``histories``, the iteration and millisecond histories."""

    histories: bool = False


@attrs.frozen
class ClearStats:
    """``pmd-stats-clear``: start a new measurement at the next iteration."""


@attrs.frozen
class CountFlows:
    pass


@attrs.frozen
class DumpFlows:
    """Up to ``limit`` flow records from position ``start`` of the table."""

    start: int
    limit: int


@attrs.frozen
class FindFlow:
    """Whether the table holds the megaflow (key, mask)."""

    key: tuple[int, ...]
    mask: tuple[int, ...]


@attrs.frozen
class GetFlow:
    ufid: str


@attrs.frozen
class PutFlow:
    """Install, or change the actions of, the megaflow ``unmasked_key``/``mask``."""

    unmasked_key: tuple[int, ...]
    mask: tuple[int, ...]
    actions: tuple[Any, ...]
    packet_type_exact: bool = True


@attrs.frozen
class DeleteFlow:
    key: tuple[int, ...]
    mask: tuple[int, ...]


@attrs.frozen
class FlushFlows:
    """Delete every flow (``del-flows``, a port's removal with ``port_nos``)."""

    port_nos: frozenset[int] | None = None


@attrs.frozen
class AgeFlows:
    """Revalidator pass, first half: expire idle flows, report which MACs to refresh.

    Flows of bridges not in ``bridges`` are deleted.  The reply is the
    revalidator's AgeResult.
    """

    max_idle_ms: int
    bridges: frozenset[str]


@attrs.frozen
class AffectedFlows:
    """Revalidator pass, second half: flows whose NORMAL decision may have changed.

    ``changes`` maps a bridge to the (VID, MAC) entries that changed, or to
    None when everything may have.  The reply lists (key, mask, bridge,
    outputs) of the bridge flows that depend on them.
    """

    changes: dict[str, frozenset[tuple[int, int]] | None]


@attrs.frozen
class SetOutputs:
    """New output ports for flows (key, mask) after revalidation."""

    updates: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]


@attrs.frozen
class Inject:
    """Frames for rx queue ``qid`` of a dummy port this worker polls."""

    port_no: int
    qid: int
    frames: tuple[bytes, ...]


@attrs.frozen
class FlowRecord:
    """A megaflow as the worker reports it (what the dump commands format)."""

    ufid: str
    key: tuple[int, ...]
    full_key: tuple[int, ...]
    mask: tuple[int, ...]
    actions: tuple[Any, ...]
    packets: int
    bytes: int
    #: The clock's seconds at the last packet (the worker's clock is the daemon's), 0: never.
    used: float
    packet_type_exact: bool


@attrs.frozen
class SetNetdevFault:
    """Fault injection: the fault setting of a dummy port (tests only)."""

    port_no: int
    spec: Any


@attrs.frozen
class NetdevFaultCounts:
    port_no: int


@attrs.frozen
class SetOffloadFault:
    """Fault injection: the setting of the worker's dummy offload providers."""

    spec: Any


@attrs.frozen
class OffloadFaultRuns:
    pass


@attrs.frozen
class OffloadCounters:
    """Each offload provider copy's per-port counters (for ``dpif/offload/show``)."""
