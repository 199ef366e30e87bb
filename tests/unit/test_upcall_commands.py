"""Tests for pyvswitchd.datapath.upcall_commands: upcall/* and revalidator/* on a real Datapath."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from pyvswitchd.control.registry import CommandContext, CommandError, CommandRegistry
from pyvswitchd.datapath import commands
from pyvswitchd.datapath.dp import Datapath
from pyvswitchd.netdev.registry import default_registry
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog
from tests.dp_harness import Harness, running_datapath

from .test_pipeline import bridge, icmp

GOLDEN = Path(__file__).resolve().parents[1] / "golden"

SHOW = re.compile(
    r"netdev@ovs-netdev:\n"
    r"  flows         : \(current (\d+)\) \(avg \d+\) \(max \d+\) \(limit 10000\)\n"
    r"  dump duration : \d+ms\n"
    r"  ufid enabled : (true|false)\n"
    r"\n"
    r"  1: \(keys (\d+)\)\n"
)

#: The ICMP packet of test_pipeline.icmp(5, 7), as an exact-match flow on port p1 (2).
EXACT = (
    "recirc_id(0),in_port(2),packet_type(ns=0,id=0),"
    "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0), "
)
MEGA = "recirc_id(0),in_port(2),packet_type(ns=0,id=0),eth(src=50:54:00:00:00:05,"


def flow_lines(dump: str) -> list[str]:
    return [line for line in dump.splitlines() if not line.startswith("flow-dump from")]


async def show(h: Harness) -> tuple[int, str, int]:
    text = await h.call("upcall/show")
    match = SHOW.fullmatch(text)
    assert match, text
    return int(match[1]), match[2], int(match[3])


async def test_upcall_show_counts_the_flows() -> None:
    async with running_datapath(bridge(2)) as h:
        assert await show(h) == (0, "true", 0)
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 1)
        await h.call("revalidator/wait")
        current, _, keys = await show(h)
        assert current == keys == 1
        assert h.dp.revalidator.stats.max_flows == 1


async def test_megaflows_off_installs_exact_flows_and_on_again_megaflows() -> None:
    async with running_datapath(bridge(2)) as h:
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 1)
        assert await h.call("upcall/disable-megaflows") == "megaflows disabled"
        assert flow_lines(await h.call("dpctl/dump-flows")) == []  # flushed
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 1)
        (line,) = flow_lines(await h.call("dpctl/dump-flows"))
        assert line.startswith(EXACT), line
        # Another TTL: NORMAL's megaflow would cover it, an exact flow does not.
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7).replace("ttl=64", "ttl=9"))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 2)

        assert await h.call("upcall/enable-megaflows") == "megaflows enabled"
        assert flow_lines(await h.call("dpctl/dump-flows")) == []
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 1)
        (line,) = flow_lines(await h.call("dpctl/dump-flows"))
        assert line.startswith(MEGA) and "ipv4(frag=no), " in line, line


async def test_ufid_switch_answers_and_shows() -> None:
    async with running_datapath(bridge(1)) as h:
        assert await h.call("upcall/disable-ufid") == "Datapath dumping tersely using UFID disabled"
        assert (await show(h))[1] == "false"
        assert await h.call("upcall/enable-ufid") == (
            "Datapath dumping tersely using UFID enabled for supported datapaths"
        )
        assert (await show(h))[1] == "true"


async def test_pause_keeps_idle_flows_until_resume() -> None:
    async with running_datapath(bridge(2, "max-idle = 200")) as h:
        assert await h.call("revalidator/pause") == ""
        await h.call("netdev-dummy/receive", "p1", icmp(5, 7))
        await h.wait_for(lambda: len(h.dp.pmds[0].flow_table) == 1)
        passes = h.dp.revalidator.stats.passes
        await trio.sleep(1.2)  # two intervals, flows 1 s past max-idle
        assert len(h.dp.pmds[0].flow_table) == 1
        assert h.dp.revalidator.stats.passes == passes
        assert await h.call("revalidator/resume") == ""
        await h.call("revalidator/wait")
        assert len(h.dp.pmds[0].flow_table) == 0


async def test_wait_returns_after_a_whole_pass() -> None:
    async with running_datapath(bridge(1)) as h:
        before = h.dp.revalidator.stats.passes
        with trio.fail_after(0.4):  # sooner than the 0.5 s interval: asked for at once
            assert await h.call("revalidator/wait") == ""
        assert h.dp.revalidator.stats.passes > before


async def test_purge_deletes_every_flow_and_keeps_a_pause() -> None:
    async with running_datapath(bridge(2)) as h:
        await h.call("dpctl/add-flow", "in_port(2),eth_type(0x0800),ipv4(frag=no)", "3")
        assert len(flow_lines(await h.call("dpctl/dump-flows"))) == 2
        assert await h.call("revalidator/purge") == ""
        assert await h.call("dpctl/dump-flows") == ""
        assert not h.dp.revalidator.paused
        await h.call("revalidator/pause")
        await h.call("revalidator/purge")
        assert h.dp.revalidator.paused
        await h.call("revalidator/resume")


async def test_pause_and_resume_are_not_listed() -> None:
    async with running_datapath(bridge(1)) as h:
        listed = {c.name for c in h.registry.visible()}
        assert {"upcall/show", "revalidator/wait", "revalidator/purge"} <= listed
        assert not {"revalidator/pause", "revalidator/resume"} & listed


async def test_without_a_datapath() -> None:
    registry = CommandRegistry()
    dp = Datapath(Vlog("test", syslog_method="null"), Coverage(), default_registry())
    commands.register_commands(dp, registry)

    async def call(name: str) -> str:
        return (await registry.invoke(CommandContext(name=name), [])).text

    assert await call("upcall/show") == ""
    try:
        await call("revalidator/wait")
    except CommandError as exc:
        assert str(exc) == "can't wait on multiple udpifs."
    else:
        raise AssertionError("revalidator/wait succeeded without a datapath")


def test_usages_match_ovs() -> None:
    registry = CommandRegistry()
    dp = Datapath(Vlog("test", syslog_method="null"), Coverage(), default_registry())
    commands.register_commands(dp, registry)
    listed = (GOLDEN / "list-commands.out").read_text().splitlines()
    for name in (
        "upcall/show",
        "upcall/disable-megaflows",
        "upcall/enable-megaflows",
        "upcall/disable-ufid",
        "upcall/enable-ufid",
        "revalidator/wait",
        "revalidator/purge",
        "dpif/show",
        "dpif/dump-dps",
        "dpctl/dump-dps",
        "dpctl/add-dp",
        "dpctl/del-dp",
    ):
        command = registry.get(name)
        assert command is not None, name
        assert f"  {name:<23} {command.usage}" in listed, name
    for name in ("revalidator/pause", "revalidator/resume"):
        command = registry.get(name)
        assert command is not None and command.usage is None
