"""What the offload tests share: a fake port and a Vlog captured at DBG."""

from __future__ import annotations

import io

import attrs

from pyvswitchd.observe.vlog import Destination, Level, Vlog


@attrs.frozen
class FakePort:
    port_no: int
    name: str
    type: str = "dummy-pmd"


def captured_vlog() -> tuple[io.StringIO, Vlog]:
    """A Vlog whose console (at DBG for the offload modules) writes to a StringIO."""
    console = io.StringIO()
    vlog = Vlog("test", console=console, syslog_method="null")
    for name in ("dpif_offload", "dpif_offload_dummy"):
        vlog.module(name)
    vlog.set_levels(Level.DBG, destination=Destination.CONSOLE)
    return console, vlog


def log_messages(console: io.StringIO, level: str | None = None) -> list[str]:
    """Messages logged so far (optionally only at ``level``)."""
    out = []
    for line in console.getvalue().splitlines():
        _time, _serial, _module, lvl, msg = line.split("|", 4)
        if level is None or lvl == level:
            out.append(msg)
    return out
