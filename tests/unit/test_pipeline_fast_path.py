"""The pipeline's batch fast path: whole batches of UDP/TCP exact-match hits.

Every test checks the result is what the per-packet path would give (the
counters and the frames sent) and, through a spy, which path ran.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pyvswitchd.datapath import pipeline
from pyvswitchd.datapath.perf import Stat
from pyvswitchd.odp.flow_compose import compose_packet
from pyvswitchd.odp.key_text import parse_odp_key
from tests.dp_harness import Harness, running_datapath

CONFIG = """
[other_config]
emc-insert-inv-prob = 1
[[bridge]]
name = "br0"
[[bridge.port]]
name = "p1"
type = "dummy-pmd"
[[bridge.port]]
name = "p2"
type = "dummy-pmd"
"""

ETH = "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800)"
UDP = f"{ETH},ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
TCP = (
    f"{ETH},ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),"
    "tcp(src=1,dst=2),tcp_flags(ack)"
)
REPLY = (
    "eth(src=50:54:00:00:00:07,dst=50:54:00:00:00:05),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=1,tos=0,ttl=64,frag=no),icmp(type=0,code=0)"
)


def frame(text: str, length: int | None = None) -> bytes:
    return compose_packet(parse_odp_key(text), length)


@pytest.fixture
def fast_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Results of every fast-path attempt, in order."""
    calls: list[bool] = []
    real = pipeline.FlowPipeline._all_emc_hits

    def spy(self, pmd, emc, batch, in_port, signature):  # type: ignore[no-untyped-def]
        result = real(self, pmd, emc, batch, in_port, signature)
        calls.append(result)
        return result

    monkeypatch.setattr(pipeline.FlowPipeline, "_all_emc_hits", spy)
    yield calls


def sent(h: Harness, name: str) -> list[bytes]:
    return h.dp.port_by_name(name).netdev.sent_frames()  # type: ignore[union-attr, no-any-return]


async def learn(h: Harness, first: bytes) -> None:
    """p2's MAC learned, then one packet installs the p1 -> p2 flow and its EMC entry."""
    p1, p2 = (h.dp.port_by_name(n).netdev for n in ("p1", "p2"))
    p2.inject([frame(REPLY)])  # type: ignore[union-attr]
    await h.wait_for(lambda: len(sent(h, "p1")) == 1)
    p1.inject([first])  # type: ignore[union-attr]
    await h.wait_for(lambda: len(sent(h, "p2")) == 1)
    # Those first packets missed the fast path, which the ports then skip
    # for a few batches: start the tests with it armed.
    h.dp.pmds[0].flow_table.emc.fast_backoff.clear()


async def second_flow(h: Harness, length: int) -> bytes:
    """Install a second p1 -> p2 flow with ``length``-byte frames; re-arm the fast path."""
    other = frame(UDP.replace("udp(src=1,dst=2)", "udp(src=3,dst=4)"), length)
    before = len(sent(h, "p2"))
    h.dp.port_by_name("p1").netdev.inject([other])  # type: ignore[union-attr]
    await h.wait_for(lambda: len(sent(h, "p2")) == before + 1)
    h.dp.pmds[0].flow_table.emc.fast_backoff.clear()
    return other


def stats(h: Harness) -> tuple[int, int, int]:
    n = h.dp.pmds[0].perf.get_all()
    return n[Stat.EXACT_HIT], n[Stat.MASKED_HIT], n[Stat.MISS]


@pytest.mark.parametrize("text", [UDP, TCP])
async def test_a_batch_of_hits_goes_through_in_one_pass(text: str, fast_calls: list[bool]) -> None:
    async with running_datapath(CONFIG) as h:
        data = frame(text, 64)
        await learn(h, data)
        before = stats(h)
        fast_calls.clear()
        h.dp.port_by_name("p1").netdev.inject([data] * 32)  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) == 33)
        assert True in fast_calls
        after = stats(h)
        assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (32, 0, 0)
        assert sent(h, "p2")[1:] == [data] * 32
        # The packet whose upcall installed the flow is not counted, as in OVS.
        assert " packets:32, bytes:2048," in await h.call("dpctl/dump-flows")


async def test_a_truncated_frame_with_a_cached_signature_takes_the_slow_path(
    fast_calls: list[bool],
) -> None:
    async with running_datapath(CONFIG) as h:
        data = frame(UDP, 64)
        await learn(h, data)
        # Same first 60 bytes, but the frame ends before the IP packet does: its
        # signature is cached, yet its flow key is an L2-only one.
        short = data[:40]
        before = stats(h)
        fast_calls.clear()
        h.dp.port_by_name("p1").netdev.inject([data] * 3 + [short])  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) >= 4)
        assert fast_calls and not any(fast_calls)
        after = stats(h)
        assert after[0] - before[0] == 3  # the three whole frames hit the EMC, one by one
        # The short one (an L2-only key) is classified, not taken for a cache hit.
        assert (after[1] - before[1]) + (after[2] - before[2]) == 1


async def test_a_batch_of_truncated_frames_of_one_size_takes_the_slow_path(
    fast_calls: list[bool],
) -> None:
    """One frame size: the check that reads the cache's largest total length."""
    async with running_datapath(CONFIG) as h:
        data = frame(UDP, 64)  # IPv4 total length 50
        await learn(h, data)
        short = data[:60]  # a signature's worth of bytes, 4 short of the IP packet
        before = stats(h)
        fast_calls.clear()
        h.dp.port_by_name("p1").netdev.inject([short] * 8)  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) == 9)
        assert fast_calls and not any(fast_calls)
        after = stats(h)
        # Classified as an L2-only key once, then cache hits under that key.
        assert after[0] - before[0] == 7
        assert (after[1] - before[1]) + (after[2] - before[2]) == 1


async def test_a_long_frame_in_the_cache_does_not_stop_short_ones(fast_calls: list[bool]) -> None:
    async with running_datapath(CONFIG) as h:
        data = frame(UDP, 64)
        await learn(h, data)
        # A second flow's 1000-byte frames raise the cache's largest total length.
        await second_flow(h, 1000)
        fast_calls.clear()
        h.dp.port_by_name("p1").netdev.inject([data] * 8)  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) == 10)
        assert fast_calls == [True]


@pytest.mark.parametrize("alone", [False, True], ids=["del-flows", "del-flow"])
async def test_deleted_flows_are_not_hit(alone: bool, fast_calls: list[bool]) -> None:
    """del-flows also clears the cache; dpctl/del-flow removes one flow and
    leaves it, so the fast path must not hit the dead flow's entries (it
    sweeps them out first)."""
    async with running_datapath(CONFIG) as h:
        data = frame(UDP, 64)
        await learn(h, data)
        if alone:
            dump = (await h.call("dpctl/dump-flows")).splitlines()
            (line,) = [flow for flow in dump if "src=50:54:00:00:00:05" in flow]
            assert await h.call("dpctl/del-flow", line.split(", packets:")[0]) == ""
        else:
            await h.call("dpctl/del-flows")
        before = stats(h)
        fast_calls.clear()
        h.dp.port_by_name("p1").netdev.inject([data] * 8)  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) == 9)
        after = stats(h)
        assert fast_calls and not any(fast_calls)
        assert after[0] - before[0] == 7 and after[2] - before[2] == 1  # re-installed once
        assert " packets:7, bytes:448," in await h.call("dpctl/dump-flows")  # not the upcalled one


async def test_mixed_flows_are_grouped_by_actions(fast_calls: list[bool]) -> None:
    async with running_datapath(CONFIG) as h:
        data = frame(UDP, 64)
        await learn(h, data)
        other = await second_flow(h, 80)
        fast_calls.clear()
        batch = [data, other] * 8
        h.dp.port_by_name("p1").netdev.inject(batch)  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) == 18)
        assert fast_calls == [True]
        # Both flows share one output set: the batch went out in arrival order.
        assert sent(h, "p2")[2:] == batch
        # One megaflow (NORMAL matches on MACs only) with exact byte counts;
        # learn()'s first packet made the upcall and is not counted.
        dump = await h.call("dpctl/dump-flows")
        assert f" packets:17, bytes:{8 * 64 + 9 * 80}," in dump, dump


async def test_flows_with_different_actions_get_exact_per_flow_counts(
    fast_calls: list[bool],
) -> None:
    """Two flows, two action sets, two frame sizes in one batch: the fast path's
    per-flow packet counting and non-uniform byte counting, flow by flow."""
    async with running_datapath(CONFIG) as h:
        kept = frame(UDP, 64)
        dropped = frame(UDP.replace("udp(src=1,dst=2)", "udp(src=3,dst=4)"), 90)
        base = "in_port(2),eth_type(0x0800),ipv4(proto=17,frag=no),"
        assert await h.call("dpctl/add-flow", base + "udp(src=1)", "3") == ""
        assert await h.call("dpctl/add-flow", base + "udp(src=3)", "drop") == ""
        p1 = h.dp.port_by_name("p1").netdev
        p1.inject([kept, dropped])  # type: ignore[union-attr]  # megaflow hits fill the EMC
        await h.wait_for(lambda: len(sent(h, "p2")) == 1)
        h.dp.pmds[0].flow_table.emc.fast_backoff.clear()
        fast_calls.clear()
        before = stats(h)
        p1.inject([kept, dropped, dropped] * 5 + [kept])  # type: ignore[union-attr]
        await h.wait_for(lambda: len(sent(h, "p2")) == 7)
        assert fast_calls == [True]
        after = stats(h)
        assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (16, 0, 0)
        assert sent(h, "p2") == [kept] * 7
        dump = await h.call("dpctl/dump-flows")
        assert "udp(src=1), packets:7, bytes:448, " in dump, dump
        assert "udp(src=3), packets:11, bytes:990, " in dump, dump
