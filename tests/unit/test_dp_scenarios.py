"""Datapath scenarios after OVS's tests/pmd.at, on a real Datapath with PMD tasks."""

from __future__ import annotations

import re

import pytest
import trio

from pyvswitchd.datapath.perf import Stat
from pyvswitchd.datapath.port import Rxq
from pyvswitchd.datapath.worker_pmd import WorkerPmd
from tests.dp_harness import running_datapath

NUMA4 = 'dummy-numa = "0,0,0,0"\n'
ICMP = (
    "in_port(1),eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


def one_port(n_rxq: int = 1, other: str = "", port_extra: str = "", numa: str = NUMA4) -> str:
    return (
        f"[other_config]\n{numa}{other}\n"
        '[[bridge]]\nname = "br0"\n'
        '[[bridge.port]]\nname = "p0"\ntype = "dummy-pmd"\n'
        f"options = {{ n_rxq = {n_rxq} }}\n{port_extra}"
    )


def parse_rxq_show(text: str) -> dict[int, list[tuple[str, int]]]:
    """core -> [(port, qid)], like OVS's parse_pmd_rxq_show awk helper."""
    layout: dict[int, list[tuple[str, int]]] = {}
    core = -1
    for line in text.splitlines():
        if m := re.match(r"pmd thread numa_id \d+ core_id (\d+):", line):
            core = int(m[1])
            layout[core] = []
        elif m := re.match(r"  port: (\S+)\s+queue-id:\s+(\d+)", line):
            layout[core].append((m[1], int(m[2])))
    return layout


async def test_creating_a_thread_and_adding_a_port() -> None:
    async with running_datapath(one_port()) as h:
        assert await h.call("dpif-netdev/pmd-rxq-show") == (
            "Displaying last 60 seconds pmd usage %\n"
            "pmd thread numa_id 0 core_id 0:\n"
            "  isolated : false\n"
            "  port: p0                queue-id:  0 (enabled)   pmd usage: NOT AVAIL\n"
            "  overhead: NOT AVAIL\n"
        )
        assert "PMD thread on numa_id: 0, core id:  0 created." in h.log_lines()
        assert "There are 1 pmd threads on numa node 0" in h.log_lines()


async def test_multiqueue() -> None:
    async with running_datapath(one_port(8)) as h:
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {0: [("p0", q) for q in range(8)]}


@pytest.mark.parametrize(
    ("algo", "a", "b"),
    [
        ("roundrobin", [0, 2, 4, 6], [1, 3, 5, 7]),
        ("cycles", [0, 3, 4, 7], [1, 2, 5, 6]),
        ("group", [0, 2, 4, 6], [1, 3, 5, 7]),
    ],
)
async def test_cpu_mask_distribution(algo: str, a: list[int], b: list[int]) -> None:
    other = f'pmd-cpu-mask = "0x3"\npmd-rxq-assign = "{algo}"\n'
    async with running_datapath(one_port(8, other)) as h:
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {0: [("p0", q) for q in a], 1: [("p0", q) for q in b]}
        assert h.rxq_layout() == layout  # what the PMDs really poll
        assert f"Performing pmd to rx queue assignment using {algo} algorithm." in h.log_lines()
        await h.reconfig(one_port(8, f'pmd-cpu-mask = "0x1"\npmd-rxq-assign = "{algo}"\n'))
        assert parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show")) == {
            0: [("p0", q) for q in range(8)]
        }
        assert "PMD thread on numa_id: 0, core id:  1 destroyed." in h.log_lines()


async def test_dual_numa_cross_numa_assignment() -> None:
    text = one_port(2, 'pmd-cpu-mask = "0x3"\n', "", 'dummy-numa = "0,0,1,1"\n').replace(
        "options = { n_rxq = 2 }", "options = { n_rxq = 2, numa_id = 1 }"
    )
    async with running_datapath(text) as h:
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert sorted(q for qs in layout.values() for q in qs) == [("p0", 0), ("p0", 1)]
        assert (
            "There's no available (non-isolated) pmd thread on numa node 1. Port 'p0' rx "
            "queue 0 will be assigned to a pmd on numa node 0. This may lead to reduced "
            "performance."
        ) in h.log_lines()
        # A mask with a local PMD: only it gets the queues.
        await h.reconfig(text.replace('"0x3"', '"0x6"'))
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {1: [], 2: [("p0", 0), ("p0", 1)]}


async def test_stats_after_injected_packets() -> None:
    async with running_datapath(one_port()) as h:
        before = await h.call("dpif-netdev/pmd-perf-show")
        assert "  Rx packets:                    0\n  Tx packets:                    0\n" in before
        for _ in range(20):
            await h.call("netdev-dummy/receive", "p0", ICMP)
        pmd = h.dp.pmds[0]
        await h.wait_for(lambda: pmd.perf.get(Stat.RECV) >= 20)
        await h.wait_for(lambda: h.dp.port_by_name("br0").netdev.stats.tx_packets >= 20)
        out = await h.call("dpif-netdev/pmd-perf-show", "-nh")
        assert re.search(r"  Rx packets:\s+20  \(\d+ Kpps, \d+ cycles/pkt\)\n", out), out
        assert "  Datapath passes:              20  (1.00 passes/pkt)\n" in out
        # One upcall installs the megaflow; the rest hit the EMC or the megaflow.
        assert re.search(r"  - Upcalls:\s+1  \(  5\.0 %, [\d.]+ us/upcall\)\n", out), out
        assert re.search(r"  Tx packets:\s+20  \(\d+ Kpps\)\n", out)
        assert "\nmain thread:\n" in out
        assert "lookups: hit:19 missed:1 lost:0" in await h.call("dpctl/show")
        await h.call("dpif-netdev/pmd-stats-clear")
        await h.wait_for(lambda: pmd.perf.get(Stat.RECV) == 0)
        assert "lookups: hit:0 missed:0 lost:0" in await h.call("dpctl/show")


async def test_runt_frames_are_dropped_and_counted() -> None:
    async with running_datapath(one_port()) as h:
        # netdev-dummy/receive refuses runts (as OVS's does): inject below it.
        h.dp.port_by_name("p0").netdev.inject([bytes(5)])
        counter = h.coverage.get("datapath_drop_rx_invalid_packet")
        assert counter is not None
        await h.wait_for(lambda: counter.total == 1)
        assert h.dp.port_by_name("br0").netdev.stats.tx_packets == 0


@pytest.mark.parametrize(
    ("secs", "shown"),
    [
        (None, 60),
        ("-1", 60),
        ("0", 60),
        ("1", 5),
        ("5", 5),
        ("6", 10),
        ("51", 55),
        ("55", 55),
        ("56", 60),
        ("60", 60),
        ("61", 60),
    ],
)
async def test_rxq_show_secs(secs: str | None, shown: int) -> None:
    async with running_datapath(one_port()) as h:
        args = ["-secs", secs] if secs is not None else []
        out = await h.call("dpif-netdev/pmd-rxq-show", *args)
        assert out.startswith(f"Displaying last {shown} seconds pmd usage %\n")


async def test_reconfigure_n_rxq_keeps_forwarding() -> None:
    async with running_datapath(one_port(2)) as h:
        await h.reconfig(one_port(4))
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {0: [("p0", q) for q in range(4)]}
        await h.call("netdev-dummy/receive", "p0", "--qid", "3", ICMP)
        br0 = h.dp.port_by_name("br0").netdev
        await h.wait_for(lambda: br0.stats.tx_packets == 1)
        await h.reconfig(one_port(1).replace("options = { n_rxq = 1 }\n", ""))
        assert parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show")) == {0: [("p0", 0)]}


async def test_add_and_remove_ports() -> None:
    async with running_datapath(one_port()) as h:
        await h.call("dpctl/add-if", "ovs-netdev", "p1,type=dummy-pmd,n_rxq=2")
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {0: [("p0", 0), ("p1", 0), ("p1", 1)]}
        await h.call("netdev-dummy/receive", "p1", ICMP)
        p0 = h.dp.port_by_name("p0").netdev
        await h.wait_for(lambda: p0.stats.tx_packets == 1)
        await h.call("dpctl/del-if", "ovs-netdev", "p1")
        assert parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show")) == {0: [("p0", 0)]}
        assert "no port named nope" in await h.call_error("dpctl/del-if", "ovs-netdev", "nope")
        assert "(No such device)" in await h.call_error("dpctl/add-if", "nosuchdp", "x")
        await h.call("netdev-dummy/receive", "p0", ICMP)
        br0 = h.dp.port_by_name("br0").netdev
        await h.wait_for(lambda: br0.stats.tx_packets == 2)


async def test_rxq_affinity_and_isolation() -> None:
    numa9 = 'dummy-numa = "0,0,0,0,0,0,0,0,0"\n'
    pin = 'other_config = { pmd-rxq-affinity = "0:3,1:7,2:2,3:8" }\n'
    async with running_datapath(one_port(4, 'pmd-cpu-mask = "0x1fe"\n', pin, numa9)) as h:
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert {c: q for c, q in layout.items() if q} == {
            2: [("p0", 2)],
            3: [("p0", 0)],
            7: [("p0", 1)],
            8: [("p0", 3)],
        }
        out = await h.call("dpif-netdev/pmd-rxq-show", "-pmd", "3")
        assert "  isolated : true\n" in out
        # Cores 3, 7, 8 go away: their queues move to the non-isolated PMD.
        await h.reconfig(one_port(4, 'pmd-cpu-mask = "0x6"\n', pin, numa9))
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {1: [("p0", 0), ("p0", 1), ("p0", 3)], 2: [("p0", 2)]}
        assert any(
            line.startswith("Core  3 cannot be pinned with port 'p0' rx queue 0")
            for line in h.log_lines()
        )
        pin1 = 'other_config = { pmd-rxq-affinity = "0:1" }\n'
        await h.reconfig(one_port(4, 'pmd-cpu-mask = "0x6"\n', pin1, numa9))
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {1: [("p0", 0)], 2: [("p0", 1), ("p0", 2), ("p0", 3)]}


async def test_worker_gives_up_a_queue_before_another_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A queue of a kernel device is one socket and ring: with PMDs in worker
    # processes, two must never read it at once, and the one that takes it
    # over reads where the other one stopped.  So the PMD losing a queue is
    # reloaded without it before the one gaining it, whatever their order.
    events: list[tuple[int, list[tuple[str, int]]]] = []
    reload = WorkerPmd.reload

    async def spy(pmd: WorkerPmd, poll_list: list[Rxq], tx_ports: dict[int, int]) -> None:
        events.append((pmd.core_id, [(r.port.name, r.qid) for r in poll_list]))
        await reload(pmd, poll_list, tx_ports)

    monkeypatch.setattr(WorkerPmd, "reload", spy)
    numa2 = 'dummy-numa = "0,0"\n'
    cores = 'pmd-cpu-mask = "0x3"\n'
    on_1 = 'other_config = { pmd-rxq-affinity = "0:1" }\n'
    on_0 = 'other_config = { pmd-rxq-affinity = "0:0" }\n'
    async with running_datapath(one_port(1, cores, on_1, numa2), pmd_processes=True) as h:
        assert h.rxq_layout() == {0: [], 1: [("p0", 0)]}
        events.clear()
        await h.reconfig(one_port(1, cores, on_0, numa2))
        assert h.rxq_layout() == {0: [("p0", 0)], 1: []}
        released = events.index((1, []))
        taken = events.index((0, [("p0", 0)]))
        assert released < taken, events


async def test_rxq_affinity_non_isolated_with_group() -> None:
    numa3 = 'dummy-numa = "0,0,0"\n'
    pin = 'other_config = { pmd-rxq-affinity = "0:1" }\n'
    other = 'pmd-cpu-mask = "0x6"\npmd-rxq-assign = "group"\npmd-rxq-isolate = false\n'
    async with running_datapath(one_port(4, other, pin, numa3)) as h:
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {1: [("p0", 0), ("p0", 2)], 2: [("p0", 1), ("p0", 3)]}
        await h.reconfig(one_port(4, other.replace("group", "cycles"), pin, numa3))
        assert (
            "pmd-rxq-isolate can only be set false when using pmd-rxq-assign=group" in h.log_lines()
        )
        layout = parse_rxq_show(await h.call("dpif-netdev/pmd-rxq-show"))
        assert layout == {1: [("p0", 0)], 2: [("p0", 1), ("p0", 2), ("p0", 3)]}


async def test_pmd_sleep_settings() -> None:
    numa = 'dummy-numa = "0,0,0"\npmd-cpu-mask = "0x7"\n'
    async with running_datapath(one_port(3, "", "", numa)) as h:
        assert await h.call("dpif-netdev/pmd-sleep-show") == (
            "Default max sleep:    0 us\n"
            "pmd thread numa_id 0 core_id 0:\n  max sleep:    0 us\n"
            "pmd thread numa_id 0 core_id 1:\n  max sleep:    0 us\n"
            "pmd thread numa_id 0 core_id 2:\n  max sleep:    0 us\n"
        )
        await h.reconfig(one_port(3, 'pmd-sleep-max = "10001,1:490,2=qwe"\n', "", numa))
        assert await h.call("dpif-netdev/pmd-sleep-show") == (
            "Default max sleep: 10000 us\n"
            "pmd thread numa_id 0 core_id 0:\n  max sleep: 10000 us\n"
            "pmd thread numa_id 0 core_id 1:\n  max sleep:  490 us\n"
            "pmd thread numa_id 0 core_id 2:\n  max sleep: 10000 us\n"
        )
        assert "Default PMD thread max sleep: 10000 us." in h.log_lines()
        assert "PMD thread on numa_id: 0, core id:  1, max sleep:  490 us." in h.log_lines()
        # Sleeping PMDs still forward, and their sleep shows in pmd-perf-show.
        await h.call("netdev-dummy/receive", "p0", "--qid", "1", ICMP)
        br0 = h.dp.port_by_name("br0").netdev
        await h.wait_for(lambda: br0.stats.tx_packets == 1)
        await h.wait_for(lambda: h.dp.pmds[1].perf.get(Stat.SLEEP_ITER) > 0)
        out = await h.call("dpif-netdev/pmd-perf-show", "-pmd", "1")
        assert re.search(r"  - sleep iterations:\s+[1-9]\d*  \(\s*[\d.]+ % of iterations\)", out)


async def test_no_datapath_errors() -> None:
    async with running_datapath("[other_config]\n") as h:
        for command in (
            "dpif-netdev/pmd-perf-show",
            "dpif-netdev/pmd-rxq-show",
            "dpif-netdev/pmd-stats-clear",
            "dpif-netdev/pmd-rxq-rebalance",
            "dpif-netdev/pmd-sleep-show",
        ):
            assert await h.call_error(command) == "please specify an existing datapath"
        assert await h.call("dpctl/show") == ""


async def test_dp_name_handling_matches_ovs() -> None:
    async with running_datapath(one_port()) as h:
        assert (
            await h.call("dpif-netdev/pmd-rxq-rebalance", "ovs-netdev")
            == "pmd rxq rebalance requested."
        )
        for bad in ("nosuchdp", "netdev@ovs-netdev"):
            assert (
                await h.call_error("dpif-netdev/pmd-rxq-rebalance", bad)
                == "please specify an existing datapath"
            )
        # Show/clear commands fall back to the only datapath.
        assert "pmd thread numa_id 0 core_id 0:" in await h.call(
            "dpif-netdev/pmd-perf-show", "nosuchdp"
        )
        assert await h.call("dpif-netdev/pmd-rxq-show", "-pmd", "99") == ""
        assert await h.call_error("dpctl/show", "nosuchdp") == (
            "pyvswitchd: opening datapath nosuchdp failed (No such device)"
        )


SOURCE = """
[other_config]
dummy-numa = "0,0,0,0"
pmd-cpu-mask = "{mask}"
[[bridge]]
name = "br0"
[[bridge.port]]
name = "src0"
type = "traffic-source"
options = {{ n_rxq = {n_rxq}, flows = 8, pps = 40000, count = 6000, dst_mac = "02:00:00:00:00:fe" }}
[[bridge.port]]
name = "p0"
type = "dummy-pmd"
"""


async def test_reconfigure_under_traffic_loses_and_duplicates_nothing() -> None:
    """pmd-cpu-mask and n_rxq change while the source runs: rx = tx + counted drops."""
    async with running_datapath(SOURCE.format(mask="0x1", n_rxq=1)) as h:
        src = h.dp.port_by_name("src0").netdev
        steps = [("0x3", 4), ("0x2", 2), ("0xf", 3), ("0x1", 1), ("0x6", 4)]
        for mask, n_rxq in steps:
            await h.wait_for(lambda: src.stats.rx_packets > 0)
            await h.reconfig(SOURCE.format(mask=mask, n_rxq=n_rxq))
            layout = h.rxq_layout()
            assert sorted(q for qs in layout.values() for q in qs) == [
                ("p0", 0),
                *[("src0", q) for q in range(n_rxq)],
            ]
        await h.wait_for(lambda: src.stats.rx_packets == 6000, limit=30)
        sinks = [h.dp.port_by_name(n).netdev for n in ("p0", "br0")]
        dropped = h.coverage.get("datapath_drop_invalid_port")
        assert dropped is not None
        await h.wait_for(
            lambda: all(s.stats.tx_packets + s.stats.tx_dropped == 6000 for s in sinks)
        )
        assert dropped.total == 0
        for sink in sinks:
            assert sink.stats.tx_packets + sink.stats.tx_dropped == src.stats.rx_packets
        assert h.dp.reconfigurations >= len(steps) + 1


async def test_auto_load_balance_triggers_a_rebalance() -> None:
    text = (
        '[other_config]\ndummy-numa = "0,0"\npmd-cpu-mask = "0x3"\n'
        "pmd-auto-lb = true\npmd-auto-lb-load-threshold = 0\n"
        '[[bridge]]\nname = "br0"\n'
        '[[bridge.port]]\nname = "p0"\ntype = "dummy-pmd"\noptions = { n_rxq = 3 }\n'
    )
    async with running_datapath(text, debug=True) as h:
        dp = h.dp
        assert (
            "PMD auto load balance is enabled, interval 1 mins, pmd load threshold 0%, "
            "improvement threshold 25%."
        ) in h.log_lines()
        # cycles with no history: core 0 polls q0, core 1 polls q1 and q2.
        assert h.rxq_layout() == {0: [("p0", 0)], 1: [("p0", 1), ("p0", 2)]}
        now = [dp.clock_ms()]
        dp.clock_ms = lambda: now[0]
        # Short measurement intervals so 12 of them pass quickly.
        dp.set_measurement_interval(20_000_000)
        before = dp.reconfigurations
        # Load only core 1's queues, well past what one interval can absorb.
        await h.call("netdev-dummy/receive", "p0", ICMP)
        br0 = dp.port_by_name("br0").netdev
        await h.wait_for(lambda: br0.stats.tx_packets == 1)
        frame = br0.sent_frames()[-1]
        p0 = dp.port_by_name("p0").netdev
        loaded = dp.pmds[1]
        with trio.fail_after(20):
            while loaded.overloaded < 12 or not all(r.history_total for r in loaded.poll_list):
                p0.inject([frame] * 128, 1)
                p0.inject([frame] * 128, 2)
                await trio.sleep(0.002)
        dp.alb_trigger.check()  # stamps the rebalance timer unless the main task already did
        now[0] += 61_000
        dp.alb_trigger.check()
        await h.wait_for(lambda: dp.reconfigurations > before)
        assert "PMD auto load balance dry run. Requesting datapath reconfigure." in h.log_lines()
        assert "PMD auto load balance performing dry run." in h.log_lines()
        assert any(line.startswith("Numa node 0. Current variance") for line in h.log_lines())
        # The busy queues are now split across the two PMDs.
        layout = h.rxq_layout()
        assert {("p0", 1), ("p0", 2)} not in [set(v) for v in layout.values()]


async def test_change_numa_node_moves_queues() -> None:
    numa = 'dummy-numa = "0,0,8,8"\npmd-cpu-mask = "0x5"\n'
    text = one_port(2, "", "", numa)
    async with running_datapath(text) as h:
        assert h.rxq_layout() == {0: [("p0", 0), ("p0", 1)], 2: []}
        await h.reconfig(text.replace("n_rxq = 2 }", "n_rxq = 2, numa_id = 8 }"))
        assert h.rxq_layout() == {0: [], 2: [("p0", 0), ("p0", 1)]}
        out = await h.call("dpif-netdev/pmd-rxq-show", "-pmd", "2")
        assert out.splitlines()[1] == "pmd thread numa_id 8 core_id 2:"
        await h.call("netdev-dummy/receive", "p0", "--qid", "1", ICMP)
        br0 = h.dp.port_by_name("br0").netdev
        await h.wait_for(lambda: br0.stats.tx_packets == 1)


async def test_non_pmd_device_is_polled_by_the_main_thread() -> None:
    text = one_port(1, 'pmd-cpu-mask = "0x1"\n', ('[[bridge.port]]\nname = "p1"\ntype = "dummy"\n'))
    async with running_datapath(text) as h:
        p0, p1 = (h.dp.port_by_name(n).netdev for n in ("p0", "p1"))
        # Internal ports (the datapath's and br0) are non-PMD too, as in OVS.
        assert [r.port.name for r in h.dp.main.poll_list] == ["ovs-netdev", "br0", "p1"]
        await h.call("netdev-dummy/receive", "p1", ICMP)
        await h.call("netdev-dummy/receive", "p0", ICMP)
        await h.wait_for(lambda: p0.stats.tx_packets == 1 and p1.stats.tx_packets == 1)
        # The main thread counted its own packet; the PMD its own.
        assert h.dp.main.perf.get(Stat.RECV) == 1
        assert h.dp.pmds[0].perf.get(Stat.RECV) == 1
        out = await h.call("dpif-netdev/pmd-perf-show")
        assert "main thread:\n\n  Rx packets:                    1" in out
        # Moving the PMD to another core leaves the main thread's port alone.
        await h.reconfig(text.replace('"0x1"', '"0x2"'))
        assert list(h.dp.pmds) == [1]
        await h.call("netdev-dummy/receive", "p1", ICMP)
        await h.call("netdev-dummy/receive", "p0", ICMP)
        await h.wait_for(lambda: p0.stats.tx_packets == 2 and p1.stats.tx_packets == 2)


async def test_tx_flush_interval_batches_output() -> None:
    # 1 s window: packets arriving in separate rx batches leave in one tx batch.
    text = one_port(1, "tx-flush-interval = 1000000\n")
    async with running_datapath(text) as h:
        br0 = h.dp.port_by_name("br0").netdev
        pmd = h.dp.pmds[0]
        await h.call("netdev-dummy/receive", "p0", ICMP)  # first batch goes at once
        await h.wait_for(lambda: br0.stats.tx_packets == 1)
        for _ in range(5):
            await h.call("netdev-dummy/receive", "p0", ICMP)
        await h.wait_for(lambda: pmd.perf.get(Stat.RECV) == 6)
        assert br0.stats.tx_packets == 1  # held for the flush window
        await h.wait_for(lambda: br0.stats.tx_packets == 6, limit=5)
        assert pmd.perf.get(Stat.SENT_BATCHES) == 2


async def test_perf_show_json_form() -> None:
    async with running_datapath(one_port()) as h:
        from pyvswitchd.control.registry import CommandContext, OutputFormat

        ctx = CommandContext(name="dpif-netdev/pmd-perf-show", output_format=OutputFormat.JSON)
        reply = await h.registry.invoke(ctx, [])
        threads = {(t["thread"], t["core_id"]) for t in reply.data}
        assert threads == {("pmd", 0), ("main", None)}
        ctx = CommandContext(name="dpif-netdev/pmd-rxq-show", output_format=OutputFormat.JSON)
        data = (await h.registry.invoke(ctx, [])).data
        assert data["pmds"][0]["rxqs"] == [
            {"port": "p0", "queue_id": 0, "enabled": True, "usage": None}
        ]


async def test_async_transmit_goes_through_the_deferred_work_ring() -> None:
    text = (
        '[other_config]\ndummy-numa = "0,0"\n[[bridge]]\nname = "br0"\n'
        '[[bridge.port]]\nname = "p0"\ntype = "dummy-pmd"\n'
        '[[bridge.port]]\nname = "p1"\ntype = "dummy-pmd"\noptions = { tx_async_polls = 3 }\n'
    )
    async with running_datapath(text) as h:
        p1 = h.dp.port_by_name("p1").netdev
        pmd = h.dp.pmds[0]
        for i in range(1, 6):  # one rx batch, hence one deferred send, each
            await h.call("netdev-dummy/receive", "p0", ICMP)
            await h.wait_for(lambda i=i: pmd.perf.get(Stat.RECV) == i)  # type: ignore[misc]
        await h.wait_for(lambda: pmd.perf.get(Stat.WORK_DONE) == 5)
        assert p1.stats.tx_packets == 5
        n = pmd.perf.get_all()
        assert n[Stat.WORK_DEFER] == 5 and n[Stat.WORK_DROPPED] == 0
        assert n[Stat.WORK_IN_PROG] >= 5 * 2  # at least two in-progress checks each
        out = await h.call("dpif-netdev/pmd-perf-show", "-pmd", "0")
        assert re.search(
            r"  Work deferred:\s+5\n  - Deferred work done:\s+5\n"
            r"  - Work completion checks:\s+\d+  \(\d+\.\d\d checks/work item\)\n"
            r"  - Ring full when deferring work:\s+0\n"
            r"  - Deferred work dropped:\s+0\n",
            out,
        ), out
        # Deleting the port with work pending completes or drops it first.
        for _ in range(3):
            await h.call("netdev-dummy/receive", "p0", ICMP)
        await h.call("dpctl/del-if", "ovs-netdev", "p1")
        n = pmd.perf.get_all()
        assert n[Stat.WORK_DEFER] == n[Stat.WORK_DONE] + n[Stat.WORK_DROPPED]
