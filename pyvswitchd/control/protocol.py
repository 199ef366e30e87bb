"""unixctl wire protocol: JSON-RPC 1.0 over a byte stream, without any I/O.

OVS frames unixctl messages as concatenated JSON texts with no delimiter,
no length prefix and no trailing newline; a message ends where its top-level
JSON value ends.  This module turns received bytes into messages and
messages into bytes, in the style of h11: the caller owns the socket and
feeds data in (:meth:`JsonStream.feed`) and takes events out.

Both the server (``pyvswitchd``) and the client (``pyappctl``) use it, so the
two can never disagree on framing.

Wire facts reproduced here (captured from Open vSwitch 3.1):

* success reply ``{"id":I,"result":R,"error":null}``;
* error reply ``{"id":I,"error":E}`` — no ``result`` member at all;
* a member whose value is ``null`` counts as absent;
* an invalid message is a protocol error: the server closes the
  connection without replying.

Python's json module accepts more than JSON, and more than it can write
back: ``NaN`` and ``Infinity``, numbers too big for a float, lone UTF-16
surrogates (``"\\ud800"``); on an integer of more than 4300 digits it
raises a bare ValueError.  A reply echoes the request's ``id``, so the
stream refuses all of these as protocol errors, as OVS's own parser does:
every value it returns encodes again.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeAlias

import attrs

#: Largest JSON text accepted in one message.  OVS has no such bound; a
#: daemon that buffers whatever a peer sends can be made to eat all memory.
MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB

#: Deepest nesting accepted; deeper input would exhaust the json module's stack.
MAX_DEPTH = 256

_WHITESPACE = frozenset(b" \t\r\n")
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")
# Characters that end a bare top-level scalar such as `true` or `123`.
_SCALAR_END = _WHITESPACE | _OPEN | _CLOSE | frozenset(b'",:')
# A \\u escape of a UTF-16 surrogate: only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# What the scanner steps over in one match, outside strings: runs of bytes
# that are neither brackets nor quotes, and whole strings (escapes
# included).  It stops at a bracket, at the quote of a string that does not
# end in the buffer yet, or at the end.  Possessive: never backtracks.
_SKIP = re.compile(rb'(?:[^"\[\]{}]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
#: Bytes looked at in one go when counting a run of backslashes backwards.
_RUN_WINDOW = 256
# The bytes of a bare top-level scalar (up to one of _SCALAR_END).
_SCALAR = re.compile(rb'[^ \t\r\n\[\]{}",:]*+')


class _NotJson(ValueError):
    """Input the json module would accept but JSON (and OVS) does not."""


def _reject_keyword(name: str) -> Any:
    raise _NotJson(f"invalid keyword '{name}'")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise _NotJson("number outside valid range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_keyword, parse_float=_finite_float)


def _has_lone_surrogate(value: Any) -> bool:
    """True if a string anywhere in ``value`` (keys included) cannot be UTF-8 encoded."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: Any = (item,)
        elif isinstance(item, dict):
            strings = item.keys()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


class ProtocolError(Exception):
    """The peer broke the protocol; the connection must be closed.

    ``log_module`` and ``str(exc)`` give the WARN line OVS would log
    (``jsonrpc: error parsing stream: ...``, ``jsonrpc: received bad JSON-RPC
    message: ...``, ``unixctl: received unexpected notification message``).
    """

    def __init__(self, message: str, *, log_module: str = "jsonrpc") -> None:
        super().__init__(message)
        self.log_module = log_module


class JsonStream:
    """Splits a byte stream into top-level JSON values.

    The scanner keeps its state between :meth:`feed` calls, so a message
    dribbled in one byte at a time, or ten megabytes arriving in small
    chunks, costs time linear in its length.  It does not look at every
    byte in Python: compiled patterns step over whole strings, the runs
    between brackets and bare scalars, and ``bytearray.find`` jumps from
    quote to quote through a string that arrives in pieces, so framing a
    reply costs less than decoding it.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_message_bytes
        self._pos = 0  # next byte to scan
        self._start = -1  # where the current value starts, -1 between values
        self._depth = 0
        self._in_string = False
        self._scalar = False  # current top-level value is a bare scalar

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a value."""
        return len(self._buf)

    def next_value(self) -> tuple[bool, Any]:
        """Return ``(True, value)`` for the next complete value, or ``(False, None)``.

        Raises ProtocolError on a syntax error, invalid UTF-8, a value
        larger than the limit or nesting deeper than MAX_DEPTH.
        """
        end = self._scan()
        if end < 0:
            if len(self._buf) - max(self._start, 0) > self._max:
                raise ProtocolError(f"error parsing stream: message exceeds {self._max} bytes")
            return False, None
        start, self._start, self._pos = self._start, -1, 0
        try:
            # Decoded straight from the buffer: a big reply is not copied first.
            with memoryview(self._buf) as view, view[start:end] as value_bytes:
                text = str(value_bytes, "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                f"error parsing stream: invalid UTF-8 at byte {exc.start}"
            ) from None
        finally:
            del self._buf[:end]
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError(
                f"error parsing stream: line {exc.lineno - 1}, column {exc.colno - 1}, "
                f"byte {exc.pos}: {exc.msg}"
            ) from None
        except _NotJson as exc:
            raise ProtocolError(f"error parsing stream: {exc}") from None
        except ValueError:
            # int() refuses more than sys.get_int_max_str_digits() digits.
            raise ProtocolError("error parsing stream: number outside valid range") from None
        except RecursionError:  # pragma: no cover - MAX_DEPTH keeps us below this
            raise ProtocolError("error parsing stream: nesting too deep") from None
        if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
            raise ProtocolError("error parsing stream: malformed escaped surrogate pair")
        return True, value

    def _scan(self) -> int:
        """Advance the scanner; return the end offset of a complete value or -1."""
        buf = self._buf
        n = len(buf)
        pos = self._pos
        if self._start < 0:
            while pos < n and buf[pos] in _WHITESPACE:
                pos += 1
            if pos == n:
                # Drop leading whitespace so an idle peer sending blanks holds no memory.
                del buf[:pos]
                self._pos = 0
                return -1
            self._start = pos
            self._depth = 0
            self._in_string = False
            first = buf[pos]
            self._scalar = first not in _OPEN
            if first == _QUOTE:
                self._in_string = True
                pos += 1
            elif first not in _OPEN and first in _SCALAR_END:
                raise ProtocolError(
                    f"error parsing stream: line 0, column {pos}, byte {pos}: "
                    f"syntax error at beginning of input"
                )
        if self._scalar and not self._in_string:
            # Bare `true`, `123`...: complete only once a delimiter follows.
            pos = _SCALAR.match(buf, pos).end()  # type: ignore[union-attr]  # always matches
            self._pos = pos
            return pos if pos < n else -1
        depth = self._depth
        in_string = self._in_string
        while True:
            if in_string:
                end = _string_end(buf, pos, self._start)
                if end < 0:
                    pos = n
                    break
                pos = end + 1
                in_string = False
                if depth == 0:  # a top-level string
                    self._in_string = False
                    self._pos = pos
                    return pos
            pos = _SKIP.match(buf, pos).end()  # type: ignore[union-attr]  # always matches
            if pos >= n:
                break
            c = buf[pos]
            pos += 1
            if c == _QUOTE:  # a string that goes on past the buffer
                in_string = True
            elif c in _OPEN:
                depth += 1
                if depth > MAX_DEPTH:
                    raise ProtocolError(
                        f"error parsing stream: input exceeds maximum nesting depth {MAX_DEPTH}"
                    )
            else:
                depth -= 1
                if depth == 0:
                    self._depth = 0
                    self._pos = pos
                    return pos
        self._depth = depth
        self._in_string = in_string
        self._pos = pos
        return -1


def _string_end(buf: bytearray, pos: int, start: int) -> int:
    """Offset of the quote ending the string ``pos`` is in (-1: not in ``buf`` yet).

    The string began after ``start``.  A quote ends it unless an odd
    number of backslashes precede it; ``find`` jumps from quote to quote.
    """
    checked = False
    while True:
        quote = buf.find(b'"', pos)
        if quote < 0:
            return -1
        if buf[quote - 1] != _BACKSLASH:
            return quote
        # \" escapes the quote; only a longer run of backslashes needs counting.
        if buf[quote - 2] == _BACKSLASH and _backslashes_before(buf, quote, start) % 2 == 0:
            return quote
        pos = quote + 1
        if not checked:
            # Text with many escaped quotes: if every quote left is \" (and
            # none \\"), none ends the string: skip them all at once.
            checked = True
            quotes = buf.count(b'"', pos)
            if buf.count(b'\\"', pos) == quotes and buf.find(b'\\\\"', pos) < 0:
                return -1


def _backslashes_before(buf: bytearray, end: int, start: int) -> int:
    """How many backslashes directly precede ``end`` (none before ``start``)."""
    count = 0
    while end > start:
        window = buf[max(start, end - _RUN_WINDOW) : end]
        run = len(window) - len(window.rstrip(b"\\"))
        count += run
        if run < len(window):
            break
        end -= run
    return count


# ---------------------------------------------------------------------------
# JSON-RPC 1.0 messages


@attrs.frozen
class Request:
    id: Any
    method: str
    params: list[Any]


@attrs.frozen
class Notification:
    method: str
    params: list[Any]


@attrs.frozen
class Response:
    """A successful reply."""

    id: Any
    result: Any


@attrs.frozen
class ErrorResponse:
    id: Any
    error: Any


Message: TypeAlias = Request | Notification | Response | ErrorResponse

_MEMBERS = ("method", "params", "result", "error", "id")
# (type name, members it must have, members it must not have), in OVS's check order.
_RULES = {
    "request": (("method", "params", "id"), ("result", "error")),
    "notification": (("method", "params"), ("result", "error", "id")),
    "reply": (("result", "id"), ("method", "params", "error")),
    "error": (("error", "id"), ("method", "params", "result")),
}


def parse_message(value: Any) -> Message:
    """Classify and validate one decoded JSON value as OVS's jsonrpc does."""
    if not isinstance(value, dict):
        raise ProtocolError("received bad JSON-RPC message: message is not a JSON object")
    for key in value:
        if key not in _MEMBERS:
            raise ProtocolError(
                f'received bad JSON-RPC message: message has unexpected member "{key}"'
            )
    present = {k for k in _MEMBERS if value.get(k) is not None}
    method = value.get("method")
    if method is not None and not isinstance(method, str):
        raise ProtocolError("received bad JSON-RPC message: method is not a JSON string")
    params = value.get("params")
    if params is not None and not isinstance(params, list):
        raise ProtocolError('received bad JSON-RPC message: "params" must be JSON array')
    if "result" in present:
        kind = "reply"
    elif "error" in present:
        kind = "error"
    elif "id" in present:
        kind = "request"
    else:
        kind = "notification"
    must, must_not = _RULES[kind]
    for member in must:
        if member not in present:
            raise ProtocolError(f'received bad JSON-RPC message: {kind} must have "{member}"')
    for member in must_not:
        if member in present:
            raise ProtocolError(f'received bad JSON-RPC message: {kind} must not have "{member}"')
    if kind == "request":
        assert isinstance(method, str) and isinstance(params, list)
        return Request(value["id"], method, params)
    if kind == "notification":
        assert isinstance(method, str) and isinstance(params, list)
        return Notification(method, params)
    if kind == "reply":
        return Response(value["id"], value["result"])
    return ErrorResponse(value["id"], value["error"])


def _dumps(obj: Any) -> bytes:
    """Compact and UTF-8 like OVS's serialiser; no trailing newline on the wire.

    Raises ValueError (NaN, infinities, lone surrogates), TypeError (not a
    JSON type) or RecursionError for what JSON cannot carry: such a value
    must never reach a peer half-encoded.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def _encodable(text: str) -> str:
    """``text`` with anything UTF-8 cannot carry (lone surrogates) replaced by ``?``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def with_newline(text: str) -> str:
    """OVS's server appends a newline to any non-empty body that lacks one."""
    if text and not text.endswith("\n"):
        return text + "\n"
    return text


def encode_request(id: Any, method: str, params: list[str]) -> bytes:
    return _dumps({"id": id, "method": method, "params": params})


def encode_response(id: Any, result: Any) -> bytes:
    return _dumps({"id": id, "result": result, "error": None})


def encode_error(id: Any, error: str) -> bytes:
    return _dumps({"id": id, "error": error})


class ServerConnection:
    """Server side of one unixctl connection: bytes in, requests out."""

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._stream = JsonStream(max_message_bytes)

    def receive_data(self, data: bytes) -> None:
        self._stream.feed(data)

    def next_request(self) -> Request | None:
        """The next complete request, or None when more data is needed.

        Anything but a request is a ProtocolError, as in OVS's server,
        which only ever expects requests from its clients.
        """
        complete, value = self._stream.next_value()
        if not complete:
            return None
        message = parse_message(value)
        if not isinstance(message, Request):
            kind = {Notification: "notification", Response: "reply", ErrorResponse: "error"}[
                type(message)
            ]
            raise ProtocolError(f"received unexpected {kind} message", log_module="unixctl")
        return message

    @staticmethod
    def success(request_id: Any, result: Any) -> bytes:
        """The reply bytes; ValueError/TypeError if ``result`` is not JSON (see _dumps)."""
        if isinstance(result, str):
            result = with_newline(result)
        return encode_response(request_id, result)

    @staticmethod
    def failure(request_id: Any, error: str) -> bytes:
        """The error reply bytes; never raises for an id that came from :meth:`next_request`."""
        return encode_error(request_id, with_newline(_encodable(error)))


class ResultWriter:
    """Encodes a success reply whose result comes in pieces (a streamed reply).

    ``head()``, ``piece(chunk)`` for each chunk, then ``tail()``: together
    the bytes :meth:`ServerConnection.success` would make of the whole
    result, without the whole result ever being in memory.  Construct with
    :meth:`text` (a text result: escaped piece by piece, final newline added
    as :func:`with_newline` does), :meth:`plain` (text in JSON mode:
    ``{"reply-format":"plain","reply":...}``) or :meth:`json` (the pieces
    are JSON text already).
    """

    def __init__(
        self, request_id: Any, *, escape: bool, newline: bool, prefix: bytes, suffix: bytes
    ) -> None:
        quote = b'"' if escape else b""
        self._head = b'{"id":' + _dumps(request_id) + b',"result":' + prefix + quote
        self._tail = quote + suffix + b',"error":null}'
        self._escape = escape
        self._newline = newline
        self._last = ""

    @classmethod
    def text(cls, request_id: Any) -> ResultWriter:
        return cls(request_id, escape=True, newline=True, prefix=b"", suffix=b"")

    @classmethod
    def plain(cls, request_id: Any) -> ResultWriter:
        prefix = b'{"reply-format":"plain","reply":'
        return cls(request_id, escape=True, newline=False, prefix=prefix, suffix=b"}")

    @classmethod
    def json(cls, request_id: Any) -> ResultWriter:
        return cls(request_id, escape=False, newline=False, prefix=b"", suffix=b"")

    def head(self) -> bytes:
        return self._head

    def piece(self, chunk: str) -> bytes:
        """``chunk`` on the wire; ValueError if it holds what UTF-8 cannot carry."""
        if not chunk:
            return b""
        self._last = chunk[-1]
        if self._escape:
            chunk = json.dumps(chunk, ensure_ascii=False)[1:-1]
        return chunk.encode("utf-8")

    def tail(self) -> bytes:
        if self._newline and self._last and self._last != "\n":
            return b"\\n" + self._tail
        return self._tail


class ClientConnection:
    """Client side: numbers requests from 0 and matches replies by id."""

    def __init__(self, max_message_bytes: int = 64 << 20) -> None:
        self._stream = JsonStream(max_message_bytes)
        self._next_id = 0
        self._waiting: Any = None

    def send_request(self, method: str, params: list[str]) -> bytes:
        self._waiting = self._next_id
        self._next_id += 1
        return encode_request(self._waiting, method, params)

    def receive_data(self, data: bytes) -> None:
        self._stream.feed(data)

    def next_reply(self) -> Response | ErrorResponse | None:
        """The reply to the outstanding request, or None when more data is needed.

        Messages with another id are dropped, as ovs-appctl does.  A reply
        whose result or error is not what unixctl allows is a ProtocolError.
        """
        while True:
            complete, value = self._stream.next_value()
            if not complete:
                return None
            message = parse_message(value)
            if isinstance(message, (Request, Notification)):
                continue
            if message.id != self._waiting or type(message.id) is not type(self._waiting):
                continue
            return message
