"""Offload framework: class registry, priority, collections, enable, unixctl."""

from __future__ import annotations

import errno

import pytest

from pyvswitchd.control.registry import CommandContext, CommandRegistry, OutputFormat
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.offload.dummy import DummyOffload, DummyXOffload
from pyvswitchd.offload.provider import OffloadError, OffloadProvider, OffloadServices
from pyvswitchd.offload.registry import (
    DEFAULT_PRIORITY,
    Offload,
    OffloadClassRegistry,
    parse_priority,
)
from tests.offload_support import FakePort, captured_vlog, log_messages

DP = "dummy@ovs-dummy"


class Env:
    """An Offload framework with its log captured at DBG."""

    def __init__(self) -> None:
        self.console, self.vlog = captured_vlog()
        self.offload = Offload(self.vlog, Coverage())

    def logs(self, level: str | None = None) -> list[str]:
        """Messages logged so far (optionally only at ``level``)."""
        return log_messages(self.console, level)


@pytest.fixture
def env() -> Env:
    return Env()


# -- class registry and priority parsing -------------------------------------------


def test_builtin_classes_and_duplicate_registration(env: Env) -> None:
    classes = env.offload.classes
    assert classes.types() == ["dummy", "dummy_x"]
    assert classes.get("dummy") is DummyOffload
    assert classes.register(DummyOffload) == errno.EEXIST
    assert "attempted to register duplicate dpif offload class: dummy" in env.logs("WARN")

    class NoDpif(DummyXOffload):
        type = "nodpif"
        dpif_types = ()

    assert classes.register(NoDpif) == errno.EINVAL
    assert "nodpif" not in classes.types()


def test_parse_priority_keeps_order_skips_unknown_and_duplicates(env: Env) -> None:
    log = env.vlog.module("dpif_offload")
    got = parse_priority("dummy_x, bogus,dummy,dummy_x,none", ["dummy", "dummy_x"], log)
    assert got == ["dummy_x", "dummy"]
    assert env.logs("WARN") == [
        "hw-offload-priority configuration has an unknown type; bogus",
        "hw-offload-priority configuration has an unknown type; none",
    ]


def test_default_priority_order_and_collection_order(env: Env) -> None:
    assert DEFAULT_PRIORITY == "tc,dpdk,dummy,dummy_x"
    # Not configured: default order, no warnings for classes this build lacks.
    env.offload.config.set_global_config({})
    collection, new = env.offload.open(DP, "dummy")
    assert new
    assert collection.priority == ["dummy", "dummy_x"]
    assert [p.name for p in collection.providers] == [f"dummy[{DP}]", f"dummy_x[{DP}]"]
    assert env.logs("WARN") == []


def test_configured_priority_is_read_once(env: Env) -> None:
    cfg = env.offload.config
    cfg.set_global_config({"hw-offload-priority": "dummy_x,tc"})
    assert env.logs("WARN") == ["hw-offload-priority configuration has an unknown type; tc"]
    assert env.offload.open(DP, "dummy")[0].priority == ["dummy_x", "dummy"]
    cfg.set_global_config({"hw-offload-priority": "dummy"})
    cfg.set_global_config({"hw-offload-priority": "dummy,dummy_x"})
    assert cfg.priority == ["dummy_x"]
    restart = [m for m in env.logs("INFO") if "restart required" in m]
    assert restart == ["hw-offload-priority configuration changed; restart required"]


def test_collection_is_shared_by_name_and_closed_by_last_ref(env: Env) -> None:
    first, new1 = env.offload.open(DP, "dummy")
    second, new2 = env.offload.open(DP, "dummy")
    assert (new1, new2) == (True, False) and first is second
    first.assign_port(FakePort(1, "p1"))
    env.offload.close(DP)
    assert DP in env.offload.collections
    env.offload.close(DP)
    assert DP not in env.offload.collections
    assert first.providers == []


def test_other_dpif_types_get_no_providers(env: Env) -> None:
    collection, _ = env.offload.open("system@ovs-system", "system")
    assert collection.providers == []
    assert collection.assign_port(FakePort(1, "p1")) is None


# -- port assignment ---------------------------------------------------------------


def test_assign_port_first_accepting_provider_wins(env: Env) -> None:
    collection, _ = env.offload.open(DP, "dummy")
    owner = collection.assign_port(FakePort(1, "p1"))
    assert owner is not None and owner.type == "dummy"
    assert collection.owner(1) is owner
    assert f"netdev p1 added to dpif-offload provider dummy[{DP}]" in env.logs("DBG")
    # Not a dummy-class netdev: every provider refuses.
    assert collection.assign_port(FakePort(2, "t0", "tap")) is None
    assert f"netdev t0 failed can_offload for dpif-offload provider dummy_x[{DP}]" in env.logs()
    # Same port again: dummy fails with EEXIST, dummy_x accepts.
    again = collection.assign_port(FakePort(1, "p1"))
    assert again is not None and again.type == "dummy_x"
    assert any(m.startswith("Failed adding netdev p1 to dpif-offload provider dummy[") and
               m.endswith("error File exists") for m in env.logs("ERR"))  # fmt: skip
    collection.remove_port(1)
    assert collection.owner(1) is None


def test_per_port_priority_override_and_none(env: Env) -> None:
    env.offload.config.set_global_config(
        {},
        {
            "p1": {"hw-offload-priority": "bogus,dummy_x,dummy"},
            "p2": {"hw-offload-priority": "none,dummy"},
            "p3": {"other": "x"},
        },
    )
    collection, _ = env.offload.open(DP, "dummy")
    owner = collection.assign_port(FakePort(1, "p1"))
    assert owner is not None and owner.type == "dummy_x"
    assert "for netdev p1 using port priority bogus,dummy_x,dummy" in env.logs("DBG")
    assert collection.assign_port(FakePort(2, "p2")) is None
    assert collection.owner(2) is None
    owner3 = collection.assign_port(FakePort(3, "p3"))
    assert owner3 is not None and owner3.type == "dummy"
    # Unknown names are skipped silently at port add.
    assert env.logs("WARN") == []


def test_open_failure_is_warned_and_skipped(env: Env) -> None:
    class Broken(DummyXOffload):
        type = "broken"

        @classmethod
        def open(cls, dp_name: str, services: OffloadServices) -> OffloadProvider:
            raise OffloadError(errno.ENODEV)

    classes = OffloadClassRegistry(env.vlog.module("dpif_offload"))
    classes.register(Broken)
    classes.register(DummyOffload)
    offload = Offload(env.vlog, Coverage(), classes)
    collection, _ = offload.open(DP, "dummy")
    assert collection.priority == ["dummy"]
    assert f"failed to initialize dpif offload provider broken for {DP}: No such device" in (
        env.logs("WARN")
    )


# -- enable / disable --------------------------------------------------------------


def test_enable_at_runtime_forces_pmd_reload(env: Env) -> None:
    cfg = env.offload.config
    collection, _ = env.offload.open(DP, "dummy")
    reloads: list[str] = []
    collection.on_force_reload = lambda: reloads.append("reload")
    cfg.set_global_config({"hw-offload": "false"})
    collection.set_config({"hw-offload": "false"})
    assert not cfg.enabled and not collection.take_force_pmd_reload() and reloads == []

    assert cfg.set_global_config({"hw-offload": "true", "offload-rebalance": "true"})
    collection.set_config({"hw-offload": "true"})
    assert cfg.enabled and cfg.rebalance
    assert "Flow HW offload is enabled" in env.logs("INFO")
    assert reloads == ["reload"]
    assert collection.take_force_pmd_reload()
    assert not collection.take_force_pmd_reload()
    # Later passes do not force again.
    assert not cfg.set_global_config({"hw-offload": "true"})
    collection.set_config({"hw-offload": "true"})
    assert reloads == ["reload"]


def test_disable_needs_restart(env: Env) -> None:
    cfg = env.offload.config
    cfg.set_global_config({"hw-offload": "true"})
    cfg.set_global_config({"hw-offload": "false"})
    cfg.set_global_config({"hw-offload": "false"})
    assert cfg.enabled
    assert env.logs("INFO").count("hw-offload configuration changed; restart required") == 1


def test_queries_are_gated_by_enable(env: Env) -> None:
    collection, _ = env.offload.open(DP, "dummy")
    collection.assign_port(FakePort(1, "p1"))
    key = (1,) + (0,) * 18
    mask = (0xFFFFFFFF,) + (0,) * 18
    # Put is not gated; counts and stats are.
    assert collection.flow_put(7, key, mask, [], modify=False, pmd_id=0, flow_ref="r") == 0
    assert collection.flow_count() == 0
    assert collection.flow_stats(1, 7) is None
    env.offload.config.set_global_config({"hw-offload": "true"})
    assert collection.flow_count() == 1
    assert collection.flow_stats(1, 7) is not None
    # A port nobody owns: not supported.
    other = (9,) + (0,) * 18
    assert collection.flow_put(8, other, mask, [], modify=False, pmd_id=0, flow_ref="r") == (
        errno.EOPNOTSUPP
    )
    assert collection.flow_del(9, 8, pmd_id=0) == errno.EOPNOTSUPP


# -- unixctl -----------------------------------------------------------------------


async def call(reg: CommandRegistry, name: str, fmt: OutputFormat = OutputFormat.TEXT) -> object:
    reply = await reg.invoke(CommandContext(name=name, output_format=fmt), [])
    return reply.data if fmt is OutputFormat.JSON else reply.text


async def test_offload_show_text_and_json(env: Env) -> None:
    registry = CommandRegistry()
    env.offload.register_commands(registry)
    env.offload.config.set_global_config({"hw-offload": "true"})
    collection, _ = env.offload.open(DP, "dummy")
    collection.assign_port(FakePort(2, "p0"))
    text = await call(registry, "dpif/offload/show")
    assert text == (
        "Globally enabled: true\n"
        "Datapaths:\n"
        f"{DP}:\n"
        "  dummy\n"
        "  - p0: port_no: 2\n"
        "    rx_offload_partial   : 0\n"
        "    rx_offload_full      : 0\n"
        "    rx_offload_miss      : 0\n"
        "    rx_offload_pipe_abort: 0\n"
        "  dummy_x\n"
    )
    data = await call(registry, "dpif/offload/show", OutputFormat.JSON)
    assert data == {
        "enabled": True,
        DP: {
            "priority": ["dummy", "dummy_x"],
            "providers": {
                "dummy": {
                    "ports": {
                        "p0": {
                            "port_no": 2,
                            "rx_offload_full": 0,
                            "rx_offload_miss": 0,
                            "rx_offload_partial": 0,
                            "rx_offload_pipe_abort": 0,
                        }
                    }
                },
                "dummy_x": {},
            },
        },
    }


async def test_offload_show_without_datapaths(env: Env) -> None:
    registry = CommandRegistry()
    env.offload.register_commands(registry)
    assert await call(registry, "dpif/offload/show") == "Globally enabled: false\nDatapaths:\n"


async def test_offload_classes_is_hidden_and_sorted(env: Env) -> None:
    registry = CommandRegistry()
    env.offload.register_commands(registry)
    names = [c.name for c in registry.visible()]
    assert "dpif/offload/show" in names and "dpif/offload/classes" not in names

    class Multi(DummyXOffload):
        type = "aaa"
        dpif_types = ("netdev", "dummy")

    env.offload.classes.register(Multi)
    assert await call(registry, "dpif/offload/classes") == (
        "Offload Class     Supported dpif class(es)\n"
        "----------------  ------------------------\n"
        "aaa               netdev\n"
        "                  dummy\n"
        "dummy             dummy\n"
        "                  netdev\n"
        "dummy_x           dummy\n"
        "                  netdev\n"
    )


async def test_offload_classes_empty(env: Env) -> None:
    registry = CommandRegistry()
    classes = OffloadClassRegistry(env.vlog.module("dpif_offload"))
    Offload(env.vlog, Coverage(), classes).register_commands(registry)
    assert await call(registry, "dpif/offload/classes") == ""
