"""``dpif-netdev/*`` and ``dpctl/*`` unixctl commands of the datapath.

Argument handling copies dpif-netdev's quirks because scripts depend on
them: ``-pmd CORE`` filters, any other word is taken as a datapath name,
and an unknown name silently means "the only datapath" for the show/clear
commands, while ``pmd-rxq-rebalance`` insists on an existing one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

from ..config import PortConfig
from ..control.registry import UNLIMITED, CommandContext, CommandError, CommandRegistry, Reply
from ..netdev.provider import NetdevError
from . import rxq_show
from .clock import TimeCommands
from .dp import AnyPmd, Datapath
from .dpctl_datapaths import register_dpctl_datapath_commands
from .dpif_show import register_dpif_show_commands
from .flow_commands import check_dp_name, dpctl_error, register_flow_commands
from .mac_learning import register_fdb_commands
from .perf import Stat, parse_perf_log_set
from .perf_format import format_perf_show, perf_data
from .perf_snapshot import PerfReader
from .port import Rxq
from .sleep import format_sleep_show
from .stats_block import PORT_FIELDS
from .upcall_commands import register_upcall_commands
from .worker_messages import ClearStats
from .worker_pmd import WorkerGone, WorkerPmd

NO_DATAPATH = "please specify an existing datapath"


def _parse_common(
    dp: Datapath, args: Sequence[str], *, secs: bool = False
) -> tuple[int | None, int | None]:
    """(-pmd core or None, -secs value or None); raise when there is no datapath."""
    core: int | None = None
    seconds: int | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-pmd" and i + 1 < len(args):
            value = args[i + 1]
            core = int(value) if value.isdigit() else core
            i += 2
        elif secs and arg == "-secs" and i + 1 < len(args):
            seconds = rxq_show.parse_secs(args[i + 1])
            i += 2
        else:
            i += 1  # a datapath name: with one datapath, any name means it
    if not dp.exists:
        raise CommandError(NO_DATAPATH)
    return core, seconds


def _selected(dp: Datapath, core: int | None) -> list[AnyPmd]:
    return [p for p in dp.sorted_pmds() if core is None or p.core_id == core]


def register_commands(dp: Datapath, registry: CommandRegistry) -> None:
    """Register the datapath's commands on ``registry``."""

    async def perf_show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        histograms, it_hist, ms_hist = True, 0, 0
        rest = list(args)
        while rest:
            if rest[0] == "-nh":
                histograms = False
                rest.pop(0)
            elif rest[0] in ("-it", "-ms") and len(rest) > 1:
                value = _clamped_int(rest[1], 0, 1000)
                if rest[0] == "-it":
                    it_hist = value
                else:
                    ms_hist = value
                del rest[:2]
            else:
                break
        core, _ = _parse_common(dp, rest)
        now = time.time()
        blocks, data = [], []
        for pmd in _selected(dp, core):
            perf: PerfReader
            if isinstance(pmd, WorkerPmd):
                try:
                    perf = await pmd.perf_detail(histories=bool(it_hist or ms_hist))
                except WorkerGone:
                    continue  # it is being replaced: no figures to show this time
            else:
                perf = pmd.perf
            blocks.append(
                format_perf_show(
                    perf,
                    pmd.header(),
                    is_pmd=not pmd.is_main,
                    now_wall=now,
                    histograms=histograms,
                    it_hist=it_hist,
                    ms_hist=ms_hist,
                    full_metrics=dp.settings.perf_metrics,
                    # PMDs have a deferred work ring; the main thread never defers.
                    work_ring=not pmd.is_main,
                )
            )
            entry = perf_data(perf, is_pmd=not pmd.is_main, now_wall=now)
            entry.update(_thread_ids(pmd))
            data.append(entry)
        return Reply.structured("".join(blocks), data)

    async def stats_clear(ctx: CommandContext, args: Sequence[str]) -> str:
        core, _ = _parse_common(dp, args)
        for pmd in _selected(dp, core):
            if isinstance(pmd, WorkerPmd):
                with contextlib.suppress(WorkerGone):
                    await pmd.request(ClearStats())
            elif pmd.perf.polling:
                pmd.perf.request_clear()
            else:
                pmd.perf.clear()
        return ""

    def rxq_show_cmd(ctx: CommandContext, args: Sequence[str]) -> Reply:
        core, secs = _parse_common(dp, args, secs=True)
        secs = secs or rxq_show.parse_secs(None)
        dp.refresh_workers()
        views = [_usage_view(p) for p in dp.sorted_pmds() if not p.is_main]
        text = rxq_show.format_pmd_rxq_show(views, secs, core_filter=core)
        return Reply.structured(text, rxq_show.pmd_rxq_show_data(views, secs, core_filter=core))

    async def rxq_rebalance(ctx: CommandContext, args: Sequence[str]) -> str:
        if (args and args[0] != dp.name) or not dp.exists:
            raise CommandError(NO_DATAPATH)
        await dp.reconfigure()
        return "pmd rxq rebalance requested."

    def sleep_show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        _parse_common(dp, args)
        pmds = [(p.numa_id, p.core_id, p.max_sleep_us) for p in dp.pmds.values()]
        data = {
            "default_max_sleep_us": dp.settings.sleep.default_us,
            "pmds": [{"numa_id": n, "core_id": c, "max_sleep_us": v} for n, c, v in pmds],
        }
        return Reply.structured(format_sleep_show(dp.settings.sleep, pmds), data)

    def perf_log_set(ctx: CommandContext, args: Sequence[str]) -> str:
        try:
            new = parse_perf_log_set(args, dp.perf_log)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        dp.perf_log.assign(new)
        dp.knobs_changed()
        dp.log.info(new.summary())
        return ""

    def bond_show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        _parse_common(dp, args)
        return Reply.structured("", {"bonds": []})  # no bonds in this datapath

    registry.register(
        "dpif-netdev/pmd-stats-clear", "[-pmd core] [dp]", 0, 3, stats_clear, mutating=True
    )
    registry.register(
        "dpif-netdev/pmd-rxq-show", "[-pmd core] [-secs secs] [dp]", 0, 5, rxq_show_cmd
    )
    registry.register("dpif-netdev/pmd-sleep-show", "[dp]", 0, 1, sleep_show)
    registry.register(
        "dpif-netdev/pmd-perf-show",
        "[-nh] [-it iter-history-len] [-ms ms-history-len] [-pmd core] [dp]",
        0,
        8,
        perf_show,
    )
    registry.register("dpif-netdev/pmd-stats-show", None, 0, 8, perf_show)
    registry.register("dpif-netdev/pmd-rxq-rebalance", "[dp]", 0, 1, rxq_rebalance, mutating=True)
    registry.register(
        "dpif-netdev/pmd-perf-log-set",
        "on|off [-b before] [-a after] [-e|-ne] [-us usec] [-q qlen]",
        0,
        10,
        perf_log_set,
        mutating=True,
    )
    registry.register("dpif-netdev/bond-show", "[dp]", 0, 1, bond_show)
    _register_dpctl(dp, registry)
    register_flow_commands(dp, registry)
    register_dpif_show_commands(dp, registry, lookups)
    register_upcall_commands(dp, registry)
    register_dpctl_datapath_commands(dp, registry)
    dp.offload.register_commands(registry, dp.workers.gather_offload_counters)
    TimeCommands(dp.clock, dp.clock_changed).register(registry)
    register_fdb_commands(
        registry,
        lambda: {name: b.mac_learning for name, b in dp.normal.items()},
        lambda port_no: _fdb_port_name(dp, port_no),
    )


def _fdb_port_name(dp: Datapath, port_no: int) -> str:
    port = dp.ports.get(port_no)
    return "LOCAL" if port is not None and port.name in dp.bridges else str(port_no)


def _thread_ids(pmd: AnyPmd) -> dict[str, object]:
    if pmd.is_main:
        return {"thread": "main", "numa_id": None, "core_id": None}
    return {"thread": "pmd", "numa_id": pmd.numa_id, "core_id": pmd.core_id}


def _clamped_int(text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    return max(lo, min(hi, value))


def _usage_view(pmd: AnyPmd) -> rxq_show.PmdUsage:
    def rxq_view(rxq: Rxq) -> rxq_show.RxqUsage:
        return rxq_show.RxqUsage(
            port_name=rxq.port.name,
            qid=rxq.qid,
            enabled=True,
            intervals=rxq_show.ring_newest_last(rxq.intervals, rxq.intrvl_idx),
        )

    return rxq_show.PmdUsage(
        core_id=pmd.core_id,
        numa_id=pmd.numa_id,
        isolated=pmd.isolated,
        intrvl_cycles=pmd.intrvl_cycles,
        busy_intervals=rxq_show.ring_newest_last(pmd.busy_intervals, pmd.busy_idx),
        rxqs=[rxq_view(r) for r in pmd.poll_list],
    )


# ---------------------------------------------------------------------------
# dpctl


def lookups(dp: Datapath) -> tuple[int, int, int]:
    """(hit, missed, lost) over every thread, as ``dpctl/show`` reports them."""
    hit = missed = lost = 0
    for pmd in dp.sorted_pmds():
        n = pmd.perf.get_all()
        hit += (
            n[Stat.PHWOL_HIT]
            + n[Stat.SIMPLE_HIT]
            + n[Stat.EXACT_HIT]
            + n[Stat.SMC_HIT]
            + n[Stat.MASKED_HIT]
        )
        missed += n[Stat.MISS]
        lost += n[Stat.LOST]
    return hit, missed, lost


def _parse_iface(spec: str) -> tuple[PortConfig, str | None]:
    name, *items = spec.split(",")
    ptype, bridge, options = "system", None, {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise dpctl_error(f"{spec}: option {key} requires a value")
        if key == "type":
            ptype = value
        elif key == "bridge":
            bridge = value
        else:
            options[key] = value
    return PortConfig(name=name, type=ptype, options=options), bridge


def _register_dpctl(dp: Datapath, registry: CommandRegistry) -> None:
    def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        stats = False
        names: list[str] = []
        for arg in args:
            if arg in ("-s", "--statistics"):
                stats = True
            elif arg in ("-m", "--more", "--names", "--no-names"):
                continue
            else:
                names.append(arg)
        for name in names:
            check_dp_name(dp, name)
        if not dp.exists:
            return Reply.structured("", [])
        dp.refresh_workers()
        hit, missed, lost = lookups(dp)
        n_flows = sum(p.flow_count for p in dp.sorted_pmds())
        lines = [
            f"{dp.full_name}:",
            f"  lookups: hit:{hit} missed:{missed} lost:{lost}",
            f"  flows: {n_flows}",
        ]
        ports = []
        for no in sorted(dp.ports):
            port = dp.ports[no]
            status = port.netdev.status()
            kind = f"{port.type}: {status}" if status else port.type
            lines.append(f"  port {no}: {port.name} ({kind})")
            st = dp.port_stats(port)
            if stats:
                lines += [
                    f"    RX packets:{st.rx_packets} errors:{st.rx_errors} "
                    f"dropped:{st.rx_dropped} overruns:? frame:?",
                    f"    TX packets:{st.tx_packets} errors:{st.tx_errors} "
                    f"dropped:{st.tx_dropped} aborted:? carrier:?",
                    "    collisions:?",
                    f"    RX bytes:{st.rx_bytes}  TX bytes:{st.tx_bytes}",
                ]
            ports.append(
                {
                    "port_no": no,
                    "name": port.name,
                    "type": port.type,
                    "status": status,
                    "stats": {k: getattr(st, k) for k in PORT_FIELDS},
                }
            )
        for name, type_, why in dp.dp_ports.unopened():
            # OVS keeps such an interface in its Interface table, with "error" set.
            why = why.removeprefix(f"{name}: ")
            lines.append(f'  port -: {name} ({type_}: error="{why}")')
            ports.append({"port_no": None, "name": name, "type": type_, "status": "", "error": why})
        data = [
            {
                "name": dp.full_name,
                "lookups": {"hit": hit, "missed": missed, "lost": lost},
                "flows": n_flows,
                "ports": ports,
            }
        ]
        return Reply.structured("\n".join(lines) + "\n", data)

    async def add_if(ctx: CommandContext, args: Sequence[str]) -> str:
        check_dp_name(dp, args[0])
        for spec in args[1:]:
            pc, bridge = _parse_iface(spec)
            bridge = bridge or next(iter(dp.bridges), None)
            try:
                await dp.add_port(bridge, pc)
            except NetdevError as exc:
                raise dpctl_error(f"adding {pc.name} to {args[0]} failed ({exc})") from None
        return ""

    async def del_if(ctx: CommandContext, args: Sequence[str]) -> str:
        check_dp_name(dp, args[0])
        for name in args[1:]:
            try:
                await dp.del_port(name)
            except NetdevError:
                raise dpctl_error(f"{name}: no port named {name}") from None
        return ""

    registry.register(
        "dpctl/show",
        "[-s] [dp...]",
        0,
        UNLIMITED,
        show,
    )
    registry.register("dpctl/add-if", "dp iface...", 2, UNLIMITED, add_if, mutating=True)
    registry.register("dpctl/del-if", "dp iface...", 2, UNLIMITED, del_if, mutating=True)
