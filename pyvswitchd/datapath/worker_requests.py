"""A PMD worker's answers to the daemon's requests.

The daemon asks for what the shared counter block does not carry:
histograms and histories, the worker's megaflows (dumps, ``dpctl``
edits, the revalidator's two passes), and it hands over packets for the
dummy ports this worker polls.  Each request type has one handler here;
requests are served between two iterations of the PMD, so a handler sees
the flow table at rest and may change it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..netdev.dummy import DummyNetdev
from . import worker_messages as msg
from .flow_table import DpFlow
from .perf_snapshot import PerfSnapshot
from .revalidator import Affected, AgeResult, affected_flows, age_flows, set_outputs

if TYPE_CHECKING:
    from .worker import Worker


def flow_record(flow: DpFlow) -> msg.FlowRecord:
    return msg.FlowRecord(
        flow.ufid,
        flow.key,
        flow.full_key,
        flow.mask,
        flow.actions,
        flow.packets,
        flow.bytes,
        flow.used,
        flow.packet_type_exact,
    )


class RequestHandler:
    """Serves :class:`~.worker_messages.Request` messages for one worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._handlers: dict[type, Callable[[Any], Any]] = {
            msg.PerfDetail: self.perf_detail,
            msg.ClearStats: self.clear_stats,
            msg.CountFlows: lambda _: len(self.table),
            msg.DumpFlows: self.dump_flows,
            msg.FindFlow: lambda r: self.table.find(r.key, r.mask) is not None,
            msg.GetFlow: self.get_flow,
            msg.PutFlow: self.put_flow,
            msg.DeleteFlow: self.delete_flow,
            msg.FlushFlows: self.flush_flows,
            msg.AgeFlows: self.age_flows,
            msg.AffectedFlows: self.affected_flows,
            msg.SetOutputs: self.set_outputs,
            msg.Inject: self.inject,
            msg.SetNetdevFault: lambda r: worker.set_netdev_fault(r.port_no, r.spec),
            msg.NetdevFaultCounts: self.netdev_fault_counts,
            msg.SetOffloadFault: lambda r: worker.set_offload_fault(r.spec),
            msg.OffloadFaultRuns: lambda _: worker.offload_faults.runs.faults,
            msg.OffloadCounters: lambda _: worker.offload.worker_counters(),
        }

    @property
    def table(self) -> Any:
        return self.worker.pmd.flow_table

    def serve(self, request: msg.Request, fds: list[int]) -> None:
        for fd in fds:  # no request takes descriptors
            os.close(fd)
        handler = self._handlers.get(type(request.body))
        if handler is None:
            reply = msg.Reply(request.id, error=f"unknown request {type(request.body).__name__}")
        else:
            try:
                reply = msg.Reply(request.id, handler(request.body))
            except Exception as exc:  # a bug here must not end the PMD
                self.worker.log.err(
                    f"request {type(request.body).__name__} failed: "
                    + "".join(traceback.format_exception_only(exc)).strip()
                )
                reply = msg.Reply(request.id, error=str(exc) or type(exc).__name__)
        self.worker.endpoint.send(reply)

    # -- statistics -----------------------------------------------------------

    def perf_detail(self, req: msg.PerfDetail) -> PerfSnapshot:
        return PerfSnapshot.of(self.worker.pmd.perf, histories=req.histories)

    def clear_stats(self, req: msg.ClearStats) -> None:
        self.worker.pmd.perf.request_clear()
        self.worker.publish()

    # -- flows ------------------------------------------------------------------

    def dump_flows(self, req: msg.DumpFlows) -> list[msg.FlowRecord]:
        flows = list(self.table.flows.values())[req.start : req.start + req.limit]
        return [flow_record(f) for f in flows]

    def get_flow(self, req: msg.GetFlow) -> msg.FlowRecord | None:
        flow = self.table.by_ufid(req.ufid)
        return None if flow is None else flow_record(flow)

    def put_flow(self, req: msg.PutFlow) -> None:
        self.table.put(req.unmasked_key, req.mask, req.actions, req.packet_type_exact)

    def delete_flow(self, req: msg.DeleteFlow) -> bool:
        flow = self.table.find(req.key, req.mask)
        if flow is None:
            return False
        self.table.remove(flow)
        return True

    def flush_flows(self, req: msg.FlushFlows) -> int:
        table = self.table
        return int(table.flush() if req.port_nos is None else table.remove_ports(req.port_nos))

    # -- revalidation ------------------------------------------------------------

    def age_flows(self, req: msg.AgeFlows) -> AgeResult:
        expired = self.worker.coverage.define("revalidate_flow_expired")
        return age_flows(self.table, req.max_idle_ms, req.bridges, expired)

    def affected_flows(self, req: msg.AffectedFlows) -> list[Affected]:
        return affected_flows(self.table, req.changes)

    def set_outputs(self, req: msg.SetOutputs) -> int:
        return set_outputs(self.table, req.updates, self.worker.executors)

    # -- dummy ports ---------------------------------------------------------------

    def inject(self, req: msg.Inject) -> int:
        wport = self.worker.ports.get(req.port_no)
        if wport is None or not isinstance(wport.netdev, DummyNetdev):
            raise ValueError(f"port {req.port_no} is not a dummy port of this PMD")
        return wport.netdev.inject(list(req.frames), req.qid)

    def netdev_fault_counts(self, req: msg.NetdevFaultCounts) -> tuple[int, int, int, int]:
        state = self.worker.netdev_faults.get(req.port_no)
        return (0, 0, 0, 0) if state is None else state.counts()
