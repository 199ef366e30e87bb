"""What the configuration schema cannot check: ports against their netdev types.

:mod:`pyvswitchd.config` sits below the netdev layer and knows no netdev
type, so a port's type and options are checked here, by each type's
:meth:`~pyvswitchd.netdev.provider.Netdev.validate_options`, which opens
nothing.  The daemon runs this check before it applies a configuration
(at start, on reload, for ``config/set``) and ``--check-config`` runs it
too, so a bad option is the same error everywhere and nothing of the
configuration is applied.  Warnings are what applying it would log but
that does not make it wrong: an interface that does not exist yet, an
OVS ``pmd-rxq-affinity`` that OVS would ignore.
"""

from __future__ import annotations

from ..config import Config, ConfigError
from ..netdev.provider import NetdevError
from ..netdev.registry import NetdevRegistry
from .cpu_discovery import machine_cores, pmd_cores
from .dp_ports import local_port_type, port_options
from .rxq_sched import parse_affinity


def check_config(cfg: Config, netdevs: NetdevRegistry) -> list[str]:
    """Warnings about ``cfg``'s ports; ConfigError naming the first bad one."""
    warnings = _pmd_warnings(cfg, netdevs)
    tso = cfg.other_config.userspace_tso_enable
    for bc in cfg.bridges:
        where = f'bridge "{bc.name}"'
        local = local_port_type(bc)
        if local not in netdevs:
            raise ConfigError(
                f'{where} other_config:local-port-type: invalid value "{local}": '
                f"expected a netdev type ({', '.join(netdevs.types())})"
            )
        try:
            found = netdevs.validate(local, bc.name, {})
        except NetdevError as exc:
            raise ConfigError(f"{where}: local port: {_text(exc, bc.name)}") from None
        warnings += [f"{where}: local port: {_text(w, bc.name)}" for w in found]
        for pc in bc.ports:
            pwhere = f'{where} port "{pc.name}"'
            try:
                found = netdevs.validate(pc.type, pc.name, port_options(pc, netdevs, tso))
            except NetdevError as exc:
                raise ConfigError(f"{pwhere}: {_text(exc, pc.name)}") from None
            warnings += [f"{pwhere}: {_text(w, pc.name)}" for w in found]
            warnings += _affinity_warnings(cfg, pc.other_config.get("pmd-rxq-affinity"), pwhere)
    return warnings


def _pmd_warnings(cfg: Config, netdevs: NetdevRegistry) -> list[str]:
    """What the PMD set of ``cfg`` makes the datapath warn about, on this machine."""
    oc = cfg.other_config
    warnings = []
    if not oc.pmd_rxq_isolate and oc.pmd_rxq_assign != "group":
        warnings.append(
            "other_config:pmd-rxq-isolate: pmd-rxq-isolate can only be set false when using "
            "pmd-rxq-assign=group; true is used"
        )
    polled = any(
        (cls := netdevs.get(pc.type)) is not None and cls.pmd
        for bc in cfg.bridges
        for pc in bc.ports
    )
    if polled and not pmd_cores(oc.pmd_cpu_mask, machine_cores(oc.dummy_numa or ())):
        warnings.append(
            f"other_config:pmd-cpu-mask: {hex(oc.pmd_cpu_mask or 0)} names no core of this "
            "machine: no PMD thread runs, PMD-polled ports are not polled"
        )
    return warnings


def _affinity_warnings(cfg: Config, text: str | None, where: str) -> list[str]:
    if not text:
        return []
    try:
        pinned = parse_affinity(text)
    except ValueError as exc:
        return [
            f'{where} other_config:pmd-rxq-affinity: invalid value "{text}": {exc}; '
            "ignored, as OVS does (the queues keep their pinning)"
        ]
    oc = cfg.other_config
    cores = pmd_cores(oc.pmd_cpu_mask, machine_cores(oc.dummy_numa or ()))
    return [
        f"{where} other_config:pmd-rxq-affinity: rx queue {qid} pinned to core {core}, "
        "which has no PMD (pmd-cpu-mask): another core is assigned"
        for qid, core in sorted(pinned.items())
        if core not in cores
    ]


def _text(problem: object, name: str) -> str:
    # Netdev messages start with the device name, which the caller already gives.
    return str(problem).removeprefix(f"{name}: ")
