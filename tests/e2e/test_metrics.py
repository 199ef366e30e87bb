"""The Prometheus endpoint of the real daemon: every listed family is served."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

CONFIG = """\
[daemon]
metrics-address = "127.0.0.1:{port}"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
  options = {{ n_rxq = 2 }}
  [[bridge.port]]
  name = "p1"
  type = "dummy"
"""
ICMP = (
    "eth(src=50:54:00:00:00:05,dst=50:54:00:00:00:07),eth_type(0x0800),"
    "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=1,tos=0,ttl=64,frag=no),icmp(type=8,code=0)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(body)}


def test_every_listed_family_is_served(start_daemon) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    d = start_daemon(CONFIG.format(port=port))
    for _ in range(3):
        d.appctl("netdev-dummy/receive", "p0", ICMP)
    deadline = time.monotonic() + 10
    while True:
        families = scrape(port)
        rx = [
            s
            for s in families["ovs_pmd_rx_packets"].samples  # type: ignore[attr-defined]
            if s.labels["thread"] == "pmd"
        ]
        if rx and rx[0].value == 3:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    listed = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--list-metrics"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listed.splitlines():
        name, kind = line.split()[:2]
        base = name.removesuffix("_total") if kind == "counter" else name
        assert base in families, name
        assert families[base].type == kind, name  # type: ignore[attr-defined]
    lookups = {
        s.labels["result"]: s.value
        for s in families["ovs_pmd_lookups"].samples  # type: ignore[attr-defined]
        if s.labels["thread"] == "pmd"
    }
    assert lookups["upcall"] == 1 and sum(lookups.values()) == 3
    rxq = {
        (s.labels["port"], s.labels["queue_id"]): s.value
        for s in families["ovs_pmd_rxq_packets"].samples
    }  # type: ignore[attr-defined]
    assert rxq[("p0", "0")] == 3
    tx = {s.labels["port"]: s.value for s in families["ovs_interface_tx_packets"].samples}  # type: ignore[attr-defined]
    assert tx["p1"] == 3 and tx["br0"] == 3
    health = families["pyvswitchd_control_requests"]
    assert health.samples[0].value >= 3  # type: ignore[attr-defined]


SOURCE_CONFIG = """\
[daemon]
metrics-address = "127.0.0.1:{port}"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = {{ flows = 8, n_rxq = 2, pps = 20000, count = {count}, dst_mac = "02:00:00:00:00:fe" }}
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
"""


def test_scrapes_are_consistent_snapshots_while_traffic_flows(start_daemon) -> None:  # type: ignore[no-untyped-def]
    import json

    port = free_port()
    d = start_daemon(SOURCE_CONFIG.format(port=port, count=40000))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    # Every family carries HELP and TYPE.
    names = {f.name for f in text_string_to_metric_families(body)}
    for name in names:
        assert f"# HELP {name}" in body and f"# TYPE {name}" in body, name
    for _ in range(5):  # several scrapes while the source is sending
        time.sleep(0.2)
        families = scrape(port)
        pmd_rows = [s for s in families["ovs_pmd_lookups"].samples if s.labels["thread"] == "pmd"]
        rx = next(
            s.value for s in families["ovs_pmd_rx_packets"].samples if s.labels["thread"] == "pmd"
        )
        lookups = sum(s.value for s in pmd_rows)
        rxq = sum(
            s.value for s in families["ovs_pmd_rxq_packets"].samples if s.labels["port"] == "src0"
        )
        src_rx = next(
            s.value
            for s in families["ovs_interface_rx_packets"].samples
            if s.labels["port"] == "src0"
        )
        assert rx > 0
        # One scrape, one instant: these counters agree exactly.
        assert lookups == rx == rxq == src_rx
    # Once the source stopped, the scrape and pmd-perf-show report the same numbers.
    deadline = time.monotonic() + 20
    while scrape(port)["ovs_pmd_rx_packets"].samples[0].value < 40000:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    perf = json.loads(d.appctl("-f", "json", "dpif-netdev/pmd-perf-show").stdout)
    families = scrape(port)
    pmd_perf = next(t for t in perf if t["thread"] == "pmd")
    rx = next(
        s.value for s in families["ovs_pmd_rx_packets"].samples if s.labels["thread"] == "pmd"
    )
    tx = next(
        s.value for s in families["ovs_pmd_tx_packets"].samples if s.labels["thread"] == "pmd"
    )
    assert (rx, tx) == (pmd_perf["rx_packets"], pmd_perf["tx_packets"]) == (40000, 80000)
