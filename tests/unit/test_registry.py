"""Command registry: OVS's dispatch checks and texts; built-in commands."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pyvswitchd.control.builtins import parse_set_options, register_builtins
from pyvswitchd.control.registry import (
    CommandContext,
    CommandError,
    CommandRegistry,
    OutputFormat,
    Reply,
)


def make() -> CommandRegistry:
    reg = CommandRegistry()
    register_builtins(reg, "pyvswitchd (pyvswitch) 1.2.3")

    def read_counter(ctx: CommandContext, args: Sequence[str]) -> str:
        return f"{args[0]}\n"

    async def deferred(ctx: CommandContext, args: Sequence[str]) -> Reply:
        return Reply.structured("t", {"k": 1})

    reg.register("coverage/read-counter", "COUNTER", 1, 1, read_counter)
    reg.register("hidden/alias", None, 0, 0, deferred)
    return reg


async def call(reg: CommandRegistry, name: str, *args: object) -> Reply:
    return await reg.invoke(CommandContext(name=name), list(args))


async def test_error_texts_are_ovs_texts() -> None:
    reg = make()
    cases = [
        (
            ("no-such-command",),
            '"no-such-command" is not a valid command (use "list-commands" '
            "to see a list of valid commands)",
        ),
        (("version", "extra"), '"version" command takes at most 0 arguments'),
        (
            ("coverage/read-counter",),
            '"coverage/read-counter" command requires at least 1 arguments',
        ),
        (
            ("coverage/read-counter", "a", "b"),
            '"coverage/read-counter" command takes at most 1 arguments',
        ),
        (("coverage/read-counter", 5), '"coverage/read-counter" command has non-string argument'),
    ]
    for (name, *args), text in cases:
        with pytest.raises(CommandError) as info:
            await call(reg, name, *args)
        assert str(info.value) == text


async def test_list_commands_layout_hides_null_usage() -> None:
    reg = make()
    reply = await call(reg, "list-commands")
    assert reply.text == (
        "The available commands are:\n"
        "  coverage/read-counter   COUNTER\n"
        "  list-commands           \n"
        "  set-options             [--format text|json]\n"
        "  version                 \n"
    )
    assert reply.data["version"] == ""
    assert "hidden/alias" not in reply.data


async def test_handlers_may_be_coroutines_and_return_structured_replies() -> None:
    reply = await call(make(), "hidden/alias")
    assert reply == Reply("t", {"k": 1}, True)
    assert (await call(make(), "version")).text == "pyvswitchd (pyvswitch) 1.2.3"


def test_duplicate_registration_is_refused() -> None:
    reg = make()
    with pytest.raises(ValueError):
        reg.register("version", "", 0, 0, lambda c, a: "")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "json"], OutputFormat.JSON),
        (["--format=JSON"], OutputFormat.JSON),
        (["--format", "text"], OutputFormat.TEXT),
        (["stray", "--format=json"], OutputFormat.JSON),
    ],
)
def test_set_options_parses_like_getopt(args: list[str], expected: OutputFormat) -> None:
    assert parse_set_options(args, OutputFormat.TEXT) is expected


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--format", "xml"], "option format has invalid value xml"),
        (["--bogus"], "unrecognized option '--bogus'"),
        (["--format"], "option '--format' requires an argument"),
    ],
)
def test_set_options_errors(args: list[str], text: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_set_options(args, OutputFormat.TEXT)
    assert str(info.value) == text


async def test_set_options_changes_the_connection_format() -> None:
    reg = make()
    ctx = CommandContext(name="set-options")
    await reg.invoke(ctx, ["--format", "json"])
    assert ctx.output_format is OutputFormat.JSON
