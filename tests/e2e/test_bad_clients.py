"""Hostile and broken clients: the daemon keeps answering and its memory stays bounded."""

from __future__ import annotations

import contextlib
import socket
import threading

from pyvswitchd.control.protocol import MAX_MESSAGE_BYTES

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
