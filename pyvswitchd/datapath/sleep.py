"""PMD load-based sleep settings: ``pmd-sleep-max`` (and the older ``pmd-maxsleep``).

``pmd-sleep-max`` is a list of ``N`` (the default for every PMD) and
``core:N`` entries (``:`` or ``=``, separated by commas or spaces), in
microseconds, each capped at 10000.  Entries that are not numbers are
skipped, the last of duplicates wins, and no default entry means 0.  The
deprecated ``pmd-maxsleep=N`` applies only when ``pmd-sleep-max`` is absent.
"""

from __future__ import annotations

import re

import attrs

#: Cap of every sleep value, us (OVS's RCU quiesce interval).
MAX_SLEEP_CAP_US = 10000

_ITEM = re.compile(r"[^,\s]+")


@attrs.frozen
class SleepConfig:
    default_us: int = 0
    per_core: dict[int, int] = attrs.field(factory=dict)

    def for_core(self, core_id: int) -> int:
        return self.per_core.get(core_id, self.default_us)


def _u64(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_sleep_max(text: str | None, maxsleep: int | None = None) -> SleepConfig:
    """Parse ``pmd-sleep-max`` (falling back to ``pmd-maxsleep``) into a SleepConfig."""
    if text is None:
        return SleepConfig(default_us=min(maxsleep or 0, MAX_SLEEP_CAP_US))
    default = 0
    per_core: dict[int, int] = {}
    for item in _ITEM.findall(text):
        key, sep, value = _split(item)
        if sep:
            core, val = _u64(key), _u64(value)
            if core is None or val is None:
                continue
            per_core[core] = min(val, MAX_SLEEP_CAP_US)
        else:
            val = _u64(key)
            default = min(val, MAX_SLEEP_CAP_US) if val is not None else 0
    return SleepConfig(default_us=default, per_core=per_core)


def _split(item: str) -> tuple[str, str, str]:
    for sep in (":", "="):
        if sep in item:
            key, _, value = item.partition(sep)
            return key, sep, value
    return item, "", ""


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
