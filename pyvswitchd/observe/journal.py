"""Whether the console is systemd's journal, and the priority prefix it reads.

systemd connects a service's stdout and stderr to the journal and says so in
``$JOURNAL_STREAM`` (``DEVICE:INODE`` of that stream).  The journal stores
every line at the unit's default priority (info) unless the line starts with
``<N>``, N being a syslog severity (sd-daemon(3)): without the prefix,
``journalctl -p warning`` shows none of the daemon's WARN or ERR lines.  The
prefix is only right on that stream: on a terminal or in a file it would
just be noise, and a stream redirected elsewhere keeps the variable but not
the inode, which is why both numbers are compared.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO


def is_journal_stream(stream: TextIO | None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal stream ``$JOURNAL_STREAM`` names."""
    env = os.environ if environ is None else environ
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if stream is None or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        # No descriptor (a test's capture buffer) or a closed one.
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def with_priority(text: str, severity: int) -> str:
    """``text`` with ``<severity>`` before each of its lines (it ends with a newline)."""
    prefix = f"<{severity}>"
    if text.count("\n") <= 1:
        return prefix + text
    return "".join(prefix + line for line in text.splitlines(keepends=True))
