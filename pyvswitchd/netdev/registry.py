"""Netdev types by name: what ``type = "dummy-pmd"`` in a port's configuration opens.

A :class:`NetdevRegistry` is an explicit object owned by the daemon (tests
build their own); :func:`default_registry` returns a new one holding the
built-in types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .afpacket import AfPacketNetdev, SystemNetdev
from .dummy import DummyInternalNetdev, DummyNetdev, DummyPmdNetdev
from .provider import Netdev, NetdevError
from .tap import InternalNetdev, TapNetdev
from .traffic_source import TrafficSource


class NetdevRegistry:
    """Maps type names to :class:`Netdev` subclasses."""

    def __init__(self) -> None:
        self._types: dict[str, type[Netdev]] = {}

    def register(self, cls: type[Netdev]) -> None:
        """Add ``cls`` under ``cls.type``; a missing or taken name is a programming error."""
        if not cls.type:
            raise ValueError(f"{cls.__name__} has no type name")
        if cls.type in self._types:
            raise ValueError(f'netdev type "{cls.type}" is already registered')
        self._types[cls.type] = cls

    def types(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._types)

    def get(self, type_: str) -> type[Netdev] | None:
        """The class registered as ``type_``, or None."""
        return self._types.get(type_)

    def __contains__(self, type_: object) -> bool:
        return type_ in self._types

    def create(self, type_: str, name: str, options: Mapping[str, str] | None = None) -> Netdev:
        """Open device ``name`` of type ``type_``; NetdevError for unknown types, bad options."""
        cls = self._types.get(type_)
        if cls is None:
            known = ", ".join(self.types())
            raise NetdevError(f'{name}: unknown netdev type "{type_}" (known: {known})')
        return cls(name, options)

    def validate(self, type_: str, name: str, options: Mapping[str, str]) -> list[str]:
        """Check a port of type ``type_`` without opening it (see :meth:`Netdev.validate_options`).

        NetdevError as :meth:`create` would raise it for the type or an
        option; otherwise the warnings opening would log.
        """
        cls = self._types.get(type_)
        if cls is None:
            known = ", ".join(self.types())
            raise NetdevError(f'{name}: unknown netdev type "{type_}" (known: {known})')
        return cls.validate_options(name, options)

    def open_in_worker(
        self, type_: str, name: str, state: Mapping[str, Any], fds: Sequence[int]
    ) -> Netdev:
        """A PMD worker's side of device ``name`` (see :meth:`Netdev.export_to_worker`)."""
        cls = self._types.get(type_)
        if cls is None:
            raise NetdevError(f'{name}: unknown netdev type "{type_}"')
        return cls.open_in_worker(name, state, fds)


def default_registry() -> NetdevRegistry:
    """A new registry with the built-in types.

    Dummies, traffic-source, tap, internal, and afpacket / system.
    """
    registry = NetdevRegistry()
    for cls in (
        DummyNetdev,
        DummyPmdNetdev,
        DummyInternalNetdev,
        TrafficSource,
        TapNetdev,
        InternalNetdev,
        AfPacketNetdev,
        SystemNetdev,
    ):
        registry.register(cls)
    return registry
