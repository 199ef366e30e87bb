"""``dpctl/*`` flow commands: add, modify, delete, get and dump megaflows.

Like OVS's dpif-netdev, a flow added without a PMD goes into every
thread's table (each PMD and the main thread), and ``dump-flows`` lists
the flows per thread in OVS's layout::

    flow-dump from pmd on cpu core: 0
    recirc_id(0),in_port(1),...,ipv4(frag=no), packets:4, bytes:424, used:2.312s, actions:3

Each thread's table is reached through :mod:`.thread_flows`: a PMD worker
process applies edits between two iterations and sends its flows in pages.
Errors carry dpctl's wording (``pyvswitchd: updating flow table (File
exists)``).  ``dump-flows`` is a streamed reply built through the control
server's pacer: tens of thousands of flows are formatted a slice at a time,
page by page, while the daemon keeps serving, and sent as they are formatted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING

from .. import PROGRAM_NAME
from ..control.registry import (
    UNLIMITED,
    CommandContext,
    CommandError,
    CommandRegistry,
    Reply,
    StreamReply,
)
from ..odp.actions import ActionSyntaxError, format_actions, parse_actions
from ..odp.flow_text import (
    FlowMatch,
    FlowSyntaxError,
    InPortNotExactError,
    format_flow,
    parse_match,
)
from .flow_table import flow_ufid
from .thread_flows import FlowView

if TYPE_CHECKING:
    from .dp import AnyPmd, Datapath


def dpctl_error(what: str, err: int | None = None) -> CommandError:
    """A dpctl error as OVS words it: ``<program>: <what> (<strerror>)``."""
    suffix = f" ({os.strerror(err)})" if err else ""
    return CommandError(f"{PROGRAM_NAME}: {what}{suffix}")


def check_dp_name(dp: Datapath, name: str) -> None:
    """Refuse a datapath name that is not ours, as dpctl's open would."""
    # The bare name is what dpif-netdev commands take.
    if name == dp.name and dp.exists:
        return
    dp_type, sep, bare = name.partition("@")
    if not (sep and bare == dp.name and dp.exists):
        raise dpctl_error(f"opening datapath {name} failed", errno.ENODEV)
    if dp_type != dp.dp_ports.dp_type:
        # OVS's userspace classes share one set of datapaths: the other class fails.
        raise dpctl_error(f"opening datapath {name} failed", errno.EINVAL)


def _thread_title(pmd: AnyPmd) -> str:
    if pmd.is_main:
        return "flow-dump from the main thread:"
    return f"flow-dump from pmd on cpu core: {pmd.core_id}"


def format_used(flow: FlowView, now: float) -> str:
    return f"{now - flow.used:.3f}s" if flow.used else "never"


def miniflow_bits(mask: tuple[int, ...]) -> tuple[int, int]:
    """A stand-in for OVS's miniflow map sizes: masked fields before/after L3."""
    fields = [i for i, m in enumerate(mask) if m]
    return sum(1 for i in fields if i < 6), sum(1 for i in fields if i >= 6)


def format_flow_line(
    dp: Datapath,
    flow: FlowView,
    now: float,
    *,
    verbose: bool,
    names: bool,
    port_names: dict[int, str] | None = None,
) -> str:
    """One dump-flows line; ``port_names`` saves looking them up per flow of a dump."""
    if port_names is None and (verbose or names):
        port_names = dp.port_names()
    elif not (verbose or names):
        port_names = None
    text = format_flow(
        flow.full_key if verbose else flow.key,
        flow.mask,
        verbose=verbose,
        port_names=port_names,
        packet_type_exact=flow.packet_type_exact,
    )
    stats = f"packets:{flow.packets}, bytes:{flow.bytes}, used:{format_used(flow, now)}"
    actions = format_actions(flow.actions, port_names)
    if verbose:
        a, b = miniflow_bits(flow.mask)
        return (
            f"ufid:{flow.ufid}, {text}, {stats}, dp:ovs, actions:{actions}, "
            f"dp-extra-info:miniflow_bits({a},{b})"
        )
    return f"{text}, {stats}, actions:{actions}"


def flow_data(
    dp: Datapath, pmd: AnyPmd, flow: FlowView, now: float, names: dict[int, str] | None = None
) -> dict[str, object]:
    if names is None:
        names = dp.port_names()
    return {
        "ufid": flow.ufid,
        "thread": "main" if pmd.is_main else "pmd",
        "core_id": None if pmd.is_main else pmd.core_id,
        "match": format_flow(flow.key, flow.mask, verbose=False, port_names=None),
        "packets": flow.packets,
        "bytes": flow.bytes,
        "used_s": round(now - flow.used, 3) if flow.used else None,
        "actions": format_actions(flow.actions, names),
    }


def register_flow_commands(dp: Datapath, registry: CommandRegistry) -> None:
    """Register dpctl/{add,mod,del,get,dump}-flow(s) on ``registry``."""

    def split_dp(args: Sequence[str], n_required: int) -> list[str]:
        # "[dp] flow actions": a leading extra argument names the datapath.
        rest = list(args)
        if len(rest) > n_required:
            check_dp_name(dp, rest.pop(0))
        elif not dp.exists:
            raise dpctl_error("no datapaths exist") from None
        return rest

    def parse(text: str, action: str = "updating flow table", put: str = "") -> FlowMatch:
        try:
            return parse_match(text, port_names=dp.port_numbers())
        except InPortNotExactError as exc:
            # OVS's datapath refuses such a flow: EINVAL to the caller, the
            # reason in the log, at ERR as OVS main logs it ("put[create]").
            if put:
                dp.flow_log.refused(f"failed to put[{put}] flow: {exc}")
            raise dpctl_error(action, errno.EINVAL) from None
        except FlowSyntaxError as exc:
            raise dpctl_error(f"parsing flow key ({exc})") from None

    async def put(args: Sequence[str], *, create: bool, modify: bool) -> str:
        flow_text, actions_text = split_dp(args, 2)
        match = parse(flow_text, put="create" if create else "modify")
        key, mask = match.key, match.mask
        try:
            actions = parse_actions(actions_text, port_names=dp.port_numbers())
        except ActionSyntaxError as exc:
            raise dpctl_error(f"parsing actions ({exc})") from None
        threads = [flows for _, flows in dp.thread_flows()]
        existing = [await flows.find(key, mask) for flows in threads]
        if any(existing) and not modify:
            raise dpctl_error("updating flow table", errno.EEXIST)
        if not any(existing) and not create:
            raise dpctl_error("updating flow table", errno.ENOENT)
        log = dp.flow_log
        log.dpif_operation(
            "put[create]" if create else "put[modify]",
            key,
            mask,
            actions,
            packet_type_exact=match.packet_type_exact,
        )
        for flows, found in zip(threads, existing, strict=True):
            # The old actions only for the log line (flow_mod), and only when it is wanted.
            old = await flows.get(flow_ufid(key, mask)) if found and log.wanted() else None
            await flows.put(match.unmasked_key, mask, actions, match.packet_type_exact)
            log.flow_add(
                key,
                mask,
                actions,
                old_actions=None if old is None else old.actions,
                packet_type_exact=match.packet_type_exact,
            )
        return ""

    async def add_flow(ctx: CommandContext, args: Sequence[str]) -> str:
        return await put(args, create=True, modify=False)

    async def mod_flow(ctx: CommandContext, args: Sequence[str]) -> str:
        return await put(args, create=False, modify=True)

    async def del_flow(ctx: CommandContext, args: Sequence[str]) -> str:
        (flow_text,) = split_dp(args, 1)
        match = parse(flow_text, "deleting flow")
        dp.flow_log.dpif_operation(
            "flow_del", match.key, match.mask, packet_type_exact=match.packet_type_exact
        )
        found = False
        for _, flows in dp.thread_flows():
            found = await flows.delete(match.key, match.mask) or found
        if not found:
            raise dpctl_error("deleting flow", errno.ENOENT)
        return ""

    async def del_flows(ctx: CommandContext, args: Sequence[str]) -> str:
        if args:
            check_dp_name(dp, args[0])
        if not dp.exists:
            raise dpctl_error("no datapaths exist")
        for _, flows in dp.thread_flows():
            await flows.flush()
        return ""

    async def get_flow(ctx: CommandContext, args: Sequence[str]) -> Reply:
        (ufid_text,) = split_dp(args, 1)
        ufid = ufid_text.removeprefix("ufid:")
        for pmd, flows in dp.thread_flows():
            flow = await flows.get(ufid)
            if flow is not None:
                now = dp.clock.seconds()
                line = format_flow_line(dp, flow, now, verbose=True, names=True)
                return Reply.structured(line + "\n", flow_data(dp, pmd, flow, now))
        raise dpctl_error("getting flow", errno.ENOENT)

    def dump_flows(ctx: CommandContext, args: Sequence[str]) -> StreamReply:
        verbose = names = False
        pmd_filter: int | None = None
        filter_text: str | None = None
        for arg in args:
            if arg in ("-m", "--more"):
                verbose = True
            elif arg == "--names":
                names = True
            elif arg == "--no-names":
                names = False
            elif arg.startswith("pmd="):
                pmd_filter = parse_pmd_filter(arg[4:])
            elif arg.startswith("filter="):
                filter_text = arg[7:]
            elif arg.startswith("type="):
                continue  # every flow here is an "ovs" datapath flow
            else:
                check_dp_name(dp, arg)
        if not dp.exists:
            raise CommandError(
                f"{PROGRAM_NAME}: no datapaths exist\n"
                f"{PROGRAM_NAME}: datapath not found ({os.strerror(errno.EINVAL)})"
            )
        filt = parse(filter_text) if filter_text else None
        filt_km = (filt.key, filt.mask) if filt is not None else None
        now = dp.clock.seconds()
        port_names = dp.port_names()
        threads = dp.thread_flows()
        # OVS's order: the main thread first, then the PMDs by core.
        threads = [threads[-1], *threads[:-1]]
        if pmd_filter is not None:
            threads = [t for t in threads if (-1 if t[0].is_main else t[0].core_id) == pmd_filter]

        async def pages() -> AsyncGenerator[list[tuple[AnyPmd, FlowView]], None]:
            # A page at a time: a worker sends its flows in pages, and each
            # page is formatted through the pacer before the next is asked for.
            for pmd, flows in threads:
                async with contextlib.aclosing(flows.dump()) as dump:
                    async for page in dump:
                        yield [
                            (pmd, flow)
                            for flow in page
                            if filt_km is None or _matches(flow, *filt_km)
                        ]

        async def text() -> AsyncIterator[str]:
            shown: AnyPmd | None = None

            def line(item: tuple[AnyPmd, FlowView]) -> str:
                nonlocal shown
                pmd, flow = item
                text = format_flow_line(
                    dp, flow, now, verbose=verbose, names=names, port_names=port_names
                )
                # One thread's flows only: OVS prints no title then.
                if pmd is shown or pmd_filter is not None:
                    return text + "\n"
                shown = pmd
                return f"{_thread_title(pmd)}\n{text}\n"

            async with contextlib.aclosing(pages()) as batches:
                async for batch in batches:
                    async with contextlib.aclosing(ctx.pacer.render(batch, line)) as chunks:
                        async for chunk in chunks:
                            yield chunk

        async def data() -> AsyncIterator[str]:
            first = True

            def element(item: tuple[AnyPmd, FlowView]) -> str:
                nonlocal first
                value = flow_data(dp, item[0], item[1], now, port_names)
                text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                if first:
                    first = False
                    return text
                return "," + text

            yield "["
            async with contextlib.aclosing(pages()) as batches:
                async for batch in batches:
                    async with contextlib.aclosing(ctx.pacer.render(batch, element)) as chunks:
                        async for chunk in chunks:
                            yield chunk
            yield "]"

        return StreamReply(text, data)

    registry.register("dpctl/add-flow", "[dp] flow actions", 2, 3, add_flow, mutating=True)
    registry.register("dpctl/mod-flow", "[dp] flow actions", 2, 3, mod_flow, mutating=True)
    registry.register("dpctl/del-flow", "[dp] flow", 1, 2, del_flow, mutating=True)
    registry.register("dpctl/del-flows", "[dp] [file]", 0, 2, del_flows, mutating=True)
    registry.register("dpctl/get-flow", "[dp] ufid", 1, 2, get_flow)
    registry.register(
        "dpctl/dump-flows",
        "[-m] [--names] [dp] [filter=..] [type=..] [pmd=..]",
        0,
        UNLIMITED,
        dump_flows,
    )


def parse_pmd_filter(text: str) -> int:
    """``pmd=N`` of dump-flows: a core id, or -1 for the main thread.

    Read as C's ``%d`` reads (leading blanks, a sign, digits, anything
    after them ignored); anything else, or a negative number other than
    -1, is refused with an empty error text, as OVS refuses it.
    """
    match = _LEADING_INT.match(text)
    if match is None:
        raise CommandError("")
    value = int(match.group())
    if value < -1:
        raise CommandError("")
    return value


_LEADING_INT = re.compile(r"[ \t\n\v\f\r]*[-+]?[0-9]+")


def _matches(flow: FlowView, key: tuple[int, ...], mask: tuple[int, ...]) -> bool:
    """``filter=``: the flow's key agrees with ``key`` on every bit ``mask`` sets."""
    return all((fk & m) == (k & m) for fk, k, m in zip(flow.key, key, mask, strict=True))
