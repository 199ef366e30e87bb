"""The Prometheus endpoint of the real daemon: every listed family is served."""

from __future__ import annotations

import gzip
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
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


def listed_families() -> list[tuple[str, str, bool]]:
    """``pyvswitchd --list-metrics`` as (name, type, served only with --db)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pyvswitchd", "--list-metrics"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        (line.split()[0], line.split()[1], line.endswith("(--db only)"))
        for line in listed.splitlines()
    ]


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
    for name, kind, database_only in listed_families():
        if database_only:
            continue  # served with --db: tests/e2e/test_ovsdb.py checks them
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


PROMTOOL = shutil.which("promtool")


def fetch(port: int, path: str = "/metrics", **headers: str) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)
def test_exposition_passes_promtool_check_metrics(start_daemon) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    start_daemon(CONFIG.format(port=port))
    body, _ = fetch(port)
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    # The families issue 20 asked for are there.
    text = body.decode()
    for name in (
        "process_cpu_seconds_total",
        "python_info{",
        'pyvswitchd_build_info{python="',
        "ovs_pmd_seconds_total{",
        "ovs_pmd_rxq_busy_seconds_total{",
        'ovs_interface_link_state{bridge="br0",port="p1",type="dummy"} 1.0',
        'ovs_interface_admin_state{bridge="br0",port="p1",type="dummy"} 1.0',
        'ovs_interface_error{bridge="br0",port="p1",type="dummy"} 0.0',
        'pyvswitchd_config_reloads_total{result="failure"} 0.0',
    ):
        assert name in text, name
    assert "pyvswitchd_up" not in text and "_cycles_total" not in text


def test_gzip_and_name_filter(start_daemon) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    start_daemon(CONFIG.format(port=port))
    body, headers = fetch(port, **{"Accept-Encoding": "gzip"})
    assert headers["content-encoding"] == "gzip"
    families = {f.name for f in text_string_to_metric_families(gzip.decompress(body).decode())}
    assert {"ovs_pmd_rx_packets", "process_cpu_seconds", "pyvswitchd_build_info"} <= families
    body, headers = fetch(
        port, "/metrics?name[]=ovs_pmd_rx_packets_total&name[]=pyvswitchd_build_info"
    )
    assert "content-encoding" not in headers
    samples = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]
    assert {s.name for s in samples} == {"ovs_pmd_rx_packets_total", "pyvswitchd_build_info"}
    assert {s.labels["thread"] for s in samples if s.name.startswith("ovs")} == {"pmd", "main"}


def test_reloads_are_counted_by_result(start_daemon) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    d = start_daemon(CONFIG.format(port=port))

    def reload_figures() -> tuple[float, float, float, float]:
        families = scrape(port)
        by_result = {
            s.labels["result"]: s.value
            for s in families["pyvswitchd_config_reloads"].samples  # type: ignore[attr-defined]
        }
        ok = families["pyvswitchd_config_last_reload_successful"].samples[0].value  # type: ignore[attr-defined]
        when = families["pyvswitchd_config_last_reload_success_timestamp_seconds"]
        return by_result["success"], by_result["failure"], ok, when.samples[0].value  # type: ignore[attr-defined]

    start = scrape(port)["pyvswitchd_start_time_seconds"].samples[0].value  # type: ignore[attr-defined]
    assert reload_figures() == (0, 0, 1, start)
    assert d.appctl("config/reload").returncode == 0
    time.sleep(1.1)  # a scrape is served again for 1 s
    success, failure, ok, when = reload_figures()
    assert (success, failure, ok) == (1, 0, 1) and when > start
    d.config_path.write_text("[[bridge]\n")  # not TOML: refused
    assert d.appctl("config/reload").returncode != 0
    time.sleep(1.1)
    assert reload_figures() == (1, 1, 0, when)


def test_port_states_follow_the_interfaces(start_daemon) -> None:  # type: ignore[no-untyped-def]
    from .test_real_interfaces import SKIP, Topo, port, sh, start

    if SKIP is not None:
        pytest.skip(SKIP)
    topo = Topo()
    topo.down()
    try:
        topo.up()
        sh("ip", "-n", topo.sw, "link", "del", "vc")  # configured, but no interface
        start(start_daemon, topo, port("va"), port("vb"), port("vc"))
        url = (
            "http://127.0.0.1:9475/metrics?name[]=ovs_interface_admin_state"
            "&name[]=ovs_interface_link_state&name[]=ovs_interface_error"
        )
        program = f"import urllib.request as u; print(u.urlopen({url!r}).read().decode())"

        def states(name: str) -> tuple[float, float, float]:
            text = topo.exec("sw", sys.executable, "-c", program).stdout
            got = {
                s.name.removeprefix("ovs_interface_"): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.labels["port"] == name
            }
            return got["admin_state"], got["link_state"], got["error"]

        def wait(name: str, want: tuple[float, ...]) -> None:
            """Until (admin, link, error) of port ``name`` start with ``want``."""
            deadline = time.monotonic() + 10
            while (got := states(name))[: len(want)] != want:
                assert time.monotonic() < deadline, f"{name}: {got} != {want}"
                time.sleep(0.2)

        wait("va", (1, 1, 0))
        wait("vc", (0, 0, 1))
        sh("ip", "-n", topo.ns["b"], "link", "set", "eth0", "down")  # vb loses its carrier
        wait("vb", (1, 0, 0))
        sh("ip", "-n", topo.sw, "link", "set", "va", "down")
        wait("va", (0, 0))
    finally:
        topo.down()
