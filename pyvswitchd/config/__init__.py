"""The daemon's configuration file: TOML shaped like OVSDB, validated up front.

Tables mirror OVSDB's (``[other_config]`` is Open_vSwitch's other_config,
``[[bridge]]`` and ``[[bridge.port]]`` the Bridge/Port/Interface rows) and
keys keep OVS's names, so an OVS user already knows every knob.  Values may
be written as TOML natives (``pmd-perf-metrics = true``) or as the strings
OVSDB would hold (``"true"``).

Validation happens entirely before anything is applied: a bad file raises
:class:`ConfigError` naming the key, the value and what is allowed, and the
caller keeps running on its previous :class:`Config`.

Except for OVS's own other_config keys: ovs-vswitchd takes any value there
and replaces what it cannot use (:mod:`.ovs_values`), and so does this
loader, keeping a note for each replacement in :attr:`Config.notes`.  The
values a :class:`Config` holds are the ones in effect.  pyvswitchd's own
keys (``[daemon]``, ``dummy-numa``) are refused when bad, as are port
types and options (checked against the netdev types by the daemon).
"""

from __future__ import annotations

import difflib
import grp
import tomllib
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any

import attrs

from .db_remote import parse_db_remote
from .ovs_values import (
    Fallback,
    bridge_other_config,
    ovs_bool,
    ovs_cpu_mask,
    ovs_integer,
    ovs_maxsleep,
    ovs_rxq_assign,
    ovs_sleep_list,
    ovsdb_text,
    sleep_text,
)


class ConfigError(Exception):
    """A configuration value (or the file itself) is not acceptable."""


# ---------------------------------------------------------------------------
# Value parsers: each takes the raw TOML value and returns the typed value
# or raises ValueError with "expected ..." wording.


def int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer from {lo} to {hi}")
        try:
            number = int(value, 10) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer from {lo} to {hi}") from None
        if isinstance(value, float) and value != number:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        if not lo <= number <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return number

    return parse


def parse_numa_list(value: Any) -> tuple[int, ...]:
    """``dummy-numa``: comma-separated NUMA id of each core, core 0 first."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        raise ValueError('expected a list of NUMA ids such as "0,0,1,1"')
    try:
        numas = tuple(int_in(0, 63)(v) for v in items)
    except ValueError:
        raise ValueError('expected a list of NUMA ids (0-63) such as "0,0,1,1"') from None
    if not numas:
        raise ValueError("expected at least one core")
    return numas


def parse_str(value: Any) -> str:
    """Any OVSDB string (a TOML number or boolean is spelled as one)."""
    return ovsdb_text(value)


def parse_address(value: Any) -> str | None:
    """``HOST:PORT`` for a listener, or ``none``."""
    if not isinstance(value, str):
        raise ValueError('expected "HOST:PORT" or "none"')
    if value.lower() == "none":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError('expected "HOST:PORT" or "none"')
    return value


def parse_mode(value: Any) -> int:
    """A file mode written as octal text (``"0770"``) or a TOML integer (``0o770``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        try:
            mode = int(value, 8)
        except ValueError:
            raise ValueError('expected an octal file mode such as "0770"') from None
    else:
        raise ValueError('expected an octal file mode such as "0770"')
    if not 0 <= mode <= 0o777:
        raise ValueError('expected an octal file mode such as "0770"')
    return mode


def parse_group(value: Any) -> str:
    """An existing group name."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected a group name")
    try:
        grp.getgrnam(value)
    except KeyError:
        raise ValueError("expected an existing group name") from None
    return value


def _key(name: str, parse: Callable[[Any], Any], default: Any, doc: str) -> Any:
    return attrs.field(default=default, metadata={"key": name, "parse": parse, "doc": doc})


# ---------------------------------------------------------------------------
# Tables


@attrs.frozen
class OtherConfig:
    """Open_vSwitch other_config: datapath-wide knobs, OVS names, defaults and readings."""

    pmd_cpu_mask: int | None = _key(
        "pmd-cpu-mask", ovs_cpu_mask, None, "cores that get a PMD task (default: one PMD)"
    )
    pmd_rxq_assign: str = _key("pmd-rxq-assign", ovs_rxq_assign, "cycles", "rxq scheduling")
    pmd_rxq_isolate: bool = _key(
        "pmd-rxq-isolate", ovs_bool(True), True, "pinned rxqs isolate their PMD"
    )
    pmd_perf_metrics: bool = _key(
        "pmd-perf-metrics", ovs_bool(False), False, "histograms and iteration history"
    )
    pmd_maxsleep: int = _key("pmd-maxsleep", ovs_maxsleep, 0, "max PMD sleep, us")
    pmd_sleep_max: tuple[tuple[int | None, int], ...] | None = _key(
        "pmd-sleep-max", ovs_sleep_list, None, "max PMD sleep, us, with per-core overrides"
    )
    tx_flush_interval: int = _key(
        "tx-flush-interval", ovs_integer(0, 0, 2**31 - 1, unit=" us"), 0, "output batching, us"
    )
    emc_insert_inv_prob: int = _key(
        "emc-insert-inv-prob",
        ovs_integer(100, 0, 2**32 - 1, unsigned=True),
        100,
        "1/N chance of EMC insertion",
    )
    smc_enable: bool = _key("smc-enable", ovs_bool(False), False, "signature match cache")
    pmd_auto_lb: bool = _key("pmd-auto-lb", ovs_bool(False), False, "auto load balance")
    pmd_auto_lb_load_threshold: int = _key(
        "pmd-auto-lb-load-threshold", ovs_integer(95, 0, 100), 95, "ALB: PMD busy percent"
    )
    pmd_auto_lb_improvement_threshold: int = _key(
        "pmd-auto-lb-improvement-threshold",
        ovs_integer(25, 0, 100),
        25,
        "ALB: variance gain percent",
    )
    pmd_auto_lb_rebal_interval: int = _key(
        "pmd-auto-lb-rebal-interval",
        ovs_integer(1, 0, 20000, unsigned=True, unit=" minutes"),
        1,
        "ALB: minutes between rebalances",
    )
    hw_offload: bool = _key("hw-offload", ovs_bool(False), False, "enable offload providers")
    hw_offload_priority: str | None = _key(
        "hw-offload-priority", parse_str, None, "offload provider order"
    )
    max_idle: int = _key(
        "max-idle", ovs_integer(10000, 0, 2**32 - 1, unit=" ms"), 10000, "flow idle timeout, ms"
    )
    userspace_tso_enable: bool = _key(
        "userspace-tso-enable", ovs_bool(False), False, "TSO/GSO through the switch"
    )
    # Not an OVSDB key (ovs-vswitchd's --dummy-numa): checked strictly.
    dummy_numa: tuple[int, ...] | None = _key(
        "dummy-numa", parse_numa_list, None, "NUMA id of each core (default: all 0)"
    )


@attrs.frozen
class DaemonSettings:
    """``[daemon]``: pyvswitchd's own service knobs (no OVSDB equivalent)."""

    metrics_address: str | None = _key(
        "metrics-address", parse_address, "127.0.0.1:10099", "Prometheus listener or none"
    )
    ctl_mode: int = _key("ctl-mode", parse_mode, 0o770, "control socket file mode")
    ctl_group: str | None = _key(
        "ctl-group", parse_group, None, "group owning the control socket (default: the daemon's)"
    )
    admin_group: str | None = _key(
        "admin-group", parse_group, None, "members may run commands that change the daemon"
    )
    db: str | None = _key(
        "db",
        parse_db_remote,
        None,
        "OVSDB server that holds the configuration (--db overrides; default: none, this file)",
    )


@attrs.frozen
class PortConfig:
    name: str
    type: str = "system"
    options: Mapping[str, str] = attrs.field(factory=dict)
    other_config: Mapping[str, str] = attrs.field(factory=dict)
    #: The OpenFlow port number asked for (OVSDB's Interface ``ofport_request``).
    ofport_request: int | None = None


#: The bridges' datapath type unless a bridge says otherwise (OVSDB's Bridge datapath_type).
DEFAULT_DATAPATH_TYPE = "netdev"
#: The userspace datapath's two types: ``dummy`` is the class OVS's own tests
#: run on (its datapath is ``dummy@ovs-dummy`` and numbers ports after
#: their names); the forwarding is the same.
DATAPATH_TYPES = (DEFAULT_DATAPATH_TYPE, "dummy")


@attrs.frozen
class BridgeConfig:
    name: str
    ports: tuple[PortConfig, ...] = ()
    other_config: Mapping[str, str] = attrs.field(factory=dict)
    datapath_type: str = DEFAULT_DATAPATH_TYPE


@attrs.frozen
class Config:
    other_config: OtherConfig = attrs.field(factory=OtherConfig)
    daemon: DaemonSettings = attrs.field(factory=DaemonSettings)
    bridges: tuple[BridgeConfig, ...] = ()
    source: str = "<defaults>"
    #: Whether the document has a ``bridge`` key: ``[[bridge]]`` tables, or
    #: ``bridge = []`` to say that no bridge is wanted (see :func:`check_reload`).
    declares_bridges: bool = False
    #: OVS keys whose values were replaced, each naming key, value and
    #: value used; logged when the config is applied.
    notes: tuple[str, ...] = attrs.field(default=(), eq=False)


# ---------------------------------------------------------------------------
# Loading


_PORT_KEYS = ("name", "ofport_request", "options", "other_config", "type")
#: OVSDB's range for Interface ``ofport_request`` (below OpenFlow's reserved ports).
OFPORT_REQUEST_MAX = 65279
_BRIDGE_KEYS = ("datapath_type", "name", "other_config", "port")


def _hint(key: str, known: Iterable[str]) -> str:
    """The parenthesis after an unknown key: the likely one it stands for, else all."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f'(did you mean "{close[0]}"?)'
    return f"(known keys: {', '.join(sorted(known))})"


def _parse_table(cls: type[Any], table: Any, where: str, notes: list[str]) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    fields = {f.metadata["key"]: f for f in attrs.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        field = fields.get(key)
        if field is None:
            raise ConfigError(f'{where}: unknown key "{key}" {_hint(key, fields)}')
        try:
            values[field.name] = field.metadata["parse"](raw)
        except Fallback as fallback:
            values[field.name] = fallback.used
            notes.append(
                f"{where}:{key}: invalid value {_show(raw)}: {fallback}; using {fallback.shown}"
            )
        except ValueError as exc:
            raise ConfigError(f"{where}:{key}: invalid value {_show(raw)}: {exc}") from None
    return cls(**values)


def _show(raw: Any) -> str:
    return (
        f'"{raw}"'
        if isinstance(raw, str)
        else repr(raw).lower()
        if isinstance(raw, bool)
        else repr(raw)
    )


def _string_map(table: Any, where: str) -> dict[str, str]:
    """OVSDB maps hold strings; TOML natives are turned into OVSDB's spelling."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of key = value")
    result: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif isinstance(value, (int, str)):
            result[key] = str(value)
        else:
            raise ConfigError(
                f"{where}:{key}: invalid value {_show(value)}: expected a string or number"
            )
    return result


def _ofport_request(raw: Any, where: str) -> int | None:
    """A port's ``ofport_request``: an integer 1..65279."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= OFPORT_REQUEST_MAX:
        raise ConfigError(
            f"{where}:ofport_request: invalid value {_show(raw)}: "
            f"expected an OpenFlow port number 1..{OFPORT_REQUEST_MAX}"
        )
    return raw


def _name(entry: dict[str, Any], where: str) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name or len(name) > 15 or "/" in name or " " in name:
        raise ConfigError(
            f"{where}: name: invalid value {_show(name)}: expected an interface-style name "
            "(1-15 characters, no '/' or spaces)"
        )
    return name


def from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Validate a decoded TOML document."""
    known = {"other_config", "daemon", "bridge"}
    for key in data:
        if key not in known:
            raise ConfigError(
                f'{source}: unknown table "{key}" (known: {", ".join(sorted(known))})'
            )
    notes: list[str] = []
    other = _parse_table(OtherConfig, data.get("other_config", {}), "other_config", notes)
    daemon = _parse_table(DaemonSettings, data.get("daemon", {}), "daemon", notes)
    raw_bridges = data.get("bridge", [])
    if not isinstance(raw_bridges, list):
        raise ConfigError("bridge: expected [[bridge]] array of tables")
    bridges: list[BridgeConfig] = []
    seen_ports: set[str] = set()
    for i, raw in enumerate(raw_bridges):
        if not isinstance(raw, dict):
            raise ConfigError(f"bridge[{i}]: expected a table")
        bname = _name(raw, f"bridge[{i}]")
        where = f'bridge "{bname}"'
        for key in raw:
            if key not in _BRIDGE_KEYS:
                raise ConfigError(f'{where}: unknown key "{key}" {_hint(key, _BRIDGE_KEYS)}')
        dp_type = raw.get("datapath_type", DEFAULT_DATAPATH_TYPE)
        if dp_type not in DATAPATH_TYPES:
            raise ConfigError(
                f"{where}:datapath_type: invalid value {_show(dp_type)}: expected "
                + " or ".join(DATAPATH_TYPES)
            )
        if bridges and bridges[0].datapath_type != dp_type:
            raise ConfigError(
                f'{where}:datapath_type: "{dp_type}" differs from bridge "{bridges[0].name}"\'s '
                f'"{bridges[0].datapath_type}": one datapath runs every bridge'
            )
        if any(b.name == bname for b in bridges):
            raise ConfigError(f"{where}: duplicate bridge name")
        ports: list[PortConfig] = []
        raw_ports = raw.get("port", [])
        if not isinstance(raw_ports, list):
            raise ConfigError(f"{where}: port: expected [[bridge.port]] array of tables")
        for j, rp in enumerate(raw_ports):
            if not isinstance(rp, dict):
                raise ConfigError(f"{where} port[{j}]: expected a table")
            pname = _name(rp, f"{where} port[{j}]")
            pwhere = f'{where} port "{pname}"'
            for key in rp:
                if key not in _PORT_KEYS:
                    raise ConfigError(f'{pwhere}: unknown key "{key}" {_hint(key, _PORT_KEYS)}')
            if pname in seen_ports or pname == bname:
                raise ConfigError(f"{pwhere}: duplicate port name")
            seen_ports.add(pname)
            ptype = rp.get("type", "system")
            if not isinstance(ptype, str) or not ptype:
                raise ConfigError(
                    f"{pwhere}:type: invalid value {_show(ptype)}: expected a netdev type"
                )
            ports.append(
                PortConfig(
                    name=pname,
                    type=ptype,
                    options=_string_map(rp.get("options"), f"{pwhere} options"),
                    other_config=_string_map(rp.get("other_config"), f"{pwhere} other_config"),
                    ofport_request=_ofport_request(rp.get("ofport_request"), pwhere),
                )
            )
        bridge_oc, bridge_notes = bridge_other_config(
            _string_map(raw.get("other_config"), f"{where} other_config"),
            f"bridge:{bname}",
        )
        notes += bridge_notes
        bridges.append(
            BridgeConfig(
                name=bname, ports=tuple(ports), other_config=bridge_oc, datapath_type=dp_type
            )
        )
    return Config(
        other_config=other,
        daemon=daemon,
        bridges=tuple(bridges),
        source=source,
        declares_bridges="bridge" in data,
        notes=tuple(notes),
    )


def loads(text: str, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return from_dict(data, source)


def load(path: str) -> Config:
    """Read and validate a config file; every failure is a ConfigError.

    A file that holds nothing at all (0 bytes, or only comments) is refused:
    that is what a half-written file looks like, and taking it at its word
    would remove every port.  A configuration without bridges writes
    ``bridge = []``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        empty = not tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        empty = False  # loads() says what is wrong with it
    if empty:
        raise ConfigError(
            f"{path}: the file holds no settings (half-written?); "
            "a configuration with no bridge says so with: bridge = [] (at the top)"
        )
    return loads(text, path)


def check_reload(running: Config, new: Config) -> None:
    """ConfigError if replacing ``running`` by ``new`` would drop every bridge unasked.

    A file cut short after its first tables is still valid TOML; only a
    file that says ``bridge = []`` may remove the last bridge.
    """
    if running.bridges and not new.bridges and not new.declares_bridges:
        names = ", ".join(b.name for b in running.bridges)
        raise ConfigError(
            f"{new.source}: no [[bridge]]: reloading it would remove every bridge ({names}); "
            "a file meant to have no bridge says so with: bridge = [] (at the top)"
        )


def no_bridge_warning(cfg: Config) -> str | None:
    """What ``--check-config`` says about a file with no bridge that does not say so."""
    if cfg.bridges or cfg.declares_bridges:
        return None
    return (
        "no [[bridge]]: a reload with this file would be refused while bridges run; "
        "write bridge = [] at the top if no bridge is meant"
    )


def default_text() -> str:
    """The built-in default config: a demo (etc/pyvswitchd.toml has its ports commented out)."""
    return resources.files("pyvswitchd").joinpath("data/pyvswitchd.toml").read_text("utf-8")


def load_default() -> Config:
    return loads(default_text(), "<built-in default config>")


def describe_keys() -> list[tuple[str, str, str, str]]:
    """(table, key, default, doc) of every scalar key, for --help-style listings."""
    rows = []
    for table, cls in (("other_config", OtherConfig), ("daemon", DaemonSettings)):
        for f in attrs.fields(cls):
            rows.append((table, f.metadata["key"], repr(f.default), f.metadata["doc"]))
    return rows


def to_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as the TOML document that would produce it (OVS key names)."""

    def table(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in attrs.fields(type(obj)):
            value = getattr(obj, f.name)
            if value is None:
                if f.default is not None:
                    # metrics-address: None is the file's "none", not the default.
                    out[f.metadata["key"]] = "none"
                continue
            if f.metadata["key"] == "pmd-cpu-mask":
                value = hex(value)
            elif f.metadata["key"] == "pmd-sleep-max":
                value = sleep_text(value)
            elif f.metadata["key"] == "ctl-mode":
                value = f"{value:04o}"
            elif f.metadata["key"] == "dummy-numa":
                value = ",".join(str(n) for n in value)
            out[f.metadata["key"]] = value
        return out

    return {
        "daemon": table(cfg.daemon),
        "other_config": table(cfg.other_config),
        "bridge": [
            {
                "name": b.name,
                **(
                    {}
                    if b.datapath_type == DEFAULT_DATAPATH_TYPE
                    else {"datapath_type": b.datapath_type}
                ),
                "other_config": dict(b.other_config),
                "port": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "options": dict(p.options),
                        "other_config": dict(p.other_config),
                        **(
                            {} if p.ofport_request is None else {"ofport_request": p.ofport_request}
                        ),
                    }
                    for p in b.ports
                ],
            }
            for b in cfg.bridges
        ],
    }
