"""pyappctl top's terminal screen, driven with a fake window and fake daemons."""

from __future__ import annotations

import curses
from collections.abc import Iterator
from typing import Any

from pyappctl.client import ClientError
from pyappctl.top import Sampler
from pyappctl.top_screen import _Screen

THREAD = {
    "thread": "pmd",
    "core_id": 0,
    "numa_id": 0,
    "busy_cycles": 0,
    "rx_packets": 0,
    "tx_packets": 0,
    "offload_cycles": 0,
    "sleep_us": 0,
    "lookups": {},
    "work": {},
}


class FakeClient:
    """A daemon connection answering top's three requests; ``dead`` ends it."""

    def __init__(self) -> None:
        self.dead = False
        self.closed = False
        self.rx = 0

    def transact(self, command: str, args: Any = ()) -> tuple[str | None, Any]:
        if self.dead:
            raise ClientError("End of file")
        if command == "dpif-netdev/pmd-perf-show":
            self.rx += 1000
            return None, [{**THREAD, "rx_packets": self.rx}]
        if command == "dpif-netdev/pmd-rxq-show":
            return None, {"pmds": [], "secs": 60}
        return None, ""

    def close(self) -> None:
        self.closed = True


class FakeWindow:
    def __init__(self, keys: Iterator[int], rows: int = 10, cols: int = 40) -> None:
        self.keys = keys
        self.size = (rows, cols)
        self.lines: list[str] = []

    def getmaxyx(self) -> tuple[int, int]:
        return self.size

    def erase(self) -> None:
        self.lines = []

    def addnstr(self, y: int, x: int, text: str, n: int) -> None:
        assert y == len(self.lines) and y < self.size[0]
        self.lines.append(text[:n])

    def refresh(self) -> None:
        pass

    def timeout(self, ms: int) -> None:
        pass

    def getch(self) -> int:
        return next(self.keys)


def screen(client: FakeClient | None, connect: Any, iterations: int = 0) -> _Screen:
    return _Screen(client, connect, 0.0, iterations, Sampler(5))  # type: ignore[arg-type]


def test_frames_are_cut_at_the_width_and_q_quits() -> None:
    client = FakeClient()
    window = FakeWindow(iter([-1, -1, ord("q")]), rows=6, cols=40)
    assert screen(client, lambda: None).run(window) == 0  # type: ignore[arg-type]
    assert len(window.lines) == 6  # as many as fit
    assert all(len(line) <= 39 for line in window.lines)
    assert window.lines[0].startswith("pyvswitchd PMDs, rates")


def test_n_frames_then_exit() -> None:
    window = FakeWindow(iter([-1] * 10))
    assert screen(FakeClient(), lambda: None, iterations=2).run(window) == 0  # type: ignore[arg-type]


def test_a_daemon_that_goes_away_is_reconnected() -> None:
    first, second = FakeClient(), FakeClient()
    s = screen(first, lambda: second)
    s._step()  # the first reading
    assert s.lines[0] == "first rates in 0 s (q quits)"
    s._step()
    assert s.shown == 1 and s.client is first
    first.dead = True
    s._step()
    assert first.closed and s.client is None
    assert s.lines[0].startswith("the daemon is not answering (End of file): trying again")
    s._step()  # a fresh first reading: no rates across two daemons
    assert s.client is second and s.shown == 1
    assert s.lines[0] == "reconnected: next rates in 0 s (q quits)"
    s._step()
    assert s.shown == 2 and s.lines[0].startswith("pyvswitchd PMDs, rates")


def test_connect_failures_keep_trying() -> None:
    attempts = []

    def connect() -> FakeClient:
        attempts.append(1)
        if len(attempts) < 3:
            raise FileNotFoundError(2, "No such file or directory")
        return FakeClient()

    s = screen(None, connect)
    for _ in range(3):
        s._step()
    assert len(attempts) == 3 and s.client is not None


def test_resize_redraws_at_the_new_size(monkeypatch: Any) -> None:
    monkeypatch.setattr(curses, "update_lines_cols", lambda: None)
    window = FakeWindow(iter([]), rows=10, cols=30)
    s = screen(FakeClient(), lambda: None)

    def keys() -> Iterator[int]:
        yield -1  # after the first reading
        yield -1  # after the first frame (drawn 30 wide)
        window.size = (10, 120)
        yield curses.KEY_RESIZE
        assert max(len(line) for line in window.lines) > 30
        yield ord("q")

    window.keys = keys()
    assert s.run(window) == 0  # type: ignore[arg-type]


def test_an_error_reply_is_shown_and_retried() -> None:
    """A daemon still starting answers pmd-perf-show with an error."""

    class Starting(FakeClient):
        calls = 0

        def transact(self, command: str, args: Any = ()) -> tuple[str | None, Any]:
            self.calls += 1
            if command == "dpif-netdev/pmd-perf-show" and self.calls < 4:
                return "please specify an existing datapath", None
            return super().transact(command, args)

    s = screen(Starting(), lambda: None)
    s._step()
    assert s.lines == [
        "the daemon answered: please specify an existing datapath; trying again every 0 s (q quits)"
    ]
    s._step()
    assert s.lines[0] == "first rates in 0 s (q quits)"
