#!/usr/bin/env python3
"""CPU per frame of the ``afpacket`` netdev, against a naive Python forwarder in the same run.

Topology (``netns_topo.Topology``, names carry this process's pid)::

    <p>ns1 eth1 10.0.0.1 ==veth== v1 [<p>sw: forwarder] v2 ==veth== eth2 10.0.0.2 <p>ns2

The forwarder is a child process in the switch namespace.  ``afpacket``
uses two :class:`AfPacketNetdev` (recv on one, send + process_async on the
other, both directions, epoll when idle, much like a PMD without the
pipeline); ``naive`` is the same loop over plain AF_PACKET sockets with one
``recv_into`` and one ``send`` per frame.  Its figures are the baseline
that makes runs comparable on a busy machine: each measurement of
``afpacket`` is divided by the ``naive`` one taken just before it.

Tests (``--tests``), all with veth offloads off (MTU-sized frames):

* ``rx``: a tx-ring blaster in ns1 sends 60-byte frames to v1, flat out
  or ``--rx-rate`` frames/s; the forwarder only receives, sleeping
  ``--rx-poll-ms`` whenever the queue is empty, so that it reads whole
  batches and the figure is the cost of receiving rather than of waking
  up (with 0 it waits in epoll, like the forwarding tests).
* ``tx``: the forwarder sends 32-frame batches of 60 bytes to v2 as fast
  as it can.  CPU per completed frame (Python plus the kernel's veth
  transmit, which runs in the sender's context).
* ``udp``: iperf3 -u -l 64 -b 0 ns1 -> ns2 through the forwarder.
* ``tcp``: iperf3 TCP ns1 -> ns2 through the forwarder (1500-byte frames).

For each: the forwarder's CPU (user+sys from its own getrusage, between two
marks ``--secs`` apart, after a warm-up) per frame, the frame rate in that
window, and for iperf3 the delivered packets/s or Gbit/s.  The 1-minute load
average is read before each measurement.  Medians over ``--runs``.

Usage (root)::

    .venv/bin/python benchmarks/afpacket_bench.py
    .venv/bin/python benchmarks/afpacket_bench.py --tests rx,tx --rx-ring v3 --runs 5
    .venv/bin/python benchmarks/afpacket_bench.py --tx-ring false --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netns_topo import NS2_ADDR, BenchError, Topology

Record = dict[str, Any]
TESTS = ("rx", "tx", "udp", "tcp")
IMPLS = ("naive", "afpacket")
#: A 60-byte IPv4/UDP frame to a MAC nobody has: the receiving stacks drop it early.
FRAME = (
    b"\x02\x00\x00\x00\x00\xee\x02\x00\x00\x00\x00\x01\x08\x00"
    + b"\x45\x00\x00\x2e\x00\x00\x00\x00\x40\x11\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x63"
    + b"\x30\x39\x30\x39\x00\x1a\x00\x00"
    + bytes(18)
)
ETH_P_ALL = 3
PACKET_IGNORE_OUTGOING = 23
_profiles = itertools.count(1)
SOL_PACKET = 263


# -- child processes (run inside a namespace) ----------------------------------------------


def _cpu() -> tuple[float, float]:
    """(user + system, system) CPU seconds of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_stime


class Counters:
    def __init__(self) -> None:
        self.rx = self.tx = self.dropped = 0
        #: Non-empty receive calls (afpacket) or receive bursts (naive): mean batch size.
        self.batches = 0


def _naive_ports(names: list[str]) -> list[socket.socket]:
    socks = []
    for name in names:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((name, ETH_P_ALL))
        s.setblocking(False)
        socks.append(s)
    return socks


def child(test: str, impl: str, options: dict[str, str]) -> None:
    """The forwarder: answers ``mark`` on stdin with a JSON line of counters, exits on EOF.

    ``options`` also carries ``poll-interval`` (seconds, 0: wait in epoll when idle).
    """
    interval = float(options.pop("poll-interval", 0))
    from pyvswitchd.netdev.afpacket import AfPacketNetdev
    from pyvswitchd.netdev.provider import EINPROGRESS
    from pyvswitchd.odp.packet import Packet

    c = Counters()
    ctl = sys.stdin.fileno()
    ep = select.epoll()
    ep.register(ctl, select.EPOLLIN)
    nds: list[AfPacketNetdev] = []
    socks: list[socket.socket] = []
    if impl == "afpacket":
        nds = [AfPacketNetdev("v1", options), AfPacketNetdev("v2", options)]
        for nd in nds:
            fd = nd.rx_fd(0)
            assert fd is not None
            ep.register(fd, select.EPOLLIN)
    else:
        socks = _naive_ports(["v1", "v2"])
        for s in socks:
            ep.register(s.fileno(), select.EPOLLIN)
    batch = [Packet(FRAME) for _ in range(32)]

    def report() -> None:
        if nds:
            for nd in nds:
                nd.status()  # folds the kernel's drop counts into rx_dropped
            c.rx = sum(nd.stats.rx_packets for nd in nds)
            c.tx = sum(nd.stats.tx_packets for nd in nds)
            c.dropped = sum(nd.stats.rx_dropped + nd.stats.tx_dropped for nd in nds)
        cpu, sys_cpu = _cpu()
        line = {"cpu": cpu, "sys": sys_cpu, "t": time.monotonic(), "rx": c.rx, "tx": c.tx}
        line["drop"] = c.dropped
        line["batches"] = c.batches
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def control(timeout: float) -> bool:
        """Handle commands; False on EOF (the parent is done)."""
        for fd, _ in ep.poll(timeout):
            if fd == ctl:
                cmd = sys.stdin.readline()
                if not cmd:
                    return False
                report()
        return True

    report()  # ready
    pending: deque[AfPacketNetdev] = deque()
    attempts = 0
    it = 0
    buf = bytearray(65536)
    view = memoryview(buf)
    while True:
        moved = 0
        if nds:
            a, b = nds
            if test == "tx":
                if b.send(0, batch) == EINPROGRESS:
                    pending.append(b)
                moved = 1
            else:
                pkts = a.recv(0)
                if pkts:
                    moved = len(pkts)
                    c.batches += 1
                    if test != "rx" and b.send(0, pkts) == EINPROGRESS:
                        pending.append(b)
                if test != "rx":
                    pkts = b.recv(0)
                    if pkts:
                        moved += len(pkts)
                        c.batches += 1
                        if a.send(0, pkts) == EINPROGRESS:
                            pending.append(a)
            while pending:
                rc = pending[0].process_async(0, attempts >= 1000)
                if rc == EINPROGRESS:
                    attempts += 1
                    break
                attempts = 0
                pending.popleft()
        else:
            s1, s2 = socks
            if test == "tx":
                for _ in range(32):
                    try:
                        s2.send(FRAME)
                        c.tx += 1
                    except OSError:
                        c.dropped += 1
                moved = 1
            else:
                dirs = ((s1, None),) if test == "rx" else ((s1, s2), (s2, s1))
                for src, dst in dirs:
                    for k in range(32):
                        try:
                            n = src.recv_into(buf)
                        except BlockingIOError:
                            break
                        c.batches += not k
                        moved += 1
                        c.rx += 1
                        if dst is not None:
                            try:
                                dst.send(view[:n])
                                c.tx += 1
                            except OSError:
                                c.dropped += 1
        it += 1
        if moved and it & 63:
            continue
        if interval and not moved:
            time.sleep(interval)  # let frames pile up: whole batches, few wake-ups
            moved = 1
        if not control(0 if moved else (0.001 if pending else 0.05)):
            return


def blaster(rate: int) -> None:
    """Send FRAME on eth1 through a TPACKET_V2 tx ring, ``rate`` frames/s (0: flat out).

    Every slot holds FRAME from the start; a burst only flips 32 statuses to
    SEND_REQUEST and kicks once, so the blaster outpaces the forwarder
    without a C load generator.
    """
    import mmap
    import struct

    nr, size = 512, 2048
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, 10, 1)  # PACKET_VERSION: TPACKET_V2
    sock.setsockopt(SOL_PACKET, 13, struct.pack("=4I", 4096, nr * size // 4096, size, nr))
    mm = mmap.mmap(sock.fileno(), nr * size)
    for i in range(nr):
        mm[i * size + 32 : i * size + 32 + len(FRAME)] = FRAME
        struct.pack_into("=II", mm, i * size, 0, len(FRAME))
    sock.bind(("eth1", 0))
    os.set_blocking(sys.stdin.fileno(), False)
    status = memoryview(mm).cast("I")
    stride = size // 4
    period = 32 / rate if rate else 0.0
    due = time.monotonic()
    i = 0
    while True:
        for _ in range(32):
            if status[i * stride]:
                break  # the kernel still has it: the ring is full
            status[i * stride] = 1  # TP_STATUS_SEND_REQUEST
            i = (i + 1) % nr
        with contextlib.suppress(OSError):
            sock.send(b"", socket.MSG_DONTWAIT)
        if period:
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.1:
                due = time.monotonic()  # fell behind: do not burst to catch up
        with contextlib.suppress(BlockingIOError):
            if not os.read(sys.stdin.fileno(), 64):
                status.release()
                mm.close()
                return


# -- parent -----------------------------------------------------------------------------------


class Child:
    """A child process of this script in ``ns``, talking JSON lines on its stdout."""

    def __init__(
        self, topo: Topology, ns: str, args: list[str], what: str, tree: str | None = None
    ) -> None:
        self.topo = topo
        cmd = topo.exec_cmd(ns, sys.executable, str(Path(__file__).resolve()), *args)
        env = dict(os.environ)
        if tree:  # another copy of the package, ahead of the editable install
            env["PYTHONPATH"] = tree
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, env=env
        )
        topo.pids[self.proc.pid] = what

    def mark(self) -> Record:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"mark\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> Record:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"child {self.proc.args!r} died (exit {self.proc.wait()})")
        result: Record = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.topo.stop(self.proc.pid)


def iperf(topo: Topology, test: str, secs: float) -> subprocess.Popen[bytes]:
    args = ["-u", "-l", "64", "-b", "0"] if test == "udp" else []
    cmd = ["iperf3", "-c", NS2_ADDR, "-J", "-t", f"{secs:g}", *args]
    proc = subprocess.Popen(topo.exec_cmd(topo.ns1, *cmd), stdout=subprocess.PIPE)
    topo.pids[proc.pid] = "iperf3 client"
    return proc


def iperf_result(proc: subprocess.Popen[bytes], test: str) -> Record:
    out, _ = proc.communicate(timeout=60)
    try:
        res = json.loads(out)["end"]
    except (json.JSONDecodeError, KeyError):
        return {"iperf_error": out[-300:].decode(errors="replace")}
    if test == "tcp":
        return {"gbps": res["sum_received"]["bits_per_second"] / 1e9}
    total = res["sum"]  # the client's sum carries the server's lost count
    return {"deliv_pps": (total["packets"] - total["lost_packets"]) / (total["seconds"] or 1)}


def measure(topo: Topology, test: str, impl: str, args: argparse.Namespace) -> Record:
    load = os.getloadavg()[0]
    opts = json.dumps(
        {
            "rx-ring": args.rx_ring,
            "tx-ring": args.tx_ring,
            "poll-interval": str(args.rx_poll_ms / 1e3 if test == "rx" else 0),
        }
    )
    tree = args.alt_tree if impl == "alt" else None
    kind = "afpacket" if impl == "alt" else impl
    fwd = Child(topo, topo.sw, ["--child", test, kind, opts], f"forwarder {impl}", tree)
    load_proc: Child | None = None
    client: subprocess.Popen[bytes] | None = None
    rec: Record = {"test": test, "impl": impl, "load1": load}
    try:
        fwd.read()  # ready
        if test == "rx":
            load_proc = Child(topo, topo.ns1, ["--blast", str(args.rx_rate)], "blaster")
        elif test in ("udp", "tcp"):
            client = iperf(topo, test, args.warmup + args.secs + 1)
        time.sleep(args.warmup)
        spy = None
        if args.profile and impl == "afpacket":
            out = f"{args.profile}.{test}.{next(_profiles)}.txt"
            cmd = [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(fwd.proc.pid),
                "-d",
                f"{args.secs:g}",
                "-r",
                "1000",
                "-f",
                "raw",
                "-o",
                out,
                "--nonblocking",
            ]
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            topo.pids[spy.pid] = "py-spy"
        m0 = fwd.mark()
        time.sleep(args.secs)
        m1 = fwd.mark()
        if spy is not None:
            spy.wait(timeout=30)
            topo.pids.pop(spy.pid, None)
    finally:
        if load_proc is not None:
            load_proc.close()
        if client is not None:
            rec.update(iperf_result(client, test))
            topo.pids.pop(client.pid, None)
        fwd.close()
    frames = m1["rx"] - m0["rx"] if test == "rx" else m1["tx"] - m0["tx"]
    cpu = m1["cpu"] - m0["cpu"]
    wall = m1["t"] - m0["t"]
    rec.update(
        frames=frames,
        fps=frames / wall,
        cpu_pct=100 * cpu / wall,
        us_per_frame=1e6 * cpu / frames if frames else float("nan"),
        sys_us_per_frame=1e6 * (m1["sys"] - m0["sys"]) / frames if frames else float("nan"),
        dropped=m1["drop"] - m0["drop"],
        batch=(m1["rx"] - m0["rx"]) / max(1, m1["batches"] - m0["batches"]),
    )
    return rec


def _line(rec: Record) -> str:
    text = (
        f"{rec['test']:>3} {rec['impl']:>8}: {rec['us_per_frame']:6.3f} us/frame "
        f"(sys {rec['sys_us_per_frame']:5.3f})  "
        f"{rec['fps'] / 1e3:7.1f} kfps  cpu {rec['cpu_pct']:5.1f}%  rx batch {rec['batch']:4.1f}  "
        f"drop {rec['dropped']}"
    )
    if "gbps" in rec:
        text += f"  {rec['gbps']:.2f} Gbit/s"
    if "deliv_pps" in rec:
        text += f"  delivered {rec['deliv_pps'] / 1e3:.1f} kpps"
    return text + f"  (load {rec['load1']:.2f})"


def summarize(records: list[Record], tests: list[str]) -> None:
    print("\nmedians (ratio = impl / naive, pairwise within each run):")
    med = statistics.median
    for test in tests:
        mine = [r for r in records if r["test"] == test]
        base = {r["run"]: r for r in mine if r["impl"] == "naive"}
        for impl in sorted({r["impl"] for r in mine}, key=lambda i: i != "naive"):
            recs = [r for r in mine if r["impl"] == impl]
            text = (
                f"  {test:>3} {impl:>8}: {med(r['us_per_frame'] for r in recs):6.3f} us/frame "
                f"(sys {med(r['sys_us_per_frame'] for r in recs):5.3f}) "
                f"{med(r['fps'] for r in recs) / 1e3:7.1f} kfps  batch "
                f"{med(r['batch'] for r in recs):4.1f}"
            )
            if impl != "naive" and base:
                ratios = [
                    r["us_per_frame"] / base[r["run"]]["us_per_frame"]
                    for r in recs
                    if r["run"] in base
                ]
                text += f"  ratio {med(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]"
            if all("deliv_pps" in r for r in recs):
                text += f"  delivered {med(r['deliv_pps'] for r in recs) / 1e3:.1f} kpps"
            if all("gbps" in r for r in recs):
                text += f"  {med(r['gbps'] for r in recs):.2f} Gbit/s"
            print(text + f"  load {med(r['load1'] for r in recs):.2f}")


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tests", default=",".join(TESTS), help="comma-separated: rx,tx,udp,tcp")
    p.add_argument("--rx-ring", default="v2", choices=("v2", "v3", "none"))
    p.add_argument("--tx-ring", default="true", choices=("true", "false"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--secs", type=float, default=4.0, help="measured window per test")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rx-rate", type=int, default=0, help="rx test's frames/s (0: flat out)")
    p.add_argument(
        "--rx-poll-ms",
        type=float,
        default=1.0,
        help="rx test: sleep this long when the queue is empty (0: wait in epoll)",
    )
    p.add_argument("--json", help="write every record here")
    p.add_argument(
        "--alt-tree",
        metavar="DIR",
        help="also measure the afpacket netdev of the pyvswitchd package in DIR (impl 'alt')",
    )
    p.add_argument(
        "--profile",
        metavar="PREFIX",
        help="py-spy the afpacket forwarder in each window (raw stacks to PREFIX.TEST.N.txt)",
    )
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--blast", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        test, impl, opts = args.child
        child(test, impl, json.loads(opts))
        return 0
    if args.blast is not None:
        blaster(args.blast)
        return 0
    tests = args.tests.split(",")
    if bad := set(tests) - set(TESTS):
        print(f"unknown tests: {', '.join(sorted(bad))}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    topo = Topology(prefix=f"pvafp{os.getpid()}-")
    records: list[Record] = []
    try:
        topo.up()
        topo.set_offloads(on=False)
        server = None
        if {"udp", "tcp"} & set(tests):
            server = topo.spawn(topo.ns2, ["iperf3", "-s"], "iperf3 server")
            time.sleep(0.3)
        print(f"rx-ring={args.rx_ring} tx-ring={args.tx_ring}, {args.runs} runs, "
              f"{args.secs:g} s each", flush=True)  # fmt: skip
        for i in range(args.runs):
            for test in tests:
                for impl in IMPLS + (("alt",) if args.alt_tree else ()):
                    rec = measure(topo, test, impl, args)
                    rec["run"] = i
                    records.append(rec)
                    print(f"  run {i + 1}: {_line(rec)}", flush=True)
        summarize(records, tests)
        if server is not None:
            topo.stop(server.pid)
        if args.json:
            Path(args.json).write_text(json.dumps(records, indent=1))
    except BenchError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        topo.down()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
