"""Prometheus metrics, served from inside the trio run.

prometheus-client's own ``start_http_server`` runs a thread that would call
our collectors while PMD tasks mutate the data they read.  Here the HTTP
side is a small h11 state machine on ``trio.serve_tcp``: a scrape collects
on the event loop between two PMD iterations, so every collector sees a
consistent snapshot without locks, and :mod:`.exposition` encodes it a
slice at a time (cached briefly, gzipped on request, ``name[]`` honoured).

Families are contributed by the subsystem that owns the data, each as a
callable returning prometheus-client metric families (see
:meth:`Metrics.add_source`), next to prometheus-client's process, platform
and garbage-collector collectors.  Names follow Prometheus's naming
practice with OVS's vocabulary, so that dashboards built for OVS exporters
carry over: ``ovs_`` prefix for datapath data, ``pyvswitchd_`` for the
daemon's own health, ``_total`` only on counters, base units (seconds,
bytes), one family per quantity with a label for the dimension that adds
up.  docs/metrics.md lists every family.

Where it listens can change at run time (``daemon:metrics-address``):
:meth:`Metrics.run` owns the serving tasks and :meth:`Metrics.set_address`
moves them, binding the new address before the old one is let go, so a
change that cannot be made changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qs

import h11
import trio
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from .accept import Acceptor
from .coverage import Coverage
from .exposition import MAX_AGE, Body, Exposition
from .vlog import RateLimit, Vlog

Source = Callable[[], Iterable[Metric]]

#: Bytes of request head accepted from a scraper; anything longer is refused.
MAX_REQUEST_BYTES = 16384
#: Seconds a scraper may take to send its request (an idle connection is
#: closed after this long).
REQUEST_TIMEOUT = 10.0
#: Seconds a connection may last in all, reading the response included.
CONNECTION_TIMEOUT = 30.0
#: Connections served at once; further ones are closed on accept.  A
#: Prometheus server uses one per scrape, so this is plenty, and it bounds
#: the descriptors (and memory) a flood of TCP connections can take from
#: the control socket and the ports.
MAX_CONNECTIONS = 32

#: The families of prometheus-client's standard collectors (name, type,
#: help), for ``--list-metrics``.  They describe the daemon's own process;
#: PMD worker processes have ``pyvswitchd_pmd_worker_*``.
COLLECTOR_METRICS = (
    ("process_cpu_seconds_total", "counter", "CPU time of the daemon's main process"),
    ("process_resident_memory_bytes", "gauge", "Resident memory of the main process"),
    ("process_virtual_memory_bytes", "gauge", "Virtual memory of the main process"),
    ("process_start_time_seconds", "gauge", "Unix time the main process started"),
    ("process_open_fds", "gauge", "Open file descriptors of the main process"),
    ("process_max_fds", "gauge", "Limit of open file descriptors"),
    ("python_info", "gauge", "Python implementation and version (labels)"),
    ("python_gc_objects_collected_total", "counter", "Objects collected, label generation"),
    ("python_gc_objects_uncollectable_total", "counter", "Uncollectable objects found"),
    ("python_gc_collections_total", "counter", "Garbage collections, label generation"),
)


class _SourcesCollector(Collector):
    def __init__(self, sources: list[Source]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()


class Metrics:
    """The registry of metric sources and the HTTP listener that exposes them."""

    def __init__(
        self, vlog: Vlog, *, max_connections: int = MAX_CONNECTIONS, max_age: float = MAX_AGE
    ) -> None:
        self._sources: list[Source] = []
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(_SourcesCollector(self._sources))
        #: Encodes scrapes; ``max_age`` is how long a body is served again.
        self.exposition = Exposition(self.registry.collect, max_age=max_age)
        self._log = vlog.module("metrics")
        self._rl = RateLimit(5, 5)
        self.scrapes = 0
        self.max_connections = max_connections
        self.active_connections = 0
        self.refused_connections = 0
        #: The address scrapes are answered on (None: nowhere).
        self.address: str | None = None
        self._scope: trio.CancelScope | None = None
        self._served = trio.Event()
        self._nursery: trio.Nursery | None = None

    def add_source(self, source: Source) -> None:
        self._sources.append(source)

    async def render(
        self, accept: str = "", accept_encoding: str = "", names: list[str] | None = None
    ) -> Body:
        """The body for a scraper that sent these headers and ``name[]`` values."""
        return await self.exposition.body(accept, accept_encoding, names)

    async def listen(self, address: str) -> list[trio.SocketListener]:
        """Bind ``HOST:PORT`` (raises OSError when it cannot)."""
        host, _, port = address.rpartition(":")
        listeners = await trio.open_tcp_listeners(int(port), host=host.strip("[]"))
        self._log.info(f"serving metrics on http://{address}/metrics")
        return listeners

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the serving tasks until cancelled; :meth:`set_address` says where."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self.address = None

    async def set_address(self, address: str | None) -> None:
        """Answer scrapes on ``address`` (``HOST:PORT``; None: nowhere) from now on.

        Raises OSError when the address cannot be bound; the old one is then
        still served.  A move to the same port on another host address
        (``127.0.0.1:10099`` to ``0.0.0.0:10099``) cannot bind while the old
        listener holds the port: the old one is closed first in that case
        and bound again if the new one still fails.
        """
        if self._nursery is None:
            raise RuntimeError("Metrics.run is not running")
        if address == self.address:
            return
        old = self.address
        try:
            listeners = await self.listen(address) if address is not None else []
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or old is None or _port(old) != _port(address):
                raise
            await self._stop()
            try:
                listeners = await self.listen(address) if address is not None else []
            except OSError:
                with contextlib.suppress(OSError):
                    self._start(await self.listen(old), old)
                raise
        await self._stop()
        self._start(listeners, address)

    def _start(self, listeners: list[trio.SocketListener], address: str | None) -> None:
        assert self._nursery is not None
        self.address = address
        if listeners:
            self._scope, self._served = trio.CancelScope(), trio.Event()
            self._nursery.start_soon(self._serve_in, self._scope, self._served, listeners)

    async def _stop(self) -> None:
        """Stop serving; the listening sockets are closed when this returns."""
        if self._scope is not None:
            self._scope.cancel()
            await self._served.wait()
        if self.address is not None:
            self._log.info(f"no longer serving metrics on http://{self.address}/metrics")
        self._scope, self.address = None, None

    async def _serve_in(
        self, scope: trio.CancelScope, done: trio.Event, listeners: list[trio.SocketListener]
    ) -> None:
        try:
            with scope:
                await self.serve(listeners)
        finally:
            # Cancelled before every accept loop took its listener over: close the rest.
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()
            done.set()

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        """Answer scrapes on ``listeners`` until cancelled."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        # Not trio.serve_listeners: it has no connection cap, and it reports
        # EMFILE through the logging module every 100 ms.
        address = listener.socket.getsockname()
        acceptor = Acceptor(listener, self._log, f"metrics {address[0]}:{address[1]}")
        async with listener:
            while True:
                stream = await acceptor.accept()
                if self.active_connections >= self.max_connections:
                    self.refused_connections += 1
                    self._log.warn(
                        f"{self.max_connections} metrics connections already open; "
                        "closing new connection",
                        rl=self._rl,
                    )
                    stream.socket.close()
                    continue
                self.active_connections += 1
                nursery.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(CONNECTION_TIMEOUT):
                async with stream:
                    await self._exchange(stream)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.ProtocolError,
            OSError,
        ) as exc:
            self._log.dbg(f"metrics connection dropped: {exc}")
        except Exception as exc:  # one scrape's bug must not stop the switch
            self._log.err(f"metrics connection failed: {exc!r}", rl=self._rl)
        finally:
            self.active_connections -= 1

    async def _exchange(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        request: h11.Request | None = None
        with trio.move_on_after(REQUEST_TIMEOUT):
            while request is None:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    await stream.send_all(
                        f"HTTP/1.1 {exc.error_status_hint} Bad Request\r\n"
                        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
                    )
                    return
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.ConnectionClosed):
                    return
        if request is None:
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        target, _, query = request.target.decode("latin-1").partition("?")
        extra: list[tuple[str, str]] = []
        if request.method not in (b"GET", b"HEAD"):
            status, body, ctype = 405, b"method not allowed\n", "text/plain"
        elif target == "/metrics":
            self.scrapes += 1
            scrape = await self.render(
                headers.get("accept", ""),
                headers.get("accept-encoding", ""),
                parse_qs(query).get("name[]"),
            )
            status, body, ctype = 200, scrape.data, scrape.content_type
            extra.append(("Vary", "Accept-Encoding"))
            if scrape.gzipped:
                extra.append(("Content-Encoding", "gzip"))
        elif target == "/":
            status, ctype = 200, "text/html"
            body = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'
        else:
            status, body, ctype = 404, b"not found\n", "text/plain"
        response = h11.Response(
            status_code=status,
            headers=[
                ("Content-Type", ctype),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *extra,
            ],
        )
        await stream.send_all(conn.send(response) or b"")
        if request.method != b"HEAD":
            await stream.send_all(conn.send(h11.Data(data=body)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


def _port(address: str | None) -> str:
    return address.rpartition(":")[2] if address else ""


def coverage_source(coverage: Coverage) -> Source:
    """``ovs_coverage_total{event=...}``: every coverage counter, hit or not."""

    def collect() -> Iterable[Metric]:
        family = CounterMetricFamily(
            "ovs_coverage", "Coverage counter events (coverage/show)", labels=["event"]
        )
        coverage.refresh()
        for counter in coverage.counters():
            family.add_metric([counter.name], counter.total)
        yield family

    return collect
