"""Executing datapath actions on batches (OVS's odp-execute).

:func:`compile_actions` turns a flow's actions (the types of
:mod:`pyvswitchd.odp.actions`), once, into the function run on each batch
that hits the flow.  Frames are immutable ``bytes`` and a flood queues one
:class:`~pyvswitchd.odp.packet.Packet` on several ports, so a modification
never touches a packet: it builds a new frame in a new Packet (same
``mark`` and ``vnet``) that only the outputs after it get.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias

from ..odp.actions import Action, Output, PopVlan, PushVlan, SetEth, SetIpv4
from ..odp.packet import Packet
from ..odp.protocols import ETH_TYPE_IP, IPPROTO_TCP, IPPROTO_UDP, VLAN_HEADER_LEN, VLAN_TPIDS

_MAC_LEN = 6
_IPV4_MIN_HEADER = 20
_TCP_HEADER = 20
_UDP_HEADER = 8
_IP_FRAG_OFFSET_MASK = 0x1FFF
#: Ethertype 0x0800 followed by version 4 with a 20-byte header.
_PLAIN_IPV4 = b"\x08\x00\x45"
#: The fixed IPv4 header: version+IHL, TOS, length, id, flags+offset, TTL,
#: protocol, checksum, source, destination.
_IPV4_HEADER = struct.Struct("!BBHHHBBHII")
_U16 = struct.Struct("!H")


# -- frame edits -------------------------------------------------------------------
#
# Each modifying action becomes an Edit: a function from a frame to the
# modified frame, built once per flow with its constants prepared.  An edit
# returns its input object itself when it changes nothing (a frame too short
# for the header, pop_vlan of an untagged frame), so callers can keep the
# packet they have.

Edit: TypeAlias = Callable[[bytes], bytes]


def _set_eth_edit(action: SetEth) -> Edit:
    src = action.src.to_bytes(_MAC_LEN, "big") if action.src is not None else b""
    dst = action.dst.to_bytes(_MAC_LEN, "big") if action.dst is not None else b""

    def set_eth(data: bytes) -> bytes:
        if len(data) < 2 * _MAC_LEN:
            return data
        return (dst or data[:6]) + (src or data[6:12]) + data[12:]

    return set_eth


def _push_vlan_edit(action: PushVlan) -> Edit:
    tag = struct.pack("!HH", action.tpid, action.tci)

    def push_vlan(data: bytes) -> bytes:
        return data[:12] + tag + data[12:] if len(data) >= 12 else data

    return push_vlan


def _pop_vlan(data: bytes) -> bytes:
    if len(data) >= 12 + VLAN_HEADER_LEN + 2 and (data[12] << 8 | data[13]) in VLAN_TPIDS:
        return data[:12] + data[12 + VLAN_HEADER_LEN :]
    return data


def _ipv4_offset(data: bytes) -> int:
    """Where the IPv4 header starts, behind any VLAN tags; -1 if there is no whole one."""
    if data[12:15] == _PLAIN_IPV4 and len(data) >= 14 + _IPV4_MIN_HEADER:
        return 14  # untagged, no IP options: nearly every frame
    offset = 12
    size = len(data)
    while offset + 2 <= size:
        ethertype = data[offset] << 8 | data[offset + 1]
        if ethertype in VLAN_TPIDS:
            offset += VLAN_HEADER_LEN
            continue
        offset += 2
        if ethertype != ETH_TYPE_IP or offset + _IPV4_MIN_HEADER > size:
            return -1
        version_ihl = data[offset]
        ihl = (version_ihl & 0xF) * 4
        if version_ihl >> 4 != 4 or ihl < _IPV4_MIN_HEADER or offset + ihl > size:
            return -1
        return offset
    return -1


# Checksums are updated incrementally (RFC 1624, equation 3):
#     HC' = ~(~HC + ~m + m')
# summed over every changed 16-bit word m -> m'.  The ~m + m' terms are
# added up unfolded, then folded once.  ~w is 0xffff - w for a 16-bit w, so
# replacing a 32-bit address a by b adds 0x1fffe - hi(a) - lo(a) + hi(b) + lo(b);
# a byte that shares its word with an unchanged byte contributes alone, as
# the unchanged byte's ~x + x is 0xffff, ones' complement zero.


def _fold(checksum: int, delta: int) -> int:
    """``checksum`` updated by the summed ``~m + m'`` terms ``delta`` (< 2**31)."""
    total = (checksum ^ 0xFFFF) + delta
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return total ^ 0xFFFF


def _set_ipv4_edit(action: SetIpv4) -> Edit:
    src, dst, tos, ttl = action.src, action.dst, action.tos, action.ttl
    src_words = 0x1FFFE + (src >> 16) + (src & 0xFFFF) if src is not None else 0
    dst_words = 0x1FFFE + (dst >> 16) + (dst & 0xFFFF) if dst is not None else 0
    unpack, pack = _IPV4_HEADER.unpack_from, _IPV4_HEADER.pack
    pack_u16 = _U16.pack

    def set_ipv4(data: bytes) -> bytes:
        l3 = _ipv4_offset(data)
        if l3 < 0:
            return data
        vihl, old_tos, length, ident, frag, old_ttl, proto, csum, old_src, old_dst = unpack(
            data, l3
        )
        new_src, new_dst, new_tos, new_ttl = old_src, old_dst, old_tos, old_ttl
        addr_delta = 0
        if src is not None:
            addr_delta = src_words - (old_src >> 16) - (old_src & 0xFFFF)
            new_src = src
        if dst is not None:
            addr_delta += dst_words - (old_dst >> 16) - (old_dst & 0xFFFF)
            new_dst = dst
        ip_delta = addr_delta
        if tos is not None:
            ip_delta += 0xFFFF - old_tos + tos
            new_tos = tos
        if ttl is not None:
            ip_delta += 0xFFFF - (old_ttl << 8) + (ttl << 8)
            new_ttl = ttl
        header = pack(
            vihl, new_tos, length, ident, frag, new_ttl, proto, _fold(csum, ip_delta),
            new_src, new_dst,
        )  # fmt: skip
        end = l3 + _IPV4_MIN_HEADER
        # Addresses are in the TCP/UDP pseudo-header, so their checksum changes
        # too; a non-first fragment carries no L4 header to fix.
        if not addr_delta or frag & _IP_FRAG_OFFSET_MASK:
            return data[:l3] + header + data[end:]
        l4 = l3 + (vihl & 0xF) * 4
        if proto == IPPROTO_TCP and len(data) >= l4 + _TCP_HEADER:
            at = l4 + 16
            l4_csum = _fold(data[at] << 8 | data[at + 1], addr_delta)
        elif proto == IPPROTO_UDP and len(data) >= l4 + _UDP_HEADER:
            at = l4 + 6
            l4_csum = data[at] << 8 | data[at + 1]
            if not l4_csum:  # the sender computed no checksum: keep it that way
                return data[:l3] + header + data[end:]
            # A sum that comes out as zero is sent as 0xffff (RFC 768).
            l4_csum = _fold(l4_csum, addr_delta) or 0xFFFF
        else:
            return data[:l3] + header + data[end:]
        return b"".join((data[:l3], header, data[end:at], pack_u16(l4_csum), data[at + 2 :]))

    return set_ipv4


def _edit_for(action: Action) -> Edit:
    """The edit that performs the modifying ``action``."""
    if isinstance(action, SetEth):
        return _set_eth_edit(action)
    if isinstance(action, SetIpv4):
        return _set_ipv4_edit(action)
    if isinstance(action, PushVlan):
        return _push_vlan_edit(action)
    if isinstance(action, PopVlan):
        return _pop_vlan
    raise TypeError(f"not a modifying datapath action: {action!r}")


def _chain(actions: Sequence[Action]) -> Edit:
    """One edit doing ``actions`` in order."""
    edits = tuple(_edit_for(action) for action in actions)
    if len(edits) == 1:
        return edits[0]

    def chained(data: bytes) -> bytes:
        for edit in edits:
            data = edit(data)
        return data

    return chained


# -- compiled executors ------------------------------------------------------------


class OutputSink(Protocol):
    """Where compiled actions queue packets: a :class:`~.pmd.Pmd` (or a test fake)."""

    def output(self, port_no: int, packet: Packet) -> None: ...

    def output_batch(self, port_no: int, packets: list[Packet]) -> None:
        """Queue ``packets`` in order; same as calling :meth:`output` for each."""
        ...


#: What :func:`compile_actions` returns: run on (pmd, batch), return outputs queued.
CompiledActions: TypeAlias = Callable[[OutputSink, list[Packet]], int]

#: (edit applied first, or None for the received frame; ports output after it).
_Segment: TypeAlias = tuple[Edit | None, tuple[int, ...]]


def _segments(actions: Sequence[Action]) -> list[_Segment]:
    """Split ``actions`` at each run of modifications that some output follows.

    Modifications after the last output are dropped: nothing can see them.
    """
    segments: list[_Segment] = []
    pending: list[Action] = []
    for action in actions:
        if isinstance(action, Output):
            if pending or not segments:
                segments.append((_chain(pending) if pending else None, ()))
                pending = []
            edit, ports = segments[-1]
            segments[-1] = (edit, (*ports, action.port))
        elif isinstance(action, PushVlan | PopVlan | SetEth | SetIpv4):
            pending.append(action)
        else:
            raise TypeError(f"not a datapath action: {action!r}")
    return segments


def _derive(packet: Packet, data: bytes) -> Packet:
    """A new packet with frame ``data`` and ``packet``'s metadata."""
    return Packet(data, packet.mark, packet.vnet)


def _drop(sink: OutputSink, batch: list[Packet]) -> int:
    return 0


def _single_output(port: int) -> CompiledActions:
    def output_one(sink: OutputSink, batch: list[Packet]) -> int:
        # One call per batch: the PMD extends its tx batch in C.
        sink.output_batch(port, batch)
        return len(batch)

    return output_one


def _flood(ports: tuple[int, ...]) -> CompiledActions:
    n_ports = len(ports)

    def output_all(sink: OutputSink, batch: list[Packet]) -> int:
        output_batch = sink.output_batch
        # Port by port, as OVS runs each action over the whole batch; every
        # port's tx batch gets the packets in the same order either way.
        for port in ports:
            output_batch(port, batch)
        return len(batch) * n_ports

    return output_all


def _edit_then_output(edit: Edit, ports: tuple[int, ...]) -> CompiledActions:
    n_ports = len(ports)

    def edit_output(sink: OutputSink, batch: list[Packet]) -> int:
        output = sink.output
        for packet in batch:
            data = packet.data
            new_data = edit(data)
            edited = packet if new_data is data else _derive(packet, new_data)
            for port in ports:
                output(port, edited)
        return len(batch) * n_ports

    return edit_output


def _general(segments: list[_Segment]) -> CompiledActions:
    n_outputs = sum(len(ports) for _, ports in segments)
    steps = tuple(segments)

    def run(sink: OutputSink, batch: list[Packet]) -> int:
        output = sink.output
        packets = batch
        for edit, ports in steps:
            if edit is not None:
                # A fresh packet per edited frame: the ones already queued keep theirs.
                edited = []
                for packet in packets:
                    data = packet.data
                    new_data = edit(data)
                    edited.append(packet if new_data is data else _derive(packet, new_data))
                packets = edited
            for port in ports:
                for packet in packets:
                    output(port, packet)
        return len(batch) * n_outputs

    return run


def compile_actions(actions: Sequence[Action]) -> CompiledActions:
    """Turn a flow's actions into the function that executes them on a batch.

    Call it once per flow; the result is called as ``run(pmd, batch)`` with
    the packets that matched the flow, queues them with ``pmd.output`` as
    the actions say and returns the number of ``output`` calls it made
    (packets x outputs; a port the PMD does not have still counts here,
    the PMD counts that drop itself).

    Specialised forms: drop; one output; outputs only (flood); one group of
    modifications followed by outputs; anything else runs segment by
    segment over the batch.  Packets of ``batch`` are never modified.
    """
    segments = _segments(actions)
    if not segments:
        return _drop
    if len(segments) == 1:
        edit, ports = segments[0]
        if edit is not None:
            return _edit_then_output(edit, ports)
        if len(ports) == 1:
            return _single_output(ports[0])
        return _flood(ports)
    return _general(segments)
