"""Tests for pyvswitchd.datapath.flow_commands: dpctl/dump-flows' pmd= filter."""

from __future__ import annotations

import pytest

from pyvswitchd.control.registry import CommandError
from pyvswitchd.datapath.flow_commands import parse_pmd_filter
from tests.dp_harness import running_datapath

from .test_pipeline import bridge

FLOW = "in_port(2),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x1234)"
LINE = (
    "recirc_id(0),in_port(2),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),"
    "eth_type(0x1234), packets:0, bytes:0, used:never, actions:3\n"
)


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("12", 12), ("-1", -1), (" 3", 3), ("+4", 4), ("5x", 5)]
)
def test_pmd_values_read_as_c_reads_them(text: str, value: int) -> None:
    assert parse_pmd_filter(text) == value


@pytest.mark.parametrize("text", ["", "x", "-2", "-", "y1", "--1"])
def test_bad_pmd_values_fail_without_a_message(text: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_pmd_filter(text)
    assert str(info.value) == ""


async def test_a_filtered_dump_has_no_thread_titles() -> None:
    async with running_datapath(bridge(2)) as h:
        await h.call("dpctl/add-flow", FLOW, "3")
        titles = ["flow-dump from the main thread:\n", "flow-dump from pmd on cpu core: 0\n"]
        dump = await h.call("dpctl/dump-flows")
        assert sorted(dump.splitlines(keepends=True)) == sorted([*titles, LINE, LINE])
        assert await h.call("dpctl/dump-flows", "pmd=0") == LINE
        assert await h.call("dpctl/dump-flows", "pmd=-1") == LINE
        assert await h.call("dpctl/dump-flows", "pmd=7") == ""
        assert await h.call_error("dpctl/dump-flows", "pmd=-2") == ""
        assert await h.call_error("dpctl/dump-flows", "ovs-netdev", "pmd=x") == ""
        await h.call("dpctl/del-flow", FLOW)
        assert await h.call("dpctl/dump-flows", "pmd=0") == ""
