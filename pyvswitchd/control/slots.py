"""Connection slots of the control socket: who may hold how many.

A connection costs a descriptor and a task, so the server holds a bounded
number.  A single bound let any user who can open the socket (read-only
access is enough) take every slot with idle connections and lock everyone
out, root included.  Every connection's peer is known (SO_PEERCRED), so the
slots are shared by user instead.  Rules, checked when a connection arrives:

* at most ``max_total`` connections (512) in all;
* ``reserved`` of them (64) only for administrators (root, the daemon's own
  user, members of ``[daemon] admin-group``): the other users together hold
  at most ``max_total - reserved``;
* a user who is not an administrator holds at most ``per_uid`` (32).

When a rule would refuse the connection, the connection that rule counts
which has gone longest without a complete request is closed to make room,
if it has been idle for at least ``idle_timeout`` (10 s) and has no request
in progress.  Otherwise the new connection is refused (closed on accept).
Idle connections are never closed while slots are plentiful: a client may
keep one open as long as it likes.
"""

from __future__ import annotations

from collections import Counter

import attrs
import trio

from .registry import PeerCredentials

#: Connections served at once.
MAX_CONNECTIONS = 512
#: Slots only administrators may take.
RESERVED_FOR_ADMINS = 64
#: Connections one non-administrator user may hold.
MAX_PER_UID = 32
#: Seconds without a complete request after which a connection may be
#: closed to make room for a new one.
IDLE_TIMEOUT = 10.0


@attrs.define(eq=False)
class Slot:
    """One connection's claim.  ``uid`` is None when the peer is unknown."""

    name: str
    uid: int | None
    admin: bool
    since: float
    peer: PeerCredentials | None = None
    #: Cancelled to close the connection when its slot is reclaimed.
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    #: When the last complete request arrived (or the connection, before any).
    last_request: float = 0.0
    #: Requests being handled or answered (not idle while > 0).
    busy: int = 0

    def __attrs_post_init__(self) -> None:
        self.last_request = self.since

    def idle_for(self, now: float) -> float:
        return 0.0 if self.busy else now - self.last_request


class Refused(Exception):
    """No slot for the new connection; ``str(exc)`` says which rule."""


class SlotTable:
    """The slots of one server; all times are ``trio.current_time()`` seconds."""

    def __init__(
        self,
        *,
        max_total: int = MAX_CONNECTIONS,
        reserved: int = RESERVED_FOR_ADMINS,
        per_uid: int = MAX_PER_UID,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if not 0 <= reserved <= max_total or per_uid < 1:
            raise ValueError("bad slot limits")
        self.max_total = max_total
        self.reserved = reserved
        self.per_uid = per_uid
        self.idle_timeout = idle_timeout
        self._slots: list[Slot] = []
        self._per_user: Counter[int | None] = Counter()  # non-administrators only
        self._users = 0  # connections of non-administrators

    def __len__(self) -> int:
        return len(self._slots)

    def admit(self, new: Slot, now: float) -> Slot | None:
        """Take a slot for ``new``.

        Returns the idle connection to close to make room (already released
        here), or None.  Raises Refused when there is no room.
        """
        group = None
        if not new.admin and self._per_user[new.uid] >= self.per_uid:
            group, why = "uid", f"uid {new.uid} already has {self.per_uid} connections"
        elif not new.admin and self._users >= self.max_total - self.reserved:
            n = self.max_total - self.reserved
            group, why = "users", f"{n} connections of non-administrators already open"
        elif len(self._slots) >= self.max_total:
            group, why = "all", f"{self.max_total} connections already open"
        victim = None
        if group is not None:
            victim = self._idlest(new, group, now)
            if victim is None:
                raise Refused(why)
            self.release(victim)
        self._slots.append(new)
        if not new.admin:
            self._per_user[new.uid] += 1
            self._users += 1
        return victim

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back (idempotent)."""
        try:
            self._slots.remove(slot)
        except ValueError:
            return
        if not slot.admin:
            self._per_user[slot.uid] -= 1
            if not self._per_user[slot.uid]:
                del self._per_user[slot.uid]
            self._users -= 1

    def _idlest(self, new: Slot, group: str, now: float) -> Slot | None:
        # Only reached when slots run short, so a linear scan is fine.
        best: Slot | None = None
        best_key: tuple[bool, float] | None = None  # users' connections first, then the idlest
        for slot in self._slots:
            if group == "uid" and (slot.admin or slot.uid != new.uid):
                continue
            if group == "users" and slot.admin:
                continue
            idle = slot.idle_for(now)
            if idle < self.idle_timeout:
                continue
            key = (slot.admin, -idle)
            if best_key is None or key < best_key:
                best, best_key = slot, key
        return best
