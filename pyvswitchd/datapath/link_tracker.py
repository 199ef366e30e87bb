"""Link tracking: ports follow their kernel interfaces, as OVS's if-notifier makes them.

A port on a kernel interface (``system``, ``afpacket``, ``tap``,
``internal``) holds sockets or descriptors bound to one interface index.
When the interface is deleted they are dead for good, and a new interface
of the same name is another device.  :class:`LinkTracker` is a trio task
that listens to the kernel's link notifications
(:class:`~pyvswitchd.netdev.link_monitor.LinkMonitor`) and hands the names
concerned to :meth:`Datapath.track_links
<pyvswitchd.datapath.dp.Datapath.track_links>`, which marks a port whose
interface went as gone and opens anew one whose interface appeared or
re-appeared, through the datapath's usual reconfiguration (PMD workers
reopen their side at the reload that follows).  Notifications lost to a
full socket buffer make every tracked port be looked at again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..netdev.link_monitor import LinkEvent, LinkMonitor
from ..observe.vlog import RateLimit

if TYPE_CHECKING:
    from .dp import Datapath


class LinkTracker:
    """The task that keeps a datapath's ports on kernel interfaces in line with the kernel."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        self._log = dp.log
        self._rl = RateLimit(5, 5)
        #: Batches of notifications acted on (tests wait on it).
        self.batches = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the kernel's link notifications until cancelled."""
        try:
            monitor = LinkMonitor()
        except OSError as exc:
            self._log.warn(
                f"link tracking unavailable ({exc.strerror or exc}): ports whose interface "
                "comes back are reopened only by a reload"
            )
            task_status.started()
            return
        with monitor:
            task_status.started()
            while True:
                events = await monitor.receive()
                names = None if events is None else self._names(events)
                if names is not None and not names:
                    continue
                try:
                    await self._dp.track_links(names)
                except Exception as exc:  # one bad reopen must not end the switch
                    self._log.err(f"link tracking: {exc!r}", rl=self._rl)
                self.batches += 1

    def _names(self, events: list[LinkEvent]) -> set[str]:
        """The interface names ``events`` concern: theirs, and those of ports on their indexes."""
        indexes = {e.ifindex for e in events}
        names = {e.name for e in events if e.name}
        # A renamed interface is announced under its new name: its port has the old one.
        names |= {p.name for p in self._dp.ports.values() if p.netdev.ifindex in indexes}
        return names
