"""systemd's readiness protocol (sd_notify), written out by hand.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
systemd documents the datagram itself as the interface, and the PyPI
``sdnotify`` package has not been released since 2017, so a dozen lines here
beat a dependency.  A datagram to a local socket never blocks for long, and
the socket is non-blocking anyway, so calling this from a trio task is safe.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends state changes to the service manager; a no-op outside systemd."""

    def __init__(self, address: str | None = None) -> None:
        if address is None:
            address = os.environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address

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
