"""The unixctl server: a trio task per connection over an AF_UNIX socket.

Framing and validation live in :mod:`.protocol`; this module only moves
bytes and applies OVS's connection rules: one request in flight per
connection (the next is not read until the reply is written), a protocol
error closes the connection without a reply, and a reply is sent even when
the handler failed.

And the rules that keep one client from harming the switch or the others:
no exception while serving a connection leaves it (logged, that connection
closed); who gets a connection slot is :mod:`.slots`' business; a streamed
reply (:class:`~.registry.StreamReply`) is built through the server's
:class:`~.pacer.Pacer` and sent chunk by chunk, at most MAX_STREAMS at a
time; a peer that reads none of its reply for SEND_TIMEOUT is dropped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket as stdlib_socket
import stat
import struct
from collections.abc import AsyncIterator, Callable

import attrs
import trio

from ..observe.accept import Acceptor
from ..observe.coverage import Coverage
from ..observe.vlog import Level, RateLimit, Vlog
from .pacer import Pacer
from .protocol import MAX_MESSAGE_BYTES, ProtocolError, ResultWriter, ServerConnection
from .registry import (
    CommandContext,
    CommandError,
    CommandRegistry,
    OutputFormat,
    PeerCredentials,
    Reply,
    StreamReply,
)
from .slots import Refused, Slot, SlotTable
from .sun_path import unix_address

_RECV_SIZE = 65536
#: Bytes handed to the kernel at a time; the send timeout applies to each.
_SEND_PIECE = 65536

#: Seconds a peer may go without reading any of its pending reply before the
#: connection is closed (OVS closes clients that fall too far behind too).
SEND_TIMEOUT = 10.0
#: Streamed replies in progress at once.  Each holds its builder's state (a
#: dump holds a snapshot of a flow table: 8 bytes a flow) and a chunk; more
#: wait their turn, so a crowd of clients that ask for dumps and never read
#: costs at most this many of them.
MAX_STREAMS = 16


@attrs.define
class ServerStats:
    """Counters of the control server, for metrics and memory/show."""

    connections: int = 0
    requests: int = 0
    errors: int = 0
    protocol_errors: int = 0
    #: Connections closed on accept: no slot for them (see .slots).
    refused_connections: int = 0
    #: Idle connections closed to make room for a new one.
    reclaimed_connections: int = 0
    #: Connections closed because serving them raised (a bug, logged at ERR).
    internal_errors: int = 0
    #: Connections closed because the peer stopped reading its reply.
    stalled_connections: int = 0


class SocketGroupError(OSError):
    """The bound socket could not be given its group (``ctl-group``); it was removed."""


class UnixctlServer:
    """Serves a :class:`CommandRegistry` on a unix socket.

    ``authorize`` (optional) is asked before each command runs; it returns
    None to allow or the refusal text.
    """

    def __init__(
        self,
        path: str,
        registry: CommandRegistry,
        vlog: Vlog,
        coverage: Coverage,
        *,
        mode: int = 0o770,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        slots: SlotTable | None = None,
        send_timeout: float = SEND_TIMEOUT,
        max_streams: int = MAX_STREAMS,
        authorize: Callable[[CommandContext], str | None] | None = None,
        is_admin: Callable[[PeerCredentials], bool] | None = None,
        group: int | None = None,
    ) -> None:
        self.path = path
        self.registry = registry
        self.stats = ServerStats()
        self.slots = slots if slots is not None else SlotTable()
        #: Shared by every connection: builders of big replies take turns.
        self.pacer = Pacer()
        self._send_timeout = send_timeout
        self._streams = trio.CapacityLimiter(max_streams)
        self._mode = mode
        self._max_message_bytes = max_message_bytes
        self._authorize = authorize
        self._is_admin = is_admin or _is_owner_or_root
        self._group = group
        self._log = vlog.module("unixctl")
        self._jsonrpc_log = vlog.module("jsonrpc")
        self._rl = RateLimit(5, 5)
        # Apart, so that a flood of malformed input cannot hide a bug's ERR lines.
        self._err_rl = RateLimit(5, 5)
        self._received = coverage.define("unixctl_received")
        self._replied = coverage.define("unixctl_replied")
        self._serial = 0
        self._in_flight = 0
        self._idle = trio.Event()
        self._idle.set()

    def set_authorizer(self, authorize: Callable[[CommandContext], str | None]) -> None:
        self._authorize = authorize

    def set_admin_check(self, is_admin: Callable[[PeerCredentials], bool]) -> None:
        """Who may use the slots reserved for administrators."""
        self._is_admin = is_admin

    @property
    def active_connections(self) -> int:
        return len(self.slots)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, report readiness, and serve until cancelled; the socket file goes with it."""
        sock = await self._bind()
        try:
            listener = trio.SocketListener(sock)
            acceptor = Acceptor(listener, self._log, f"unix:{self.path}")
            async with listener, trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    stream = await acceptor.accept()
                    try:
                        slot = self._admit(stream)
                    except Exception as exc:  # never let one connection end the listener
                        self.stats.internal_errors += 1
                        self._log.err(
                            f"closing new connection after an internal error: {exc!r}",
                            rl=self._err_rl,
                        )
                        slot = None
                    if slot is None:
                        stream.socket.close()
                        continue
                    nursery.start_soon(self._handle, stream, slot)
        finally:
            self._unlink_own_socket()

    def _admit(self, stream: trio.SocketStream) -> Slot | None:
        """A slot for the new connection, or None (refused, logged)."""
        peer = peer_credentials(stream.socket)
        try:
            admin = peer is not None and self._is_admin(peer)
        except Exception as exc:  # e.g. /proc unreadable: treat as a user
            self._log.err(
                f"cannot tell whether {peer} is an administrator: {exc!r}", rl=self._err_rl
            )
            admin = False
        self._serial += 1
        now = trio.current_time()
        slot = Slot(f"unix#{self._serial}", peer.uid if peer else None, admin, now, peer=peer)
        try:
            victim = self.slots.admit(slot, now)
        except Refused as exc:
            self.stats.refused_connections += 1
            who = f"uid {peer.uid} (pid {peer.pid})" if peer else "an unknown peer"
            self._log.warn(f"closing new connection from {who}: {exc}", rl=self._rl)
            return None
        if victim is not None:
            self.stats.reclaimed_connections += 1
            self._log.info(
                f"{victim.name}: closing connection of uid {victim.uid}, idle for "
                f"{victim.idle_for(now):.0f} s, to make room for {slot.name}",
                rl=self._rl,
            )
            victim.cancel_scope.cancel()
        return slot

    async def wait_idle(self) -> None:
        """Return once no request is being handled (used to flush `exit` replies)."""
        while self._in_flight:
            await self._idle.wait()

    async def _bind(self) -> trio.socket.SocketType:
        remove_stale_socket(self.path)
        sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
        try:
            # bind() creates the file with 0777 & ~umask; narrowing the umask
            # for the call means the socket never exists with looser permissions.
            # The bind is synchronous (an AF_UNIX bind does not block), so no
            # other task runs while the process-wide umask is changed.
            old_umask = os.umask(0o777 & ~self._mode)
            try:
                with unix_address(self.path) as address:
                    sock.bind(address)
            finally:
                os.umask(old_umask)
        except BaseException:
            sock.close()
            raise
        try:
            os.chmod(self.path, self._mode)  # umask cannot add bits, e.g. group write
            if self._group is not None:
                try:
                    os.chown(self.path, -1, self._group)
                except OSError as exc:
                    raise SocketGroupError(exc.errno, exc.strerror, self.path) from exc
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            # The file is ours: a socket nobody will ever answer on must not stay.
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        self._bound_ino = os.stat(self.path).st_ino
        await trio.lowlevel.checkpoint()
        return trio.socket.from_stdlib_socket(sock)

    def permissions(self) -> tuple[int, int] | None:
        """(mode, gid) of the socket file as it is now; None before bind or if it is gone."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if st.st_ino != getattr(self, "_bound_ino", None):
            return None
        return stat.S_IMODE(st.st_mode), st.st_gid

    def set_permissions(self, mode: int, group: int | None) -> None:
        """Give the bound socket file ``mode`` and ``group`` (None: the daemon's) now.

        ``ctl-mode`` and ``ctl-group`` changed at run time.  Raises OSError
        (the file unchanged) when it cannot be done: the file is not ours
        any more, or the daemon may not give it that group.
        """
        current = self.permissions()
        if current is None:
            raise FileNotFoundError(errno.ENOENT, f"{self.path} is not this daemon's socket")
        gid = os.getegid() if group is None else group
        if current[1] != gid:
            os.chown(self.path, -1, gid)
        try:
            os.chmod(self.path, mode)
        except OSError:
            with contextlib.suppress(OSError):
                os.chown(self.path, -1, current[1])
            raise
        self._mode, self._group = mode, group

    def _unlink_own_socket(self) -> None:
        try:
            if os.stat(self.path).st_ino == getattr(self, "_bound_ino", None):
                os.unlink(self.path)
        except OSError:
            pass

    async def _handle(self, stream: trio.SocketStream, slot: Slot) -> None:
        self.stats.connections += 1
        try:
            with slot.cancel_scope:  # cancelled when the slot is reclaimed
                async with stream:
                    await self._converse(stream, slot)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # The peer vanished (mid-reply, or reset): nothing to answer.
            pass
        except _Stalled as exc:
            # OVS drops such clients too: holding their reply would let any
            # client that never reads pin daemon memory (and a slot) forever.
            self.stats.stalled_connections += 1
            who = f"uid {slot.uid}" if slot.uid is not None else "unknown peer"
            self._log.warn(
                f"{slot.name}: closing connection of {who}: no reply data read for "
                f"{self._send_timeout:g} s ({exc.pending} bytes pending)",
                rl=self._rl,
            )
        except Exception as exc:
            # Whatever one connection's bytes or command provoke ends that
            # connection only: the switch keeps forwarding and serving others.
            self.stats.internal_errors += 1
            self._log.err(
                f"{slot.name}: closing connection after an internal error: {exc!r}",
                rl=self._err_rl,
            )
        finally:
            self.slots.release(slot)

    async def _converse(self, stream: trio.SocketStream, slot: Slot) -> None:
        """Requests and replies, one at a time, until the peer leaves or misbehaves."""
        conn = ServerConnection(self._max_message_bytes)
        output_format = OutputFormat.TEXT
        while True:
            try:
                request = conn.next_request()
            except ProtocolError as exc:
                self.stats.protocol_errors += 1
                log = self._log if exc.log_module == "unixctl" else self._jsonrpc_log
                log.warn(f"{slot.name}: {exc}", rl=self._rl)
                return
            if request is None:
                data = await stream.receive_some(_RECV_SIZE)
                if not data:
                    return
                conn.receive_data(data)
                continue
            slot.last_request = trio.current_time()
            context = CommandContext(
                name=request.method, output_format=output_format, peer=slot.peer, pacer=self.pacer
            )
            # In flight until the reply is written: `exit` waits on this.
            self._in_flight += 1
            self._idle = trio.Event()
            slot.busy += 1
            try:
                reply = await self._dispatch(context, request.id, request.params, slot.name)
                output_format = context.output_format  # set-options may change it
                if isinstance(reply, bytes):
                    await self._send(stream, reply)
                else:
                    await self._send_streamed(stream, reply)
            finally:
                slot.busy -= 1
                slot.last_request = trio.current_time()
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()

    async def _send(self, stream: trio.SocketStream, data: bytes) -> None:
        """``data`` to the peer; _Stalled if it accepts none of it for send_timeout."""
        view = memoryview(data)
        for start in range(0, len(view), _SEND_PIECE):
            with trio.move_on_after(self._send_timeout) as scope:
                await stream.send_all(view[start : start + _SEND_PIECE])
            if scope.cancelled_caught:
                raise _Stalled(len(view) - start)

    async def _send_streamed(self, stream: trio.SocketStream, reply: _Streamed) -> None:
        """A streamed reply, chunk by chunk as the builder makes them."""
        writer = reply.writer
        try:
            await self._send(stream, writer.head() + writer.piece(reply.first))
            async for chunk in reply.rest:
                await self._send(stream, writer.piece(chunk))
            await self._send(stream, writer.tail())
        finally:
            with trio.CancelScope(shield=True):
                await _aclose(reply.rest)
            self._streams.release()

    async def _start_stream(
        self, reply: StreamReply, context: CommandContext, request_id: object
    ) -> _Streamed:
        # The first chunk is made before anything is sent, so that a handler
        # failing at once still gets an error reply.
        if context.output_format is OutputFormat.JSON:
            if reply.json is not None:
                writer, chunks = ResultWriter.json(request_id), reply.json()
            else:
                writer, chunks = ResultWriter.plain(request_id), reply.text()
        else:
            writer, chunks = ResultWriter.text(request_id), reply.text()
        try:
            await self._streams.acquire()
        except BaseException:
            with trio.CancelScope(shield=True):
                await _aclose(chunks)
            raise
        try:
            first = await anext(aiter(chunks), "")
        except BaseException:
            with trio.CancelScope(shield=True):
                await _aclose(chunks)
            self._streams.release()
            raise
        return _Streamed(writer, first, chunks)  # _send_streamed releases

    async def _dispatch(
        self, context: CommandContext, request_id: object, params: list[object], name: str
    ) -> bytes | _Streamed:
        self._received.inc()
        self.stats.requests += 1
        if self._log.is_enabled(Level.DBG):
            self._log.dbg(
                f"received request {context.name}{_compact(params)}, id={_compact(request_id)}"
            )
        try:
            refusal = self._authorize(context) if self._authorize else None
            if refusal is not None:
                raise CommandError(refusal)
            reply = await self.registry.invoke_streaming(context, params)
            if isinstance(reply, StreamReply):
                streamed = await self._start_stream(reply, context, request_id)
        except CommandError as exc:
            self.stats.errors += 1
            failed, shown = True, _compact(str(exc))
            payload = ServerConnection.failure(request_id, str(exc))
        except Exception as exc:  # a handler bug must not take the daemon down
            self.stats.errors += 1
            self._log.err(f"{name}: command {context.name!r} failed: {exc!r}", rl=self._err_rl)
            text = f'"{context.name}" command failed: {exc}'
            failed, shown = True, _compact(text)
            payload = ServerConnection.failure(request_id, text)
        else:
            if isinstance(reply, StreamReply):
                self._replied.inc()
                if self._log.is_enabled(Level.DBG):
                    self._log.dbg(f"replying with success, id={_compact(request_id)}: (streamed)")
                return streamed
            value = reply_value(reply, context)
            failed, shown = False, _compact(value)
            try:
                payload = ServerConnection.success(request_id, value)
            except (ValueError, TypeError, RecursionError) as exc:
                # NaN, a lone surrogate, a set...: a handler bug, answered as one.
                self.stats.errors += 1
                self._log.err(
                    f"{name}: reply to {context.name!r} is not JSON: {exc!r}", rl=self._err_rl
                )
                text = f'"{context.name}" command failed: its reply cannot be encoded'
                failed, shown = True, _compact(text)
                payload = ServerConnection.failure(request_id, text)
        self._replied.inc()
        if self._log.is_enabled(Level.DBG):
            kind = "error" if failed else "success"
            self._log.dbg(f"replying with {kind}, id={_compact(request_id)}: {shown}")
        return payload


class _Stalled(Exception):
    """The peer read nothing of its reply for the send timeout."""

    def __init__(self, pending: int) -> None:
        super().__init__(pending)
        self.pending = pending


@attrs.frozen
class _Streamed:
    """A streamed reply under way: its encoder, first chunk and the rest."""

    writer: ResultWriter
    first: str
    rest: AsyncIterator[str]


async def _aclose(chunks: AsyncIterator[str]) -> None:
    # Async generators hold their builder's state until closed: close at once.
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()


def reply_value(reply: Reply, context: CommandContext) -> object:
    """What goes in ``result``: text, or in JSON mode the structured form."""
    if context.output_format is OutputFormat.JSON:
        if reply.has_data:
            return reply.data
        return {"reply-format": "plain", "reply": reply.text}
    return reply.text


def _compact(value: object) -> str:
    """``value`` for a DBG line; never raises (the line may show what JSON cannot carry)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError):
        return repr(value)


_PEERCRED = struct.Struct("3i")


def _is_owner_or_root(peer: PeerCredentials) -> bool:
    return peer.uid in (0, os.getuid())


def peer_credentials(sock: trio.socket.SocketType) -> PeerCredentials | None:
    try:
        raw = sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return None
    pid, uid, gid = _PEERCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def remove_stale_socket(path: str) -> None:
    """Unlink ``path`` if it is a socket nobody listens on; refuse to touch anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        with unix_address(path) as address:
            probe.connect(address)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise FileExistsError(errno.EADDRINUSE, f"{path} is in use by a running process")
