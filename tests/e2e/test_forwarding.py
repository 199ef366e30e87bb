"""Forwarding correctness end to end: frames injected on dummy ports leave
(in each port's tx pcap) exactly where a learning switch sends them."""

from __future__ import annotations

import time
from pathlib import Path

from pyvswitchd.netdev.pcap import read_frames

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
[[bridge]]
name = "br0"
{ports}
"""
PORT = """  [[bridge.port]]
  name = "{name}"
  type = "{type}"
  options = {{ tx_pcap = "{pcap}" }}
"""


def frame(src: int, dst: int) -> str:
    return (
        f"eth(src=50:54:00:00:00:{src:02x},dst={dst_mac(dst)}),eth_type(0x0800),"
        "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
    )


def wait_flow(d, match: str, actions: str) -> None:  # type: ignore[no-untyped-def]
    """Wait until the revalidator rewrote the flow matching ``match``."""
    deadline = time.monotonic() + 10
    while True:
        dump = d.appctl("dpctl/dump-flows", "-m").stdout
        if any(match in line and actions in line for line in dump.splitlines()):
            return
        assert time.monotonic() < deadline, dump
        time.sleep(0.1)


def dst_mac(dst: int) -> str:
    return "ff:ff:ff:ff:ff:ff" if dst == 0xFF else f"50:54:00:00:00:{dst:02x}"


def test_learning_switch_end_to_end(start_daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = ["p1", "p2", "p3", "p4"]
    ports = "".join(
        PORT.format(
            name=n, type="dummy-pmd" if i % 2 == 0 else "dummy", pcap=tmp_path / f"{n}.pcap"
        )
        for i, n in enumerate(names)
    )
    d = start_daemon(CONFIG.format(ports=ports))

    def sent() -> dict[str, list[bytes]]:
        out = {}
        for n in names:
            path = tmp_path / f"{n}.pcap"
            out[n] = read_frames(str(path)) if path.exists() and path.stat().st_size > 24 else []
        return out

    def wait_counts(expected: dict[str, int]) -> dict[str, list[bytes]]:
        deadline = time.monotonic() + 10
        while True:
            got = sent()
            if {n: len(f) for n, f in got.items()} == expected:
                return got
            assert time.monotonic() < deadline, {n: len(f) for n, f in got.items()}
            time.sleep(0.05)

    # 1. host 1 (on p1) to unknown host 2: flooded to p2, p3, p4.
    assert d.appctl("netdev-dummy/receive", "p1", frame(1, 2)).returncode == 0
    got = wait_counts({"p1": 0, "p2": 1, "p3": 1, "p4": 1})
    # 2. host 2 (on p2) answers host 1: unicast to p1 only.
    d.appctl("netdev-dummy/receive", "p2", frame(2, 1))
    got = wait_counts({"p1": 1, "p2": 1, "p3": 1, "p4": 1})
    assert got["p1"][0][6:12] == bytes.fromhex("505400000002")
    # 3. host 1 to host 2 again: now unicast to p2 (the flood flow was revalidated).
    wait_flow(d, "src=50:54:00:00:00:01,dst=50:54:00:00:00:02", "actions:p2,")
    d.appctl("netdev-dummy/receive", "p1", frame(1, 2))
    wait_counts({"p1": 1, "p2": 2, "p3": 1, "p4": 1})
    # 4. a broadcast from host 3 on p3 floods to everyone else.
    d.appctl("netdev-dummy/receive", "p3", frame(3, 0xFF))
    wait_counts({"p1": 2, "p2": 3, "p3": 1, "p4": 2})
    # 5. host 2 moves to p4: traffic to it follows.
    d.appctl("netdev-dummy/receive", "p4", frame(2, 3))
    wait_counts({"p1": 2, "p2": 3, "p3": 2, "p4": 2})
    wait_flow(d, "src=50:54:00:00:00:01,dst=50:54:00:00:00:02", "actions:p4,")
    d.appctl("netdev-dummy/receive", "p1", frame(1, 2))
    got = wait_counts({"p1": 2, "p2": 3, "p3": 2, "p4": 3})
    # 6. no hairpin: host 1 to host 1's own port is dropped.
    d.appctl("netdev-dummy/receive", "p1", frame(4, 1))
    time.sleep(0.3)
    assert {n: len(f) for n, f in sent().items()} == {"p1": 2, "p2": 3, "p3": 2, "p4": 3}
    fdb = d.appctl("fdb/show", "br0").stdout
    assert "50:54:00:00:00:02" in fdb and "50:54:00:00:00:01" in fdb
    dump = d.ovs_appctl("dpctl/dump-flows").stdout
    assert "flow-dump from pmd on cpu core: 0" in dump
    assert "flow-dump from the main thread:" in dump
