"""The daemon's log file read as OVS's tests read ovs-vswitchd.log.

OVS's tests/pmd.at, alb.at and dpif-netdev.at note the log's next line
number (``get_log_next_line_num``), change something, then wait until a
line from there on matches (``OVS_WAIT_UNTIL([tail -n +$LINENUM
ovs-vswitchd.log | grep ...])``) and cut it out with sed.  :class:`OvsLog`
does the same on a :class:`~tests.e2e.conftest.DaemonProcess`'s log file,
and its ``check_*`` methods are those .at files' macros
(``CHECK_PMD_THREADS_CREATED``, ``CHECK_ALB_PARAM``, ...), so the tests
keep the patterns and expected texts of the scenarios they redo.

:func:`ovs_config` writes the configuration ``OVS_VSWITCHD_START`` makes:
bridge br0, the ports given, ``--dummy-numa`` as ``dummy-numa``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .conftest import DaemonProcess

#: How long a wait for a log line lasts (OVS_WAIT_UNTIL's default is 10 s).
WAIT = 10.0


def ovs_config(ports: str = "", *, numa: str | None = None, other: str = "") -> str:
    """The configuration of ``OVS_VSWITCHD_START``: ``ports`` are ``[[bridge.port]]`` tables."""
    numa_line = f'dummy-numa = "{numa}"\n' if numa else ""
    return (
        '[daemon]\nmetrics-address = "none"\n\n'
        f"[other_config]\n{numa_line}{other}\n"
        f'[[bridge]]\nname = "br0"\n{ports}'
    )


def port(name: str, type_: str = "dummy-pmd", options: str = "", other_config: str = "") -> str:
    """One ``[[bridge.port]]`` table; ``options``/``other_config`` are inline-table bodies."""
    text = f'  [[bridge.port]]\n  name = "{name}"\n  type = "{type_}"\n'
    if options:
        text += f"  options = {{ {options} }}\n"
    if other_config:
        text += f"  other_config = {{ {other_config} }}\n"
    return text


def port_no(d: DaemonProcess, name: str) -> int:
    """The datapath port number of port ``name`` (from ``dpctl/show``).

    OVS's dummy datapath numbers ports after the digits in their names, so
    its expected texts say ``in_port(1)`` for p1 (or for p0, which cannot be
    port 0); the tests put the number this datapath chose in their place.
    """
    out = d.call("dpctl/show")
    found = re.search(rf"^  port ([0-9]+): {re.escape(name)} ", out, re.MULTILINE)
    assert found is not None, out
    return int(found[1])


def renumber(text: str, port: int) -> str:
    """``text`` with ``in_port(1)`` naming datapath port ``port`` instead."""
    return text.replace("in_port(1)", f"in_port({port})")


class OvsLog:
    """A log file, read whole at every call (it is small), lines numbered from 1."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self, start: int = 1) -> list[str]:
        """The lines from line ``start`` on (``tail -n +START``)."""
        return self.path.read_text(errors="replace").splitlines()[start - 1 :]

    def next_line_num(self) -> int:
        """``get_log_next_line_num``: the number the next line written will have."""
        return len(self.lines()) + 1

    def grep(self, pattern: str, start: int = 1) -> list[str]:
        """Lines from ``start`` on that match the regular expression ``pattern``."""
        regex = re.compile(pattern)
        return [line for line in self.lines(start) if regex.search(line)]

    def wait_grep(self, pattern: str, start: int = 1, timeout: float = WAIT) -> list[str]:
        """``OVS_WAIT_UNTIL([tail -n +START log | grep PATTERN])``: the matching lines."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.grep(pattern, start)
            if found:
                return found
            if time.monotonic() > deadline:
                tail = "\n".join(self.lines(start)[-40:])
                raise AssertionError(f"no log line matches {pattern!r} from line {start}:\n{tail}")
            time.sleep(0.05)

    def wait_count(self, pattern: str, n: int, timeout: float = WAIT) -> list[str]:
        """``OVS_WAIT_UNTIL([test `grep -c PATTERN log` -ge N])``: the matching lines."""
        deadline = time.monotonic() + timeout
        while len(found := self.grep(pattern)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} log lines match {pattern!r}, not {n}")
            time.sleep(0.05)
        return found

    def after(self, pattern: str, start: int = 1) -> list[str]:
        """The line after each match (``grep -A 1 PATTERN | tail`` takes the last)."""
        lines = self.lines(start)
        regex = re.compile(pattern)
        return [lines[i + 1] for i, line in enumerate(lines[:-1]) if regex.search(line)]

    def flow_installs(self) -> list[str]:
        """``filter_flow_install | strip_xout`` of dpif-netdev.at, actions kept or not."""
        found = sorted({line.split("flow_add: ", 1)[1] for line in self.grep("flow_add")})
        return sorted(strip_xout(line) for line in found)

    # -- the .at files' macros ---------------------------------------------------

    def check_cpu_discovered(self, n_cpu: int = 1) -> int:
        """``CHECK_CPU_DISCOVERED``: the number of cores discovered, at least ``n_cpu``."""
        line = self.wait_grep("Discovered [0-9]* NUMA nodes and [0-9]* CPU cores")[-1]
        found = int(re.sub(r".* ([0-9]*) CPU cores", r"\1", line))
        assert found >= n_cpu
        return found

    def check_pmd_threads_created(
        self, n: int | None = None, numa: str = "", start: int = 1
    ) -> None:
        """``CHECK_PMD_THREADS_CREATED([n], [numa], [+start])``."""
        pattern = f"There are [0-9]* pmd threads on numa node {numa}"
        last = self.wait_grep(pattern, start)[-1]
        count = int(re.sub(r".* ([0-9]*) pmd .*", r"\1", last))
        assert count > 0 if n is None else count == n, last

    def check_dp_sleep_max(self, max_sleep: int, start: int = 1) -> None:
        """``CHECK_DP_SLEEP_MAX`` of pmd.at."""
        self.wait_grep(f"Default PMD thread max sleep: *{max_sleep} us.", start)

    def check_pmd_sleep_max(self, numa: int, core: int, max_sleep: int, start: int = 1) -> None:
        """``CHECK_PMD_SLEEP_MAX`` of pmd.at (its arguments: numa, core, sleep)."""
        self.wait_grep(
            f"PMD thread on numa_id: *{numa}, core id: *{core}, max sleep: *{max_sleep} us.",
            start,
        )

    def check_alb_param(self, param: str, value: str, start: int = 1) -> None:
        """``CHECK_ALB_PARAM`` of alb.at: the last such line from ``start`` says ``value``."""
        self.wait_grep(f"PMD auto load balance {param} set to", start)
        said = [
            m[1]
            for line in self.lines(start)
            if (m := re.search(f"(PMD auto load balance {param} set to.*)", line))
        ]
        assert said[-1] == f"PMD auto load balance {param} set to {value}"


def strip_xout(line: str) -> str:
    """dpif-netdev.at's ``strip_xout``: ufids and stats out, actions as ``<del>``."""
    line = re.sub(r"mega_ufid:[-0-9a-f]* ", "", line, count=1)
    line = re.sub(r"ufid:[-0-9a-f]* ", "", line, count=1)
    line = re.sub(r"used:[0-9.][0-9.]*", "used:0.0", line, count=1)
    line = re.sub(r"actions:.*", "actions: <del>", line, count=1)
    line = re.sub(r"packets:[0-9]*", "packets:0", line, count=1)
    return re.sub(r"bytes:[0-9]*", "bytes:0", line, count=1)
