"""Control-socket slots: per-user cap, administrators' reserve, idle reclaim."""

from __future__ import annotations

import pytest

from pyvswitchd.control.slots import Refused, Slot, SlotTable

ADMIN, USER = True, False


def table() -> SlotTable:
    return SlotTable(max_total=10, reserved=3, per_uid=4, idle_timeout=10.0)


def slot(uid: int, admin: bool, now: float = 0.0) -> Slot:
    return Slot(f"c{uid}", uid, admin, now)


def test_one_user_cannot_take_more_than_its_share() -> None:
    t = table()
    for _ in range(4):
        t.admit(slot(1000, USER), 0.0)
    with pytest.raises(Refused, match="uid 1000 already has 4 connections"):
        t.admit(slot(1000, USER), 1.0)
    t.admit(slot(1001, USER), 1.0)  # another user still gets in
    t.admit(slot(0, ADMIN), 1.0)


def test_reserved_slots_are_for_administrators_only() -> None:
    t = table()
    for uid in (1000, 1000, 1000, 1000, 1001, 1001, 1001):
        t.admit(slot(uid, USER), 0.0)
    with pytest.raises(Refused, match="7 connections of non-administrators already open"):
        t.admit(slot(1002, USER), 1.0)
    for _ in range(3):
        t.admit(slot(0, ADMIN), 1.0)
    with pytest.raises(Refused, match="10 connections already open"):
        t.admit(slot(0, ADMIN), 1.0)


def test_administrators_are_not_capped_per_uid() -> None:
    t = table()
    for _ in range(10):
        t.admit(slot(0, ADMIN), 0.0)
    assert len(t) == 10


def test_idle_connections_make_room_when_slots_run_short() -> None:
    t = table()
    mine = [slot(1000, USER, now=float(i)) for i in range(4)]
    for s in mine:
        t.admit(s, s.since)
    mine[0].busy = 1  # oldest, but a request is in progress: never reclaimed
    with pytest.raises(Refused):
        t.admit(slot(1000, USER), 9.5)  # nobody idle for 10 s yet
    victim = t.admit(slot(1000, USER, now=12.0), 12.0)
    assert victim is mine[1]  # the idlest one that is not busy
    assert len(t) == 4
    # A request resets the idle time.
    mine[2].last_request = 11.5
    assert t.admit(slot(1000, USER, now=13.5), 13.5) is mine[3]


def test_reclaim_takes_users_before_administrators() -> None:
    t = table()
    admins = [slot(0, ADMIN) for _ in range(5)]
    users = [slot(1000 + i, USER, now=5.0) for i in range(5)]
    for s in [*admins, *users]:
        t.admit(s, s.since)
    victim = t.admit(slot(0, ADMIN, now=20.0), 20.0)
    assert victim in users  # the admins' connections are idler, but users go first


def test_rules_reclaim_only_what_they_count() -> None:
    # A user's new connection never takes an administrator's slot...
    t = table()
    for s in [slot(0, ADMIN) for _ in range(3)]:
        t.admit(s, 0.0)
    busy_users = [slot(1000, USER) for _ in range(4)] + [slot(1001, USER) for _ in range(3)]
    for s in busy_users:
        t.admit(s, 0.0)
        s.busy = 1
    with pytest.raises(Refused, match="non-administrators"):
        t.admit(slot(1002, USER), 100.0)
    # ...nor, over its own cap, another user's idle connection.
    t = SlotTable(max_total=20, reserved=3, per_uid=4, idle_timeout=10.0)
    for _ in range(4):
        t.admit(slot(1000, USER), 0.0)
    for _ in range(4):
        t.admit(s := slot(1001, USER), 0.0)
        s.busy = 1
    with pytest.raises(Refused, match="uid 1001 already has 4"):
        t.admit(slot(1001, USER), 100.0)


def test_release_is_idempotent() -> None:
    t = table()
    s = slot(1000, USER)
    t.admit(s, 0.0)
    t.release(s)
    t.release(s)
    assert len(t) == 0
    for _ in range(4):
        t.admit(slot(1000, USER), 0.0)
