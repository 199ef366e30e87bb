"""Tests for pyvswitchd.observe.coverage (OVS coverage counters)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from pyvswitchd.control.registry import CommandContext, CommandError, CommandRegistry
from pyvswitchd.observe.coverage import RING_SLOTS, Counter, Coverage

# ovs-vswitchd 3.1's coverage replies (see tests/golden/README.md).
CAPTURES = Path(__file__).resolve().parents[1] / "golden" / "coverage"

HEADER_RE = re.compile(
    r"Event coverage, avg rate over last: 5 seconds, last minute, last hour,  "
    r"hash=[0-9a-f]{8}:"
)


def fixed(width: int, decimals: int) -> str:
    """Regex for C's ``%<width>.<decimals>f`` of a non-negative number."""
    int_width = width - decimals - 1
    padded = [" " * (int_width - 1) + r"\d"]
    padded += [" " * (int_width - k) + rf"[1-9]\d{{{k - 1}}}" for k in range(2, int_width + 1)]
    wider = rf"[1-9]\d{{{int_width},}}"
    return f"(?:{'|'.join(padded)}|{wider})\\.\\d{{{decimals}}}"


# %-24s: padded to 24 columns, or longer and unpadded.
LINE_RE = re.compile(
    rf"(?P<name>(?=.{{24}})\S+ *) (?P<r5>{fixed(5, 1)})/sec (?P<r1m>{fixed(9, 3)})/sec "
    rf"(?P<r1h>{fixed(13, 4)})/sec   total: (?P<total>[1-9]\d*)"
)
FOOTER_RE = re.compile(r"\d+ events never hit")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(names: list[str] | None = None) -> tuple[FakeClock, Coverage]:
    clock = FakeClock()
    cov = Coverage(clock)
    for name in names or []:
        cov.define(name)
    return clock, cov


def tick(clock: FakeClock, cov: Coverage, seconds: float = 5.0) -> None:
    clock.now += seconds
    cov.run()


def check_shape(text: str) -> list[re.Match[str]]:
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text[:-1].split("\n")
    assert HEADER_RE.fullmatch(lines[0]), lines[0]
    assert FOOTER_RE.fullmatch(lines[-1]), lines[-1]
    matches = []
    for line in lines[1:-1]:
        m = LINE_RE.fullmatch(line)
        assert m, repr(line)
        name = m["name"]
        assert len(name) == 24 or (len(name) > 24 and not name.endswith(" ")), repr(line)
        matches.append(m)
    return matches


# -- registration ---------------------------------------------------------


def test_define_is_get_or_create_and_keeps_order() -> None:
    _, cov = make()
    b = cov.define("b_counter")
    a = cov.define("a_counter")
    assert cov.define("b_counter") is b
    assert [c.name for c in cov.counters()] == ["b_counter", "a_counter"]
    assert cov.get("a_counter") is a
    assert cov.get("nope") is None


def test_counter_inc_add_and_direct_update() -> None:
    c = Counter("x")
    c.inc()
    c.add(4)
    c.total += 10
    assert c.total == 15


def test_independent_registries() -> None:
    _, one = make(["x"])
    _, two = make()
    one.define("x").inc()
    assert two.get("x") is None


# -- coverage/show layout -------------------------------------------------


@pytest.mark.parametrize("capture", ["coverage_show.out", "coverage_show.final.out"])
def test_shape_regex_matches_real_ovs(capture: str) -> None:
    """The layout regexes used below accept what OVS 3.1 really printed."""
    matches = check_shape((CAPTURES / capture).read_text())
    assert len(matches) == 42


def test_show_lists_hit_counters_in_order_and_counts_never_hit() -> None:
    _, cov = make(["zeta", "alpha", "unused1", "mid", "unused2"])
    cov.define("mid").add(3)
    cov.define("zeta").inc()
    cov.define("alpha").add(7)
    matches = check_shape(cov.format_show())
    assert [m["name"].rstrip() for m in matches] == ["zeta", "alpha", "mid"]
    assert [int(m["total"]) for m in matches] == [1, 7, 3]
    assert cov.format_show().endswith("\n2 events never hit\n")


def test_show_empty_registry() -> None:
    _, cov = make()
    text = cov.format_show()
    check_shape(text)
    assert text.endswith(":\n0 events never hit\n")


def test_show_exact_text() -> None:
    clock, cov = make(["seq_change", "never", "util_xalloc", "a_name_longer_than_24_chars"])
    cov.define("seq_change").add(15016)
    cov.define("util_xalloc").add(977)
    cov.define("a_name_longer_than_24_chars").add(1)
    tick(clock, cov)
    h = cov.hash()
    assert cov.format_show() == (
        "Event coverage, avg rate over last: 5 seconds, last minute, last hour,  "
        f"hash={h:08x}:\n"
        "seq_change               3003.2/sec   250.267/sec        4.1711/sec   total: 15016\n"
        "util_xalloc              195.4/sec    16.283/sec        0.2714/sec   total: 977\n"
        "a_name_longer_than_24_chars   0.2/sec     0.017/sec        0.0003/sec   total: 1\n"
        "1 events never hit\n"
    )


def test_total_is_live_but_rates_wait_for_run() -> None:
    clock, cov = make(["x"])
    cov.define("x").add(50)
    m = check_shape(cov.format_show())[0]
    assert (float(m["r5"]), float(m["r1m"]), float(m["r1h"])) == (0, 0, 0)
    assert int(m["total"]) == 50
    clock.now += 4.999
    cov.run()
    assert cov.rates(cov.define("x")) == (0, 0, 0)
    tick(clock, cov, 0.001)
    assert cov.rates(cov.define("x")) == (10.0, 50 / 60, 50 / 3600)


# -- rate windows ---------------------------------------------------------


def test_rates_over_several_windows() -> None:
    clock, cov = make(["x"])
    x = cov.define("x")
    for n in (10, 20, 5):
        x.add(n)
        tick(clock, cov)
    assert x.minute_slots[:3] == [10, 20, 5]
    assert cov.rates(x) == (1.0, 35 / 60, 35 / 3600)
    tick(clock, cov)  # a quiet slot
    assert cov.rates(x) == (0.0, 35 / 60, 35 / 3600)


def test_gap_spreads_delta_with_remainder_in_last_slot() -> None:
    clock, cov = make(["x", "y"])
    x, y = cov.define("x"), cov.define("y")
    x.add(4)
    tick(clock, cov)
    x.add(23)
    y.add(2)
    # Due at +10 s; running at +22 s means floor(12 / 5) + 1 = 3 slots.
    tick(clock, cov, 17.0)
    assert x.minute_slots[:5] == [4, 7, 7, 9, 0]
    assert y.minute_slots[:5] == [0, 0, 0, 2, 0]
    assert cov.rates(x) == (9 / 5, 27 / 60, 27 / 3600)
    # The next run is due 5 s after the actual (late) run, not on the old grid.
    x.add(1)
    tick(clock, cov, 4.9)
    assert x.minute_slots[4] == 0
    tick(clock, cov, 0.1)
    assert x.minute_slots[4] == 1


def test_minute_window_forgets_after_twelve_slots() -> None:
    clock, cov = make(["x"])
    x = cov.define("x")
    x.add(120)
    tick(clock, cov)
    for _ in range(11):
        tick(clock, cov)
    assert cov.rates(x)[1] == 2.0
    tick(clock, cov)
    assert cov.rates(x)[1] == 0.0
    assert cov.rates(x)[2] == 120 / 3600


def test_hour_column_includes_current_partial_minute() -> None:
    """As in coverage_show.out, minute and hour sums agree during the first minute."""
    clock, cov = make(["x"])
    x = cov.define("x")
    for n in (3, 5, 7):
        x.add(n)
        tick(clock, cov)
    assert x.hour_slots[0] == 15
    assert sum(x.minute_slots) * 60 == sum(x.hour_slots) * 60 == 15 * 60
    # Across a minute boundary the hour keeps the finished minute plus the new one.
    for _ in range(9):
        tick(clock, cov)
    x.add(2)
    tick(clock, cov)
    assert x.hour_slots[:2] == [15, 2]
    # The minute window slides: it still holds the 5 and 7 from slots 1 and 2.
    assert cov.rates(x) == (2 / 5, 14 / 60, 17 / 3600)


def test_hour_slot_is_reset_when_its_minute_comes_round_again() -> None:
    clock, cov = make(["x"])
    x = cov.define("x")
    x.add(100)
    tick(clock, cov)
    for _ in range(RING_SLOTS - 1):
        tick(clock, cov)
    assert x.hour_slots[0] == 100
    x.add(1)
    tick(clock, cov)
    assert x.hour_slots[0] == 1
    assert cov.rates(x) == (1 / 5, 1 / 60, 1 / 3600)


def reference_spread(
    minute: list[int], hour: list[int], delta: int, elapsed: int, start: int
) -> None:
    """The slot maths written out naively, slot by slot, for comparison."""
    for j in range(elapsed):
        pos = (start + j) % RING_SLOTS
        count = delta // elapsed + (delta % elapsed if j == elapsed - 1 else 0)
        minute[pos % 12] = count
        hour[pos // 12] = count if pos % 12 == 0 else hour[pos // 12] + count


@pytest.mark.parametrize(
    ("warmup", "gap_slots"),
    [(0, 1), (5, 3), (7, 13), (3, RING_SLOTS - 1), (7, RING_SLOTS + 5), (11, 3 * RING_SLOTS + 7)],
)
def test_long_gap_matches_slot_by_slot_reference(warmup: int, gap_slots: int) -> None:
    clock, cov = make(["x"])
    x = cov.define("x")
    minute, hour = [0] * 12, [0] * 60
    pos = 0
    for i in range(warmup):
        x.add(i + 1)
        reference_spread(minute, hour, i + 1, 1, pos)
        pos += 1
        tick(clock, cov)
    x.add(100003)
    reference_spread(minute, hour, 100003, gap_slots, pos)
    tick(clock, cov, 5.0 * gap_slots)
    assert (x.minute_slots, x.hour_slots) == (minute, hour)


def test_run_before_due_is_a_no_op() -> None:
    clock, cov = make(["x"])
    x = cov.define("x")
    x.add(5)
    due = cov.next_run_time
    clock.now = due - 0.5
    cov.run()
    assert cov.next_run_time == due and x.last_total == 0


# -- hash -----------------------------------------------------------------


def test_hash_stable_for_equal_states_and_in_header() -> None:
    _, one = make(["a", "b", "c"])
    _, two = make(["c", "b", "a"])  # definition order does not matter
    for cov in (one, two):
        cov.define("a").add(5)
        cov.define("b").add(5)
        cov.define("c").add(1)
    assert one.hash() == two.hash()
    assert one.format_show().startswith(
        "Event coverage, avg rate over last: 5 seconds, last minute, last hour,  "
        f"hash={one.hash():08x}:\n"
    )
    assert one.show_data()["hash"] == f"{one.hash():08x}"


def test_hash_changes_with_ranking() -> None:
    _, cov = make(["a", "b", "c", "d"])
    seen = {cov.hash()}
    cov.define("a").add(5)
    seen.add(cov.hash())
    cov.define("b").add(5)  # joins a's group
    seen.add(cov.hash())
    cov.define("a").add(1)  # same order as the tie, but two groups now
    seen.add(cov.hash())
    cov.define("b").add(2)  # overtakes a
    seen.add(cov.hash())
    cov.define("c").add(1)  # new group at the bottom
    seen.add(cov.hash())
    cov.define("d").add(1)  # c and d now tie
    seen.add(cov.hash())
    assert len(seen) == 7
    assert all(0 <= h < 2**32 for h in seen)


def test_hash_ignores_totals_when_ranking_is_unchanged() -> None:
    """OVS's hash fingerprints the ranking only, so repeated dumps dedupe."""
    _, cov = make(["a", "b"])
    cov.define("a").add(10)
    cov.define("b").add(3)
    before = cov.hash()
    cov.define("a").add(100)
    assert cov.hash() == before


# -- commands -------------------------------------------------------------


def registry_for(cov: Coverage) -> CommandRegistry:
    registry = CommandRegistry()
    cov.register_commands(registry)
    return registry


def first_err_line(name: str) -> str:
    return (CAPTURES / f"coverage_read-counter.{name}.err").read_text().split("\n")[0]


async def test_read_counter() -> None:
    _, cov = make(["unixctl_received"])
    registry = registry_for(cov)
    ctx = CommandContext(name="coverage/read-counter")
    assert (await registry.invoke(ctx, ["unixctl_received"])).text == "0\n"
    cov.define("unixctl_received").total += 91  # visible without any run()
    assert (await registry.invoke(ctx, ["unixctl_received"])).text == "91\n"
    assert (await registry.invoke(ctx, ["unixctl_received"])).text == (
        CAPTURES / "coverage_read-counter.out"
    ).read_text()


@pytest.mark.parametrize(
    ("capture", "args"),
    [
        ("unknown-counter", ["no_such_counter"]),
        ("no-args", []),
        ("too-many-args", ["a", "b"]),
    ],
)
async def test_read_counter_errors_match_ovs(capture: str, args: list[str]) -> None:
    _, cov = make(["a"])
    registry = registry_for(cov)
    with pytest.raises(CommandError) as exc:
        await registry.invoke(CommandContext(name="coverage/read-counter"), args)
    assert str(exc.value) == first_err_line(capture)


async def test_show_command_text_and_json() -> None:
    clock, cov = make(["a", "b"])
    cov.define("b").add(10)
    tick(clock, cov)
    registry = registry_for(cov)
    command = registry.get("coverage/show")
    assert command is not None and command.usage == "" and command.max_args == 0
    read = registry.get("coverage/read-counter")
    assert read is not None and read.usage == "COUNTER"
    reply = await registry.invoke(CommandContext(name="coverage/show"), [])
    assert reply.text == cov.format_show()
    assert reply.has_data
    assert reply.data == {
        "hash": f"{cov.hash():08x}",
        "counters": [
            {"name": "b", "total": 10, "rate_5s": 2.0, "rate_1m": 10 / 60, "rate_1h": 10 / 3600}
        ],
        "never_hit": 1,
    }
    with pytest.raises(CommandError, match="takes at most 0 arguments"):
        await registry.invoke(CommandContext(name="coverage/show"), ["x"])


# -- periodic task --------------------------------------------------------


async def test_run_periodically_runs_every_five_seconds(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cov = Coverage(clock=trio.current_time)
    start = trio.current_time()
    x = cov.define("x")
    did_work: list[float] = []
    real_run = cov.run

    def recording_run() -> None:
        before = cov.next_run_time
        real_run()
        if cov.next_run_time != before:
            did_work.append(trio.current_time() - start)

    monkeypatch.setattr(cov, "run", recording_run)
    async with trio.open_nursery() as nursery:
        await nursery.start(cov.run_periodically)
        x.add(10)
        await trio.sleep(6)
        assert cov.rates(x)[0] == 2.0
        x.add(35)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert did_work == pytest.approx([5.0, 10.0, 15.0, 20.0, 25.0])
    assert x.minute_slots[:5] == [10, 35, 0, 0, 0]
