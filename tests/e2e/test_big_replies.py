"""Big replies (dpctl/dump-flows of 65,536 megaflows) while traffic flows.

One daemon serves the module's tests: installing 65,536 megaflows takes
a few seconds.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pyappctl.client import UnixctlClient

from .conftest import DaemonProcess

SINK_MAC = "02:00:00:00:00:fe"
N_FLOWS = 65536
METER_PPS = 5000

CONFIG = f"""\
[daemon]
metrics-address = "none"
[other_config]
pmd-cpu-mask = "0x1"
max-idle = 600000
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "sink0"
  type = "dummy-pmd"
  [[bridge.port]]
  name = "many"
  type = "traffic-source"
  options = {{ flows = {N_FLOWS}, count = {N_FLOWS}, dst_mac = "{SINK_MAC}" }}
  [[bridge.port]]
  name = "meter"
  type = "traffic-source"
  options = {{ flows = 4, pps = {METER_PPS}, dst_mac = "{SINK_MAC}" }}
"""


def show(path: str) -> dict[str, object]:
    with UnixctlClient(path, timeout=60) as c:
        c.transact("set-options", ["--format", "json"])
        error, result = c.transact("dpctl/show", ["-s"])
    assert error is None, error
    (dp,) = result
    return dp  # type: ignore[no-any-return]


def forwarded(path: str) -> tuple[float, int]:
    """(time of the reading, frames the meter source has sent so far)."""
    ports = {p["name"]: p for p in show(path)["ports"]}  # type: ignore[attr-defined]
    return time.monotonic(), ports["meter"]["stats"]["rx_packets"]


def rate(a: tuple[float, int], b: tuple[float, int]) -> float:
    return (b[1] - a[1]) / (b[0] - a[0])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with 65,536 megaflows (kept: max-idle is 10 min) and a metered source."""
    d = DaemonProcess(tmp_path_factory.mktemp("big"), CONFIG)
    try:
        deadline = time.monotonic() + 60
        while (n := show(d.ctl_path)["flows"]) < N_FLOWS:  # type: ignore[operator]
            assert time.monotonic() < deadline, f"only {n} flows"
            time.sleep(0.2)
        yield d
    except BaseException:
        print(d.output())
        raise
    finally:
        d.stop()


def test_dump_of_65536_flows_does_not_stop_forwarding(loaded: DaemonProcess) -> None:
    d = loaded
    t0 = forwarded(d.ctl_path)
    time.sleep(1.0)
    t1 = forwarded(d.ctl_path)
    before = rate(t0, t1)
    assert before > METER_PPS / 2, before

    dump: dict[str, float] = {}
    received = bytearray()

    def run_dump() -> None:
        # Raw bytes, no parsing here: the time of the last byte is when the
        # daemon finished building and sending the reply.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(120)
            s.connect(d.ctl_path)
            dump["start"] = time.monotonic()
            s.sendall(b'{"id":0,"method":"dpctl/dump-flows","params":[]}')
            while not received.endswith(b',"error":null}'):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                received.extend(chunk)
        dump["end"] = time.monotonic()

    thread = threading.Thread(target=run_dump)
    thread.start()
    time.sleep(0.2)
    a = forwarded(d.ctl_path)
    time.sleep(1.0)
    b = forwarded(d.ctl_path)
    thread.join(120)
    reply = json.loads(received)
    lines = reply["result"].splitlines()
    assert len(lines) > N_FLOWS and lines[0] == "flow-dump from pmd on cpu core: 0"
    # Both readings were answered while the dump was still being built and
    # sent (a dump built in one go held every other client, and the PMD, until
    # it was done): the rate measured is the rate during the dump.
    assert b[0] < dump["end"], (b[0], dump)
    during = rate(a, b)
    took = dump["end"] - dump["start"]
    print(f"forwarding {before:.0f} pps before, {during:.0f} pps during the dump ({took:.1f} s)")
    assert during >= before / 2, (before, during)


def test_clients_that_never_read_cost_little(loaded: DaemonProcess) -> None:
    d = loaded
    before = d.rss_kb()
    request = json.dumps({"id": 0, "method": "dpctl/dump-flows", "params": []}).encode()
    clients = []
    for _ in range(100):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(d.ctl_path)
        s.sendall(request)  # and never read
        clients.append(s)
    try:
        start = time.monotonic()
        assert d.call("version").startswith("pyvswitchd")
        assert time.monotonic() - start < 2
        peak = before
        end = time.monotonic() + 3
        while time.monotonic() < end:
            peak = max(peak, d.rss_kb())
            time.sleep(0.1)
        # Each non-reader holds a chunk and a flow-table snapshot, and only
        # MAX_STREAMS of them at a time: not 100 copies of an 11 MB reply.
        # (They are dropped after SEND_TIMEOUT: see tests/unit/test_server.py.)
        assert peak - before < 40 * 1024, (before, peak)
        assert d.call("version").startswith("pyvswitchd")
    finally:
        for s in clients:
            s.close()
