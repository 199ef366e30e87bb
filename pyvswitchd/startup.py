"""Why the daemon could not start, and what to do about it, in one line.

A service manager shows the last line a failed daemon printed; a traceback
there tells an operator nothing they can act on.  Each function here turns
the system's error for one start-up step into ``CAUSE: FIX``: what the
daemon was doing, the system's reason, and the change that makes the next
start work.  The command line prints it as ``pyvswitchd: ...`` and exits 1.
"""

from __future__ import annotations

import errno
import os


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def log_file_failure(path: str, exc: OSError) -> str:
    """``--log-file PATH`` could not be opened for appending."""
    directory = os.path.dirname(path) or "."
    head = f"--log-file {path}: cannot open: {_reason(exc)}"
    if exc.errno == errno.ENOENT:
        return (
            f"{head}: directory {directory} does not exist; create it (under systemd, "
            "LogsDirectory= does) or give --log-file a path in an existing directory"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"{head}: the daemon's user may not write there; give it write access to "
            f"{directory} or give --log-file another path"
        )
    return f"{head}: give --log-file another path"


def rundir_failure(rundir: str, exc: OSError) -> str:
    """The run directory (or the pidfile in it) could not be created."""
    head = f"run directory {rundir}: {_reason(exc)}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"{head}: run as a user that may write there (under systemd, RuntimeDirectory= "
            "creates it for the service's user) or choose another with --rundir or "
            "$PYVSWITCH_RUNDIR"
        )
    return f"{head}: choose another with --rundir or $PYVSWITCH_RUNDIR"


def control_socket_failure(path: str, exc: OSError, *, given: bool, rundir: str) -> str:
    """The control socket could not be created at ``path``.

    ``given``: the path came from ``--unixctl`` (else it is the run
    directory's default name).
    """
    what = f"--unixctl {path}" if given else f"control socket {path}"
    directory = os.path.dirname(path) or "."
    where = (
        f"give --unixctl a path in an existing directory (a relative one is taken inside {rundir})"
        if given
        else "choose another run directory with --rundir"
    )
    if exc.errno == errno.ENOENT:
        return f"{what}: directory {directory} does not exist; create it or {where}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"{what}: cannot create: {_reason(exc)}; give the daemon's user write access "
            f"to {directory} or {where}"
        )
    if exc.errno in (errno.EADDRINUSE, errno.EEXIST):
        return f"{what}: {_reason(exc)}; stop that process or {where}"
    return f"{what}: cannot create: {_reason(exc)}; {where}"


def socket_group_failure(path: str, group: str, exc: OSError) -> str:
    """The bound control socket could not be given ``[daemon] ctl-group``."""
    return (
        f'daemon:ctl-group "{group}": cannot give the control socket {path} to group '
        f"{group}: {_reason(exc)}; the daemon's user must be a member of {group} "
        f"(under systemd: SupplementaryGroups={group}) or hold CAP_CHOWN, or remove "
        "ctl-group from the configuration"
    )


def metrics_failure(address: str, exc: OSError, *, origin: str) -> str:
    """The Prometheus listener could not be bound; ``origin`` says who asked for it."""
    port = address.rpartition(":")[2]
    head = f"{origin} {address}: cannot listen: {_reason(exc)}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{head}; another program holds port {port} (ss -ltnp 'sport = :{port}' names "
            f'it): stop it, or choose another address with {origin} ("none" turns '
            "metrics off)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{head}; ports below 1024 need CAP_NET_BIND_SERVICE: choose a higher port"
    return f'{head}; choose another address with {origin} ("none" turns metrics off)'
