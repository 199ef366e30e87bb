"""Shell completion scripts (etc/completion): command names from list-commands."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASH_SCRIPT = ROOT / "etc" / "completion" / "pyappctl.bash"
ZSH_SCRIPT = ROOT / "etc" / "completion" / "_pyappctl"
BASH = shutil.which("bash")

LIST_COMMANDS = """\
The available commands are:
  coverage/show
  dpif-netdev/pmd-perf-show [-nh] [-it iter-history-len] [-ms ms-history-len] [-pmd core] [dp]
  dpif-netdev/pmd-rxq-show [-pmd core] [dp]
  vlog/list
  vlog/set                 {spec | PATTERN:destination:pattern}
"""


def complete(tmp_path: Path, *words: str) -> tuple[list[str], str]:
    """COMPREPLY for a command line whose last word is being completed; the args seen."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "pyappctl"
    (tmp_path / "list.txt").write_text(LIST_COMMANDS)
    fake.write_text(f'#!/bin/sh\necho "$*" > {tmp_path}/args\ncat {tmp_path}/list.txt\n')
    fake.chmod(0o755)
    script = (
        f"source {BASH_SCRIPT}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in ('pyappctl', *words))})\n"
        f"COMP_CWORD={len(words)}\n"
        "_pyappctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    assert BASH is not None
    r = subprocess.run([BASH, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "args").read_text().strip() if (tmp_path / "args").exists() else ""
    return [line for line in r.stdout.splitlines() if line], args


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_command_names_from_the_daemon(tmp_path: Path) -> None:
    got, args = complete(tmp_path, "vlog/")
    assert got == ["vlog/list", "vlog/set"]
    assert args == "-T 2 list-commands"
    got, args = complete(tmp_path, "-t", "ovs-vswitchd", "dpif-netdev/pmd-")
    assert got == ["dpif-netdev/pmd-perf-show", "dpif-netdev/pmd-rxq-show"]
    assert args == "-t ovs-vswitchd -T 2 list-commands"  # the line's own target
    got, _ = complete(tmp_path, "t")
    assert got == ["top"]  # pyappctl's own command


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completes_options_and_leaves_arguments_to_files(tmp_path: Path) -> None:
    got, _ = complete(tmp_path, "--f")
    assert got == ["--format"]
    got, _ = complete(tmp_path, "-f", "j")
    assert got == ["json"]
    (tmp_path / "capture.pcap").write_text("")
    got, args = complete(tmp_path, "netdev-dummy/receive", "capt")
    assert got == ["capture.pcap"] and args == ""  # no daemon asked for arguments


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses() -> None:
    r = subprocess.run(["zsh", "-n", str(ZSH_SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


ZSH_DRIVER = """\
zmodload zsh/zpty
zpty z 'PATH={bindir}:$PATH zsh -f -i'
zpty -w z 'PS1="> "; fpath=({fndir} $fpath); autoload -U compinit; compinit -u -D'
zpty -w -n z $'pyappctl -t foo vlog/\\t\\t'
sleep 2
all=""
while zpty -r -t z chunk; do all+=$chunk; done
print -r -- "$all"
zpty -d z
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_command_names_from_the_daemon(tmp_path: Path) -> None:
    """An interactive zsh (on a zpty) with compinit lists the daemon's names."""
    complete(tmp_path, "x")  # writes the stand-in pyappctl into tmp_path/bin
    (tmp_path / "args").unlink()
    fndir = tmp_path / "fn"
    fndir.mkdir()
    (fndir / "_pyappctl").write_text(ZSH_SCRIPT.read_text())
    driver = ZSH_DRIVER.format(bindir=tmp_path / "bin", fndir=fndir)
    r = subprocess.run(
        ["zsh", "-f", "-c", driver], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert "vlog/list" in r.stdout and "vlog/set" in r.stdout, r.stdout[-2000:]
    assert "coverage/show" not in r.stdout.split("vlog/", 1)[1]
    assert (tmp_path / "args").read_text().strip() == "-t foo -T 2 list-commands"
