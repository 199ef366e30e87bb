"""``tasks/show``: the daemon's live trio tasks, for spotting task leaks.

A long-running daemon that starts a task per connection, per PMD or per
reload must end as many as it starts; a soak test compares the count
before and after hours of reconfiguration.  The count walks the task tree
from trio's root task, so it includes trio's own system tasks and the task
answering the request.  ``memory/show`` reports the total as ``tasks``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import trio
import trio.lowlevel

from ..control.registry import CommandContext, CommandRegistry, Reply


def live_tasks() -> list[trio.lowlevel.Task]:
    """Every task of the running trio loop (empty outside one)."""
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return []
    if root is None:
        return []
    tasks: list[trio.lowlevel.Task] = []
    todo = [root]
    while todo:
        task = todo.pop()
        tasks.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return tasks


def task_counts() -> dict[str, int]:
    """Live tasks by name, most frequent first (ties by name)."""
    counts = Counter(task.name for task in live_tasks())
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def register_commands(registry: CommandRegistry) -> None:
    def show(ctx: CommandContext, args: Sequence[str]) -> Reply:
        counts = task_counts()
        total = sum(counts.values())
        lines = [f"tasks: {total}"] + [f"  {n:5d} {name}" for name, n in counts.items()]
        return Reply.structured("\n".join(lines) + "\n", {"total": total, "by_name": counts})

    registry.register("tasks/show", "", 0, 0, show)
