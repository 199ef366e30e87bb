"""``config/set``, ``config/save``, ``config/show`` and ``config/reload``.

The configuration comes from one of two sources.  From a TOML file (or the
built-in default), these commands change it at run time, save it and
reload it.  From an OVSDB server (``--db``), the database is the only
place to change the switch: ``config/set`` and ``config/save`` are refused
with a pointer to ``ovs-vsctl``, ``config/reload`` re-reads only the
file's ``[daemon]`` table, and ``config/show`` names the database and its
state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from . import config as config_mod
from .config import Config, ConfigError
from .config.assignments import with_settings
from .config.save import save as save_config
from .control.registry import UNLIMITED, CommandContext, CommandError, CommandRegistry, Reply
from .observe.vlog import VlogModule

if TYPE_CHECKING:
    from .ovsdb.source import OvsdbSource


class ConfigOptions(Protocol):
    @property
    def config_path(self) -> str | None: ...

    @property
    def metrics_override(self) -> bool: ...


class ConfigHost(Protocol):
    """What these commands need of the daemon."""

    config: Config
    config_generation: int
    db_source: OvsdbSource | None

    @property
    def options(self) -> ConfigOptions: ...

    @property
    def ready(self) -> bool: ...

    async def reload(self) -> None: ...

    async def apply_config(self, new: Config) -> None: ...

    def effective_daemon(self) -> tuple[dict[str, object], dict[str, str]]: ...


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def database_refusal(host: ConfigHost, what: str) -> str | None:
    """Why ``what`` cannot be done in database mode (None in file mode)."""
    source = host.db_source
    if source is None:
        return None
    return (
        f"configuration not {what}: the configuration is the database at {source.remote}; "
        "change it with ovs-vsctl (for example: ovs-vsctl set Open_vSwitch . "
        "other_config:pmd-cpu-mask=0x3)"
    )


def show_config(host: ConfigHost) -> Reply:
    data = config_mod.to_dict(host.config)
    data["daemon"], remarks = host.effective_daemon()
    source = host.config.source if host.db_source is None else host.db_source.describe()
    lines = [f"source: {source}", f"generation: {host.config_generation}"]
    for table in ("daemon", "other_config"):
        lines.append(f"{table}:")
        lines += [
            f"  {k}={_scalar(v)}" + (f" ({remarks[k]})" if k in remarks else "")
            for k, v in data[table].items()
        ]
    for bridge in data["bridge"]:
        lines.append(f"bridge {bridge['name']}:")
        lines += [f"  {k}={v}" for k, v in bridge["other_config"].items()]
        for port in bridge["port"]:
            extra = "".join(
                f" {k}={v}" for k, v in {**port["options"], **port["other_config"]}.items()
            )
            lines.append(f"  port {port['name']}: type={port['type']}{extra}")
    if host.db_source is not None:
        for name, why in sorted(host.db_source.state.rejected.items()):
            lines.append(f"refused interface {name}: {why}")
    data["generation"] = host.config_generation
    data["source"] = source
    return Reply.structured("\n".join(lines) + "\n", data)


def register_config_commands(host: ConfigHost, registry: CommandRegistry, log: VlogModule) -> None:
    """Register the ``config/*`` commands of ``host``."""

    async def reload_(ctx: CommandContext, args: Sequence[str]) -> str:
        if not host.ready:
            raise CommandError("configuration not reloaded: the daemon is still starting")
        try:
            await host.reload()
        except ConfigError as exc:
            raise CommandError(f"configuration not reloaded: {exc}") from None
        return ""

    async def set_(ctx: CommandContext, args: Sequence[str]) -> str:
        refusal = database_refusal(host, "changed")
        if refusal is not None:
            raise CommandError(refusal)
        if not host.ready:
            raise CommandError("configuration not changed: the daemon is still starting")
        try:
            new = with_settings(host.config, list(args))
            if host.options.metrics_override and any(
                a.startswith("daemon:metrics-address=") for a in args
            ):
                raise ConfigError(
                    "daemon:metrics-address: --metrics-address on the command line "
                    "overrides it (takes effect at restart without that option)"
                )
            if new.daemon.db != host.config.daemon.db:
                raise ConfigError("daemon:db: a configuration source is chosen at start")
            await host.apply_config(new)
        except ConfigError as exc:
            raise CommandError(f"configuration not changed: {exc}") from None
        host.config_generation += 1
        log.info(
            f"configuration changed by config/set: {' '.join(args)} "
            f"(generation {host.config_generation})"
        )
        # Values of OVS keys that were replaced, as OVS would: say so.
        return "".join(f"{note}\n" for note in new.notes)

    def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        return show_config(host)

    def save_(ctx: CommandContext, args: Sequence[str]) -> str:
        refusal = database_refusal(host, "saved")
        if refusal is not None:
            raise CommandError(refusal)
        path = args[0] if args else host.options.config_path
        if path is None:
            raise CommandError(
                "configuration not saved: the daemon runs on the built-in default "
                "configuration; name a file: config/save FILE"
            )
        try:
            save_config(path, host.config)
        except ConfigError as exc:
            raise CommandError(f"configuration not saved: {exc}") from None
        log.info(f"configuration saved to {path} (generation {host.config_generation})")
        return ""

    registry.register("config/set", "KEY=VALUE...", 1, UNLIMITED, set_, mutating=True)
    registry.register("config/save", "[FILE]", 0, 1, save_, mutating=True)
    registry.register("config/show", "", 0, 0, show)
    registry.register("config/reload", "", 0, 0, reload_, mutating=True)
