"""Writing the running configuration back into its file (``config/save``).

ovs-vswitchd never has to do this: OVSDB keeps every change an operator
makes.  Here changes made at run time (``config/set``) live only in the
daemon until they are written back.  The file is edited, not rewritten:
:func:`merged_text` parses it with tomlkit, which keeps comments, order and
layout, and changes only the keys whose values differ from the running
configuration -- a value the file spells differently but that reads the
same (``pmd-sleep-max = "-5"``, which OVS reads as its cap) is left as
written.  Keys returned to their default are removed; bridges and ports
are added and removed to match.  The result is read back before anything
is written, and must give the running configuration again.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, InlineTable, Table
from tomlkit.toml_document import TOMLDocument

from . import DEFAULT_DATAPATH_TYPE, Config, ConfigError, loads, to_dict

_SCALAR_TABLES = ("daemon", "other_config")


def merged_text(original: str, running: Config, where: str = "the file") -> str:
    """``original``, a TOML configuration, edited to describe ``running``."""
    try:
        doc = tomlkit.parse(original)
        have = to_dict(loads(original, where)) if original.strip() else to_dict(Config())
    except ConfigError as exc:
        raise ConfigError(f"{where} does not hold a valid configuration now ({exc})") from None
    except Exception as exc:  # tomlkit's parse errors have no common public base
        raise ConfigError(f"{where} is not TOML now ({exc})") from None
    want = to_dict(running)
    defaults = to_dict(Config())
    for table in _SCALAR_TABLES:
        _merge_scalars(doc, table, have[table], want[table], defaults[table])
    _merge_bridges(doc, have["bridge"], want["bridge"])
    text = tomlkit.dumps(doc)
    if to_dict(loads(text, where)) != want:
        # A merge that lost something must not replace a working file.
        raise ConfigError(f"{where}: the edited file would not give the running configuration")
    return text


def save(path: str, running: Config) -> None:
    """Write ``running`` into the configuration file at ``path`` (created if missing)."""
    target = Path(path)
    try:
        original = target.read_text("utf-8")
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        original, mode = "", 0o644
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    text = merged_text(original, running, path)
    # A half-written configuration file is what a crash mid-write would leave
    # for the next start: write a sibling and rename it over the file.
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from None


def _merge_scalars(
    doc: TOMLDocument,
    name: str,
    have: Mapping[str, Any],
    want: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> None:
    table = doc.get(name)
    for key in sorted(set(have) | set(want)):
        if have.get(key) == want.get(key):
            continue
        back_to_default = want.get(key) == defaults.get(key)
        if table is not None and key in table and back_to_default:
            del table[key]
            continue
        if back_to_default:
            continue  # not in the file, so the file already means the default
        if table is None:
            table = doc[name] = tomlkit.table()
        table[key] = want[key]


def _merge_map(
    container: Table, key: str, have: Mapping[str, str], want: Mapping[str, str]
) -> None:
    """An inline ``{ k = "v" }`` entry (port options, other_config) set to ``want``."""
    if dict(have) == dict(want):
        return
    if not want:
        if key in container:
            del container[key]
        return
    container[key] = _inline(want)


def _inline(values: Mapping[str, Any]) -> InlineTable:
    table = tomlkit.inline_table()
    table.update(values)
    return table


def _merge_bridges(doc: TOMLDocument, have: list[Any], want: list[Any]) -> None:
    if not want:
        if "bridge" in doc:
            del doc["bridge"]
        if have:
            # Dropping every bridge must be said in the file, or reload refuses it.
            doc.add("bridge", tomlkit.array())
        return
    aot = doc.get("bridge")
    if not isinstance(aot, AoT):
        if "bridge" in doc:
            del doc["bridge"]
        aot = tomlkit.aot()
        doc.append("bridge", aot)
    fresh: dict[str, Any] = {"other_config": {}, "port": []}
    for bridge, table, old in _match_by_name(aot, have, want, fresh):
        wanted_type = bridge.get("datapath_type", DEFAULT_DATAPATH_TYPE)
        if old.get("datapath_type", DEFAULT_DATAPATH_TYPE) != wanted_type:
            if wanted_type == DEFAULT_DATAPATH_TYPE:
                del table["datapath_type"]
            else:
                table["datapath_type"] = wanted_type
        _merge_map(table, "other_config", old["other_config"], bridge["other_config"])
        _merge_ports(table, old["port"], bridge["port"])


def _merge_ports(bridge: Table, have: list[Any], want: list[Any]) -> None:
    aot = bridge.get("port")
    if not want:
        if aot is not None:
            del bridge["port"]
        return
    if not isinstance(aot, AoT):
        aot = tomlkit.aot()
        bridge["port"] = aot
    fresh: dict[str, Any] = {"type": None, "options": {}, "other_config": {}}
    for port, table, old in _match_by_name(aot, have, want, fresh):
        if old["type"] != port["type"]:
            table["type"] = port["type"]
        _merge_map(table, "options", old["options"], port["options"])
        _merge_map(table, "other_config", old["other_config"], port["other_config"])
        want_request = port.get("ofport_request")
        if old.get("ofport_request") != want_request:
            if want_request is None:
                del table["ofport_request"]
            else:
                table["ofport_request"] = want_request


def _match_by_name(
    aot: AoT, have: list[Any], want: list[Any], fresh: Mapping[str, Any]
) -> Iterator[tuple[Mapping[str, Any], Table, Mapping[str, Any]]]:
    """Each wanted entry with its table in ``aot`` and what the file said of it.

    Tables whose name is no longer wanted are removed first; a wanted entry
    the file lacks gets a new table holding only its name, and ``fresh``
    as what the file said (nothing).
    """
    had = {entry["name"]: entry for entry in have}
    wanted = {entry["name"] for entry in want}
    for table in list(aot):
        if table.get("name") not in wanted:
            aot.remove(table)
    tables = {t.get("name"): t for t in aot}
    for entry in want:
        table = tables.get(entry["name"])
        if table is None:
            table = tomlkit.table()
            table["name"] = entry["name"]
            aot.append(table)
            yield entry, table, fresh
        else:
            yield entry, table, had[entry["name"]]
