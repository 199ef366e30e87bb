"""Commands every unixctl server answers: list-commands, version, set-options.

Daemon-level commands whose data lives elsewhere (``exit``, ``memory/show``)
are registered by the daemon and the memory module respectively.
"""

from __future__ import annotations

from collections.abc import Sequence

from .registry import CommandContext, CommandError, CommandRegistry, OutputFormat, Reply


def register_builtins(registry: CommandRegistry, version_text: str) -> None:
    """Register list-commands, version and set-options on ``registry``."""

    def list_commands(ctx: CommandContext, args: Sequence[str]) -> Reply:
        commands = registry.visible()
        # Rows keep their trailing blanks when the usage is empty: OVS does too.
        text = "The available commands are:\n" + "".join(
            f"  {c.name:<23} {c.usage}\n" for c in commands
        )
        return Reply.structured(text, {c.name: c.usage for c in commands})

    def version(ctx: CommandContext, args: Sequence[str]) -> str:
        # JSON clients get OVS's plain wrapper, exactly as from ovs-vswitchd.
        return version_text

    def set_options(ctx: CommandContext, args: Sequence[str]) -> str:
        ctx.output_format = parse_set_options(args, ctx.output_format)
        return ""

    registry.register("list-commands", "", 0, 0, list_commands)
    registry.register("version", "", 0, 0, version)
    registry.register("set-options", "[--format text|json]", 1, 2, set_options)


def parse_set_options(args: Sequence[str], current: OutputFormat) -> OutputFormat:
    """getopt-style parse of ``--format VALUE`` / ``--format=VALUE``; OVS's error texts."""
    fmt = current
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("--"):
            continue  # stray operands are ignored, as OVS's getopt loop does
        name, eq, value = arg[2:].partition("=")
        if name != "format":
            raise CommandError(f"unrecognized option '{arg}'")
        if not eq:
            if i >= len(args):
                raise CommandError(f"option '{arg}' requires an argument")
            value = args[i]
            i += 1
        try:
            fmt = OutputFormat(value.lower())
        except ValueError:
            raise CommandError(f"option format has invalid value {value}") from None
    return fmt
