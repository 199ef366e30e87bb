"""The pidfile: proof that one daemon owns a run directory.

Like ovs-vswitchd's, the file holds the pid and stays locked with a POSIX
(fcntl) write lock for the daemon's lifetime.  ``ovs-appctl -t NAME`` asks
the kernel who holds that lock before trusting the pid, so a stale file
left by a crash is recognised as stale, and a second daemon started on the
same run directory finds the lock taken and refuses to start.

POSIX locks belong to the process and die with *any* close of the file by
it, so nothing in the daemon may open the pidfile besides this class.
"""

from __future__ import annotations

import contextlib
import fcntl
import os


class AlreadyRunning(Exception):
    """Another live process holds the pidfile."""

    def __init__(self, path: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{path}: already running as {who}")
        self.path = path
        self.pid = pid


class PidFile:
    """A locked pidfile; :meth:`acquire` on start, :meth:`release` on exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create or take over the file, lock it and write our pid.

        Raises AlreadyRunning when a live process holds the lock, OSError
        when the file cannot be created.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file (only if it is still ours) and drop the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
