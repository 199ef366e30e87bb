"""A PMD worker process driven by its supervisor, without the rest of the daemon."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from pyvswitchd.datapath import stats_block as sb
from pyvswitchd.datapath import worker_messages as msg
from pyvswitchd.datapath.port import Port
from pyvswitchd.datapath.worker_pmd import WorkerPmd
from pyvswitchd.datapath.worker_spawner import WorkerSpawner
from pyvswitchd.netdev.dummy import DummyPmdNetdev
from pyvswitchd.observe.vlog import Level, Vlog
from pyvswitchd.odp.flow_key import FULL_MASKS, IN_PORT

FRAME = bytes.fromhex("5054000000075054000000050800") + bytes(50)


@attrs.define
class FakeHost:
    """Every port in one flooding bridge; records what the worker said."""

    ports: dict[int, Port]
    upcalls: list[tuple[tuple[int, ...], ...]] = attrs.field(factory=list)
    logs: list[msg.LogRecord] = attrs.field(factory=list)
    deaths: list[str] = attrs.field(factory=list)
    generation: int = 0

    def upcall(self, keys: Sequence[tuple[int, ...]]) -> Sequence[Any]:
        self.upcalls.append(tuple(keys))
        out: list[Any] = []
        for key in keys:
            outputs = tuple(no for no in sorted(self.ports) if no != key[IN_PORT])
            out.append((FULL_MASKS, outputs, "br0"))
        return out

    def worker_knobs(self, pmd: WorkerPmd) -> msg.Knobs:
        return msg.Knobs(emc_insert_min=1)

    def worker_log_levels(self) -> dict[str, tuple[int, bool]]:
        return {"dpif_netdev": (int(Level.DBG), True)}

    def worker_offload(self) -> msg.OffloadSetup | None:
        return None

    def export_port(
        self, pmd: WorkerPmd, port: Port, qids: Sequence[int]
    ) -> tuple[msg.PortSpec, list[int]]:
        state, fds = port.netdev.export_to_worker(qids)
        spec = msg.PortSpec(
            port.port_no, port.name, port.type, port.port_no, self.generation, state, len(fds)
        )
        return spec, fds

    def worker_captured(self, port_no: int, frames: Sequence[bytes]) -> None:
        pass

    def worker_log(self, pmd: WorkerPmd, record: msg.LogRecord) -> None:
        self.logs.append(record)

    def worker_coverage_names(self, pmd: WorkerPmd, names: Sequence[str]) -> None:
        pass

    def worker_died(self, pmd: WorkerPmd, why: str) -> None:
        self.deaths.append(why)

    def port(self, port_no: int) -> Port | None:
        return self.ports.get(port_no)


@asynccontextmanager
async def worker(
    n_ports: int = 2, *, zygote: bool = True
) -> AsyncIterator[tuple[WorkerPmd, FakeHost]]:
    ports = {no: Port(no, DummyPmdNetdev(f"p{no}"), "br0") for no in range(1, n_ports + 1)}
    host = FakeHost(ports)
    vlog = Vlog("test", syslog_method="null")
    log = vlog.module("dpif_netdev")
    spawner = WorkerSpawner(log)
    pmd = WorkerPmd(0, 0, 7, host, log, spawner)
    async with trio.open_nursery() as nursery:
        if zygote:
            await nursery.start(spawner.run)
        await nursery.start(pmd.supervise)
        try:
            yield pmd, host
        finally:
            with trio.fail_after(10):
                await pmd.request_exit()
            pmd.close()
            nursery.cancel_scope.cancel()


async def wait_for(predicate: Any, limit: float = 10.0) -> None:
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)


def tx_packets(pmd: WorkerPmd, port_no: int) -> int:
    return pmd.block.port(port_no)[sb.PORT_FIELDS.index("tx_packets")]


@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "fresh"])
async def test_worker_is_named_and_forwards(zygote: bool) -> None:
    async with worker(zygote=zygote) as (pmd, host):
        assert pmd.pid is not None
        comm = await trio.Path(f"/proc/{pmd.pid}/comm").read_text()
        assert comm.strip() == "pmd-c00/id:7"
        rxq = host.ports[1].rxqs[0]
        await pmd.reload([rxq], {1: 0, 2: 0})
        await pmd.request(msg.Inject(1, 0, (FRAME,) * 5))
        await wait_for(lambda: tx_packets(pmd, 2) == 5)
        # One batch, one upcall: the later keys were covered by the first.
        assert len(host.upcalls) == 1
        assert await pmd.request(msg.CountFlows()) == 1
        pmd.refresh()
        counters = pmd.perf.get_all()
        assert sum(counters[:8]) >= 5


async def test_killed_worker_is_replaced_and_counts_continue() -> None:
    async with worker() as (pmd, host):
        rxq = host.ports[1].rxqs[0]
        await pmd.reload([rxq], {1: 0, 2: 0})
        await pmd.request(msg.Inject(1, 0, (FRAME,) * 3))
        await wait_for(lambda: tx_packets(pmd, 2) == 3)
        old = pmd.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        await wait_for(lambda: pmd.pid != old and pmd.alive, limit=5)
        assert host.deaths == ["was killed by SIGKILL"]
        # The replacement polls the same queue, and its counts add to the old ones.
        await wait_for(lambda: pmd.reloads >= 2)
        await pmd.request(msg.Inject(1, 0, (FRAME,) * 2))
        await wait_for(lambda: tx_packets(pmd, 2) == 5)
