"""The log file: appended to line by line, and followed when it is rotated.

logrotate's default (no ``copytruncate``) renames the file and, with
``create``, puts an empty one in its place; its postrotate script then runs
``vlog/reopen``.  When that script is missing or fails, a daemon that keeps
its descriptor writes on into the renamed file, which is compressed and
deleted days later, and the file by the configured name stays empty.  So
the log file also notices by itself that its name leads elsewhere, and is
reopened: :meth:`LogFile.moved` compares the name's inode with the open
descriptor's.  It looks at most once per ``check_interval`` seconds, so a
busy log pays one clock read per line, and a quiet one nothing.
"""

from __future__ import annotations

import contextlib
import os

#: Seconds between two looks at whether the file was renamed.
CHECK_INTERVAL = 1.0
#: After a reopen failed (e.g. the directory is not writable): wait longer.
RETRY_INTERVAL = 60.0


class LogFile:
    """An open log file and the name it was opened by."""

    __slots__ = ("_next_check", "check_interval", "fd", "path")

    def __init__(self, path: str, fd: int, *, check_interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self.fd = fd
        self.check_interval = check_interval
        self._next_check = 0.0

    @classmethod
    def open(cls, path: str, *, check_interval: float = CHECK_INTERVAL) -> LogFile:
        """Open ``path`` for appending, created with mode 0660 less the umask (OSError)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o660)
        return cls(path, fd, check_interval=check_interval)

    def same_file(self, other: LogFile) -> bool:
        """Whether both descriptors are the same file (device and inode)."""
        try:
            a, b = os.fstat(self.fd), os.fstat(other.fd)
        except OSError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)

    def write(self, data: bytes) -> None:
        # A full disk must not take the daemon down: the line is lost.
        with contextlib.suppress(OSError):
            os.write(self.fd, data)

    def moved(self, now: float) -> bool:
        """Whether :attr:`path` no longer names the open file (checked every interval).

        ``now`` is a monotonic time in seconds.  A name that is gone counts as
        moved (rotation without ``create``); one that cannot be looked at for
        another reason does not: reopening it would fail the same way.
        """
        if now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        try:
            held = os.fstat(self.fd)
        except OSError:
            return True
        return (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino)

    def postpone(self, now: float, seconds: float = RETRY_INTERVAL) -> None:
        """Look again only after ``seconds`` (a reopen just failed)."""
        self._next_check = now + seconds

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
