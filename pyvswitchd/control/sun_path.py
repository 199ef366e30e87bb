"""Unix socket paths longer than ``sun_path`` holds, reached through /proc/self/fd.

``sockaddr_un.sun_path`` has room for 107 bytes and a NUL; a longer path
cannot be bound or connected to as it is, and a run directory deep in a
build tree or a container's overlay easily makes the control socket's path
longer.  Linux lets a path go through an open descriptor of its directory
instead: ``/proc/self/fd/N/NAME`` names the same file in a few dozen bytes.
OVS binds and connects such paths the same way.  The daemon binds through
it and ``pyappctl`` connects through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

#: Longest path sun_path holds (108 bytes with the terminating NUL).
SUN_PATH_MAX = 107


@contextlib.contextmanager
def unix_address(path: str) -> Iterator[str]:
    """``path`` itself, or when it is too long, a short alias valid inside the block.

    Raises OSError (ENAMETOOLONG) when even the alias is too long: the
    file name alone leaves no room for ``/proc/self/fd/N/``.
    """
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield path
        return
    directory, name = os.path.split(path)
    dirfd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        alias = f"/proc/self/fd/{dirfd}/{name}"
        if len(os.fsencode(alias)) > SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, f"socket name too long even via /proc: {name}")
        yield alias
    finally:
        os.close(dirfd)
