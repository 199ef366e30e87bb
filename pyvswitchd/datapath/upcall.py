"""The upcall: what happens to packets that missed every cache and megaflow.

The misses of one received batch leave the PMD's fast path together, with
their flow keys.  For each key the bridge of its in_port decides with its
NORMAL action (:mod:`.normal`) and the answer is a :class:`Megaflow` --
the mask under which the decision holds, the output ports, the deciding
bridge -- which the PMD installs in its own flow table, where the packets
that follow hit it.  A key covered by the megaflow answered for an earlier
key of the same batch is answered with that key's index instead: the PMD
uses the flow installed for the earlier one, as OVS's PMD finds the flow
its previous upcall installed, and the bridge does not see (or learn from)
the packet twice.  A key whose in_port has no bridge (the port just left)
is counted as ``datapath_drop_upcall_error`` and the packet dropped.

The bridges live in the daemon and a PMD may run in a worker process, so
answers are plain data: the PMD compiles actions on its side, once per
distinct output list (:class:`ExecutorCache`), shared by every flow with
that list -- which lets the pipeline run a batch spread over many such
flows with a single action call; the revalidator uses the same cache when
a MAC table change moves flows.

With megaflows disabled (``upcall/disable-megaflows``) every answer carries
:func:`exact_mask` of its key instead of the bridge's mask: the flow
installed then matches only packets with the very same headers, as OVS's
exact-match flows do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from ..odp import flow_key as fk
from ..odp.actions import Output
from ..odp.flow_key import IN_PORT, FlowKey, FlowMask, masked
from ..odp.protocols import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    ETH_TYPE_IPV6,
    ETH_TYPE_RARP,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
)
from .execute import compile_actions
from .flow_table import DpFlow, Executor

if TYPE_CHECKING:
    from ..observe.coverage import Coverage
    from .flow_log import FlowLog
    from .normal import NormalBridge
    from .port import Port


#: What the bridge decided for a key: (mask, output ports, deciding bridge).
#: A plain tuple: answers cross to PMD worker processes in every upcall, and
#: pickle handles tuples an order of magnitude faster than class instances.
Megaflow: TypeAlias = tuple[FlowMask, tuple[int, ...], str]


#: The answer about one missed key: a megaflow to install, the index of an
#: earlier key of the batch whose megaflow covers it, or None (lost).
Answer = Megaflow | int | None


_FULL = fk.FULL_MASKS
_IPV4_ADDR = 0xFFFF_FFFF
_ICMP_FIELD = 0xFF
_PORT_PROTOS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)


def exact_mask(key: FlowKey) -> FlowMask:
    """The mask that matches every header field ``key``'s packet has, and no other.

    Fields the packet does not carry (L4 ports of a later fragment, TCP
    flags of a UDP packet, ARP addresses of an IP packet) stay wildcarded,
    as in OVS's exact-match flows; the widths are those the flow syntax
    uses (32 bits for IPv4 and ARP addresses, 8 for ICMP type and code).
    """
    mask = [0] * fk.N_FIELDS
    for index in (fk.IN_PORT, fk.RECIRC_ID, fk.ETH_DST, fk.ETH_SRC, fk.ETH_TYPE, fk.VLAN_TCI):
        mask[index] = _FULL[index]
    eth_type = key[fk.ETH_TYPE]
    if eth_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        mask[fk.NW_SRC] = mask[fk.NW_DST] = _IPV4_ADDR
        mask[fk.NW_PROTO] = _FULL[fk.NW_PROTO]
        mask[fk.ARP_SHA] = _FULL[fk.ARP_SHA]
        mask[fk.ARP_THA] = _FULL[fk.ARP_THA]
        return tuple(mask)
    if eth_type not in (ETH_TYPE_IP, ETH_TYPE_IPV6):
        return tuple(mask)
    addr = _IPV4_ADDR if eth_type == ETH_TYPE_IP else _FULL[fk.NW_SRC]
    mask[fk.NW_SRC] = mask[fk.NW_DST] = addr
    for index in (fk.NW_PROTO, fk.NW_TOS, fk.NW_TTL, fk.NW_FRAG):
        mask[index] = _FULL[index]
    if eth_type == ETH_TYPE_IPV6:
        mask[fk.IPV6_LABEL] = _FULL[fk.IPV6_LABEL]
    if key[fk.NW_FRAG] & fk.FRAG_LATER:
        return tuple(mask)  # no L4 header to match on
    proto = key[fk.NW_PROTO]
    if proto in _PORT_PROTOS:
        mask[fk.TP_SRC] = mask[fk.TP_DST] = _FULL[fk.TP_SRC]
        if proto == IPPROTO_TCP:
            mask[fk.TCP_FLAGS] = _FULL[fk.TCP_FLAGS]
    elif proto == (IPPROTO_ICMPV6 if eth_type == ETH_TYPE_IPV6 else IPPROTO_ICMP):
        mask[fk.TP_SRC] = mask[fk.TP_DST] = _ICMP_FIELD
        nd = key[fk.TP_SRC] in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT) and not key[fk.TP_DST]
        if proto == IPPROTO_ICMPV6 and nd:
            for index in (fk.ND_TARGET, fk.ARP_SHA, fk.ARP_THA):
                mask[index] = _FULL[index]
    return tuple(mask)


class ExecutorCache:
    """Actions and their compiled executor per output list."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, ...], tuple[list[Output], Executor]] = {}

    def get(self, outputs: tuple[int, ...]) -> tuple[list[Output], Executor]:
        cached = self._cache.get(outputs)
        if cached is None:
            actions = [Output(p) for p in outputs]
            cached = self._cache[outputs] = (actions, compile_actions(actions))
        return cached

    def make_flow(self, key: FlowKey, megaflow: Megaflow) -> DpFlow:
        """The flow to install for ``key`` under the bridge's decision."""
        mask, outputs, bridge = megaflow
        actions, execute = self.get(outputs)
        return DpFlow(key, mask, actions, execute, bridge=bridge)


class Upcall:
    """The datapath's miss handler: each key's bridge decides.

    ``ports`` and ``bridges`` are the datapath's live maps (port number to
    port, bridge name to its NORMAL switch), read at every upcall.  With
    ``flow_log``, each upcall and the flow it installs are logged at DBG
    (keys covered by an earlier key's flow make no upcall, as in OVS).
    """

    def __init__(
        self,
        ports: Mapping[int, Port],
        bridges: Mapping[str, NormalBridge],
        coverage: Coverage,
        flow_log: FlowLog | None = None,
    ) -> None:
        self._ports = ports
        self._bridges = bridges
        self._failed = coverage.define("datapath_drop_upcall_error")
        self._flow_log = flow_log
        #: False after ``upcall/disable-megaflows``: flows are installed exact-match.
        self.megaflows = True
        #: False after ``upcall/disable-ufid``: the revalidator's dumps carry whole flows.
        self.use_ufid = True

    def answer(self, keys: Sequence[FlowKey]) -> list[Answer]:
        """The answers to one batch of misses, one per key, in order."""
        answers: list[Answer] = []
        # mask -> masked key -> index of the key that was answered with it.
        answered: dict[FlowMask, dict[FlowKey, int]] = {}
        ports, bridges = self._ports, self._bridges
        megaflows = self.megaflows
        # Once per batch: without DBG the loop formats nothing.
        flow_log = (
            self._flow_log if self._flow_log is not None and self._flow_log.wanted() else None
        )
        for i, key in enumerate(keys):
            earlier = None
            for mask, seen in answered.items():
                earlier = seen.get(masked(key, mask))
                if earlier is not None:
                    break
            if earlier is not None:
                answers.append(earlier)
                continue
            if flow_log is not None:
                flow_log.miss_upcall(key)
            port = ports.get(key[IN_PORT])
            bridge = bridges.get(port.bridge) if port is not None and port.bridge else None
            if bridge is None:
                self._failed.inc()
                answers.append(None)
                continue
            decision = bridge.handle(key)
            mask = decision.mask if megaflows else exact_mask(key)
            outputs = tuple(decision.outputs)
            answers.append((mask, outputs, bridge.name))
            if flow_log is not None:
                flow_log.upcall_flow(key, mask, outputs, exact=not megaflows)
            answered.setdefault(mask, {})[masked(key, mask)] = i
        return answers
