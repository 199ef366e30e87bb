"""Checking pyvswitchd the way OVS's own test suite checks ovs-vswitchd.

The scenarios of tests/pmd.at, tests/alb.at and tests/dpif-netdev.at (OVS
main) read command output through sed, grep and awk before comparing it
with their expected text, and wait for log lines.  :func:`sh` runs such a
filter with the real tools; :class:`LogWatch` waits for a line the way
``OVS_WAIT_UNTIL([tail -n +$LINENUM ovs-vswitchd.log | grep ...])`` does.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

# Filters of pmd.at and dpif-netdev.at, in their shell form.
SED_NUMA_CORE_PATTERN = r"sed 's/\(numa_id \)[0-9]*\( core_id \)[0-9]*:/\1<cleared>\2<cleared>:/'"
PARSE_PMD_RXQ_SHOW = (
    "awk '/pmd thread/ {numa=$4; core=substr($6, 1, length($6) - 1)} "
    "/^  port:/ {print  $2, $4, numa, core}' | sort"
)
FLOW_DUMP_PREPEND_PMD = (
    "awk '/flow-dump from the main/ {pmd_id=-1; next} "
    "/flow-dump from pmd/ {pmd_id=$7; next} {print pmd_id, $0}' | sort"
)
FILTER_FLOW_DUMP = (
    r"grep 'flow_dump ' | sed 's/.*flow_dump //; s/used:[0-9\.][0-9\.]*/used:0.0/' | sort | uniq"
)
STRIP_XOUT = (
    r"sed 's/mega_ufid:[-0-9a-f]* //; s/ufid:[-0-9a-f]* //; s/used:[0-9\.][0-9\.]*/used:0.0/; "
    r"s/actions:.*/actions: <del>/; s/packets:[0-9]*/packets:0/; s/bytes:[0-9]*/bytes:0/' | sort"
)
STRIP_TIMERS = r"sed 's/duration:[0-9\.][0-9\.]*/duration:0.0/; s/used:[0-9\.][0-9\.]*/used:0.0/'"


def sh(text: str, pipeline: str) -> str:
    """``text`` through a shell pipeline (sed, grep, awk as the .at files use them)."""
    result = subprocess.run(
        ["sh", "-c", pipeline], input=text, capture_output=True, text=True, check=False
    )
    return result.stdout


class LogWatch:
    """Waits for log lines written after a mark (OVS's get_log_next_line_num)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = 0

    def lines(self) -> list[str]:
        try:
            return self.path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def mark(self) -> None:
        """Later waits look only at lines written from now on."""
        self.start = len(self.lines())

    def wait(self, text: str, timeout: float = 15.0) -> str:
        """The first line since the mark that contains ``text``."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines()[self.start :]:
                if text in line:
                    return line
            if time.monotonic() > deadline:
                tail = "\n".join(self.lines()[self.start :][-30:])
                raise AssertionError(
                    f"no log line with {text!r} since the mark; last lines:\n{tail}"
                )
            time.sleep(0.05)
