"""A PMD worker process: one PMD, pinned to its core, forwarding on its own.

CPython runs one thread of Python at a time, so PMDs that forward in
parallel are processes.  The daemon starts one per core of
``pmd-cpu-mask`` (``python -m pyvswitchd.datapath.worker --channel-fd N``)
and drives it over the channel (:mod:`.channel`, messages in
:mod:`.worker_messages`).  Everything a PMD owns in OVS lives here: its
poll list and the netdev queues behind it, its flow table with EMC, SMC
and classifiers, its perf counters, its deferred work ring and its offload
providers' per-thread contexts.  What all PMDs share stays in the daemon:
ports and configuration, MAC learning and the NORMAL bridge, the offload
providers' global state.

The per-packet path never leaves the process.  The worker talks to the
daemon only between iterations (or while idle):

* a reload (OVS's handshake): at its reload point the PMD flushes its
  output and drains its work ring, then adopts the new poll list and tx
  ports, calls the offload lifecycle hooks, and acknowledges;
* a megaflow miss: the misses of one rx batch go to the daemon in one
  upcall, which answers with a megaflow per key (or "covered by an earlier
  key's"); the PMD installs them in its own table;
* requests (flow dumps and edits, histograms, packets for dummy ports,
  fault injection) are served at the end of the iteration in which the
  daemon's doorbell rang;
* counters go to the shared-memory block (:mod:`.stats_block`) at most
  every millisecond and before any sleep; log records go to the daemon,
  which writes them with this PMD's thread name.

Unlike the trio task the daemon used to run, the loop here is plain
Python: it blocks only in ``epoll`` (idle queues, load-based sleep, an
empty poll list), with the channel in the set so that a reload wakes it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from ..netdev.dummy import DummyNetdev
from ..netdev.faults import FaultSpec, NetdevFaults
from ..netdev.provider import Netdev
from ..netdev.registry import NetdevRegistry, default_registry
from ..observe.coverage import Coverage
from ..observe.vlog import Level, Vlog
from ..offload.dummy import DummyOffload
from ..offload.faults import OffloadFaults, OffloadFaultSpec
from . import stats_block as sb
from . import worker_messages as msg
from .channel import ChannelClosed, Received, SyncEndpoint
from .clock import Clock
from .defer import DeferHooks
from .dp_offload import DatapathOffload
from .dp_ports import DP_NAME
from .flow_table import FlowTable
from .gc_tuning import tune_gc
from .perf import N_STATS, PmdPerf
from .pipeline import FlowPipeline
from .pmd import NO_SLEEP, WAIT_RXQS, Pmd, TxPort
from .port import Port, Rxq
from .upcall import ExecutorCache
from .worker_requests import RequestHandler

#: Longest gap between two publications of the counters while busy, ns.
PUBLISH_INTERVAL_NS = 1_000_000
#: How long a PMD waits for the daemon's answer to an upcall before it
#: counts the batch's misses as lost, s.
UPCALL_TIMEOUT = 2.0
_tsc = time.perf_counter_ns


def set_process_name(name: str) -> None:
    # /proc/PID/comm holds 15 bytes; OVS's PMD names ("pmd-c00/id:7") fit.
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass


def pin_to_core(core_id: int) -> bool:
    """Run only on ``core_id`` when this machine has that CPU; whether it did."""
    try:
        allowed = os.sched_getaffinity(0)
        if core_id not in allowed:
            return False
        os.sched_setaffinity(0, {core_id})
    except OSError:
        return False
    return True


class WorkerPort:
    """A port as this worker holds it: its netdev side and where its counters go."""

    def __init__(self, spec: msg.PortSpec, netdev: Netdev, base: list[int]) -> None:
        self.spec = spec
        self.netdev = netdev
        self.port = Port(spec.port_no, netdev, None)
        #: Published value of the slot when this netdev was opened: counts
        #: of earlier netdevs of this port (or of a dead worker) continue.
        self.base = base


class Worker:
    """The PMD and everything around it in the worker process."""

    def __init__(self, endpoint: SyncEndpoint, netdevs: NetdevRegistry | None = None) -> None:
        self.endpoint = endpoint
        self.netdevs = netdevs or default_registry()
        first = endpoint.receive()
        init = first.message
        if not isinstance(init, msg.Init) or len(first.fds) != 1:
            raise RuntimeError(f"worker: expected Init with the stats block, got {init!r}")
        self.init = init
        self.block = sb.StatsBlock(first.fds[0], owner=False)
        if self.block.header[sb.SEQ] & 1:
            self.block.end_publish()  # a predecessor died mid-publication
        self.knobs = init.knobs
        #: The daemon's clock, as stopped and warped there (see set_knobs).
        self.clock = Clock()
        self.clock.set_state(init.knobs.clock)
        self.coverage = Coverage()
        # A replacement continues its predecessor's counts, slot for slot.
        previous = self.block.coverage_totals(len(init.coverage_names))
        for name, total in zip(init.coverage_names, previous, strict=True):
            self.coverage.define(name).total = total
        self.vlog = Vlog(init.thread_name, syslog_method="null")
        self.vlog.set_forwarder(self._forward_log)
        self.vlog.set_subprogram_name(init.thread_name)
        self._apply_log_levels(init.log_levels)
        self.log = self.vlog.module("dpif_netdev")
        self.ports: dict[int, WorkerPort] = {}
        self.executors = ExecutorCache()
        self._upcall_seq = 0
        self._reload: msg.Reload | None = None
        self._reload_fds: list[int] = []
        self._after_reload: list[Received] = []
        self._cov_names: tuple[str, ...] = init.coverage_names
        self.exiting = False
        # The kernel's parent-death signal follows the spawning *thread*
        # (trio spawns from a worker thread that may end), so the worker
        # watches its parent itself.
        self._parent = os.getppid()
        # Offload providers, this PMD's own copy: lifecycle hooks, per-iteration
        # work and simulated hardware run here, in the PMD's process.
        self.offload = DatapathOffload(DP_NAME, self.vlog, self.coverage, self._port)
        #: Fault injection (tests only): per dummy port, and of the dummy providers.
        self.netdev_faults: dict[int, NetdevFaults] = {}
        self.offload_faults = OffloadFaults(
            self.vlog.module("dpif_offload_dummy"), self.coverage.define("offload_fault_injected")
        )
        self.pmd = self._make_pmd()
        self.set_knobs(init.knobs)
        self._configure_offload(init.offload)
        self.requests = RequestHandler(self)
        self._channel_epoll = select.epoll()
        self._channel_epoll.register(endpoint.fileno(), select.EPOLLIN)
        self._rx_epoll: select.epoll | None = None
        self._doorbell = self.block.header[sb.DOORBELL]

    # -- set-up ----------------------------------------------------------------

    def _make_pmd(self) -> Pmd:
        cov = self.coverage
        perf = PmdPerf(log_config=self.knobs.perf_log, log=self.vlog.module("dpif_netdev_perf"))
        # Counters continue from what the block holds (a restarted worker).
        perf.n[:] = self.block.perf[:N_STATS]
        perf.zero[:] = self.block.perf_zero[:N_STATS]
        pipeline = self.pipeline = FlowPipeline(
            self._upcall, self.executors.make_flow, cov.define("datapath_drop_rx_invalid_packet")
        )
        offload = self.offload
        core_id = self.init.core_id
        table = FlowTable(
            self.knobs.emc_insert_min, offload.flow_observer(core_id), clock=self.clock
        )
        table.smc_enabled = self.knobs.smc_enable
        pmd = Pmd(
            core_id,
            self.init.numa_id,
            self,  # the knobs a PMD reads live: see tx_flush_interval_us, perf_metrics
            pipeline,
            perf,
            sent_counter=cov.define("netdev_sent"),
            received_counter=cov.define("netdev_received"),
            drop_counter=cov.define("datapath_drop_invalid_port"),
            netdev_error_counter=cov.define("datapath_drop_netdev_error"),
            log=self.log,
            make_hooks=lambda pmd: DeferHooks(
                pmd, offload_work=offload.pmd_work, offload_idle=offload.pmd_idle
            ),
            lifecycle=offload,
            flow_table=table,
            on_interval=self._on_interval,
            clock=self.clock,
        )
        pmd.interval_ns = self.knobs.interval_ns
        return pmd

    def _port(self, port_no: int) -> Port | None:
        wport = self.ports.get(port_no)
        return None if wport is None else wport.port

    def _configure_offload(self, setup: msg.OffloadSetup | None) -> None:
        """Open (or reconfigure) this worker's copy of the offload providers."""
        if setup is None:
            return
        ports = [wport.port for wport in self.ports.values()]
        self.offload.apply(setup.global_config, setup.interfaces, ports)
        self.set_offload_fault(setup.fault)
        enabled = self.offload.enabled
        self.pipeline.mark_lookup = self.offload.mark_lookup if enabled else None

    # PmdSettings, read by the PMD every iteration.
    @property
    def tx_flush_interval_us(self) -> int:
        return self.knobs.tx_flush_interval_us

    @property
    def perf_metrics(self) -> bool:
        return self.knobs.perf_metrics

    def set_knobs(self, knobs: msg.Knobs) -> None:
        self.knobs = knobs
        moved = knobs.clock != self.clock.state
        self.clock.set_state(knobs.clock)
        pmd = self.pmd
        pmd.max_sleep_us = knobs.max_sleep_us
        pmd.flow_table.emc.insert_min = knobs.emc_insert_min
        pmd.flow_table.smc_enabled = knobs.smc_enable
        pmd.perf.log_config.assign(knobs.perf_log)
        if knobs.interval_ns != pmd.interval_ns:
            pmd.set_interval(knobs.interval_ns)
        if moved:
            pmd.clock_moved()

    # -- logging -----------------------------------------------------------------

    def _forward_log(self, module: str, level: Level, text: str) -> None:
        # A closed channel means the daemon is gone: we notice soon and end.
        with contextlib.suppress(ChannelClosed):
            self.endpoint.send(msg.LogRecord(module, int(level), text))

    def _apply_log_levels(self, levels: dict[str, tuple[int, bool]]) -> None:
        self.vlog.apply_effective_levels(levels)

    # -- upcalls -------------------------------------------------------------------

    def _upcall(self, keys: Sequence[tuple[int, ...]]) -> Sequence[Any]:
        """Ask the daemon about a batch's misses; one answer per key (None: lost)."""
        self._upcall_seq += 1
        seq = self._upcall_seq
        try:
            self.endpoint.send(msg.UpcallQuestion(seq, tuple(keys)))
            deadline = time.monotonic() + UPCALL_TIMEOUT
            while True:
                item = self.endpoint.receive(timeout=max(deadline - time.monotonic(), 0))
                if item is None:
                    self.log.warn(f"upcall of {len(keys)} keys not answered in time; lost")
                    return [None] * len(keys)
                answer = item.message
                if isinstance(answer, msg.UpcallAnswer):
                    if answer.seq == seq:
                        return answer.answers
                    continue  # a late answer to a question we gave up on
                self.endpoint.set_aside(item)
        except ChannelClosed:
            self.exiting = True
            return [None] * len(keys)

    # -- the daemon's messages -----------------------------------------------------------

    def handle_messages(self, items: list[Received]) -> None:
        for item in items:
            message = item.message
            if self._reload is not None:
                # The daemon sent these after the reload: they apply to the
                # new poll list and ports, so they wait for the reload point.
                self._after_reload.append(item)
            elif isinstance(message, msg.Reload):
                # Adopted at the reload point, when nothing is in flight.
                self._reload = message
                self._reload_fds += item.fds
                self.pmd.reload_requested = True
            elif isinstance(message, msg.Request):
                self.requests.serve(message, item.fds)
            elif isinstance(message, msg.Knobs):
                self.set_knobs(message)
            elif isinstance(message, msg.LogLevels):
                self._apply_log_levels(message.levels)
            else:
                for fd in item.fds:
                    os.close(fd)

    def _check_doorbell(self) -> None:
        ring = self.block.header[sb.DOORBELL]
        if ring != self._doorbell:
            self._doorbell = ring
            self.handle_messages(self.endpoint.poll())

    # -- reload -------------------------------------------------------------------------

    def _apply_reload(self) -> None:
        reload, fds = self._reload, self._reload_fds
        self._reload, self._reload_fds = None, []
        if reload is None:
            return
        try:
            self._reload_now(reload, fds)
        finally:
            later, self._after_reload = self._after_reload, []
            self.handle_messages(later)

    def _reload_now(self, reload: msg.Reload, fds: list[int]) -> None:
        pmd = self.pmd
        released = self._release_rxqs()
        if reload.exit:
            pmd.exit_requested = True
            pmd.reload_point()
            self._close_ports(set(self.ports))
            self.exiting = True
            self.publish()
            self.endpoint.send(msg.Reloaded(reload.seq, released))
            return
        self._open_ports(reload.ports, fds)
        self._configure_offload(reload.offload)
        polls = []
        for port_no, qid in reload.poll:
            wport = self.ports[port_no]
            polls.append(_rxq(wport, qid))
        tx = {
            port_no: TxPort(self.ports[port_no].port, qid)
            for port_no, qid in reload.tx.items()
            if port_no in self.ports
        }
        pmd.isolated = reload.isolated
        pmd._pending = (polls, tx)
        pmd.reload_point()
        self.block.clear_rxqs()
        self._build_rx_epoll()
        self.publish()
        self.endpoint.send(msg.Reloaded(reload.seq, released))

    def _release_rxqs(self) -> tuple[tuple[int, int, int, int], ...]:
        out = []
        for rxq in self.pmd.poll_list:
            out.append((rxq.port_no, rxq.qid, rxq.packets, rxq.cycles_total + rxq.cycles_curr))
            rxq.packets = 0
        return tuple(out)

    def _open_ports(self, specs: Sequence[msg.PortSpec], fds: list[int]) -> None:
        wanted = {spec.port_no: spec for spec in specs}
        self._close_ports({no for no, wp in self.ports.items() if _stale(wp, wanted.get(no))})
        pos = 0
        for spec in specs:
            own = fds[pos : pos + spec.n_fds]
            pos += spec.n_fds
            if spec.port_no in self.ports:
                for fd in own:
                    os.close(fd)
                continue
            netdev = self.netdevs.open_in_worker(spec.type, spec.name, spec.state, own)
            netdev.log = self.vlog.module(
                "netdev_linux" if spec.type in _REAL_TYPES else "netdev_dummy"
            )
            wport = WorkerPort(spec, netdev, self.block.port(spec.stats_slot))
            self.ports[spec.port_no] = wport
            self._attach_port(netdev, spec)
            self.offload.port_added(wport.port)

    def set_netdev_fault(self, port_no: int, spec: FaultSpec | None) -> None:
        """Fault injection (tests only): this worker's side of a dummy port fails alike."""
        wport = self.ports.get(port_no)
        if wport is None or not isinstance(wport.netdev, DummyNetdev) or spec is None:
            return
        state = self.netdev_faults.get(port_no)
        if state is None:
            log = self.vlog.module("netdev_dummy")
            counter = self.coverage.define("netdev_fault_injected")
            state = NetdevFaults(wport.netdev.name, log, counter, announce=False)
            self.netdev_faults[port_no] = state
        state.set(spec)
        wport.netdev.set_fault(state if state.active else None)

    def set_offload_fault(self, spec: OffloadFaultSpec | None) -> None:
        """Fault injection (tests only): this worker's dummy offload providers fail alike."""
        if spec is None:
            return
        self.offload_faults.set(spec)
        collection = self.offload.collection
        for provider in collection.providers if collection is not None else ():
            if isinstance(provider, DummyOffload):
                provider.fault = self.offload_faults if spec.work != "none" else None

    def _attach_port(self, netdev: Netdev, spec: msg.PortSpec) -> None:
        self.set_netdev_fault(spec.port_no, spec.state.get("fault"))
        if isinstance(netdev, DummyNetdev) and spec.state.get("tx_capture"):
            port_no = spec.port_no

            def forward(frames: list[bytes]) -> None:
                # The daemon writes the capture file: one writer per file.
                self.endpoint.send(msg.Captured(port_no, tuple(frames)))

            netdev.tx_capture = forward

    def _close_ports(self, port_nos: set[int]) -> None:
        if not port_nos:
            return
        self.publish()
        for no in port_nos:
            wport = self.ports.pop(no)
            self.netdev_faults.pop(no, None)
            self.offload.port_removed(no)
            hooks = self.pmd.hooks
            if isinstance(hooks, DeferHooks):
                hooks.ring.drop_netdev(wport.netdev)
            wport.netdev.close()

    def _build_rx_epoll(self) -> None:
        if self._rx_epoll is not None:
            self._rx_epoll.close()
            self._rx_epoll = None
        fds = {rxq.netdev.rx_fd(rxq.qid) for rxq in self.pmd.poll_list}
        if not self.pmd.can_wait or None in fds:
            return
        epoll = select.epoll()
        epoll.register(self.endpoint.fileno(), select.EPOLLIN)
        for fd in fds:
            assert fd is not None
            try:
                epoll.register(fd, select.EPOLLIN)
            except OSError:
                epoll.close()
                return
        self._rx_epoll = epoll

    # -- counters ----------------------------------------------------------------------

    def _on_interval(self, pmd: Pmd) -> None:
        h = self.block.header
        # A pmd-stats-clear inside the interval makes its deltas negative.
        idle, busy, sleep, offload = (max(v, 0) for v in pmd.last_interval)
        h[sb.LAST_IDLE], h[sb.LAST_BUSY], h[sb.LAST_SLEEP], h[sb.LAST_OFFLOAD] = (
            idle,
            busy,
            sleep,
            offload,
        )
        h[sb.INTERVAL_SEQ] += 1

    def publish(self) -> None:
        """Copy every counter into the shared block (the daemon reads it there)."""
        pmd = self.pmd
        perf = pmd.perf
        block = self.block
        counters = self.coverage.counters()
        if len(counters) != len(self._cov_names):
            # Names first: the daemon must know a slot before it sees it count.
            self._cov_names = tuple(c.name for c in counters[: sb.MAX_COUNTERS])
            with contextlib.suppress(ChannelClosed):
                self.endpoint.send(msg.CoverageNames(self._cov_names))
        block.begin_publish()
        block.publish_perf(perf.n, perf.zero)
        h = block.header
        h[sb.ITERATIONS] = perf.iteration_cnt
        h[sb.START_MS] = perf.start_ms
        h[sb.POLLING] = int(perf.polling)
        h[sb.INTRVL_CYCLES] = pmd.intrvl_cycles
        h[sb.BUSY_IDX] = pmd.busy_idx
        h[sb.FLOWS] = len(pmd.flow_table)
        block.busy_intervals[: len(pmd.busy_intervals)] = _u64(pmd.busy_intervals)
        for slot, rxq in enumerate(pmd.poll_list[: sb.MAX_RXQS]):
            block.publish_rxq(
                slot, rxq.cycles_curr, rxq.cycles_total, rxq.packets, rxq.intrvl_idx, rxq.intervals
            )
        for wport in self.ports.values():
            values = sb.port_values(wport.netdev.stats)
            block.publish_port(
                wport.spec.stats_slot, [a + b for a, b in zip(values, wport.base, strict=True)]
            )
        self._publish_coverage()
        h[sb.PUBLISHED_NS] = _tsc()
        block.end_publish()

    def _publish_coverage(self) -> None:
        counters = self.coverage.counters()[: sb.MAX_COUNTERS]
        self.block.publish_coverage([c.total for c in counters])

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        # A PMD passes its reload point once as it starts, as OVS's does: the
        # offload providers' lifecycle hooks see it start with no poll list.
        self.pmd.reload_point()
        tune_gc()
        self.endpoint.send(msg.Ready(os.getpid()))
        self.publish()
        while not self.exiting:
            self._apply_reload()
            if self.exiting:
                break
            if not self.pmd.poll_list and not self.pmd.reload_requested:
                # An idle PMD waits for the daemon, as OVS's sleeps until a reload.
                self.handle_messages(self.endpoint.poll() or [self.endpoint.receive()])
                continue
            if self.pmd.poll_list:
                self._poll_loop()

    def _poll_loop(self) -> None:
        pmd = self.pmd
        header = self.block.header
        pmd.begin_polling()
        next_publish = 0
        try:
            while not self.exiting:
                start, rx, tx, offload_cycles = pmd.work()
                kind, bound_us = pmd.plan_sleep(start, rx)
                slept = 0
                if kind != NO_SLEEP:
                    self.publish()
                    t0 = _tsc()
                    self._sleep(kind, bound_us)
                    slept = _tsc() - t0
                if pmd.finish(start, rx, tx, slept, offload_cycles):
                    return
                if header[sb.DOORBELL] != self._doorbell:
                    self._check_doorbell()
                if start >= next_publish:
                    self.publish()
                    next_publish = start + PUBLISH_INTERVAL_NS
                    if os.getppid() != self._parent:
                        # The daemon is gone (killed): nobody reads our counters,
                        # and a switch without its control plane must not linger.
                        raise ChannelClosed("the daemon went away")
        finally:
            pmd.end_polling()
            self.publish()

    def _sleep(self, kind: int, bound_us: int) -> None:
        epoll = self._rx_epoll if kind == WAIT_RXQS and self._rx_epoll is not None else None
        if epoll is None:
            epoll = self._channel_epoll
        with contextlib.suppress(InterruptedError):
            epoll.poll(bound_us / 1e6)
        self._check_doorbell()

    def close(self) -> None:
        self._close_ports(set(self.ports))
        self._channel_epoll.close()
        if self._rx_epoll is not None:
            self._rx_epoll.close()
        self.block.close()
        self.endpoint.close()


_REAL_TYPES = frozenset(("afpacket", "system", "tap", "internal"))


def _stale(wport: WorkerPort, spec: msg.PortSpec | None) -> bool:
    return spec is None or spec.generation != wport.spec.generation


def _rxq(wport: WorkerPort, qid: int) -> Rxq:
    return Rxq(wport.port, qid)


def _u64(values: Sequence[int]) -> array[int]:
    """Words for the block (figures that a stats clear made negative count as 0)."""
    return array("Q", [v if v > 0 else 0 for v in values])


def main(argv: Sequence[str] | None = None, *, started: Callable[[], None] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyvswitchd-pmd")
    parser.add_argument("--channel-fd", type=int, required=True)
    args = parser.parse_args(argv)
    # The daemon decides when a PMD ends: a ^C in its terminal or systemd's
    # SIGTERM to the whole group must not cut a PMD off mid-flush.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.channel_fd)
    endpoint = SyncEndpoint(sock)
    worker: Worker | None = None
    try:
        worker = Worker(endpoint)
        set_process_name(worker.init.thread_name)
        pin_to_core(worker.init.core_id)
        if started is not None:
            started()
        worker.run()
    except ChannelClosed:
        return 0  # the daemon went away: nothing left to serve
    except BaseException as exc:  # report to the daemon, which logs it with our name
        text = "".join(traceback.format_exception(exc))
        with contextlib.suppress(ChannelClosed):
            endpoint.send(msg.LogRecord("dpif_netdev", int(Level.EMER), f"PMD failed:\n{text}"))
        print(text, file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
