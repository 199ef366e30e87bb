"""Debug log lines about upcalls and installed flows, in the form OVS's tests read.

With ``vlog/set dpif_netdev:dbg`` ovs-vswitchd logs every upcall, the
packet's whole flow key on the line after ``miss upcall:``, and every flow
a PMD installs::

    ovs-netdev: miss upcall:
    recirc_id(0),dp_hash(0),skb_priority(0),in_port(1),skb_mark(0),ct_state(0),...
    flow_add: ufid:<uuid> mega_ufid:<uuid> recirc_id(0),in_port(1),...,ipv4(frag=no), actions:2

Its tests grep these lines (tests/pmd.at, tests/dpif-netdev.at): the key
line must list every metadata field as OVS's key does (``dp_hash(0)``,
``skb_priority(0)``, the conntrack fields), which this datapath does not
match on and are always 0 here; the ``flow_add`` match is the megaflow as
``dpctl/dump-flows`` prints it, so a test can compare the two.  ``ufid``
is the flow's id as ``dpctl/dump-flows -m`` shows it; ``mega_ufid`` names
the masked key under its mask, so flows that differ only in their masks
differ there (OVS's 'mega flow ufid uniqueness' test).  A flow exact on
every field (megaflows disabled) prints as the whole key, metadata
included.  A modified flow (``dpctl/mod-flow``) is a ``flow_mod`` line
with its ``old_actions``.

Both kinds share one rate limit, 600 lines a minute with bursts of 600, as
in OVS (``vlog/disable-rate-limit dpif_netdev`` lifts it).  Differences
from OVS: the upcall lines are logged by the daemon, which answers the
upcalls of every PMD, so they carry the main thread's name; OVS adds a
third line with the packet in OpenFlow syntax, which is left out here.

Callers check :meth:`FlowLog.wanted` once per batch of upcalls, so a
daemon not logging at DBG formats nothing.  The ``dpif`` module exists for
``vlog/set dpif:dbg`` (OVS's tests set it with ``dpif_netdev``); it logs
the flow operations of the ``dpctl`` commands and every flow each
revalidator pass dumps::

    netdev@ovs-netdev: flow_dump ufid:<uuid> recirc_id(0),dp_hash(0/0),skb_priority(0/0),
        in_port(1),...,ipv4(src=10.0.0.2/0.0.0.0,...), packets:0, bytes:0, used:never, actions:2
    netdev@ovs-netdev: dumped all flows

The dumped key is the one the flow was installed with, every field shown
under its mask, metadata in the order of OVS's datapath keys (recirc_id,
dp_hash, skb_priority, in_port, skb_mark, the conntrack fields): this is
what OVS's 'miss upcall key matches flow_dump' test compares with the
upcall's key.  While ufids are in use (``upcall/enable-ufid``, the
default) the dumps are terse, as OVS's are: the line has the ufid and the
statistics, ``<empty>`` for the key and no actions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ..observe.ratelimit import RateLimit
from ..observe.vlog import Level, Vlog
from ..odp.actions import Action, Output, format_actions
from ..odp.flow_key import (
    ETH_TYPE,
    FULL_MASKS,
    IN_PORT,
    RECIRC_ID,
    TCP_FLAGS,
    FlowKey,
    FlowMask,
    masked,
    ufid_for,
)
from ..odp.flow_text import format_flow, format_packet_fields
from ..odp.protocols import ETH_TYPE_NONE
from .flow_table import flow_ufid
from .upcall import exact_mask

if TYPE_CHECKING:
    from .thread_flows import FlowView

#: OVS's upcall_rl: upcall and flow-install lines share it.
UPCALL_RATE = (600, 600)

#: Metadata OVS's flow key always carries and this datapath keeps at 0,
#: in OVS's order around in_port.
_BEFORE_IN_PORT = "dp_hash(0),skb_priority(0)"
_AFTER_IN_PORT = "skb_mark(0),ct_state(0),ct_zone(0),ct_mark(0),ct_label(0)"
#: ct_state 0 under an exact mask: every flag OVS knows, cleared.
_NO_CT_FLAGS = "-new-est-rel-rpl-inv-trk-snat-dnat"


def exact_flow_text(key: FlowKey) -> str:
    """The match of a flow exact on every field (megaflows disabled), as OVS prints it.

    Such a flow matches the metadata exactly too: the conntrack state is
    printed as every flag cleared.
    """
    return packet_key_text(key).replace(",ct_state(0),", f",ct_state({_NO_CT_FLAGS}),", 1)


def packet_key_text(key: FlowKey) -> str:
    """``key`` (a packet's whole key, no mask) in the syntax of OVS's upcall log.

    Every field the packet has is printed, as OVS prints a key without a
    mask: TCP flags only when some are set, no EtherType for an 802.3
    frame.
    """
    mask = list(FULL_MASKS)
    # recirc_id and in_port come first, among metadata format_flow knows nothing of.
    mask[RECIRC_ID] = mask[IN_PORT] = 0
    if not key[TCP_FLAGS]:
        mask[TCP_FLAGS] = 0
    if key[ETH_TYPE] == ETH_TYPE_NONE:
        mask[ETH_TYPE] = 0
    rest = format_flow(key, tuple(mask))
    recirc = _c_hex(key[RECIRC_ID])
    return f"recirc_id({recirc}),{_BEFORE_IN_PORT},in_port({key[IN_PORT]}),{_AFTER_IN_PORT},{rest}"


#: The metadata of a dumped flow's key around in_port: a megaflow leaves it
#: wildcarded; an exact-match flow matches it, conntrack state under the 8
#: bits OVS keeps of it (so that field still shows its mask).
_DUMP_WILD = ("dp_hash(0/0),skb_priority(0/0)", _AFTER_IN_PORT.replace("(0)", "(0/0)"))
_DUMP_EXACT = (_BEFORE_IN_PORT, _AFTER_IN_PORT.replace("ct_state(0)", "ct_state(0/0xff)"))


def dumped_key_text(flow: FlowView) -> str:
    """A flow's key and mask as a revalidator's ``flow_dump`` line prints them.

    Every field prints (wildcards as ``value/0``) with the values of the
    key the flow was installed with.  A flow exact on every field the
    packet has is an exact-match flow: its metadata is matched too.
    """
    key, mask = flow.full_key, flow.mask
    before, after = _DUMP_EXACT if mask == exact_mask(key) else _DUMP_WILD
    recirc, recirc_mask = key[RECIRC_ID] & mask[RECIRC_ID], mask[RECIRC_ID]
    recirc_text = _c_hex(recirc)
    if recirc_mask != FULL_MASKS[RECIRC_ID]:
        recirc_text += f"/{_c_hex(recirc_mask)}"
    rest = format_packet_fields(key, mask, verbose=True, packet_type_exact=flow.packet_type_exact)
    return f"recirc_id({recirc_text}),{before},in_port({key[IN_PORT]}),{after},{rest}"


def _c_hex(value: int) -> str:
    """C's ``%#x``: no prefix for 0."""
    return f"{value:#x}" if value else "0"


def _fixed_names(name: str) -> Callable[[], tuple[str, str]]:
    names = (name, f"netdev@{name}")
    return lambda: names


class FlowLog:
    """The datapath's flow debug lines (modules ``dpif_netdev`` and ``dpif``)."""

    def __init__(self, vlog: Vlog, names: str | Callable[[], tuple[str, str]]) -> None:
        """``names`` gives the datapath's name and full name (``ovs-netdev``,
        ``netdev@ovs-netdev``) when a line is logged; a plain name is of type netdev."""
        self.log = vlog.module("dpif_netdev")
        self.dpif = vlog.module("dpif")
        #: dpif-netdev's lines name the datapath, the dpif layer's its full name.
        self._names = _fixed_names(names) if isinstance(names, str) else names
        self._rl = RateLimit(*UPCALL_RATE)
        self._dpif_rl = RateLimit(600, 600)
        self._refused_rl = RateLimit(1, 5)

    def wanted(self) -> bool:
        """Whether upcall and flow-install lines are logged now (check once per batch)."""
        return self.log.is_enabled(Level.DBG)

    def miss_upcall(self, key: FlowKey) -> None:
        """A packet missed every table: its key goes up."""
        name = self._names()[0]
        self.log.dbg(f"{name}: miss upcall:\n{packet_key_text(key)}", rl=self._rl)

    def upcall_flow(
        self, key: FlowKey, mask: FlowMask, outputs: Sequence[int], *, exact: bool = False
    ) -> None:
        """The upcall's answer for ``key``: the flow the PMD installs (``exact``: no megaflow)."""
        self.flow_add(key, mask, [Output(port) for port in outputs], exact=exact)

    def flow_add(
        self,
        key: FlowKey,
        mask: FlowMask,
        actions: Sequence[Action],
        *,
        old_actions: Sequence[Action] | None = None,
        packet_type_exact: bool = True,
        exact: bool = False,
    ) -> None:
        """A flow entered a thread's table (``old_actions``: it replaced a flow's actions).

        ``exact``: an exact-match flow (megaflows disabled), printed with its metadata.
        """
        if not self.wanted():
            return
        if exact:
            match = exact_flow_text(key)
        else:
            match = format_flow(masked(key, mask), mask, packet_type_exact=packet_type_exact)
        verb = "flow_add" if old_actions is None else "flow_mod"
        old = "" if old_actions is None else f", old_actions:{format_actions(old_actions)}"
        self.log.dbg(
            f"{verb}: ufid:{flow_ufid(key, mask)} mega_ufid:{ufid_for(key, mask)} {match}"
            f"{old}, actions:{format_actions(actions)}",
            rl=self._rl,
        )

    def refused(self, why: str) -> None:
        """The datapath refused a flow (OVS logs this at ERR, 5 at once, then 1 a minute)."""
        self.log.err(why, rl=self._refused_rl)

    def dpif_operation(
        self,
        operation: str,
        key: FlowKey,
        mask: FlowMask,
        actions: Sequence[Action] | None = None,
        *,
        packet_type_exact: bool = True,
    ) -> None:
        """A ``dpctl`` flow operation (``put[create]``, ``put[modify]``, ``flow_del``)."""
        if not self.dpif.is_enabled(Level.DBG):
            return
        match = format_flow(masked(key, mask), mask, packet_type_exact=packet_type_exact)
        tail = "" if actions is None else f", actions:{format_actions(actions)}"
        self.dpif.dbg(
            f"{self._names()[1]}: {operation} ufid:{flow_ufid(key, mask)} {match}{tail}",
            rl=self._dpif_rl,
        )

    # -- the revalidator's dumps (module dpif) -----------------------------------------

    def dumping(self) -> bool:
        """Whether the revalidator's dumps are logged now (check once per pass)."""
        return self.dpif.is_enabled(Level.DBG)

    async def log_dump(
        self,
        dumps: Iterable[AsyncGenerator[list[FlowView], None]],
        *,
        terse: bool,
        now: float,
    ) -> None:
        """One revalidator pass's dump: a line per flow of each thread's ``dumps``, then
        the end of the dump (``terse``: ufids in use, keys and actions left out)."""
        log, rl = self.dpif, self._dpif_rl
        dpif_name = self._names()[1]
        for dump in dumps:
            async with contextlib.aclosing(dump) as pages:
                async for page in pages:
                    for flow in page:
                        match = "<empty>" if terse else dumped_key_text(flow)
                        actions = "" if terse else f", actions:{format_actions(flow.actions)}"
                        used = f"{now - flow.used:.3f}s" if flow.used else "never"
                        log.dbg(
                            f"{dpif_name}: flow_dump ufid:{flow.ufid} {match}, "
                            f"packets:{flow.packets}, bytes:{flow.bytes}, used:{used}{actions}",
                            rl=rl,
                        )
        log.dbg(f"{dpif_name}: dumped all flows", rl=rl)
        log.dbg(f"{dpif_name}: flow_dump_destroy success", rl=rl)
