"""The soak script (benchmarks/soak.py) in its short CI mode: about 30 s, at most 60."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_soak_short() -> None:
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, str(SOAK), "--short"], capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    assert elapsed <= 60
    out = r.stdout
    packets = re.search(r"packets accounted:\s+(\d+) in = (\d+) out or dropped", out)
    assert packets is not None and packets[1] == packets[2] and int(packets[1]) > 10_000, out
    tasks = re.search(r"tasks:\s+(\d+) after warm-up, (\d+) at the end", out)
    assert tasks is not None and tasks[1] == tasks[2], out
    reconf = re.search(r"reconfigurations:\s+(\d+) \((.*)\)", out)
    assert reconf is not None and int(reconf[1]) >= 20, out
    for op in ("pmd-cpu-mask", "add-if", "del-if", "hw-offload", "pmd-sleep", "config/reload"):
        assert f"{op} " in reconf[2], out
    assert re.search(r"RSS:\s+\d+ kB after warm-up, \d+ kB at the end", out), out
