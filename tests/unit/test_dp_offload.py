"""Offload providers wired into the datapath: lifecycle hooks, work, cycles, commands."""

from __future__ import annotations

import re

from pyvswitchd.datapath.perf import Stat
from tests.dp_harness import running_datapath


def config(hw_offload: bool) -> str:
    return (
        f'[other_config]\ndummy-numa = "0,0"\nhw-offload = {str(hw_offload).lower()}\n'
        '[[bridge]]\nname = "br0"\n[[bridge.port]]\nname = "p0"\ntype = "dummy-pmd"\n'
    )


LIFECYCLE = re.compile(
    r"pmd_thread_lifecycle; exit=(\w+), core=(\d+), numa=(\d+), cb=(0x[0-9a-f]+), ctx=(0x[0-9a-f]+)"
)


async def test_offload_work_runs_on_pmds_and_is_accounted() -> None:
    async with running_datapath(config(True), vlog_spec="dpif_offload_dummy:console:dbg") as h:
        counter = h.coverage.get("dummy_offload_do_work")
        assert counter is not None
        await h.wait_for(lambda: counter.total > 100)
        pmd = h.dp.pmds[0]
        await h.wait_for(lambda: pmd.perf.get(Stat.CYCLES_OFFLOAD) > 0)
        out = await h.call("dpif-netdev/pmd-perf-show", "-pmd", "0")
        assert re.search(r"  Offload cycles:\s+\d+  \(\s*\d+\.\d % of used cycles\)\n", out), out
        show = await h.call("dpif/offload/show")
        assert show.startswith("Globally enabled: true\nDatapaths:\novs-netdev:\n  dummy\n")
        # A reload hands the provider its own callback and context back.
        await h.call("dpif-netdev/pmd-rxq-rebalance")
        await h.reconfig(config(True).replace("dummy-numa", 'pmd-cpu-mask = "0x2"\ndummy-numa'))
    calls = LIFECYCLE.findall(h.log())
    core0 = [c for c in calls if c[1] == "0"]
    assert core0[0][0] == "false" and core0[0][3:] == ("0x0", "0x0")
    assert core0[-1][0] == "true"
    cb, ctx = core0[-1][3:]
    assert cb != "0x0" and ctx != "0x0"
    assert all(c[3:] == (cb, ctx) for c in core0[1:])


async def test_enabling_offload_at_run_time_reloads_every_pmd() -> None:
    async with running_datapath(config(False)) as h:
        counter = h.coverage.get("dummy_offload_do_work")
        assert (await h.call("dpif/offload/show")).startswith("Globally enabled: false")
        pmd = h.dp.pmds[0]
        reloads = pmd.reloads
        assert counter is None or counter.total == 0
        await h.reconfig(config(True))
        assert pmd.reloads > reloads
        counter = h.coverage.get("dummy_offload_do_work")
        assert counter is not None
        await h.wait_for(lambda: counter.total > 0)
        # Turning it off again needs a restart, as in OVS.
        await h.reconfig(config(False))
        assert "hw-offload configuration changed; restart required" in h.log_lines("dpif_offload")
        assert (await h.call("dpif/offload/show")).startswith("Globally enabled: true")
        assert "dummy_x" in await h.call("dpif/offload/classes")
