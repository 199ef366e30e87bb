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
waits for shutdown before it answers).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import attrs

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
class PeerCredentials:
    """The connecting process, as SO_PEERCRED reports it."""

    pid: int
    uid: int
    gid: int


@attrs.define
class CommandContext:
    """What a handler may know about the request it serves."""

    name: str
    output_format: OutputFormat = OutputFormat.TEXT
    peer: PeerCredentials | None = None


HandlerResult: TypeAlias = "str | Reply"
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
        """Check and run the command ``context.name``; CommandError carries any failure."""
        command = self.check(context.name, params)
        args = [p for p in params if isinstance(p, str)]
        result = command.handler(context, args)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Reply):
            return result
        return Reply(text=result)
