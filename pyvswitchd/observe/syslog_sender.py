"""Delivery of vlog's syslog destination: libc syslog(3), or datagrams to
``unix:PATH`` / ``udp:HOST[:PORT]`` as OVS's ``--syslog-method`` offers."""

from __future__ import annotations

import errno
import socket
import sys
import syslog
from typing import Any

_LOG_DAEMON = 3 << 3
_FACILITY_MASK = 0x3F8


class SyslogSender:
    """The syslog sender chosen by the syslog method; ``prefix`` is what
    ``vlog/list-pattern`` shows the receiving end adds."""

    def __init__(self, method: str, program: str) -> None:
        self._program = program
        self._libc = method == "libc"
        self._libc_opened = False
        self._sock: socket.socket | None = None
        self._max_len = sys.maxsize
        #: Seconds a datagram may wait for room in a full receiver.  0 (drop
        #: it) while the daemon runs: a stalled syslog must not stall the
        #: switch.  Raised for the last words of a daemon that is dying.
        self.patience = 0.0
        if self._libc:
            self.prefix = "<%B> %D{%h %e %T} %E %A:"
        elif method == "null":
            self.prefix = ""
        elif method.startswith(("unix:", "udp:")):
            self.prefix = "<%B>"
            self._sock = _connect_datagram(method)
        else:
            raise ValueError(f"unsupported syslog method '{method}'")

    def send(self, pri: int, line: str) -> None:
        if self._libc:
            if not self._libc_opened:
                syslog.openlog(self._program, syslog.LOG_NDELAY, _LOG_DAEMON)
                self._libc_opened = True
            syslog.syslog(pri, line)
        if self._sock is None:
            return
        if not pri & _FACILITY_MASK:
            pri |= _LOG_DAEMON
        data = f"<{pri}>{line}".encode("utf-8", "backslashreplace")
        length = min(len(data), self._max_len)
        while length > 0:
            try:
                self._sock.send(data[:length])
                return
            except BlockingIOError:
                if self.patience <= 0:
                    return
                self._send_patiently(data[:length])
                return
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    return
                # Learn the largest datagram the socket takes, as OVS does.
                length -= max(length // 20, 1)
                self._max_len = length

    def _send_patiently(self, data: bytes) -> None:
        # Only on the way out (see patience): the receiver is behind, so wait
        # for room rather than lose the lines that say why the daemon died.
        assert self._sock is not None
        self._sock.settimeout(self.patience)
        try:
            self._sock.send(data)
        except OSError:
            pass
        finally:
            self._sock.setblocking(False)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _connect_datagram(method: str) -> socket.socket | None:
    """A non-blocking datagram socket to ``unix:PATH`` or ``udp:IP[:PORT]``.

    None when that fails: like OVS, an unusable target discards messages.
    """
    try:
        address: str | tuple[Any, ...]
        if method.startswith("unix:"):
            family, address = socket.AF_UNIX, method[5:]
        else:
            host, sep, port = method[4:].rpartition(":")
            if not sep:
                host, port = port, "514"
            info = socket.getaddrinfo(
                host.strip("[]"), int(port), type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
            )[0]
            family, address = info[0], info[4]
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except (OSError, ValueError):
        return None
    try:
        sock.setblocking(False)  # a stalled syslog daemon must not stall the daemon
        sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock
