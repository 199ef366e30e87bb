#!/usr/bin/env python3
"""How fast pyappctl frames and decodes a big reply, against ``json.loads``.

Builds the two shapes of big reply the daemon sends -- a text reply (one
long JSON string with a ``\\n`` escape per line, as ``dpctl/dump-flows``)
(also with two escaped quotes a line, the scanner's worst common case)
and a JSON-mode reply (an array of small objects, as ``-f json``) -- and
times, on the same bytes:

* ``json.loads`` of the whole message (the floor);
* the client side of the control protocol
  (:class:`pyvswitchd.control.protocol.ClientConnection`) fed in 64 KiB
  pieces, as pyappctl reads them, until it returns the reply.

The figure is the ratio of the two (best of ``--repeat`` runs each).
``--tree`` runs another source tree's protocol module (the commit before a
change, say), so the two can be compared:

    benchmarks/reply_parse_bench.py
    benchmarks/reply_parse_bench.py --tree /work/wt/base
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 65536


def text_reply(lines: int, quoted: bool = False) -> bytes:
    action = '"p{}"' if quoted else "{}"
    body = "".join(
        f"ufid:{i:08x}-0000-0000-0000-000000000000, recirc_id(0),in_port({i % 7}),"
        f"eth(src=50:54:00:00:{i % 256:02x}:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
        f"ipv4(src=10.0.{i % 256}.1,dst=10.0.0.2,proto=6,frag=no), packets:{i}, "
        f"bytes:{i * 64}, used:0.{i % 10}s, flags:S., actions:{action.format(i % 5)}\n"
        for i in range(lines)
    )
    return json.dumps({"id": 0, "result": body, "error": None}, separators=(",", ":")).encode()


def json_reply(flows: int) -> bytes:
    result = [
        {
            "ufid": f"{i:08x}-0000-0000-0000-000000000000",
            "key": {"in_port": i % 7, "eth_type": "0x0800", "ipv4": {"src": f"10.0.{i % 256}.1"}},
            "packets": i,
            "bytes": i * 64,
            "used": 0.5,
            "actions": [f"p{i % 5}"],
        }
        for i in range(flows)
    ]
    return json.dumps({"id": 0, "result": result, "error": None}, separators=(",", ":")).encode()


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--lines", type=int, default=50_000, help="lines of the text reply")
    parser.add_argument("--flows", type=int, default=20_000, help="objects of the JSON reply")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, args.tree)
    from pyvswitchd.control.protocol import ClientConnection, Response

    print(f"protocol module: {sys.modules['pyvswitchd.control.protocol'].__file__}")
    shapes = (
        ("text", text_reply(args.lines)),
        ("text, quotes", text_reply(args.lines, quoted=True)),
        ("json", json_reply(args.flows)),
    )
    for name, wire in shapes:
        expected = json.loads(wire)["result"]

        def client(wire: bytes = wire) -> Any:
            conn = ClientConnection()
            conn.send_request("dpctl/dump-flows", [])
            reply = None
            for offset in range(0, len(wire), CHUNK):
                conn.receive_data(wire[offset : offset + CHUNK])
                reply = conn.next_reply()
            return reply

        reply = client()
        assert isinstance(reply, Response) and reply.result == expected
        floor = best(lambda wire=wire: json.loads(wire), args.repeat)
        ours = best(client, args.repeat)
        print(
            f"{name:>12} reply, {len(wire) / 1e6:5.1f} MB: json.loads {floor * 1000:7.1f} ms, "
            f"client {ours * 1000:7.1f} ms, ratio {ours / floor:4.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
