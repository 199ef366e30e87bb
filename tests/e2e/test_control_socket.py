"""The control socket as clients see it: pyappctl, real ovs-appctl, python-ovs."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys

import pytest

from pyvswitchd import __version__

VERSION = f"pyvswitchd (pyvswitch) {__version__}\n"
UNKNOWN = (
    '"no-such-command" is not a valid command (use "list-commands" to see a list of '
    "valid commands)\n"
)


def raw_exchange(path: str, data: bytes, *, read: bool = True, timeout: float = 5) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
                if chunk.endswith(b"}") and data.count(b'"method"') <= b"".join(chunks).count(
                    b'"id"'
                ):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_pidfile_socket_and_mode(daemon) -> None:  # type: ignore[no-untyped-def]
    pidfile = daemon.rundir / "pyvswitchd.pid"
    assert pidfile.read_text().strip() == str(daemon.pid)
    mode = stat.S_IMODE(os.stat(daemon.ctl_path).st_mode)
    assert stat.S_ISSOCK(os.stat(daemon.ctl_path).st_mode) and mode == 0o770


def test_pyappctl_basics(daemon) -> None:  # type: ignore[no-untyped-def]
    r = daemon.appctl("version")
    assert (r.returncode, r.stdout, r.stderr) == (0, VERSION, "")
    r = daemon.appctl("no-such-command")
    assert r.returncode == 2
    assert r.stderr == UNKNOWN + f"pyappctl: {daemon.ctl_path}: server returned an error\n"
    r = daemon.appctl("list-commands")
    assert r.stdout.startswith("The available commands are:\n")
    for row in (
        "  coverage/read-counter   COUNTER\n",
        "  exit                    [--cleanup]\n",
        "  version                 \n",
        "  vlog/set                ",
    ):
        assert row in r.stdout


def test_pyappctl_by_program_name(daemon) -> None:  # type: ignore[no-untyped-def]
    r = subprocess.run(
        [sys.executable, "-m", "pyappctl", "version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYVSWITCH_RUNDIR": str(daemon.rundir)},
    )
    assert (r.returncode, r.stdout) == (0, VERSION)


def test_real_ovs_appctl(daemon) -> None:  # type: ignore[no-untyped-def]
    r = daemon.ovs_appctl("version")
    assert (r.returncode, r.stdout, r.stderr) == (0, VERSION, "")
    r = daemon.ovs_appctl("list-commands")
    assert r.returncode == 0 and "  coverage/show           \n" in r.stdout
    r = daemon.ovs_appctl("no-such-command")
    assert r.returncode == 2
    assert r.stderr == UNKNOWN + f"ovs-appctl: {daemon.ctl_path}: server returned an error\n"
    r = daemon.ovs_appctl("version", "extra")
    assert r.returncode == 2
    assert r.stderr.startswith('"version" command takes at most 0 arguments\n')
    r = daemon.ovs_appctl("coverage/read-counter")
    assert r.stderr.startswith('"coverage/read-counter" command requires at least 1 arguments\n')
    r = daemon.ovs_appctl("coverage/read-counter", "no_such_counter")
    assert (r.returncode, r.stderr.splitlines()[0]) == (2, "No such counter")
    # Program-name target: pidfile lock check + <rundir>/pyvswitchd.<pid>.ctl, as OVS does.
    r = daemon.ovs_appctl("version", target="pyvswitchd", env={"OVS_RUNDIR": str(daemon.rundir)})
    assert (r.returncode, r.stdout) == (0, VERSION)


def test_python_ovs_unixctl_client(daemon) -> None:  # type: ignore[no-untyped-def]
    client_mod = pytest.importorskip("ovs.unixctl.client")
    err, client = client_mod.UnixctlClient.create(daemon.ctl_path)
    assert err == 0
    try:
        assert client.transact("version", []) == (0, None, VERSION)
        assert client.transact("coverage/read-counter", ["nope"]) == (0, "No such counter\n", None)
        code, error, result = client.transact("coverage/read-counter", ["unixctl_received"])
        assert code == 0 and error is None and int(result) >= 2
        assert (
            client.transact("version", ["x"])[1] == '"version" command takes at most 0 arguments\n'
        )
    finally:
        client.close()


def test_wire_bytes_match_ovs(daemon) -> None:  # type: ignore[no-untyped-def]
    out = raw_exchange(daemon.ctl_path, b'{"id":0,"method":"coverage/read-counter","params":["x"]}')
    assert out == b'{"id":0,"error":"No such counter\\n"}'
    out = raw_exchange(
        daemon.ctl_path,
        b'{"id":7,"method":"version","params":[]}{"id":"abc","method":"version","params":[]}\n',
    )
    v = json.dumps(VERSION)[1:-1].encode()
    assert out == (
        b'{"id":7,"result":"' + v + b'","error":null}'
        b'{"id":"abc","result":"' + v + b'","error":null}'
    )
    out = raw_exchange(daemon.ctl_path, b'{"id":1,"method":"coverage/read-counter","params":[5]}')
    assert (
        out == b'{"id":1,"error":"\\"coverage/read-counter\\" command has non-string argument\\n"}'
    )


def test_json_output_mode(daemon) -> None:  # type: ignore[no-untyped-def]
    r = daemon.appctl("-f", "json", "list-commands")
    data = json.loads(r.stdout)
    assert data["version"] == "" and data["coverage/read-counter"] == "COUNTER"
    r = daemon.appctl("-f", "json", "version")
    # OVS adds the trailing newline only to plain string results, not inside the wrapper.
    assert json.loads(r.stdout) == {"reply": VERSION.rstrip("\n"), "reply-format": "plain"}
    r = daemon.appctl("-f", "json", "--pretty", "coverage/read-counter", "unixctl_received")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["name"] == "unixctl_received" and data["total"] >= 2


@pytest.mark.parametrize(
    ("payload", "warning"),
    [
        (b"this is not json", "error parsing stream"),
        (
            b'{"jsonrpc":"2.0","id":1,"method":"version","params":[]}',
            'received bad JSON-RPC message: message has unexpected member "jsonrpc"',
        ),
        (b'{"id":1,"method":"version"}', 'request must have "params"'),
        (b'{"method":"version","params":[]}', "received unexpected notification message"),
        (b'{"id":1,"result":"x","error":null}', "received unexpected reply message"),
        (b'{"id":1,"method":"\xff\xfe","params":[]}', "invalid UTF-8"),
        (b"[1,2,3]", "message is not a JSON object"),
    ],
)
def test_malformed_input_closes_without_reply_and_warns(daemon, payload, warning) -> None:  # type: ignore[no-untyped-def]
    assert raw_exchange(daemon.ctl_path, payload) == b""
    assert daemon.call("version") == VERSION
    log = daemon.log_path.read_text()
    assert re.search(r"\|(jsonrpc|unixctl)\|WARN\|unix#\d+: .*" + re.escape(warning), log), log


def test_file_log_uses_ovs_line_format(daemon) -> None:  # type: ignore[no-untyped-def]
    daemon.call("version")
    lines = daemon.log_path.read_text().splitlines()
    pattern = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\|\d{5}\|[a-z_]+\|(INFO|DBG|WARN|ERR|EMER)\|"
    )
    assert any(pattern.match(line) for line in lines)
    assert any("|unixctl|DBG|received request version[], id=0" in line for line in lines)


def test_socket_path_longer_than_sun_path(start_daemon, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The daemon used to exit at start with "OSError: AF_UNIX path too long".
    from .conftest import TEST_CONFIG

    rundir = tmp_path / ("r" * 120)
    rundir.mkdir()
    d = start_daemon(TEST_CONFIG, rundir=rundir, unixctl="pyvswitchd.ctl")
    assert len(os.fsencode(d.ctl_path)) > 107
    assert stat.S_ISSOCK(os.stat(d.ctl_path).st_mode)
    assert stat.S_IMODE(os.stat(d.ctl_path).st_mode) == 0o770
    r = d.appctl("version")
    assert (r.returncode, r.stdout, r.stderr) == (0, VERSION, "")
    r = d.ovs_appctl("version")  # OVS's own client reaches it the same way
    assert (r.returncode, r.stdout) == (0, VERSION)
    # A daemon killed without cleaning up leaves its socket: the next one
    # probes it (through the same alias), finds it dead and replaces it.
    d.stop(signal.SIGKILL)
    assert os.path.exists(d.ctl_path)
    again = start_daemon(TEST_CONFIG, rundir=rundir, unixctl="pyvswitchd.ctl")
    assert again.call("version") == VERSION
    assert again.stop() == 0
    assert not os.path.exists(again.ctl_path)
