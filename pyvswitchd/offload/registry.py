"""The offload framework: class registry, configuration, per-datapath collections.

Pieces, all explicit objects owned by the daemon (no module state):

* :class:`OffloadClassRegistry` — the provider classes this build knows.
* :class:`OffloadConfig` — the global ``Open_vSwitch other_config`` view:
  ``hw-offload`` (enable-once), ``hw-offload-priority`` (read once) and the
  per-interface ``hw-offload-priority`` overrides.
* :class:`OffloadCollection` — one per datapath: the opened provider
  instances in priority order, port assignment, and the datapath-facing
  flow operations.
* :class:`Offload` — ties them together, keeps collections by datapath name
  with a reference count, and registers the unixctl commands.

Everything runs in the daemon's trio thread; nothing here blocks.
Configuration and port calls come from the main task, flow calls from PMD
tasks.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ..control.registry import CommandContext, CommandRegistry, OutputFormat, Reply
from ..observe.coverage import Coverage
from ..observe.vlog import Vlog, VlogModule
from ..odp.actions import Action
from ..odp.flow_key import IN_PORT, FlowKey, FlowMask
from .dummy import DummyOffload, DummyXOffload
from .provider import OffloadError, OffloadFlowStats, OffloadPort, OffloadProvider, OffloadServices

#: Order used when ``hw-offload-priority`` is not configured.
DEFAULT_PRIORITY = "tc,dpdk,dummy,dummy_x"
#: Per-interface priority word that means "do not offload this port".
PRIORITY_NONE = "none"

_LOG_MODULE = "dpif_offload"


def _strerror(code: int) -> str:
    return os.strerror(code)


def _split(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


class OffloadClassRegistry:
    """The offload provider classes available to datapaths, keyed by type."""

    def __init__(self, log: VlogModule) -> None:
        self._log = log
        self._classes: dict[str, type[OffloadProvider]] = {}

    def register(self, cls: type[OffloadProvider]) -> int:
        """Add ``cls``; 0, or EEXIST / EINVAL (logged) when it cannot be added."""
        if cls.type in self._classes:
            self._log.warn(f"attempted to register duplicate dpif offload class: {cls.type}")
            return errno.EEXIST
        if not cls.dpif_types:
            self._log.warn(f"dpif offload class {cls.type} supports no dpif type")
            return errno.EINVAL
        self._classes[cls.type] = cls
        return 0

    def get(self, type_name: str) -> type[OffloadProvider] | None:
        return self._classes.get(type_name)

    def types(self) -> list[str]:
        """Registered type names, in registration order."""
        return list(self._classes)

    def classes(self) -> list[type[OffloadProvider]]:
        return list(self._classes.values())


def builtin_classes(vlog: Vlog) -> OffloadClassRegistry:
    """A registry holding the classes this build has: ``dummy`` and ``dummy_x``."""
    classes = OffloadClassRegistry(vlog.module(_LOG_MODULE))
    classes.register(DummyOffload)
    classes.register(DummyXOffload)
    return classes


def parse_priority(text: str, known: Iterable[str], log: VlogModule | None) -> list[str]:
    """The known class types named in the comma list ``text``, in order, once each.

    Unknown names are dropped with a warning when ``log`` is given.
    """
    known_set = set(known)
    result: list[str] = []
    for name in _split(text):
        if name not in known_set:
            if log is not None:
                log.warn(f"hw-offload-priority configuration has an unknown type; {name}")
            continue
        if name not in result:
            result.append(name)
    return result


class OffloadConfig:
    """The daemon-wide offload configuration, fed by every database change."""

    def __init__(self, classes: OffloadClassRegistry, log: VlogModule) -> None:
        self._classes = classes
        self._log = log
        #: ``hw-offload``: set once, never cleared (disabling needs a restart).
        self.enabled = False
        #: ``offload-rebalance``, latched when offload gets enabled.
        self.rebalance = False
        #: Global priority: known class types in order; read on the first pass only.
        self.priority: list[str] = parse_priority(DEFAULT_PRIORITY, classes.types(), None)
        #: Interface name -> raw per-interface ``hw-offload-priority`` words.
        self.port_priority: dict[str, list[str]] = {}
        self._priority_text: str | None = None
        self._configured = False
        self._priority_change_logged = False
        self._disable_logged = False

    def set_global_config(
        self,
        other_config: Mapping[str, str],
        interfaces: Mapping[str, Mapping[str, str]] | None = None,
    ) -> bool:
        """Apply ``other_config`` and the Interface ``other_config`` maps (by name).

        Returns True when this call turned offload on.
        """
        turned_on = False
        want = other_config.get("hw-offload", "false") == "true"
        if want and not self.enabled:
            self.enabled = True
            self.rebalance = other_config.get("offload-rebalance", "false") == "true"
            self._log.info("Flow HW offload is enabled")
            turned_on = True
        elif self.enabled and not want and not self._disable_logged:
            # Enabled providers hold hardware state that cannot be unwound
            # at run time, so the flag stays on until the daemon restarts.
            self._disable_logged = True
            self._log.info("hw-offload configuration changed; restart required")

        text = other_config.get("hw-offload-priority")
        if not self._configured:
            self._configured = True
            self._priority_text = text
            if text is not None:
                self.priority = parse_priority(text, self._classes.types(), self._log)
        elif text != self._priority_text and not self._priority_change_logged:
            self._priority_change_logged = True
            self._log.info("hw-offload-priority configuration changed; restart required")

        self.port_priority = {
            name: _split(cfg["hw-offload-priority"])
            for name, cfg in (interfaces or {}).items()
            if "hw-offload-priority" in cfg
        }
        return turned_on


class OffloadCollection:
    """The provider instances of one datapath, in priority order.

    The list is fixed at creation.  ``force_pmd_reload`` is set (and
    ``on_force_reload`` called) when offload gets enabled while the datapath
    runs, so every PMD reloads and picks up the providers' work callbacks;
    the datapath clears it with :meth:`take_force_pmd_reload`.
    """

    def __init__(
        self,
        dp_name: str,
        providers: Sequence[OffloadProvider],
        config: OffloadConfig,
        log: VlogModule,
    ) -> None:
        self.dp_name = dp_name
        self.providers = list(providers)
        self.config = config
        self._log = log
        self.refcount = 1
        self.offload_enabled = False
        self.force_pmd_reload = False
        self.on_force_reload: Callable[[], None] | None = None

    @classmethod
    def build(
        cls,
        dp_name: str,
        dpif_type: str,
        classes: OffloadClassRegistry,
        config: OffloadConfig,
        services: OffloadServices,
    ) -> OffloadCollection:
        """Open every class serving ``dpif_type`` and order them by priority.

        Classes named in the priority list come first, in its order; the
        rest follow in registration order.
        """
        log = services.vlog.module(_LOG_MODULE)
        opened: dict[str, OffloadProvider] = {}
        for offload_cls in classes.classes():
            if dpif_type not in offload_cls.dpif_types:
                continue
            try:
                opened[offload_cls.type] = offload_cls.open(dp_name, services)
            except OffloadError as exc:
                log.warn(
                    f"failed to initialize dpif offload provider {offload_cls.type} "
                    f"for {dp_name}: {_strerror(exc.errno)}"
                )
        ordered = [opened.pop(t) for t in config.priority if t in opened]
        ordered.extend(opened.values())
        return cls(dp_name, ordered, config, log)

    @property
    def priority(self) -> list[str]:
        """Provider types in collection order."""
        return [p.type for p in self.providers]

    def find(self, type_name: str) -> OffloadProvider | None:
        return next((p for p in self.providers if p.type == type_name), None)

    def close(self) -> None:
        """Close every instance, in order; the collection is unusable afterwards."""
        for provider in self.providers:
            provider.close()
        self.providers = []

    # -- configuration (main task) --------------------------------------------

    def set_config(self, other_config: Mapping[str, str]) -> None:
        """Forward ``other_config`` to every provider; latch runtime enabling."""
        for provider in self.providers:
            provider.set_config(other_config)
        if not self.offload_enabled and self.config.enabled:
            self.offload_enabled = True
            self.force_pmd_reload = True
            if self.on_force_reload is not None:
                self.on_force_reload()

    def take_force_pmd_reload(self) -> bool:
        """Whether every PMD must reload; clears the request."""
        force, self.force_pmd_reload = self.force_pmd_reload, False
        return force

    # -- ports (main task) ----------------------------------------------------

    def assign_port(self, port: OffloadPort) -> OffloadProvider | None:
        """Offer ``port`` to the providers; the one that took it, or None.

        A per-interface priority list, when configured, is walked instead of
        the collection order: ``none`` stops the walk, unknown names are
        skipped.
        """
        words = self.config.port_priority.get(port.name)
        candidates: list[OffloadProvider | None]
        if words is None:
            candidates = list(self.providers)
        else:
            self._log.dbg(f"for netdev {port.name} using port priority {','.join(words)}")
            # None stands for "none": the walk ends there.
            candidates = [
                None if word == PRIORITY_NONE else self.find(word)
                for word in words
                if word == PRIORITY_NONE or self.find(word) is not None
            ]
        for provider in candidates:
            if provider is None:
                return None
            if not provider.can_offload(port):
                self._log.dbg(
                    f"netdev {port.name} failed can_offload for dpif-offload provider "
                    f"{provider.name}"
                )
                continue
            error = provider.port_add(port)
            if error == 0:
                self._log.dbg(f"netdev {port.name} added to dpif-offload provider {provider.name}")
                return provider
            self._log.err(
                f"Failed adding netdev {port.name} to dpif-offload provider {provider.name}, "
                f"error {_strerror(error)}"
            )
        return None

    def remove_port(self, port_no: int) -> None:
        """Tell every provider that port ``port_no`` left the datapath."""
        for provider in self.providers:
            provider.port_del(port_no)

    def owner(self, port_no: int) -> OffloadProvider | None:
        """The provider that owns port ``port_no``, or None."""
        return next((p for p in self.providers if p.get_port(port_no) is not None), None)

    # -- flows (PMD tasks) ----------------------------------------------------

    def flow_put(
        self,
        ufid: int,
        key: FlowKey,
        mask: FlowMask,
        actions: Sequence[Action],
        *,
        modify: bool,
        pmd_id: int,
        flow_ref: object,
    ) -> int:
        """Offload a flow through the owner of its in_port; EOPNOTSUPP if none."""
        provider = self.owner(key[IN_PORT])
        if provider is None:
            return errno.EOPNOTSUPP
        return provider.flow_put(
            ufid, key, mask, actions, modify=modify, pmd_id=pmd_id, flow_ref=flow_ref
        )

    def flow_del(self, in_port: int, ufid: int, *, pmd_id: int) -> int:
        provider = self.owner(in_port)
        if provider is None:
            return errno.EOPNOTSUPP
        return provider.flow_del(ufid, pmd_id=pmd_id)

    def flow_stats(self, in_port: int, ufid: int) -> OffloadFlowStats | None:
        """Statistics of an offloaded flow; None if disabled or not offloaded."""
        if not self.config.enabled:
            return None
        provider = self.owner(in_port)
        return None if provider is None else provider.flow_stats(ufid)

    def flow_count(self) -> int:
        if not self.config.enabled:
            return 0
        return sum(p.flow_count() for p in self.providers)

    def flow_ref_for_mark(self, in_port: int, mark: int, pmd_id: int) -> object | None:
        """Partial-offload lookup for a marked packet received on ``in_port``."""
        provider = self.owner(in_port)
        return None if provider is None else provider.flow_ref_for_mark(mark, pmd_id)


class Offload:
    """The daemon's offload framework: classes, configuration and collections."""

    def __init__(
        self, vlog: Vlog, coverage: Coverage, classes: OffloadClassRegistry | None = None
    ) -> None:
        self.log = vlog.module(_LOG_MODULE)
        self.classes = classes if classes is not None else builtin_classes(vlog)
        self.config = OffloadConfig(self.classes, self.log)
        self.services = OffloadServices(vlog, coverage, lambda: self.config.enabled)
        self.collections: dict[str, OffloadCollection] = {}

    def open(self, dp_name: str, dpif_type: str) -> tuple[OffloadCollection, bool]:
        """The collection of ``dp_name`` and whether it is new.

        Only for a new collection should the caller offer the datapath's
        existing ports with :meth:`OffloadCollection.assign_port`.
        """
        collection = self.collections.get(dp_name)
        if collection is not None:
            collection.refcount += 1
            return collection, False
        collection = OffloadCollection.build(
            dp_name, dpif_type, self.classes, self.config, self.services
        )
        self.collections[dp_name] = collection
        return collection, True

    def close(self, dp_name: str) -> None:
        """Drop one reference; the last one closes the providers."""
        collection = self.collections.get(dp_name)
        if collection is None:
            return
        collection.refcount -= 1
        if collection.refcount <= 0:
            del self.collections[dp_name]
            collection.close()

    def register_commands(
        self, registry: CommandRegistry, before_show: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        register_commands(
            registry,
            lambda: list(self.collections.values()),
            config=self.config,
            classes=self.classes,
            before_show=before_show,
        )


def format_show(
    enabled: bool, collections: Iterable[OffloadCollection]
) -> tuple[str, dict[str, Any]]:
    """Text and JSON of ``dpif/offload/show``; datapaths sorted by name."""
    lines = [f"Globally enabled: {'true' if enabled else 'false'}", "Datapaths:"]
    data: dict[str, Any] = {"enabled": enabled}
    for collection in sorted(collections, key=lambda c: c.dp_name):
        lines.append(f"{collection.dp_name}:")
        providers: dict[str, Any] = {}
        for provider in collection.providers:
            lines.append(f"  {provider.type}")
            debug_text, debug_json = provider.get_debug()
            if debug_text:
                lines.extend(debug_text.rstrip("\n").split("\n"))
            providers[provider.type] = debug_json
        data[collection.dp_name] = {"priority": collection.priority, "providers": providers}
    return "".join(line + "\n" for line in lines), data


def format_classes(classes: OffloadClassRegistry) -> str:
    """Text of ``dpif/offload/classes``: one row per class, sorted by type."""
    rows = sorted(classes.classes(), key=lambda c: c.type)
    if not rows:
        return ""
    lines = [f"{'Offload Class':<16}  Supported dpif class(es)", f"{'-' * 16}  {'-' * 24}"]
    for cls in rows:
        lines.append(f"{cls.type:<16}  {cls.dpif_types[0]}")
        lines.extend(" " * 18 + extra for extra in cls.dpif_types[1:])
    return "".join(line + "\n" for line in lines)


def register_commands(
    registry: CommandRegistry,
    collections_getter: Callable[[], Iterable[OffloadCollection]],
    *,
    config: OffloadConfig,
    classes: OffloadClassRegistry,
    before_show: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Register ``dpif/offload/show`` and the hidden ``dpif/offload/classes``.

    ``before_show`` runs first: it collects what PMD worker processes'
    copies of the providers counted.
    """

    async def show(ctx: CommandContext, args: Sequence[str]) -> str | Reply:
        if before_show is not None:
            await before_show()
        text, data = format_show(config.enabled, collections_getter())
        if ctx.output_format is OutputFormat.JSON:
            return Reply.structured(text, data)
        return text

    def list_classes(ctx: CommandContext, args: Sequence[str]) -> Reply:
        data = [
            {"class": c.type, "dpif_types": list(c.dpif_types)}
            for c in sorted(classes.classes(), key=lambda c: c.type)
        ]
        return Reply.structured(format_classes(classes), data)

    registry.register("dpif/offload/show", "", 0, 0, show)
    registry.register("dpif/offload/classes", None, 0, 0, list_classes)
