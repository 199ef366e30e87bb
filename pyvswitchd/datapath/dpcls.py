"""The megaflow classifier (OVS's dpcls): subtables of rules sharing a mask.

Every installed megaflow has a mask; flows with the same mask live in one
:class:`Subtable`, a dict from the *projection* of a key onto the mask to
the flow.  Looking a packet up means projecting its key once per subtable
and probing the dict, in rank order, until one matches.  Megaflows never
overlap, so the first match is the match.

The projection is the hot operation, so each subtable compiles one for its
mask: fields the mask covers entirely are picked with a single
``operator.itemgetter`` call (C speed), and only partially masked fields
pay for a Python ``&``.  Subtables are re-ranked by recent hits every
second (OVS's DPCLS_OPTIMIZATION_INTERVAL), with a stable sort so ties keep
their order.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeAlias, TypeVar

from ..odp.flow_key import FULL_MASKS, FlowKey, FlowMask

#: A key's projection onto a mask: the dict key of the mask's subtable.
Projector: TypeAlias = Callable[[FlowKey], Hashable]
#: The flow type the classifier holds (the datapath's DpFlow).
F = TypeVar("F")


def make_projector(mask: FlowMask) -> Projector:
    """A function mapping a key to the dict key of ``mask``'s subtable."""
    full = [i for i, m in enumerate(mask) if m and m == FULL_MASKS[i]]
    partial = [(i, m) for i, m in enumerate(mask) if m and m != FULL_MASKS[i]]
    if not partial:
        if not full:
            return lambda key: ()
        if len(full) == 1:
            index = full[0]
            return lambda key: key[index]
        return operator.itemgetter(*full)
    pick = operator.itemgetter(*full) if full else None
    parts = tuple(partial)
    if pick is None:
        return lambda key: tuple(key[i] & m for i, m in parts)
    if len(full) == 1:
        index = full[0]
        return lambda key: (key[index], *[key[i] & m for i, m in parts])
    return lambda key: (*pick(key), *[key[i] & m for i, m in parts])


class Subtable(Generic[F]):
    """All rules of one mask."""

    __slots__ = ("hit_cnt", "mask", "priority", "project", "rules")

    def __init__(self, mask: FlowMask) -> None:
        self.mask = mask
        self.project = make_projector(mask)
        self.rules: dict[Hashable, F] = {}
        self.hit_cnt = 0
        self.priority = 0


class Dpcls(Generic[F]):
    """One classifier (OVS keeps one per in_port per PMD; so do we)."""

    __slots__ = ("_by_mask", "subtables")

    def __init__(self) -> None:
        self.subtables: list[Subtable[F]] = []
        self._by_mask: dict[FlowMask, Subtable[F]] = {}

    def __len__(self) -> int:
        return sum(len(s.rules) for s in self.subtables)

    def insert(self, key: FlowKey, mask: FlowMask, flow: F) -> None:
        subtable = self._by_mask.get(mask)
        if subtable is None:
            subtable = Subtable(mask)
            self._by_mask[mask] = subtable
            # A new subtable starts with priority 0, at the end of the vector.
            self.subtables.append(subtable)
        subtable.rules[subtable.project(key)] = flow

    def remove(self, key: FlowKey, mask: FlowMask) -> None:
        subtable = self._by_mask.get(mask)
        if subtable is None:
            return
        subtable.rules.pop(subtable.project(key), None)
        if not subtable.rules:
            del self._by_mask[mask]
            self.subtables.remove(subtable)

    def lookup(self, key: FlowKey) -> tuple[F | None, int]:
        """(flow or None, 1-based position of the subtable that matched, 0 if none)."""
        for position, subtable in enumerate(self.subtables, 1):
            flow = subtable.rules.get(subtable.project(key))
            if flow is not None:
                subtable.hit_cnt += 1
                return flow, position
        return None, 0

    def rerank(self) -> None:
        """OVS's periodic optimisation: most-hit subtables first."""
        for subtable in self.subtables:
            subtable.priority = subtable.hit_cnt
            subtable.hit_cnt = 0
        self.subtables.sort(key=lambda s: -s.priority)

    def __iter__(self) -> Iterator[Subtable[F]]:
        return iter(self.subtables)
