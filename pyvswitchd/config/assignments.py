"""``KEY=VALUE`` assignments to a running configuration (``config/set``).

A key is spelled as in the configuration file or as ``ovs-vsctl set``
spells the column: ``other_config:pmd-cpu-mask``, ``bridge:br0:mac-aging-time``,
``interface:p0:options:n_rxq``, ``interface:p0:ofport_request``.  The
assignments are applied to the file's document form (:func:`.to_dict`) and
the result is validated as a whole, as a file would be.
"""

from __future__ import annotations

from typing import Any

from . import Config, ConfigError, from_dict, to_dict


def with_settings(cfg: Config, assignments: list[str]) -> Config:
    """``cfg`` with ``KEY=VALUE`` assignments applied and validated (``config/set``).

    ``KEY`` is spelled as in this file or as ``ovs-vsctl set`` spells the
    column (see :func:`_target`); an empty value removes the key (back to
    its default).  Raises ConfigError like a bad file would.
    """
    data = to_dict(cfg)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f'"{assignment}": expected KEY=VALUE')
        target, name = _target(data, key)
        if value == "":
            target.pop(name, None)
        elif name == "ofport_request" and value.isdigit():
            target[name] = int(value)  # an integer column, as ovs-vsctl reads it
        else:
            target[name] = value
    return from_dict(data, f"{cfg.source} + config/set")


_KEY_FORMS = (
    "KEY, other_config:KEY, daemon:KEY, bridge:NAME[:other_config]:KEY, "
    "interface:NAME:options|other_config:KEY or interface:NAME:ofport_request"
)


def _target(data: dict[str, Any], key: str) -> tuple[dict[str, Any], str]:
    """The table of ``to_dict`` output that ``key`` names, and the key inside it.

    ``pmd-cpu-mask`` and ``other_config:pmd-cpu-mask`` (the Open_vSwitch
    table's column, as OVS users type it) are the same key; a bridge's
    other_config is ``bridge:NAME:KEY`` or ``bridge:NAME:other_config:KEY``;
    a port's ``options`` and ``other_config`` (OVS's Interface columns) are
    ``interface:NAME:options:KEY`` and ``interface:NAME:other_config:KEY``,
    its ``ofport_request`` ``interface:NAME:ofport_request``.
    """
    parts = key.split(":")
    if len(parts) == 1:
        return data["other_config"], parts[0]
    if len(parts) == 2 and parts[0] in ("other_config", "daemon"):
        return data[parts[0]], parts[1]
    if parts[0] == "bridge" and (
        len(parts) == 3 or (len(parts) == 4 and parts[2] == "other_config")
    ):
        bridge = next((b for b in data["bridge"] if b["name"] == parts[1]), None)
        if bridge is None:
            raise ConfigError(f'bridge "{parts[1]}": no such bridge')
        return bridge["other_config"], parts[-1]
    if parts[0] == "interface" and (
        (len(parts) == 4 and parts[2] in ("options", "other_config"))
        or (len(parts) == 3 and parts[2] == "ofport_request")
    ):
        for bridge in data["bridge"]:
            for port in bridge["port"]:
                if port["name"] == parts[1]:
                    return (port, parts[2]) if len(parts) == 3 else (port[parts[2]], parts[3])
        raise ConfigError(f'interface "{parts[1]}": no such interface')
    raise ConfigError(f'"{key}": expected {_KEY_FORMS}')
