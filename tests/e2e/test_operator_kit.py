"""The operator kit under etc/: alert rules and Grafana dashboard.

The rules go through promtool (syntax, then their unit tests in
tests/promtool/); so do the dashboard's queries, wrapped as recording
rules.  Every metric name, label and fixed label value the rules and the
dashboard use is then looked up in a scrape of the real daemon, so that a
renamed family or label breaks a test instead of an operator's dashboard.
Tests needing promtool skip without it (Debian: apt-get install prometheus).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .test_metrics import free_port

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (apt-get install prometheus)"
)

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "etc/prometheus/pyvswitchd-alerts.yml"
RULE_TESTS = ROOT / "tests/promtool/pyvswitchd-alerts.test.yml"
DASHBOARD = ROOT / "etc/grafana/pyvswitchd.json"

#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job"}
#: Labels whose values are the daemon's vocabulary, not the installation's
#: (unlike port or core_id): a query's literal value must be one it exports.
VOCABULARY_LABELS = {"thread", "kind", "result", "event"}
#: What the dashboard must show (issue 20): family -> why.
DASHBOARD_MUST_USE = {
    "ovs_pmd_usage_ratio": "PMD usage",
    "ovs_pmd_seconds_total": "cycles split",
    "ovs_pmd_lookups_total": "lookups by level",
    "ovs_pmd_rxq_busy_seconds_total": "rx queue usage",
    "ovs_pmd_deferred_work_total": "deferred work",
    "ovs_offload_flows": "offload",
    "ovs_interface_rx_packets_total": "ports",
    "ovs_interface_link_state": "ports",
}

CONFIG = """\
[daemon]
metrics-address = "127.0.0.1:{port}"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
hw-offload = true
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
NAME = re.compile(r"\b((?:ovs|pyvswitchd|process|python)_[A-Za-z0-9_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard (panels and annotations)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [node["expr"] for node in _walk(dashboard) if isinstance(node.get("expr"), str)]


@needs_promtool
def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) > 10
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, query in enumerate(queries):
        # Grafana's variables, as Grafana would substitute them.
        expr = query.replace("$__rate_interval", "1m").replace("$instance", ".+")
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard.rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_what_operators_need() -> None:
    used = " ".join(dashboard_queries())
    for family, why in DASHBOARD_MUST_USE.items():
        assert re.search(rf"\b{family}\b", used), f"no {family} ({why})"


class Exported:
    """Metric names, their label names and values, as one scrape of the daemon has them."""

    def __init__(self, body: str) -> None:
        self.labels: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for family in text_string_to_metric_families(body):
            names = {family.name + ("_total" if family.type == "counter" else "")}
            for sample in family.samples:
                names.add(sample.name)
                for label, value in sample.labels.items():
                    self.labels[sample.name][label].add(value)
            for name in names:
                self.labels.setdefault(name, defaultdict(set))
        self.all_labels = {label for by in self.labels.values() for label in by} | TARGET_LABELS

    def problems(self, text: str, where: str) -> list[str]:
        """What ``text`` refers to that the scrape does not have."""
        found = []
        for m in NAME.finditer(text):
            name, matchers = m.group(1), m.group(2) or ""
            if name not in self.labels:
                found.append(f"{where}: no metric {name}")
                continue
            have = self.labels[name]
            for label, op, value in MATCHER.findall(matchers):
                if label in TARGET_LABELS:
                    continue
                if label not in have:
                    found.append(f"{where}: {name} has no label {label}")
                elif label in VOCABULARY_LABELS and op in ("=", "=~"):
                    # Literal values and alternations of them: each must occur.
                    for alternative in value.split("|") if op == "=~" else [value]:
                        if alternative not in have[label]:
                            found.append(f'{where}: {name} has no {label}="{alternative}"')
        for m in GROUPING.finditer(text):
            for label in filter(None, (x.strip() for x in m.group(1).split(","))):
                if label not in self.all_labels:
                    found.append(f"{where}: no series has a label {label}")
        return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    from .conftest import DaemonProcess

    port = free_port()
    d = DaemonProcess(tmp_path_factory.mktemp("kit"), CONFIG.format(port=port))
    try:
        deadline = time.monotonic() + 10
        while True:  # until the PMD worker published its first figures
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                body = r.read().decode()
            if "pyvswitchd_pmd_worker_cpu_seconds_total{" in body:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
        yield Exported(body)
    finally:
        d.stop()


def test_dashboard_uses_only_exported_names(exported: Exported) -> None:
    problems = []
    for i, query in enumerate(dashboard_queries()):
        problems += exported.problems(query, f"dashboard query {i}")
    assert not problems, "\n".join(problems)


def test_alert_rules_use_only_exported_names(exported: Exported) -> None:
    problems = exported.problems(RULES.read_text(), RULES.name)
    problems += exported.problems(RULE_TESTS.read_text(), RULE_TESTS.name)
    assert not problems, "\n".join(problems)


def test_a_renamed_family_is_caught(exported: Exported) -> None:
    # The check itself can fail: the names before this release are refused.
    assert exported.problems('rate(ovs_pmd_cycles_total{kind="busy"}[1m])', "old")
    assert exported.problems('ovs_pmd_rxq_packets_total{core_id="0",rxq="0"}', "old")
    assert exported.problems('ovs_pmd_lookups_total{result="hit"}', "old")
    assert exported.problems("sum by (interface) (ovs_interface_link_state)", "old")
