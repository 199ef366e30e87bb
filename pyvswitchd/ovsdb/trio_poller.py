"""Run the ``ovs`` package's non-blocking protocol objects under trio.

The IDL, its JSON-RPC session and its transactions never block: each has a
``run()`` that does what it can now and a ``wait(poller)`` that names what
would let it do more (a socket becoming readable or writable, a timer, or
"call me again at once").  OVS's own :class:`ovs.poller.Poller` then blocks
the whole process in ``poll(2)``.  :class:`TrioPoller` takes the same calls
and turns them into a trio wait instead, so the daemon's other tasks keep
running while the database is quiet.
"""

from __future__ import annotations

import contextlib
import math
import select
from collections.abc import Awaitable, Callable

import trio
import trio.lowlevel
from ovs import timeval


class TrioPoller:
    """Collects one round of ``wait()`` requests; :meth:`block` waits for the first."""

    def __init__(self) -> None:
        self._readable: set[int] = set()
        self._writable: set[int] = set()
        self._deadline_ms = math.inf
        self._immediate = False

    # -- the interface of ovs.poller.Poller that the IDL, its session and
    # -- its streams call ----------------------------------------------------

    def fd_wait(self, fd: object, events: int) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()  # type: ignore[attr-defined]
        if events & (select.POLLIN | select.POLLPRI):
            self._readable.add(number)
        if events & select.POLLOUT:
            self._writable.add(number)

    def timer_wait(self, msec: int) -> None:
        """Wake after ``msec`` milliseconds (negative: never)."""
        if msec >= 0:
            self._deadline_ms = min(self._deadline_ms, timeval.msec() + msec)

    def timer_wait_until(self, msec: int) -> None:
        """Wake at ``msec`` on OVS's monotonic clock (``ovs.timeval.msec()``)."""
        self._deadline_ms = min(self._deadline_ms, msec)

    def immediate_wake(self) -> None:
        self._immediate = True

    # -- trio side ------------------------------------------------------------

    def timeout(self) -> float:
        """Seconds until the earliest timer (inf when none, 0 for an immediate wake)."""
        if self._immediate:
            return 0.0
        if self._deadline_ms == math.inf:
            return math.inf
        now_ms: float = timeval.msec()
        return max(0.0, (self._deadline_ms - now_ms) / 1000)

    async def block(self, limit: float = math.inf) -> None:
        """Wait until a descriptor is ready or a timer (or ``limit`` seconds) expires."""
        timeout = min(self.timeout(), limit)
        if timeout <= 0:
            await trio.lowlevel.checkpoint()
            return
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for fd in self._readable:
                    nursery.start_soon(self._wake_on, nursery, fd, trio.lowlevel.wait_readable)
                for fd in self._writable:
                    nursery.start_soon(self._wake_on, nursery, fd, trio.lowlevel.wait_writable)
                if not self._readable and not self._writable:
                    await trio.sleep_forever()

    @staticmethod
    async def _wake_on(
        nursery: trio.Nursery, fd: int, wait: Callable[[int], Awaitable[None]]
    ) -> None:
        # A descriptor closed under us wakes the IDL too: its next run() sees why.
        with contextlib.suppress(OSError, trio.ClosedResourceError):
            await wait(fd)
        nursery.cancel_scope.cancel()
