"""Pacer: big replies rendered in slices, taking turns with everything else."""

from __future__ import annotations

import itertools
import time

import trio

from pyvswitchd.control.pacer import Pacer


def busy(us: int) -> None:
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


async def test_chunks_join_to_the_whole_text() -> None:
    pacer = Pacer(chunk_chars=100)
    chunks = [c async for c in pacer.render(range(1000), lambda i: f"{i}\n")]
    assert "".join(chunks) == "".join(f"{i}\n" for i in range(1000))
    assert all(len(c) < 100 + 5 for c in chunks) and len(chunks) > 30
    assert [c async for c in pacer.render([], str)] == []


async def test_json_array() -> None:
    pacer = Pacer(chunk_chars=10)
    text = "".join([c async for c in pacer.json_array(range(50), lambda i: {"n": i})])
    assert text == "[" + ",".join(f'{{"n":{i}}}' for i in range(50)) + "]"
    assert "".join([c async for c in pacer.json_array([], str)]) == "[]"


async def test_other_tasks_run_while_a_big_reply_is_built() -> None:
    # A stand-in for a PMD: it must keep running between the slices of a
    # build that takes 300 ms of CPU in all.
    pacer = Pacer(slice_ns=500_000)
    gaps: list[float] = []
    done = False

    async def pmd() -> None:
        last = time.perf_counter()
        while not done:
            await trio.lowlevel.checkpoint()
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pmd)
        await trio.lowlevel.checkpoint()
        start = time.perf_counter()
        text = "".join([c async for c in pacer.render(range(3000), lambda i: busy(100) or "x")])
        took = time.perf_counter() - start
        done = True
    assert text == "x" * 3000
    assert took > 0.25
    assert pacer.slices >= 300 * 1000 // 500 // 2  # about one slice per 0.5 ms of work
    # The PMD ran all along, never kept waiting for more than a few slices.
    assert len(gaps) >= pacer.slices // 2
    assert max(gaps) < 0.05, max(gaps)


async def test_builders_take_turns() -> None:
    # Two builders at once: their slices alternate, they do not run side by side.
    pacer = Pacer(slice_ns=200_000, chunk_chars=1)
    order: list[str] = []

    async def build(name: str) -> None:
        async for _ in pacer.render(range(200), lambda i: busy(50) or order.append(name) or "x"):
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(build, "a")
        nursery.start_soon(build, "b")
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches > 10
