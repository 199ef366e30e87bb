"""Every command answers JSON-mode clients; the documented ones with structure."""

from __future__ import annotations

import re
from pathlib import Path

from pyappctl.client import UnixctlClient

from .test_datapath_golden import CAPTURE_CONFIG

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"

# Arguments that make each command meaningful on the capture's port set.
ARGS = {
    "coverage/read-counter": ["unixctl_received"],
    "fdb/show": ["br0"],
    "dpctl/get-flow": None,  # needs a ufid: checked separately
}
SKIP = {"exit", "config/reload", "vlog/reopen", "vlog/close", "dpif-netdev/pmd-rxq-rebalance"}


def documented() -> set[str]:
    return {m.split()[0] for m in re.findall(r"^### `([^`]+)`", DOC.read_text(), re.M)}


def test_every_command_replies_in_json(start_daemon) -> None:  # type: ignore[no-untyped-def]
    d = start_daemon(CAPTURE_CONFIG.format(extra="hw-offload = true"))
    structured = documented()
    with UnixctlClient(d.ctl_path, timeout=30) as c:
        error, commands = c.transact("list-commands")
        names = [line.split()[0] for line in commands.splitlines()[1:]]
        assert c.transact("set-options", ["--format", "json"])[0] is None
        for name in names:
            if name in SKIP or ARGS.get(name, []) is None:
                continue
            error, result = c.transact(name, ARGS.get(name, []))
            if error is not None:
                # Commands that need arguments answer with their usage error.
                assert "requires at least" in error, (name, error)
                continue
            if name in structured:
                assert not (isinstance(result, dict) and result.get("reply-format") == "plain"), (
                    name
                )
            else:
                assert isinstance(result, dict) and result["reply-format"] == "plain", name
    # Every documented command exists.
    assert structured <= set(names) | {"dpif-netdev/pmd-stats-show", "dpif/offload/classes"}
