"""Encoding a scrape without stalling the event loop: slices, a short cache, gzip.

Collecting the families is cheap: PMD workers publish their counters in
shared memory and the sources only read them.  Encoding them is not:
prometheus-client formats one sample at a time in Python, and a switch with
200 ports of 4 rx queues has thousands of samples.  Done in one go on the
event loop, that stalls the control socket and the ports the main thread
polls for as long as it takes (tens of milliseconds).  So:

* the families are collected in one go, without a checkpoint, so every
  figure of a scrape still comes from the same instant; they are then
  encoded in batches of at most :data:`BATCH_SAMPLES` samples, with a
  checkpoint whenever a slice of :data:`SLICE_NS` of CPU is used up, so
  other tasks (the control socket, the main thread's ports) run in
  between, as they do while the control server builds a big reply;
* the encoded body is kept for ``max_age`` seconds and served to every
  scraper that asks for the same body meanwhile (a second Prometheus, a
  scrape loop): at most one encoding per body and ``max_age`` however many
  scrapers there are; those that ask while it is being made wait for it;
* it is gzipped, a slice at a time too, for scrapers that accept gzip
  (Prometheus always does);
* ``name[]`` restricts the body to the series of those names, as
  prometheus-client's own exposition does.

Not a worker thread: the encoder is pure Python and holds the GIL, so the
event loop would wait for it at every switch interval (5 ms) instead of at
a checkpoint of our choosing.
"""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Callable, Iterable
from typing import TypeAlias

import attrs
import trio
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: Longest the encoder runs before other tasks get their turn, ns (what
#: the control server's pacer allows a big reply's builder).
SLICE_NS = 500_000
#: Samples encoded in one call of prometheus-client's encoder (well under
#: a slice: some microseconds each).
BATCH_SAMPLES = 64
#: zlib's default level: within a few percent of level 9's size on this
#: repetitive text, at a fraction of the time.
GZIP_LEVEL = 6
#: Seconds an encoded body is served again.  Shorter than any sensible
#: scrape interval, long enough that scrapers in a loop share one encoding.
MAX_AGE = 1.0
#: Bodies kept (one per format, ``name[]`` set and encoding): a scraper
#: varying ``name[]`` cannot make the cache grow.
MAX_BODIES = 8

Encoder: TypeAlias = Callable[[Collector], bytes]
_Key: TypeAlias = tuple[str, frozenset[str] | None, bool]


@attrs.frozen
class Body:
    """An encoded scrape: its bytes, their Content-Type, whether gzipped, when made."""

    data: bytes
    content_type: str
    gzipped: bool
    made: float


class _Families(Collector):
    """Families already collected, in the shape prometheus-client's encoders take."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class Exposition:
    """Encodes what ``collect`` returns into bodies for scrapers (see the module text)."""

    def __init__(
        self,
        collect: Callable[[], Iterable[Metric]],
        *,
        max_age: float = MAX_AGE,
        slice_ns: int = SLICE_NS,
    ) -> None:
        self._collect = collect
        self.max_age = max_age
        self.slice_ns = slice_ns
        self._bodies: dict[_Key, Body] = {}
        self._making: dict[_Key, trio.Event] = {}
        #: Bodies encoded so far (each one a collection of every family).
        self.encodings = 0

    async def body(
        self, accept: str = "", accept_encoding: str = "", names: Iterable[str] | None = None
    ) -> Body:
        """The body for a scraper that sent these ``Accept`` headers and ``name[]`` values."""
        encoder, content_type = choose_encoder(accept)
        wanted = None if names is None else frozenset(names)
        key = (content_type, wanted, gzip_accepted(accept_encoding))
        while True:
            body = self._bodies.get(key)
            if body is not None and trio.current_time() - body.made < self.max_age:
                return body
            making = self._making.get(key)
            if making is None:
                break
            # Another scraper's request is encoding it: share the result (or,
            # if that request was cancelled, make it after all).
            await making.wait()
        done = self._making[key] = trio.Event()
        try:
            body = await self._make(encoder, key)
        finally:
            del self._making[key]
            done.set()
        self._keep(key, body)
        return body

    async def _make(self, encoder: Encoder, key: _Key) -> Body:
        content_type, names, gzipped = key
        families = list(self._collect())  # no checkpoint here: one instant
        self.encodings += 1
        if names is not None:
            families = _restricted(families, names)
        openmetrics = content_type.startswith("application/openmetrics-text")
        pace = _Pace(self.slice_ns)
        parts = await encode(encoder, families, openmetrics=openmetrics, pace=pace)
        data = await _gzip(parts, pace) if gzipped else b"".join(parts)
        return Body(data, content_type, gzipped, trio.current_time())

    def _keep(self, key: _Key, body: Body) -> None:
        now = trio.current_time()
        for old in [k for k, b in self._bodies.items() if now - b.made >= self.max_age]:
            del self._bodies[old]
        if len(self._bodies) >= MAX_BODIES:
            del self._bodies[min(self._bodies, key=lambda k: self._bodies[k].made)]
        self._bodies[key] = body


def _restricted(families: list[Metric], names: frozenset[str]) -> list[Metric]:
    """The families cut down to the samples named in ``names`` (those left with none go)."""
    kept = []
    for family in families:
        samples = [s for s in family.samples if s.name in names]
        if samples:
            part = copy.copy(family)
            part.samples = samples
            kept.append(part)
    return kept


def _splittable(family: Metric) -> bool:
    # Samples the encoders move to extra families of their own (``_created``
    # and friends) would be repeated by every slice: such a family stays whole.
    extra = (f"{family.name}_created", f"{family.name}_gsum", f"{family.name}_gcount")
    return not any(s.name in extra for s in family.samples)


def _without_header(text: bytes) -> bytes:
    """``text`` without its leading comment lines (HELP, TYPE, UNIT)."""
    start = 0
    while text.startswith(b"#", start):
        start = text.index(b"\n", start) + 1
    return text[start:]


class _Pace:
    """Checkpoints once per ``slice_ns`` of work (every call with 0)."""

    def __init__(self, slice_ns: int) -> None:
        self._slice_ns = slice_ns
        self._deadline = time.perf_counter_ns() + slice_ns

    async def __call__(self) -> None:
        if time.perf_counter_ns() >= self._deadline:
            await trio.lowlevel.checkpoint()
            self._deadline = time.perf_counter_ns() + self._slice_ns


async def encode(
    encoder: Encoder, families: list[Metric], *, openmetrics: bool, pace: _Pace | None = None
) -> list[bytes]:
    """``families`` encoded by ``encoder`` in parts, pausing at ``pace``'s checkpoints.

    Small families are encoded together, up to :data:`BATCH_SAMPLES`
    samples at a time; a bigger one is encoded in slices of its samples,
    the comment lines kept only for the first.  The parts joined are what
    ``encoder`` makes of all the families at once.
    """
    eof = b"# EOF\n"
    pace = pace or _Pace(SLICE_NS)

    def run(batch: list[Metric]) -> bytes:
        text = encoder(_Families(batch))
        return text.removesuffix(eof) if openmetrics else text

    parts: list[bytes] = []
    batch: list[Metric] = []
    count = 0
    for family in families:
        samples = family.samples
        if len(samples) <= BATCH_SAMPLES or not _splittable(family):
            batch.append(family)
            count += len(samples)
            if count >= BATCH_SAMPLES:
                parts.append(run(batch))
                batch, count = [], 0
                await pace()
            continue
        if batch:
            parts.append(run(batch))
            batch, count = [], 0
        for start in range(0, len(samples), BATCH_SAMPLES):
            part = copy.copy(family)
            part.samples = samples[start : start + BATCH_SAMPLES]
            text = run([part])
            parts.append(text if start == 0 else _without_header(text))
            await pace()
    if batch:
        parts.append(run(batch))
    if openmetrics:
        parts.append(eof)
    return parts


async def _gzip(parts: list[bytes], pace: _Pace) -> bytes:
    """``parts`` joined and gzipped, pausing at ``pace``'s checkpoints."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(part) for part in parts[:1]]
    for part in parts[1:]:
        await pace()
        out.append(compressor.compress(part))
    out.append(compressor.flush())
    return b"".join(out)
