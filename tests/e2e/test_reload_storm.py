"""Reconfiguration that removes no port must not drop a packet (SIGHUP storm)."""

from __future__ import annotations

import os
import re
import signal
import time

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "{mask}"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = {{ flows = 8, pps = 20000, count = {count}, dst_mac = "02:00:00:00:00:02" }}
  [[bridge.port]]
  name = "sink"
  type = "dummy-pmd"
  options = {{ n_rxq = {n_rxq} }}
"""


def stats(d, port: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    shown = d.call("dpctl/show", "-s")
    m = re.search(
        rf"{port} \([^\n]*\n\s+RX packets:(\d+) errors:(\d+) dropped:(\d+)[^\n]*\n"
        rf"\s+TX packets:(\d+) errors:(\d+) dropped:(\d+)",
        shown,
    )
    assert m is not None, shown
    keys = ("rx_packets", "rx_errors", "rx_dropped", "tx_packets", "tx_errors", "tx_dropped")
    return dict(zip(keys, map(int, m.groups()), strict=True))


def test_sighup_storm_changing_queues_and_cores_drops_nothing(start_daemon) -> None:  # type: ignore[no-untyped-def]
    count = 30000
    d = start_daemon(CONFIG.format(mask="0x1", count=count, n_rxq=1))
    # The sink's MAC is learned first, so every frame goes to it alone.
    d.call(
        "netdev-dummy/receive",
        "sink",
        "eth(src=02:00:00:00:00:02,dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
        "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)",
    )
    # Restart the count now that the bridge knows the sink.
    d.config_path.write_text(CONFIG.format(mask="0x1", count=count + 1, n_rxq=1))
    os.kill(d.pid, signal.SIGHUP)
    for i in range(12):
        time.sleep(0.15)
        d.config_path.write_text(
            CONFIG.format(mask="0x3" if i % 2 else "0x1", count=count + 1, n_rxq=2 - i % 2)
        )
        os.kill(d.pid, signal.SIGHUP)
    # Once the source has produced its count, every frame it produced left
    # through the sink: none was dropped while PMDs reloaded.
    deadline = time.monotonic() + 30
    last = None
    while True:
        now = (stats(d, "src0")["rx_packets"], stats(d, "sink")["tx_packets"])
        if now == last and now[0] > count:
            break
        assert time.monotonic() < deadline, now
        last = now
        time.sleep(0.3)
    assert int(d.call("coverage/read-counter", "datapath_drop_invalid_port")) == 0
    sink = stats(d, "sink")
    assert sink["tx_dropped"] == sink["tx_errors"] == 0
    assert last[0] == last[1], last
