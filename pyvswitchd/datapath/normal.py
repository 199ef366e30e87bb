"""The bridge's NORMAL action: what to do with a packet that missed every flow.

:class:`NormalBridge` is OVS's ``xlate_normal`` (``ofproto-dpif-xlate.c``)
reduced to a pure decision on a flow key: it learns the source MAC and
answers with the output ports and the megaflow mask under which that answer
holds for every packet, plus the MAC table entries the answer depends on so
that a revalidator can find the flows a table change affects.

The model is OVS's NORMAL with every port a VLAN trunk and no bonds,
mirrors, STP/RSTP, multicast snooping or ``forward-bpdu``:

* a packet whose in_port is not one of the bridge's ports is dropped;
* a packet to a reserved address (the 01:80:c2:00:00:0x IEEE block and the
  Extreme and Cisco protocol addresses OVS lists) is dropped without
  learning, as ``forward-bpdu=false`` does;
* otherwise the source MAC is learned on in_port in the packet's VLAN (its
  VID, 0 when untagged or priority-tagged) unless it is multicast;
* a multicast/broadcast destination, or an unknown one, floods: every bridge
  port except in_port, in ascending port number order (OVS floods in its
  bundle list order, which is not a sorted order, so flood action lists can
  differ from OVS's in order but never in content);
* a known destination is output to its port, or dropped if that port is
  in_port (no hairpin) or no longer a bridge port.

Packets keep their VLAN tag (a trunk outputs what it received); OVS would
strip a priority tag (VID 0) on output, which a list of output ports cannot
express, so priority-tagged frames are forwarded tagged.

The megaflow mask is what OVS's translation unwildcards on this path:
in_port, recirc_id and eth_type always; the IP fragment bits for IPv4 and
IPv6; Ethernet source and destination and the VLAN VID and CFI bits for
NORMAL; and, for an ARP frame to the broadcast address, the ARP opcode and
(for requests) the sender and target IPs, because OVS checks for gratuitous
ARP there and its megaflows carry those fields.  Every field the decision
reads is inside the mask, so the decision can be recomputed from a masked
key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from ..observe.coverage import Coverage
from ..observe.vlog import Level, VlogModule
from ..odp.flow_key import (
    ETH_DST,
    ETH_SRC,
    ETH_TYPE,
    FRAG_ANY,
    FRAG_LATER,
    FULL_MASKS,
    IN_PORT,
    N_FIELDS,
    NW_DST,
    NW_FRAG,
    NW_PROTO,
    NW_SRC,
    RECIRC_ID,
    VLAN_TCI,
    FlowKey,
    FlowMask,
)
from ..odp.protocols import ETH_TYPE_ARP, ETH_TYPE_IP, ETH_TYPE_IPV6, VLAN_CFI, VLAN_VID_MASK
from .mac_learning import BROADCAST_MAC, MacKey, MacLearning, format_mac, is_multicast

ARP_OP_REQUEST = 1
#: ARP sender/target protocol addresses are IPv4: 32 significant bits.
_ARP_IP_MASK = 0xFFFF_FFFF

#: Destinations NORMAL never forwards (OVS's ``eth_addr_is_reserved``).
RESERVED_MACS = frozenset(
    [0x0180_C200_0000 + i for i in range(16)]  # STP, pause, LACP, 802.1X, LLDP...
    + [0x00E0_2B00_0000, 0x00E0_2B00_0004, 0x00E0_2B00_0006]  # Extreme EDP, EAPS
    + [0x0100_0C00_0000, 0x0100_0CCC_CCCC, 0x0100_0CCC_CCCD, 0x0100_0CCD_CDCD]  # Cisco
    + [0x0100_0CCC_CCC0 + i for i in range(8)]  # Cisco CFM
)


def _mask(*fields: tuple[int, int]) -> FlowMask:
    mask = [0] * N_FIELDS
    for field, bits in fields:
        mask[field] = bits
    return tuple(mask)


_ALWAYS = (
    (IN_PORT, FULL_MASKS[IN_PORT]),
    (RECIRC_ID, FULL_MASKS[RECIRC_ID]),
    (ETH_TYPE, FULL_MASKS[ETH_TYPE]),
)
_NORMAL = (
    (ETH_SRC, FULL_MASKS[ETH_SRC]),
    (ETH_DST, FULL_MASKS[ETH_DST]),
    (VLAN_TCI, VLAN_VID_MASK | VLAN_CFI),
)
_FRAG = ((NW_FRAG, FRAG_ANY | FRAG_LATER),)

#: Mask of a NORMAL decision for a non-IP frame.
NORMAL_MASK = _mask(*_ALWAYS, *_NORMAL)
#: Mask of a NORMAL decision for an IPv4 or IPv6 packet.
NORMAL_IP_MASK = _mask(*_ALWAYS, *_NORMAL, *_FRAG)
_ARP_OP_MASK = _mask(*_ALWAYS, *_NORMAL, (NW_PROTO, 0xFF))
_ARP_REQUEST_MASK = _mask(
    *_ALWAYS, *_NORMAL, (NW_PROTO, 0xFF), (NW_SRC, _ARP_IP_MASK), (NW_DST, _ARP_IP_MASK)
)

_NO_DEPS: frozenset[MacKey] = frozenset()


@attrs.frozen
class Decision:
    """What NORMAL does with every packet matching ``key`` under ``mask``.

    ``outputs``: datapath ports to output to, in order; empty means drop.
    ``mask``: the megaflow mask (same shape as a flow key).
    ``learned``: the source MAC was new or moved (the MAC table changed).
    ``deps``: (VLAN, MAC) table keys the decision read: the source entry
    (when learnable) and the destination lookup (when unicast), whether or
    not an entry existed, so learning a MAC also finds the flows that
    flooded to it.
    """

    outputs: tuple[int, ...]
    mask: FlowMask
    learned: bool = False
    deps: frozenset[MacKey] = _NO_DEPS


class NormalBridge:
    """NORMAL forwarding for one bridge over its :class:`MacLearning` table.

    ``coverage`` provides ``xlate_actions``, counted once per decision
    (:meth:`handle` and :meth:`revalidate`) as OVS counts translations.
    Logging is at DBG level only: NORMAL runs per upcall and must not flood
    the log.
    """

    def __init__(
        self, name: str, mac_learning: MacLearning, log: VlogModule, coverage: Coverage
    ) -> None:
        self.name = name
        self.mac_learning = mac_learning
        self._log = log
        self._xlate = coverage.define("xlate_actions")
        self._ports: frozenset[int] = frozenset()
        # Flood output list per input port, precomputed: flooding is the
        # common answer while tables warm up.
        self._flood: dict[int, tuple[int, ...]] = {}

    @property
    def ports(self) -> frozenset[int]:
        """The bridge's datapath port numbers, its local port included."""
        return self._ports

    def set_ports(self, port_nos: Iterable[int]) -> None:
        """Set the bridge's member ports (datapath numbers, incl. its local port).

        MACs learned on ports that left the bridge are forgotten, as OVS
        flushes a port's MACs when the port is removed.
        """
        ports = frozenset(port_nos)
        for gone in self._ports - ports:
            self.mac_learning.flush_port(gone)
        self._ports = ports
        ordered = sorted(ports)
        self._flood = {p: tuple(q for q in ordered if q != p) for p in ordered}

    def handle(self, key: FlowKey) -> Decision:
        """Decide for an upcall: learn the source MAC, then forward."""
        return self._decide(key, True)

    def revalidate(self, key: FlowKey, mask: FlowMask, outputs: Sequence[int]) -> Decision | None:
        """Re-decide an installed flow without learning.

        ``key`` may be the flow's key or its masked key; ``mask`` and
        ``outputs`` are what the flow was installed with.  Returns the new
        decision if its outputs (or mask) differ, None if the flow is still
        right.
        """
        decision = self._decide(key, False)
        if decision.outputs == tuple(outputs) and decision.mask == mask:
            return None
        return decision

    def relearn(self, key: FlowKey) -> bool:
        """Learn from an installed flow that carried packets since the last pass.

        Packets that hit a megaflow never reach :meth:`handle`, so without
        this an active MAC would age out; OVS relearns from each flow's
        statistics in its revalidators (the xlate cache's NORMAL entry).
        Returns :meth:`MacLearning.learn`'s result.
        """
        in_port = key[IN_PORT]
        if in_port not in self._ports or key[ETH_DST] in RESERVED_MACS:
            return False
        return self.mac_learning.learn(key[VLAN_TCI] & VLAN_VID_MASK, key[ETH_SRC], in_port)

    def _decide(self, key: FlowKey, learn: bool) -> Decision:
        self._xlate.total += 1
        eth_type = key[ETH_TYPE]
        mask = NORMAL_IP_MASK if eth_type in (ETH_TYPE_IP, ETH_TYPE_IPV6) else NORMAL_MASK
        in_port = key[IN_PORT]
        dst = key[ETH_DST]
        if in_port not in self._ports:
            self._debug(key, "in_port is not a port of the bridge, dropping")
            return Decision((), mask)
        if dst in RESERVED_MACS:
            self._debug(key, "packet has a reserved destination MAC, dropping")
            return Decision((), mask)
        if eth_type == ETH_TYPE_ARP and dst == BROADCAST_MAC:
            # OVS tests broadcast ARP for "gratuitous" here and so
            # unwildcards what that test reads.
            mask = _ARP_REQUEST_MASK if key[NW_PROTO] == ARP_OP_REQUEST else _ARP_OP_MASK

        vlan = key[VLAN_TCI] & VLAN_VID_MASK
        src = key[ETH_SRC]
        ml = self.mac_learning
        learned = False
        src_learnable = not is_multicast(src)
        if learn and src_learnable:
            learned = ml.learn(vlan, src, in_port)
            if learned and self._log.is_enabled(Level.DBG):
                self._log.dbg(
                    f"{self.name}: learned that {format_mac(src)} is on port {in_port} "
                    f"in VLAN {vlan}"
                )

        if is_multicast(dst):
            deps = frozenset(((vlan, src),)) if src_learnable else _NO_DEPS
            return Decision(self._flood[in_port], mask, learned, deps)
        deps = frozenset(((vlan, src), (vlan, dst)) if src_learnable else ((vlan, dst),))
        port = ml.lookup(vlan, dst)
        if port is None:
            return Decision(self._flood[in_port], mask, learned, deps)
        if port == in_port or port not in self._ports:
            return Decision((), mask, learned, deps)
        return Decision((port,), mask, learned, deps)

    def _debug(self, key: FlowKey, what: str) -> None:
        if self._log.is_enabled(Level.DBG):
            self._log.dbg(f"{self.name}: in_port {key[IN_PORT]}: {what}")
