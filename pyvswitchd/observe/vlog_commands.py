"""The ``vlog/*`` unixctl commands of a :class:`~.vlog.Vlog`.

``vlog/list`` and ``vlog/list-pattern`` print OVS's tables (and answer in
JSON with the same facts); the commands that change something reply with
nothing, or with the :class:`~.vlog.VlogError` text as the error, as
ovs-vswitchd does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyvswitchd.control.registry import (
    UNLIMITED,
    CommandContext,
    CommandError,
    CommandRegistry,
    Handler,
    Reply,
)

from .vlog import Destination, Vlog, VlogError


def register_vlog_commands(vlog: Vlog, registry: CommandRegistry) -> None:
    """Register the ``vlog/*`` commands of ``vlog`` into ``registry``."""
    registry.register(
        "vlog/list",
        "",
        0,
        0,
        lambda _ctx, _args: Reply.structured(format_levels(vlog), levels_data(vlog)),
    )
    registry.register(
        "vlog/list-pattern",
        "",
        0,
        0,
        lambda _ctx, _args: Reply.structured(format_patterns(vlog), patterns_data(vlog)),
    )

    def set_specs(args: Sequence[str]) -> None:
        if not args:
            vlog.set_all_levels_dbg()
        for arg in args:
            vlog.set_levels_from_string(arg)

    changes: list[tuple[str, str | None, int, int, Callable[[Sequence[str]], None]]] = [
        ("vlog/set", "{spec | PATTERN:destination:pattern}", 0, UNLIMITED, set_specs),
        ("vlog/enable-rate-limit", "[module]...", 0, UNLIMITED,
         lambda args: vlog.set_rate_limits(args, True)),
        ("vlog/disable-rate-limit", "[module]...", 0, UNLIMITED,
         lambda args: vlog.set_rate_limits(args, False)),
        ("vlog/reopen", "", 0, 0, lambda _args: vlog.reopen_log_file()),
        ("vlog/close", "", 0, 0, lambda _args: vlog.close_log_file()),
        ("vlog/message", None, 1, 1, lambda args: vlog.user_message(args[0])),
    ]  # fmt: skip
    for name, usage, min_args, max_args, action in changes:
        registry.register(name, usage, min_args, max_args, _empty_reply(action), mutating=True)


def format_levels(vlog: Vlog) -> str:
    """``vlog/list`` output: one row per module, sorted, console/syslog/file."""
    rows = []
    for m in vlog.modules():
        c, s, f = (
            m.level(d).name for d in (Destination.CONSOLE, Destination.SYSLOG, Destination.FILE)
        )
        row = f"{m.name:<16}  {c:>4}       {s:>4}       {f:>4}"
        if not m.rate_limit_enabled:
            row += "    (rate limiting disabled)"
        rows.append(row + "\n")
    return (
        "                 console    syslog    file\n"
        "                 -------    ------    ------\n" + "".join(sorted(rows))
    )


def levels_data(vlog: Vlog) -> dict[str, dict[str, object]]:
    """``vlog/list`` as JSON: module -> {console, syslog, file, rate_limit}."""
    return {
        m.name: {
            "console": m.level(Destination.CONSOLE).name.lower(),
            "syslog": m.level(Destination.SYSLOG).name.lower(),
            "file": m.level(Destination.FILE).name.lower(),
            "rate_limit": m.rate_limit_enabled,
        }
        for m in sorted(vlog.modules(), key=lambda m: m.name)
    }


def _prefix(vlog: Vlog, dest: Destination) -> str:
    return vlog.syslog_prefix if dest is Destination.SYSLOG else "none"


def patterns_data(vlog: Vlog) -> dict[str, dict[str, str]]:
    """``vlog/list-pattern`` as JSON: destination -> {prefix, pattern}."""
    return {
        dest.value: {"prefix": _prefix(vlog, dest), "pattern": vlog.pattern(dest)}
        for dest in Destination
    }


def format_patterns(vlog: Vlog) -> str:
    """``vlog/list-pattern`` output."""
    out = [
        "         prefix                            format\n",
        "         ------                            ------\n",
    ]
    for dest in Destination:
        out.append(f"{dest.name:<7}  {_prefix(vlog, dest):<32}  {vlog.pattern(dest)}\n")
    return "".join(out)


def _empty_reply(action: Callable[[Sequence[str]], None]) -> Handler:
    """A handler running ``action``: empty reply, or VlogError's text as error."""

    def handler(_ctx: CommandContext, args: Sequence[str]) -> str:
        try:
            action(args)
        except VlogError as exc:
            raise CommandError(str(exc)) from None
        return ""

    return handler
