#!/usr/bin/env python3
"""Forwarding and responsiveness while clients ask for a 65,536-flow dump.

Starts the real daemon with a ``traffic-source`` sending ``--pps`` frames a
second over ``--flows`` distinct flows to a ``dummy-pmd`` sink (every flow
is hit often enough to stay installed: one megaflow per flow), waits for
the megaflows, then measures:

1. forwarding (sink ``tx_packets``) over ``--seconds`` with no dump;
2. the same while one client loops on ``dpctl/dump-flows`` (each dump's
   duration and size is listed);
3. ``--idle-clients`` clients that send ``dpctl/dump-flows`` and never read:
   how long ``version`` then takes, and VmRSS before, at its peak over the
   next 15 s (the daemon drops such clients after 10 s) and after they close.

The machine is shared: run it twice and look at the load average printed
with the results.

Usage: python benchmarks/dump_flows_bench.py [--flows 65536] [--pps 10000]
                                             [--seconds 6] [--idle-clients 150]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyappctl.client import UnixctlClient

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
pmd-cpu-mask = "0x1"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "sink0"
  type = "dummy-pmd"
  [[bridge.port]]
  name = "src"
  type = "traffic-source"
  options = {{ pps = {pps}, flows = {flows}, dst_mac = "02:00:00:00:00:fe" }}
"""


class Bench:
    def __init__(self, rundir: Path, flows: int, pps: int) -> None:
        config = rundir / "pyvswitchd.toml"
        config.write_text(CONFIG.format(pps=pps, flows=flows))
        self.log = rundir / "pyvswitchd.log"
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "pyvswitchd", "--config", str(config),
                "--rundir", str(rundir), f"--log-file={self.log}", "--syslog-method=null",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.ctl = str(rundir / f"pyvswitchd.{self.proc.pid}.ctl")
        deadline = time.monotonic() + 30
        while not (self.log.exists() and " ready on " in self.log.read_text()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("pyvswitchd did not start")
            time.sleep(0.1)

    def call(self, *command: str) -> Any:
        with UnixctlClient(self.ctl, timeout=120) as c:
            c.transact("set-options", ["--format", "json"])
            error, result = c.transact(command[0], list(command[1:]))
        if error is not None:
            raise SystemExit(f"{command}: {error}")
        return result

    def show(self) -> dict[str, Any]:
        (dp,) = self.call("dpctl/show", "-s")
        return dp  # type: ignore[no-any-return]

    def forwarded(self) -> tuple[float, int]:
        ports = {p["name"]: p for p in self.show()["ports"]}
        return time.monotonic(), ports["sink0"]["stats"]["tx_packets"]

    def rate(self, seconds: float) -> float:
        t0, n0 = self.forwarded()
        time.sleep(seconds)
        t1, n1 = self.forwarded()
        return (n1 - n0) / (t1 - t0)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        return self.proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=65536)
    parser.add_argument("--pps", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--idle-clients", type=int, default=150)
    args = parser.parse_args()
    rundir = Path(tempfile.mkdtemp(prefix="pyvswitch-dump-bench-"))
    bench = Bench(rundir, args.flows, args.pps)
    try:
        start = time.monotonic()
        while bench.show()["flows"] < args.flows:
            if time.monotonic() - start > 120:
                raise SystemExit("the megaflows were not installed in 120 s")
            time.sleep(0.5)
        print(f"load average {os.getloadavg()[0]:.2f}; {args.flows} megaflows after "
              f"{time.monotonic() - start:.1f} s")  # fmt: skip
        before = bench.rate(args.seconds)
        print(f"forwarding without dumps:       {before / 1000:.2f} kpps")

        stop = threading.Event()
        dumps: list[tuple[float, int]] = []

        def loop() -> None:
            while not stop.is_set():
                t = time.monotonic()
                with UnixctlClient(bench.ctl, timeout=300) as c:
                    _, text = c.transact("dpctl/dump-flows")
                dumps.append((time.monotonic() - t, len(text or "")))

        thread = threading.Thread(target=loop)
        thread.start()
        time.sleep(0.5)
        during = bench.rate(args.seconds)
        stop.set()
        thread.join()
        listed = ", ".join(f"{d:.1f} s/{n / 1e6:.1f} MB" for d, n in dumps)
        print(f"forwarding during a dump loop:  {during / 1000:.2f} kpps "
              f"({100 * during / before:.0f} %); dumps: {listed}")  # fmt: skip

        rss0 = bench.rss_kb()
        request = json.dumps({"id": 0, "method": "dpctl/dump-flows", "params": []}).encode()
        idle = []
        for _ in range(args.idle_clients):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(bench.ctl)
            s.sendall(request)
            idle.append(s)
        time.sleep(2)
        t = time.monotonic()
        bench.call("version")
        answered = time.monotonic() - t
        peak = rss0
        for _ in range(30):
            peak = max(peak, bench.rss_kb())
            time.sleep(0.5)
        for s in idle:
            s.close()
        time.sleep(2)
        print(f"{args.idle_clients} clients that never read: version answered in "
              f"{answered * 1000:.0f} ms; RSS {rss0} kB before, peak {peak} kB "
              f"({peak - rss0:+d}), {bench.rss_kb()} kB after they closed")  # fmt: skip
        dropped = bench.log.read_text().count("no reply data read for")
        print(f"clients dropped for not reading: {dropped} (logged, rate-limited)")
    finally:
        rc = bench.stop()
        shutil.rmtree(rundir, ignore_errors=True)
    print(f"daemon exit status {rc}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
