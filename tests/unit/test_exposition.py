"""Encoding scrapes: slices equal to one go, checkpoints, shared bodies, gzip, name[]."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from functools import partial

import trio
import trio.testing
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from pyvswitchd.observe.exposition import BATCH_SAMPLES, MAX_BODIES, Exposition, encode

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def families() -> list[Metric]:
    big = CounterMetricFamily("x_packets", "Packets\nwith \\ odd help", labels=["port", "q"])
    for i in range(BATCH_SAMPLES * 5 + 7):
        big.add_metric([f'p"{i}\\\n', str(i % 4)], i)
    seconds = CounterMetricFamily("x_busy", "Busy time", labels=["core"], unit="seconds")
    for i in range(BATCH_SAMPLES + 1):
        seconds.add_metric([str(i)], i / 7)
    created = CounterMetricFamily("x_created_kept", "Has _created samples", labels=["n"])
    for i in range(BATCH_SAMPLES + 50):
        created.add_metric([str(i)], i, created=1700000000.0 + i)
    small = [GaugeMetricFamily(f"x_small_{i}", "small", value=i) for i in range(30)]
    empty = GaugeMetricFamily("x_empty", "no samples", labels=["a"])
    return [*small[:10], big, empty, seconds, *small[10:], created]


class _All(Collector):
    def __init__(self, items: list[Metric]) -> None:
        self.items = items

    def collect(self) -> Iterable[Metric]:
        return self.items


async def test_slices_join_to_what_one_go_makes() -> None:
    items = families()
    parts = await encode(generate_latest, items, openmetrics=False)
    assert len(parts) > 6
    assert b"".join(parts) == generate_latest(_All(items))
    encoder = partial(openmetrics.generate_latest, version="1.0.0")
    parts = await encode(encoder, items, openmetrics=True)
    assert b"".join(parts) == encoder(_All(items))


async def test_encoding_lets_other_tasks_run() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        before = ticks
        await Exposition(families, max_age=0, slice_ns=0).body()
        nursery.cancel_scope.cancel()
    # The ticker runs between batches of samples (a scheduler may run it
    # less often than once per batch, but never not at all).
    batches = len(await encode(generate_latest, families(), openmetrics=False))
    assert ticks - before >= batches // 2 >= 4


async def test_concurrent_scrapes_share_one_encoding() -> None:
    expo = Exposition(families)
    bodies = []

    async def scrape() -> None:
        bodies.append(await expo.body())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(scrape)
    assert expo.encodings == 1
    assert bodies[0] is bodies[1] is bodies[2]
    # Another format is another body.
    assert (await expo.body(OPENMETRICS)).data.endswith(b"# EOF\n")
    assert expo.encodings == 2


async def test_bodies_expire(autojump_clock: trio.testing.MockClock) -> None:
    expo = Exposition(families, max_age=1.0)
    first = await expo.body()
    await trio.sleep(0.9)
    assert await expo.body() is first
    await trio.sleep(0.1)
    assert await expo.body() is not first
    assert expo.encodings == 2


async def test_gzip() -> None:
    expo = Exposition(families, max_age=0)
    plain = await expo.body(accept_encoding="identity")
    zipped = await expo.body(accept_encoding="deflate, gzip;q=1.0")
    assert not plain.gzipped and zipped.gzipped
    assert gzip.decompress(zipped.data) == plain.data
    assert len(zipped.data) < len(plain.data) / 5


async def test_name_filter_keeps_the_named_series() -> None:
    expo = Exposition(families, max_age=0)
    body = await expo.body(names=["x_busy_seconds_total", "x_small_3", "nothing"])
    lines = [line for line in body.data.decode().splitlines() if not line.startswith("#")]
    assert len(lines) == BATCH_SAMPLES + 2
    assert {line.split("{")[0].split()[0] for line in lines} == {
        "x_busy_seconds_total",
        "x_small_3",
    }
    assert (await expo.body(names=[])).data == b""


async def test_the_cache_is_bounded() -> None:
    expo = Exposition(families, max_age=60)
    for i in range(MAX_BODIES * 3):
        await expo.body(names=[f"x_small_{i}"])
    assert len(expo._bodies) <= MAX_BODIES
