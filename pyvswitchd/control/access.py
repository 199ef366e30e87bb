"""Who may change the daemon through its control socket.

OVS relies on the socket's file mode alone: whoever can connect can run
anything.  Here every connection's peer is known (SO_PEERCRED), and commands
are marked mutating when registered; a mutating command runs only for root,
the daemon's own user, or members of the configured admin group.  Read-only
commands stay open to everyone the socket's mode admits, so monitoring
users need no privileges.  Refusals are logged (rate-limited) and counted.
"""

from __future__ import annotations

import grp
import os

from ..observe.coverage import Coverage
from ..observe.ratelimit import RateLimit
from ..observe.vlog import Vlog
from .registry import CommandContext, CommandRegistry


def group_id(name: str | None) -> int | None:
    """The gid of group ``name`` (None: no group); KeyError if it does not exist."""
    if name is None:
        return None
    return grp.getgrnam(name).gr_gid


def _supplementary_groups(pid: int) -> set[int]:
    # The peer's groups are only in /proc; a vanished peer simply has none.
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


class AccessPolicy:
    """Decides per request; plug :meth:`authorize` into the unixctl server."""

    def __init__(
        self, registry: CommandRegistry, vlog: Vlog, coverage: Coverage, admin_gid: int | None
    ) -> None:
        self._registry = registry
        self._log = vlog.module("unixctl")
        self._rl = RateLimit(5, 5)
        self._refused = coverage.define("unixctl_refused")
        self.admin_gid = admin_gid
        self.refusals = 0

    def allowed(self, uid: int, gid: int, pid: int) -> bool:
        if uid in (0, os.getuid()):
            return True
        if self.admin_gid is None:
            return False
        return gid == self.admin_gid or self.admin_gid in _supplementary_groups(pid)

    def authorize(self, context: CommandContext) -> str | None:
        """None to allow, or the error text of the refusal."""
        command = self._registry.get(context.name)
        if command is None or not command.mutating:
            return None  # unknown commands get their usual error; read-only is open
        peer = context.peer
        if peer is not None and self.allowed(peer.uid, peer.gid, peer.pid):
            return None
        self.refusals += 1
        self._refused.inc()
        who = f"uid {peer.uid} (pid {peer.pid})" if peer is not None else "an unknown peer"
        self._log.warn(f'refused "{context.name}" from {who}: not an administrator', rl=self._rl)
        return (
            f'"{context.name}" changes the daemon: permission denied '
            "(allowed: root, the daemon's user, members of [daemon] admin-group)"
        )
