"""OVS's 'PMD - offload work' test, against the real daemon."""

from __future__ import annotations

import re
import time

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
hw-offload = true
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "p0"
  type = "dummy-pmd"
"""
LIFECYCLE = re.compile(
    r"\|dpif_offload_dummy\(pmd-c00/id:\d+\)\|DBG\|pmd_thread_lifecycle; "
    r"exit=(\w+), core=0, numa=0, cb=(0x[0-9a-f]+), ctx=(0x[0-9a-f]+)"
)


def test_pmd_offload_work(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CONFIG, "-v", "dpif_offload_dummy:file:dbg")
    deadline = time.monotonic() + 10
    while int(d.call("coverage/read-counter", "dummy_offload_do_work")) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = d.ovs_appctl("coverage/read-counter", "dummy_offload_do_work")
    assert r.returncode == 0 and int(r.stdout) > 0
    out = d.appctl("dpif-netdev/pmd-perf-show").stdout
    assert re.search(r"\n  Offload cycles:\s+\d+  \(\s*\d+\.\d % of used cycles\)\n", out), out
    # A reload (rebalance) passes the provider its callback and context back.
    assert d.appctl("dpif-netdev/pmd-rxq-rebalance").returncode == 0
    assert d.stop() == 0
    calls = LIFECYCLE.findall(d.log_path.read_text())
    assert calls[0] == ("false", "0x0", "0x0"), calls
    assert len(calls) >= 3 and calls[-1][0] == "true"
    cb, ctx = calls[1][1:]
    assert cb != "0x0" and ctx != "0x0"
    assert all(c[1:] == (cb, ctx) for c in calls[1:])
