"""Namespaces, veth pairs and process bookkeeping for ``netns_bench.py``.

The topology (all names carry a per-run prefix, since namespace names are
global to the machine)::

    <prefix>ns1            <prefix>sw (switch under test)           <prefix>ns2
    eth1 10.0.0.1/24 ==veth== v1 --[switch]-- v2 ==veth== eth2 10.0.0.2/24

The switch ports live in their own namespace so that whatever the switch
creates there (OVS's ``ovs-netdev`` tap, a bridge's internal port) cannot
collide with another switch daemon running on the host.

Everything made here is recorded and removed by :meth:`Topology.down`, which
is idempotent and also registered with :mod:`atexit`; deleting the switch
namespace takes the veth pairs with it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence

NS1_ADDR = "10.0.0.1"
NS2_ADDR = "10.0.0.2"
PREFIX_BASE = "pvsbench"
# (namespace suffix, interface) of the four veth ends, for ethtool.
VETH_ENDS = (("ns1", "eth1"), ("ns2", "eth2"), ("sw", "v1"), ("sw", "v2"))
OFFLOAD_FEATURES = ("tx", "tso", "gso", "gro")


class BenchError(Exception):
    """A step of the benchmark failed; the text says which and why."""


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``, capturing output; BenchError with its stderr when it fails and ``check``."""
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except FileNotFoundError:
        raise BenchError(f"{cmd[0]}: not installed") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:g} s: {' '.join(cmd)}") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise BenchError(f"failed ({proc.returncode}): {' '.join(cmd)}: {detail}")
    return proc


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid`` (one we started), SIGKILL if it outlives ``timeout``; wait for it."""
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Reap it if it is our child; otherwise just watch it go.
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class Topology:
    """The three namespaces and two veth pairs of one benchmark run."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"{PREFIX_BASE}{os.getpid()}-"
        self.ns1 = self.prefix + "ns1"
        self.ns2 = self.prefix + "ns2"
        self.sw = self.prefix + "sw"
        self._made: list[str] = []
        #: Processes started for this run (pid -> what), stopped by :meth:`down`.
        self.pids: dict[int, str] = {}
        atexit.register(self.down)

    def ns_name(self, suffix: str) -> str:
        return self.prefix + suffix

    # -- set-up ---------------------------------------------------------------------

    def up(self) -> None:
        remove_stale_namespaces()
        for ns in (self.ns1, self.ns2, self.sw):
            run(["ip", "netns", "add", ns])
            self._made.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        for port, host, ns, addr in (
            ("v1", "eth1", self.ns1, NS1_ADDR),
            ("v2", "eth2", self.ns2, NS2_ADDR),
        ):
            run(
                [
                    "ip",
                    "-n",
                    self.sw,
                    "link",
                    "add",
                    port,
                    "type",
                    "veth",
                    "peer",
                    host,
                    "netns",
                    ns,
                ]
            )
            run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", host])
        for ns, dev in ((self.ns1, "eth1"), (self.ns2, "eth2"), (self.sw, "v1"), (self.sw, "v2")):
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        # Keep IPv6 autoconfiguration and MLD chatter off the measured links.
        for ns in (self.ns1, self.ns2, self.sw):
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])

    def set_offloads(self, on: bool) -> dict[str, str]:
        """ethtool -K on all four veth ends; returns the resulting settings per end."""
        value = "on" if on else "off"
        settings: dict[str, str] = {}
        for suffix, dev in VETH_ENDS:
            ns = self.ns_name(suffix)
            args = []
            for feature in OFFLOAD_FEATURES:
                # GRO stays off either way: that is veth's default, and the brief's "on".
                args += [feature, value if feature != "gro" else "off"]
            proc = run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, *args], check=False)
            if proc.returncode not in (0, 1) or "Cannot" in proc.stderr:
                raise BenchError(f"ethtool -K {dev} in {ns} failed: {proc.stderr.strip()}")
            settings[f"{suffix}/{dev}"] = self._offload_summary(ns, dev)
        return settings

    @staticmethod
    def _offload_summary(ns: str, dev: str) -> str:
        text = run(["ip", "netns", "exec", ns, "ethtool", "-k", dev]).stdout
        want = {
            "tx-checksumming": "tx",
            "tcp-segmentation-offload": "tso",
            "generic-segmentation-offload": "gso",
            "generic-receive-offload": "gro",
        }
        found = dict(re.findall(r"^([a-z-]+): (on|off)", text, re.M))
        return " ".join(f"{short}={found.get(long, '?')}" for long, short in want.items())

    # -- running things -------------------------------------------------------------

    def exec_cmd(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def spawn(
        self, ns: str, cmd: Sequence[str], what: str, log_path: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` in ``ns`` in the background (``ip netns exec`` execs, so same pid)."""
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                self.exec_cmd(ns, *cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log_path and not isinstance(out, int):
                out.close()
        self.pids[proc.pid] = what
        return proc

    def stop(self, pid: int) -> None:
        stop_pid(pid)
        self.pids.pop(pid, None)

    def ping_ok(self, count: int = 1, wait: float = 1.0) -> bool:
        proc = run(
            self.exec_cmd(self.ns1, "ping", "-c", str(count), "-W", f"{wait:g}", "-q", NS2_ADDR),
            check=False,
            timeout=count * (wait + 1) + 5,
        )
        return proc.returncode == 0

    # -- teardown -------------------------------------------------------------------

    def down(self) -> None:
        """Stop every process started and delete every namespace made; safe to repeat."""
        for pid in list(self.pids):
            with contextlib.suppress(Exception):
                stop_pid(pid)
            self.pids.pop(pid, None)
        for ns in reversed(self._made):
            with contextlib.suppress(BenchError):
                run(["ip", "netns", "del", ns], check=False)
        self._made.clear()


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces a crashed earlier run left behind (its pid, in the name, is dead)."""
    proc = run(["ip", "netns", "list"], check=False)
    removed = []
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX_BASE}(\d+)-(ns1|ns2|sw)", name)
        if match and not pid_alive(int(match[1])):
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed
