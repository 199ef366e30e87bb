"""Tests for pyvswitchd.observe.vlog (OVS's vlog logging facility)."""

from __future__ import annotations

import io
import math
import os
import shlex
import socket
import stat
import syslog
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from pyvswitchd.control.registry import CommandContext, CommandError, CommandRegistry
from pyvswitchd.observe.vlog import Destination, Level, RateLimit, Vlog, VlogError
from pyvswitchd.observe.vlog_commands import format_levels, format_patterns, register_vlog_commands
from pyvswitchd.observe.vlog_pattern import compile_pattern, fill_fraction

# ovs-vswitchd 3.1's replies to a session of vlog/* commands (see tests/golden/README.md).
CAPTURES = Path(__file__).resolve().parents[1] / "golden" / "vlog"

# 2023-11-14T22:13:20.123Z
T0 = 1_700_000_000.123


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSyslog:
    """Stands in for Python's syslog module so tests never reach the host's."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int, int]] = []
        self.sent: list[tuple[int, str]] = []

    def openlog(self, ident: str, logoption: int, facility: int) -> None:
        self.opened.append((ident, logoption, facility))

    def syslog(self, priority: int, message: str) -> None:
        self.sent.append((priority, message))


@pytest.fixture(autouse=True)
def fake_syslog(monkeypatch: pytest.MonkeyPatch) -> FakeSyslog:
    fake = FakeSyslog()
    monkeypatch.setattr(syslog, "openlog", fake.openlog)
    monkeypatch.setattr(syslog, "syslog", fake.syslog)
    return fake


def make(
    *modules: str, method: str = "null", clock: FakeClock | None = None
) -> tuple[Vlog, io.StringIO, FakeClock]:
    clock = clock or FakeClock()
    console = io.StringIO()
    # Rotation is followed only where a test asks (log_check_interval), so
    # that a slow run cannot reopen a file behind a test's back.
    vlog = Vlog(
        "ovs-vswitchd",
        clock=clock,
        console=console,
        syslog_method=method,
        log_check_interval=math.inf,
    )
    for name in modules:
        vlog.module(name)
    return vlog, console, clock


def registry_for(vlog: Vlog) -> CommandRegistry:
    registry = CommandRegistry()
    register_vlog_commands(vlog, registry)
    return registry


async def call(registry: CommandRegistry, name: str, *args: str) -> str:
    return (await registry.invoke(CommandContext(name=name), list(args))).text


async def call_error(registry: CommandRegistry, name: str, *args: str) -> str:
    with pytest.raises(CommandError) as info:
        await registry.invoke(CommandContext(name=name), list(args))
    return str(info.value)


def lines(console: io.StringIO) -> list[str]:
    return console.getvalue().splitlines()


# -- golden replay of the OVS 3.1 captures ----------------------------------


def capture_modules() -> list[str]:
    rows = (CAPTURES / "vlog_list.out").read_text().splitlines()[2:]
    return [row.split()[0] for row in rows]


def index_rows() -> Iterator[tuple[str, int, list[str]]]:
    for row in (CAPTURES / "INDEX.tsv").read_text().splitlines():
        name, rc, command = row.split("\t")
        argv = shlex.split(command)
        if argv[:1] == ["ovs-appctl"] and len(argv) > 1 and argv[1].startswith("vlog/"):
            yield name, int(rc), argv[1:]


def ovs_like_vswitchd() -> Vlog:
    """A Vlog in the state of the captured ovs-vswitchd: OVS's modules,
    ``-vvconn -vofproto_dpif -vunixctl``, then console off by --detach."""
    vlog, _, _ = make(*capture_modules(), method="libc")
    for spec in ("vconn", "ofproto_dpif", "unixctl"):
        vlog.set_levels_from_string(spec)
    vlog.set_levels(Level.OFF, destination=Destination.CONSOLE)
    return vlog


def test_initial_list_matches_capture_exactly() -> None:
    vlog = ovs_like_vswitchd()
    assert format_levels(vlog) == (CAPTURES / "vlog_list.out").read_text()


async def test_replay_of_captured_vlog_session(fake_syslog: FakeSyslog) -> None:
    """Every vlog/* command of the capture session, in order: same success or
    error text, and byte-identical list / list-pattern replies."""
    vlog = ovs_like_vswitchd()
    registry = registry_for(vlog)
    checked = 0
    for name, rc, argv in index_rows():
        out_file, err_file = CAPTURES / f"{name}.out", CAPTURES / f"{name}.err"
        if rc == 0:
            reply = await call(registry, argv[0], *argv[1:])
            if out_file.exists():
                assert reply == out_file.read_text(), name
                checked += 1
        else:
            error = await call_error(registry, argv[0], *argv[1:])
            if err_file.exists():
                assert error == err_file.read_text().splitlines()[0], name
                checked += 1
    assert checked >= 15
    assert fake_syslog.sent == []  # vlog/set and vlog/list* log nothing


# -- vlog/set grammar ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("nosuchmodule:dbg", 'no destination, level, or module "nosuchmodule"'),
        ("dpif_netdev:loud", 'no destination, level, or module "loud"'),
        ("nowhere:dbg", 'no destination, level, or module "nowhere"'),
        ("PATTERN:", "missing destination"),
        ("pattern", "missing destination"),
        ("dpif_netdev:file:info:extra", 'no destination, level, or module "extra"'),
        ("console:%d %m", 'no destination, level, or module "%d"'),
        ("PATTERN:nowhere:%m", 'unknown destination "nowhere"'),
        ("console:file", "cannot specify multiple destinations"),
        ("info warn", "cannot specify multiple levels"),
        ("bfd,dpif_netdev", "cannot specify multiple modules"),
        ("FACILITY:bogus", "invalid facility"),
        ("FACILITY", "invalid facility"),
        ("FACILITY: local0", "invalid facility"),
    ],
)
def test_set_errors(spec: str, error: str) -> None:
    vlog, _, _ = make("bfd", "dpif_netdev")
    before = format_levels(vlog)
    with pytest.raises(VlogError) as info:
        vlog.set_levels_from_string(spec)
    assert str(info.value) == error
    assert format_levels(vlog) == before


def levels(vlog: Vlog, module: str) -> tuple[Level, Level, Level]:
    mod = vlog.module(module)
    return (
        mod.level(Destination.SYSLOG),
        mod.level(Destination.CONSOLE),
        mod.level(Destination.FILE),
    )


INF, DBG, WRN, OFF = Level.INFO, Level.DBG, Level.WARN, Level.OFF


@pytest.mark.parametrize(
    ("spec", "bfd", "dpif"),
    [
        ("dpif_netdev:dbg", (INF, INF, INF), (DBG, DBG, DBG)),
        ("file:info", (INF, INF, INF), (INF, INF, INF)),
        ("file", (INF, INF, DBG), (INF, INF, DBG)),
        ("", (DBG, DBG, DBG), (DBG, DBG, DBG)),
        ("warn", (WRN, WRN, WRN), (WRN, WRN, WRN)),
        ("ANY:syslog:off", (OFF, INF, INF), (OFF, INF, INF)),
        ("DPIF_NETDEV\tConsole ,WaRn", (INF, INF, INF), (INF, WRN, INF)),
        ("any:any:any", (DBG, DBG, DBG), (DBG, DBG, DBG)),
        ("::dpif_netdev::console::", (INF, INF, INF), (INF, DBG, INF)),
    ],
)
def test_set_levels(
    spec: str, bfd: tuple[Level, Level, Level], dpif: tuple[Level, Level, Level]
) -> None:
    vlog, _, _ = make("bfd", "dpif_netdev")
    vlog.set_levels_from_string(spec)
    assert levels(vlog, "bfd") == bfd
    assert levels(vlog, "dpif_netdev") == dpif


def test_set_pattern_takes_raw_rest_after_destination() -> None:
    vlog, _, _ = make()
    vlog.set_levels_from_string("pattern:CONSOLE:%c: %m, x\t%p")
    assert vlog.pattern(Destination.CONSOLE) == "%c: %m, x\t%p"
    vlog.set_levels_from_string("PATTERN::file::%m")
    assert vlog.pattern(Destination.FILE) == ":%m"
    vlog.set_levels_from_string("PATTERN:ANY:%p %m")
    assert [vlog.pattern(d) for d in Destination] == ["%p %m"] * 3
    vlog.set_levels_from_string("PATTERN:syslog")
    assert vlog.pattern(Destination.SYSLOG) == ""


async def test_set_command_applies_args_in_order_until_error() -> None:
    vlog, _, _ = make("bfd", "dpif_netdev")
    registry = registry_for(vlog)
    error = await call_error(registry, "vlog/set", "bfd:warn", "nope", "dpif_netdev:err")
    assert error == 'no destination, level, or module "nope"'
    assert levels(vlog, "bfd") == (WRN, WRN, WRN)
    assert levels(vlog, "dpif_netdev") == (INF, INF, INF)


async def test_set_without_args_sets_everything_to_dbg() -> None:
    vlog, _, _ = make("bfd")
    assert await call(registry_for(vlog), "vlog/set") == ""
    assert all(levels(vlog, m.name) == (DBG, DBG, DBG) for m in vlog.modules())


def test_module_lookup_is_case_insensitive_and_get_or_create() -> None:
    vlog, _, _ = make("Bfd")
    assert vlog.module("bfd") is vlog.module("BFD")
    assert [m.name for m in vlog.modules()] == ["vlog", "Bfd"]
    vlog.set_levels_from_string("bFD:err")
    assert levels(vlog, "bfd") == (Level.ERR,) * 3


def test_facility_changes_pri() -> None:
    vlog, console, _ = make("bfd")
    vlog.set_pattern(Destination.CONSOLE, "%B %p")
    vlog.module("bfd").info("x")
    vlog.set_levels_from_string("FACILITY:Local3")
    vlog.module("bfd").err("x")
    vlog.set_levels_from_string("facility:daemon")
    vlog.module("bfd").warn("x")
    # local0 (128) by default, then local3 (152) and daemon (24) + severity.
    assert lines(console) == ["133 INFO", "155 ERR", "28 WARN"]


# -- registration, vlog/list, vlog/list-pattern --------------------------------


def test_registered_commands() -> None:
    registry = registry_for(make()[0])
    expected = {
        "vlog/set": ("{spec | PATTERN:destination:pattern}", 0, 2**31 - 1, True),
        "vlog/list": ("", 0, 0, False),
        "vlog/list-pattern": ("", 0, 0, False),
        "vlog/enable-rate-limit": ("[module]...", 0, 2**31 - 1, True),
        "vlog/disable-rate-limit": ("[module]...", 0, 2**31 - 1, True),
        "vlog/reopen": ("", 0, 0, True),
        "vlog/close": ("", 0, 0, True),
        "vlog/message": (None, 1, 1, True),
    }
    for name, (usage, lo, hi, mutating) in expected.items():
        command = registry.get(name)
        assert command is not None, name
        assert (command.usage, command.min_args, command.max_args, command.mutating) == (
            usage,
            lo,
            hi,
            mutating,
        ), name
    assert "vlog/message" not in [c.name for c in registry.visible()]


async def test_list_layout_sorted_with_rate_limit_suffix() -> None:
    vlog, _, _ = make("dpif_netdev", "backtrace", "dpif_lookup_autovalidator", "bfd")
    registry = registry_for(vlog)
    await call(registry, "vlog/set", "backtrace:console:off", "bfd:syslog:dbg")
    await call(registry, "vlog/disable-rate-limit", "dpif_netdev")
    assert await call(registry, "vlog/list") == (
        "                 console    syslog    file\n"
        "                 -------    ------    ------\n"
        "backtrace          OFF       INFO       INFO\n"
        "bfd               INFO        DBG       INFO\n"
        "dpif_lookup_autovalidator  INFO       INFO       INFO\n"
        "dpif_netdev       INFO       INFO       INFO    (rate limiting disabled)\n"
        "vlog              INFO       INFO       INFO\n"
    )


@pytest.mark.parametrize(
    ("method", "prefix"),
    [("libc", "<%B> %D{%h %e %T} %E %A:"), ("unix:/nonexistent/log", "<%B>"), ("null", "")],
)
def test_list_pattern_prefix_per_syslog_method(method: str, prefix: str) -> None:
    vlog, _, _ = make(method=method)
    vlog.set_pattern(Destination.FILE, "%m")
    assert format_patterns(vlog) == (
        "         prefix                            format\n"
        "         ------                            ------\n"
        f"SYSLOG   {prefix:<32}  ovs|%05N|%c%T|%p|%m\n"
        "CONSOLE  none                              %D{%Y-%m-%dT%H:%M:%SZ}|%05N|%c%T|%p|%m\n"
        "FILE     none                              %m\n"
    )
    vlog.close()


def test_unsupported_syslog_method() -> None:
    with pytest.raises(VlogError, match=r"^unsupported syslog method 'tcp:1\.2\.3\.4'$"):
        Vlog("x", syslog_method="tcp:1.2.3.4")


# -- patterns --------------------------------------------------------------------


def render(pattern: str, *, subprogram: str | None = None, msg: str = "hello") -> str:
    vlog, console, _ = make("dpif_netdev")
    vlog.set_pattern(Destination.CONSOLE, pattern)
    vlog.set_subprogram_name(subprogram)
    vlog.module("dpif_netdev").info(msg)
    text = console.getvalue()
    assert text.endswith("\n")
    return text[:-1]


def test_default_console_and_file_lines(tmp_path: Path) -> None:
    vlog, console, _ = make("dpif_netdev")
    log = vlog.module("dpif_netdev")
    vlog.open_log_file(str(tmp_path / "x.log"))
    log.warn("first")
    log.info("second\n\n")
    assert lines(console) == [
        f"2023-11-14T22:13:20Z|00001|vlog|INFO|opened log file {tmp_path / 'x.log'}",
        "2023-11-14T22:13:20Z|00002|dpif_netdev|WARN|first",
        "2023-11-14T22:13:20Z|00003|dpif_netdev|INFO|second",
    ]
    assert (tmp_path / "x.log").read_text().splitlines() == [
        f"2023-11-14T22:13:20.123Z|00001|vlog|INFO|opened log file {tmp_path / 'x.log'}",
        "2023-11-14T22:13:20.123Z|00002|dpif_netdev|WARN|first",
        "2023-11-14T22:13:20.123Z|00003|dpif_netdev|INFO|second",
    ]
    vlog.close()


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("%D", "2023-11-14 22:13:20.123"),
        ("%D{%H:%M:%S.#}", "22:13:20.1"),
        ("%D{%S.##|%S.######}", "20.12|20.123000"),
        ("%D{}|%c{ignored}|", "|dpif_netdev|"),
        ("%05N|%5N|%-5N|%-05N|%1N", "00001|    1|1    |10000|1"),
        ("[%-14c][%14c][%3c]", "[dpif_netdev   ][   dpif_netdev][dpif_netdev]"),
        ("%p %8p %-8p|", "INFO     INFO INFO    |"),
        ("%A %t%T", "ovs-vswitchd main"),
        ("100%% %n%q%", "100% \nq"),
        ("%m|", "multi\nline|"),
        ("%B", "133"),
        ("%r", "0"),
    ],
)
def test_pattern_escapes(pattern: str, expected: str) -> None:
    assert render(pattern, msg="multi\nline\n" if "%m" in pattern else "x") == expected


def test_pattern_host_pid_and_local_time() -> None:
    expected_local = time.strftime("%Y/%m/%d %H", time.localtime(int(T0)))
    assert render("%E|%P|%d{%Y/%m/%d %H}") == (
        f"{socket.gethostname()}|{os.getpid()}|{expected_local}"
    )


def test_subprogram_name_in_pattern() -> None:
    assert render("%c%T|%t|%05N", subprogram="pmd-c00/id:9") == (
        "dpif_netdev(pmd-c00/id:9)|pmd-c00/id:9|00001"
    )


def test_uptime_follows_clock() -> None:
    vlog, console, clock = make()
    vlog.set_pattern(Destination.CONSOLE, "%r")
    clock.now += 2.5
    vlog.module("vlog").info("x")
    assert lines(console) == ["2500"]


def test_compiled_pattern_merges_constant_text() -> None:
    assert len(compile_pattern("ab%%c%nd").pieces) == 1
    assert len(compile_pattern("a%cb%mc").pieces) == 5
    assert fill_fraction("x.#|##|####", 45) == "x.0|04|0450"


def test_serials_count_messages_not_destinations(tmp_path: Path) -> None:
    vlog, console, _ = make("bfd")
    vlog.open_log_file(str(tmp_path / "x.log"))
    vlog.set_pattern(None, "%N %m")
    for i in range(3):
        vlog.module("bfd").info(f"m{i}")
    assert lines(console)[-3:] == ["2 m0", "3 m1", "4 m2"]
    assert (tmp_path / "x.log").read_text().splitlines()[-3:] == ["2 m0", "3 m1", "4 m2"]
    vlog.close()


async def test_subprogram_per_trio_task_with_own_serials() -> None:
    vlog, console, _ = make("dpif_netdev")
    vlog.set_pattern(Destination.CONSOLE, "%N%T %m")
    log = vlog.module("dpif_netdev")

    async def pmd(name: str) -> None:
        vlog.set_subprogram_name(name)
        log.info("start")
        await trio.lowlevel.checkpoint()
        log.info("again")

    log.info("main1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pmd, "pmd-c00/id:9")
        nursery.start_soon(pmd, "pmd-c01/id:10")
    log.info("main2")
    out = lines(console)
    assert out[0] == "1 main1" and out[-1] == "2 main2"
    assert sorted(out[1:-1]) == [
        "1(pmd-c00/id:9) start",
        "1(pmd-c01/id:10) start",
        "2(pmd-c00/id:9) again",
        "2(pmd-c01/id:10) again",
    ]
    assert vlog.subprogram_name == ""


# -- levels and the cached minimum ------------------------------------------------


def test_is_enabled_tracks_levels_and_open_file(tmp_path: Path) -> None:
    vlog, console, _ = make("bfd")
    bfd = vlog.module("bfd")
    assert bfd.is_enabled(Level.INFO) and not bfd.is_enabled(Level.DBG)
    vlog.set_levels_from_string("bfd:file:dbg")
    assert not bfd.is_enabled(Level.DBG)  # no file open: the file level does not count
    vlog.open_log_file(str(tmp_path / "x.log"))
    assert bfd.is_enabled(Level.DBG)
    bfd.dbg("only in file")
    vlog.close_log_file()
    assert not bfd.is_enabled(Level.DBG)
    bfd.dbg("nowhere")
    assert "only in file" not in console.getvalue()
    assert (tmp_path / "x.log").read_text().endswith("|bfd|DBG|only in file\n")
    vlog.set_levels_from_string("bfd:off")
    assert not bfd.is_enabled(Level.EMER)
    bfd.emer("dropped")
    assert "dropped" not in console.getvalue()


def test_each_destination_gets_its_level() -> None:
    vlog, console, _ = make("bfd")
    vlog.set_pattern(None, "%m")
    vlog.set_levels_from_string("bfd:console:err")
    bfd = vlog.module("bfd")
    bfd.warn("warned")
    bfd.err("erred")
    bfd.log(Level.OFF, "never")
    assert lines(console) == ["erred"]


# -- log file ------------------------------------------------------------------


def test_log_file_appends_with_mode_0660(tmp_path: Path) -> None:
    path = tmp_path / "v.log"
    path.write_text("old line\n")
    path.chmod(0o600)
    vlog, _, _ = make()
    vlog.open_log_file(str(path))
    assert path.read_text().startswith("old line\n")
    fresh = tmp_path / "fresh.log"
    old_umask = os.umask(0)
    try:
        vlog.open_log_file(str(fresh))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o660
    assert path.read_text().endswith("|vlog|INFO|closing log file\n")
    vlog.close()


async def test_reopen_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "ovs-vswitchd.log"
    vlog, _, _ = make("bfd")
    registry = registry_for(vlog)
    assert await call_error(registry, "vlog/reopen") == "Logging to file not configured"
    vlog.set_pattern(Destination.FILE, "%c|%m")
    vlog.open_log_file(str(path))
    vlog.module("bfd").info("before")
    path.rename(tmp_path / "ovs-vswitchd.log.1")
    assert await call(registry, "vlog/reopen") == ""
    vlog.module("bfd").info("after")
    assert (tmp_path / "ovs-vswitchd.log.1").read_text() == (
        f"vlog|opened log file {path}\nbfd|before\nvlog|closing log file\n"
    )
    assert path.read_text() == f"vlog|opened log file {path}\nbfd|after\n"
    # Reopening the file that is already open writes nothing.
    assert await call(registry, "vlog/reopen") == ""
    assert path.read_text() == f"vlog|opened log file {path}\nbfd|after\n"
    vlog.close()


async def test_close_keeps_name_for_reopen(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    vlog, _, _ = make("bfd")
    registry = registry_for(vlog)
    vlog.set_pattern(Destination.FILE, "%m")
    vlog.open_log_file(str(path))
    assert await call(registry, "vlog/close") == ""
    assert await call(registry, "vlog/close") == ""
    vlog.module("bfd").info("lost")
    assert vlog.log_file_path == str(path) and not vlog.log_file_is_open
    await call(registry, "vlog/reopen")
    vlog.module("bfd").info("kept")
    assert path.read_text() == f"opened log file {path}\nopened log file {path}\nkept\n"
    vlog.close()


async def test_reopen_failure_reports_strerror(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    vlog, console, _ = make()
    registry = registry_for(vlog)
    vlog.open_log_file(str(directory / "x.log"))
    (directory / "x.log").unlink()
    directory.rmdir()
    assert await call_error(registry, "vlog/reopen") == "No such file or directory"
    assert lines(console)[-1].endswith(
        f"|vlog|WARN|failed to open {directory / 'x.log'} for logging: No such file or directory"
    )
    vlog.close()


def test_write_failures_never_raise(tmp_path: Path) -> None:
    vlog, console, _ = make("bfd")
    console.close()  # writing to a closed stream raises ValueError
    vlog.module("bfd").info("to closed console")
    if Path("/dev/full").exists():
        vlog.open_log_file("/dev/full")  # every write fails with ENOSPC
        vlog.module("bfd").info("to full disk")
    vlog.close()


def test_log_file_renamed_away_is_reopened_by_itself(tmp_path: Path) -> None:
    """Rotation without vlog/reopen (logrotate without copytruncate, no postrotate)."""
    path = tmp_path / "d.log"
    vlog = Vlog("d", clock=FakeClock(), console=io.StringIO(), syslog_method="null")
    vlog.log_check_interval = 0.0
    vlog.set_pattern(Destination.FILE, "%c|%m")
    vlog.open_log_file(str(path))
    bfd = vlog.module("bfd")
    bfd.info("before")
    path.rename(tmp_path / "d.log.1")
    bfd.info("after")
    assert (tmp_path / "d.log.1").read_text() == (
        f"vlog|opened log file {path}\nbfd|before\n"
        f"vlog|{path} was renamed or removed: reopening it\nvlog|closing log file\n"
    )
    assert path.read_text() == f"vlog|opened log file {path}\nbfd|after\n"
    # Removed rather than renamed: the same.
    path.unlink()
    bfd.info("again")
    assert path.read_text() == f"vlog|opened log file {path}\nbfd|again\n"
    # copytruncate keeps the inode: nothing to reopen, lines go on at the start.
    os.truncate(path, 0)
    bfd.info("truncated")
    assert path.read_text() == "bfd|truncated\n"
    vlog.close()


def test_log_file_rotation_is_checked_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    vlog = Vlog("d", clock=FakeClock(), console=io.StringIO(), syslog_method="null")
    vlog.log_check_interval = 3600.0
    vlog.set_pattern(Destination.FILE, "%m")
    vlog.open_log_file(str(path))  # its own line made the first check
    path.rename(tmp_path / "d.log.1")
    vlog.module("bfd").info("still the old file until the next check")
    assert not path.exists()
    vlog.close()


def test_log_file_reopen_failure_warns_then_waits(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "d.log"
    vlog, console, _ = make("bfd")
    vlog.log_check_interval = 0.0
    vlog.set_pattern(Destination.CONSOLE, "%p|%m")
    vlog.open_log_file(str(path))
    path.unlink()
    directory.rmdir()  # the name cannot be created again
    for _ in range(3):
        vlog.module("bfd").info("on")
    failures = [line for line in lines(console) if "failed to open" in line]
    assert failures == [f"WARN|failed to open {path} for logging: No such file or directory"]
    assert vlog.log_file_is_open  # the old descriptor goes on
    vlog.close()


@pytest.mark.parametrize(
    ("log", "prefix"),
    [("emer", "<1>"), ("err", "<3>"), ("warn", "<4>"), ("info", "<5>"), ("dbg", "<7>")],
)
def test_console_lines_carry_priority_on_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: str, prefix: str
) -> None:
    with open(tmp_path / "journal", "w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        vlog = Vlog("d", clock=FakeClock(), console=stream, syslog_method="null")
        bfd = vlog.module("bfd")
        vlog.set_levels_from_string("console:dbg")
        vlog.set_pattern(Destination.CONSOLE, "%p|%m")
        getattr(bfd, log)("two\nlines")
        stream.seek(0)
        level = log.upper()
        assert stream.read() == f"{prefix}{level}|two\n{prefix}lines\n"
    # Any other stream (a terminal, a file) gets no prefix.
    with open(tmp_path / "other", "w+") as other:
        vlog = Vlog("d", clock=FakeClock(), console=other, syslog_method="null")
        vlog.set_pattern(Destination.CONSOLE, "%m")
        vlog.module("bfd").warn("plain")
        other.seek(0)
        assert other.read() == "plain\n"


def test_default_console_is_stderr_at_emit_time(capsys: pytest.CaptureFixture[str]) -> None:
    vlog = Vlog("prog", clock=FakeClock(), syslog_method="null")
    vlog.set_pattern(Destination.CONSOLE, "%A:%m")
    vlog.module("vlog").warn("to stderr")
    assert capsys.readouterr().err == "prog:to stderr\n"


# -- rate limiting ---------------------------------------------------------------


def test_rate_limit_drops_and_summarises() -> None:
    vlog, console, clock = make("bfd")
    vlog.set_pattern(Destination.CONSOLE, "%p %m")
    bfd = vlog.module("bfd")
    rl = RateLimit(5, 2)  # 5 per minute: one token refill per 12 s
    bfd.warn("a", rl=rl)
    bfd.warn("b", rl=rl)
    bfd.warn("c", rl=rl)
    clock.now += 1
    bfd.warn("d", rl=rl)
    clock.now += 1
    bfd.warn("e", rl=rl)
    assert rl.n_dropped == 3
    clock.now += 10
    bfd.warn("f", rl=rl)
    assert lines(console) == [
        "WARN a",
        "WARN b",
        "WARN Dropped 3 log messages in last 12 seconds (most recently, 10 seconds ago) "
        "due to excessive rate",
        "WARN f",
    ]
    bfd.warn("g", rl=rl)  # bucket empty again
    assert rl.n_dropped == 1


def test_rate_limit_skips_disabled_levels_without_consuming() -> None:
    vlog, console, _ = make("bfd")
    vlog.set_pattern(Destination.CONSOLE, "%m")
    bfd = vlog.module("bfd")
    rl = RateLimit(1, 1)
    for _ in range(10):
        bfd.dbg("hidden", rl=rl)
    assert rl.n_dropped == 0
    bfd.info("shown", rl=rl)
    bfd.info("dropped", rl=rl)
    assert lines(console) == ["shown"]


async def test_disable_and_enable_rate_limit_commands() -> None:
    vlog, console, _ = make("bfd", "cfm")
    registry = registry_for(vlog)
    vlog.set_pattern(Destination.CONSOLE, "%m")
    assert await call_error(registry, "vlog/disable-rate-limit", "bfd", "nope") == "unknown module"
    assert not vlog.module("bfd").rate_limit_enabled  # applied before the error
    rl = RateLimit(1, 1)
    for i in range(3):
        vlog.module("bfd").info(f"bfd{i}", rl=rl)
    assert lines(console) == ["bfd0", "bfd1", "bfd2"]
    await call(registry, "vlog/disable-rate-limit")
    assert all(not m.rate_limit_enabled for m in vlog.modules())
    await call(registry, "vlog/enable-rate-limit", "ANY")
    assert all(m.rate_limit_enabled for m in vlog.modules())
    await call(registry, "vlog/disable-rate-limit", "CFM")
    assert [m.name for m in vlog.modules() if not m.rate_limit_enabled] == ["cfm"]


# -- vlog/message and syslog -------------------------------------------------------


async def test_message_command_logs_in_vlog_module() -> None:
    vlog, console, _ = make()
    assert await call(registry_for(vlog), "vlog/message", "hi there") == ""
    assert lines(console) == ["2023-11-14T22:13:20Z|00001|vlog|INFO|user-message: hi there"]


def test_syslog_libc(fake_syslog: FakeSyslog) -> None:
    vlog, _, _ = make("bfd", method="libc")
    vlog.module("bfd").err("one\n\ntwo")
    vlog.set_levels_from_string("FACILITY:local1")
    vlog.module("bfd").info("three")
    assert fake_syslog.opened == [("ovs-vswitchd", syslog.LOG_NDELAY, 3 << 3)]
    assert fake_syslog.sent == [
        (3, "ovs|00001|bfd|ERR|one"),
        (3, "two"),
        ((17 << 3) | 5, "ovs|00002|bfd|INFO|three"),
    ]


def test_syslog_unix_datagrams(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        vlog, _, _ = make("bfd", method=f"unix:{path}")
        vlog.module("bfd").info("hello")
        vlog.set_levels_from_string("FACILITY:local0")
        vlog.module("bfd").warn("again")
        vlog.set_levels_from_string("bfd:syslog:err")
        vlog.module("bfd").warn("filtered")  # still reaches the console: takes serial 3
        vlog.module("bfd").emer("last")
        received = [server.recv(4096) for _ in range(3)]
        vlog.close()
    assert received == [
        b"<29>ovs|00001|bfd|INFO|hello",
        b"<132>ovs|00002|bfd|WARN|again",
        b"<129>ovs|00004|bfd|EMER|last",
    ]


def test_syslog_null_and_unreachable_socket_are_silent(tmp_path: Path) -> None:
    for method in ("null", f"unix:{tmp_path / 'missing.sock'}"):
        vlog, console, _ = make("bfd", method=method)
        vlog.module("bfd").info("x")
        assert lines(console) == ["2023-11-14T22:13:20Z|00001|bfd|INFO|x"]
        vlog.close()


def test_syslog_udp_datagrams() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        vlog, _, _ = make("bfd", method=f"udp:127.0.0.1:{port}")
        vlog.set_pattern(Destination.SYSLOG, "%c %m")
        vlog.module("bfd").dbg("not at info")
        vlog.module("bfd").info("over udp")
        received = server.recv(4096)
        vlog.close()
    assert received == b"<29>bfd over udp"


def test_emer_exception_logs_a_record_per_traceback_line() -> None:
    vlog, console, _ = make()
    log = vlog.module("daemon")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.emer_exception("fatal error, exiting: ValueError('boom')", exc)
    lines = console.getvalue().splitlines()
    assert lines[0].endswith("|daemon|EMER|fatal error, exiting: ValueError('boom')")
    assert lines[1].endswith("|daemon|EMER|Traceback (most recent call last):")
    assert lines[-1].endswith("|daemon|EMER|ValueError: boom")
    assert all("|daemon|EMER|" in line for line in lines)
