"""Packets and batches as the datapath moves them.

A packet is a frame (``bytes``) plus the little metadata the datapath needs
on the way through: the datapath port it came in on, its flow hash, a flow
mark set by partial offload, and the rx queue that received it (so transmit
cycles can be charged back to that queue, as OVS does).  ``__slots__`` keeps
each one small and its attribute access fast; the hot path never creates a
packet except when it receives one.

A batch is a plain ``list`` of at most NETDEV_MAX_BURST packets.
"""

from __future__ import annotations

from typing import Any

#: Largest rx batch (OVS's NETDEV_MAX_BURST).
NETDEV_MAX_BURST = 32

#: Shortest frame the pipeline accepts: an Ethernet header.
ETH_HEADER_LEN = 14


class Packet:
    """One frame in flight through the datapath."""

    __slots__ = ("data", "hash", "in_port", "mark", "rxq")

    def __init__(self, data: bytes, in_port: int = 0) -> None:
        self.data = data
        self.in_port = in_port
        self.hash = 0
        self.mark: int | None = None
        self.rxq: Any = None  # the source rx queue, for cycle attribution

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Packet({len(self.data)} bytes, in_port={self.in_port})"
