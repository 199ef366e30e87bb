"""Metrics endpoint: in-loop HTTP, families from sources, bad requests."""

from __future__ import annotations

import gzip
import io
import socket

import pytest
import trio
import trio.testing
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.metrics import Metrics, coverage_source
from pyvswitchd.observe.vlog import Vlog


def make(max_age: float = 0.0) -> tuple[Metrics, Coverage]:
    vlog = Vlog("test", console=io.StringIO(), syslog_method="null")
    metrics = Metrics(vlog, max_age=max_age)
    coverage = Coverage()
    metrics.add_source(coverage_source(coverage))
    return metrics, coverage


async def fetch(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def test_scrape_returns_coverage_counters(nursery: trio.Nursery) -> None:
    metrics, coverage = make()
    coverage.define("never_hit")
    coverage.define("unixctl_received").add(7)
    listeners = await metrics.listen("127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(metrics.serve, listeners)
    raw = await fetch(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = {s.labels["event"]: s.value for s in families["ovs_coverage"].samples}
    assert samples == {"never_hit": 0.0, "unixctl_received": 7.0}
    assert families["ovs_coverage"].type == "counter"
    assert b"# HELP ovs_coverage_total" in body
    assert metrics.scrapes == 1


async def test_sources_are_read_at_scrape_time(nursery: trio.Nursery) -> None:
    metrics, _ = make()
    state = {"v": 1.0}
    metrics.add_source(lambda: [GaugeMetricFamily("x_value", "help", value=state["v"])])
    listeners = await metrics.listen("127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(metrics.serve, listeners)
    assert b"x_value 1.0" in await fetch(port, b"GET /metrics HTTP/1.0\r\n\r\n")
    state["v"] = 5.0
    assert b"x_value 5.0" in await fetch(port, b"GET /metrics HTTP/1.0\r\n\r\n")


async def test_bad_requests_get_errors_not_crashes(nursery: trio.Nursery) -> None:
    metrics, _ = make()
    listeners = await metrics.listen("127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(metrics.serve, listeners)
    assert (await fetch(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 404")
    assert (
        await fetch(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    ).startswith(b"HTTP/1.1 405")
    assert (await fetch(port, b"\x00\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
    huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n"
    try:
        reply = await fetch(port, huge)
    except trio.BrokenResourceError:
        reply = b"HTTP/1.1 431"  # the server hung up mid-send: also a refusal
    assert reply.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400"))
    # Still serving.
    assert (await fetch(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 200")


async def test_openmetrics_negotiation() -> None:
    metrics, coverage = make()
    coverage.define("a").inc()
    body = await metrics.render("application/openmetrics-text; version=1.0.0")
    assert body.content_type.startswith("application/openmetrics-text")
    assert body.data.rstrip().endswith(b"# EOF")
    assert body.data.count(b"# EOF") == 1


async def serving(nursery: trio.Nursery, metrics: Metrics) -> int:
    listeners = await metrics.listen("127.0.0.1:0")
    nursery.start_soon(metrics.serve, listeners)
    return int(listeners[0].socket.getsockname()[1])


async def test_process_platform_and_gc_collectors(nursery: trio.Nursery) -> None:
    metrics, _ = make()
    port = await serving(nursery, metrics)
    body = (await fetch(port, b"GET /metrics HTTP/1.0\r\n\r\n")).partition(b"\r\n\r\n")[2]
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= names
    assert "python_gc_collections" in names


async def test_gzip_when_accepted(nursery: trio.Nursery) -> None:
    metrics, coverage = make()
    coverage.define("unixctl_received").add(7)
    port = await serving(nursery, metrics)
    raw = await fetch(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"\r\ncontent-encoding: gzip" in head.lower()
    assert b"\r\nvary: accept-encoding" in head.lower()
    assert b'ovs_coverage_total{event="unixctl_received"} 7.0' in gzip.decompress(body)
    # Not asked for: not gzipped.
    raw = await fetch(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-encoding" not in head.lower() and body.startswith(b"# HELP")


async def test_name_filter(nursery: trio.Nursery) -> None:
    metrics, coverage = make()
    coverage.define("unixctl_received").add(7)
    port = await serving(nursery, metrics)
    raw = await fetch(
        port,
        b"GET /metrics?name[]=ovs_coverage_total&name[]=process_max_fds HTTP/1.0\r\n\r\n",
    )
    body = raw.partition(b"\r\n\r\n")[2].decode()
    samples = [s for f in text_string_to_metric_families(body) for s in f.samples]
    assert {s.name for s in samples} == {"ovs_coverage_total", "process_max_fds"}
    # URL-encoded brackets, as Prometheus's params send them.
    raw = await fetch(port, b"GET /metrics?name%5B%5D=process_max_fds HTTP/1.0\r\n\r\n")
    body = raw.partition(b"\r\n\r\n")[2].decode()
    assert [f.name for f in text_string_to_metric_families(body)] == ["process_max_fds"]


async def test_a_body_is_served_again_for_max_age(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    metrics, _ = make(max_age=1.0)
    state = {"v": 1.0}
    metrics.add_source(lambda: [GaugeMetricFamily("x_value", "help", value=state["v"])])
    port = await serving(nursery, metrics)
    request = b"GET /metrics HTTP/1.0\r\n\r\n"
    assert b"x_value 1.0" in await fetch(port, request)
    state["v"] = 5.0
    await trio.sleep(0.5)
    assert b"x_value 1.0" in await fetch(port, request)
    assert metrics.exposition.encodings == 1
    await trio.sleep(0.5)
    assert b"x_value 5.0" in await fetch(port, request)
    assert metrics.exposition.encodings == 2


async def _is_closed(stream: trio.SocketStream) -> bool:
    try:
        with trio.fail_after(60):
            return await stream.receive_some(10) == b""
    except trio.BrokenResourceError:
        return True


async def test_connection_cap_and_idle_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from pyvswitchd.observe.metrics import REQUEST_TIMEOUT

    vlog = Vlog("test", console=io.StringIO(), syslog_method="null")
    metrics = Metrics(vlog, max_connections=2)
    listeners = await metrics.listen("127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(metrics.serve, listeners)
    idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    await trio.testing.wait_all_tasks_blocked()
    assert metrics.active_connections == 2
    extra = await trio.open_tcp_stream("127.0.0.1", port)
    start = trio.current_time()
    assert await _is_closed(extra)  # over the cap: closed at once
    assert trio.current_time() - start < 1
    assert metrics.refused_connections == 1
    # The idle ones are closed after REQUEST_TIMEOUT, and the cap frees up.
    for stream in idle:
        assert await _is_closed(stream)
    assert REQUEST_TIMEOUT <= trio.current_time() - start < REQUEST_TIMEOUT + 1
    assert metrics.active_connections == 0
    assert (await fetch(port, b"GET / HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 200")
    for stream in [*idle, extra]:
        await stream.aclose()


async def test_slow_reader_is_cut_off(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from pyvswitchd.observe.metrics import CONNECTION_TIMEOUT

    metrics, _ = make()
    big = [GaugeMetricFamily(f"x_{i}", "h" * 1000, value=i) for i in range(20000)]
    metrics.add_source(lambda: big)
    listeners = await metrics.listen("127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(metrics.serve, listeners)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
    start = trio.current_time()
    await trio.sleep(CONNECTION_TIMEOUT + 1)  # never read the 40 MB response
    assert metrics.active_connections == 0
    assert trio.current_time() - start >= CONNECTION_TIMEOUT
    await stream.aclose()


async def scrapes_on(port: int) -> bool:
    try:
        raw = await fetch(port, b"GET /metrics HTTP/1.0\r\n\r\n")
    except OSError:
        return False
    return raw.startswith(b"HTTP/1.1 200")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_set_address_moves_the_listener(nursery: trio.Nursery) -> None:
    metrics, _ = make()
    await nursery.start(metrics.run)
    first, second = free_port(), free_port()
    await metrics.set_address(f"127.0.0.1:{first}")
    assert metrics.address == f"127.0.0.1:{first}" and await scrapes_on(first)
    await metrics.set_address(f"127.0.0.1:{second}")
    assert await scrapes_on(second) and not await scrapes_on(first)
    # The same port on another host address: the old listener makes way.
    await metrics.set_address(f"0.0.0.0:{second}")
    assert metrics.address == f"0.0.0.0:{second}" and await scrapes_on(second)
    await metrics.set_address(None)
    assert metrics.address is None and not await scrapes_on(second)


async def test_set_address_that_cannot_bind_keeps_the_old_one(nursery: trio.Nursery) -> None:
    metrics, _ = make()
    await nursery.start(metrics.run)
    port = free_port()
    await metrics.set_address(f"127.0.0.1:{port}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            await metrics.set_address(f"127.0.0.1:{taken.getsockname()[1]}")
    assert metrics.address == f"127.0.0.1:{port}" and await scrapes_on(port)
    # Same port, and a host address nothing can bind: the old listener comes back.
    with pytest.raises(OSError):
        await metrics.set_address(f"192.0.2.1:{port}")
    assert metrics.address == f"127.0.0.1:{port}" and await scrapes_on(port)
