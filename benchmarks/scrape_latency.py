#!/usr/bin/env python3
"""Control-socket latency while Prometheus scrapes: one tree against another.

Starts the real daemon on 200 ``dummy-pmd`` ports of 4 rx queues each
(four PMD workers on faked cores, so every queue's counters are
published), then measures the round trip of ``version`` on the control
socket, one request every 10 ms, in three phases:

* ``idle``: nobody scrapes;
* ``loop``: a scraper process fetches ``/metrics`` back to back;
* ``spaced``: a scraper fetches every 1.1 s (longer than the daemon's
  1 s body cache, so each scrape is encoded anew).

The scraper sends ``Accept-Encoding: gzip`` as Prometheus does.  With
``--tree`` given twice (say the commit before a change, checked out with
``git worktree add --detach``, and the working tree), trees alternate
round by round so the machine's drift weighs on each alike; the figures
to compare are the medians over rounds of each phase's p50 and p99.

    benchmarks/scrape_latency.py --tree /work/wt/base --tree . --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyappctl.client import UnixctlClient

HERE = Path(__file__).resolve().parent.parent

PORTS = 200
RXQS = 4
CONFIG_HEAD = """\
[daemon]
metrics-address = "127.0.0.1:{port}"
[other_config]
dummy-numa = "0,0,0,0"
pmd-cpu-mask = "0xf"
pmd-sleep-max = "10000"
[[bridge]]
name = "br0"
"""
CONFIG_PORT = """\
  [[bridge.port]]
  name = "p{i}"
  type = "dummy-pmd"
  options = {{ n_rxq = {rxqs} }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_loop(url: str, interval: float, out: str) -> None:
    """The scraper process: fetch ``url`` every ``interval`` s until SIGTERM."""
    durations: list[float] = []
    stop = False

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    size = 0
    while not stop:
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as r:
            size = len(r.read())
        durations.append(time.perf_counter() - start)
        if interval:
            time.sleep(max(0.0, interval - (time.perf_counter() - start)))
    Path(out).write_text(json.dumps({"durations": durations, "bytes": size}))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def control_rtts(ctl: str, seconds: float) -> list[float]:
    """Round trips of ``version``, one request every 10 ms, in ms."""
    rtts = []
    with UnixctlClient(ctl, timeout=30) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            error, _ = client.transact("version")
            rtts.append((time.perf_counter() - start) * 1000)
            assert error is None, error
            time.sleep(0.01)
    return rtts


def run_tree(tree: Path, seconds: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyvs-scrape-") as tmp:
        rundir = Path(tmp)
        port = free_port()
        config = rundir / "pyvswitchd.toml"
        config.write_text(
            CONFIG_HEAD.format(port=port)
            + "".join(CONFIG_PORT.format(i=i, rxqs=RXQS) for i in range(PORTS))
        )
        log = rundir / "pyvswitchd.log"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyvswitchd", "--config", str(config), "--rundir", str(rundir),
             f"--log-file={log}", "--syslog-method=null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tree,
        )  # fmt: skip
        try:
            ctl = rundir / f"pyvswitchd.{proc.pid}.ctl"
            deadline = time.monotonic() + 120
            while not (ctl.exists() and log.exists() and " ready on " in log.read_text()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daemon did not start:\n{log.read_text()}")
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=30) as r:
                samples = sum(
                    1 for line in r.read().splitlines() if line and not line.startswith(b"#")
                )
            time.sleep(2)  # the workers settle
            for phase, interval in (("idle", None), ("loop", 0.0), ("spaced", 1.1)):
                scraper = None
                out = rundir / f"scrape-{phase}.json"
                if interval is not None:
                    scraper = subprocess.Popen(
                        [sys.executable, __file__, "--scrape-loop", url, str(interval), str(out)]
                    )
                    time.sleep(1)
                rtts = control_rtts(str(ctl), seconds)
                row = {
                    "p50": statistics.median(rtts),
                    "p99": percentile(rtts, 99),
                    "max": max(rtts),
                    "samples": samples,
                }
                if scraper is not None:
                    scraper.send_signal(signal.SIGTERM)
                    scraper.wait(60)
                    data = json.loads(out.read_text())
                    row["scrapes_per_s"] = len(data["durations"]) / (seconds + 1)
                    row["scrape_p50_ms"] = statistics.median(data["durations"]) * 1000
                    row["scrape_bytes"] = data["bytes"]
                results[phase] = row
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return results


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--scrape-loop":
        scrape_loop(sys.argv[2], float(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", help="source tree to run (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--json", help="write every round's figures to this file")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in (args.tree or [str(HERE)])]
    runs: dict[str, list[dict[str, dict[str, float]]]] = {str(t): [] for t in trees}
    print(f"cpus: {os.cpu_count()}, {PORTS} ports x {RXQS} rx queues, {args.seconds:g} s/phase")
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            result = run_tree(tree, args.seconds)
            runs[str(tree)].append(result)
            figures = "  ".join(
                f"{phase}: p50 {row['p50']:.2f} p99 {row['p99']:.2f} max {row['max']:.1f} ms"
                for phase, row in result.items()
            )
            print(f"round {r + 1} {tree.name}: {figures}", flush=True)
    print("medians over rounds (control round trip of `version`, ms):")
    for tree, results in runs.items():
        for phase in results[0]:
            rows = [res[phase] for res in results]
            line = (
                f"  {Path(tree).name:>16} {phase:>6}: p50 "
                f"{statistics.median(r['p50'] for r in rows):6.2f}  p99 "
                f"{statistics.median(r['p99'] for r in rows):6.2f}  max "
                f"{statistics.median(r['max'] for r in rows):6.1f}"
            )
            if "scrape_p50_ms" in rows[0]:
                line += (
                    f"  | scrape p50 {statistics.median(r['scrape_p50_ms'] for r in rows):6.1f} ms"
                    f", {statistics.median(r['scrapes_per_s'] for r in rows):5.1f}/s"
                    f", {rows[0]['scrape_bytes']} bytes, {rows[0]['samples']} samples"
                )
            print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
