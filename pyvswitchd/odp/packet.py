"""Packets and batches as the datapath moves them.

A packet is a frame (``bytes``) plus the little metadata the datapath needs
on the way through: a flow mark set by partial offload and the virtio-net
header of a segmentation-offloaded frame.  (The datapath port a packet came
in on is the same for a whole batch and travels with the batch; which rx
queue a packet came from, for charging transmit cycles back to it, is
tracked per run of packets in each PMD's tx batches.)  ``__slots__`` keeps each one small and
its attribute access fast; the hot path never creates a packet except when
it receives one or an action rewrites it.

A batch is a plain ``list`` of at most NETDEV_MAX_BURST packets.
"""

from __future__ import annotations

#: Largest rx batch (OVS's NETDEV_MAX_BURST).
NETDEV_MAX_BURST = 32


class Packet:
    """One frame in flight through the datapath.

    ``mark`` is the flow mark a partially offloading NIC attached (None: no
    mark).  ``vnet`` is the frame's virtio-net header (10 bytes) when it came
    from a device with ``userspace-tso-enable``: a GSO super-frame or a
    frame with a partial checksum that the transmitting device must finish;
    None for ordinary frames.

    A packet is never modified once made (an action that edits a frame makes
    a new packet), so one packet object may sit in several batches at once:
    flooding queues the same object on every port.
    """

    __slots__ = ("data", "mark", "vnet")

    def __init__(self, data: bytes, mark: int | None = None, vnet: bytes | None = None) -> None:
        self.data = data
        self.mark = mark
        self.vnet = vnet

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Packet({len(self.data)} bytes)"
