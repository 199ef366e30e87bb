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


ICMP = (
    "in_port(1),eth(src=50:54:00:00:00:{src},dst=50:54:00:00:00:{dst}),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


def two_ports(hw_offload: bool = True) -> str:
    return config(hw_offload) + '[[bridge.port]]\nname = "p1"\ntype = "dummy-pmd"\n'


async def test_partial_offload_hits_by_mark() -> None:
    async with running_datapath(two_ports()) as h:
        pmd = h.dp.pmds[0]
        # Unknown destination: the megaflow floods (p1 and br0), so it is only partially
        # offloadable: the NIC marks later packets and the PMD skips its lookups.
        await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        await h.wait_for(lambda: pmd.perf.get(Stat.MISS) == 1)
        assert h.dp.offload.flow_count() == 1
        await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        await h.wait_for(lambda: pmd.perf.get(Stat.PHWOL_HIT) == 1)
        out = await h.call("dpif-netdev/pmd-perf-show", "-pmd", "0")
        assert "  - PHWOL hits:                  1  ( 50.0 %)\n" in out
        p1 = h.dp.port_by_name("p1").netdev
        await h.wait_for(lambda: p1.stats.tx_packets == 2)
        # Deleting the megaflow removes it from the hardware too.
        await h.call("dpctl/del-flows")
        assert h.dp.offload.flow_count() == 0


async def test_full_offload_bypasses_the_pmd() -> None:
    async with running_datapath(two_ports()) as h:
        pmd = h.dp.pmds[0]
        p1 = h.dp.port_by_name("p1").netdev
        # Teach the switch that ...:07 lives on p1, so 05 -> 07 becomes unicast to p1.
        await h.call("netdev-dummy/receive", "p1", ICMP.format(src="07", dst="05"))
        await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        await h.wait_for(lambda: p1.stats.tx_packets == 1)
        p1_no = h.dp.port_by_name("p1").port_no
        # The revalidator turns the 05 -> 07 flood flow into unicast to p1 and
        # re-offers it to the hardware, which can now take it fully.
        await h.wait_for(
            lambda: any(
                [getattr(a, "port", None) for a in f.actions] == [p1_no]
                for f in pmd.flow_table
                if f.key[3] == 0x505400000005
            ),
            limit=5,
        )
        received = pmd.perf.get(Stat.RECV)
        for _ in range(3):
            await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        # The dummy provider's PMD work callback runs its "hardware": p1 gets them,
        # the PMD's software path never sees them.
        await h.wait_for(lambda: p1.stats.tx_packets == 4)
        assert pmd.perf.get(Stat.RECV) == received
        show = await h.call("dpif/offload/show")
        assert "rx_offload_full" in show or "full" in show


async def test_pmd_removed_by_mask_change_calls_exit_once() -> None:
    text = config(True).replace('dummy-numa = "0,0"', 'dummy-numa = "0,0"\npmd-cpu-mask = "0x1"')
    async with running_datapath(text, vlog_spec="dpif_offload_dummy:console:dbg") as h:
        counter = h.coverage.get("dummy_offload_do_work")
        assert counter is not None
        await h.wait_for(lambda: counter.total > 0)
        await h.reconfig(text.replace('"0x1"', '"0x2"'))
        assert list(h.dp.pmds) == [1]
        calls = LIFECYCLE.findall(h.log())
        assert [c[0] for c in calls if c[1] == "0"].count("true") == 1
        core1 = [c for c in calls if c[1] == "1"]
        assert [c[0] for c in core1] == ["false"] * len(core1) and core1[0][3:] == ("0x0", "0x0")


async def test_raising_work_callback_is_dropped_and_forwarding_goes_on() -> None:
    async with running_datapath(two_ports()) as h:
        pmd = h.dp.pmds[0]
        ctx = h.dp.offload._contexts[0]
        assert len(ctx.nodes) == 1

        def broken(core_id: int, numa_id: int, ctx: object) -> None:
            raise RuntimeError("simulated provider bug")

        ctx.nodes[0].callback = broken
        await h.wait_for(lambda: not ctx.nodes)
        assert any(
            "work callback failed" in line and "simulated provider bug" in line
            for line in h.log_lines("dpif_offload")
        )
        await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        p1 = h.dp.port_by_name("p1").netdev
        await h.wait_for(lambda: p1.stats.tx_packets == 1)
        assert pmd.perf.get(Stat.RECV) == 1


async def test_per_port_priority_none_keeps_a_port_in_software() -> None:
    text = (
        two_ports().replace(
            'name = "p0"\ntype = "dummy-pmd"\n',
            'name = "p0"\ntype = "dummy-pmd"\nother_config = { hw-offload-priority = "none" }\n',
        )
        + 'other_config = { hw-offload-priority = "dummy_x" }\n'
    )
    async with running_datapath(text) as h:
        collection = h.dp.offload.collection
        assert collection is not None
        p0, p1 = (h.dp.port_by_name(n) for n in ("p0", "p1"))
        assert collection.owner(p0.port_no) is None  # "none": never offloaded
        owner = collection.owner(p1.port_no)
        assert owner is not None and owner.type == "dummy_x"
        pmd = h.dp.pmds[0]
        for _ in range(2):
            await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        await h.wait_for(lambda: pmd.perf.get(Stat.RECV) == 2)
        assert pmd.perf.get(Stat.PHWOL_HIT) == 0
        assert h.dp.offload.flow_count() == 0


async def test_offload_flow_counts_are_exported() -> None:
    from prometheus_client.metrics_core import Metric

    from pyvswitchd.datapath.dp_metrics import datapath_metrics

    async with running_datapath(two_ports()) as h:
        pmd = h.dp.pmds[0]
        await h.call("netdev-dummy/receive", "p0", ICMP.format(src="05", dst="07"))
        await h.wait_for(lambda: pmd.perf.get(Stat.MISS) == 1)
        families: dict[str, Metric] = {m.name: m for m in datapath_metrics(h.dp)}
        samples = {s.labels["provider"]: s.value for s in families["ovs_offload_flows"].samples}
        assert samples == {"dummy": 1.0, "dummy_x": 0.0}
