"""Hostile and broken clients: the daemon keeps answering and its memory stays bounded."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest
from hypothesis import given, settings

from pyvswitchd.control.protocol import MAX_MESSAGE_BYTES
from tests.hostile_json import hostile_requests

from .conftest import TEST_CONFIG

VERSION_REQ = b'{"id":0,"method":"version","params":[]}'


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def test_ten_mebibyte_message_is_refused_and_memory_bounded(daemon) -> None:  # type: ignore[no-untyped-def]
    before = daemon.rss_kb()
    for _ in range(3):
        s = connect(daemon.ctl_path)
        # The server hangs up once the cap is passed: a broken pipe is expected.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b'{"id":0,"method":"version","params":["' + b"a" * (10 << 20) + b'"]}')
        s.close()
    assert daemon.call("version")
    # The cap keeps per-connection buffering near MAX_MESSAGE_BYTES, not 10 MiB x 3.
    assert daemon.rss_kb() - before < 3 * (MAX_MESSAGE_BYTES // 1024) + 8 * 1024
    assert "exceeds" in daemon.log_path.read_text()


def test_two_hundred_concurrent_clients(daemon) -> None:  # type: ignore[no-untyped-def]
    results: list[bytes] = []
    lock = threading.Lock()

    def one() -> None:
        with connect(daemon.ctl_path) as s:
            s.sendall(VERSION_REQ)
            data = b""
            while not data.endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        with lock:
            results.append(data)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 200
    assert all(r.startswith(b'{"id":0,"result":"pyvswitchd') for r in results)


def test_idle_clients_do_not_block_others(daemon) -> None:  # type: ignore[no-untyped-def]
    idle = [connect(daemon.ctl_path) for _ in range(50)]
    half = connect(daemon.ctl_path)
    half.sendall(VERSION_REQ[:10])  # half a request, never finished
    try:
        assert daemon.call("version")
    finally:
        for s in [*idle, half]:
            s.close()
    assert daemon.call("version")


def test_clients_vanishing_mid_reply(daemon) -> None:  # type: ignore[no-untyped-def]
    before = daemon.rss_kb()
    for _ in range(20):
        s = connect(daemon.ctl_path)
        # Many pipelined requests with big replies, then hang up without reading.
        s.sendall(b'{"id":0,"method":"list-commands","params":[]}' * 500)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST: the server's pending writes fail
    assert daemon.call("version")
    assert daemon.rss_kb() - before < 16 * 1024


def test_garbage_streams(daemon) -> None:  # type: ignore[no-untyped-def]
    import os

    for _ in range(20):
        with connect(daemon.ctl_path) as s:
            try:
                s.sendall(os.urandom(4096))
                s.recv(10)
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass
    assert daemon.call("version")


def exchange(path: str, wire: bytes, timeout: float = 10) -> bytes:
    """Send ``wire``, return everything the daemon sent until it closed or stopped talking."""
    with connect(path) as s:
        s.settimeout(timeout)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(wire)
        s.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                data += chunk
        return data


@pytest.mark.parametrize(
    "wire",
    [
        b'{"id":"\\ud800","method":"version","params":[]}',
        b'{"id":0,"method":"\\ud800","params":[]}',
        b'{"id":0,"method":"version","params":["\\udfff"]}',
        b'{"id":' + b"9" * 5000 + b',"method":"version","params":[]}',
        b'{"id":0,"method":"version","params":[' + b"1" * 4400 + b"]}",
        b'{"id":NaN,"method":"version","params":[]}',
        b'{"id":Infinity,"method":"version","params":[]}',
        b'{"id":1e999,"method":"version","params":[]}',
    ],
    ids=[
        "surrogate-id",
        "surrogate-method",
        "surrogate-param",
        "huge-int-id",
        "huge-int-param",
        "nan-id",
        "infinity-id",
        "overflow-id",
    ],
)
def test_requests_that_cannot_be_echoed_close_the_connection(daemon, wire: bytes) -> None:  # type: ignore[no-untyped-def]
    # Each of these used to end the daemon (exit 1) or put NaN on the wire.
    assert exchange(daemon.ctl_path, wire) == b""  # malformed: no reply, as OVS
    assert daemon.call("version").startswith("pyvswitchd")
    log = daemon.log_path.read_text()
    assert "|jsonrpc|WARN|unix#" in log and "error parsing stream" in log
    assert "|ERR|" not in log and "|EMER|" not in log


def test_hostile_request_fuzz(daemon) -> None:  # type: ignore[no-untyped-def]
    """Hypothesis-made hostile requests, one connection each, all against one daemon."""
    answered = []

    @settings(max_examples=150, deadline=None, database=None)
    @given(hostile_requests())
    def one(request: str) -> None:
        wire = request.encode("utf-8", "surrogatepass")
        reply = exchange(daemon.ctl_path, wire)
        if reply:  # accepted: the reply echoes the id exactly
            assert json.loads(reply)["id"] == json.loads(wire)["id"], (wire, reply)
            answered.append(reply)
        assert daemon.proc.poll() is None, daemon.output()

    one()
    assert answered  # the fuzz reached the command layer too
    assert daemon.call("version").startswith("pyvswitchd")
    log = daemon.log_path.read_text()
    assert "|ERR|" not in log and "|EMER|" not in log, log[-3000:]


#: Descriptors the test daemon may open: about 15 at rest, so a few dozen
#: connections exhaust them.
LOW_NOFILE = 64


def test_descriptor_exhaustion_is_survived(start_daemon) -> None:  # type: ignore[no-untyped-def]
    from .test_metrics import free_port

    port = free_port()
    config = TEST_CONFIG.replace(
        'metrics-address = "none"', f'metrics-address = "127.0.0.1:{port}"'
    )
    d = start_daemon(config, prefix=["prlimit", f"--nofile={LOW_NOFILE}", "--"])
    held: list[socket.socket] = []
    try:
        # Idle TCP connections to the metrics port (it keeps at most its cap
        # of them), then idle control connections until accept() gets EMFILE.
        for _ in range(LOW_NOFILE):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        for _ in range(LOW_NOFILE):
            held.append(connect(d.ctl_path))
        deadline = time.monotonic() + 10
        while "Too many open files" not in d.log_path.read_text():
            assert time.monotonic() < deadline, d.output()
            time.sleep(0.05)
        time.sleep(0.3)
        assert d.proc.poll() is None, d.output()  # the daemon used to exit here
        # A request made now waits in the backlog until descriptors come back.
        waiting = connect(d.ctl_path)
        waiting.sendall(VERSION_REQ)
        for s in held:
            s.close()
        held.clear()
        reply = waiting.recv(4096)
        waiting.close()
        assert reply.startswith(b'{"id":0,"result":"pyvswitchd'), reply
    finally:
        for s in held:
            s.close()
    assert d.call("version")
    log = d.log_path.read_text()
    assert "accept failed: Too many open files; retrying" in log
    assert "accepting again after" in log
    assert "|EMER|" not in log
