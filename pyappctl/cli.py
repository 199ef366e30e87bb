"""``pyappctl``: the command line front end, a drop-in for ``ovs-appctl``.

Options, output and exit statuses follow ovs-appctl (text replies as in
Open vSwitch 3.1, ``--format json``/``--pretty`` as in later releases) with
the program name ``pyappctl`` in messages:

* 0: success; the result is written to stdout unchanged (text mode adds no
  newline; JSON mode prints the value with sorted keys plus a newline).
* 1: a local failure (bad option, unreadable pidfile, connect failure,
  broken transaction), reported as ``pyappctl: <message>`` on stderr.
* 2: the server answered with an error: its text goes to stderr verbatim,
  followed by ``pyappctl: <target>: server returned an error``.
* 142: ``--timeout`` (or ``OVS_CTL_TIMEOUT``) expired.  ovs-appctl is killed
  by SIGALRM there, which shells report as 128 + 14 = 142; pyappctl
  enforces the deadline with socket timeouts and exits with that status so
  scripts testing ``$?`` see no difference.

Option parsing uses click but stops at the first non-option argument, so
``pyappctl dpif-netdev/pmd-perf-show -pmd 1`` hands ``-pmd 1`` to the
command; click's usage errors are reworded as getopt's one-line messages.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn, Protocol, TextIO

import attrs
import click

from pyvswitchd import __version__

from .client import (
    DEFAULT_TARGET,
    ClientError,
    LogLine,
    TargetError,
    UnixctlClient,
    json_type_name,
    resolve_target,
)
from .top import TopError, run_top
from .top_screen import run_top_screen

PROG = "pyappctl"

#: Exit status on timeout: what a shell reports for a process killed by SIGALRM.
EXIT_TIMEOUT = 128 + 14

# Exit status when stdout is a closed pipe: what a shell reports for SIGPIPE.
_EXIT_PIPE = 128 + 13

HELP_TEXT = f"""\
{PROG}, to query and control pyvswitchd or another unixctl daemon
usage: {PROG} [OPTIONS] COMMAND [ARG...]
Targets:
  -t, --target=TARGET  daemon name, located through TARGET.pid in the run
                       directory, or an absolute control socket path
                       (default: {DEFAULT_TARGET})
Common commands:
  list-commands      show the commands the target understands
  version            show the target's version
  vlog/list          show the log levels of each module
  vlog/set [SPEC]    change log levels, e.g. dpif_netdev:file:dbg
Other options:
  -T, --timeout=SECS   give up after SECS seconds (default: $OVS_CTL_TIMEOUT,
                       else wait forever); exit status {EXIT_TIMEOUT}
  -f, --format=FMT     output format, 'text' (default) or 'json'
  --pretty             indent --format json output
  -h, --help           show this help and exit
  -V, --version        show {PROG}'s version and exit
Run directory: $PYVSWITCH_RUNDIR, else $OVS_RUNDIR, else /run/pyvswitch.
Exit status: 0 success, 1 local error, 2 error reply from the server,
{EXIT_TIMEOUT} timeout.
"""

# Options taking a value, by every spelling, to reword click's errors.
_VALUE_OPTIONS = frozenset({"-t", "--target", "-T", "--timeout", "-f", "--format"})
_LONG_NAMES = ("target", "timeout", "format", "pretty", "execute", "help", "version")
# Digits as strtoul()/str_to_uint() accept them: leading blanks and a sign.
_UINT = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
_UINT_MAX = 2**32 - 1


class _Exit(Exception):
    """Stop with ``status``, printing ``pyappctl: <message>`` first if given."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _fatal(message: str) -> NoReturn:
    raise _Exit(1, message)


def _parse_seconds(text: str) -> int | None:
    """A positive 32-bit count of seconds, parsed like ovs-appctl, or None."""
    if not _UINT.fullmatch(text):
        return None
    value = int(text)
    return value if 0 < value <= _UINT_MAX else None


# ---------------------------------------------------------------------------
# JSON output in OVS's serialiser style


_ESCAPES = {chr(c): f"\\u{c:04x}" for c in range(32)} | {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_ESCAPE_RE = re.compile('[\x00-\x1f"\\\\]')


def _quote(text: str) -> str:
    # Only '"', '\\' and control characters are escaped; all other text,
    # non-ASCII included, is written as is.
    return '"' + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], text) + '"'


_INT64 = range(-(2**63), 2**63)


def _number(value: int | float) -> str:
    # OVS keeps a number that is integral and fits in 64 bits as an integer
    # (so 1.0 and 1e2 print as 1 and 100) and prints any other as a double
    # with 15 significant digits.
    if isinstance(value, int) and value in _INT64:
        return str(value)
    value = float(value)
    if math.isfinite(value) and value.is_integer() and int(value) in _INT64:
        return str(int(value))
    return format(value, ".15g")


def dump_json(value: Any, *, pretty: bool = False) -> str:
    """Serialise ``value`` as ovs-appctl does for ``--format json``.

    Object members are sorted.  Compact output has no whitespace at all.
    ``pretty`` output starts a new line indented by two spaces per level
    after every opening bracket and every comma; closing brackets follow
    the last element directly and members read ``"key": value``.  An empty
    object still gets its new line (``{`` NL indent ``}``); an empty array
    prints as ``[]``.
    """
    out: list[str] = []
    _emit(value, out, 0, pretty)
    return "".join(out)


def _emit(value: Any, out: list[str], depth: int, pretty: bool) -> None:
    def newline() -> None:
        if pretty:
            out.append("\n" + "  " * depth)

    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int | float):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        depth += 1
        newline()
        # Code point order equals the bytewise UTF-8 order OVS sorts by.
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
                newline()
            out.append(_quote(key))
            out.append(": " if pretty else ":")
            _emit(value[key], out, depth, pretty)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        depth += 1
        for i, item in enumerate(value):
            if i:
                out.append(",")
            newline()
            _emit(item, out, depth, pretty)
        out.append("]")
    else:
        raise TypeError(f"not a JSON value: {type(value).__name__}")


# ---------------------------------------------------------------------------
# Command line parsing


@attrs.frozen
class Options:
    """The parsed command line."""

    target: str
    command: str
    args: tuple[str, ...]
    timeout: int | None
    json: bool
    pretty: bool


def _expand_long_option(name: str) -> str:
    # getopt_long accepts any unambiguous prefix of a long option (--tar,
    # --time=5); click does not, so expand it here.  Single letters are
    # short options and left alone.
    if len(name) < 2 or name in _LONG_NAMES:
        return name
    matches = [long for long in _LONG_NAMES if long.startswith(name)]
    return matches[0] if len(matches) == 1 else name


def _check_target(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> str:
    if len(values) > 1:
        _fatal("-t or --target may be specified only once")
    return values[0] if values else DEFAULT_TARGET


def _check_format(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> bool:
    # Each occurrence is checked, as getopt would; the last one wins.
    json_mode = False
    for value in values:
        if value.lower() not in ("text", "json"):
            _fatal(f"value {value} on -f or --format is invalid")
        json_mode = value.lower() == "json"
    return json_mode


def _check_timeout(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> int | None:
    seconds = None
    for value in values:
        seconds = _parse_seconds(value)
        if seconds is None:
            _fatal(f"value {value} on -T or --timeout is invalid")
    return seconds


def _check_execute(ctx: click.Context, param: click.Parameter, count: int) -> int:
    # -e is accepted and ignored: old ovs-appctl took the command as its
    # argument, and with the command as a plain argument that still works.
    if count > 1:
        _fatal("-e or --execute may be specified only once")
    return count


def _show_help(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        click.echo(HELP_TEXT, nl=False)
        raise _Exit(0)


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        click.echo(f"{PROG} (pyvswitch) {__version__}")
        raise _Exit(0)


# Callbacks run in command line order, so the first bad option is the one
# reported and -h/-V act where they appear, as with getopt.
@click.command(
    context_settings={
        "allow_interspersed_args": False,
        "ignore_unknown_options": False,
        "token_normalize_func": _expand_long_option,
    },
    add_help_option=False,
)
@click.option("-t", "--target", multiple=True, callback=_check_target)
@click.option("-T", "--timeout", multiple=True, callback=_check_timeout)
@click.option("-f", "--format", "json_mode", multiple=True, callback=_check_format)
@click.option("--pretty", is_flag=True)
@click.option("-e", "--execute", count=True, callback=_check_execute)
@click.option("-h", "--help", is_flag=True, expose_value=False, callback=_show_help)
@click.option("-V", "--version", is_flag=True, expose_value=False, callback=_show_version)
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def command(
    target: str,
    timeout: int | None,
    json_mode: bool,
    pretty: bool,
    execute: int,
    words: tuple[str, ...],
) -> Options:
    """Parse the command line; :func:`main` does the work."""
    if not words:
        _fatal("at least one non-option argument is required (use --help for help)")
    if pretty and not json_mode:
        _fatal("--pretty is supported with --format json only")
    if timeout is None:
        # Like ovs-appctl, an unusable OVS_CTL_TIMEOUT is silently ignored.
        timeout = _parse_seconds(os.environ.get("OVS_CTL_TIMEOUT", ""))
    return Options(target, words[0], words[1:], timeout, json_mode, pretty)


def _usage_message(exc: click.UsageError) -> str:
    """getopt's wording for a click usage error."""
    if isinstance(exc, click.NoSuchOption):
        name = exc.option_name
        if name.startswith("--"):
            return f"unrecognized option '{name}'"
        return f"invalid option -- '{name[1:]}'"
    if isinstance(exc, click.BadOptionUsage):
        name = exc.option_name
        if name not in _VALUE_OPTIONS:
            return f"option '{name}' doesn't allow an argument"
        if name.startswith("--"):
            return f"option '{name}' requires an argument"
        return f"option requires an argument -- '{name[1:]}'"
    return exc.format_message()


# ---------------------------------------------------------------------------
# Running


class _ByteSink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def _binary(stream: TextIO) -> _ByteSink:
    # Bytes go to the underlying buffer so that output does not depend on
    # the locale's encoding; OVS writes the UTF-8 it received.
    buffer: _ByteSink | None = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextAsBinary(stream)


class _TextAsBinary:
    """Lets output go to a text-only stream such as an io.StringIO."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


def _encode(text: str) -> bytes:
    # surrogatepass: a lone \uXXXX surrogate in a reply is still written,
    # as the C client writes whatever bytes its parser produced.
    return text.encode("utf-8", "surrogatepass")


class _Console:
    """stderr writer producing ovs-appctl's message formats."""

    def __init__(self) -> None:
        self._seq = 0

    def raw(self, text: str) -> None:
        err = _binary(sys.stderr)
        err.write(_encode(text))
        err.flush()

    def warn(self, lines: Iterable[LogLine]) -> None:
        # The default console vlog pattern: UTC time|sequence|module|level|text.
        for line in lines:
            self._seq += 1
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.raw(f"{stamp}|{self._seq:05d}|{line.module}|WARN|{line.text}\n")

    def error(self, message: str) -> None:
        self.raw(f"{PROG}: {message}\n")


def _write_stdout(text: str) -> int:
    out = _binary(sys.stdout)
    try:
        out.write(_encode(text))
        out.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does
        # not raise again.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        return _EXIT_PIPE
    return 0


def _server_error(console: _Console, target: str, text: str) -> int:
    console.raw(text)  # verbatim: ovs-appctl adds no newline either
    console.error(f"{target}: server returned an error")
    return 2


def _run(options: Options, console: _Console, started: float) -> int:
    """Resolve the target, run the command and print the outcome; the exit status."""
    deadline = None if options.timeout is None else started + options.timeout
    target = options.target
    try:
        path = resolve_target(target)
    except TargetError as exc:
        console.warn(exc.warnings)
        console.error(exc.message)
        return 1

    def timed_out() -> int:
        console.error(f"{target}: timed out after {options.timeout} seconds")
        return EXIT_TIMEOUT

    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        client = UnixctlClient(path, timeout=remaining)
    except TimeoutError:
        return timed_out()
    except OSError as exc:
        console.warn([LogLine("unixctl", f"failed to connect to {path}")])
        reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
        console.error(f'cannot connect to "{path}" ({reason})')
        return 1

    if options.command == "top":
        # Not a daemon command: pyappctl's own live view (see pyappctl/top.py);
        # on a terminal, a curses screen that reconnects when the daemon restarts.
        with client:
            try:
                if sys.stdout.isatty() and sys.stdin.isatty():
                    return run_top_screen(
                        client, lambda: UnixctlClient(resolve_target(target)), options.args
                    )
                return run_top(client, options.args, sys.stdout, clear=sys.stdout.isatty())
            except TopError as exc:
                console.error(str(exc))
                return 1
            except ClientError as exc:
                console.error(f"{target}: transaction error ({exc.reason})")
                return 1

    with client:
        try:
            if options.json:
                error, _ = client.transact("set-options", ["--format", "json"])
                if error is not None:
                    return _server_error(console, target, error)
            error, result = client.transact(options.command, options.args)
        except TimeoutError:
            return timed_out()
        except ClientError as exc:
            console.warn(exc.warnings)
            console.error(f"{target}: transaction error ({exc.reason})")
            return 1

    if error is not None:
        return _server_error(console, target, error)
    if not options.json:
        if not isinstance(result, str):
            console.error(f"Unexpected reply type in JSON rpc reply: {json_type_name(result)}")
            return 2
        # Printed as received: ovs-appctl 3.1 adds no newline either.
        return _write_stdout(result)
    text = dump_json(result, pretty=options.pretty)
    if not text.endswith("\n"):
        text += "\n"
    return _write_stdout(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyappctl`` script; returns the exit status."""
    started = time.monotonic()
    args = list(sys.argv[1:] if argv is None else argv)
    console = _Console()
    try:
        options = command.main(args=args, prog_name=PROG, standalone_mode=False)
    except _Exit as exc:
        if exc.message is not None:
            console.error(exc.message)
        return exc.status
    except click.UsageError as exc:
        console.error(_usage_message(exc))
        return 1
    except click.Abort:
        return 128 + 2  # interrupted, as a shell reports SIGINT
    if not isinstance(options, Options):
        # click returns an exit code instead when something called ctx.exit().
        return options if isinstance(options, int) else 0
    try:
        return _run(options, console, started)
    except KeyboardInterrupt:
        return 128 + 2
