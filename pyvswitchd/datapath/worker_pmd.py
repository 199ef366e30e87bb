"""The daemon's side of a PMD worker process: start, drive, supervise, restart.

:class:`WorkerPmd` stands for one PMD in the datapath (it has the same
reading surface as an in-process :class:`~.pmd.Pmd`: core, NUMA node, poll
list, counters) while the PMD itself runs in a worker process
(:mod:`.worker`).  A trio task per worker (:meth:`WorkerPmd.supervise`):

* starts the process (``python -m pyvswitchd.datapath.worker``) with one
  end of a socket pair and hands it its shared counter block;
* reads what the worker says: upcalls, answered at once from the daemon's
  bridges; log records, written with the PMD's thread name; replies to
  requests; frames for capture files;
* notices at once when the process ends.  One that ends without being
  asked to is logged at ERR and replaced on the same core, with the same
  poll list, within a second; the other PMDs never stop.  Its counters
  stay: they live in the block, which the daemon owns and the new worker
  continues from.

Counters are read from the block (:mod:`.stats_block`) without asking the
worker; what the block does not carry is a :meth:`WorkerPmd.request`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from ..observe.vlog import Level
from . import stats_block as sb
from . import worker_messages as msg
from .channel import ChannelClosed, TrioEndpoint, socket_pair
from .perf import N_STATS
from .perf_snapshot import PerfSnapshot
from .port import PMD_INTERVAL_MAX, Rxq
from .worker_spawner import WorkerProcess, WorkerSpawner, describe_exit

if TYPE_CHECKING:
    from ..observe.vlog import VlogModule
    from .port import Port

#: How long a new worker may take to say it is ready, s.
START_TIMEOUT = 20.0
#: How long a worker may take to acknowledge a reload, s.  It acknowledges
#: at the end of its current iteration, so only a stuck worker takes long.
RELOAD_TIMEOUT = 10.0
#: How long a request may take before the daemon gives up on it, s.
REQUEST_TIMEOUT = 10.0
#: How long an exiting worker gets before it is killed, s.
EXIT_TIMEOUT = 5.0
#: Pause before restarting a worker that died (less than OVS's reload
#: latency matters here: the goal is under a second).
RESTART_DELAY = 0.05


class WorkerHost(Protocol):
    """What a worker's supervisor needs from the datapath."""

    def upcall(self, keys: Sequence[tuple[int, ...]]) -> Sequence[Any]: ...
    def worker_knobs(self, pmd: WorkerPmd) -> msg.Knobs: ...
    def worker_log_levels(self) -> dict[str, tuple[int, bool]]: ...
    def worker_offload(self) -> msg.OffloadSetup | None: ...
    def export_port(
        self, pmd: WorkerPmd, port: Port, qids: Sequence[int]
    ) -> tuple[msg.PortSpec, list[int]]: ...
    def worker_captured(self, port_no: int, frames: Sequence[bytes]) -> None: ...
    def worker_log(self, pmd: WorkerPmd, record: msg.LogRecord) -> None: ...
    def worker_coverage_names(self, pmd: WorkerPmd, names: Sequence[str]) -> None: ...
    def worker_died(self, pmd: WorkerPmd, why: str) -> None: ...
    def port(self, port_no: int) -> Port | None: ...


class WorkerGone(Exception):
    """The worker ended (or was replaced) before it answered."""


@attrs.define(eq=False)
class _Waiter:
    event: trio.Event = attrs.field(factory=trio.Event)
    reply: msg.Reply | None = None


class RemotePerf:
    """A worker PMD's counters as of its last snapshot (``pmd.perf`` in the datapath)."""

    def __init__(self, pmd: WorkerPmd) -> None:
        self._pmd = pmd

    def get_all(self) -> list[int]:
        return self._pmd.view.perf_counters()

    @property
    def polling(self) -> bool:
        return bool(self._pmd.view.header[sb.POLLING])

    @property
    def iteration_cnt(self) -> int:
        return int(self._pmd.view.header[sb.ITERATIONS])

    @property
    def start_ms(self) -> int:
        return int(self._pmd.view.header[sb.START_MS])


class WorkerPmd:
    """One PMD running in its own process (see the module text)."""

    is_main = False

    def __init__(
        self,
        core_id: int,
        numa_id: int,
        serial: int,
        host: WorkerHost,
        log: VlogModule,
        spawner: WorkerSpawner,
        *,
        fault_injection: bool = False,
    ) -> None:
        self.core_id = core_id
        self.numa_id = numa_id
        self.serial = serial
        self.thread_name = f"pmd-c{core_id:02d}/id:{serial}"
        self._host = host
        self._log = log
        self._spawner = spawner
        self._fault_injection = fault_injection
        self.block = sb.StatsBlock.create(f"pyvswitchd-{self.thread_name}")
        #: The block as of the last :meth:`refresh`: every figure the daemon
        #: shows of this PMD comes from one such snapshot.
        self.view: sb.BlockView = self.block.snapshot()
        self.perf = RemotePerf(self)
        # Scheduling state the datapath owns (as it does for in-process PMDs).
        self.poll_list: list[Rxq] = []
        self.tx_ports: dict[int, int] = {}
        self.isolated = False
        self.static_tx_qid = 0
        self.max_sleep_us = 0
        self.overloaded = 0
        self.reload_requested = False
        self.reloads = 0
        # Refreshed from the block by refresh().
        self.intrvl_cycles = 0
        self.busy_intervals = [0] * PMD_INTERVAL_MAX
        self.busy_idx = 0
        self.last_interval = (0, 0, 0, 0)
        #: Closed 5 s intervals as of the last refresh (auto load balance reads each once).
        self.interval_seq = 0
        #: Port generations the worker last opened its side of the ports at.
        self._generations: dict[int, object] = {}
        self.coverage_names: tuple[str, ...] = ()
        self.pid: int | None = None
        self.restarts = 0
        self._proc: WorkerProcess | trio.Process | None = None
        self._endpoint: TrioEndpoint | None = None
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._reload_seq = 0
        self._acked_seq = 0
        self._acked = trio.Event()
        self._ready = trio.Event()
        self._exiting = False
        self._exited = trio.Event()
        self._last_reload: msg.Reload | None = None

    # -- identity -------------------------------------------------------------------

    def header(self) -> str:
        return f"pmd thread numa_id {self.numa_id} core_id {self.core_id}:"

    @property
    def name(self) -> str:
        return f"pmd-c{self.core_id:02d}"

    @property
    def flow_count(self) -> int:
        return int(self.view.header[sb.FLOWS])

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def __repr__(self) -> str:
        return f"WorkerPmd(core={self.core_id}, pid={self.pid}, rxqs={len(self.poll_list)})"

    # -- the supervising task ---------------------------------------------------------------

    async def supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the worker (restarting it when it dies) until asked to exit."""
        started = False
        try:
            while True:
                await self._run_once(None if started else task_status)
                started = True
                if self._exiting:
                    return
                self.restarts += 1
                await trio.sleep(RESTART_DELAY)
        finally:
            self._fail_waiters("the PMD worker ended")
            self._exited.set()

    async def _run_once(self, task_status: trio.TaskStatus[None] | None) -> None:
        ours, theirs = socket_pair()
        try:
            proc = await self._spawner.spawn(theirs.fileno())
        finally:
            theirs.close()
        self._proc = proc
        self.pid = proc.pid
        endpoint = self._endpoint = TrioEndpoint(ours)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, endpoint)
                with trio.fail_after(START_TIMEOUT):
                    await endpoint.send(self._init_message(), [self.block.fd])
                    await self._ready.wait()
                if self._last_reload is not None:
                    # A replacement: same poll list and tx ports as its predecessor.
                    await self._send_reload(self._last_reload, replay=True)
                if task_status is not None:
                    task_status.started()
                    task_status = None
                code = await proc.wait()
                nursery.cancel_scope.cancel()
        except (ChannelClosed, trio.TooSlowError) as exc:
            code = await self._kill()
            if task_status is not None:
                raise RuntimeError(f"{self.thread_name}: worker did not start ({exc})") from None
        finally:
            if proc.returncode is None:
                # Cancelled (the daemon is going down hard): no orphan PMD.
                await self._kill()
            endpoint.close()
            self._endpoint = None
            self._ready = trio.Event()
        if not self._exiting:
            why = describe_exit(code)
            self._fail_waiters(f"the PMD worker {why}")
            self._host.worker_died(self, why)

    async def _kill(self) -> int:
        proc = self._proc
        if proc is None:
            return -1
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            code = await proc.wait()
        return code

    def _init_message(self) -> msg.Init:
        return msg.Init(
            self.core_id,
            self.numa_id,
            self.thread_name,
            self._host.worker_knobs(self),
            self._host.worker_log_levels(),
            self._host.worker_offload(),
            self._fault_injection,
            self.coverage_names,
        )

    async def _read(self, endpoint: TrioEndpoint) -> None:
        host = self._host
        try:
            while True:
                item = await endpoint.receive()
                for fd in item.fds:
                    os.close(fd)
                m = item.message
                if isinstance(m, msg.UpcallQuestion):
                    answers = tuple(host.upcall(m.keys))
                    await endpoint.send(msg.UpcallAnswer(m.seq, answers))
                    self._ring()
                elif isinstance(m, msg.LogRecord):
                    host.worker_log(self, m)
                elif isinstance(m, msg.Reply):
                    waiter = self._waiters.pop(m.id, None)
                    if waiter is not None:
                        waiter.reply = m
                        waiter.event.set()
                elif isinstance(m, msg.Reloaded):
                    self._on_reloaded(m)
                elif isinstance(m, msg.CoverageNames):
                    self.coverage_names = m.names
                    host.worker_coverage_names(self, m.names)
                elif isinstance(m, msg.Captured):
                    host.worker_captured(m.port_no, m.frames)
                elif isinstance(m, msg.Ready):
                    self._ready.set()
        except ChannelClosed:
            pass  # the process is ending: its exit is what the supervisor waits for

    def _ring(self) -> None:
        self.block.ring_doorbell()

    async def _send(self, message: object, fds: Sequence[int] = ()) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            raise WorkerGone(f"{self.thread_name} is not running")
        try:
            await endpoint.send(message, fds)
        except ChannelClosed as exc:
            raise WorkerGone(f"{self.thread_name}: {exc}") from None
        self._ring()

    def _fail_waiters(self, why: str) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.reply = msg.Reply(0, error=why)
            waiter.event.set()

    # -- requests --------------------------------------------------------------------------

    async def request(self, body: object, *, limit: float = REQUEST_TIMEOUT) -> Any:
        """Ask the worker; its answer (WorkerGone if it ended, RuntimeError if it failed)."""
        request_id = next(self._ids)
        waiter = self._waiters[request_id] = _Waiter()
        try:
            await self._send(msg.Request(request_id, body))
            with trio.fail_after(limit):
                await waiter.event.wait()
        except trio.TooSlowError:
            raise WorkerGone(f"{self.thread_name} did not answer in {limit:g} s") from None
        finally:
            self._waiters.pop(request_id, None)
        reply = waiter.reply
        assert reply is not None
        if reply.error is not None:
            if reply.id == 0:
                raise WorkerGone(reply.error)
            raise RuntimeError(reply.error)
        return reply.value

    async def perf_detail(self, *, histories: bool) -> PerfSnapshot:
        value = await self.request(msg.PerfDetail(histories))
        assert isinstance(value, PerfSnapshot)
        return value

    async def send_knobs(self, knobs: msg.Knobs) -> None:
        # A replacement gets the current knobs with its Init.
        with contextlib.suppress(WorkerGone):
            await self._send(knobs)

    async def send_log_levels(self, levels: dict[str, tuple[int, bool]]) -> None:
        with contextlib.suppress(WorkerGone):
            await self._send(msg.LogLevels(levels))

    # -- reload handshake ----------------------------------------------------------------

    async def reload(self, poll_list: Sequence[Rxq], tx_ports: dict[int, int]) -> None:
        """Hand over a new poll list and tx ports; return once the worker uses them."""
        self.poll_list = list(poll_list)
        self.tx_ports = dict(tx_ports)
        self._reload_seq += 1
        reload = msg.Reload(
            self._reload_seq,
            poll=tuple((r.port_no, r.qid) for r in self.poll_list),
            tx=dict(tx_ports),
            isolated=self.isolated,
            offload=self._host.worker_offload(),
        )
        self._last_reload = reload
        await self._send_reload(reload)

    async def _send_reload(self, reload: msg.Reload, *, replay: bool = False) -> None:
        ports, fds = self._export_ports(reload)
        reload = attrs.evolve(reload, ports=tuple(ports))
        seq = reload.seq
        try:
            await self._send(reload, fds)
        except WorkerGone:
            if replay:
                raise ChannelClosed("the replacement worker went away") from None
            return  # dead: its replacement replays the last reload
        if replay:
            return  # the supervisor does not wait: the reader acknowledges
        with trio.move_on_after(RELOAD_TIMEOUT) as scope:
            while self._acked_seq < seq and self.alive:
                await self._acked.wait()
        if scope.cancelled_caught:
            self._log.err(f"{self.thread_name}: no reload acknowledgement in {RELOAD_TIMEOUT:g} s")

    def _export_ports(self, reload: msg.Reload) -> tuple[list[msg.PortSpec], list[int]]:
        by_port: dict[int, list[int]] = {no: [] for no in reload.tx}
        for port_no, qid in reload.poll:
            by_port.setdefault(port_no, []).append(qid)
        specs: list[msg.PortSpec] = []
        fds: list[int] = []
        rxq_ports = {r.port_no: r.port for r in self.poll_list}
        for port_no in sorted(by_port):
            port = rxq_ports.get(port_no) or self._host.port(port_no)
            if port is None:
                continue
            spec, port_fds = self._host.export_port(self, port, by_port[port_no])
            self._generations[port_no] = port.generation
            specs.append(spec)
            fds += port_fds
        return specs, fds

    def stale(self, ports: Mapping[int, Port]) -> bool:
        """Whether a port this worker uses changed since it opened its side of it."""
        return any(
            (port := ports.get(no)) is not None and port.generation != self._generations.get(no)
            for no in self.tx_ports
        )

    def _on_reloaded(self, m: msg.Reloaded) -> None:
        by_key = {(r.port_no, r.qid): r for r in self.poll_list}
        for port_no, qid, packets, cycles in m.released:
            rxq = by_key.get((port_no, qid))
            if rxq is not None:
                rxq.packets_base += packets
                rxq.cycles_base += cycles
        self.reloads += 1
        self._acked_seq = max(self._acked_seq, m.seq)
        self._acked.set()
        self._acked = trio.Event()
        self.busy_intervals = [0] * PMD_INTERVAL_MAX
        self.overloaded = 0

    async def request_exit(self) -> None:
        """End the worker cleanly: it flushes, drains and runs the offload exit hooks."""
        self._exiting = True
        self._reload_seq += 1
        with contextlib.suppress(WorkerGone):
            await self._send(msg.Reload(self._reload_seq, exit=True))
        proc = self._proc
        if proc is not None:
            with trio.move_on_after(EXIT_TIMEOUT):
                await proc.wait()
            if proc.returncode is None:
                self._log.err(f"{self.thread_name}: did not exit in {EXIT_TIMEOUT:g} s; killed")
                await self._kill()
        await self._exited.wait()

    def close(self) -> None:
        """Release the counter block (after the worker ended)."""
        self.block.close()

    # -- counters --------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Take a new snapshot of the block; True when a new 5 s interval closed."""
        view = self.view = self.block.snapshot()
        h = view.header
        self.intrvl_cycles = int(h[sb.INTRVL_CYCLES])
        self.busy_idx = int(h[sb.BUSY_IDX])
        self.busy_intervals = list(view.busy_intervals[:PMD_INTERVAL_MAX])
        for slot, rxq in enumerate(self.poll_list[: sb.MAX_RXQS]):
            curr, total, packets, idx, intervals = view.rxq(slot)
            rxq.cycles_curr = curr
            rxq.cycles_total = rxq.cycles_base + total
            rxq.packets = rxq.packets_base + packets
            rxq.intrvl_idx = idx
            rxq.intervals = intervals
        seq = int(h[sb.INTERVAL_SEQ])
        if seq == self.interval_seq:
            return False
        self.interval_seq = seq
        self.last_interval = (
            int(h[sb.LAST_IDLE]), int(h[sb.LAST_BUSY]), int(h[sb.LAST_SLEEP]),
            int(h[sb.LAST_OFFLOAD]),
        )  # fmt: skip
        return True

    def perf_raw(self) -> list[int]:
        return self.view.perf_raw()[:N_STATS]


def log_level(level: int) -> Level:
    return Level(level)
