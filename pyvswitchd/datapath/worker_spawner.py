"""Starting PMD worker processes quickly: a zygote that forks them.

A fresh interpreter needs about a second to import the datapath (several
under load), and a PMD that died must be back within a second.  So the
daemon starts, once, a *zygote*: a small process that imports everything a
worker needs and then only forks.  Asked to spawn, it forks a child that
becomes the worker on the channel descriptor the daemon sent along; the
child is ready in milliseconds, sharing the zygote's imported code pages.

The zygote reports each child's pid, and each child's exit status when it
reaps it, over its control socket; the daemon (:class:`WorkerSpawner`)
turns those into awaitable process handles (:class:`WorkerProcess`).  When
the daemon goes away the control socket closes and the zygote kills its
children and ends; workers in turn end when their parent (the zygote) is
gone.  If the zygote cannot be started or dies, workers are started as
fresh interpreters instead (slower, same behaviour).

Control messages are small pickled tuples on an AF_UNIX SOCK_SEQPACKET
pair (one message per datagram); the worker's channel descriptor rides on
the spawn request as SCM_RIGHTS.
"""

from __future__ import annotations

import array
import contextlib
import errno
import gc
import itertools
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

import trio

from ..observe.vlog import VlogModule

_FD_SIZE = array.array("i").itemsize
_MSG_SIZE = 4096
#: The zygote's name in /proc/PID/comm (ps, top).
ZYGOTE_NAME = "pmd-zygote"
#: How long the zygote may take to start (it imports the datapath), s.
ZYGOTE_START_TIMEOUT = 60.0


def worker_env() -> dict[str, str]:
    """The daemon's environment, with this package importable whatever the working directory."""
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env.pop("NOTIFY_SOCKET", None)  # systemd's readiness channel is the daemon's alone
    return env


def describe_exit(code: int) -> str:
    """A worker's end as the log says it ("was killed by SIGKILL", "exited with status 1")."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _status_code(status: int) -> int:
    """A wait status as subprocess returncodes say it: -signal, or the exit status."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class WorkerProcess:
    """A running worker: its pid, and a way to wait for its end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = trio.Event()

    def ended(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._ended.set()

    async def wait(self) -> int:
        await self._ended.wait()
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class WorkerSpawner:
    """The daemon's side: spawn workers through the zygote (or directly, without one)."""

    def __init__(self, log: VlogModule) -> None:
        self._log = log
        self._sock: trio.socket.SocketType | None = None
        self._zygote: trio.Process | None = None
        self._tokens = itertools.count(1)
        self._pending: dict[int, tuple[trio.Event, list[WorkerProcess]]] = {}
        self._children: dict[int, WorkerProcess] = {}
        self._direct: set[trio.Process] = set()
        self._lock = trio.Lock()
        #: Set once the first zygote is up, or failed to come up.
        self._settled = trio.Event()
        #: Whether :meth:`run` keeps a zygote (without it, workers start directly).
        self._running = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a zygote running (restarting it if it dies) until cancelled.

        Reports started at once: the zygote's interpreter takes a good part
        of a second to import the worker, and the daemon has better things
        to do meanwhile than wait for it; :meth:`spawn` waits instead.
        """
        self._running = True
        task_status.started()

        def started() -> None:
            # The first zygote settles spawning when it is up, or the first
            # attempt when it failed; later zygotes come and go silently.
            self._settled.set()

        try:
            while True:
                try:
                    await self._run_zygote(started)
                except OSError as exc:
                    self._log.warn(f"PMD zygote: {exc}; PMD processes start from scratch")
                started()
                await trio.sleep(1.0)
        finally:
            self._shutdown()

    async def _run_zygote(self, started: Callable[[], None]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "pyvswitchd.datapath.worker_spawner",
                 str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=worker_env(),
            )  # fmt: skip
        finally:
            theirs.close()
        ours.setblocking(False)
        sock = trio.socket.from_stdlib_socket(ours)
        try:
            with trio.fail_after(ZYGOTE_START_TIMEOUT):
                hello = pickle.loads(await sock.recv(_MSG_SIZE))
            if hello != ("ready",):
                raise OSError(errno.EPROTO, f"unexpected first message {hello!r}")
            self._zygote, self._sock = proc, sock
            started()
            await self._serve(sock)
        except trio.TooSlowError:
            self._log.warn("PMD zygote did not start in time")
        finally:
            self._sock = None
            sock.close()
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()
            self._zygote = None
            # Its children die with it (they watch their parent): report them gone.
            for child in list(self._children.values()):
                child.ended(-signal.SIGKILL)
            self._children.clear()
            for event, _ in self._pending.values():
                event.set()

    async def _serve(self, sock: trio.socket.SocketType) -> None:
        while True:
            data = await sock.recv(_MSG_SIZE)
            if not data:
                return
            message = pickle.loads(data)
            if message[0] == "spawned":
                _, token, pid = message
                # Known from here on: its "exited" may be the very next message,
                # handled before the spawning task runs again.
                spawned = self._children[pid] = WorkerProcess(pid)
                waiter = self._pending.get(token)
                if waiter is not None:
                    waiter[1].append(spawned)
                    waiter[0].set()
            elif message[0] == "exited":
                _, pid, code = message
                child = self._children.pop(pid, None)
                if child is not None:
                    child.ended(code)

    async def settled(self) -> None:
        """Return once the first zygote is up or failed to come up (at once without :meth:`run`)."""
        if self._running:
            await self._settled.wait()

    async def spawn(self, channel_fd: int) -> WorkerProcess | trio.Process:
        """Start a worker on channel descriptor ``channel_fd`` (the caller keeps its copy)."""
        await self.settled()
        sock = self._sock
        if sock is not None:
            token = next(self._tokens)
            event, reply = self._pending[token] = (trio.Event(), [])
            try:
                async with self._lock:
                    data = pickle.dumps(("spawn", token))
                    fds = array.array("i", [channel_fd]).tobytes()
                    await sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
                await event.wait()
            except OSError:
                reply = []
            finally:
                self._pending.pop(token, None)
            if reply:
                return reply[0]
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "pyvswitchd.datapath.worker", "--channel-fd", str(channel_fd)],
            pass_fds=(channel_fd,),
            stdin=subprocess.DEVNULL,
            env=worker_env(),
        )
        return proc

    def _shutdown(self) -> None:
        for child in self._children.values():
            child.kill()


# -- the zygote process ------------------------------------------------------------


def _zygote(control_fd: int) -> int:
    """Import the worker, then fork one per request until the daemon goes away."""
    from . import worker

    worker.set_process_name(ZYGOTE_NAME)
    # What the zygote imported is shared by every worker it forks: out of the
    # collector's sight, it is never walked (nor its pages copied) in them.
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    control.send(pickle.dumps(("ready",)))
    try:
        while True:
            readable, _, _ = select.select([control.fileno(), wake_r], [], [])
            if wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(control, children)
            if control.fileno() not in readable:
                continue
            data, ancdata, _, _ = control.recvmsg(_MSG_SIZE, socket.CMSG_SPACE(_FD_SIZE))
            if not data:
                return 0  # the daemon is gone
            fds = [
                fd
                for level, kind, payload in ancdata
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                for fd in array.array("i", payload[: len(payload) - len(payload) % _FD_SIZE])
            ]
            _, token = pickle.loads(data)
            pid = os.fork()
            if pid == 0:
                # The child: the daemon's channel is its only link.
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                control.close()
                os.close(wake_r)
                os.close(wake_w)
                code = 1
                try:
                    code = worker.main(["--channel-fd", str(fds[0])])
                finally:
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            control.send(pickle.dumps(("spawned", token, pid)))
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _reap(control: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        with contextlib.suppress(OSError):
            control.send(pickle.dumps(("exited", pid, _status_code(status))))


if __name__ == "__main__":
    sys.exit(_zygote(int(sys.argv[1])))
