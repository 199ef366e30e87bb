"""The CPU cores and NUMA nodes the datapath knows, logged as OVS's ``ovs_numa`` does.

ovs-vswitchd discovers the machine's NUMA nodes and cores once at start-up
(or takes them from ``--dummy-numa``) and says what it found: one line per
NUMA node, then the totals, which OVS's tests wait for before anything
else (``Discovered 2 NUMA nodes and 4 CPU cores``).  Here the cores are
those of ``dummy-numa`` or, without it, every CPU on NUMA node 0 (see
:func:`machine_cores`).  Since ``dummy-numa`` is a key of the
configuration file, a reload may change them; they are logged again then.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping

from ..observe.vlog import Vlog


def machine_cores(numa: tuple[int, ...]) -> dict[int, int]:
    """Core id -> NUMA id: ``dummy-numa`` if given, else every CPU on NUMA 0."""
    return dict(enumerate(numa or (0,) * (os.cpu_count() or 1)))


def pmd_cores(mask: int | None, cores: Mapping[int, int]) -> dict[int, int]:
    """The cores that get a PMD: those of ``pmd-cpu-mask``, else the first of each NUMA node."""
    if mask is not None:
        return {c: n for c, n in cores.items() if mask >> c & 1}
    first: dict[int, int] = {}
    for core, numa in cores.items():
        first.setdefault(numa, core)
    return {core: numa for numa, core in first.items()}


def discovery_lines(cores: Mapping[int, int]) -> list[str]:
    """OVS's lines for ``cores`` (core id -> NUMA id), NUMA nodes in id order."""
    per_node = Counter(cores.values())
    lines = [
        f"Discovered {n} CPU cores on NUMA node {node}" for node, n in sorted(per_node.items())
    ]
    lines.append(f"Discovered {len(per_node)} NUMA nodes and {len(cores)} CPU cores")
    return lines


class CpuDiscovery:
    """Logs the cores the first time it is told them, and whenever they change."""

    def __init__(self, vlog: Vlog) -> None:
        self._log = vlog.module("ovs_numa")
        self._known: tuple[tuple[int, int], ...] | None = None

    def note(self, cores: Mapping[int, int]) -> None:
        layout = tuple(sorted(cores.items()))
        if layout == self._known:
            return
        self._known = layout
        for line in discovery_lines(cores):
            self._log.info(line)
