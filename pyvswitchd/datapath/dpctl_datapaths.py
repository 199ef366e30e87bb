"""``dpctl/add-dp`` and ``dpctl/del-dp``: a datapath without bridges.

OVS's tests build a datapath by hand (``dpctl/add-dp netdev@dp0``, then
``dpctl/add-if``) to drive the datapath alone, with no bridge deciding
anything: its ports belong to no bridge, packets that miss its flows are
dropped, and flows are what ``dpctl/add-flow`` puts there.  This daemon
has one datapath at a time, so ``add-dp`` works while no bridge is
configured (see :mod:`.dp_ports`), and ``del-dp`` removes only such a
datapath.  Names are ``TYPE@NAME``, the type ``netdev`` or ``dummy`` (the
class OVS's tests make their datapaths with: the same userspace datapath,
which then shows as ``dummy@NAME``); a bare name means type ``system``, as
in OVS, which this daemon does not have.  Errors are dpctl's.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..control.registry import UNLIMITED, CommandContext, CommandRegistry
from ..netdev.provider import NetdevError
from .dp_ports import DP_TYPES
from .flow_commands import dpctl_error

if TYPE_CHECKING:
    from .dp import Datapath


def split_dp_name(spec: str) -> tuple[str, str]:
    """(type, name) of ``TYPE@NAME``; a name alone is of type ``system`` (OVS's rule)."""
    dp_type, sep, name = spec.partition("@")
    return (dp_type, name) if sep else ("system", spec)


def register_dpctl_datapath_commands(dp: Datapath, registry: CommandRegistry) -> None:
    """Register ``dpctl/add-dp`` and ``dpctl/del-dp`` on ``registry``."""

    async def add_dp(ctx: CommandContext, args: Sequence[str]) -> str:
        dp_type, name = split_dp_name(args[0])
        if dp_type not in DP_TYPES or not name:
            raise dpctl_error("add_dp", errno.EAFNOSUPPORT)
        if dp.exists:
            # One datapath at a time: another name cannot be made beside it.
            raise dpctl_error("add_dp", errno.EEXIST if name == dp.name else errno.EBUSY)
        try:
            await dp.add_dp(name, dp_type)
        except NetdevError:
            raise dpctl_error("add_dp", errno.EEXIST) from None  # made meanwhile
        if len(args) > 1:
            await registry.invoke(CommandContext(name="dpctl/add-if"), list(args))
        return ""

    async def del_dp(ctx: CommandContext, args: Sequence[str]) -> str:
        dp_type, name = split_dp_name(args[0])
        if dp_type not in DP_TYPES or not dp.exists or name != dp.name:
            raise dpctl_error("opening datapath", errno.ENODEV)
        if dp_type != dp.dp_ports.dp_type:
            raise dpctl_error("opening datapath", errno.EINVAL)
        if not dp.dp_ports.standalone:
            # The bridges' datapath lives as long as they do.
            raise dpctl_error("del_dp", errno.EBUSY)
        await dp.del_dp()
        return ""

    registry.register("dpctl/add-dp", "dp [iface...]", 1, UNLIMITED, add_dp, mutating=True)
    registry.register("dpctl/del-dp", "dp", 1, 1, del_dp, mutating=True)
