"""A real ovsdb-server with the Open_vSwitch schema, in a test's private directory.

The tests drive it with the real ``ovs-vsctl``, as an operator would.
The tools come with Debian's openvswitch-switch package (ovsdb-server,
ovsdb-tool, ovs-vsctl and the schema); tests are skipped, saying so, when
they are not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SCHEMA_PATHS = (
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
)
OVSDB_SERVER = shutil.which("ovsdb-server") or (
    "/usr/sbin/ovsdb-server" if os.path.exists("/usr/sbin/ovsdb-server") else None
)
OVSDB_TOOL = shutil.which("ovsdb-tool")
OVS_VSCTL = shutil.which("ovs-vsctl")
SCHEMA = next((p for p in SCHEMA_PATHS if os.path.exists(p)), None)

SKIP = (
    None
    if OVSDB_SERVER and OVSDB_TOOL and OVS_VSCTL and SCHEMA
    else "ovsdb-server, ovsdb-tool, ovs-vsctl or vswitch.ovsschema missing "
    "(apt-get install openvswitch-switch)"
)


class OvsdbServer:
    """ovsdb-server on ``DIR/conf.db``, listening on ``DIR/db.sock``."""

    def __init__(self, directory: Path, *server_args: str) -> None:
        """``server_args``: more ovsdb-server options (``--remote=ptcp:...``, SSL files)."""
        assert SKIP is None, SKIP
        self.server_args = server_args
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "conf.db"
        self.sock = self.dir / "db.sock"
        self.remote = f"unix:{self.sock}"
        self.log = self.dir / "ovsdb-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run([OVSDB_TOOL, "create", str(self.db), SCHEMA], check=True)  # type: ignore[list-item]
        self.start()
        self.vsctl("--no-wait", "init")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                OVSDB_SERVER,  # type: ignore[list-item]
                str(self.db),
                f"--remote=punix:{self.sock}",
                f"--unixctl={self.dir / 'ovsdb-server.ctl'}",
                f"--log-file={self.log}",
                "--no-chdir",
                *self.server_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, "ovsdb-server did not create its socket"
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None
        self.sock.unlink(missing_ok=True)  # SIGKILL leaves it behind

    def vsctl(self, *args: str, timeout: int = 20) -> str:
        """Run ovs-vsctl against this server; its output (an error fails the test)."""
        done = subprocess.run(
            [OVS_VSCTL, f"--db={self.remote}", f"--timeout={timeout}", *args],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            timeout=timeout + 5,
        )
        assert done.returncode == 0, f"ovs-vsctl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def transact_offline(self, operations: str) -> str:
        """Change the database file while the server is stopped (``ovsdb-tool transact``)."""
        assert self.proc is None
        done = subprocess.run(
            [OVSDB_TOOL, "transact", str(self.db), operations],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout
