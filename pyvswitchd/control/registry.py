"""The unixctl command registry: names, usages, argument bounds, handlers.

Every module that owns data registers the commands that show or change it
(``registry.register("coverage/show", "", 0, 0, handler)``).  The registry is
an explicit object handed around by the daemon, never a module global, so
tests can build as many independent ones as they like.

Dispatch reproduces OVS's checks in OVS's order and with its exact texts
(unknown command, too few, too many, non-string argument).  A handler gets
the command's arguments (without the command name) and returns either plain
text or a :class:`Reply` carrying a structured form for JSON output; it
signals failure by raising :class:`CommandError`.  Handlers may be plain
functions or coroutines: a coroutine is how a reply is deferred (``exit``
waits for shutdown before it answers).  A reply too big to build at once
is a :class:`StreamReply` (``dpctl/dump-flows``).
"""

from __future__ import annotations

import enum
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import attrs

from .pacer import Pacer

#: Largest argument count a command can declare ("no upper bound").
UNLIMITED = 2**31 - 1


class OutputFormat(enum.Enum):
    """Per-connection reply format, set by ``set-options --format``."""

    TEXT = "text"
    JSON = "json"


class CommandError(Exception):
    """Raised by a handler to send an error reply; ``str(exc)`` is the text."""


@attrs.frozen
class Reply:
    """A successful reply.

    ``text`` is what a text-mode client prints.  ``data``, when given, is the
    JSON value sent to a JSON-mode client; without it a JSON client gets the
    text wrapped as ``{"reply-format": "plain", "reply": text}`` as OVS does.
    """

    text: str
    data: Any = None
    has_data: bool = False

    @classmethod
    def structured(cls, text: str, data: Any) -> Reply:
        return cls(text=text, data=data, has_data=True)


@attrs.frozen
class StreamReply:
    """A successful reply too big to build at once, produced chunk by chunk.

    ``text`` makes an async iterator of the reply text's pieces; ``json``,
    when given, one of the pieces of the text of a JSON value (the structured
    form sent to JSON-mode clients).  The server sends the pieces as they
    come, so neither ever exists whole in the daemon; see
    :mod:`pyvswitchd.control.pacer` for building them without stalling the
    PMDs.  Each factory is called at most once per reply.
    """

    text: Callable[[], AsyncIterator[str]]
    json: Callable[[], AsyncIterator[str]] | None = None

    async def collect(self) -> Reply:
        """The whole reply, for callers that want it in one piece (tests, scripts)."""
        text = "".join([chunk async for chunk in self.text()])
        if self.json is None:
            return Reply(text=text)
        data = json.loads("".join([chunk async for chunk in self.json()]))
        return Reply.structured(text, data)


@attrs.frozen
class PeerCredentials:
    """The connecting process, as SO_PEERCRED reports it."""

    pid: int
    uid: int
    gid: int


@attrs.define
class CommandContext:
    """What a handler may know about the request it serves.

    ``pacer`` is the server's, shared by all connections: builders of big
    replies take turns through it.
    """

    name: str
    output_format: OutputFormat = OutputFormat.TEXT
    peer: PeerCredentials | None = None
    pacer: Pacer = attrs.field(factory=Pacer)


HandlerResult: TypeAlias = "str | Reply | StreamReply"
Handler: TypeAlias = Callable[
    [CommandContext, Sequence[str]], "HandlerResult | Awaitable[HandlerResult]"
]


@attrs.frozen
class Command:
    """One registered command.

    ``usage`` of ``None`` hides the command from ``list-commands`` (OVS's
    NULL usage, used for aliases such as ``dpif-netdev/pmd-stats-show``).
    ``mutating`` marks commands that change state, for access control.
    """

    name: str
    usage: str | None
    min_args: int
    max_args: int
    handler: Handler
    mutating: bool = False


class CommandRegistry:
    """The set of commands one daemon answers."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def register(
        self,
        name: str,
        usage: str | None,
        min_args: int,
        max_args: int,
        handler: Handler,
        *,
        mutating: bool = False,
    ) -> None:
        """Add a command.  Registering a name twice is a programming error."""
        if name in self._commands:
            raise ValueError(f"command {name!r} is already registered")
        if not 0 <= min_args <= max_args:
            raise ValueError(f"command {name!r}: bad argument bounds {min_args}..{max_args}")
        self._commands[name] = Command(name, usage, min_args, max_args, handler, mutating)

    def unregister(self, name: str) -> None:
        self._commands.pop(name, None)

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def visible(self) -> list[Command]:
        """Commands shown by ``list-commands``, sorted by name."""
        return sorted(
            (c for c in self._commands.values() if c.usage is not None), key=lambda c: c.name
        )

    def check(self, method: str, params: Sequence[object]) -> Command:
        """Validate a request against the registry; raise CommandError as OVS words it."""
        command = self._commands.get(method)
        if command is None:
            raise CommandError(
                f'"{method}" is not a valid command '
                '(use "list-commands" to see a list of valid commands)'
            )
        # OVS says "arguments" even for one: scripts match this text.
        if len(params) < command.min_args:
            raise CommandError(f'"{method}" command requires at least {command.min_args} arguments')
        if len(params) > command.max_args:
            raise CommandError(f'"{method}" command takes at most {command.max_args} arguments')
        if not all(isinstance(p, str) for p in params):
            raise CommandError(f'"{method}" command has non-string argument')
        return command

    async def invoke(self, context: CommandContext, params: Sequence[object]) -> Reply:
        """Check and run the command ``context.name``; CommandError carries any failure.

        A streamed reply is collected whole: see :meth:`invoke_streaming`.
        """
        result = await self.invoke_streaming(context, params)
        if isinstance(result, StreamReply):
            return await result.collect()
        return result

    async def invoke_streaming(
        self, context: CommandContext, params: Sequence[object]
    ) -> Reply | StreamReply:
        """As :meth:`invoke`, but a handler's StreamReply is returned as is."""
        command = self.check(context.name, params)
        args = [p for p in params if isinstance(p, str)]
        result = command.handler(context, args)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Reply | StreamReply):
            return result
        return Reply(text=result)
