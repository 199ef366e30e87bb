#!/usr/bin/env python3
"""Packets per second through one PMD, by traffic kind, against a raw-Python baseline.

Runs the real datapath in-process (one PMD, trio, the same code the daemon
runs): a ``traffic-source`` port feeds 64-byte UDP frames as fast as it is
polled into the flow pipeline, which forwards them to a ``dummy-pmd`` sink.

Traffic kinds:

* ``emc``      — 16 flows: after warm-up every packet is an EMC hit;
* ``megaflow`` — 60k L3/L4 flows over 4 MAC pairs: few megaflows, the EMC
  thrashes, nearly every packet is a megaflow (dpcls) hit;
* ``upcall``   — every frame has a MAC never seen before: every packet is an
  upcall that installs a megaflow (measured over the first pass);
* ``emc-async`` — ``emc`` into a sink whose every send returns EINPROGRESS
  and completes on the next ``process_async``: each output batch goes
  through the PMD's deferred work ring (compare with ``emc``).

The machine is shared and noisy, so each kind runs ``--runs`` times and the
median is reported, together with a baseline measured in the same run: a
raw Python loop doing the least any Python switch must do per packet (one
dict lookup and one list append per frame, 32-frame batches).  The ratio
to the baseline is the figure to compare across machines.

Usage: python benchmarks/pipeline_bench.py [--seconds 3] [--runs 3] [--kinds emc,megaflow,upcall]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyvswitchd import config
from pyvswitchd.datapath.dp import Datapath
from pyvswitchd.datapath.gc_tuning import tune_gc
from pyvswitchd.datapath.perf import Stat
from pyvswitchd.datapath.pmd import Pmd
from pyvswitchd.datapath.worker_pmd import WorkerPmd
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp.actions import Output

SINK_MAC = "02:00:00:00:00:fe"
KINDS = {
    "emc": f'flows = 16, dst_mac = "{SINK_MAC}"',
    "megaflow": f'flows = 60000, macs = 4, dst_mac = "{SINK_MAC}"',
    "upcall": f'flows = 60000, dst_mac = "{SINK_MAC}", count = 60000',
    # EMC traffic again, into a sink whose transmit completes asynchronously
    # (on the next process_async): the cost of the deferred work ring.
    "emc-async": f'flows = 16, dst_mac = "{SINK_MAC}"',
}
#: Options of the sink port, by kind.
SINK_OPTIONS = {"emc-async": 'tx_async_polls = "1"'}
BRIDGE = """
[other_config]
pmd-cpu-mask = "0x1"
max-idle = 60000
[[bridge]]
name = "br0"
"""
SOURCE_PORT = """
[[bridge.port]]
name = "src0"
type = "traffic-source"
options = {{ {source} }}
"""
SINK_PORT = """
[[bridge.port]]
name = "sink0"
type = "dummy-pmd"
options = {{ {sink} }}
"""


def sink_learning_frame() -> bytes:
    """A broadcast from the sink's MAC: the switch learns it, then forwards only there."""
    return bytes.fromhex("ff" * 6 + SINK_MAC.replace(":", "")) + b"\x08\x06" + bytes(46)


def received(pmd: Pmd | WorkerPmd) -> int:
    """Packets the PMD received so far (a worker's as of a fresh snapshot)."""
    if isinstance(pmd, WorkerPmd):
        pmd.refresh()
    return pmd.perf.get_all()[Stat.RECV]


async def measure_kind(kind: str, seconds: float, processes: bool = False) -> float:
    vlog = Vlog("bench", console=io.StringIO(), syslog_method="null")
    dp = Datapath(vlog, Coverage(), default_registry(), pmd_processes=processes)
    async with trio.open_nursery() as nursery:
        await nursery.start(dp.run)
        # The bridge learns the sink's MAC before the source exists: traffic
        # that started first would be flooded (to br0 as well) until the
        # revalidator's next pass turned its flows into unicast ones.
        sink_text = SINK_PORT.format(sink=SINK_OPTIONS.get(kind, ""))
        text = BRIDGE + SOURCE_PORT.format(source=KINDS[kind]) + sink_text
        await dp.apply_config(config.loads(BRIDGE + sink_text))
        sink = dp.port_by_name("sink0").netdev
        await sink.receive([sink_learning_frame()])  # type: ignore[attr-defined]
        sink_port = dp.port_by_name("sink0").port_no
        sink_mac = int(SINK_MAC.replace(":", ""), 16)
        # The PMD signals nothing: poll the learning table.
        while dp.normal["br0"].mac_learning.lookup(0, sink_mac) is None:  # noqa: ASYNC110
            await trio.sleep(0.01)
        # The upcall kind's source starts stopped (count=1), so that all its
        # 60k new MACs are measured, after the warm-up.
        first = text.replace("count = 60000", "count = 1") if kind == "upcall" else text
        await dp.apply_config(config.loads(first))
        await trio.sleep(0.2 if kind != "megaflow" else 1.5)  # warm-up
        pmd = dp.pmds[0]
        if kind == "upcall":
            await dp.apply_config(config.loads(text))
        if kind != "upcall":
            # Steady state: every flow of the source's traffic goes to the sink only.
            src_port = dp.port_by_name("src0").port_no
            flows = dict(dp.thread_flows())[pmd]
            outputs = {
                tuple(flow.actions)
                async for page in flows.dump()
                for flow in page
                if flow.full_key[0] == src_port
            }
            if outputs != {(Output(sink_port),)}:
                raise SystemExit(f"{kind}: not in steady state, flows output {outputs}")
        start_rx = received(pmd)
        if kind == "upcall":
            # The clock starts at the first new frame: the source builds its
            # 60k frames when its port reopens, in this process for an
            # in-process PMD (before apply_config returns) but in the worker
            # for a PMD process, and that set-up is not upcall handling.
            with trio.move_on_after(30):
                while received(pmd) == start_rx:  # noqa: ASYNC110
                    await trio.sleep(0.0005)
            start_rx = received(pmd)
        start = time.perf_counter()
        if kind == "upcall":
            # A fixed number of new MACs: time until the last one went through.
            target = start_rx + 59000
            with trio.move_on_after(seconds * 30):
                # The PMD signals nothing: poll its counter.
                while received(pmd) < target:  # noqa: ASYNC110
                    await trio.sleep(0.005)
            if received(pmd) < target:
                raise SystemExit("upcall: the 60k frames did not all arrive in time")
        else:
            await trio.sleep(seconds)
        elapsed = time.perf_counter() - start
        packets = received(pmd) - start_rx
        await dp.shutdown()
        nursery.cancel_scope.cancel()
    return packets / elapsed


IDLE_CONFIG = """
[other_config]
pmd-cpu-mask = "0x1"
hw-offload = {offload}
[[bridge]]
name = "br0"
[[bridge.port]]
name = "p0"
type = "dummy-pmd"
"""


async def measure_iteration_cost(mode: str, seconds: float) -> float:
    """Cycles (ns) per idle PMD iteration: offload off, dummy's callback, or a no-op one."""
    vlog = Vlog("bench", console=io.StringIO(), syslog_method="null")
    dp = Datapath(vlog, Coverage(), default_registry())
    async with trio.open_nursery() as nursery:
        await nursery.start(dp.run)
        offload = "false" if mode == "off" else "true"
        await dp.apply_config(config.loads(IDLE_CONFIG.format(offload=offload)))
        pmd = dp.pmds[0]
        nodes = dp.offload._contexts[0].nodes if mode != "off" else []
        saved = [node.callback for node in nodes]
        if mode == "noop":
            for node in nodes:
                node.callback = lambda core, numa, ctx: None
        await trio.sleep(0.2)
        n0, it0 = pmd.perf.get_all(), pmd.perf.iteration_cnt
        await trio.sleep(seconds)
        n1, it1 = pmd.perf.get_all(), pmd.perf.iteration_cnt
        for node, callback in zip(nodes, saved, strict=True):
            node.callback = callback  # the provider checks it gets its own back at exit
        await dp.shutdown()
        nursery.cancel_scope.cancel()
    kinds = (Stat.CYCLES_ITER_IDLE, Stat.CYCLES_ITER_BUSY, Stat.CYCLES_OFFLOAD)
    cycles = sum(n1[k] - n0[k] for k in kinds)
    return cycles / max(it1 - it0, 1)


def measure_baseline(seconds: float) -> float:
    """Raw Python: per frame one dict lookup and one append, in 32-frame batches."""
    frames = [bytes(64) + i.to_bytes(4, "big") for i in range(16)]
    table = {f: 1 for f in frames}
    batch = (frames * 2)[:32]
    out: list[bytes] = []
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            for frame in batch:
                if table.get(frame) is not None:
                    out.append(frame)
            out.clear()
            n += 32
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinds", default="emc,megaflow,upcall,emc-async")
    parser.add_argument(
        "--modes",
        default="task",
        help="comma list: task (the PMD as a trio task of this process, as unit tests run "
        "it) and/or process (a PMD worker process, as the daemon runs it)",
    )
    parser.add_argument(
        "--offload-cost",
        action="store_true",
        help="instead: cycles per idle PMD iteration without/with an offload work callback",
    )
    args = parser.parse_args()
    if args.offload_cost:
        print(f"CPython {sys.version.split()[0]}, {args.runs} runs x {args.seconds} s, medians")
        for mode, label in (
            ("off", "hw-offload=false"),
            ("dummy", "dummy provider callback"),
            ("noop", "no-op callback"),
        ):
            runs = [trio.run(measure_iteration_cost, mode, args.seconds) for _ in range(args.runs)]
            print(
                f"{label:26s} {statistics.median(runs):8.0f} ns/iteration   "
                f"runs [{', '.join(f'{r:.0f}' for r in runs)}]"
            )
        return
    tune_gc()  # as the daemon does once it is up
    kinds = args.kinds.split(",")
    modes = args.modes.split(",")
    print(f"CPython {sys.version.split()[0]}, {args.runs} runs x {args.seconds} s, medians")
    baseline_runs = []
    results: dict[tuple[str, str], list[float]] = {(k, m): [] for k in kinds for m in modes}
    for _ in range(args.runs):
        baseline_runs.append(measure_baseline(args.seconds))
        for kind in kinds:
            # Modes alternate within a run: the machine's drift hits both alike.
            for mode in modes:
                pps = trio.run(measure_kind, kind, args.seconds, mode == "process")
                results[(kind, mode)].append(pps)
    baseline = statistics.median(baseline_runs)
    print(f"{'baseline (raw dict+append loop)':34s} {baseline:12,.0f} pps")
    for kind in kinds:
        for mode in modes:
            got = results[(kind, mode)]
            pps = statistics.median(got)
            runs = ", ".join(f"{r:,.0f}" for r in got)
            label = f"{kind} traffic, 1 PMD" + (f" ({mode})" if len(modes) > 1 else "")
            print(
                f"{label:34s} {pps:12,.0f} pps   "
                f"ratio to baseline {pps / baseline:.3f}   runs [{runs}]"
            )


if __name__ == "__main__":
    main()
