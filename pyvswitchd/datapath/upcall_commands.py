"""``upcall/*`` and ``revalidator/*``: steering the upcall and the revalidator.

OVS registers these in its upcall layer (the "udpif" between ofproto and
the datapath); tests and operators use them to hold the revalidator while
they edit flows by hand (``revalidator/pause`` .. ``resume``), to let it
catch up before reading flows (``revalidator/wait``), to throw every flow
away (``revalidator/purge``) and to debug with exact-match flows
(``upcall/disable-megaflows``).  Replies are worded as OVS words them.

``upcall/show`` prints one block per datapath, as OVS does per udpif::

    netdev@ovs-netdev:
      flows         : (current 2) (avg 1) (max 2) (limit 10000)
      dump duration : 1ms
      ufid enabled : true

      1: (keys 2)

There is one revalidator (a task, numbered 1); its keys are every flow of
the datapath.  The limit follows OVS's rule from the passes' durations but
nothing here refuses a flow over it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..control.registry import CommandContext, CommandError, CommandRegistry

if TYPE_CHECKING:
    from .dp import Datapath

#: The number ``upcall/show`` gives the revalidator (OVS prints its thread id).
REVALIDATOR_ID = 1

MEGAFLOWS_DISABLED = "megaflows disabled"
MEGAFLOWS_ENABLED = "megaflows enabled"
UFID_DISABLED = "Datapath dumping tersely using UFID disabled"
UFID_ENABLED = "Datapath dumping tersely using UFID enabled for supported datapaths"
#: OVS's answer to ``revalidator/wait`` unless exactly one datapath has a revalidator.
NOT_ONE_UDPIF = "can't wait on multiple udpifs."


def format_upcall_show(dp: Datapath) -> str:
    """``upcall/show``'s text (empty without a bridge: OVS has no udpif then)."""
    if not dp.bridges:
        return ""
    dp.refresh_workers()
    stats = dp.revalidator.stats
    n_flows = dp.flow_count()
    lines = [
        f"{dp.full_name}:",
        f"  flows         : (current {n_flows}) (avg {stats.avg_flows}) "
        f"(max {stats.max_flows}) (limit {stats.flow_limit})",
    ]
    offloaded = dp.offload.flow_count()
    if offloaded:
        lines.append(f"  offloaded flows : {offloaded}")
    lines += [
        f"  dump duration : {stats.dump_duration_ms}ms",
        f"  ufid enabled : {'true' if dp.upcall.use_ufid else 'false'}",
        "",
        f"  {REVALIDATOR_ID}: (keys {n_flows})",
    ]
    return "\n".join(lines) + "\n"


async def flush_all_flows(dp: Datapath) -> None:
    """Delete every flow of every thread (OVS's flush of all datapaths)."""
    for _, flows in dp.thread_flows():
        await flows.flush()


def register_upcall_commands(dp: Datapath, registry: CommandRegistry) -> None:
    """Register ``upcall/*`` and ``revalidator/*`` on ``registry``."""

    def show(ctx: CommandContext, args: Sequence[str]) -> str:
        return format_upcall_show(dp)

    async def set_megaflows(enabled: bool) -> str:
        dp.upcall.megaflows = enabled
        # Flows installed under the other rule would keep matching: start afresh.
        await flush_all_flows(dp)
        return MEGAFLOWS_ENABLED if enabled else MEGAFLOWS_DISABLED

    async def disable_megaflows(ctx: CommandContext, args: Sequence[str]) -> str:
        return await set_megaflows(False)

    async def enable_megaflows(ctx: CommandContext, args: Sequence[str]) -> str:
        return await set_megaflows(True)

    def disable_ufid(ctx: CommandContext, args: Sequence[str]) -> str:
        dp.upcall.use_ufid = False
        return UFID_DISABLED

    def enable_ufid(ctx: CommandContext, args: Sequence[str]) -> str:
        dp.upcall.use_ufid = True
        return UFID_ENABLED

    async def wait(ctx: CommandContext, args: Sequence[str]) -> str:
        if not dp.bridges:
            raise CommandError(NOT_ONE_UDPIF)
        await dp.revalidator.wait_pass()
        return ""

    async def purge(ctx: CommandContext, args: Sequence[str]) -> str:
        reval = dp.revalidator
        was_paused = reval.paused
        await reval.pause()
        try:
            await flush_all_flows(dp)
        finally:
            if not was_paused:
                reval.resume()
        return ""

    async def pause(ctx: CommandContext, args: Sequence[str]) -> str:
        await dp.revalidator.pause()
        return ""

    def resume(ctx: CommandContext, args: Sequence[str]) -> str:
        dp.revalidator.resume()
        return ""

    registry.register("upcall/show", "", 0, 0, show)
    registry.register("upcall/disable-megaflows", "", 0, 0, disable_megaflows, mutating=True)
    registry.register("upcall/enable-megaflows", "", 0, 0, enable_megaflows, mutating=True)
    registry.register("upcall/disable-ufid", "", 0, 0, disable_ufid, mutating=True)
    registry.register("upcall/enable-ufid", "", 0, 0, enable_ufid, mutating=True)
    registry.register("revalidator/wait", "", 0, 0, wait)
    registry.register("revalidator/purge", "", 0, 0, purge, mutating=True)
    # As in OVS, pause and resume are left out of list-commands.
    registry.register("revalidator/pause", None, 0, 0, pause, mutating=True)
    registry.register("revalidator/resume", None, 0, 0, resume, mutating=True)
