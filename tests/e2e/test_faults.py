"""Fault injection against the real daemon (``--enable-fault-injection``).

One test per fault kind: a device whose send or receive fails, stalls or
is slow, a device that vanishes, an offload provider whose PMD work
raises or is slow, and a config reload from a broken file while traffic
flows.  Each checks that the daemon keeps answering, that the fault is
logged once per rate-limit window (not per packet) and that every packet
is accounted for: received = sent + counted drops.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from pyappctl.client import UnixctlClient

from .conftest import DaemonProcess

CONFIG = """\
[daemon]
metrics-address = "none"
[other_config]
dummy-numa = "0,0"
pmd-cpu-mask = "0x1"
{extra}
[[bridge]]
name = "br0"
{ports}
"""
PORT = """  [[bridge.port]]
  name = "{name}"
  type = "{type}"
{options}"""
MAC = "50:54:00:00:00:{:02x}"
TAG = " [fault injection]"


def config(ports: dict[str, str], extra: str = "", options: dict[str, str] | None = None) -> str:
    options = options or {}
    text = "".join(
        PORT.format(
            name=name,
            type=type_,
            options=f"  options = {{ {options[name]} }}\n" if name in options else "",
        )
        for name, type_ in ports.items()
    )
    return CONFIG.format(extra=extra, ports=text)


def flow(src: int, dst: int) -> str:
    dst_mac = "ff:ff:ff:ff:ff:ff" if dst == 0xFF else MAC.format(dst)
    return (
        f"eth(src={MAC.format(src)},dst={dst_mac}),eth_type(0x0800),"
        "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
    )


TX_KEYS = ("tx_packets", "tx_errors", "tx_dropped")


class Switch:
    """A daemon with fault injection on, driven over one JSON-mode connection."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.d = daemon
        self.client = UnixctlClient(daemon.ctl_path, timeout=30)
        assert self.client.transact("set-options", ["--format", "json"])[0] is None
        self.injected: dict[str, int] = {}

    def call(self, command: str, *args: str) -> Any:
        error, result = self.client.transact(command, list(args))
        assert error is None, f"{command} {args}: {error}"
        return result

    def error(self, command: str, *args: str) -> str:
        error, _ = self.client.transact(command, list(args))
        assert error is not None, f"{command} {args} succeeded"
        return error

    def text(self, command: str, *args: str) -> str:
        """The text reply, as pyappctl prints it."""
        return self.d.call(command, *args)

    def stats(self) -> dict[str, dict[str, int]]:
        (dp,) = self.call("dpctl/show", "-s")
        return {p["name"]: p["stats"] for p in dp["ports"]}

    def drops(self) -> int:
        """Packets the datapath itself dropped: every ``datapath_drop_*`` coverage counter."""
        counters = self.call("coverage/show")["counters"]
        return sum(c["total"] for c in counters if c["name"].startswith("datapath_drop_"))

    def counter(self, name: str) -> int:
        return int(self.call("coverage/read-counter", name)["total"])

    def inject(self, port: str, src: int, dst: int, n: int = 1) -> None:
        self.call("netdev-dummy/receive", port, *[flow(src, dst)] * n)
        self.injected[port] = self.injected.get(port, 0) + n

    def inject_bursts(self, bursts: int, port: str, src: int, dst: int, n: int) -> None:
        """``bursts`` injections of ``n`` frames, 5 ms apart, so that PMD batches see them."""
        for _ in range(bursts):
            self.inject(port, src, dst, n)
            time.sleep(0.005)

    def learn(self, port: str, host: int) -> None:
        """Teach the bridge that ``host`` is on ``port`` (one broadcast frame).

        Returns once the flood has been counted on every other port too: the
        address is learned before the frame is sent, and a test that takes its
        baseline in between would see one packet too many afterwards.
        """
        before = self.stats()
        self.inject(port, host, 0xFF)
        wait(lambda: MAC.format(host) in str(self.call("fdb/show", "br0")))

        def flooded() -> bool:
            now = self.stats()
            return all(
                sum(now[p][k] - before[p][k] for k in TX_KEYS) >= 1
                for p in now
                if p not in (port, "ovs-netdev") and p in before  # not the datapath's own port
            )

        wait(flooded)

    def serving(self) -> None:
        """The daemon answers, in both formats, quickly."""
        start = time.monotonic()
        assert self.call("version")["reply"].startswith("pyvswitchd")
        with UnixctlClient(self.d.ctl_path, timeout=10) as c:
            assert c.transact("dpctl/show")[0] is None
        assert time.monotonic() - start < 5

    def log_count(self, message: str) -> int:
        """Log lines whose message (after the level) is exactly ``message``."""
        lines = self.d.log_path.read_text(errors="replace").splitlines()
        return sum(1 for line in lines if line.split("|", 4)[-1] == message)

    def log_matching(self, pattern: str) -> list[str]:
        lines = self.d.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if re.search(pattern, line.split("|", 4)[-1])]

    def figures(self) -> str:
        """What this daemon went through (``pytest -s`` prints it per test)."""
        names = ("unixctl_received", "netdev_fault_injected", "offload_fault_injected")
        counts = {n: self.counter(n) if self.d.proc.poll() is None else "?" for n in names}
        return " ".join(f"{n}={v}" for n, v in counts.items())

    def close(self) -> None:
        print(f"\n  {self.figures()}")
        self.client.close()


def wait(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def switch(start_daemon):  # type: ignore[no-untyped-def]
    opened: list[Switch] = []

    def start(text: str, *args: str) -> Switch:
        s = Switch(start_daemon(text, "--enable-fault-injection", *args))
        opened.append(s)
        return s

    yield start
    for s in opened:
        s.close()


THREE = {"src": "dummy-pmd", "dst": "dummy-pmd", "other": "dummy-pmd"}


def test_fault_commands_exist_only_with_the_flag(daemon) -> None:  # type: ignore[no-untyped-def]
    r = daemon.appctl("netdev-dummy/fault", "br0", "send=error")
    assert r.returncode == 2 and '"netdev-dummy/fault" is not a valid command' in r.stderr
    assert "fault injection" not in daemon.log_path.read_text()


def test_send_error(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(config(THREE))
    s.learn("dst", 2)
    reply = s.text("netdev-dummy/fault", "dst", "send=error", "every=2")
    assert reply == "dst: recv=none send=error every=2 delay_us=1000 vanish=false\n"
    s.inject_bursts(20, "src", 1, 2, 15)
    stats = s.stats()

    def balanced() -> bool:
        st = s.stats()
        dst = st["dst"]
        return st["src"]["rx_packets"] == dst["tx_packets"] + dst["tx_errors"] + s.drops() == 300

    wait(balanced)
    stats = s.stats()
    assert stats["dst"]["tx_errors"] > 0 and stats["dst"]["tx_packets"] > 0
    assert s.drops() == 0
    s.serving()
    # Many failed sends, one log line.
    faults = s.counter("netdev_fault_injected")
    assert faults >= 2
    assert s.log_count("error sending packets on dst: Input/output error" + TAG) == 1
    show = s.text("netdev-dummy/fault-show", "dst")
    assert f"send: {faults} bursts hit, {stats['dst']['tx_errors']} packets" in show


def test_send_stall(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(config(THREE))
    s.learn("dst", 2)
    s.text("netdev-dummy/fault", "dst", "send=stall")
    s.inject_bursts(20, "src", 1, 2, 10)
    # Held batches are forced out of the PMD's deferred work ring and dropped.
    wait(lambda: s.stats()["dst"]["tx_dropped"] == 200)
    stats = s.stats()
    assert stats["src"]["rx_packets"] == 200 and stats["dst"]["tx_packets"] == 0
    assert s.drops() == 0
    (pmd, _main) = s.call("dpif-netdev/pmd-perf-show")
    assert pmd["work"]["dropped"] >= 1
    s.serving()
    assert s.log_count("dst: transmit queue 0 stalled" + TAG) == 1
    # The queue recovers once the fault is gone.
    s.text("netdev-dummy/fault", "dst", "clear")
    s.inject("src", 1, 2, 50)
    wait(lambda: s.stats()["dst"]["tx_packets"] == 50)
    stats = s.stats()
    assert stats["src"]["rx_packets"] == 250 == 50 + stats["dst"]["tx_dropped"]


def test_recv_error(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(config(THREE))
    s.learn("dst", 2)
    s.text("netdev-dummy/fault", "src", "recv=error", "every=3")
    s.inject_bursts(30, "src", 1, 2, 10)
    src_in = 300

    def balanced() -> bool:
        st = s.stats()
        src = st["src"]
        return (
            src["rx_packets"] + src["rx_errors"] + src["rx_dropped"] == src_in
            and st["dst"]["tx_packets"] + s.drops() == src["rx_packets"]
        )

    wait(balanced)
    assert s.stats()["src"]["rx_errors"] > 0
    s.serving()
    lines = s.log_matching(r"^error receiving data from src: Input/output error")
    assert len(lines) == 1 and lines[0].endswith(TAG), lines


def test_recv_stall(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(config(THREE))
    s.learn("dst", 2)
    s.text("netdev-dummy/fault", "src", "recv=stall")
    # More than an rx queue holds: the excess is dropped on arrival.
    for _ in range(5):
        s.inject("src", 1, 2, 840)
    time.sleep(0.2)
    stats = s.stats()
    assert stats["src"]["rx_packets"] == 0 and stats["dst"]["tx_packets"] == 0
    assert stats["src"]["rx_dropped"] == 4200 - 4096
    s.serving()
    assert s.log_count("src: receive stalled on queue 0" + TAG) == 1
    s.text("netdev-dummy/fault", "src", "clear")
    wait(lambda: s.stats()["dst"]["tx_packets"] == 4096)
    stats = s.stats()
    assert stats["src"]["rx_packets"] == 4096 and s.drops() == 0


def test_slow_device(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(config(THREE))
    s.learn("dst", 2)
    s.text("netdev-dummy/fault", "src", "recv=slow", "delay_us=20000")
    s.text("netdev-dummy/fault", "dst", "send=slow", "delay_us=20000")
    for _ in range(10):
        s.inject("src", 1, 2, 5)
        s.serving()
    wait(lambda: s.stats()["dst"]["tx_packets"] == 50)
    stats = s.stats()
    assert stats["src"]["rx_packets"] == 50 and s.drops() == 0
    assert s.counter("netdev_fault_injected") >= 10
    assert s.log_count("src: receive held the thread for 20000 us" + TAG) == 1
    assert s.log_count("dst: send held the thread for 20000 us" + TAG) == 1


def test_vanished_interface(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(config(THREE))
    s.learn("dst", 2)
    s.learn("other", 3)  # its broadcast reaches dst too: count from here
    base = s.stats()
    s.text("netdev-dummy/fault", "other", "vanish=true")
    for _ in range(10):
        s.inject("src", 1, 2, 10)  # to the healthy port
        s.inject("src", 1, 3, 10)  # to the vanished one
        s.inject("other", 3, 1, 10)  # arriving on the vanished one
        time.sleep(0.005)

    def delta(port: str, key: str) -> int:
        return s.stats()[port][key] - base[port][key]

    def balanced() -> bool:
        sent = delta("dst", "tx_packets") + delta("other", "tx_errors")
        return delta("src", "rx_packets") == 200 == sent + s.drops()

    wait(balanced)
    assert delta("other", "tx_errors") == 100 and delta("dst", "tx_packets") == 100
    # What arrives on a vanished device never reaches the datapath.
    assert delta("other", "rx_dropped") == 100 and delta("other", "rx_packets") == 0
    # The datapath keeps the port, in an error state.
    shown = s.text("dpctl/show")
    assert "port 4: other (dummy-pmd: n_rxq=1, n_txq=1, numa_id=0" in shown
    assert 'error="No such device")' in shown
    assert s.call("config/reload") == {"reply-format": "plain", "reply": ""}
    s.serving()
    assert s.log_count("other: device vanished (No such device)" + TAG) == 1
    assert s.log_count("error sending packets on other: No such device" + TAG) == 1
    assert s.log_count("other: could not set configuration (other: No such device)") == 1
    # It comes back.
    s.text("netdev-dummy/fault", "other", "vanish=false")
    s.inject("src", 1, 3, 10)
    wait(lambda: delta("other", "tx_packets") == 10)
    assert "error=" not in s.text("dpctl/show")


OFFLOAD = config({"p1": "dummy-pmd", "p2": "dummy-pmd"}, extra="hw-offload = true")


def offload_ports(s: Switch) -> dict[str, dict[str, int]]:
    shown = s.call("dpif/offload/show")
    return shown["ovs-netdev"]["providers"]["dummy"]["ports"]  # type: ignore[no-any-return]


def offloaded_flows(s: Switch) -> None:
    """Send p1 -> p2 traffic until the simulated NIC executes it in "hardware"."""
    s.learn("p2", 2)

    def full() -> int:
        s.inject("p1", 1, 2, 1)
        return offload_ports(s)["p1"]["rx_offload_full"]

    wait(full)


def test_offload_work_raises(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(OFFLOAD)
    offloaded_flows(s)
    wait(lambda: s.stats()["p2"]["tx_packets"] == s.injected["p1"])
    assert s.text("offload-dummy/fault", "work=raise") == "work=raise every=1 delay_us=1000\n"
    wait(lambda: s.counter("dpif_offload_work_failed") == 1)
    for _ in range(10):
        s.inject("p1", 1, 2, 10)
    time.sleep(0.2)
    s.serving()
    # The PMD dropped the callback once; packets the "NIC" took wait in its queue.
    assert s.counter("dpif_offload_work_failed") == 1
    held = s.injected["p1"] - s.stats()["p2"]["tx_packets"]
    assert held == 100
    assert s.log_count("dummy: work callback raising on pmd-c00" + TAG) == 1
    assert (
        s.log_count(
            "pmd-c00: offload provider dummy work callback failed "
            "(OffloadFault('dummy: injected work callback fault')); "
            "removed from this PMD's work list"
        )
        == 1
    )
    # A rebalance that moves nothing does not reload the PMD: still held.
    s.text("offload-dummy/fault", "clear")
    s.call("dpif-netdev/pmd-rxq-rebalance")
    time.sleep(0.1)
    assert s.injected["p1"] - s.stats()["p2"]["tx_packets"] == 100
    # The next PMD reload (here: a port added) brings the callback back; the backlog drains.
    s.call("dpctl/add-if", "ovs-netdev", "p3,type=dummy-pmd")
    wait(lambda: s.stats()["p2"]["tx_packets"] == s.injected["p1"])
    p1 = s.stats()["p1"]
    assert p1["rx_packets"] + offload_ports(s)["p1"]["rx_offload_full"] == s.injected["p1"]
    assert s.drops() == 0


def test_offload_work_slow(switch) -> None:  # type: ignore[no-untyped-def]
    s = switch(OFFLOAD)
    offloaded_flows(s)
    s.text("offload-dummy/fault", "work=slow", "delay_us=5000")
    for _ in range(10):
        s.inject("p1", 1, 2, 10)
        s.serving()
    wait(lambda: s.stats()["p2"]["tx_packets"] == s.injected["p1"])
    assert s.drops() == 0
    assert s.counter("offload_fault_injected") >= 10
    (pmd, _main) = s.call("dpif-netdev/pmd-perf-show")
    assert pmd["offload_cycles"] >= 10 * 5_000_000
    assert s.log_count("dummy: work callback held pmd-c00 for 5000 us" + TAG) == 1
    assert "work: " in s.text("offload-dummy/fault-show")


def test_config_reload_from_a_broken_file_mid_traffic(switch) -> None:  # type: ignore[no-untyped-def]
    ports = {"tsrc": "traffic-source", "dst": "dummy-pmd"}
    good = config(ports, options={"tsrc": f'pps = 3000, flows = 8, dst_mac = "{MAC.format(2)}"'})
    s = switch(good)
    s.learn("dst", 2)
    path = s.d.config_path
    generation = s.call("config/show")["generation"]
    wait(lambda: s.stats()["dst"]["tx_packets"] > 100)
    broken = {
        "syntax": good.replace('name = "br0"', 'name = "br0'),
        # pyvswitchd's own keys are refused (OVS's are replaced, as OVS does).
        "value": good.replace('metrics-address = "none"', 'metrics-address = "9475"'),
    }
    for text in broken.values():
        path.write_text(text)
        assert s.error("config/reload").startswith("configuration not reloaded: ")
        s.serving()
    path.write_text(broken["syntax"])
    os.kill(s.d.pid, signal.SIGHUP)
    wait(lambda: len(s.log_matching("^configuration not reloaded, keeping the running one")) == 3)
    path.unlink()
    assert "cannot read" in s.error("config/reload")
    s.serving()
    assert s.call("config/show")["generation"] == generation
    # One line per failed attempt (4), never more.
    time.sleep(0.2)
    assert len(s.log_matching("^configuration not reloaded, keeping the running one")) == 4
    before = s.stats()["dst"]["tx_packets"]
    wait(lambda: s.stats()["dst"]["tx_packets"] > before + 100)  # traffic never stopped
    # A good file again, with the source told to stop after one more frame.
    path.write_text(good.replace("pps = 3000,", "pps = 3000, count = 1,"))
    assert s.call("config/reload") == {"reply-format": "plain", "reply": ""}

    def balanced() -> bool:
        st = s.stats()
        return st["tsrc"]["rx_packets"] == st["dst"]["tx_packets"] + s.drops()

    wait(balanced)
    time.sleep(0.1)
    assert balanced()
