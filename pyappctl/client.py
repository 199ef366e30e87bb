"""Blocking unixctl client: target resolution and JSON-RPC transactions.

This is the library half of ``pyappctl``; scripts and tests can use it
directly::

    with UnixctlClient(resolve_target("pyvswitchd"), timeout=5) as client:
        error, result = client.transact("coverage/show")

Framing and reply matching come from :mod:`pyvswitchd.control.protocol`
(:class:`~pyvswitchd.control.protocol.ClientConnection`), so client and
server share one implementation of the wire format.  This module only moves
bytes over a blocking ``AF_UNIX`` socket and turns failures into the
errors ovs-appctl reports.

Nothing here prints.  Failures carry the vlog-style WARN lines ovs-appctl
would log as :class:`LogLine` tuples; the command line front end decides
whether and how to show them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import socket
import struct
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

from pyvswitchd.control.protocol import ClientConnection, ErrorResponse, ProtocolError, Response
from pyvswitchd.control.sun_path import unix_address

__all__ = [
    "DEFAULT_RUNDIR",
    "DEFAULT_TARGET",
    "ClientError",
    "LogLine",
    "TargetError",
    "UnixctlClient",
    "default_rundir",
    "json_type_name",
    "read_pidfile",
    "resolve_target",
]

#: Daemon contacted when no ``-t`` is given.
DEFAULT_TARGET = "pyvswitchd"

#: Run directory used when neither PYVSWITCH_RUNDIR nor OVS_RUNDIR is set.
DEFAULT_RUNDIR = "/run/pyvswitch"

_RECV_SIZE = 65536

# struct flock with a 64-bit off_t (every LP64 Linux, and 32-bit builds with
# large-file support, which CPython always uses): l_type, l_whence, l_start,
# l_len, l_pid.  Native alignment reproduces the C padding.
_FLOCK = struct.Struct("@hhqqi")

# What strtoul() would take from the start of the pidfile's first line.
_PID_PREFIX = re.compile(rb"\s*\+?(\d+)")


class LogLine(NamedTuple):
    """A WARN message ovs-appctl would log: ``<ts>|<seq>|<module>|WARN|<text>``."""

    module: str
    text: str


class TargetError(Exception):
    """The target could not be resolved to a socket path.

    ``str(exc)`` is ovs-appctl's fatal message without the program prefix,
    e.g. ``cannot read pidfile "/run/pyvswitch/x.pid" (No such file or
    directory)``; ``warnings`` holds the WARN lines logged before it.
    """

    def __init__(self, message: str, warnings: Sequence[LogLine] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.warnings = tuple(warnings)


class ClientError(Exception):
    """The connection failed mid-transaction; it cannot be used any more.

    ``reason`` is the text ovs-appctl prints in parentheses after
    ``transaction error``: a strerror text, ``End of file`` or ``Protocol
    error``.  ``warnings`` holds the WARN lines ovs-appctl logs first.
    """

    def __init__(self, reason: str, warnings: Sequence[LogLine] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.warnings = tuple(warnings)


def _strerror(exc: OSError) -> str:
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def json_type_name(value: Any) -> str:
    """The name OVS gives the JSON type of ``value`` (``number`` for int and float)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def default_rundir() -> str:
    """``$PYVSWITCH_RUNDIR``, else ``$OVS_RUNDIR``, else :data:`DEFAULT_RUNDIR`.

    An empty variable counts as unset: an empty run directory would put the
    pidfile at the filesystem root, which is never what was meant.
    """
    return os.environ.get("PYVSWITCH_RUNDIR") or os.environ.get("OVS_RUNDIR") or DEFAULT_RUNDIR


def _lock_holder(fd: int) -> int | None:
    """Pid of the process holding a POSIX lock that blocks a write lock, or None.

    F_GETLK never reports the caller's own locks, so a process cannot find
    itself this way; that matches the daemons, which hold their pidfile
    lock in another process than the client.
    """
    query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    l_type, _whence, _start, _len, l_pid = _FLOCK.unpack(answer)
    return None if l_type == fcntl.F_UNLCK else int(l_pid)


def read_pidfile(path: str) -> int:
    """The pid of the live daemon owning pidfile ``path``.

    Daemons write their pid into the file and hold a POSIX (``lockf``)
    write lock on it for as long as they run.  The file is trusted only if
    it is locked and the lock holder is the process the file names; an
    unlocked or mismatched file is stale (ESRCH), as in ovs-appctl.

    Raises TargetError(``cannot read pidfile "<path>" (<strerror>)``).
    """

    def fail(code: int, *warnings: LogLine) -> TargetError:
        return TargetError(f'cannot read pidfile "{path}" ({os.strerror(code)})', warnings)

    def os_fail(step: str, exc: OSError) -> TargetError:
        code = exc.errno or errno.EIO
        return fail(code, LogLine("daemon_unix", f"{path}: {step}: {os.strerror(code)}"))

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_fail("open", exc) from None
    try:
        try:
            holder = _lock_holder(fd)
        except OSError as exc:
            raise os_fail("fcntl", exc) from None
        if holder is None:
            # ovs-appctl logs this only at debug level, so no WARN line.
            raise fail(errno.ESRCH)
        try:
            head = os.read(fd, 128)
        except OSError as exc:
            raise os_fail("read", exc) from None
    finally:
        os.close(fd)
    if not head:
        raise fail(errno.ESRCH, LogLine("daemon_unix", f"{path}: pidfile is empty"))
    line = head.split(b"\n", 1)[0]
    match = _PID_PREFIX.match(line)
    pid = int(match.group(1)) if match else 0
    if pid != holder:
        # The lock belongs to someone else than the daemon the file names:
        # a pid reused after a crash, or a file rewritten under a live lock.
        shown = line.decode("utf-8", "replace")
        raise fail(
            errno.ESRCH,
            LogLine("daemon_unix", f'{path}: locked by pid {holder}, but the file says "{shown}"'),
        )
    return pid


def resolve_target(target: str, rundir: str | None = None) -> str:
    """Map an ovs-appctl ``-t`` value to a control socket path.

    A target starting with ``/`` is a socket path and is returned as is.
    Anything else, even ``./x.ctl``, names a daemon: its pid is read from
    ``<rundir>/<target>.pid`` (see :func:`read_pidfile`) and the socket is
    ``<rundir>/<target>.<pid>.ctl``.  ``rundir`` defaults to
    :func:`default_rundir`.

    Raises TargetError carrying ovs-appctl's message.
    """
    if target.startswith("/"):
        return target
    if rundir is None:
        rundir = default_rundir()
    pid = read_pidfile(f"{rundir}/{target}.pid")
    return f"{rundir}/{target}.{pid}.ctl"


class UnixctlClient:
    """One blocking connection to a unixctl server.

    ``timeout`` (seconds) is a single deadline, counted from construction,
    for the connect and every later :meth:`transact` together; when it
    passes, the pending call raises :class:`TimeoutError`.  ``None`` waits
    forever, like ovs-appctl without ``--timeout``.

    Requests are numbered 0, 1, 2... on the connection; a reply whose id
    does not match the outstanding request is dropped and waiting goes on.

    The constructor connects and raises OSError (TimeoutError on expiry of
    the deadline) if it cannot.
    """

    def __init__(self, path: str, *, timeout: float | None = None) -> None:
        self.path = path
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._conn = ClientConnection()
        self._failure: ClientError | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._connect()
        except BaseException:
            self._sock.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._sock.close()

    def _remaining(self) -> float | None:
        """Arm the socket with what is left of the deadline."""
        if self._deadline is None:
            self._sock.settimeout(None)
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
        self._sock.settimeout(left)
        return left

    def _connect(self) -> None:
        # A path too long for sun_path is reached through /proc/self/fd.
        with unix_address(self.path) as address:
            self._connect_to(address)

    def _connect_to(self, address: str) -> None:
        while True:
            self._remaining()
            try:
                self._sock.connect(address)
                return
            except BlockingIOError:
                # A listener with a full backlog makes a non-blocking (that
                # is, timed) AF_UNIX connect fail with EAGAIN instead of
                # waiting; poll until the deadline rather than give up early.
                time.sleep(0.01)

    def _fail(self, reason: str, *warnings: LogLine) -> ClientError:
        self._failure = ClientError(reason, warnings)
        return self._failure

    def _comm_error(self, reason: str, *warnings: LogLine) -> ClientError:
        return self._fail(
            reason,
            *warnings,
            LogLine("unixctl", f"error communicating with unix:{self.path}: {reason}"),
        )

    def transact(self, command: str, args: Sequence[str] = ()) -> tuple[str | None, Any]:
        """Run ``command`` with ``args`` on the server.

        Returns ``(error_text, None)`` when the server replied with an error
        and ``(None, result)`` on success; ``result`` is whatever JSON value
        the server sent (a string, unless the connection is in JSON mode).

        Raises ClientError when the connection breaks (end of file, socket
        error, protocol violation, non-string error) and TimeoutError when
        the deadline passes.  After either, the client is unusable and
        every further call raises ClientError.
        """
        if self._failure is not None:
            raise self._failure
        try:
            reply = self._exchange(command, list(args))
        except TimeoutError:
            # A half-sent request or half-read reply leaves the stream in an
            # unknown state; refuse further use rather than misparse it.
            self._fail(os.strerror(errno.ETIMEDOUT))
            raise
        if isinstance(reply, ErrorResponse):
            if not isinstance(reply.error, str):
                raise self._fail(
                    os.strerror(errno.EINVAL),
                    LogLine(
                        "unixctl",
                        f"unix:{self.path}: unexpected error type in JSON RPC reply: "
                        f"{json_type_name(reply.error)}",
                    ),
                )
            return reply.error, None
        return None, reply.result

    def _exchange(self, command: str, params: list[str]) -> Response | ErrorResponse:
        try:
            request = self._conn.send_request(command, params)
        except ValueError:
            # Bytes that are not UTF-8 in argv arrive as lone surrogates
            # (surrogateescape); JSON cannot carry them.
            raise self._fail(
                os.strerror(errno.EINVAL),
                LogLine("unixctl", "command and arguments must be valid UTF-8"),
            ) from None
        try:
            self._remaining()
            self._sock.sendall(request)
            while (reply := self._conn.next_reply()) is None:
                self._remaining()
                data = self._sock.recv(_RECV_SIZE)
                if not data:
                    raise self._comm_error("End of file")
                self._conn.receive_data(data)
        except ProtocolError as exc:
            raise self._comm_error(
                os.strerror(errno.EPROTO), LogLine(exc.log_module, f"unix:{self.path}: {exc}")
            ) from None
        except TimeoutError:
            raise
        except OSError as exc:
            raise self._comm_error(_strerror(exc)) from None
        return reply
