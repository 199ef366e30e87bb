#!/usr/bin/env python3
"""Soak: the real daemon forwarding traffic while it is reconfigured every few seconds.

Starts ``pyvswitchd`` as a subprocess in a temporary run directory, with
two ``traffic-source`` ports sending to one ``dummy-pmd`` sink, and while
traffic runs performs, one every ``--period`` seconds in a shuffled
rotation: ``pmd-cpu-mask`` changes (``config/set``), ``dpctl/add-if`` /
``dpctl/del-if`` of idle ``dummy-pmd`` ports, short-lived traffic sources
added and deleted (``dpctl/add-if`` with ``count=N``, deleted once they have
sent their N frames), ``hw-offload`` toggled, ``pmd-sleep-max`` /
``pmd-maxsleep`` and ``tx-flush-interval`` changed, ``pmd-stats-clear``,
``pmd-rxq-rebalance``, ``config/reload`` alternating between two files (rx
queue counts and ``pmd-rxq-assign`` differ), and the read-only commands
(``dpctl/show``, ``pmd-perf-show``, ``pmd-rxq-show``, ``dump-flows``,
``memory/show``, ``coverage/show``).  Then it stops the traffic and checks:

Packet accounting, exactly.
    Every source frame has the same destination MAC, learned on the sink
    before traffic starts (and re-learned every 20 s so it never ages out),
    so the bridge forwards all of it to the sink as unicast: one frame in is
    one frame out, whatever reconfiguration happens meanwhile.  The
    invariant is::

        sum(rx_packets of the sources) + sum(N of the deleted short-lived sources)
            == sink tx_packets + tx_dropped + tx_errors
               + sum(coverage datapath_drop_*)

    (a short-lived source is deleted only once its ``rx_packets`` equals its
    ``count``, so its share is known exactly).  A configuration change
    removes ports added by ``dpctl/add-if`` (the config file is the truth,
    as OVSDB is for OVS), which is why no short-lived source outlives the
    step that created it.  The learning frames the sink receives flood to
    the other ports, never to the sink, so they are outside the sum.  While
    traffic runs, ``out <= in`` is checked at every step (nothing duplicated).

Memory.
    VmRSS from ``/proc/PID/status`` (and ``memory/show``) is recorded after
    the warm-up and at the end; the growth must stay within
    ``--rss-tolerance`` KiB (default 8 MiB).  The summary also gives the
    RSS minute by minute and its least-squares trend after the warm-up.

Tasks.
    ``tasks/show`` (the daemon's live trio tasks) after the warm-up and at
    the end, both taken right after a ``config/reload`` of the same file, so
    the same PMDs exist: the totals must be equal.

Hostile client (on by default; ``--no-hostile`` turns it off).
    Beside the reconfiguration storm, a thread attacks the control socket
    in a loop: hypothesis-made hostile requests (the strategies of
    ``tests/hostile_json.py``: lone surrogates, huge integers, NaN and
    Infinity, deep nesting, in id, method and params), one connection
    each, every accepted request's reply checked to echo its id; now and
    then random bytes, half-sent requests left hanging, bursts of idle
    connections and ``dpctl/dump-flows`` requests whose reply is never
    read.  It pauses around the tasks snapshots (its connections are
    tasks too).  None of it may cost a packet, memory or an ERR line.

The daemon must also never log at ERR or EMER level and must exit 0 on
SIGTERM at the end.  It prints a summary (requests, reconfigurations,
minutes soaked, packets accounted, RSS and tasks before and after) and
exits 1 when a check fails (2 for a usage error).

Long mode is the default: ``--minutes 10``; run it for hours before a
release (``--minutes 240``), keeping the run directory with ``--keep`` to
read the daemon's log afterwards.  ``--short`` is the CI mode (~30 s,
``tests/e2e/test_soak.py``).

Usage: python benchmarks/soak.py [--minutes M | --short] [--period S] [--pps N]
                                 [--seed N] [--rss-tolerance KIB] [--keep] [--no-hostile]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostile_client import Hostile

from pyappctl.client import UnixctlClient

SINK_MAC = "02:00:00:00:00:fe"
#: The sink re-announces its MAC this often (MAC aging is 300 s).
RELEARN_SECS = 20.0
#: Frames each short-lived source sends before it is deleted.
BURST_COUNT = 2000
#: Default allowed RSS growth after the warm-up, kB.
RSS_TOLERANCE_KB = 8 * 1024
#: Seconds the daemon gets to answer one request.
REQUEST_TIMEOUT = 60
MASKS = ("0x1", "0x3", "0x6", "0xf", "0x5", "0x2")

CONFIG = """\
# pyvswitchd soak: {what}
[daemon]
metrics-address = "none"

[other_config]
dummy-numa = "0,0,0,0"
pmd-cpu-mask = "0x1"
pmd-rxq-assign = "{assign}"
pmd-sleep-max = "0"

[[bridge]]
name = "br0"

  [[bridge.port]]
  name = "sink0"
  type = "dummy-pmd"
{sources}"""
SOURCE = """
  [[bridge.port]]
  name = "{name}"
  type = "traffic-source"
  options = {{ pps = {pps}, flows = 64, macs = 8, n_rxq = {n_rxq}, dst_mac = "{mac}"{extra} }}
"""
SOURCES = ("src0", "src1")


def config_text(
    *, sources: bool, pps: int = 0, variant: int = 0, stop: bool = False, what: str = ""
) -> str:
    """The soak's config files: base (variant 0), the reload variant (1), the stop file."""
    text = ""
    if sources:
        for i, name in enumerate(SOURCES):
            text += SOURCE.format(
                name=name,
                pps=pps,
                n_rxq=1 + (i + variant) % 2,
                mac=SINK_MAC,
                extra=", count = 1" if stop else "",
            )
    assign = "roundrobin" if variant else "cycles"
    return CONFIG.format(what=what, assign=assign, sources=text)


#: Tasks that exist per non-PMD port while the main task waits for packets.
PER_PORT_TASKS = frozenset(("pyvswitchd.datapath.pmd._wake_on",))


class SoakError(Exception):
    """A check failed; the text says which."""


def learn_frame() -> str:
    """A broadcast from the sink's MAC: teaches the bridge where SINK_MAC lives."""
    return (
        f"eth(src={SINK_MAC},dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
        "ipv4(src=10.9.9.9,dst=10.9.9.10,proto=17,tos=0,ttl=64,frag=no),udp(src=9,dst=9)"
    )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SoakError(f"pid {pid}: no VmRSS")


@attrs.define
class Daemon:
    """The pyvswitchd subprocess and one JSON-mode control connection to it."""

    rundir: Path
    proc: subprocess.Popen[bytes]
    client: UnixctlClient
    requests: int = 0

    @classmethod
    def start(cls, rundir: Path, config_path: Path) -> Daemon:
        log = rundir / "pyvswitchd.log"
        stderr = open(rundir / "stderr.txt", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyvswitchd",
                "--config",
                str(config_path),
                "--rundir",
                str(rundir),
                f"--log-file={log}",
                "--syslog-method=null",
            ],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            cwd=Path(__file__).resolve().parents[1],
        )
        stderr.close()
        ctl = rundir / f"pyvswitchd.{proc.pid}.ctl"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SoakError(f"pyvswitchd exited with {proc.returncode} during start-up")
            ready = log.exists() and " ready on " in log.read_text(errors="replace")
            if ready and ctl.exists():
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise SoakError("pyvswitchd did not become ready in 30 s")
            time.sleep(0.05)
        # No client deadline (it would cover the whole soak): each call has its own alarm.
        client = UnixctlClient(str(ctl))
        daemon = cls(rundir, proc, client)
        daemon.call("set-options", "--format", "json")
        return daemon

    @property
    def pid(self) -> int:
        return self.proc.pid

    def call(self, command: str, *args: str) -> Any:
        """Run a command; SoakError on an error reply or a dead daemon."""
        self.requests += 1
        signal.alarm(REQUEST_TIMEOUT)
        try:
            error, result = self.client.transact(command, list(args))
        except Exception as exc:
            raise SoakError(f"{command} {' '.join(args)}: {exc} (daemon {self.status()})") from None
        finally:
            signal.alarm(0)
        if error is not None:
            raise SoakError(f"{command} {' '.join(args)}: {error.strip()}")
        return result

    def status(self) -> str:
        rc = self.proc.poll()
        return "running" if rc is None else f"exited with {rc}"

    def ports(self) -> dict[str, dict[str, Any]]:
        (dp,) = self.call("dpctl/show", "-s")
        return {p["name"]: p for p in dp["ports"]}

    def drops(self) -> int:
        counters = self.call("coverage/show")["counters"]
        return sum(c["total"] for c in counters if c["name"].startswith("datapath_drop_"))

    def tasks(self) -> dict[str, Any]:
        return self.call("tasks/show")  # type: ignore[no-any-return]

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@attrs.define
class Soak:
    """One soak run: its plan, its running totals and its checks."""

    daemon: Daemon
    config_path: Path
    seconds: float
    warmup: float
    period: float
    pps: int
    rss_tolerance_kb: int
    rng: random.Random
    hostile: Hostile | None = None
    churn_sent: int = 0
    churn_sources: int = 0
    reconfigurations: int = 0
    ops: Counter[str] = attrs.field(factory=Counter)
    variant: int = 0
    churn_serial: int = 0
    next_learn: float = 0.0
    rss_samples: list[tuple[float, int]] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)
    _deck: list[str] = attrs.field(factory=list)

    # -- traffic and accounting ----------------------------------------------------

    def learn(self) -> None:
        """(Re-)announce the sink's MAC and wait until the frame went through."""
        before = self.daemon.ports()["sink0"]["stats"]["rx_packets"]
        self.daemon.call("netdev-dummy/receive", "sink0", learn_frame())
        self._wait(
            lambda: self.daemon.ports()["sink0"]["stats"]["rx_packets"] > before, "learn frame"
        )
        self.next_learn = time.monotonic() + RELEARN_SECS

    def balance(self) -> tuple[int, int]:
        """(frames in, frames out or counted as dropped), one dpctl/show snapshot."""
        # Drops first: a drop read now belongs to a frame the later rx counts include.
        drops = self.daemon.drops()
        ports = self.daemon.ports()
        into = self.churn_sent + sum(ports[n]["stats"]["rx_packets"] for n in SOURCES)
        sink = ports["sink0"]["stats"]
        out = sink["tx_packets"] + sink["tx_dropped"] + sink["tx_errors"] + drops
        return into, out

    def check_no_duplicates(self) -> None:
        # In flight between rx and tx is fine; more out than in is not.
        into, out = self.balance()
        if out > into:
            raise SoakError(f"more frames out ({out}) than in ({into})")

    def _wait(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SoakError(f"timed out waiting for {what}")
            time.sleep(0.02)

    # -- the reconfiguration steps ---------------------------------------------------

    def _reconfigured(self, op: str) -> None:
        self.ops[op] += 1
        self.reconfigurations += 1

    def op_cpu_mask(self) -> None:
        self.daemon.call("config/set", f"pmd-cpu-mask={self.rng.choice(MASKS)}")
        self._reconfigured("pmd-cpu-mask")

    def op_idle_ports(self) -> None:
        """Add an idle dummy-pmd port (two when there is none) and delete an older one."""
        idle = [n for n in self.daemon.ports() if n.startswith("idle")]
        added: list[str] = []
        while len(added) < (1 if idle else 2):
            self.churn_serial += 1
            name = f"idle{self.churn_serial % 8}"
            if name in idle or name in added:
                continue
            n_rxq = self.rng.choice((1, 2, 4))
            self.daemon.call("dpctl/add-if", "ovs-netdev", f"{name},type=dummy-pmd,n_rxq={n_rxq}")
            self._reconfigured("add-if")
            added.append(name)
        victim = self.rng.choice(idle) if idle else added[0]
        self.daemon.call("dpctl/del-if", "ovs-netdev", victim)
        self._reconfigured("del-if")

    def op_burst_source(self) -> None:
        """A source that sends BURST_COUNT frames as fast as it is polled, then goes."""
        self.churn_serial += 1
        name = f"burst{self.churn_serial % 4}"
        spec = (
            f"{name},type=traffic-source,count={BURST_COUNT},pps=0,flows=8,"
            f"n_rxq={self.rng.choice((1, 2))},dst_mac={SINK_MAC}"
        )
        self.daemon.call("dpctl/add-if", "ovs-netdev", spec)
        self._reconfigured("add-if")

        def done() -> bool:
            return self.daemon.ports()[name]["stats"]["rx_packets"] >= BURST_COUNT

        self._wait(done, f"{name} to send its {BURST_COUNT} frames")
        sent = self.daemon.ports()[name]["stats"]["rx_packets"]
        if sent != BURST_COUNT:
            raise SoakError(f"{name}: sent {sent} frames, count was {BURST_COUNT}")
        self.daemon.call("dpctl/del-if", "ovs-netdev", name)
        self._reconfigured("del-if")
        self.churn_sent += sent
        self.churn_sources += 1

    def op_offload(self) -> None:
        value = self.rng.choice(("true", "false"))
        self.daemon.call("config/set", f"hw-offload={value}")
        self._reconfigured("hw-offload")

    def op_sleep(self) -> None:
        choice = self.rng.choice(
            (("pmd-sleep-max=0",), ("pmd-sleep-max=50",), ("pmd-sleep-max=", "pmd-maxsleep=20"))
        )
        self.daemon.call("config/set", *choice)
        self._reconfigured("pmd-sleep")

    def op_flush_interval(self) -> None:
        self.daemon.call("config/set", f"tx-flush-interval={self.rng.choice((0, 50))}")
        self._reconfigured("tx-flush-interval")

    def op_stats_clear(self) -> None:
        self.daemon.call("dpif-netdev/pmd-stats-clear")
        self.ops["pmd-stats-clear"] += 1

    def op_rebalance(self) -> None:
        self.daemon.call("dpif-netdev/pmd-rxq-rebalance")
        self._reconfigured("pmd-rxq-rebalance")

    def op_reload(self, variant: int | None = None) -> None:
        self.variant = (1 - self.variant) if variant is None else variant
        self.config_path.write_text(
            config_text(sources=True, pps=self.pps, variant=self.variant, what="running")
        )
        self.daemon.call("config/reload")
        self._reconfigured("config/reload")

    def op_read(self) -> None:
        for command in (
            ("dpctl/show", "-s"),
            ("dpif-netdev/pmd-perf-show",),
            ("dpif-netdev/pmd-rxq-show",),
            ("dpctl/dump-flows", "-m"),
            ("memory/show",),
            ("coverage/show",),
            ("dpif-netdev/pmd-sleep-show",),
        ):
            self.daemon.call(*command)
        self.ops["read-only"] += 1

    def next_op(self) -> Callable[[], None]:
        if not self._deck:
            self._deck = [
                "op_cpu_mask",
                "op_idle_ports",
                "op_burst_source",
                "op_offload",
                "op_sleep",
                "op_flush_interval",
                "op_stats_clear",
                "op_rebalance",
                "op_reload",
                "op_read",
            ]
            self.rng.shuffle(self._deck)
        op: Callable[[], None] = getattr(self, self._deck.pop())
        return op

    # -- the run ---------------------------------------------------------------------

    def sample_rss(self, start: float) -> int:
        kb = rss_kb(self.daemon.pid)
        self.rss_samples.append((time.monotonic() - start, kb))
        return kb

    def snapshot(self) -> dict[str, Any]:
        """Tasks, RSS and memory/show, right after a reload of the base file."""
        with self.hostile.paused() if self.hostile else contextlib.nullcontext():
            self.op_reload(variant=0)
            # Let the PMDs settle after the reload, and the hostile client's
            # connections (tasks too) close.
            self._wait(
                lambda: self.daemon.call("memory/show")["control-connections"] == 1,
                "hostile connections to close",
            )
            time.sleep(0.2)
            return {
                "tasks": self.daemon.tasks(),
                "rss_kb": rss_kb(self.daemon.pid),
                "memory": self.daemon.call("memory/show"),
            }

    def run(self) -> dict[str, Any]:
        d = self.daemon
        start = time.monotonic()
        self.learn()
        self.op_reload(variant=0)  # the sources start sending now
        self._wait(lambda: self.balance()[0] > 0, "traffic to start")
        if self.hostile is not None:
            self.hostile.start()
        before: dict[str, Any] | None = None
        end = start + self.seconds
        while time.monotonic() < end:
            step = time.monotonic()
            if before is None and step - start >= self.warmup:
                before = self.snapshot()
            if step >= self.next_learn:
                self.learn()
            self.next_op()()
            self.check_no_duplicates()
            self.sample_rss(start)
            if d.proc.poll() is not None:
                raise SoakError(f"pyvswitchd {d.status()}")
            time.sleep(max(0.0, self.period - (time.monotonic() - step)))
        if before is None:
            before = self.snapshot()
        soaked = time.monotonic() - start
        if self.hostile is not None:
            self.hostile.stop()
            self.failures.extend(self.hostile.failures)
        after = self.snapshot()
        # Stop the sources (each sends at most one more frame) and let the datapath drain.
        self.config_path.write_text(
            config_text(sources=True, pps=self.pps, stop=True, what="stopping")
        )
        d.call("config/reload")
        settled: list[tuple[int, int]] = []

        def drained() -> bool:
            settled.append(self.balance())
            return len(settled) > 5 and settled[-1] == settled[-5] and settled[-1][0] > 0

        with contextlib.suppress(SoakError):  # a mismatch is reported just below
            self._wait(drained, "traffic to drain", timeout=20)
        into, out = settled[-1]
        if into != out:
            self.failures.append(f"packet accounting: {into} frames in, {out} out or dropped")
        growth = after["rss_kb"] - before["rss_kb"]
        if growth > self.rss_tolerance_kb:
            self.failures.append(
                f"RSS grew {growth} kB after warm-up (tolerance {self.rss_tolerance_kb} kB)"
            )
        diff = Counter(after["tasks"]["by_name"])
        diff.subtract(before["tasks"]["by_name"])
        # The main task waits on each non-PMD port with a task of its own: how
        # many there are follows the ports the soak left, not a leak.
        changed = {k: v for k, v in diff.items() if v and k not in PER_PORT_TASKS}
        if changed:
            self.failures.append(
                f"tasks: {before['tasks']['total']} after warm-up, "
                f"{after['tasks']['total']} at the end ({changed})"
            )
        return {
            "soaked": soaked,
            "before": before,
            "after": after,
            "into": into,
            "out": out,
        }


def slope_kb_per_min(samples: list[tuple[float, int]], after: float) -> float | None:
    """Least-squares RSS trend over the samples taken after ``after`` seconds."""
    pts = [(t, kb) for t, kb in samples if t >= after]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mk = sum(kb for _, kb in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    if not var:
        return None
    return 60 * sum((t - mt) * (kb - mk) for t, kb in pts) / var


def rss_by_minute(samples: list[tuple[float, int]]) -> str:
    """The last RSS sample of each minute (of each 5 s in runs shorter than 2 minutes)."""
    if not samples:
        return "-"
    step = 60.0 if samples[-1][0] >= 120 else 5.0
    last: dict[int, int] = {}
    for t, kb in samples:
        last[int(t // step)] = kb
    return " ".join(str(kb) for _, kb in sorted(last.items()))


def summary(soak: Soak, result: dict[str, Any], rc: int, log: Path) -> str:
    d = soak.daemon
    before, after = result["before"], result["after"]
    slope = slope_kb_per_min(soak.rss_samples, soak.warmup)
    log_text = log.read_text(errors="replace") if log.exists() else ""
    levels = Counter(
        m.group(1) for m in re.finditer(r"^[^|]*\|\d+\|[^|]*\|(\w+)\|", log_text, re.M)
    )
    ops = ", ".join(f"{k} {v}" for k, v in sorted(soak.ops.items()))
    mem_before = " ".join(f"{k}:{v}" for k, v in before["memory"].items())
    mem_after = " ".join(f"{k}:{v}" for k, v in after["memory"].items())
    lines = [
        "pyvswitchd soak summary",
        f"  soaked:             {result['soaked'] / 60:.2f} minutes "
        f"(warm-up {soak.warmup:.0f} s, a step every {soak.period:g} s)",
        f"  requests:           {d.requests} unixctl requests, 0 failed",
        f"  reconfigurations:   {soak.reconfigurations} ({ops})",
        f"  packets accounted:  {result['into']} in = {result['out']} out or dropped "
        f"(incl. {soak.churn_sent} from {soak.churn_sources} short-lived sources)",
        f"  RSS:                {before['rss_kb']} kB after warm-up, {after['rss_kb']} kB at "
        f"the end ({after['rss_kb'] - before['rss_kb']:+d} kB; "
        + (f"trend {slope:+.0f} kB/min" if slope is not None else "no trend")
        + f"; peak sample {max(kb for _, kb in soak.rss_samples)} kB)",
        f"  RSS by minute:      {rss_by_minute(soak.rss_samples)} kB",
        f"  memory/show:        {mem_before}  ->  {mem_after}",
        f"  tasks:              {before['tasks']['total']} after warm-up, "
        f"{after['tasks']['total']} at the end",
        f"  hostile client:     {soak.hostile.summary() if soak.hostile else 'off'}",
        f"  daemon log:         {dict(sorted(levels.items()))}; exit status {rc}",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    parser.add_argument("--short", action="store_true", help="CI mode: about 30 s in all")
    parser.add_argument("--period", type=float, help="seconds between steps (2; short: 0.4)")
    parser.add_argument("--pps", type=int, default=4000, help="frames/s per source (default 4000)")
    parser.add_argument("--seed", type=int, default=1, help="step order seed (default 1)")
    parser.add_argument("--rss-tolerance", type=int, metavar="KIB", help="allowed RSS growth")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument(
        "--hostile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="attack the control socket meanwhile (default: on)",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or (args.period is not None and args.period <= 0) or args.pps <= 0:
        parser.error("--minutes, --period and --pps must be positive")
    return args


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError(f"no reply in {REQUEST_TIMEOUT} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGALRM, _alarm)
    if args.short:
        seconds, warmup, period = 22.0, 6.0, args.period or 0.4
    else:
        seconds = args.minutes * 60
        warmup, period = min(60.0, seconds / 5), args.period or 2.0
    rundir = Path(tempfile.mkdtemp(prefix="pyvswitch-soak-"))
    config_path = rundir / "pyvswitchd.toml"
    config_path.write_text(config_text(sources=False, what="start-up"))
    daemon = Daemon.start(rundir, config_path)
    tolerance = RSS_TOLERANCE_KB if args.rss_tolerance is None else args.rss_tolerance
    soak = Soak(
        daemon,
        config_path,
        seconds,
        warmup,
        period,
        args.pps,
        tolerance,
        random.Random(args.seed),
        Hostile(daemon.client.path, args.seed) if args.hostile else None,
    )
    failed = False
    try:
        result = soak.run()
    except SoakError as exc:
        print(f"soak: FAILED: {exc}", file=sys.stderr)
        failed = True
    if soak.hostile is not None:
        soak.hostile.stop()
    rc = daemon.stop()
    log = rundir / "pyvswitchd.log"
    if not failed:
        if rc != 0:
            soak.failures.append(f"pyvswitchd exited with {rc}")
        print(summary(soak, result, rc, log), end="")
        bad = [lvl for lvl in ("EMER", "ERR") if f"|{lvl}|" in log.read_text(errors="replace")]
        if bad:
            soak.failures.append(f"the daemon logged at level {'/'.join(bad)} (see {log})")
        for failure in soak.failures:
            print(f"soak: FAILED: {failure}", file=sys.stderr)
        failed = bool(soak.failures)
    if failed or args.keep:
        print(f"soak: run directory kept: {rundir}", file=sys.stderr)
    else:
        shutil.rmtree(rundir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
