"""Vlog output patterns: compiled once when set, rendered once per message.

A pattern such as ``%D{%Y-%m-%dT%H:%M:%S.###Z}|%05N|%c%T|%p|%m`` is turned
into a tuple of small functions ("pieces"), each mapping a :class:`LogRecord`
to text, so emitting a message never re-parses the pattern.  Runs of plain
characters (and escapes whose output is constant, such as ``%%`` and ``%n``)
are merged into one constant piece.

Escapes (each may carry, between ``%`` and the letter and in this order, a
``-`` to left-justify, a ``0`` to pad with zeros instead of spaces, and a
decimal minimum width that never truncates):

==========  ==============================================================
``%A``      program name
``%B``      RFC 5424 PRI: facility (``local0`` when none is configured)
            plus the level's syslog severity
``%c``      module name (a following ``{...}`` is accepted and ignored)
``%d``      local time, ``%d{FMT}`` with a strftime FMT; every ``#`` in
            the result is a digit of the fractional second (milliseconds,
            then zeros); default FMT ``%Y-%m-%d %H:%M:%S.###``
``%D``      as ``%d`` but UTC
``%E``      host name
``%m``      the message, trailing newlines removed
``%N``      the message's serial number in its thread
``%n``      newline
``%p``      level name (``INFO``)
``%P``      process id
``%r``      milliseconds since logging started
``%t``      subprogram (thread) name, ``main`` for the main thread
``%T``      ``(subprogram)``, empty for the main thread
``%%``      ``%``; any other character after ``%`` stands for itself
==========  ==============================================================

A ``%`` (with or without flags) at the very end of a pattern produces
nothing: OVS reads past the end of the string there.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

import attrs

#: Facility value ``%B`` adds when no facility was configured (``LOG_LOCAL0``).
LOG_LOCAL0 = 16 << 3

#: strftime format of ``%d`` / ``%D`` without braces.
DEFAULT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.###"

_HASH_RUN = re.compile("#+")


@attrs.define(slots=True)
class LogRecord:
    """Everything a pattern can show about one message.

    Built once per emitted message and rendered for each destination, so all
    destinations agree on the time stamp and serial number.
    """

    program: str
    hostname: str
    module: str
    level_name: str
    #: syslog severity of the level (``LOG_NOTICE`` for INFO, ...).
    severity: int
    #: configured syslog facility value, 0 when none was configured.
    facility: int
    message: str
    serial: int
    #: wall-clock time, whole milliseconds since the epoch.
    time_ms: int
    uptime_ms: int
    #: subprogram (thread) name, "" for the main thread.
    subprogram: str


Piece = Callable[[LogRecord], str]


@attrs.frozen
class CompiledPattern:
    """A pattern's source text and the pieces it compiled to."""

    text: str
    pieces: tuple[Piece, ...]

    def render(self, record: LogRecord) -> str:
        """The pattern's output for ``record`` (no line terminator added)."""
        return "".join([piece(record) for piece in self.pieces])


def fill_fraction(text: str, millis: int) -> str:
    """Replace each run of ``#`` in ``text`` by the fractional-second digits.

    Every run restarts at the tenths digit; only milliseconds are known, so
    digits beyond the third are zeros (``#####`` at .123 s gives ``12300``).
    """
    if "#" not in text:
        return text
    digits = f"{millis:03d}"

    def run(match: re.Match[str]) -> str:
        n = len(match[0])
        return digits[:n] + "0" * (n - len(digits))

    return _HASH_RUN.sub(run, text)


def _time_piece(fmt: str, *, utc: bool) -> Piece:
    to_struct = time.gmtime if utc else time.localtime
    # Messages come in bursts within one millisecond; caching the last
    # rendering spares strftime on all but the first of them.
    last: list[tuple[int, str]] = [(-(2**63), "")]

    def render(record: LogRecord) -> str:
        cached_ms, cached_text = last[0]
        if cached_ms == record.time_ms:
            return cached_text
        seconds, millis = divmod(record.time_ms, 1000)
        try:
            text = fill_fraction(time.strftime(fmt, to_struct(seconds)), millis)
        except (ValueError, OverflowError, OSError):
            # A format Python refuses (embedded NUL, out-of-range year)
            # must not make logging fail; OVS would print nothing as well.
            text = ""
        last[0] = (record.time_ms, text)
        return text

    return render


def _pri(record: LogRecord) -> str:
    return str((record.facility or LOG_LOCAL0) + record.severity)


def _message(record: LogRecord) -> str:
    return record.message.rstrip("\n")


def _thread_name(record: LogRecord) -> str:
    return record.subprogram or "main"


def _thread_suffix(record: LogRecord) -> str:
    return f"({record.subprogram})" if record.subprogram else ""


_SIMPLE: Mapping[str, Piece] = MappingProxyType(
    {
        "A": lambda r: r.program,
        "B": _pri,
        "c": lambda r: r.module,
        "E": lambda r: r.hostname,
        "m": _message,
        "N": lambda r: str(r.serial),
        "p": lambda r: r.level_name,
        "P": lambda r: str(os.getpid()),
        "r": lambda r: str(r.uptime_ms),
        "t": _thread_name,
        "T": _thread_suffix,
    }
)


def _constant(text: str) -> Piece:
    return lambda _record: text


def _padded(piece: Piece, width: int, *, left: bool, fill: str) -> Piece:
    if left:
        return lambda record: piece(record).ljust(width, fill)
    return lambda record: piece(record).rjust(width, fill)


def _conversion(letter: str, braces: str | None) -> Piece | str:
    """The piece for one escape letter, or its text when that is constant."""
    if letter in ("d", "D"):
        return _time_piece(DEFAULT_TIME_FORMAT if braces is None else braces, utc=letter == "D")
    if letter == "n":
        return "\n"
    return _SIMPLE.get(letter, letter)


def compile_pattern(text: str) -> CompiledPattern:
    """Parse ``text`` into pieces; every string is a valid pattern."""
    pieces: list[Piece] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] != "%":
            end = text.find("%", i)
            end = n if end < 0 else end
            literal.append(text[i:end])
            i = end
            continue
        i += 1
        left = i < n and text[i] == "-"
        i += left
        zero = i < n and text[i] == "0"
        i += zero
        width = 0
        while i < n and "0" <= text[i] <= "9":
            width = width * 10 + ord(text[i]) - ord("0")
            i += 1
        if i >= n:
            break
        letter = text[i]
        i += 1
        braces = None
        if letter in "cdD" and i < n and text[i] == "{":
            close = text.find("}", i + 1)
            close = n if close < 0 else close
            braces = text[i + 1 : close]
            i = close + 1
        conv = _conversion(letter, braces)
        fill = "0" if zero else " "
        if isinstance(conv, str):
            literal.append(conv.ljust(width, fill) if left else conv.rjust(width, fill))
            continue
        if literal:
            pieces.append(_constant("".join(literal)))
            literal.clear()
        pieces.append(_padded(conv, width, left=left, fill=fill) if width else conv)
    if literal:
        pieces.append(_constant("".join(literal)))
    return CompiledPattern(text=text, pieces=tuple(pieces))
