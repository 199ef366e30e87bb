"""Accepting connections that keeps going when the process runs out of descriptors.

``accept()`` fails with EMFILE when the process has no file descriptor
left (ENFILE: the whole system; ENOBUFS/ENOMEM: the kernel is short of
memory).  The pending connection stays in the listen backlog, so the
listening socket stays readable: retrying at once would spin on the CPU
the PMDs need, and trio's SocketListener raises these errors, which would
end the listener's nursery and with it the daemon.  :class:`Acceptor`
pauses instead, doubling the pause from BACKOFF_MIN up to BACKOFF_MAX,
logs the first failure of a run of them and the recovery (both rate
limited), and accepts again as soon as a descriptor is free.  The
connections waiting in the backlog are then served in order.

Both listeners of the daemon use it: the control socket and the metrics
port.  Other OSErrors get the same treatment, logged at ERR: a listener
that fails for a reason we did not foresee should not stop the switch.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable

import trio

from .ratelimit import RateLimit
from .vlog import VlogModule

#: First pause after a failed accept, seconds.
BACKOFF_MIN = 0.01
#: Longest pause: how late a freed descriptor is noticed at worst.
BACKOFF_MAX = 1.0
#: Errors that mean "no resources now, maybe later".
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    """Wraps one listener; :meth:`accept` returns the next connection, whatever happens."""

    def __init__(
        self,
        listener: trio.SocketListener,
        log: VlogModule,
        what: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    ) -> None:
        self._listener = listener
        self._log = log
        self._what = what
        self._sleep = sleep
        self._rl = RateLimit(1, 5)
        #: Failed accept() calls since start, and in the current run of failures.
        self.failures = 0
        self.streak = 0

    async def accept(self) -> trio.SocketStream:
        delay = 0.0
        while True:
            try:
                stream = await self._listener.accept()
            except OSError as exc:
                self.failures += 1
                self.streak += 1
                if self.streak == 1:
                    reason = os.strerror(exc.errno) if exc.errno else str(exc)
                    text = f"{self._what}: accept failed: {reason}; retrying"
                    if exc.errno in CAPACITY_ERRNOS:
                        self._log.warn(f"{text} (new connections wait meanwhile)", rl=self._rl)
                    else:
                        self._log.err(text, rl=self._rl)
                delay = min(BACKOFF_MAX, max(BACKOFF_MIN, delay * 2))
                await self._sleep(delay)
                continue
            if self.streak:
                self._log.info(
                    f"{self._what}: accepting again after {self.streak} failed attempts",
                    rl=self._rl,
                )
                self.streak = 0
            return stream
