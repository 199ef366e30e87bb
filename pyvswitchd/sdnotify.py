"""systemd's readiness protocol (sd_notify), written out by hand.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
systemd documents the datagram itself as the interface, and the PyPI
``sdnotify`` package has not been released since 2017, so a dozen lines here
beat a dependency.  A datagram to a local socket never blocks for long, and
the socket is non-blocking anyway, so calling this from a trio task is safe.

The watchdog: with ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``, the process meant) and restarts a service that sends no
``WATCHDOG=1`` for that long.  The daemon sends it from a task of its event
loop, so a loop that stops turning (a blocking call, a livelock) is what
systemd notices.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1`` (half of what systemd allows), or None.

    None when systemd asks for no keep-alives from this process: no or a bad
    ``$WATCHDOG_USEC``, or a ``$WATCHDOG_PID`` that is another process (a
    child that inherited the environment).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
        pid = int(env.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2e6


class Notifier:
    """Sends state changes to the service manager; a no-op outside systemd."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        #: Seconds between keep-alives (None: systemd wants none).
        self.watchdog_interval = watchdog_interval() if address else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram; False if it could not be delivered (never raises)."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(payload, self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        # systemctl reload on Type=notify-reload waits forever without MONOTONIC_USEC.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")
