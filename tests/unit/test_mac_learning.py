"""Tests for pyvswitchd.datapath.mac_learning (OVS's MAC learning table, fdb/*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyvswitchd.control.registry import (
    CommandContext,
    CommandError,
    CommandRegistry,
    OutputFormat,
)
from pyvswitchd.datapath.mac_learning import (
    DEFAULT_IDLE_TIME,
    DEFAULT_MAX_ENTRIES,
    MacLearning,
    format_mac,
    is_multicast,
    register_fdb_commands,
)
from pyvswitchd.observe.coverage import Coverage

# Replies of ovs-vswitchd 3.1 (see tests/golden/README.md).
CAPTURES = Path(__file__).resolve().parents[1] / "golden"

A = 0x5054_0000_0005
B = 0x5054_0000_0007
C = 0x5054_0000_0009
BROADCAST = 0xFFFF_FFFF_FFFF
MULTICAST = 0x0100_5E00_0001


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(**kwargs: int) -> tuple[FakeClock, Coverage, MacLearning]:
    clock = FakeClock()
    coverage = Coverage(clock)
    return clock, coverage, MacLearning(clock, coverage, **kwargs)


def total(coverage: Coverage, name: str) -> int:
    counter = coverage.get(name)
    assert counter is not None
    return counter.total


def mac(i: int) -> int:
    return 0x0200_0000_0000 + i


# -- helpers ---------------------------------------------------------------------


def test_mac_helpers() -> None:
    assert format_mac(A) == "50:54:00:00:00:05"
    assert format_mac(0x0A0B0C0D0E0F) == "0a:0b:0c:0d:0e:0f"
    assert is_multicast(BROADCAST) and is_multicast(MULTICAST)
    assert not is_multicast(A)
    # The I/G bit is in the first octet, not the last.
    assert not is_multicast(0x0200_0000_0001)


# -- learning ----------------------------------------------------------------------


def test_learn_new_refresh_and_move() -> None:
    clock, coverage, ml = make()
    assert ml.generation == 0
    assert ml.learn(0, A, 1) is True
    assert ml.lookup(0, A) == 1
    assert ml.generation == 1
    assert total(coverage, "mac_learning_learned") == 1

    # Same port again: refresh only, forwarding unchanged, generation kept.
    clock.now += 10
    assert ml.learn(0, A, 1) is False
    assert ml.generation == 1
    entry = ml.get(0, A)
    assert entry is not None and ml.age(entry) == 0

    # Another port: a move.
    clock.now += 4
    assert ml.learn(0, A, 2) is True
    assert ml.lookup(0, A) == 2
    assert ml.generation == 2
    assert total(coverage, "mac_learning_moved") == 1
    assert total(coverage, "mac_learning_learned") == 1
    assert len(ml) == 1


def test_multicast_sources_never_learned_and_never_looked_up() -> None:
    _, coverage, ml = make()
    assert ml.learn(0, BROADCAST, 1) is False
    assert ml.learn(0, MULTICAST, 1) is False
    assert len(ml) == 0
    assert ml.generation == 0
    assert total(coverage, "mac_learning_learned") == 0
    assert ml.lookup(0, BROADCAST) is None


def test_vlans_are_separate_tables() -> None:
    _, _, ml = make()
    ml.learn(10, A, 1)
    ml.learn(20, A, 2)
    assert ml.lookup(10, A) == 1
    assert ml.lookup(20, A) == 2
    assert ml.lookup(0, A) is None
    assert len(ml) == 2


def test_entries_are_listed_least_recently_learned_first() -> None:
    clock, _, ml = make()
    for i, m in enumerate((A, B, C)):
        clock.now += 1
        ml.learn(0, m, i + 1)
    clock.now += 1
    ml.learn(0, A, 1)  # refresh moves A to the young end
    assert [e.mac for e in ml.entries()] == [B, C, A]


# -- aging ---------------------------------------------------------------------------


def test_entries_expire_after_the_aging_time() -> None:
    clock, coverage, ml = make()
    assert ml.idle_time == DEFAULT_IDLE_TIME == 300
    ml.learn(0, A, 1)
    clock.now += 100
    ml.learn(0, B, 2)
    generation = ml.generation
    assert ml.next_expiry() == clock.now - 100 + 300

    clock.now += 199.5  # A is 299.5 s old
    assert ml.expire() == []
    assert ml.generation == generation

    clock.now += 0.5  # A is exactly 300 s old: due, as in OVS (now >= expires)
    removed = ml.expire()
    assert [(e.vlan, e.mac, e.port) for e in removed] == [(0, A, 1)]
    assert ml.lookup(0, A) is None
    assert ml.lookup(0, B) == 2
    assert ml.generation > generation
    assert total(coverage, "mac_learning_expired") == 1

    clock.now += 100
    assert [e.mac for e in ml.expire()] == [B]
    assert len(ml) == 0
    assert ml.next_expiry() is None
    assert total(coverage, "mac_learning_expired") == 2


def test_relearning_postpones_expiry() -> None:
    clock, _, ml = make()
    ml.learn(0, A, 1)
    clock.now += 250
    ml.learn(0, A, 1)
    clock.now += 250  # 500 s after first seen, 250 s after last seen
    assert ml.expire() == []
    assert ml.lookup(0, A) == 1


def test_aging_time_is_clamped_and_changes_apply_to_existing_entries() -> None:
    clock, _, ml = make(idle_time=5)
    assert ml.idle_time == 15
    ml.set_idle_time(10**6)
    assert ml.idle_time == 3600
    ml.set_idle_time(60)
    ml.learn(0, A, 1)
    clock.now += 30
    ml.learn(0, B, 1)
    clock.now += 10
    ml.set_idle_time(20)  # A (40 s) and B (10 s) keep their ages
    assert [e.mac for e in ml.expire()] == [A]
    assert ml.lookup(0, B) == 1


# -- size limit ------------------------------------------------------------------------


def test_full_table_evicts_the_oldest_entry() -> None:
    clock, coverage, ml = make(max_entries=10)
    assert ml.max_entries == 10
    for i in range(10):
        clock.now += 1
        ml.learn(0, mac(i), 1)
    generation = ml.generation
    ml.learn(0, mac(0), 1)  # refresh: mac(1) is now the oldest
    assert ml.learn(0, mac(100), 1) is True
    assert len(ml) == 10
    assert ml.lookup(0, mac(1)) is None
    assert ml.lookup(0, mac(0)) == 1
    assert ml.lookup(0, mac(100)) == 1
    assert total(coverage, "mac_learning_evicted") == 1
    assert total(coverage, "mac_learning_expired") == 0
    assert ml.generation > generation


def test_eviction_is_fair_between_ports() -> None:
    # OVS evicts from the port holding the most entries, even when another
    # port holds the globally oldest one.
    clock, _, ml = make(max_entries=10)
    for i in range(3):
        clock.now += 1
        ml.learn(0, mac(i), 2)
    for i in range(3, 10):
        clock.now += 1
        ml.learn(0, mac(i), 1)
    ml.learn(0, mac(100), 3)
    assert ml.lookup(0, mac(3)) is None  # port 1's oldest
    assert all(ml.lookup(0, mac(i)) == 2 for i in range(3))


def test_eviction_tie_takes_the_older_port_entry() -> None:
    clock, _, ml = make(max_entries=10)
    for i in range(10):
        clock.now += 1
        ml.learn(0, mac(i), 1 + i % 2)  # 5 each; port 1 holds mac(0)
    ml.learn(0, mac(100), 1)
    assert ml.lookup(0, mac(0)) is None
    assert ml.lookup(0, mac(1)) == 2


def test_table_size_is_clamped_and_shrinking_trims_on_expire() -> None:
    clock, coverage, ml = make(max_entries=1)
    assert ml.max_entries == 10
    ml.set_max_entries(10**9)
    assert ml.max_entries == 1_000_000
    assert DEFAULT_MAX_ENTRIES == 8192
    for i in range(15):
        clock.now += 1
        ml.learn(0, mac(i), 1)
    ml.set_max_entries(10)
    assert ml.next_expiry() == clock.now
    removed = ml.expire()
    assert [e.mac for e in removed] == [mac(i) for i in range(5)]
    assert len(ml) == 10
    # OVS counts trimming as expiry, not eviction.
    assert total(coverage, "mac_learning_expired") == 5
    assert total(coverage, "mac_learning_evicted") == 0


# -- flushing --------------------------------------------------------------------------


def test_flush_and_flush_port() -> None:
    _, coverage, ml = make()
    assert ml.flush() == 0
    assert ml.generation == 0  # nothing changed
    ml.learn(0, A, 1)
    ml.learn(0, B, 2)
    ml.learn(10, C, 1)
    generation = ml.generation
    assert ml.flush_port(3) == 0
    assert ml.generation == generation
    assert ml.flush_port(1) == 2
    assert ml.generation > generation
    assert ml.lookup(0, A) is None and ml.lookup(10, C) is None
    assert ml.lookup(0, B) == 2
    generation = ml.generation
    assert ml.flush() == 1
    assert ml.generation > generation
    assert len(ml) == 0
    assert total(coverage, "mac_learning_expired") == 0
    # The per-port bookkeeping is consistent after a flush.
    ml.learn(0, A, 1)
    assert ml.flush_port(1) == 1


# -- fdb/show and fdb/flush --------------------------------------------------------------


def setup_commands() -> tuple[FakeClock, CommandRegistry, dict[str, MacLearning]]:
    clock = FakeClock()
    coverage = Coverage(clock)
    bridges = {"br0": MacLearning(clock, coverage), "br1": MacLearning(clock, coverage)}
    registry = CommandRegistry()
    register_fdb_commands(
        registry, lambda: bridges, lambda port: "LOCAL" if port == 100 else str(port)
    )
    return clock, registry, bridges


async def run(
    registry: CommandRegistry, *args: str, fmt: OutputFormat = OutputFormat.TEXT
) -> tuple[str, object]:
    reply = await registry.invoke(CommandContext(args[0], fmt), list(args[1:]))
    return reply.text, reply.data


def test_usages_match_ovs() -> None:
    _, registry, _ = setup_commands()
    listed = (CAPTURES / "list-commands.out").read_text().splitlines()
    for name in ("fdb/show", "fdb/flush"):
        command = registry.get(name)
        assert command is not None
        assert f"  {name:<23} {command.usage}" in listed
    flush = registry.get("fdb/flush")
    assert flush is not None and flush.mutating


async def test_fdb_show_layout() -> None:
    clock, registry, bridges = setup_commands()
    text, _ = await run(registry, "fdb/show", "br0")
    assert text == " port  VLAN  MAC                Age\n"

    br0 = bridges["br0"]
    br0.learn(0, A, 1)
    clock.now += 3.7
    br0.learn(10, B, 100)
    br0.learn(4094, C, 12345)
    clock.now += 125
    text, data = await run(registry, "fdb/show", "br0")
    assert text == (
        " port  VLAN  MAC                Age\n"
        "    1     0  50:54:00:00:00:05  128\n"
        "LOCAL    10  50:54:00:00:00:07  125\n"
        "12345  4094  50:54:00:00:00:09  125\n"
    )
    assert data == {
        "br0": [
            {"port": 1, "vlan": 0, "mac": "50:54:00:00:00:05", "age": 128},
            {"port": 100, "vlan": 10, "mac": "50:54:00:00:00:07", "age": 125},
            {"port": 12345, "vlan": 4094, "mac": "50:54:00:00:00:09", "age": 125},
        ]
    }
    # %3d pads small ages; other bridges are not shown.
    bridges["br1"].learn(0, A, 2)
    text, _ = await run(registry, "fdb/show", "br1")
    assert text.splitlines()[1] == "    2     0  50:54:00:00:00:05    0"


async def test_fdb_show_errors() -> None:
    _, registry, _ = setup_commands()
    with pytest.raises(CommandError, match=r"^no such bridge$"):
        await run(registry, "fdb/show", "br9")
    with pytest.raises(CommandError, match="requires at least 1 arguments"):
        await run(registry, "fdb/show")


async def test_fdb_flush_one_or_all_bridges() -> None:
    _, registry, bridges = setup_commands()
    bridges["br0"].learn(0, A, 1)
    bridges["br0"].learn(0, B, 2)
    bridges["br1"].learn(0, A, 1)
    text, data = await run(registry, "fdb/flush", "br0")
    assert text == "table successfully flushed"
    assert data == {"flushed": {"br0": 2}}
    assert len(bridges["br0"]) == 0 and len(bridges["br1"]) == 1

    bridges["br0"].learn(0, C, 3)
    text, data = await run(registry, "fdb/flush")
    assert text == "table successfully flushed"
    assert data == {"flushed": {"br0": 1, "br1": 1}}
    assert len(bridges["br0"]) == 0 and len(bridges["br1"]) == 0

    with pytest.raises(CommandError, match=r"^no such bridge$"):
        await run(registry, "fdb/flush", "nope")
