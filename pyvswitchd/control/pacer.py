"""Building big replies a slice at a time, so forwarding never waits for them.

The PMDs are trio tasks in the daemon's thread: while a command handler
runs without yielding, no packet moves.  Formatting 65,536 megaflows for
``dpctl/dump-flows`` takes seconds of CPU; done in one go it stopped
forwarding for that long, and a client looping on it cut the forwarding
rate by an order of magnitude.

A :class:`Pacer` (one per control server, shared by every connection)
renders items into text in slices of at most ``slice_ns`` of CPU.  Between
two slices every other runnable task gets its turn, PMDs first of all, and
only one builder renders at a time (a FIFO lock), so a hundred clients
dumping at once take no more of the loop than one.  The rendered text comes
out in chunks of about ``chunk_chars`` characters, which the server sends
as they come: what the daemon holds for a reply is one chunk, not the whole
reply, and a client that stops reading stops the rendering.

Any big reply can use it: a handler returns a
:class:`~pyvswitchd.control.registry.StreamReply` whose ``text`` (and
``json``) are async iterators of chunks, typically ``pacer.render(...)``
or ``pacer.json_array(...)`` over a generator of the items.  A source that
is itself asynchronous (batches arriving from other processes) is consumed
batch by batch, each batch rendered through the pacer (an inner generator
is closed explicitly, or trio warns when the client goes away mid-reply)::

    async def text() -> AsyncIterator[str]:
        async for batch in fetch_batches():
            async with contextlib.aclosing(pacer.render(batch, format_one)) as chunks:
                async for chunk in chunks:
                    yield chunk
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

#: Longest a builder renders before other tasks run, ns.  Half the 1 ms a
#: busy PMD runs between two yields (pmd.PMD_YIELD_INTERVAL_NS), so a busy
#: PMD keeps most of the loop while a dump is being built.
SLICE_NS = 500_000
#: Characters of rendered text handed to the sender at a time.
CHUNK_CHARS = 64 * 1024

_clock = time.perf_counter_ns


class Pacer:
    """Takes turns between the builders of big replies and the rest of the daemon."""

    def __init__(self, slice_ns: int = SLICE_NS, chunk_chars: int = CHUNK_CHARS) -> None:
        self.slice_ns = slice_ns
        self.chunk_chars = chunk_chars
        self._turn = trio.Lock()
        #: Slices rendered since start (for tests and memory/show).
        self.slices = 0

    async def render(
        self, items: Iterable[T], render: Callable[[T], str]
    ) -> AsyncGenerator[str, None]:
        """``render(item)`` for every item, joined, in chunks of about ``chunk_chars``.

        The iteration of ``items`` happens inside the slices too, so a
        generator that filters or snapshots lazily is paced as well.  The
        lock is never held while the caller has a chunk: a consumer that
        blocks (a client that does not read) holds up no other builder.
        """
        iterator = iter(items)
        parts: list[str] = []
        size = 0
        done = False
        while not done:
            # Acquiring yields to the scheduler even when the lock is free.
            async with self._turn:
                self.slices += 1
                deadline = _clock() + self.slice_ns
                for item in iterator:
                    text = render(item)
                    parts.append(text)
                    size += len(text)
                    if size >= self.chunk_chars or _clock() >= deadline:
                        break
                else:
                    done = True
            if parts and (size >= self.chunk_chars or done):
                chunk = "".join(parts)
                parts.clear()
                size = 0
                yield chunk

    async def json_array(
        self, items: Iterable[T], to_json: Callable[[T], Any]
    ) -> AsyncGenerator[str, None]:
        """A JSON array of ``to_json(item)`` for every item, as text chunks."""
        first = True

        def element(item: T) -> str:
            nonlocal first
            value = to_json(item)
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            if first:
                first = False
                return text
            return "," + text

        yield "["
        async with contextlib.aclosing(self.render(items, element)) as chunks:
            async for chunk in chunks:
                yield chunk
        yield "]"
