#!/usr/bin/env python3
"""Forwarding between two network namespaces: Linux bridge vs OVS 3.1 userspace vs pyvswitchd.

Builds the project's performance-anchor topology (see ``netns_topo.py``) in
namespaces of its own, then measures each switch in turn, in the same run,
with the same traffic: ns1 (10.0.0.1) sends to ns2 (10.0.0.2) through ports
v1/v2 of the switch under test, which runs in a third namespace.

Switches (``--switches``, in this order):

* ``bridge``     the kernel's Linux bridge (STP off, forward delay 0);
* ``ovs``        Open vSwitch's userspace datapath (``datapath_type=netdev``),
  ports v1/v2 as ``system`` (AF_PACKET) ports, with a private ovsdb-server
  and ovs-vswitchd (own database, sockets, logs in a temporary directory,
  vswitchd inside the switch namespace).  Skipped with install instructions
  when ``ovs-vswitchd`` is missing;
* ``pyvswitchd`` this project's daemon, started inside the switch namespace on
  a generated config: bridge ``br0`` with ports v1 and v2 of type ``system``
  (the AF_PACKET netdev), ``pmd-cpu-mask`` (``--pmd-cpu-mask``, default 0x1),
  no metrics listener, run directory in the temporary directory.

Offload modes:

* default, "offloads off": ``ethtool -K tx off tso off gso off gro off`` on all
  four veth ends, so every switch sees MTU-sized frames with full checksums.
  This is the only fair setting for a userspace switch without TSO support.
* ``--tso``: offloads stay on (tx, tso, gso on; gro off, veth's default) and
  both userspace switches get ``userspace-tso-enable=true``.  The target for
  this mode compares pyvswitchd's TCP with OVS's *offloads-off* figure, so
  ``--tso`` also measures OVS with offloads off first (label ``ovs``), unless
  ``--ovs-baseline-json FILE`` names the ``--json`` output of an earlier
  offloads-off run to take that figure from (it is then printed as such).
  Labels in ``--tso`` mode end in ``+tso`` (for the bridge that just means
  "offloads on").

Tests, each ``--runs`` times per switch (the table shows the median and
[min-max]); ``--rounds N`` repeats the whole plan N times, interleaved
(switch A, switch B, switch A, ...; each restarted every round), so that a
VM whose speed drifts over minutes weighs on every switch alike, and the
medians are taken over all rounds' runs:

* TCP: ``iperf3 -c 10.0.0.2 -t TCP_SECS``, one stream, Gbit/s received;
* UDP-64: ``iperf3 -u -l 64 -b 0 -t UDP_SECS``, delivered packets/s =
  (packets - lost) / seconds as counted by the server;
* ping: ``ping -c 100 -i 0.01``, median / mean / p99 RTT.

During each test the switch's CPU (all threads of its process and of the
processes below it, such as PMD workers; 100 % = one core) and the
machine's steal time (percent of all CPUs) are recorded.  Before
measuring, each switch must forward a ping within ``--ready-timeout``
seconds; then a short warm-up ping teaches it the MACs.

Targets (printed PASS/FAIL; ``--strict`` makes a FAIL or unmeasured target
exit 1): pyvswitchd TCP >= 1.5x OVS and UDP-64 delivered pps >= 1.0x OVS with
offloads off; pyvswitchd median ping <= 0.3 ms; in ``--tso`` mode pyvswitchd
TCP >= 3x OVS's offloads-off TCP.

Needs root, ``ip``, ``iperf3``, ``ethtool``, ``ping`` and for OVS
``ovs-vswitchd``; ``--install`` apt-installs them (and stops the system OVS
service the package starts, so it cannot steal CPU).  Every namespace and
process made is removed on exit, Ctrl-C and errors included.

Usage::

    sudo .venv/bin/python benchmarks/netns_bench.py                      # all three, offloads off
    sudo .venv/bin/python benchmarks/netns_bench.py --runs 1 --tcp-secs 3 --udp-secs 3
    sudo .venv/bin/python benchmarks/netns_bench.py --tso --json tso.json
    sudo .venv/bin/python benchmarks/netns_bench.py --switches bridge,ovs --json base.json
    sudo .venv/bin/python benchmarks/netns_bench.py --tso --ovs-baseline-json base.json

The load generator, both kernel stacks and the switch share the machine's
CPUs, so other busy processes change every figure: those using more than
15 % of a CPU when the run starts are printed as a warning (and kept in the
JSON).  Compare figures only within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_topo import NS2_ADDR, BenchError, Topology, pid_alive, run, stop_pid

REPO = Path(__file__).resolve().parents[1]
SWITCHES = ("bridge", "ovs", "pyvswitchd")
HZ = os.sysconf("SC_CLK_TCK")
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
APT_PACKAGES = ("iperf3", "ethtool", "openvswitch-switch", "iputils-ping")
INSTALL_HINT = "apt-get install -y " + " ".join(APT_PACKAGES) + "  (or run with --install)"

# Targets: (label, metric, comparison) are evaluated in report_targets().
TCP_VS_OVS = 1.5
UDP_VS_OVS = 1.0
PING_MAX_MS = 0.3
TSO_TCP_VS_OVS_OFF = 3.0

Record = dict[str, Any]


# -- CPU accounting -----------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (pyvswitchd's PMD workers are its grandchildren)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _proc_ticks(pid: int | None) -> int:
    """utime + stime of every thread of ``pid`` and its descendants (0 when unknown)."""
    if not pid:
        return 0
    return sum(_tree_ticks(p) for p in _descendants(pid))


def _tree_ticks(pid: int) -> int:
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total


def _cpu_times() -> list[int]:
    """user nice system idle iowait irq softirq steal, summed over all CPUs."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


class CpuMeter:
    """Switch-process CPU % and machine-wide busy/steal % over a ``with`` block."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.result: Record = {}

    def __enter__(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._s0 = _cpu_times()
        self._p0 = _proc_ticks(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = max(time.monotonic() - self._t0, 1e-6)
        delta = [b - a for a, b in zip(self._s0, _cpu_times(), strict=True)]
        total = sum(delta) or 1
        busy = total - delta[3] - delta[4]
        self.result = {
            "switch_cpu_pct": (
                round(100.0 * (_proc_ticks(self.pid) - self._p0) / HZ / elapsed, 1)
                if self.pid
                else None
            ),
            "busy_pct": round(100.0 * busy / total, 1),
            "softirq_pct": round(100.0 * (delta[5] + delta[6]) / total, 1),
            "steal_pct": round(100.0 * delta[7] / total, 1),
        }


def busy_foreign_processes(exclude: set[int], seconds: float = 0.5) -> list[str]:
    """Processes (not ours) that used > 15 % of a CPU over ``seconds``: they skew results."""

    def sample() -> dict[int, tuple[int, str]]:
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            name = text[text.find("(") + 1 : text.rfind(")")]
            fields = text[text.rfind(")") + 2 :].split()
            out[int(entry)] = (int(fields[11]) + int(fields[12]), name)
        return out

    before = sample()
    time.sleep(seconds)
    after = sample()
    busy = []
    for pid, (ticks, name) in after.items():
        if pid in exclude or pid not in before:
            continue
        pct = 100.0 * (ticks - before[pid][0]) / HZ / seconds
        if pct > 15:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = name
            busy.append(f"pid {pid} {pct:.0f}% {cmd.strip()[:100]}")
    return busy


# -- switches -------------------------------------------------------------------------------


class Switch:
    """One switch under test; start() leaves it forwarding v1 <-> v2 (or raises BenchError)."""

    name = ""

    def __init__(self, topo: Topology, workdir: Path) -> None:
        self.topo = topo
        self.workdir = workdir

    def start(self, tso: bool) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return None

    def diagnostics(self) -> dict[str, str]:
        return {}

    def log_tail(self) -> str:
        return ""


class LinuxBridge(Switch):
    name = "bridge"
    DEV = "pvsbr"

    def start(self, tso: bool) -> None:
        ns = self.topo.sw
        run(["ip", "-n", ns, "link", "add", self.DEV, "type", "bridge"])
        run(["ip", "-n", ns, "link", "set", self.DEV, "type", "bridge", "stp_state", "0"])
        run(["ip", "-n", ns, "link", "set", self.DEV, "type", "bridge", "forward_delay", "0"])
        for port in ("v1", "v2"):
            run(["ip", "-n", ns, "link", "set", port, "master", self.DEV])
        run(["ip", "-n", ns, "link", "set", self.DEV, "up"])

    def stop(self) -> None:
        run(["ip", "-n", self.topo.sw, "link", "del", self.DEV], check=False)


class OvsSwitch(Switch):
    """A private OVS: own database and daemons, nothing shared with a system OVS."""

    name = "ovs"
    BRIDGE = "obr"

    def __init__(self, topo: Topology, workdir: Path) -> None:
        super().__init__(topo, workdir)
        self.dir = workdir / "ovs"
        self.db = f"unix:{self.dir}/db.sock"
        self._pids: list[int] = []

    @staticmethod
    def available() -> bool:
        return shutil.which("ovs-vswitchd") is not None and os.path.exists(OVS_SCHEMA)

    def _env(self) -> dict[str, str]:
        d = str(self.dir)
        return {
            **os.environ,
            "OVS_RUNDIR": d,
            "OVS_LOGDIR": d,
            "OVS_DBDIR": d,
            "OVS_SYSCONFDIR": d,
        }

    def vsctl(self, *args: str, timeout: float = 30) -> str:
        cmd = ["ovs-vsctl", f"--db={self.db}", f"--timeout={int(timeout)}", *args]
        return run(cmd, env=self._env(), timeout=timeout + 5).stdout

    def appctl(self, *args: str) -> str:
        cmd = ["ovs-appctl", "-t", f"{self.dir}/ovs-vswitchd.ctl", *args]
        return run(cmd, env=self._env(), check=False).stdout

    def _read_pid(self, prog: str) -> int:
        path = self.dir / f"{prog}.pid"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            raise BenchError(f"{prog} did not write {path}; see {self.dir}/{prog}.log") from None

    def start(self, tso: bool) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        d = self.dir
        env = self._env()
        run(["ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA], env=env)
        run(
            [
                "ovsdb-server",
                f"{d}/conf.db",
                f"--remote=punix:{d}/db.sock",
                *self._daemon_flags("ovsdb-server"),
            ],
            env=env,
        )
        self._track(self._read_pid("ovsdb-server"), "ovsdb-server")
        self.vsctl("--no-wait", "init")
        if tso:
            # OVS reads this once, at start-up, so it goes in before vswitchd runs.
            self.vsctl(
                "--no-wait", "set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true"
            )
        run(
            self.topo.exec_cmd(
                self.topo.sw,
                "ovs-vswitchd",
                self.db,
                "--disable-system",
                *self._daemon_flags("ovs-vswitchd"),
            ),
            env=env,
        )
        self._track(self._read_pid("ovs-vswitchd"), "ovs-vswitchd")
        self.vsctl(
            "add-br",
            self.BRIDGE,
            "--",
            "set",
            "bridge",
            self.BRIDGE,
            "datapath_type=netdev",
            "fail_mode=standalone",
        )
        self.vsctl("add-port", self.BRIDGE, "v1", "--", "add-port", self.BRIDGE, "v2")

    def _daemon_flags(self, prog: str) -> list[str]:
        """Detach ``prog`` with its pidfile, control socket and log in our directory."""
        d = self.dir
        flags = [f"--pidfile={d}/{prog}.pid", f"--unixctl={d}/{prog}.ctl"]
        return [*flags, f"--log-file={d}/{prog}.log", "--detach", "--no-chdir"]

    def _track(self, pid: int, what: str) -> None:
        self._pids.append(pid)
        self.topo.pids[pid] = what

    @property
    def pid(self) -> int | None:
        path = self.dir / "ovs-vswitchd.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(path.read_text().split()[0])
        return None

    def diagnostics(self) -> dict[str, str]:
        return {
            "dpctl/show -s": self.appctl("dpctl/show", "-s"),
            "dpif-netdev/pmd-stats-show": self.appctl("dpif-netdev/pmd-stats-show"),
            "version": run(["ovs-vswitchd", "--version"], check=False).stdout.partition("\n")[0],
        }

    def log_tail(self) -> str:
        return _tail(self.dir / "ovs-vswitchd.log")

    def stop(self) -> None:
        if self.pid and pid_alive(self.pid):
            # The bridge's taps are persistent; removing the bridge deletes them.
            with contextlib.suppress(BenchError):
                self.vsctl("--if-exists", "del-br", self.BRIDGE, timeout=10)
        for pid in reversed(self._pids):
            self.topo.stop(pid)
        self._pids.clear()


class Pyvswitchd(Switch):
    name = "pyvswitchd"

    def __init__(
        self,
        topo: Topology,
        workdir: Path,
        bindir: Path,
        pmd_cpu_mask: str,
        extra_other_config: dict[str, str],
        port_options: dict[str, str] | None = None,
    ) -> None:
        super().__init__(topo, workdir)
        self.dir = workdir / "pyvswitchd"
        self.bindir = bindir
        self.pmd_cpu_mask = pmd_cpu_mask
        self.extra = extra_other_config
        self.port_options = port_options or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def netdev_types(self) -> list[str]:
        code = "from pyvswitchd.netdev.registry import default_registry as r; print(*r().types())"
        proc = run([str(self.bindir / "python"), "-c", code], check=False)
        if proc.returncode != 0:
            raise BenchError(f"cannot import pyvswitchd from {self.bindir}: {proc.stderr.strip()}")
        return proc.stdout.split()

    def config_text(self, tso: bool) -> str:
        other = {"pmd-cpu-mask": self.pmd_cpu_mask, **self.extra}
        if tso:
            other["userspace-tso-enable"] = "true"
        lines = ["# Generated by benchmarks/netns_bench.py", "[daemon]", 'metrics-address = "none"']
        lines += ["", "[other_config]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in other.items()]
        lines += ["", "[[bridge]]", 'name = "br0"']
        for port in ("v1", "v2"):
            lines += ["", "  [[bridge.port]]", f'  name = "{port}"', '  type = "system"']
            if self.port_options:
                pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}"
                                  for k, v in self.port_options.items())  # fmt: skip
                lines.append(f"  options = {{ {pairs} }}")
        return "\n".join(lines) + "\n"

    def start(self, tso: bool) -> None:
        types = self.netdev_types()
        if "system" not in types:
            raise BenchError(
                'pyvswitchd has no "system" netdev type yet (the AF_PACKET netdev, '
                "pyvswitchd/netdev/afpacket.py, is not in default_registry()); "
                f"known types: {', '.join(types)}"
            )
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        config = self.dir / "pyvswitchd.toml"
        config.write_text(self.config_text(tso))
        daemon = str(self.bindir / "pyvswitchd")
        check = run([daemon, "--check-config", str(config)], check=False)
        if check.returncode != 0:
            raise BenchError(f"generated config rejected: {(check.stderr or check.stdout).strip()}")
        self.proc = self.topo.spawn(
            self.topo.sw,
            [
                daemon,
                "--config",
                str(config),
                "--rundir",
                str(self.dir),
                f"--log-file={self.dir}/pyvswitchd.log",
                "--metrics-address",
                "none",
                "--syslog-method",
                "null",
            ],
            "pyvswitchd",
            log_path=str(self.dir / "console.log"),
        )
        # `ip netns exec` execs the daemon, so the pid is the daemon's.
        sock = self.dir / f"pyvswitchd.{self.proc.pid}.ctl"
        deadline = time.monotonic() + 20
        while not sock.exists():
            if self.proc.poll() is not None:
                raise BenchError(
                    f"pyvswitchd exited with status {self.proc.returncode} at start-up:\n"
                    + _tail(self.dir / "console.log")
                )
            if time.monotonic() > deadline:
                raise BenchError(f"pyvswitchd did not create {sock} within 20 s")
            time.sleep(0.05)
        # The control socket is served before the configuration is applied
        # (as ovs-vswitchd's is): give the ports the same 20 s to appear.
        while True:
            show = self.appctl("dpctl/show")
            missing = [p for p in ("v1", "v2") if f": {p} (" not in show]
            if not missing or time.monotonic() > deadline or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if missing:
            errors = [
                line
                for line in _tail(self.dir / "pyvswitchd.log", 200).splitlines()
                if "could not" in line or "ERR" in line
            ]
            raise BenchError(
                f"pyvswitchd did not open port(s) {', '.join(missing)}:\n" + "\n".join(errors[-5:])
            )

    def appctl(self, *args: str) -> str:
        if self.proc is None:
            return ""
        sock = self.dir / f"pyvswitchd.{self.proc.pid}.ctl"
        proc = run([str(self.bindir / "pyappctl"), "-t", str(sock), *args], check=False)
        return proc.stdout or proc.stderr

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def diagnostics(self) -> dict[str, str]:
        return {
            "config": (self.dir / "pyvswitchd.toml").read_text(),
            "dpctl/show -s": self.appctl("dpctl/show", "-s"),
            "dpif-netdev/pmd-perf-show": self.appctl("dpif-netdev/pmd-perf-show"),
        }

    def log_tail(self) -> str:
        return _tail(self.dir / "pyvswitchd.log") or _tail(self.dir / "console.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.topo.stop(self.proc.pid)
            self.proc = None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- measurements ---------------------------------------------------------------------------


class IperfServer:
    """``iperf3 -s`` in ns2, restarted after a failed test (it may be stuck in that test)."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = self.topo.spawn(self.topo.ns2, ["iperf3", "-s"], "iperf3 server")
        time.sleep(0.3)
        if self.proc.poll() is not None:
            raise BenchError("iperf3 -s exited at once in ns2")

    def stop(self) -> None:
        if self.proc is not None:
            self.topo.stop(self.proc.pid)
            self.proc = None

    def client(self, args: list[str], secs: int) -> Record:
        """iperf3's JSON result, or {"error": why}; never raises for a failed test."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        cmd = ["iperf3", "-c", NS2_ADDR, "-J", "--connect-timeout", "3000", "-t", str(secs)]
        try:
            proc = run(
                self.topo.exec_cmd(self.topo.ns1, *cmd, *args), check=False, timeout=secs + 15
            )
            result: Record = json.loads(proc.stdout)
        except BenchError as exc:
            result = {"error": str(exc)}
        except json.JSONDecodeError:
            result = {"error": (proc.stderr or proc.stdout).strip()[:300] or "no output"}
        if "error" in result:
            self.stop()
        return result


def measure_tcp(server: IperfServer, pid: int | None, secs: int) -> Record:
    with CpuMeter(pid) as cpu:
        out = server.client([], secs)
    rec: Record = {"tcp_cpu": cpu.result}
    if "error" in out:
        rec["tcp_error"] = out["error"]
    else:
        rec["tcp_gbps"] = round(out["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
        rec["tcp_retr"] = out["end"]["sum_sent"].get("retransmits")
    return rec


def measure_udp(server: IperfServer, pid: int | None, secs: int) -> Record:
    with CpuMeter(pid) as cpu:
        out = server.client(["-u", "-l", "64", "-b", "0"], secs)
    rec: Record = {"udp_cpu": cpu.result}
    if "error" in out:
        rec["udp_error"] = out["error"]
        return rec
    # The client's "sum" carries the server's count of lost packets.
    total = out["end"]["sum"]
    seconds = total["seconds"] or secs
    rec["udp_sent_pps"] = round(total["packets"] / seconds)
    rec["udp_deliv_pps"] = round((total["packets"] - total["lost_packets"]) / seconds)
    rec["udp_loss_pct"] = round(total["lost_percent"], 2)
    return rec


def measure_ping(topo: Topology, pid: int | None) -> Record:
    with CpuMeter(pid) as cpu:
        proc = run(
            topo.exec_cmd(topo.ns1, "ping", "-c", "100", "-i", "0.01", "-W", "1", NS2_ADDR),
            check=False,
            timeout=60,
        )
    rec: Record = {"ping_cpu": cpu.result}
    rtts = sorted(float(x) for x in re.findall(r"time=([\d.]+) ms", proc.stdout))
    rec["ping_received"] = len(rtts)
    if rtts:
        rec["ping_p50_ms"] = round(statistics.median(rtts), 3)
        rec["ping_avg_ms"] = round(statistics.fmean(rtts), 3)
        rec["ping_p99_ms"] = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    return rec


def wait_forwarding(topo: Topology, switch: Switch, timeout: float) -> float:
    """Seconds until a ping crosses the switch; BenchError (with its log) after ``timeout``."""
    start = time.monotonic()
    while not topo.ping_ok(count=1, wait=1):
        if switch.pid is not None and not pid_alive(switch.pid):
            raise BenchError(f"{switch.name} died before forwarding:\n{switch.log_tail()}")
        if time.monotonic() - start > timeout:
            raise BenchError(
                f"{switch.name} did not forward a ping 10.0.0.1 -> {NS2_ADDR} within "
                f"{timeout:g} s; last log lines:\n{switch.log_tail()}"
            )
    return time.monotonic() - start


def measure_switch(topo: Topology, switch: Switch, tso: bool, args: argparse.Namespace) -> Record:
    """Start ``switch``, run every test ``args.runs`` times, stop it; the label's record.

    A switch that does not come up is recorded with its error; a single failed
    test (iperf3 error or timeout, no ping replies) is recorded in its run and
    the other tests go on.
    """
    entry: Record = {"switch": switch.name, "tso": tso, "runs": []}
    server = IperfServer(topo)
    try:
        entry["offloads"] = topo.set_offloads(on=tso)
        switch.start(tso)
        entry["ready_s"] = round(wait_forwarding(topo, switch, args.ready_timeout), 2)
        topo.ping_ok(count=3, wait=1)  # warm-up: MAC learning, flows, ARP caches
        server.start()
        for i in range(args.runs):
            rec: Record = {"run": i, "time": time.strftime("%H:%M:%S")}
            rec.update(measure_tcp(server, switch.pid, args.tcp_secs))
            rec.update(measure_udp(server, switch.pid, args.udp_secs))
            time.sleep(0.5)  # let the UDP backlog drain before timing pings
            rec.update(measure_ping(topo, switch.pid))
            entry["runs"].append(rec)
            print(f"  run {i + 1}/{args.runs}: {_run_line(rec)}", flush=True)
    except BenchError as exc:
        entry["error"] = str(exc)
        print(f"  ERROR: {exc}", flush=True)
    finally:
        server.stop()
        with contextlib.suppress(BenchError, OSError):
            entry["diagnostics"] = switch.diagnostics()
        entry["log_tail"] = switch.log_tail()
        switch.stop()
    entry["summary"] = summarize(entry["runs"])
    return entry


def _run_line(rec: Record) -> str:
    parts = []
    if "tcp_gbps" in rec:
        parts.append(f"TCP {rec['tcp_gbps']:.2f} Gbit/s")
    else:
        parts.append(f"TCP error: {rec.get('tcp_error')}")
    if "udp_deliv_pps" in rec:
        parts.append(f"UDP-64 {rec['udp_deliv_pps'] / 1000:.0f} kpps (loss {rec['udp_loss_pct']}%)")
    else:
        parts.append(f"UDP error: {rec.get('udp_error')}")
    if "ping_p50_ms" in rec:
        parts.append(f"ping p50 {rec['ping_p50_ms']:.3f} ms ({rec['ping_received']}/100)")
    else:
        parts.append("ping: no replies")
    cpu = [rec.get(k, {}).get("switch_cpu_pct") for k in ("tcp_cpu", "udp_cpu")]
    steal = [rec.get(k, {}).get("steal_pct") for k in ("tcp_cpu", "udp_cpu")]
    if cpu[0] is not None:
        parts.append(f"switch CPU {cpu[0]}/{cpu[1]}%")
    parts.append(f"steal {steal[0]}/{steal[1]}%")
    return ", ".join(parts)


# -- summaries and report --------------------------------------------------------------------

METRICS: dict[str, Callable[[Record], float | None]] = {
    "tcp_gbps": lambda r: r.get("tcp_gbps"),
    "tcp_retr": lambda r: r.get("tcp_retr"),
    "udp_deliv_kpps": lambda r: r["udp_deliv_pps"] / 1000 if "udp_deliv_pps" in r else None,
    "udp_sent_kpps": lambda r: r["udp_sent_pps"] / 1000 if "udp_sent_pps" in r else None,
    "udp_loss_pct": lambda r: r.get("udp_loss_pct"),
    "ping_p50_ms": lambda r: r.get("ping_p50_ms"),
    "ping_avg_ms": lambda r: r.get("ping_avg_ms"),
    "ping_p99_ms": lambda r: r.get("ping_p99_ms"),
    "tcp_switch_cpu_pct": lambda r: r.get("tcp_cpu", {}).get("switch_cpu_pct"),
    "udp_switch_cpu_pct": lambda r: r.get("udp_cpu", {}).get("switch_cpu_pct"),
    "tcp_steal_pct": lambda r: r.get("tcp_cpu", {}).get("steal_pct"),
    "udp_steal_pct": lambda r: r.get("udp_cpu", {}).get("steal_pct"),
}


def summarize(runs: list[Record]) -> dict[str, dict[str, float] | None]:
    """Per metric: median, min and max over the runs that produced it (None: none did)."""
    out: dict[str, dict[str, float] | None] = {}
    for key, get in METRICS.items():
        values = [v for v in (get(r) for r in runs) if v is not None]
        out[key] = (
            {"median": statistics.median(values), "min": min(values), "max": max(values)}
            if values
            else None
        )
    return out


def median_of(results: dict[str, Record], label: str, metric: str) -> float | None:
    entry = results.get(label)
    if entry is None:
        return None
    stat = entry["summary"].get(metric)
    return None if stat is None else float(stat["median"])


def _cell(stat: dict[str, float] | None, fmt: str) -> str:
    if stat is None:
        return "-"
    return f"{stat['median']:{fmt}} [{stat['min']:{fmt}}-{stat['max']:{fmt}}]"


def _med(summary: Record, key: str, fmt: str) -> str:
    stat = summary[key]
    return "-" if stat is None else f"{stat['median']:{fmt}}"


def print_table(results: dict[str, Record]) -> None:
    """Medians [min-max] of the headline figures, then medians of the supporting ones."""
    columns = [
        ("TCP Gbit/s", "tcp_gbps", ".2f"),
        ("UDP-64 kpps", "udp_deliv_kpps", ".0f"),
        ("ping p50 ms", "ping_p50_ms", ".3f"),
    ]
    header = f"{'switch':<15}" + "".join(f"{name:>22}" for name, _, _ in columns)
    header += f"{'p99 ms':>8}{'UDP loss%':>10}{'CPU% tcp/udp':>14}{'steal% tcp/udp':>16}"
    print(header)
    print("-" * len(header))
    for label, entry in results.items():
        s = entry["summary"]
        line = f"{label:<15}" + "".join(f"{_cell(s[key], fmt):>22}" for _, key, fmt in columns)
        cpu = f"{_med(s, 'tcp_switch_cpu_pct', '.0f')}/{_med(s, 'udp_switch_cpu_pct', '.0f')}"
        steal = f"{_med(s, 'tcp_steal_pct', '.1f')}/{_med(s, 'udp_steal_pct', '.1f')}"
        line += f"{_med(s, 'ping_p99_ms', '.2f'):>8}{_med(s, 'udp_loss_pct', '.1f'):>10}"
        line += f"{cpu:>14}{steal:>16}"
        print(line)
        if entry.get("error"):
            print(f"{'':<15}error: {entry['error'].splitlines()[0]}")


def print_ratios(results: dict[str, Record], suffix: str) -> None:
    py = "pyvswitchd" + suffix
    if py not in results:
        return
    for other in ("ovs" + suffix, "bridge" + suffix):
        if other not in results:
            continue
        parts = []
        for name, key in (
            ("TCP", "tcp_gbps"),
            ("UDP-64", "udp_deliv_kpps"),
            ("ping p50", "ping_p50_ms"),
        ):
            a, b = median_of(results, py, key), median_of(results, other, key)
            parts.append(f"{name} {a / b:.2f}x" if a is not None and b else f"{name} -")
        print(f"ratio {py}/{other}: " + ", ".join(parts))


def evaluate_targets(
    results: dict[str, Record], ovs_off_tcp: float | None, ovs_off_source: str
) -> list[Record]:
    """Each target: name, status (PASS/FAIL/n/a) and the figures behind it."""
    targets: list[Record] = []

    def ratio_target(
        name: str, py: float | None, ref: float | None, factor: float, ref_name: str
    ) -> None:
        if py is None or not ref:
            status, detail = "n/a", f"not measured (pyvswitchd {py}, {ref_name} {ref})"
        else:
            status = "PASS" if py >= factor * ref else "FAIL"
            detail = f"{py:.3g} vs {ref_name} {ref:.3g}: {py / ref:.2f}x (need {factor}x)"
        targets.append({"target": name, "status": status, "detail": detail})

    if "pyvswitchd" in results:
        ratio_target(
            f"pyvswitchd TCP >= {TCP_VS_OVS}x OVS (offloads off)",
            median_of(results, "pyvswitchd", "tcp_gbps"),
            median_of(results, "ovs", "tcp_gbps"),
            TCP_VS_OVS,
            "OVS",
        )
        ratio_target(
            f"pyvswitchd UDP-64 delivered pps >= {UDP_VS_OVS}x OVS (offloads off)",
            median_of(results, "pyvswitchd", "udp_deliv_kpps"),
            median_of(results, "ovs", "udp_deliv_kpps"),
            UDP_VS_OVS,
            "OVS",
        )
    for label in ("pyvswitchd", "pyvswitchd+tso"):
        if label not in results:
            continue
        p50 = median_of(results, label, "ping_p50_ms")
        name = f"{label} median ping <= {PING_MAX_MS} ms"
        if p50 is None:
            targets.append({"target": name, "status": "n/a", "detail": "not measured"})
        else:
            status = "PASS" if p50 <= PING_MAX_MS else "FAIL"
            targets.append({"target": name, "status": status, "detail": f"{p50:.3f} ms"})
    if "pyvswitchd+tso" in results:
        ratio_target(
            f"pyvswitchd+tso TCP >= {TSO_TCP_VS_OVS_OFF}x OVS offloads-off TCP",
            median_of(results, "pyvswitchd+tso", "tcp_gbps"),
            ovs_off_tcp,
            TSO_TCP_VS_OVS_OFF,
            f"OVS ({ovs_off_source})",
        )
    return targets


# -- set-up helpers ---------------------------------------------------------------------------


def install_packages() -> None:
    """apt-get install the tools, then stop any system OVS the package started."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing: " + " ".join(APT_PACKAGES), flush=True)
    run(["apt-get", "update", "-q"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-q", *APT_PACKAGES], env=env, timeout=1200)
    stop_system_ovs()


def stop_system_ovs() -> None:
    """Stop the distribution's own OVS daemons: a busy one would skew every result."""
    if os.path.isdir("/run/systemd/system") and shutil.which("systemctl"):
        run(["systemctl", "stop", "openvswitch-switch"], check=False)
    for prog in ("ovs-vswitchd", "ovsdb-server"):
        for rundir in ("/run/openvswitch", "/var/run/openvswitch"):
            path = Path(rundir, f"{prog}.pid")
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(path.read_text().split()[0])
                if pid_alive(pid):
                    print(f"stopping the system's {prog} (pid {pid}, {path})", flush=True)
                    stop_pid(pid)


def missing_tools() -> list[str]:
    """Names of missing required tools; OVS is checked separately (it is optional)."""
    return [t for t in ("ip", "iperf3", "ethtool", "ping") if shutil.which(t) is None]


def parse_other_config(items: list[str], flag: str = "--pyvswitchd-other-config") -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def load_ovs_baseline(path: str) -> float:
    try:
        data = json.loads(Path(path).read_text())
        value = data["results"]["ovs"]["summary"]["tcp_gbps"]["median"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(
            f"--ovs-baseline-json {path}: no offloads-off OVS TCP median in it ({exc!r})"
        ) from None
    return float(value)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into an exception so the finally blocks clean up.
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per switch (median) [3]")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the plan, interleaved (see above) [1]"
    )
    parser.add_argument("--tcp-secs", type=int, default=10, help="iperf3 TCP duration [10]")
    parser.add_argument("--udp-secs", type=int, default=5, help="iperf3 UDP duration [5]")
    parser.add_argument(
        "--switches", default=",".join(SWITCHES), help="comma list of bridge,ovs,pyvswitchd"
    )
    parser.add_argument("--tso", action="store_true", help="offloads on + userspace-tso-enable")
    parser.add_argument(
        "--ovs-baseline-json",
        metavar="FILE",
        help="in --tso mode, take OVS's offloads-off TCP from this earlier --json output",
    )
    parser.add_argument("--json", metavar="FILE", help="write every run and summary here")
    parser.add_argument("--pmd-cpu-mask", default="0x1", help="pyvswitchd pmd-cpu-mask [0x1]")
    parser.add_argument(
        "--pyvswitchd-other-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra [other_config] key for pyvswitchd (repeatable), e.g. pmd-sleep-max=100",
    )
    parser.add_argument(
        "--pyvswitchd-port-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option for both pyvswitchd system ports (repeatable), e.g. tx-kick=sync",
    )
    parser.add_argument(
        "--bindir",
        default=str(REPO / ".venv" / "bin"),
        help="directory holding pyvswitchd, pyappctl and python [.venv/bin]",
    )
    parser.add_argument("--ready-timeout", type=float, default=30, help="seconds [30]")
    parser.add_argument("--prefix", help="namespace name prefix [pvsbench<pid>-]")
    parser.add_argument("--install", action="store_true", help="apt-get install the tools first")
    parser.add_argument("--strict", action="store_true", help="exit 1 unless every target PASSes")
    args = parser.parse_args(argv)
    args.switch_list = [s.strip() for s in args.switches.split(",") if s.strip()]
    bad = [s for s in args.switch_list if s not in SWITCHES]
    if bad or not args.switch_list:
        parser.error(
            f"--switches: unknown {', '.join(bad) or '(none given)'}; choose from {SWITCHES}"
        )
    if args.runs < 1 or args.rounds < 1 or args.tcp_secs < 1 or args.udp_secs < 1:
        parser.error("--runs, --tcp-secs and --udp-secs must be at least 1")
    if args.ovs_baseline_json and not args.tso:
        parser.error("--ovs-baseline-json only makes sense with --tso")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("netns_bench: needs root (network namespaces, veth pairs)", file=sys.stderr)
        return 1
    if args.install:
        install_packages()
    missing = missing_tools()
    if missing:
        print(
            f"netns_bench: missing {', '.join(missing)}; install: {INSTALL_HINT}", file=sys.stderr
        )
        return 1
    switches = list(args.switch_list)
    if "ovs" in switches and not OvsSwitch.available():
        print(f"netns_bench: ovs-vswitchd not installed, skipping OVS; install: {INSTALL_HINT}")
        switches.remove("ovs")
    if not switches:
        return 1

    ovs_off_tcp: float | None = None
    ovs_off_source = "this run"
    if args.ovs_baseline_json:
        ovs_off_tcp = load_ovs_baseline(args.ovs_baseline_json)
        ovs_off_source = args.ovs_baseline_json
    # (switch, tso) in measuring order; --tso needs OVS's offloads-off TCP as well.
    plan = [(s, args.tso) for s in switches]
    if args.tso and "ovs" in switches and ovs_off_tcp is None:
        plan.insert(0, ("ovs", False))

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_exit)
    # Started in the background by a shell, SIGINT arrives ignored; Ctrl-C must still clean up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 0
    topo = Topology(args.prefix)
    workdir = Path(tempfile.mkdtemp(prefix=f"{topo.prefix}run-"))
    meta: Record = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "args": {k: v for k, v in vars(args).items() if k != "switch_list"},
        "iperf3": run(["iperf3", "--version"], check=False).stdout.splitlines()[0],
        "namespaces": [topo.ns1, topo.sw, topo.ns2],
    }
    results: dict[str, Record] = {}
    try:
        busy = busy_foreign_processes(exclude={os.getpid()})
        meta["busy_processes_at_start"] = busy
        for line in busy:
            print(f"warning: busy process (skews results): {line}", flush=True)
        topo.up()
        for rnd, (name, tso) in enumerate(plan * args.rounds):
            label = name + ("+tso" if tso else "")
            rounds = f", round {rnd // len(plan) + 1}/{args.rounds}" if args.rounds > 1 else ""
            print(f"== {label} (offloads {'on' if tso else 'off'}{rounds})", flush=True)
            switch: Switch
            if name == "bridge":
                switch = LinuxBridge(topo, workdir)
            elif name == "ovs":
                switch = OvsSwitch(topo, workdir)
            else:
                switch = Pyvswitchd(
                    topo,
                    workdir,
                    Path(args.bindir),
                    args.pmd_cpu_mask,
                    parse_other_config(args.pyvswitchd_other_config),
                    parse_other_config(args.pyvswitchd_port_option, "--pyvswitchd-port-option"),
                )
            record = measure_switch(topo, switch, tso, args)
            if label in results:  # a later round: one record over every round's runs
                earlier = results[label]
                record["runs"] = earlier["runs"] + record["runs"]
                record["summary"] = summarize(record["runs"])
                if "error" in earlier:
                    record.setdefault("error", earlier["error"])
            results[label] = record
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
        status = 130
    except SystemExit as exc:
        print("terminated; cleaning up", file=sys.stderr)
        status = exc.code if isinstance(exc.code, int) else 1
    except BenchError as exc:
        print(f"netns_bench: {exc}", file=sys.stderr)
        status = 1
    finally:
        topo.down()
        shutil.rmtree(workdir, ignore_errors=True)

    if ovs_off_tcp is None:
        ovs_off_tcp = median_of(results, "ovs", "tcp_gbps")
    print()
    runs = args.runs * args.rounds
    print(f"medians [min-max] of {runs} run(s); TCP {args.tcp_secs} s, UDP {args.udp_secs} s")
    print_table(results)
    print()
    print_ratios(results, "")
    print_ratios(results, "+tso")
    targets = evaluate_targets(results, ovs_off_tcp, ovs_off_source)
    print()
    print("targets:" if targets else "targets: none evaluated (pyvswitchd not measured)")
    for t in targets:
        print(f"  {t['status']:<4} {t['target']}: {t['detail']}")
    if args.json:
        meta["ovs_offloads_off_tcp_gbps"] = {"value": ovs_off_tcp, "source": ovs_off_source}
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": results, "targets": targets}, indent=2) + "\n"
        )
        print(f"\nwrote {args.json}")
    if status == 0 and args.strict and any(t["status"] != "PASS" for t in targets):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
