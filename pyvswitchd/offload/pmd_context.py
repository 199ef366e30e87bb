"""Per-PMD offload context: runs the providers' PMD work callbacks.

Each PMD task owns one :class:`PmdOffloadContext`, created lazily at its
first reload while offload is enabled.  At every pass through the PMD's
reload point the task calls :meth:`PmdOffloadContext.reload`, which asks
each provider of the datapath's collection (in priority order) for a work
callback through ``pmd_thread_lifecycle``, handing back what that provider
returned last time.  In the poll loop :meth:`PmdOffloadContext.do_work`
runs the callbacks and reports the time spent, which the PMD accounts as
offload cycles.  When the PMD ends for good, :meth:`PmdOffloadContext.exit`
lets every active provider release its per-PMD state.

Everything here runs in the PMD's own task and never blocks.  "Cycles" are
nanoseconds from :func:`time.perf_counter_ns`, the unit the PMD's perf
accounting uses.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from ..observe.coverage import Counter
from ..observe.ratelimit import RateLimit
from ..observe.vlog import VlogModule
from .provider import OffloadProvider, WorkCallback
from .registry import OffloadCollection


@attrs.define(eq=False)
class OffloadNode:
    """One provider's active work callback on this PMD."""

    provider: OffloadProvider
    callback: WorkCallback
    ctx: Any


class PmdOffloadContext:
    """The offload work state of one PMD (core and NUMA node fixed at creation)."""

    def __init__(
        self,
        core_id: int,
        numa_id: int,
        log: VlogModule | None = None,
        failed: Counter | None = None,
    ) -> None:
        self.core_id = core_id
        self.numa_id = numa_id
        self.nodes: list[OffloadNode] = []
        self._log = log
        #: Counts callbacks removed for raising (coverage dpif_offload_work_failed).
        self._failed = failed
        self._rl = RateLimit(5, 5)

    def reload(self, collection: OffloadCollection | None, enabled: bool) -> None:
        """Re-ask every provider for its work callback (PMD reload point).

        With offload disabled or no collection there is nothing to ask and
        no node may exist.  A provider that now returns no callback is
        dropped; releasing the context it had is its own job.
        """
        if not enabled or collection is None:
            if self.nodes:
                raise AssertionError("offload nodes exist while offload is off")
            return
        previous = {id(node.provider): node for node in self.nodes}
        self.nodes = []
        for provider in collection.providers:
            old = previous.get(id(provider))
            callback, ctx = provider.pmd_thread_lifecycle(
                False,
                self.core_id,
                self.numa_id,
                None if old is None else old.callback,
                None if old is None else old.ctx,
            )
            if callback is not None:
                self.nodes.append(OffloadNode(provider, callback, ctx))

    def do_work(self) -> int:
        """Run every node's callback in order; the nanoseconds spent (0: no nodes)."""
        if not self.nodes:
            return 0
        start = time.perf_counter_ns()
        for node in self.nodes:
            try:
                node.callback(self.core_id, self.numa_id, node.ctx)
            except Exception as exc:  # a provider bug must not stop the PMD
                self._drop(node, exc)
        # A zero reading would look like "no work" to the perf accounting.
        return max(time.perf_counter_ns() - start, 1)

    def _drop(self, node: OffloadNode, exc: Exception) -> None:
        # The PMD keeps forwarding; only this provider's work stops on this PMD.
        self.nodes = [n for n in self.nodes if n is not node]
        if self._failed is not None:
            self._failed.inc()
        if self._log is not None:
            self._log.err(
                f"pmd-c{self.core_id:02d}: offload provider {node.provider.type} work "
                f"callback failed ({exc!r}); removed from this PMD's work list",
                rl=self._rl,
            )

    def exit(self) -> None:
        """The PMD is ending: let every active provider release its state."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.provider.pmd_thread_lifecycle(
                True, self.core_id, self.numa_id, node.callback, node.ctx
            )
