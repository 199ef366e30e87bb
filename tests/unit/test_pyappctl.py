"""pyappctl against a scripted fake unixctl server (and, where cheap, ovs-appctl).

The fake server runs in a thread of the test process and answers each
request with a scripted list of actions (bytes to send, pauses, close,
hang), so framing edge cases can be produced exactly.  Tests that need a
pidfile lock held by *another* process (F_GETLK never reports the caller's
own locks) run pyappctl in a subprocess or use a lock-holding child.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pyappctl.cli import dump_json, main
from pyappctl.client import (
    ClientError,
    TargetError,
    UnixctlClient,
    default_rundir,
    read_pidfile,
    resolve_target,
)
from pyvswitchd import __version__
from pyvswitchd.control.protocol import ServerConnection

REPO = Path(__file__).resolve().parents[2]
OVS_APPCTL = "/usr/bin/ovs-appctl"
TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"

CLOSE = object()  # action: close the connection
HANG = object()  # action: read on without ever replying


def ok(request_id: Any, result: Any) -> bytes:
    return json.dumps({"id": request_id, "result": result, "error": None}).encode()


def err(request_id: Any, error: Any) -> bytes:
    return json.dumps({"id": request_id, "error": error}).encode()


Action = bytes | float | object
Script = Callable[[Any, str, list[Any]], Sequence[Action]]


def default_script(request_id: Any, method: str, params: list[Any]) -> Sequence[Action]:
    replies: dict[str, Sequence[Action]] = {
        "version": [ok(request_id, "pyfake 1.0\n")],
        "noeol": [ok(request_id, "no newline")],
        "empty": [ok(request_id, "")],
        "fail": [err(request_id, "fake failure\n")],
        "fail-noeol": [err(request_id, "fake failure without newline")],
        "close": [CLOSE],
        "hang": [HANG],
        "set-options": [ok(request_id, "")],
    }
    if method == "echo":
        return [ok(request_id, json.dumps(params) + "\n")]
    return replies.get(method, [err(request_id, f'"{method}" is not a valid command\n')])


class FakeServer:
    """A unixctl server in a thread, serving one connection at a time."""

    def __init__(self, path: Path, script: Script = default_script) -> None:
        self.path = path
        self.script = script
        self.requests: list[tuple[Any, str, list[Any]]] = []
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.05)
                with contextlib.suppress(OSError):
                    self._handle(conn)

    def _recv(self, conn: socket.socket) -> bytes | None:
        """Data from the client, b"" on EOF, None when the server is stopping."""
        while not self._stop.is_set():
            try:
                return conn.recv(65536)
            except TimeoutError:
                continue
        return None

    def _handle(self, conn: socket.socket) -> None:
        wire = ServerConnection()
        while True:
            request = wire.next_request()
            if request is None:
                data = self._recv(conn)
                if not data:
                    return
                wire.receive_data(data)
                continue
            self.requests.append((request.id, request.method, request.params))
            for action in self.script(request.id, request.method, request.params):
                if action is CLOSE:
                    return
                if action is HANG:
                    while self._recv(conn):
                        pass
                    return
                if isinstance(action, float):
                    time.sleep(action)
                else:
                    assert isinstance(action, bytes)
                    conn.sendall(action)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "fake.ctl"


@pytest.fixture
def server(sock_path: Path) -> Iterator[FakeServer]:
    with FakeServer(sock_path) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OVS_CTL_TIMEOUT", raising=False)
    monkeypatch.delenv("OVS_RUNDIR", raising=False)
    monkeypatch.setenv("PYVSWITCH_RUNDIR", str(tmp_path))


def run_main(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, error = capsysbinary.readouterr()
    return rc, out.decode(), error.decode()


def run_cmd(
    argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("OVS_CTL_TIMEOUT", None)
    return subprocess.run(
        list(argv), capture_output=True, text=True, env=full_env, cwd=REPO, timeout=timeout
    )


PYAPPCTL = [sys.executable, "-m", "pyappctl"]


# ---------------------------------------------------------------------------
# Replies and exit codes


def test_success_output_verbatim(capsysbinary: Any, server: FakeServer) -> None:
    assert run_main(capsysbinary, "-t", str(server.path), "version") == (0, "pyfake 1.0\n", "")
    # Text mode adds nothing, as ovs-appctl 3.1 (fputs).
    assert run_main(capsysbinary, "-t", str(server.path), "noeol") == (0, "no newline", "")
    assert run_main(capsysbinary, "-t", str(server.path), "empty") == (0, "", "")
    assert [r[1:] for r in server.requests] == [("version", []), ("noeol", []), ("empty", [])]
    assert {r[0] for r in server.requests} == {0}


def test_server_error_exit_2(capsysbinary: Any, server: FakeServer) -> None:
    target = str(server.path)
    rc, out, error = run_main(capsysbinary, "-t", target, "fail")
    assert (rc, out) == (2, "")
    assert error == f"fake failure\npyappctl: {target}: server returned an error\n"
    rc, _, error = run_main(capsysbinary, "--target", target, "fail-noeol")
    assert rc == 2
    assert error == f"fake failure without newlinepyappctl: {target}: server returned an error\n"


def test_arguments_after_command_are_passed_through(capsysbinary: Any, server: FakeServer) -> None:
    argv = ["-t", str(server.path), "echo", "-pmd", "1", "--timeout=3", "a b", 'c"d', ""]
    rc, out, _ = run_main(capsysbinary, *argv)
    assert rc == 0
    assert json.loads(out) == ["-pmd", "1", "--timeout=3", "a b", 'c"d', ""]
    rc, out, _ = run_main(capsysbinary, "-t", str(server.path), "--", "echo", "--", "-x")
    assert (rc, json.loads(out)) == (0, ["--", "-x"])


@pytest.mark.parametrize(
    "argv",
    [
        ["-T", "5"],
        ["-T5"],
        ["--timeout=5"],
        ["--timeout", "5"],
        ["--time=5"],  # getopt accepts unambiguous prefixes
        ["-e"],
        ["-f", "TEXT"],
    ],
)
def test_option_forms(capsysbinary: Any, server: FakeServer, argv: list[str]) -> None:
    assert run_main(capsysbinary, *argv, "--ta", str(server.path), "version") == (
        0,
        "pyfake 1.0\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "at least one non-option argument is required (use --help for help)"),
        (["-t", "/x"], "at least one non-option argument is required (use --help for help)"),
        (["--bogus", "version"], "unrecognized option '--bogus'"),
        (["-x", "version"], "invalid option -- 'x'"),
        (["-pmd", "1"], "invalid option -- 'p'"),
        (["-t"], "option requires an argument -- 't'"),
        (["--target"], "option '--target' requires an argument"),
        (["--help=yes"], "option '--help' doesn't allow an argument"),
        (["-f", "xml", "version"], "value xml on -f or --format is invalid"),
        (["-f", "xml", "-f", "json", "version"], "value xml on -f or --format is invalid"),
        (["-T", "0", "version"], "value 0 on -T or --timeout is invalid"),
        (["--timeout=1.5", "version"], "value 1.5 on -T or --timeout is invalid"),
        (["-T", "x", "version"], "value x on -T or --timeout is invalid"),
        (["-t", "a", "-t", "b", "version"], "-t or --target may be specified only once"),
        (["-e", "-e", "version"], "-e or --execute may be specified only once"),
        (["--pretty", "version"], "--pretty is supported with --format json only"),
        (["-f", "text", "--pretty", "version"], "--pretty is supported with --format json only"),
    ],
)
def test_usage_errors(capsysbinary: Any, argv: list[str], message: str) -> None:
    assert run_main(capsysbinary, *argv) == (1, "", f"pyappctl: {message}\n")


def test_help_and_version(capsysbinary: Any) -> None:
    rc, out, error = run_main(capsysbinary, "--help")
    assert (rc, error) == (0, "")
    assert out.startswith("pyappctl, ")
    assert out.endswith("\n")
    for needle in ("-t, --target", "-T, --timeout", "-f, --format", "--pretty", "142"):
        assert needle in out
    # -h acts where it appears: a bad option value after it is never looked at.
    assert run_main(capsysbinary, "-h", "-f", "bogus") == (0, out, "")
    assert run_main(capsysbinary, "-f", "bogus", "-h")[0] == 1
    assert run_main(capsysbinary, "-V") == (0, f"pyappctl (pyvswitch) {__version__}\n", "")
    assert run_main(capsysbinary, "--vers") == (0, f"pyappctl (pyvswitch) {__version__}\n", "")


# ---------------------------------------------------------------------------
# Target resolution


def lock_pidfile(path: Path, pid: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, f"{pid}\n".encode())
    return fd


_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.write(fd, (sys.argv[2] or str(os.getpid())).encode() + b"\\n")
print(os.getpid(), flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_holder(path: Path, content: str = "") -> Iterator[int]:
    """A child process locking ``path``; writes ``content`` or its own pid."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), content],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        yield int(child.stdout.readline())
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()


def test_target_by_name_with_locked_pidfile(tmp_path: Path) -> None:
    pid = os.getpid()
    fd = lock_pidfile(tmp_path / "pyvswitchd.pid", pid)
    try:
        with FakeServer(tmp_path / f"pyvswitchd.{pid}.ctl"):
            env = {"PYVSWITCH_RUNDIR": str(tmp_path)}
            done = run_cmd([*PYAPPCTL, "version"], env)
            assert (done.returncode, done.stdout, done.stderr) == (0, "pyfake 1.0\n", "")
            # OVS_RUNDIR is the fallback.
            env = {"PYVSWITCH_RUNDIR": "", "OVS_RUNDIR": str(tmp_path)}
            done = run_cmd([*PYAPPCTL, "-t", "pyvswitchd", "noeol"], env)
            assert (done.returncode, done.stdout, done.stderr) == (0, "no newline", "")
    finally:
        os.close(fd)


def test_resolve_target_with_live_holder(tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    with lock_holder(pidfile) as pid:
        assert read_pidfile(str(pidfile)) == pid
        assert resolve_target("d", str(tmp_path)) == f"{tmp_path}/d.{pid}.ctl"
    assert resolve_target("/abs/sock.ctl") == "/abs/sock.ctl"
    assert default_rundir() == str(tmp_path)


def test_pidfile_locked_by_another_pid(tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    with lock_holder(pidfile, content="1"), pytest.raises(TargetError) as info:
        resolve_target("d", str(tmp_path))
    assert info.value.message == f'cannot read pidfile "{pidfile}" (No such process)'
    assert [w.module for w in info.value.warnings] == ["daemon_unix"]


def test_missing_pidfile(capsysbinary: Any, tmp_path: Path) -> None:
    rc, out, error = run_main(capsysbinary, "-t", "nosuchdaemon", "version")
    pidfile = f"{tmp_path}/nosuchdaemon.pid"
    assert (rc, out) == (1, "")
    assert re.fullmatch(
        f"{TS}\\|00001\\|daemon_unix\\|WARN\\|{re.escape(pidfile)}: open: No such file or"
        f' directory\npyappctl: cannot read pidfile "{re.escape(pidfile)}" \\(No such file or'
        " directory\\)\n",
        error,
    ), error


def test_stale_pidfile(capsysbinary: Any, tmp_path: Path) -> None:
    # A live pid but no lock: the daemon that wrote it is gone.
    (tmp_path / "pyvswitchd.pid").write_text(f"{os.getpid()}\n")
    rc, out, error = run_main(capsysbinary, "version")
    assert (rc, out) == (1, "")
    assert error == f'pyappctl: cannot read pidfile "{tmp_path}/pyvswitchd.pid" (No such process)\n'


def test_missing_socket(capsysbinary: Any, tmp_path: Path) -> None:
    path = f"{tmp_path}/nosuch.ctl"
    rc, out, error = run_main(capsysbinary, "-t", path, "version")
    assert (rc, out) == (1, "")
    assert re.fullmatch(
        f"{TS}\\|00001\\|unixctl\\|WARN\\|failed to connect to {re.escape(path)}\n"
        f'pyappctl: cannot connect to "{re.escape(path)}" \\(No such file or directory\\)\n',
        error,
    ), error


def test_locked_pidfile_without_socket(tmp_path: Path) -> None:
    with lock_holder(tmp_path / "d.pid") as pid:
        done = run_cmd([*PYAPPCTL, "-t", "d", "version"], {"PYVSWITCH_RUNDIR": str(tmp_path)})
    assert done.returncode == 1
    assert done.stderr.endswith(
        f'pyappctl: cannot connect to "{tmp_path}/d.{pid}.ctl" (No such file or directory)\n'
    )


def test_long_socket_path(capsysbinary: Any, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    dirfd = os.open(deep, os.O_RDONLY)
    try:  # bind through the directory descriptor: the path is too long for bind()
        srv = FakeServer(Path(f"/proc/self/fd/{dirfd}/s.ctl"))
    finally:
        os.close(dirfd)
    with srv:
        path = str(deep / "s.ctl")
        assert len(path) > 108
        assert run_main(capsysbinary, "-t", path, "version") == (0, "pyfake 1.0\n", "")
        assert srv.requests


# ---------------------------------------------------------------------------
# JSON mode


def json_script(request_id: Any, method: str, params: list[Any]) -> Sequence[Action]:
    if method == "set-options":
        return [ok(request_id, "")]
    if method == "obj":
        return [ok(request_id, {"b": [1, {"c": None}], "a": {}, "d": [], "é": "x\n"})]
    if method == "str":
        return [ok(request_id, "plain")]
    return [err(request_id, "nope\n")]


def test_json_mode(capsysbinary: Any, sock_path: Path) -> None:
    with FakeServer(sock_path, json_script) as srv:
        target = str(sock_path)
        rc, out, error = run_main(capsysbinary, "-t", target, "-f", "json", "obj", "x")
        assert (rc, error) == (0, "")
        assert out == '{"a":{},"b":[1,{"c":null}],"d":[],"é":"x\\n"}\n'
        assert srv.requests == [(0, "set-options", ["--format", "json"]), (1, "obj", ["x"])]
        rc, out, _ = run_main(capsysbinary, "-t", target, "--format=json", "--pretty", "obj")
        assert rc == 0
        assert out == (
            "{\n"
            '  "a": {\n'
            "    },\n"
            '  "b": [\n'
            "    1,\n"
            "    {\n"
            '      "c": null}],\n'
            '  "d": [],\n'
            '  "é": "x\\n"}\n'
        )
        assert run_main(capsysbinary, "-t", target, "-f", "json", "str") == (0, '"plain"\n', "")
        rc, out, error = run_main(capsysbinary, "-t", target, "-f", "json", "bad")
        assert (rc, out, error) == (2, "", f"nope\npyappctl: {target}: server returned an error\n")


def test_json_set_options_error(capsysbinary: Any, server: FakeServer) -> None:
    # A server without JSON support: its error ends the run before the command.
    def script(request_id: Any, method: str, params: list[Any]) -> Sequence[Action]:
        return [err(request_id, "no options here\n")]

    server.script = script
    rc, out, error = run_main(capsysbinary, "-t", str(server.path), "-f", "json", "version")
    assert (rc, out) == (2, "")
    assert error == f"no options here\npyappctl: {server.path}: server returned an error\n"
    assert [r[1] for r in server.requests] == ["set-options"]


def test_text_mode_rejects_non_string_result(capsysbinary: Any, server: FakeServer) -> None:
    server.script = lambda i, m, p: [ok(i, 42)]
    rc, out, error = run_main(capsysbinary, "-t", str(server.path), "x")
    assert (rc, out, error) == (
        2,
        "",
        "pyappctl: Unexpected reply type in JSON rpc reply: number\n",
    )


def test_dump_json() -> None:
    assert dump_json({"a": 1}, pretty=True) == '{\n  "a": 1}'
    assert dump_json({}, pretty=True) == "{\n  }"
    assert dump_json([], pretty=True) == "[]"
    assert dump_json({}) == "{}"
    assert dump_json([1.0, 1e2, 0.5, -0.0, 1e300, 2**70, True, None]) == (
        "[1,100,0.5,0,1e+300,1.18059162071741e+21,true,null]"
    )
    assert dump_json('\x01\t"\\/\u20ac') == '"\\u0001\\t\\"\\\\/\u20ac"'
    assert dump_json({"b": 1, "B": 2, "a": 3}) == '{"B":2,"a":3,"b":1}'


# ---------------------------------------------------------------------------
# Framing and transport edge cases


def test_mismatched_ids_are_ignored(capsysbinary: Any, server: FakeServer) -> None:
    server.script = lambda i, m, p: [
        ok(12345, "wrong id\n"),
        ok("0", "string id\n"),
        b'{"id":0,"method":"echo","params":[]}',  # a request from the server: dropped
        ok(i, "right id\n"),
    ]
    assert run_main(capsysbinary, "-t", str(server.path), "x") == (0, "right id\n", "")


def test_split_and_dribbled_reply(capsysbinary: Any, server: FakeServer) -> None:
    reply = b'{\n  "error": null,\n  "result": "dribbled \\u00e9\\n",\n  "id": 0\n}\n'

    def script(request_id: Any, method: str, params: list[Any]) -> list[Action]:
        actions: list[Action] = []
        for start in range(0, len(reply), 3):
            actions += [reply[start : start + 3], 0.001]
        return actions

    server.script = script
    assert run_main(capsysbinary, "-t", str(server.path), "x") == (0, "dribbled é\n", "")


def test_close_without_reply(capsysbinary: Any, server: FakeServer) -> None:
    target = str(server.path)
    rc, out, error = run_main(capsysbinary, "-t", target, "close")
    assert (rc, out) == (1, "")
    assert re.fullmatch(
        f"{TS}\\|00001\\|unixctl\\|WARN\\|error communicating with unix:{re.escape(target)}:"
        f" End of file\npyappctl: {re.escape(target)}: transaction error \\(End of file\\)\n",
        error,
    ), error


def test_argument_that_is_not_utf8(capsysbinary: Any, server: FakeServer) -> None:
    # b"\xff" in argv decodes to a lone surrogate, which JSON cannot carry.
    target = str(server.path)
    rc, out, error = run_main(
        capsysbinary, "-t", target, "version", b"\xff".decode("utf-8", "surrogateescape")
    )
    assert (rc, out) == (1, "")
    lines = error.splitlines()
    assert lines[0].endswith("|unixctl|WARN|command and arguments must be valid UTF-8")
    assert lines[-1] == f"pyappctl: {target}: transaction error (Invalid argument)"
    assert server.requests == []


@pytest.mark.parametrize(
    ("reply", "reason", "warning"),
    [
        (
            b'{"jsonrpc":"2.0","id":0,"result":"x\\n"}',
            "Protocol error",
            'received bad JSON-RPC message: message has unexpected member "jsonrpc"',
        ),
        (
            b'{"id":0,"result":null,"error":null}',
            "Protocol error",
            'received bad JSON-RPC message: request must have "method"',
        ),
        (b"{nonsense}", "Protocol error", "error parsing stream"),
        (b'{"id":0,"result":"r\\n","error":"e\\n"}', "Protocol error", 'must not have "error"'),
        (
            b'{"id":0,"error":{"code":1}}',
            "Invalid argument",
            "unexpected error type in JSON RPC reply: object",
        ),
    ],
)
def test_bad_replies(
    capsysbinary: Any, server: FakeServer, reply: bytes, reason: str, warning: str
) -> None:
    server.script = lambda i, m, p: [reply]
    target = str(server.path)
    rc, out, error = run_main(capsysbinary, "-t", target, "x")
    assert (rc, out) == (1, "")
    lines = error.splitlines()
    assert warning in lines[0]
    assert lines[-1] == f"pyappctl: {target}: transaction error ({reason})"


@pytest.mark.parametrize("script", [[HANG], [ok(7, "wrong id\n"), HANG]])
def test_timeout(capsysbinary: Any, server: FakeServer, script: list[Action]) -> None:
    server.script = lambda i, m, p: script
    start = time.monotonic()
    rc, out, error = run_main(capsysbinary, "-T", "1", "-t", str(server.path), "x")
    assert 0.9 < time.monotonic() - start < 3
    assert (rc, out) == (142, "")
    assert error == f"pyappctl: {server.path}: timed out after 1 seconds\n"


def test_timeout_from_environment(
    capsysbinary: Any, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVS_CTL_TIMEOUT", "1")
    start = time.monotonic()
    assert run_main(capsysbinary, "-t", str(server.path), "hang")[0] == 142
    assert time.monotonic() - start < 3
    # An unusable value is ignored, as by ovs-appctl.
    monkeypatch.setenv("OVS_CTL_TIMEOUT", "soon")
    assert run_main(capsysbinary, "-t", str(server.path), "version")[0] == 0


def test_client_api(server: FakeServer) -> None:
    with UnixctlClient(str(server.path), timeout=5) as client:
        assert client.transact("version") == (None, "pyfake 1.0\n")
        assert client.transact("fail") == ("fake failure\n", None)
        assert client.transact("echo", ["a", "b"]) == (None, '["a", "b"]\n')
        with pytest.raises(ClientError) as info:
            client.transact("close")
        assert info.value.reason == "End of file"
        with pytest.raises(ClientError):  # the connection stays failed
            client.transact("version")
    assert [r[0] for r in server.requests] == [0, 1, 2, 3]
    with pytest.raises(FileNotFoundError):
        UnixctlClient(str(server.path) + ".missing")


def test_client_deadline_covers_all_transactions(server: FakeServer) -> None:
    server.script = lambda i, m, p: [0.7, ok(i, "slow\n")]
    with UnixctlClient(str(server.path), timeout=2) as client:
        assert client.transact("a") == (None, "slow\n")
        assert client.transact("b") == (None, "slow\n")
        with pytest.raises(TimeoutError):
            client.transact("c")
        with pytest.raises(ClientError):
            client.transact("d")


def test_subprocess_entry_point(server: FakeServer) -> None:
    done = run_cmd([*PYAPPCTL, "-t", str(server.path), "fail"])
    assert done.returncode == 2
    assert done.stderr == f"fake failure\npyappctl: {server.path}: server returned an error\n"
    script = shutil.which("pyappctl", path=os.path.dirname(sys.executable))
    if script is not None:
        done = run_cmd([script, "-t", str(server.path), "version"])
        assert (done.returncode, done.stdout) == (0, "pyfake 1.0\n")


# ---------------------------------------------------------------------------
# Side by side with the real ovs-appctl


def normalise(text: str) -> str:
    text = re.sub(TS, "<ts>", text)
    return re.sub(r"(/usr/bin/)?ovs-appctl", "pyappctl", text)


@pytest.mark.skipif(not os.path.exists(OVS_APPCTL), reason="needs ovs-appctl")
@pytest.mark.parametrize(
    "argv",
    [
        ["{sock}", "version"],
        ["{sock}", "noeol"],
        ["{sock}", "fail-noeol"],
        ["{sock}", "unknown", "a b", 'c"d'],
        ["{sock}", "close"],
        ["{sock}.missing", "version"],
        ["{sock}", "echo", "-pmd", "1"],
        ["nosuchdaemon", "version"],
        ["{stale}", "version"],
    ],
)
def test_same_as_ovs_appctl(tmp_path: Path, server: FakeServer, argv: list[str]) -> None:
    (tmp_path / "stale.pid").write_text(f"{os.getpid()}\n")
    target = argv[0].format(sock=server.path, stale="stale")
    env = {"OVS_RUNDIR": str(tmp_path), "PYVSWITCH_RUNDIR": str(tmp_path)}
    ours = run_cmd([*PYAPPCTL, "-t", target, *argv[1:]], env)
    theirs = run_cmd([OVS_APPCTL, "-t", target, *argv[1:]], env)
    assert ours.returncode == theirs.returncode
    assert ours.stdout == theirs.stdout
    assert normalise(ours.stderr) == normalise(theirs.stderr)


@pytest.mark.skipif(not os.path.exists(OVS_APPCTL), reason="needs ovs-appctl")
@pytest.mark.parametrize(
    "argv", [[], ["--bogus", "version"], ["-x"], ["-t"], ["--target"], ["-T", "0", "v"]]
)
def test_same_usage_errors_as_ovs_appctl(argv: list[str]) -> None:
    ours = run_cmd([*PYAPPCTL, *argv])
    theirs = run_cmd([OVS_APPCTL, *argv])
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
    assert normalise(ours.stderr) == normalise(theirs.stderr)
