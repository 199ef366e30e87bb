"""The channel between the daemon and one PMD worker process.

A PMD worker and the daemon share one AF_UNIX stream socket pair.  What
crosses it is control traffic only -- reloads, live settings, batched
upcalls and their megaflows, flow commands, log records -- never a packet
on its way through the switch, so plain pickled objects are fast enough
and keep the message types ordinary attrs classes.

Framing: each message is an 8-byte header (payload length, number of file
descriptors it carries) followed by the pickled payload.  File descriptors
(sockets and TAP queues a worker polls) travel as SCM_RIGHTS ancillary data
attached to the header's bytes; the receiver keeps every descriptor it gets
in arrival order and each message takes its own count from the front, so
descriptors are never matched to the wrong message however the kernel
splits the stream.

:class:`Decoder` is the protocol without I/O (h11's shape); the two
endpoints move bytes for it: :class:`SyncEndpoint` in the worker, whose
loop is plain Python, and :class:`TrioEndpoint` in the daemon.

Both ends are the same program, started by the daemon on a socket only
the two hold, which is why pickle is acceptable here.
"""

from __future__ import annotations

import array
import os
import pickle
import select
import socket
import struct
import time
import typing
from collections import deque
from collections.abc import Sequence

import attrs
import trio

_HEADER = struct.Struct("=II")
#: Most descriptors one sendmsg carries (the kernel's SCM_MAX_FD is 253).
MAX_FDS_PER_SEND = 250
#: Largest message accepted; a bigger header means the stream is corrupt.
MAX_MESSAGE_BYTES = 256 << 20
_RECV_SIZE = 1 << 16
_FD_SIZE = array.array("i").itemsize
_ANC_SPACE = socket.CMSG_SPACE(MAX_FDS_PER_SEND * _FD_SIZE)
# Received descriptors must not leak into processes the receiver starts later.
_RECV_FLAGS = socket.MSG_CMSG_CLOEXEC


class ChannelClosed(Exception):
    """The other end closed the channel (or it broke)."""


class ChannelError(Exception):
    """The byte stream does not follow the framing: the channel is unusable."""


@attrs.define(eq=False)
class Received:
    """One message and the descriptors that came with it (now owned by the receiver)."""

    message: object
    fds: list[int]


def encode(message: object, n_fds: int = 0) -> bytes:
    """The bytes of one framed message that carries ``n_fds`` descriptors."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload), n_fds) + payload


class Decoder:
    """Turns received bytes and descriptors back into messages."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._fds: deque[int] = deque()

    def feed(self, data: bytes, fds: Sequence[int] = ()) -> None:
        self._buf += data
        self._fds.extend(fds)

    def next(self) -> Received | None:
        """The next complete message, or None until more bytes arrive."""
        buf = self._buf
        if len(buf) < _HEADER.size:
            return None
        size, n_fds = _HEADER.unpack_from(buf)
        if size > MAX_MESSAGE_BYTES:
            raise ChannelError(f"message of {size} bytes announced")
        end = _HEADER.size + size
        if len(buf) < end:
            return None
        if len(self._fds) < n_fds:
            # Descriptors ride on the header bytes, so they are here by now.
            raise ChannelError(f"message expects {n_fds} descriptors, {len(self._fds)} arrived")
        message = pickle.loads(memoryview(buf)[_HEADER.size : end])
        del buf[:end]
        fds = [self._fds.popleft() for _ in range(n_fds)]
        return Received(message, fds)

    def close(self) -> None:
        """Close descriptors that arrived but were never claimed by a message."""
        while self._fds:
            os.close(self._fds.popleft())


def _ancillary(fds: Sequence[int]) -> list[tuple[int, int, bytes]]:
    if not fds:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]


def _unpack_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _FD_SIZE
            fds.extend(array.array("i", data[:usable]))
    return fds


def _chunks(data: bytes, fds: Sequence[int]) -> list[tuple[bytes, Sequence[int]]]:
    """Split a send so that no sendmsg carries more than MAX_FDS_PER_SEND descriptors.

    A stream cannot carry ancillary data without bytes, so a large set is
    spread over the first bytes of the message, one chunk per byte.
    """
    if len(fds) <= MAX_FDS_PER_SEND:
        return [(data, fds)]
    pieces: list[tuple[bytes, Sequence[int]]] = []
    rest = list(fds)
    pos = 0
    while len(rest) > MAX_FDS_PER_SEND and pos < len(data) - 1:
        pieces.append((data[pos : pos + 1], rest[:MAX_FDS_PER_SEND]))
        rest = rest[MAX_FDS_PER_SEND:]
        pos += 1
    pieces.append((data[pos:], rest))
    return pieces


class SyncEndpoint:
    """The worker's end: blocking sends, blocking or non-blocking receives."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        self._decoder = Decoder()
        self._backlog: deque[Received] = deque()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: object, fds: Sequence[int] = ()) -> None:
        data = encode(message, len(fds))
        try:
            for chunk, chunk_fds in _chunks(data, fds):
                view = memoryview(chunk)
                sent = self.sock.sendmsg([view], _ancillary(chunk_fds))
                while sent < len(view):
                    sent += self.sock.send(view[sent:])
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc

    def _read(self, block: bool) -> bool:
        """Read what is there (waiting for something when ``block``); False if nothing was."""
        # The socket stays blocking; a non-blocking read says so per call
        # (toggling the socket's mode would cost two more syscalls a read).
        flags = _RECV_FLAGS if block else _RECV_FLAGS | socket.MSG_DONTWAIT
        try:
            data, ancdata, _, _ = self.sock.recvmsg(_RECV_SIZE, _ANC_SPACE, flags)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            raise ChannelClosed(str(exc)) from exc
        self._decoder.feed(data, _unpack_fds(ancdata))
        if not data:
            raise ChannelClosed("the daemon closed the channel")
        return True

    def poll(self) -> list[Received]:
        """Every message that has fully arrived, without waiting."""
        out = list(self._backlog)
        self._backlog.clear()
        while True:
            item = self._decoder.next()
            if item is not None:
                out.append(item)
                continue
            try:
                if not self._read(block=False):
                    return out
            except ChannelClosed:
                if out:
                    return out  # what came before the close; the next call reports it
                raise

    @typing.overload
    def receive(self) -> Received: ...
    @typing.overload
    def receive(self, timeout: float) -> Received | None: ...

    def receive(self, timeout: float | None = None) -> Received | None:
        """The next message to arrive, waiting for it (at most ``timeout`` seconds: then None).

        Messages set aside are not returned here: :meth:`poll` returns them.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = self._decoder.next()
            if item is not None:
                return item
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                    return None
            self._read(block=True)

    def set_aside(self, item: Received) -> None:
        """Keep ``item`` for the next :meth:`poll` (met while waiting for a reply)."""
        self._backlog.append(item)

    def close(self) -> None:
        self._decoder.close()
        self.sock.close()


class TrioEndpoint:
    """The daemon's end of one worker's channel."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = trio.socket.from_stdlib_socket(sock)
        self._decoder = Decoder()
        self._send_lock = trio.Lock()

    def fileno(self) -> int:
        return self._sock.fileno()

    async def send(self, message: object, fds: Sequence[int] = ()) -> None:
        """Send ``message``; ``fds`` are duplicated into the receiver (ours stay open)."""
        data = encode(message, len(fds))
        # Messages from several tasks must not interleave on the stream.
        async with self._send_lock:
            try:
                for chunk, chunk_fds in _chunks(data, fds):
                    view = memoryview(chunk)
                    sent = await self._sock.sendmsg([view], _ancillary(chunk_fds))
                    while sent < len(view):
                        sent += await self._sock.send(view[sent:])
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> Received:
        while True:
            item = self._decoder.next()
            if item is not None:
                return item
            try:
                data, ancdata, _, _ = await self._sock.recvmsg(_RECV_SIZE, _ANC_SPACE, _RECV_FLAGS)
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc
            self._decoder.feed(data, _unpack_fds(ancdata))
            if not data:
                raise ChannelClosed("the worker closed the channel")

    def close(self) -> None:
        self._decoder.close()
        self._sock.close()


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(daemon end, worker end); the worker end is inheritable for the child process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # Control messages are small; roomy buffers keep a reply burst from blocking.
    for s in (ours, theirs):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return ours, theirs
