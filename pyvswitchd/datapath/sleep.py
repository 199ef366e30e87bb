"""PMD load-based sleep settings: ``pmd-sleep-max`` (and the older ``pmd-maxsleep``).

The configuration reads both as OVS does (:mod:`pyvswitchd.config.ovs_values`):
``pmd-sleep-max`` into (core, us) entries, core None for the value of every
PMD, each capped at 10000 us.  No every-PMD entry means 0 (busy polling);
the deprecated ``pmd-maxsleep`` applies only when ``pmd-sleep-max`` is absent.
"""

from __future__ import annotations

import attrs

from ..config.ovs_values import MAX_SLEEP_US, SleepEntries


@attrs.frozen
class SleepConfig:
    default_us: int = 0
    per_core: dict[int, int] = attrs.field(factory=dict)

    def for_core(self, core_id: int) -> int:
        return self.per_core.get(core_id, self.default_us)


def sleep_config(entries: SleepEntries | None, maxsleep: int = 0) -> SleepConfig:
    """The sleep bounds of ``pmd-sleep-max`` entries, else of ``pmd-maxsleep``."""
    if entries is None:
        return SleepConfig(default_us=min(maxsleep, MAX_SLEEP_US))
    default = 0
    per_core: dict[int, int] = {}
    for core, us in entries:
        if core is None:
            default = us
        else:
            per_core[core] = us
    return SleepConfig(default_us=default, per_core=per_core)


def format_sleep_show(config: SleepConfig, pmds: list[tuple[int, int, int]]) -> str:
    """``dpif-netdev/pmd-sleep-show``: ``pmds`` are (numa_id, core_id, max_sleep_us)."""
    lines = [f"Default max sleep: {config.default_us:4d} us"]
    for numa_id, core_id, value in sorted(pmds, key=lambda p: p[1]):
        lines.append(f"pmd thread numa_id {numa_id} core_id {core_id}:")
        lines.append(f"  max sleep: {value:4d} us")
    return "\n".join(lines) + "\n"


def sleep_log_lines(config: SleepConfig, pmds: list[tuple[int, int, int]]) -> list[str]:
    """INFO lines OVS logs when the default or any PMD's value changed."""
    lines = [f"Default PMD thread max sleep: {config.default_us:4d} us."]
    for numa_id, core_id, value in sorted(pmds, key=lambda p: p[1]):
        lines.append(
            f"PMD thread on numa_id: {numa_id}, core id: {core_id:2d}, max sleep: {value:4d} us."
        )
    return lines
