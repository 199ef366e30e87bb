"""Acceptor: accept() failures for lack of descriptors are waited out, not fatal."""

from __future__ import annotations

import errno
import io
from typing import Any, cast

import pytest
import trio

from pyvswitchd.observe.accept import BACKOFF_MAX, BACKOFF_MIN, Acceptor
from pyvswitchd.observe.vlog import Vlog


class FakeListener:
    """accept() raises the queued errors, then returns a marker."""

    def __init__(self, errors: list[OSError]) -> None:
        self.errors = errors
        self.calls = 0

    async def accept(self) -> Any:
        await trio.lowlevel.checkpoint()
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "stream"


def make(errors: list[OSError]) -> tuple[Acceptor, list[float], io.StringIO]:
    console = io.StringIO()
    log = Vlog("test", console=console, syslog_method="null").module("unixctl")
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await trio.lowlevel.checkpoint()

    listener = cast(trio.SocketListener, FakeListener(errors))
    return Acceptor(listener, log, "unix:/x.ctl", sleep=sleep), pauses, console


def emfile() -> OSError:
    return OSError(errno.EMFILE, "Too many open files")


async def test_emfile_is_waited_out_with_growing_pauses() -> None:
    acceptor, pauses, console = make([emfile() for _ in range(9)])
    assert await acceptor.accept() == "stream"
    assert pauses[:3] == [BACKOFF_MIN, 2 * BACKOFF_MIN, 4 * BACKOFF_MIN]
    assert max(pauses) == BACKOFF_MAX and len(pauses) == 9
    lines = console.getvalue().splitlines()
    # One line when it starts, one when it is over: not one per attempt.
    assert len(lines) == 2, lines
    assert lines[0].endswith(
        "|unixctl|WARN|unix:/x.ctl: accept failed: Too many open files; retrying "
        "(new connections wait meanwhile)"
    )
    assert lines[1].endswith("|unixctl|INFO|unix:/x.ctl: accepting again after 9 failed attempts")
    assert acceptor.failures == 9 and acceptor.streak == 0


@pytest.mark.parametrize("code", [errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
async def test_other_capacity_errors_are_warnings(code: int) -> None:
    acceptor, pauses, console = make([OSError(code, "x")])
    assert await acceptor.accept() == "stream"
    assert pauses == [BACKOFF_MIN]
    assert "|WARN|" in console.getvalue()


async def test_unexpected_errors_are_survived_too() -> None:
    acceptor, _, console = make([OSError(errno.EINVAL, "Invalid argument")])
    assert await acceptor.accept() == "stream"
    assert "|ERR|unix:/x.ctl: accept failed: Invalid argument; retrying" in console.getvalue()
