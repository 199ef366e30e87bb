#!/usr/bin/env python3
"""The soak's hostile client: a thread attacking a daemon's control socket.

In a loop until stopped: the hypothesis fuzz of ``tests/hostile_json.py``
(lone surrogates, huge integers, NaN and Infinity, deep nests in id,
method and params), one connection per request, every accepted request's
reply checked to echo its id exactly; between fuzz rounds random bytes,
half-sent requests left hanging, bursts of 64 idle connections and
``dpctl/dump-flows`` requests whose reply is never read.  Used by
``benchmarks/soak.py`` (``--hostile``, the default); ``paused()`` keeps
its connections out of the soak's tasks snapshots.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
from typing import Any

import attrs


@attrs.define
class Hostile:
    """The hostile client: a thread attacking the control socket until stopped."""

    path: str
    seed: int
    requests: int = 0
    answered: int = 0
    refused: int = 0
    other_attacks: int = 0
    failures: list[str] = attrs.field(factory=list)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _pause: threading.Event = attrs.field(factory=threading.Event)
    _idle: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hostile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    @contextlib.contextmanager
    def paused(self) -> Any:
        """No hostile connection open inside the block (for the tasks snapshots)."""
        self._idle.clear()
        self._pause.set()
        try:
            if self._thread is not None and self._thread.is_alive():
                self._idle.wait(60)
            yield
        finally:
            self._pause.clear()

    def _exchange(self, wire: bytes, *, read: bool = True) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.path)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(wire)
            if not read:
                return b""
            s.shutdown(socket.SHUT_WR)
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := s.recv(65536):
                    data += chunk
            return data

    def _fuzz_once(self, request: str) -> None:
        wire = request.encode("utf-8", "surrogatepass")
        self.requests += 1
        reply = self._exchange(wire)
        if not reply:
            self.refused += 1
            return
        self.answered += 1
        if json.loads(reply)["id"] != json.loads(wire)["id"]:
            self.failures.append(f"reply {reply[:200]!r} does not echo the id of {wire[:200]!r}")

    def _other_attack(self, rng: random.Random) -> None:
        self.other_attacks += 1
        kind = rng.randrange(4)
        if kind == 0:  # garbage
            self._exchange(os.urandom(rng.randrange(1, 4096)))
        elif kind == 1:  # half a request, then hang up
            self._exchange(b'{"id":1,"method":"version","par', read=False)
        elif kind == 2:  # a burst of idle connections held for a moment
            held = []
            try:
                for _ in range(64):
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    held.append(s)
                    s.connect(self.path)
                time.sleep(0.5)
            finally:
                for s in held:
                    s.close()
        else:  # ask for a dump and never read it
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(self.path)
                s.sendall(b'{"id":0,"method":"dpctl/dump-flows","params":["-m"]}')
                time.sleep(0.5)

    def _run(self) -> None:
        from hypothesis import HealthCheck, given, settings

        from tests.hostile_json import hostile_requests

        rng = random.Random(self.seed)

        @settings(
            max_examples=50,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(hostile_requests())
        def fuzz(request: str) -> None:
            if self._stop.is_set() or self._pause.is_set():
                return
            self._fuzz_once(request)

        while not self._stop.is_set():
            if self._pause.is_set():
                self._idle.set()
                time.sleep(0.05)
                continue
            try:
                fuzz()
                self._other_attack(rng)
            except Exception as exc:  # the daemon went away, or a check failed
                self.failures.append(f"hostile client: {exc!r}")
                return

    def summary(self) -> str:
        return (
            f"{self.requests} hostile requests ({self.answered} answered, {self.refused} "
            f"closed as malformed), {self.other_attacks} other attacks"
        )
