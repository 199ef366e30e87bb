"""The garbage collector, tuned for a process that forwards packets.

The daemon calls :func:`tune_gc` once it is up, and every PMD worker once
it has set itself up; the zygote that forks the workers freezes what it
imported before forking, so the collector never walks those objects in any
worker (and never dirties their shared pages).
"""

from __future__ import annotations

import gc

#: Allocations of container objects between two young-generation collections.
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Collect garbage less often; call once the daemon is up.

    The packet path allocates a few short-lived tuples per packet (cache
    signatures), which the cyclic collector tracks: at CPython's default
    threshold of 700 it runs a young collection every few batches and an
    older one, which walks every flow and cache entry, every hundred.  Our
    per-packet objects never form cycles, so collecting rarely costs only a
    little memory.  ``gc.freeze`` moves everything built at start-up out of
    the collector's way for good.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
