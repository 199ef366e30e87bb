"""bash completion of pyappctl command names, asking the real daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_the_daemons_command_names(daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "pyappctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m pyappctl "$@"\n')
    wrapper.chmod(0o755)
    script = (
        f"source {ROOT / 'etc' / 'completion' / 'pyappctl.bash'}\n"
        f"COMP_WORDS=(pyappctl -t {daemon.ctl_path} dpif-netdev/pmd-r)\n"
        "COMP_CWORD=3\n"
        "_pyappctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    assert BASH is not None
    r = subprocess.run([BASH, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    got = r.stdout.split()
    assert "dpif-netdev/pmd-rxq-show" in got and "dpif-netdev/pmd-rxq-rebalance" in got, got
    assert all(word.startswith("dpif-netdev/pmd-r") for word in got), got
