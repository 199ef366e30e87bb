"""The unixctl server in-process: connection isolation, slots, big replies."""

from __future__ import annotations

import contextlib
import grp
import io
import json
import os
import stat
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyvswitchd.control import server as server_mod
from pyvswitchd.control.protocol import JsonStream
from pyvswitchd.control.registry import CommandContext, CommandRegistry, StreamReply
from pyvswitchd.control.server import UnixctlServer
from pyvswitchd.control.slots import SlotTable
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog


@asynccontextmanager
async def running(
    tmp_path: Path, registry: CommandRegistry, **kwargs: Any
) -> AsyncIterator[tuple[UnixctlServer, io.StringIO]]:
    console = io.StringIO()
    vlog = Vlog("test", console=console, syslog_method="null")
    srv = UnixctlServer(str(tmp_path / "s.ctl"), registry, vlog, Coverage(), **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv, console
        nursery.cancel_scope.cancel()


class Client:
    """A raw trio client: requests in, decoded replies out."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._json = JsonStream(64 << 20)
        self._id = 0

    @classmethod
    async def connect(cls, path: str) -> Client:
        return cls(await trio.open_unix_socket(path))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stream.aclose()

    async def send(self, method: str, params: Sequence[str] = ()) -> None:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": list(params)}
        with contextlib.suppress(trio.BrokenResourceError):  # closed already: see receive()
            await self.stream.send_all(json.dumps(msg).encode())

    async def receive(self) -> Any:
        """The next reply, or None when the server closed the connection."""
        while True:
            complete, value = self._json.next_value()
            if complete:
                return value
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: closed with our request unread
                return None
            if not data:
                return None
            self._json.feed(data)

    async def call(self, method: str, *params: str) -> Any:
        await self.send(method, params)
        return await self.receive()


async def test_replies_json_cannot_carry_become_errors(tmp_path: Path) -> None:
    registry = CommandRegistry()
    bad: dict[str, Any] = {
        "nan": float("nan"),
        "surrogate": "\ud800",
        "set": {1, 2},
    }
    for name, value in bad.items():
        registry.register(f"bad/{name}", "", 0, 0, lambda ctx, args, v=value: _structured(v))
    registry.register("ok", "", 0, 0, lambda ctx, args: "fine")
    async with running(tmp_path, registry) as (srv, console):
        async with await Client.connect(srv.path) as client:
            for name in bad:
                reply = await client.call(f"bad/{name}")
                assert reply["error"] == (
                    f'"bad/{name}" command failed: its reply cannot be encoded\n'
                )
            # The same connection still works.
            assert (await client.call("ok"))["result"] == "fine\n"
        assert srv.stats.errors == len(bad)
    assert console.getvalue().count("|unixctl|ERR|unix#1: reply to 'bad/") == len(bad)


def _structured(value: Any) -> Any:
    from pyvswitchd.control.registry import Reply

    # A buggy handler: whatever it returns reaches the encoder in text mode.
    return Reply(text=value)


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("peer_credentials", "closing new connection after an internal error"),  # at accept
        ("CommandContext", "unix#1: closing connection after an internal error"),  # at request
    ],
)
async def test_unexpected_error_closes_only_that_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, logged: str
) -> None:
    registry = CommandRegistry()
    registry.register("ok", "", 0, 0, lambda ctx, args: "fine")
    async with running(tmp_path, registry) as (srv, console):
        calls = 0
        real = getattr(server_mod, target)

        def flaky(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("injected")
            return real(*args, **kwargs)

        monkeypatch.setattr(server_mod, target, flaky)
        async with await Client.connect(srv.path) as first:
            assert await first.call("ok") is None  # closed, no reply
        async with await Client.connect(srv.path) as second:
            assert (await second.call("ok"))["result"] == "fine\n"
        assert srv.stats.internal_errors == 1
    assert f"{logged}: RuntimeError('injected')" in console.getvalue()


async def test_json_mode_reply_with_nan(tmp_path: Path) -> None:
    registry = CommandRegistry()

    def handler(ctx: CommandContext, args: Sequence[str]) -> Any:
        from pyvswitchd.control.registry import Reply

        return Reply.structured("rate: inf\n", {"rate": float("inf")})

    registry.register("rate", "", 0, 0, handler)
    from pyvswitchd.control.builtins import register_builtins

    register_builtins(registry, "test 1.0")
    async with running(tmp_path, registry) as (srv, _console):
        async with await Client.connect(srv.path) as client:
            assert (await client.call("set-options", "--format", "json"))["error"] is None
            reply = await client.call("rate")
        assert reply["error"] == '"rate" command failed: its reply cannot be encoded\n'


async def test_idle_connections_are_reclaimed_when_slots_run_short(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry = CommandRegistry()
    registry.register("ok", "", 0, 0, lambda ctx, args: "fine")
    release = trio.Event()

    async def slow(ctx: CommandContext, args: Sequence[str]) -> str:
        await release.wait()
        return "slow"

    registry.register("slow", "", 0, 0, slow)
    slots = SlotTable(max_total=3, reserved=0, per_uid=3, idle_timeout=10.0)
    async with running(tmp_path, registry, slots=slots) as (srv, console):
        busy = await Client.connect(srv.path)
        await busy.send("slow")  # in progress: never idle
        idle = [await Client.connect(srv.path) for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        assert srv.active_connections == 3
        async with await Client.connect(srv.path) as refused:
            assert await refused.call("ok") is None  # full, and nobody idle for 10 s
        assert srv.stats.refused_connections == 1
        await trio.sleep(11)
        await idle[1].call("ok")  # a request: this one is not idle any more
        async with await Client.connect(srv.path) as newcomer:
            assert (await newcomer.call("ok"))["result"] == "fine\n"
            assert await idle[0].receive() is None  # closed to make room
            assert srv.stats.reclaimed_connections == 1
            release.set()
            assert (await busy.receive())["result"] == "slow\n"
        for client in [busy, *idle]:
            await client.stream.aclose()
    assert "unix#2: closing connection of uid 0, idle for 11 s, to make room for unix#5" in (
        console.getvalue()
    )


def big_stream(ctx: CommandContext, n_lines: int = 200_000) -> StreamReply:
    def text() -> AsyncIterator[str]:
        return ctx.pacer.render(range(n_lines), lambda i: f"line {i:08d} of a big reply\n")

    def data() -> AsyncIterator[str]:
        return ctx.pacer.json_array(range(n_lines), lambda i: {"line": i})

    return StreamReply(text, data)


async def test_streamed_reply_reaches_text_and_json_clients(tmp_path: Path) -> None:
    from pyvswitchd.control.builtins import register_builtins

    registry = CommandRegistry()
    register_builtins(registry, "test 1.0")
    registry.register("big", "", 0, 0, lambda ctx, args: big_stream(ctx, 50_000))
    async with (
        running(tmp_path, registry) as (srv, _console),
        await Client.connect(srv.path) as client,
    ):
        reply = await client.call("big")
        assert reply["result"] == "".join(f"line {i:08d} of a big reply\n" for i in range(50_000))
        await client.call("set-options", "--format", "json")
        reply = await client.call("big")
        assert reply["result"] == [{"line": i} for i in range(50_000)]
        assert (await client.call("version"))["error"] is None


async def test_client_that_stops_reading_is_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from pyvswitchd.control.server import SEND_TIMEOUT

    registry = CommandRegistry()
    registry.register("big", "", 0, 0, lambda ctx, args: big_stream(ctx))
    registry.register("ok", "", 0, 0, lambda ctx, args: "fine")
    async with running(tmp_path, registry) as (srv, console):
        async with await Client.connect(srv.path) as sleeper:
            await sleeper.send("big")  # 6 MB of reply, never read
            trio.current_time()
            await trio.sleep(SEND_TIMEOUT - 1)
            assert srv.stats.stalled_connections == 0
            await trio.sleep(2)
            assert srv.stats.stalled_connections == 1
            # Its builder is closed: nothing of the reply stays behind.
            assert srv.active_connections == 0
        async with await Client.connect(srv.path) as other:
            assert (await other.call("ok"))["result"] == "fine\n"
    assert "unix#1: closing connection of uid 0: no reply data read for 10 s" in (
        console.getvalue()
    )


async def test_streams_in_progress_are_limited(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    registry = CommandRegistry()
    started = 0

    def handler(ctx: CommandContext, args: Sequence[str]) -> StreamReply:
        async def text() -> AsyncIterator[str]:
            nonlocal started
            started += 1
            render = ctx.pacer.render(range(200_000), lambda i: f"{i:020d}\n")
            async with contextlib.aclosing(render) as chunks:
                async for chunk in chunks:
                    yield chunk

        return StreamReply(text)

    registry.register("big", "", 0, 0, handler)
    async with running(tmp_path, registry, max_streams=2) as (srv, _console):
        sleepers = [await Client.connect(srv.path) for _ in range(5)]
        for client in sleepers:
            await client.send("big")
        await trio.sleep(1)
        assert started == 2  # the others wait for a turn, holding nothing
        await trio.sleep(60)  # the stalled ones are dropped, the waiting ones go on
        assert started == 5
        for client in sleepers:
            await client.stream.aclose()


async def test_stream_failing_at_once_is_an_error_reply(tmp_path: Path) -> None:
    registry = CommandRegistry()

    def handler(ctx: CommandContext, args: Sequence[str]) -> StreamReply:
        def fail(i: int) -> str:
            raise ValueError("flow vanished")

        return StreamReply(lambda: ctx.pacer.render(range(10), fail))

    registry.register("bad", "", 0, 0, handler)
    registry.register("ok", "", 0, 0, lambda ctx, args: "fine")
    async with (
        running(tmp_path, registry) as (srv, _console),
        await Client.connect(srv.path) as client,
    ):
        reply = await client.call("bad")
        assert reply["error"] == '"bad" command failed: flow vanished\n'
        assert (await client.call("ok"))["result"] == "fine\n"


async def test_permissions_change_on_the_bound_socket(tmp_path: Path) -> None:
    async with running(tmp_path, CommandRegistry(), mode=0o770) as (srv, _):
        path = srv.path
        assert srv.permissions() == (0o770, os.getegid())
        srv.set_permissions(0o700, None)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        assert srv.permissions() == (0o700, os.getegid())
        other = next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getegid()), None)
        if other is not None and os.geteuid() == 0:
            srv.set_permissions(0o750, other)
            assert srv.permissions() == (0o750, other)
            srv.set_permissions(0o750, None)
            assert srv.permissions() == (0o750, os.getegid())
        # A file that is no longer ours is left alone.
        os.unlink(path)
        Path(path).touch()  # noqa: ASYNC240 - a test's file, not the daemon's
        assert srv.permissions() is None
        with pytest.raises(FileNotFoundError):
            srv.set_permissions(0o777, None)
        assert stat.S_IMODE(os.stat(path).st_mode) != 0o777
