"""Builders shared by the scheduler and auto-load-balance unit tests."""

from __future__ import annotations

from collections.abc import Sequence

from pyvswitchd.datapath.rxq_sched import PmdInfo, RxqInfo


class RecLog:
    """Records (level, message) pairs."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def info(self, msg: str) -> None:
        self.records.append(("INFO", msg))

    def warn(self, msg: str) -> None:
        self.records.append(("WARN", msg))

    def dbg(self, msg: str) -> None:
        self.records.append(("DBG", msg))

    def at(self, level: str) -> list[str]:
        return [m for lvl, m in self.records if lvl == level]

    def texts(self) -> list[str]:
        return [m for _, m in self.records]

    def clear(self) -> None:
        self.records.clear()


def port(
    name: str,
    port_no: int,
    n_rxq: int,
    *,
    numa: int = 0,
    affinity: dict[int, int] | None = None,
    hist: Sequence[int] = (),
    current: Sequence[int | None] = (),
) -> list[RxqInfo]:
    """The rx queues of one port; hist[i] becomes queue i's single interval."""
    aff = affinity or {}
    return [
        RxqInfo(
            port_name=name,
            port_no=port_no,
            qid=q,
            port_numa=numa,
            pinned_core=aff.get(q),
            history=[hist[q]] if q < len(hist) else [],
            current_core=current[q] if q < len(current) else None,
        )
        for q in range(n_rxq)
    ]


def pmds(*cores: int, numa: Sequence[int] | None = None, intrvl: int = 0) -> list[PmdInfo]:
    numas = numa if numa is not None else [0] * len(cores)
    return [PmdInfo(c, n, intrvl_cycles=intrvl) for c, n in zip(cores, numas, strict=True)]
