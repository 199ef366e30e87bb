#!/usr/bin/env python3
"""PMD scaling: total forwarding rate with one PMD against two (or more), one run.

Starts the real daemon on the shipped configuration's shape -- a
``traffic-source`` port and a ``dummy-pmd`` port on one bridge -- with the
source unpaced (``pps = 0``) and split over ``--rxqs`` rx queues,
``pmd-sleep-max = 0`` (busy polling) and ``pmd-rxq-assign = roundrobin``,
and measures the packets the source delivered (``dpctl/show -s``, port
``src0`` RX) over ``--seconds`` after a warm-up, for each ``pmd-cpu-mask``
given.  Masks alternate round by round, so the machine's drift weighs on
each alike; the figure to compare is the ratio of medians, printed last.

    benchmarks/pmd_scaling.py --masks 0x1,0x3 --rxqs 2 --rounds 5
    benchmarks/pmd_scaling.py --masks 0x1,0x3 --rxqs 4 --rounds 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyappctl.client import UnixctlClient

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
pmd-cpu-mask = "{mask}"
pmd-rxq-assign = "roundrobin"
pmd-sleep-max = "0"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "src0"
  type = "traffic-source"
  options = {{ flows = 16, pps = 0, dst_mac = "02:00:00:00:00:fe", n_rxq = {rxqs} }}
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
  options = {{ n_rxq = 2 }}
"""


def src_rx(client: UnixctlClient) -> int:
    error, result = client.transact("dpctl/show", ["-s"])
    assert error is None, error
    lines = str(result).splitlines()
    for i, line in enumerate(lines):
        if "src0 (traffic-source" in line:
            return int(lines[i + 1].split("RX packets:")[1].split()[0])
    raise RuntimeError(f"no src0 in dpctl/show:\n{result}")


def measure(mask: str, rxqs: int, seconds: float, warmup: float) -> float:
    """Packets per second the source delivered with ``mask``."""
    with tempfile.TemporaryDirectory(prefix="pyvs-scaling-") as tmp:
        rundir = Path(tmp)
        config = rundir / "pyvswitchd.toml"
        config.write_text(CONFIG.format(mask=mask, rxqs=rxqs))
        log = rundir / "pyvswitchd.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyvswitchd", "--config", str(config), "--rundir", str(rundir),
             f"--log-file={log}", "--syslog-method=null"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ctl = rundir / f"pyvswitchd.{proc.pid}.ctl"
            deadline = time.monotonic() + 30
            while not (ctl.exists() and log.exists() and " ready on " in log.read_text()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daemon did not start:\n{log.read_text()}")
                time.sleep(0.05)
            with UnixctlClient(str(ctl), timeout=30) as client:
                time.sleep(warmup)
                t0, n0 = time.monotonic(), src_rx(client)
                time.sleep(seconds)
                t1, n1 = time.monotonic(), src_rx(client)
            return (n1 - n0) / (t1 - t0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", default="0x1,0x3", help="comma list of pmd-cpu-mask values")
    parser.add_argument("--rxqs", type=int, default=2, help="rx queues of the traffic source")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", help="write the runs and medians to this file")
    args = parser.parse_args()
    masks = args.masks.split(",")
    runs: dict[str, list[float]] = {m: [] for m in masks}
    print(f"cpus: {os.cpu_count()}, rx queues: {args.rxqs}, {args.seconds:g} s per run")
    for r in range(args.rounds):
        order = masks if r % 2 == 0 else masks[::-1]
        for mask in order:
            pps = measure(mask, args.rxqs, args.seconds, args.warmup)
            runs[mask].append(pps)
            print(f"round {r + 1}: pmd-cpu-mask={mask}: {pps / 1000:8.1f} kpps", flush=True)
    medians = {m: statistics.median(v) for m, v in runs.items()}
    base = medians[masks[0]]
    for mask in masks:
        spread = ", ".join(f"{v / 1000:.0f}" for v in runs[mask])
        ratio = medians[mask] / base if base else float("nan")
        print(f"pmd-cpu-mask={mask}: median {medians[mask] / 1000:.1f} kpps [{spread}], "
              f"{ratio:.2f}x {masks[0]}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
