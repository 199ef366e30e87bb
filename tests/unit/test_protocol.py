"""Sans-I/O unixctl protocol: framing, validation, encoding."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvswitchd.control.protocol import (
    ClientConnection,
    ErrorResponse,
    JsonStream,
    Notification,
    ProtocolError,
    Request,
    Response,
    ServerConnection,
    encode_error,
    encode_response,
    parse_message,
)
from tests.hostile_json import hostile_requests


def drain(stream: JsonStream) -> list[object]:
    values = []
    while True:
        complete, value = stream.next_value()
        if not complete:
            return values
        values.append(value)


def test_pipelined_values_without_delimiter() -> None:
    s = JsonStream()
    s.feed(b'{"id":7,"method":"version","params":[]}{"id":8,"method":"version","params":[]}')
    assert [v["id"] for v in drain(s)] == [7, 8]  # type: ignore[index]


def test_value_split_byte_by_byte_with_tricky_strings() -> None:
    msg = b'{"id":"a}b","method":"x\\"{[","params":["]\\\\","\xc3\xa9"]}\n'
    s = JsonStream()
    got: list[object] = []
    for i in range(len(msg)):
        s.feed(msg[i : i + 1])
        got += drain(s)
    assert got == [{"id": "a}b", "method": 'x"{[', "params": ["]\\", "é"]}]
    assert s.buffered <= 1  # only the trailing newline may remain


@pytest.mark.parametrize("size", [1, 7, 64, 1000, 1 << 16])
def test_escaped_quotes_and_backslash_runs_in_any_pieces(size: int) -> None:
    # Strings that end after runs of backslashes longer than the scanner's
    # look-back window, and stretches where every quote is escaped.
    strings = [
        'a\\"b' * 50,
        "\\" * 300,
        "\\" * 301 + '"',
        'x\\\\"' * 40 + "\\" * 600,
        '"quoted" ' * 200,
    ]
    values = [{"id": i, "result": text, "error": None} for i, text in enumerate(strings)]
    wire = b"".join(json.dumps(v, separators=(",", ":")).encode() for v in values)
    wire += json.dumps(strings[-1]).encode() + b" "  # a top-level string
    s = JsonStream(max_message_bytes=1 << 20)
    got: list[object] = []
    for i in range(0, len(wire), size):
        s.feed(wire[i : i + size])
        got += drain(s)
    assert got == [*values, strings[-1]]


def test_whitespace_between_values_is_ignored() -> None:
    s = JsonStream()
    s.feed(b'  \n{"a":1}\n\n {"b":2}  ')
    assert drain(s) == [{"a": 1}, {"b": 2}]


def test_garbage_is_a_parse_error() -> None:
    s = JsonStream()
    s.feed(b"this is not json ")
    with pytest.raises(ProtocolError, match="error parsing stream"):
        drain(s)


def test_invalid_utf8_is_a_parse_error() -> None:
    s = JsonStream()
    s.feed(b'{"id":1,"method":"\xff\xfe","params":[]}')
    with pytest.raises(ProtocolError, match="invalid UTF-8"):
        drain(s)


def test_oversized_message_is_refused_before_it_is_complete() -> None:
    s = JsonStream(max_message_bytes=1000)
    s.feed(b'{"id":1,"method":"' + b"a" * 2000)
    with pytest.raises(ProtocolError, match="exceeds 1000 bytes"):
        s.next_value()


def test_deep_nesting_is_refused() -> None:
    s = JsonStream()
    s.feed(b"[" * 100000)
    with pytest.raises(ProtocolError, match="nesting"):
        s.next_value()


def test_top_level_scalar_is_not_an_object() -> None:
    s = JsonStream()
    s.feed(b'"hello" ')
    ((value),) = drain(s)
    with pytest.raises(ProtocolError, match="message is not a JSON object"):
        parse_message(value)


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (
            {"jsonrpc": "2.0", "id": 1, "method": "v", "params": []},
            'message has unexpected member "jsonrpc"',
        ),
        ({"id": 1, "method": "v"}, 'request must have "params"'),
        ({"id": 1, "method": "v", "params": {}}, '"params" must be JSON array'),
        ({"id": 1, "method": 5, "params": []}, "method is not a JSON string"),
        ([1, 2, 3], "message is not a JSON object"),
        ({"id": 1, "result": "x", "method": "v"}, 'reply must not have "method"'),
    ],
)
def test_invalid_messages_carry_ovs_texts(message: object, text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_message(message)
    assert str(info.value) == f"received bad JSON-RPC message: {text}"


def test_classification_treats_null_as_absent() -> None:
    assert parse_message({"id": None, "method": "v", "params": []}) == Notification("v", [])
    assert parse_message({"id": 3, "result": None, "error": "e"}) == ErrorResponse(3, "e")
    assert parse_message({"id": 3, "result": "r", "error": None}) == Response(3, "r")
    assert parse_message({"id": "x", "method": "v", "params": ["a"]}) == Request("x", "v", ["a"])


def test_server_refuses_non_requests_with_unixctl_warning() -> None:
    conn = ServerConnection()
    conn.receive_data(b'{"method":"version","params":[]}')
    with pytest.raises(ProtocolError) as info:
        conn.next_request()
    assert str(info.value) == "received unexpected notification message"
    assert info.value.log_module == "unixctl"


def test_reply_encoding_matches_ovs_bytes() -> None:
    # The bytes ovs-vswitchd 3.1 sent for these replies (captured on the socket).
    assert ServerConnection.success(0, "ovs-vswitchd (Open vSwitch) 3.1.0") == (
        b'{"id":0,"result":"ovs-vswitchd (Open vSwitch) 3.1.0\\n","error":null}'
    )
    assert (
        ServerConnection.failure(0, "No such counter") == b'{"id":0,"error":"No such counter\\n"}'
    )
    assert ServerConnection.success("abc", "") == b'{"id":"abc","result":"","error":null}'
    # Structured JSON results are not touched.
    assert encode_response(1, {"a": [1]}) == b'{"id":1,"result":{"a":[1]},"error":null}'
    assert encode_error(2, "x\n") == b'{"id":2,"error":"x\\n"}'


def test_client_numbers_requests_and_skips_foreign_ids() -> None:
    client = ClientConnection()
    assert client.send_request("set-options", ["--format", "json"]) == (
        b'{"id":0,"method":"set-options","params":["--format","json"]}'
    )
    client.receive_data(b'{"id":0,"result":"","error":null}')
    assert client.next_reply() == Response(0, "")
    client.send_request("version", [])
    client.receive_data(b'{"id":12345,"result":"no","error":null}{"id":"1","result":"no"}')
    assert client.next_reply() is None
    client.receive_data(b'{"id":1,"error":"bad\\n"}')
    assert client.next_reply() == ErrorResponse(1, "bad\n")


def test_client_rejects_reply_with_both_result_and_error() -> None:
    client = ClientConnection()
    client.send_request("version", [])
    client.receive_data(b'{"id":0,"result":"a","error":"b"}')
    with pytest.raises(ProtocolError):
        client.next_reply()


requests = st.lists(
    st.builds(
        lambda i, m, p: {"id": i, "method": m, "params": p},
        st.one_of(st.integers(), st.text(max_size=5)),
        st.text(min_size=1, max_size=20),
        st.lists(st.text(max_size=20), max_size=4),
    ),
    min_size=1,
    max_size=5,
)


@given(requests, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_split_of_a_pipelined_stream_yields_the_same_requests(
    msgs: list[dict[str, object]], cuts: list[int]
) -> None:
    wire = b"".join(json.dumps(m, ensure_ascii=False).encode() for m in msgs)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    conn = ServerConnection()
    got = []
    for a, b in itertools.pairwise(points):
        conn.receive_data(wire[a:b])
        while (req := conn.next_request()) is not None:
            got.append({"id": req.id, "method": req.method, "params": req.params})
    assert got == msgs


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_exceptions(data: bytes) -> None:
    conn = ServerConnection()
    conn.receive_data(data)
    try:
        while conn.next_request() is not None:
            pass
    except ProtocolError:
        pass


# -- values Python's json accepts but cannot send back (issue 16, item 1) ----------


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (b'{"id":"\\ud800","method":"version","params":[]}', "malformed escaped surrogate pair"),
        (b'{"id":1,"method":"\\udfff","params":[]}', "malformed escaped surrogate pair"),
        (b'{"id":1,"method":"v","params":[{"\\udc00":1}]}', "malformed escaped surrogate pair"),
        (b'{"id":' + b"9" * 5000 + b',"method":"v","params":[]}', "number outside valid range"),
        (b'{"id":1e400,"method":"v","params":[]}', "number outside valid range"),
        (b'{"id":NaN,"method":"version","params":[]}', "invalid keyword 'NaN'"),
        (b'{"id":Infinity,"method":"version","params":[]}', "invalid keyword 'Infinity'"),
        (b'{"id":1,"method":"v","params":[-Infinity]}', "invalid keyword '-Infinity'"),
    ],
)
def test_values_that_cannot_be_echoed_are_parse_errors(wire: bytes, text: str) -> None:
    conn = ServerConnection()
    conn.receive_data(wire)
    with pytest.raises(ProtocolError) as info:
        conn.next_request()
    assert str(info.value) == f"error parsing stream: {text}"
    assert info.value.log_module == "jsonrpc"


def test_valid_surrogate_pairs_and_escaped_backslashes_are_fine() -> None:
    conn = ServerConnection()
    conn.receive_data(b'{"id":"\\ud83d\\ude00","method":"v","params":["\\\\ud800"]}')
    assert conn.next_request() == Request("\U0001f600", "v", ["\\ud800"])
    big = 10**4000
    conn.receive_data(b'{"id":%d,"method":"v","params":[]}' % big)
    request = conn.next_request()
    assert request is not None and request.id == big
    assert ServerConnection.success(request.id, "") == b'{"id":%d,"result":"","error":null}' % big


def test_reply_encoding_refuses_what_json_cannot_carry() -> None:
    for result in (float("nan"), float("inf"), "\ud800", {1, 2}):
        with pytest.raises((ValueError, TypeError)):
            ServerConnection.success(0, result)
    # An error text is the server's own: it always encodes.
    assert ServerConnection.failure(0, "bad \ud800 arg") == b'{"id":0,"error":"bad ? arg\\n"}'


@given(hostile_requests())
def test_hostile_requests_are_refused_or_round_trip(text: str) -> None:
    conn = ServerConnection()
    conn.receive_data(text.encode("utf-8", "surrogatepass"))
    try:
        request = conn.next_request()
    except ProtocolError:
        return
    assert request is not None
    # Whatever was accepted can be answered, and the answer carries the same id.
    for reply in (
        ServerConnection.success(request.id, "ok"),
        ServerConnection.failure(request.id, f'"{request.method}" is not a valid command'),
    ):
        client = JsonStream()
        client.feed(reply)
        complete, value = client.next_value()
        assert complete and value["id"] == request.id


@pytest.mark.parametrize(
    "chunks", [["a\n", 'é"b\\\n'], ["no newline at ", "the end"], [], ["", "x", ""]]
)
def test_streamed_text_result_is_the_same_bytes(chunks: list[str]) -> None:
    from pyvswitchd.control.protocol import ResultWriter

    for request_id in (0, "abc", [1, {"x": None}]):
        w = ResultWriter.text(request_id)
        wire = w.head() + b"".join(w.piece(c) for c in chunks) + w.tail()
        assert wire == ServerConnection.success(request_id, "".join(chunks))
        w = ResultWriter.plain(request_id)
        wire = w.head() + b"".join(w.piece(c) for c in chunks) + w.tail()
        plain = {"reply-format": "plain", "reply": "".join(chunks)}
        assert wire == ServerConnection.success(request_id, plain)


def test_streamed_json_result_is_the_same_bytes() -> None:
    from pyvswitchd.control.protocol import ResultWriter

    value = [{"ufid": "u1", "packets": 3}, {"ufid": "é", "used_s": None}]
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    w = ResultWriter.json(7)
    wire = w.head() + w.piece(text[:5]) + w.piece(text[5:]) + w.tail()
    assert wire == ServerConnection.success(7, value)
