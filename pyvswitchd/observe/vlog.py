"""Vlog: Open vSwitch's logging facility, re-implemented.

A component asks the daemon's :class:`Vlog` for its :class:`VlogModule` once
at start-up (``log = vlog.module("dpif_netdev")``) and logs through it
(``log.info("...")``, ``log.warn("...", rl=RATE_LIMIT)``).  Each module has
a level per destination (syslog, console, file), INFO by default; a message
reaches a destination whose level for the module is at least the message's.
The module caches the most verbose of its levels, so a message nobody wants
costs one comparison.

Behaviour follows OVS's ``lib/vlog.c``: the ``vlog/set`` grammar and error
texts (the ``vlog/*`` commands are in :mod:`.vlog_commands`); output patterns (see
:mod:`pyvswitchd.observe.vlog_pattern`); per-thread serial numbers (``%N``);
token-bucket rate limiting with "Dropped ..." summaries; syslog methods
``libc``, ``null``, ``unix:PATH`` and ``udp:HOST:PORT``; a log file that
``vlog/reopen`` re-opens after rotation.

Differences from OVS:

* A "thread" is a subprogram name set with :meth:`Vlog.set_subprogram_name`
  (a context variable, so trio tasks inherit it); tasks sharing a name share
  a ``%N`` counter.
* Modules may be created at any time; a new module starts at INFO for every
  destination even after ``vlog/set`` changed the others.
* Time stamps and rate limiting both use the clock given to :class:`Vlog`
  (OVS uses a monotonic clock for rate limiting).
* ``%E`` (host name) is read once, when the :class:`Vlog` is created.
* A log file whose name comes to lead elsewhere (rotated, and no
  ``vlog/reopen`` came) is reopened by itself (:mod:`.log_file`).
* On systemd's journal stream, console lines start with their syslog
  priority, ``<N>`` (:mod:`.journal`).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import math
import os
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from pyvswitchd.observe.journal import is_journal_stream, with_priority
from pyvswitchd.observe.log_file import CHECK_INTERVAL, LogFile
from pyvswitchd.observe.ratelimit import RateLimit as RateLimit
from pyvswitchd.observe.syslog_sender import SyslogSender
from pyvswitchd.observe.vlog_pattern import CompiledPattern, LogRecord, compile_pattern


class Level(enum.IntEnum):
    """Log levels, least to most verbose.  ``OFF`` as a destination level
    disables the destination; no message is ever logged at ``OFF``."""

    OFF = 0
    EMER = 1
    ERR = 2
    WARN = 3
    INFO = 4
    DBG = 5


class Destination(enum.Enum):
    """Log destinations, in OVS's order (the order of ``vlog/list-pattern``)."""

    SYSLOG = "syslog"
    CONSOLE = "console"
    FILE = "file"


class VlogError(Exception):
    """A vlog request failed; ``str(exc)`` is OVS's error text."""


_DESTINATIONS = tuple(Destination)
_SYSLOG, _CONSOLE, _FILE = range(3)
_DEFAULT_PATTERNS = (
    "ovs|%05N|%c%T|%p|%m",
    "%D{%Y-%m-%dT%H:%M:%SZ}|%05N|%c%T|%p|%m",
    "%D{%Y-%m-%dT%H:%M:%S.###Z}|%05N|%c%T|%p|%m",
)
# syslog severity per Level value: OFF and EMER both map to LOG_ALERT, INFO
# to LOG_NOTICE, as OVS does.
_SEVERITIES = (1, 1, 3, 4, 5, 7)
_FACILITIES = (
    ("kern", 0), ("user", 1 << 3), ("mail", 2 << 3), ("daemon", 3 << 3),
    ("auth", 4 << 3), ("syslog", 5 << 3), ("lpr", 6 << 3), ("news", 7 << 3),
    ("uucp", 8 << 3), ("clock", 9 << 3), ("ftp", 11 << 3), ("ntp", 12 << 3),
    ("audit", 13 << 3), ("alert", 14 << 3), ("clock2", 15 << 3),
    *((f"local{i}", (16 + i) << 3) for i in range(8)),
)  # fmt: skip
_WORD = re.compile("[ ,:\t]*([^ ,:\t]+)[ ,:\t]?")
_SERIAL_MASK = 2**32 - 1


def _parse_level(word: str) -> Level | None:
    lowered = word.lower()
    return next((lv for lv in Level if lv.name.lower() == lowered), None)


def _parse_destination(word: str) -> Destination | None:
    lowered = word.lower()
    return next((d for d in Destination if d.value == lowered), None)


def _strtok(text: str, pos: int) -> tuple[str | None, int]:
    """C ``strtok_r`` over vlog's delimiters from ``pos``.

    Returns the next word (None at the end) and the position just after the
    single delimiter that ended it, which is where OVS takes the raw rest of
    a ``PATTERN:`` or ``FACILITY:`` argument from.
    """
    match = _WORD.match(text, pos)
    return (match[1], match.end()) if match else (None, len(text))


class VlogModule:
    """One named log source (OVS's ``VLOG_DEFINE_THIS_MODULE``).

    Obtain with :meth:`Vlog.module`.  ``rate_limit_enabled`` is what
    ``vlog/enable-rate-limit`` and ``vlog/disable-rate-limit`` switch.
    """

    __slots__ = ("_levels", "_min_level", "_vlog", "name", "rate_limit_enabled")

    def __init__(self, vlog: Vlog, name: str) -> None:
        self._vlog = vlog
        self.name = name
        self._levels = [int(Level.INFO)] * len(_DESTINATIONS)
        self._min_level = int(Level.INFO)
        self.rate_limit_enabled = True

    def level(self, destination: Destination) -> Level:
        """The module's level for ``destination``."""
        return Level(self._levels[_DESTINATIONS.index(destination)])

    def is_enabled(self, level: Level) -> bool:
        """Whether a message at ``level`` would reach any destination now."""
        return self._min_level >= level

    def log(self, level: Level, msg: str, *, rl: RateLimit | None = None) -> None:
        """Log ``msg`` at ``level``, subject to ``rl`` when given."""
        if level <= self._min_level:
            self._vlog._log(self, level, msg, rl)

    def emer(self, msg: str, *, rl: RateLimit | None = None) -> None:
        if self._min_level >= 1:
            self._vlog._log(self, Level.EMER, msg, rl)

    def emer_exception(self, msg: str, exc: BaseException) -> None:
        """``msg`` then ``exc``'s traceback, at EMER: what a fatal error leaves behind.

        One record per traceback line, so that every line of the log file
        still starts with its time stamp and level (syslog too gets a line
        per record).  Syslog datagrams wait up to 0.5 s each for a receiver
        that is behind instead of being dropped: the daemon is exiting.
        """
        syslog = self._vlog._syslog
        saved, syslog.patience = syslog.patience, 0.5  # a burst: wait for the receiver
        try:
            self.emer(msg)
            for chunk in traceback.format_exception(exc):
                for line in chunk.rstrip("\n").split("\n"):
                    self.emer(line)
        finally:
            syslog.patience = saved

    def err(self, msg: str, *, rl: RateLimit | None = None) -> None:
        if self._min_level >= 2:
            self._vlog._log(self, Level.ERR, msg, rl)

    def warn(self, msg: str, *, rl: RateLimit | None = None) -> None:
        if self._min_level >= 3:
            self._vlog._log(self, Level.WARN, msg, rl)

    def info(self, msg: str, *, rl: RateLimit | None = None) -> None:
        if self._min_level >= 4:
            self._vlog._log(self, Level.INFO, msg, rl)

    def dbg(self, msg: str, *, rl: RateLimit | None = None) -> None:
        if self._min_level >= 5:
            self._vlog._log(self, Level.DBG, msg, rl)

    def __repr__(self) -> str:
        return f"<VlogModule {self.name}>"


class Vlog:
    """One process's logging configuration, modules and outputs.

    ``clock`` gives wall-clock seconds (time stamps, ``%r``, rate limiting);
    ``console`` is the console stream, ``sys.stderr`` at emit time when None;
    ``syslog_method`` is ``libc``, ``null``, ``unix:PATH`` or
    ``udp:HOST:PORT`` (VlogError otherwise).  Output is written synchronously,
    one write per line, and write failures are ignored.
    """

    def __init__(
        self,
        program: str,
        *,
        clock: Callable[[], float] = time.time,
        console: TextIO | None = None,
        syslog_method: str = "libc",
        log_check_interval: float = CHECK_INTERVAL,
    ) -> None:
        self.program = program
        #: Seconds between two looks at whether the log file was rotated away.
        self.log_check_interval = log_check_interval
        self._clock = clock
        self._console = console
        try:
            self._syslog = SyslogSender(syslog_method, program)
        except ValueError as exc:
            raise VlogError(str(exc)) from None
        self._hostname = socket.gethostname()
        self._start_ms = self._now_ms(clock())
        self._lock = threading.RLock()
        self._modules: dict[str, VlogModule] = {}
        self._patterns = [compile_pattern(p) for p in _DEFAULT_PATTERNS]
        self._facility = 0
        self._log_file: LogFile | None = None
        self._log_path: str | None = None
        #: The console stream last looked at, and whether it is the journal's.
        self._console_seen: TextIO | None = None
        self._console_is_journal = False
        self._serials: dict[str, int] = {}
        self._subprogram: contextvars.ContextVar[str] = contextvars.ContextVar(
            f"vlog_subprogram_{id(self):x}", default=""
        )
        #: Where records go instead of the destinations (a PMD worker's
        #: records go to the daemon, which writes them).
        self._forward: Callable[[str, Level, str], None] | None = None
        #: Called after any change of levels or rate limiting.
        self._listeners: list[Callable[[], None]] = []
        self._self_log = self.module("vlog")

    # -- modules and levels -------------------------------------------------

    def module(self, name: str) -> VlogModule:
        """The module called ``name`` (case-insensitively), created if new."""
        with self._lock:
            module = self._modules.get(name.lower())
            if module is None:
                module = VlogModule(self, name)
                self._modules[name.lower()] = module
                self._update_min_level(module)
            return module

    def modules(self) -> list[VlogModule]:
        """All modules, in creation order."""
        return list(self._modules.values())

    def find_module(self, name: str) -> VlogModule | None:
        """The existing module called ``name`` (case-insensitively), or None."""
        return self._modules.get(name.lower())

    def set_levels(
        self,
        level: Level,
        *,
        module: VlogModule | None = None,
        destination: Destination | None = None,
    ) -> None:
        """Set ``level`` for ``module`` (None: all) at ``destination`` (None: all)."""
        with self._lock:
            targets = self.modules() if module is None else [module]
            indexes = (
                range(len(_DESTINATIONS))
                if destination is None
                else [_DESTINATIONS.index(destination)]
            )
            for mod in targets:
                for i in indexes:
                    mod._levels[i] = int(level)
                self._update_min_level(mod)
        self._changed()

    def set_all_levels_dbg(self) -> None:
        """Every module, every destination to DBG (``vlog/set`` without arguments)."""
        self.set_levels(Level.DBG)

    def _update_min_level(self, module: VlogModule) -> None:
        counted = module._levels if self._log_file is not None else module._levels[:_FILE]
        module._min_level = max(counted)

    def _update_all_min_levels(self) -> None:
        for module in self._modules.values():
            self._update_min_level(module)
        self._changed()

    # -- other processes ------------------------------------------------------

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of levels or rate limiting."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()

    def effective_levels(self) -> dict[str, tuple[int, bool]]:
        """Module -> (lowest level any destination logs, rate limiting on)."""
        return {m.name: (m._min_level, m.rate_limit_enabled) for m in self.modules()}

    def apply_effective_levels(self, levels: dict[str, tuple[int, bool]]) -> None:
        """Adopt another process's :meth:`effective_levels` (a PMD worker's side)."""
        with self._lock:
            for name, (level, rate_limited) in levels.items():
                module = self.module(name)
                module._levels = [level] * len(_DESTINATIONS)
                module._min_level = level
                module.rate_limit_enabled = rate_limited

    def set_forwarder(self, forward: Callable[[str, Level, str], None] | None) -> None:
        """Hand every record that passes its level to ``forward`` instead of writing it."""
        self._forward = forward

    def emit_from(self, subprogram: str, module_name: str, level: Level, msg: str) -> None:
        """Write a record another process logged, under its thread name."""
        token = self._subprogram.set(subprogram)
        try:
            self._emit(self.module(module_name), level, msg)
        finally:
            self._subprogram.reset(token)

    def set_levels_from_string(self, spec: str) -> None:
        """Apply one ``vlog/set`` argument; VlogError carries OVS's error text.

        ``PATTERN:<destination|ANY>:<pattern>`` sets a pattern (the raw rest
        of the string after the destination's delimiter);
        ``FACILITY:<name>`` sets the syslog facility; otherwise the words
        (split on space, comma, colon, tab) name at most one destination,
        level and module, ``ANY`` being ignored; the defaults are all
        destinations, ``dbg`` and all modules.
        """
        word, pos = _strtok(spec, 0)
        if word is not None and word.lower() == "pattern":
            word, pos = _strtok(spec, pos)
            if word is None:
                raise VlogError("missing destination")
            target = None if word.lower() == "any" else _parse_destination(word)
            if target is None and word.lower() != "any":
                raise VlogError(f'unknown destination "{word}"')
            self.set_pattern(target, spec[pos:])
            return
        if word is not None and word.lower() == "facility":
            name = spec[pos:].lower()
            value = next((v for n, v in _FACILITIES if n == name), None)
            if value is None:
                raise VlogError("invalid facility")
            self._facility = value
            return
        destination: Destination | None = None
        level: Level | None = None
        module: VlogModule | None = None
        while word is not None:
            if word.lower() != "any":
                if (dest := _parse_destination(word)) is not None:
                    if destination is not None:
                        raise VlogError("cannot specify multiple destinations")
                    destination = dest
                elif (lvl := _parse_level(word)) is not None:
                    if level is not None:
                        raise VlogError("cannot specify multiple levels")
                    level = lvl
                elif (mod := self.find_module(word)) is not None:
                    if module is not None:
                        raise VlogError("cannot specify multiple modules")
                    module = mod
                else:
                    raise VlogError(f'no destination, level, or module "{word}"')
            word, pos = _strtok(spec, pos)
        self.set_levels(
            Level.DBG if level is None else level, module=module, destination=destination
        )

    def set_pattern(self, dest: Destination | None, pattern: str) -> None:
        """Set the output pattern of ``dest`` (None: every destination)."""
        compiled = compile_pattern(pattern)
        with self._lock:
            for i, d in enumerate(_DESTINATIONS):
                if dest is None or d is dest:
                    self._patterns[i] = compiled

    def pattern(self, dest: Destination) -> str:
        """The current pattern text of ``dest``."""
        return self._patterns[_DESTINATIONS.index(dest)].text

    # -- threads ----------------------------------------------------------

    def set_subprogram_name(self, name: str | None) -> contextvars.Token[str]:
        """Name the current task/thread for ``%t``/``%T`` and its own ``%N``.

        None or "" means the main thread.  The name is a context variable of
        this Vlog, so tasks started afterwards from this context inherit it;
        pass the returned token to :meth:`reset_subprogram_name` to undo.
        """
        return self._subprogram.set(name or "")

    def reset_subprogram_name(self, token: contextvars.Token[str]) -> None:
        self._subprogram.reset(token)

    @property
    def subprogram_name(self) -> str:
        """The current subprogram name, "" for the main thread."""
        return self._subprogram.get()

    # -- log file -----------------------------------------------------------

    @property
    def log_file_path(self) -> str | None:
        """The configured log file name; kept by :meth:`close_log_file`, as in
        OVS, so that ``vlog/reopen`` can open it again."""
        return self._log_path

    @property
    def log_file_is_open(self) -> bool:
        return self._log_file is not None

    def open_log_file(self, path: str, *, warn: bool = True) -> None:
        """Log to ``path`` (appending; created with mode 0660 less the umask).

        Does nothing when ``path`` is the file already open (same device and
        inode).  Otherwise logs ``closing log file`` to the old file, if one
        is open, switches, and logs ``opened log file PATH``.  When ``path``
        cannot be opened, logs a warning (unless not ``warn``: the caller
        reports it), keeps the old file and raises VlogError with the
        system's error text, the OSError as its ``__cause__``.
        """
        try:
            new = LogFile.open(path, check_interval=self.log_check_interval)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if warn:
                self._self_log.warn(f"failed to open {path} for logging: {reason}")
            raise VlogError(reason) from exc
        old = self._log_file
        if old is not None and old.same_file(new):
            new.close()
            return
        if old is not None:
            self._self_log.info("closing log file")
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
            self._log_file = new
            self._log_path = path
            self._update_all_min_levels()
        self._self_log.info(f"opened log file {path}")

    def _follow_rotation(self, log_file: LogFile) -> None:
        # The file was renamed or removed under us (rotated, and vlog/reopen
        # did not come): open the name again, as vlog/reopen would.
        now = time.monotonic()
        if not log_file.moved(now):
            return
        # No second look at this file while the lines below are logged; if
        # the reopen fails, it is tried again after a while, not every line.
        log_file.postpone(now)
        self._self_log.info(f"{log_file.path} was renamed or removed: reopening it")
        with contextlib.suppress(VlogError):  # open_log_file warned
            self.open_log_file(log_file.path)

    def reopen_log_file(self) -> None:
        """Open the configured log file again by name (after log rotation)."""
        if self._log_path is None:
            raise VlogError("Logging to file not configured")
        self.open_log_file(self._log_path)

    def close_log_file(self) -> None:
        """Stop logging to the file, if one is open."""
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
                self._update_all_min_levels()

    def close(self) -> None:
        """Release the log file and any syslog socket."""
        self.close_log_file()
        self._syslog.close()

    # -- emitting -----------------------------------------------------------

    @staticmethod
    def _now_ms(now: float) -> int:
        # The epsilon keeps e.g. 0.123 s, stored as 0.12299999..., at 123 ms
        # while still truncating like OVS's millisecond clock.
        return math.floor(now * 1000.0 + 1e-3)

    def _log(self, module: VlogModule, level: Level, msg: str, rl: RateLimit | None) -> None:
        if level <= Level.OFF:
            return
        if rl is not None and module.rate_limit_enabled:
            with self._lock:
                now = self._clock()
                if not rl._withdraw(self._now_ms(now)):
                    rl._drop(math.floor(now))
                    return
                summary = rl._take_summary(math.floor(now))
            if summary is not None:
                self._emit(module, level, summary)
        self._emit(module, level, msg)

    def _emit(self, module: VlogModule, level: Level, msg: str) -> None:
        if self._forward is not None:
            self._forward(module.name, level, msg)
            return
        levels = module._levels
        to_syslog = levels[_SYSLOG] >= level
        to_console = levels[_CONSOLE] >= level
        to_file = levels[_FILE] >= level and self._log_file is not None
        if not (to_syslog or to_console or to_file):
            return
        if to_file and self._log_file is not None:
            self._follow_rotation(self._log_file)
        now_ms = self._now_ms(self._clock())
        subprogram = self._subprogram.get()
        with self._lock:
            serial = (self._serials.get(subprogram, 0) + 1) & _SERIAL_MASK
            self._serials[subprogram] = serial
            record = LogRecord(
                self.program, self._hostname, module.name, level.name, _SEVERITIES[level],
                self._facility, msg, serial, now_ms, now_ms - self._start_ms, subprogram,
            )  # fmt: skip
            if to_console:
                self._write_console(self._patterns[_CONSOLE].render(record) + "\n", record)
            if to_syslog:
                self._write_syslog(self._patterns[_SYSLOG], record)
            if to_file and self._log_file is not None:
                line = self._patterns[_FILE].render(record) + "\n"
                self._log_file.write(line.encode("utf-8", "backslashreplace"))

    def _write_console(self, line: str, record: LogRecord) -> None:
        maybe: TextIO | None = self._console if self._console is not None else sys.stderr
        if maybe is None:
            return
        stream: TextIO = maybe
        if stream is not self._console_seen:
            self._console_seen = stream
            self._console_is_journal = is_journal_stream(stream)
        if self._console_is_journal:
            line = with_priority(line, record.severity)
        # Closed or broken stderr: the message is lost, the caller goes on.
        with contextlib.suppress(OSError, ValueError):
            stream.write(line)
            stream.flush()

    def _write_syslog(self, pattern: CompiledPattern, record: LogRecord) -> None:
        pri = record.severity | self._facility
        for line in pattern.render(record).split("\n"):
            if line:
                with contextlib.suppress(OSError, ValueError):
                    self._syslog.send(pri, line)

    # -- operations the vlog/* commands run ------------------------------------

    @property
    def syslog_prefix(self) -> str:
        """The prefix syslog lines are sent with (``vlog/list-pattern``)."""
        return self._syslog.prefix

    def user_message(self, text: str) -> None:
        """Log ``text`` as ``vlog/message`` does, from the vlog module itself."""
        self._self_log.info(f"user-message: {text}")

    def set_rate_limits(self, names: Sequence[str], enable: bool) -> None:
        """Switch rate limiting for the named modules (none or ``ANY``: all).

        Names are applied in order; an unknown one raises VlogError
        ``unknown module`` after the earlier ones were applied, like OVS.
        """
        if not names:
            names = ["ANY"]
        for name in names:
            if name.lower() == "any":
                targets = self.modules()
            else:
                found = self.find_module(name)
                if found is None:
                    raise VlogError("unknown module")
                targets = [found]
            for module in targets:
                module.rate_limit_enabled = enable
            self._changed()
