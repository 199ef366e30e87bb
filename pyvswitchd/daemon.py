"""The daemon: assembles the subsystems and runs them in one trio nursery.

Start-up order matters to the people watching: the pidfile is taken first
(a second daemon must fail before touching anything), then the control
socket is bound, and only when it accepts connections is systemd told
READY=1.  Shutdown runs the other way round and always removes the socket
and the pidfile, whether it came from SIGTERM, SIGINT or ``exit``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import platform
import signal
import time
from collections.abc import Iterable, Sequence

import attrs
import trio
import trio.lowlevel
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import PACKAGE_NAME, PROGRAM_NAME, __version__, startup
from . import config as config_mod
from .config import Config, ConfigError, OtherConfig
from .config_commands import register_config_commands
from .control.access import AccessPolicy, group_id
from .control.builtins import register_builtins
from .control.registry import CommandContext, CommandRegistry
from .control.server import SocketGroupError, UnixctlServer
from .datapath import commands as dp_commands
from .datapath.config_check import check_config
from .datapath.dp import Datapath
from .datapath.dp_metrics import datapath_metrics
from .datapath.dp_metrics import describe as describe_datapath_metrics
from .datapath.gc_tuning import tune_gc
from .datapath.interface_status import interface_statistics, interface_status
from .datapath.link_tracker import LinkTracker
from .netdev import dummy as netdev_dummy
from .netdev import faults as netdev_faults
from .netdev.registry import default_registry
from .observe import tasks
from .observe.coverage import Coverage
from .observe.memory import Memory
from .observe.metrics import COLLECTOR_METRICS, Metrics, coverage_source
from .observe.vlog import Vlog
from .observe.vlog_commands import register_vlog_commands
from .offload import faults as offload_faults
from .ovsdb.source import OvsdbSource
from .pidfile import AlreadyRunning, PidFile
from .sdnotify import Notifier

DEFAULT_RUNDIR = "/run/pyvswitch"

#: How long pending ``exit`` callers get to receive their reply at shutdown.
EXIT_REPLY_GRACE = 2.0


@attrs.frozen
class DaemonOptions:
    """What the command line decides (the config file decides the rest)."""

    config_path: str | None = None
    rundir: str = DEFAULT_RUNDIR
    unixctl_path: str | None = None
    pidfile: str | None = None
    log_file: str | None = None
    verbose: tuple[str, ...] = ()
    #: ``--metrics-address``, when given (None: "none"): it overrides the
    #: config's ``daemon:metrics-address``.
    metrics_address: str | None = None
    metrics_override: bool = False
    syslog_method: str = "libc"
    #: ``--enable-fault-injection``: register the test-only fault commands.
    fault_injection: bool = False
    #: ``--program-name``: names the pidfile, the socket, log and version lines.
    program: str = PROGRAM_NAME
    #: ``--db``, when given: the OVSDB server to take the configuration from
    #: (overrides the config's ``daemon:db``).
    db: str | None = None
    #: ``--dummy-numa``, when given: the NUMA node of each core (overrides
    #: ``other_config:dummy-numa`` from any source).
    dummy_numa: tuple[int, ...] | None = None

    @property
    def socket_path(self) -> str:
        if self.unixctl_path is None:
            return os.path.join(self.rundir, f"{self.program}.{os.getpid()}.ctl")
        return os.path.join(self.rundir, self.unixctl_path)

    @property
    def pidfile_path(self) -> str:
        return os.path.join(self.rundir, self.pidfile or f"{self.program}.pid")


#: The daemon's own health families (name, type, help), for --list-metrics.
HEALTH_METRICS = (
    ("pyvswitchd_build_info", "gauge", "1, labels version and python"),
    ("pyvswitchd_start_time_seconds", "gauge", "Unix time the daemon started"),
    ("pyvswitchd_config_reloads_total", "counter", "Configuration reloads, label result"),
    ("pyvswitchd_config_last_reload_successful", "gauge", "1 if the last reload succeeded"),
    (
        "pyvswitchd_config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful reload (or of the start)",
    ),
    ("pyvswitchd_config_generation", "gauge", "Generation of the running configuration"),
    ("pyvswitchd_control_requests_total", "counter", "unixctl requests received"),
    ("pyvswitchd_control_errors_total", "counter", "unixctl requests answered with an error"),
    (
        "pyvswitchd_control_protocol_errors_total",
        "counter",
        "unixctl connections closed for malformed input",
    ),
    ("pyvswitchd_control_connections", "gauge", "Open unixctl connections"),
    ("ovs_coverage_total", "counter", "Coverage counter events, label event (coverage/show)"),
)


#: Families served only when the configuration comes from OVSDB (``--db``).
DATABASE_METRICS = (
    ("pyvswitchd_ovsdb_connected", "gauge", "1 while connected to the OVSDB server"),
    ("pyvswitchd_ovsdb_reconnects_total", "counter", "OVSDB connections made after the first"),
    (
        "pyvswitchd_ovsdb_transaction_failures_total",
        "counter",
        "Write-back transactions the OVSDB server did not commit",
    ),
    (
        "pyvswitchd_ovsdb_rejected_interfaces",
        "gauge",
        "Interfaces of the database refused (their error column says why)",
    ),
)
DATABASE_ONLY = " (--db only)"


def list_metrics() -> str:
    """The table ``pyvswitchd --list-metrics`` prints."""
    rows = [
        *HEALTH_METRICS,
        *COLLECTOR_METRICS,
        *describe_datapath_metrics(),
        *((name, kind, help_ + DATABASE_ONLY) for name, kind, help_ in DATABASE_METRICS),
    ]
    width = max(len(name) for name, _, _ in rows)
    return "".join(f"{name:<{width}}  {kind:<7}  {help_}\n" for name, kind, help_ in rows)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def version_text(program: str = PROGRAM_NAME) -> str:
    return f"{program} ({PACKAGE_NAME}) {__version__}"


class StartupError(Exception):
    """Start-up failed for a reason stated in one line (``str(exc)``)."""


def sole_exception(exc: BaseException) -> BaseException:
    """The exception inside nested one-member groups (a nursery wraps what it raises)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def load_config(path: str | None) -> Config:
    """The file's config, or the built-in default when no file is named."""
    return config_mod.load(path) if path else config_mod.load_default()


class Daemon:
    """Everything one pyvswitchd process owns."""

    def __init__(self, options: DaemonOptions, config: Config, *, vlog: Vlog | None = None) -> None:
        self.options = options
        self.config = config
        self.config_generation = 1
        self.reloads = 0
        self.vlog = vlog or Vlog(options.program, syslog_method=options.syslog_method)
        self.coverage = Coverage()
        self.registry = CommandRegistry()
        self.memory = Memory(self.vlog)
        self.notifier = Notifier()
        self._log = self.vlog.module("daemon")
        self._stop = trio.Event()
        self._ready = trio.Event()
        self._stopped = trio.Event()
        self.cleanup_requested = False
        self.server = UnixctlServer(
            options.socket_path,
            self.registry,
            self.vlog,
            self.coverage,
            mode=config.daemon.ctl_mode,
            group=group_id(config.daemon.ctl_group),
        )
        self.access = AccessPolicy(
            self.registry, self.vlog, self.coverage, group_id(config.daemon.admin_group)
        )
        self.server.set_authorizer(self.access.authorize)
        self.server.set_admin_check(lambda p: self.access.allowed(p.uid, p.gid, p.pid))
        register_builtins(self.registry, version_text(options.program))
        self.coverage.register_commands(self.registry)
        register_vlog_commands(self.vlog, self.registry)
        self.memory.register_commands(self.registry)
        self.memory.add_reporter(
            lambda: {
                "control-connections": self.server.active_connections,
                "coverage-counters": len(self.coverage.counters()),
            }
        )
        self.metrics = Metrics(self.vlog)
        #: Why the wanted metrics address is not served (it could not be bound).
        self.metrics_error: str | None = None
        self.metrics.add_source(coverage_source(self.coverage))
        self.metrics.add_source(self._health_metrics)
        self.start_time = time.time()
        self.reload_failures = 0
        self.last_reload_ok = True
        self.last_reload_success = self.start_time
        self.datapath = Datapath(
            self.vlog,
            self.coverage,
            default_registry(),
            pmd_processes=True,
            fault_injection=options.fault_injection,
        )
        self.link_tracker = LinkTracker(self.datapath)
        #: The OVSDB server the configuration comes from, if any (``--db``).
        self.db_source: OvsdbSource | None = None
        remote = options.db or config.daemon.db
        if remote is not None:
            self._use_database(remote)
        dp_commands.register_commands(self.datapath, self.registry)
        self.metrics.add_source(lambda: datapath_metrics(self.datapath))
        netdev_dummy.register_commands(self.registry, self.datapath.netdev_by_name)
        self.memory.add_reporter(
            lambda: {
                "ports": len(self.datapath.ports),
                "pmds": len(self.datapath.pmds),
                "tasks": len(tasks.live_tasks()),
            }
        )
        tasks.register_commands(self.registry)
        if options.fault_injection:
            self._enable_fault_injection()
        self._register_commands()

    def _use_database(self, remote: str) -> None:
        if self.options.config_path is not None and (
            self.config.bridges or self.config.other_config != OtherConfig()
        ):
            self._log.warn(
                f"{self.options.config_path}: [other_config] and [[bridge]] are ignored: "
                f"the configuration is the database at {remote}"
            )
        self.config = Config(
            daemon=self.config.daemon, source=f"database {remote}", declares_bridges=True
        )
        datapath = self.datapath
        self.db_source = OvsdbSource(
            remote,
            log=self.vlog.module("ovsdb"),
            apply=self._apply_from_database,
            base=lambda: self.config,
            check_port=lambda cfg: check_config(cfg, datapath.netdevs),
            status=lambda: interface_status(datapath),
            statistics=lambda: interface_statistics(datapath),
            iface_types=datapath.netdevs.types,
            version=__version__,
        )
        self.metrics.add_source(self.db_source.metrics)

    async def _apply_from_database(self, new: Config) -> None:
        await self.apply_config(new)
        self.config_generation += 1

    @property
    def ready(self) -> bool:
        """Whether start-up is over (the configuration is in effect, commands may change it)."""
        return self._ready.is_set()

    def _enable_fault_injection(self) -> None:
        # Test-only commands that make devices and offload fail on purpose.
        # PMD worker processes run their own sides of the devices and their
        # own copies of the providers: settings reach them, counts come back.
        workers = self.datapath.workers
        netdev_faults.register_commands(
            self.registry, self.datapath.netdev_by_name, self.vlog, self.coverage, workers
        )
        offload = self.datapath.offload
        offload_faults.register_commands(
            self.registry,
            lambda: offload.collection.providers if offload.collection is not None else [],
            self.vlog,
            self.coverage,
            workers,
        )
        self._log.warn("fault injection enabled: not for production use")

    def _health_metrics(self) -> Iterable[Metric]:
        stats = self.server.stats
        build = GaugeMetricFamily(
            "pyvswitchd_build_info",
            "The daemon's version and Python's",
            labels=["version", "python"],
        )
        build.add_metric([__version__, platform.python_version()], 1)
        yield build
        yield GaugeMetricFamily(
            "pyvswitchd_start_time_seconds", "Unix time the daemon started", value=self.start_time
        )
        reloads = CounterMetricFamily(
            "pyvswitchd_config_reloads",
            "Configuration reloads (config/reload, SIGHUP) by result",
            labels=["result"],
        )
        reloads.add_metric(["success"], self.reloads)
        reloads.add_metric(["failure"], self.reload_failures)
        yield reloads
        yield GaugeMetricFamily(
            "pyvswitchd_config_last_reload_successful",
            "1 if the last configuration reload succeeded (or none was tried), else 0",
            value=int(self.last_reload_ok),
        )
        yield GaugeMetricFamily(
            "pyvswitchd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful reload (the start if none)",
            value=self.last_reload_success,
        )
        yield GaugeMetricFamily(
            "pyvswitchd_config_generation",
            "Generation of the running configuration (1 at start, +1 per reload)",
            value=self.config_generation,
        )
        yield CounterMetricFamily(
            "pyvswitchd_control_requests", "unixctl requests received", value=stats.requests
        )
        yield CounterMetricFamily(
            "pyvswitchd_control_errors",
            "unixctl requests answered with an error",
            value=stats.errors,
        )
        yield CounterMetricFamily(
            "pyvswitchd_control_protocol_errors",
            "unixctl connections closed for malformed input",
            value=stats.protocol_errors,
        )
        yield GaugeMetricFamily(
            "pyvswitchd_control_connections",
            "Open unixctl connections",
            value=self.server.active_connections,
        )

    # -- commands owned by the daemon itself --------------------------------

    def _register_commands(self) -> None:
        async def exit_(ctx: CommandContext, args: Sequence[str]) -> str:
            # Any single argument is accepted, as OVS does; only --cleanup means something.
            if args and args[0] == "--cleanup":
                self.cleanup_requested = True
            self.request_stop("exit command")
            await self._stopped.wait()
            return ""

        self.registry.register("exit", "[--cleanup]", 0, 1, exit_, mutating=True)
        register_config_commands(self, self.registry, self._log)

    # -- lifecycle ----------------------------------------------------------

    def request_stop(self, why: str) -> None:
        if not self._stop.is_set():
            self._log.info(f"{why}: stopping")
            self._stop.set()

    async def reload(self) -> None:
        """Re-read the config file; on any error the running config stays."""
        self.notifier.reloading()
        try:
            new = load_config(self.options.config_path)
            if self.options.db is None and new.daemon.db != self.config.daemon.db:
                raise ConfigError(
                    f"{new.source}: daemon:db: the configuration source is chosen at start; "
                    "restart pyvswitchd to change it"
                )
            if self.db_source is not None:
                # The database holds the rest: only the file's [daemon] table is reloaded.
                new = attrs.evolve(self.config, daemon=new.daemon, notes=())
            else:
                config_mod.check_reload(self.config, new)
            await self.apply_config(new)
        except Exception as exc:
            self.reload_failures += 1
            self.last_reload_ok = False
            if isinstance(exc, ConfigError):
                self._log.err(f"configuration not reloaded, keeping the running one: {exc}")
            raise
        finally:
            self.notifier.ready()
        self.reloads += 1
        self.last_reload_ok = True
        self.last_reload_success = time.time()
        self.config_generation += 1
        self._log.info(
            f"configuration reloaded from {new.source} (generation {self.config_generation})"
        )

    async def apply_config(self, new: Config, *, starting: bool = False) -> None:
        """Switch to ``new``; subsystems reconfigure from the difference.

        Ports are checked against their netdev types first (the command
        line did that before start-up), then the ``[daemon]`` keys are
        applied: a bad port option or a key that cannot be applied raises
        ConfigError and nothing changes.  At start-up (``starting``) a
        metrics address that cannot be bound raises StartupError.
        """
        numa = self.options.dummy_numa
        if numa is not None and new.other_config.dummy_numa != numa:
            # --dummy-numa, as ovs-vswitchd's, wins over any configuration source.
            new = attrs.evolve(new, other_config=attrs.evolve(new.other_config, dummy_numa=numa))
        if not starting:
            check_config(new, self.datapath.netdevs)
        await self._apply_daemon_settings(new, starting)
        for note in new.notes:
            self._log.warn(note)
        self.config = new
        await self.datapath.apply_config(new)

    def metrics_wanted(self, cfg: Config) -> str | None:
        """Where ``cfg`` wants metrics served: ``--metrics-address`` wins over the file."""
        if self.options.metrics_override:
            return self.options.metrics_address
        return cfg.daemon.metrics_address

    async def _apply_daemon_settings(self, new: Config, starting: bool) -> None:
        d = new.daemon
        try:
            ctl_gid, admin_gid = group_id(d.ctl_group), group_id(d.admin_group)
        except KeyError as exc:
            raise ConfigError(f"daemon: group {exc} does not exist (any more)") from None
        before = self.server.permissions()
        if not starting and before is not None:
            wanted_gid = os.getegid() if ctl_gid is None else ctl_gid
            if before != (d.ctl_mode, wanted_gid):
                key = "ctl-group" if before[1] != wanted_gid else "ctl-mode"
                try:
                    self.server.set_permissions(d.ctl_mode, ctl_gid)
                except OSError as exc:
                    raise ConfigError(
                        f"daemon:{key}: cannot apply to {self.server.path}: {exc.strerror or exc}"
                    ) from None
                self._log.info(
                    f"control socket {self.server.path}: mode {d.ctl_mode:04o}, "
                    f"group {_group_name(wanted_gid)}"
                )
        wanted = self.metrics_wanted(new)
        if wanted != self.metrics.address:
            try:
                await self.metrics.set_address(wanted)
            except OSError as exc:
                if starting:
                    # Fail the start rather than switch without metrics: a daemon
                    # that runs on unobserved looks to Prometheus like a target
                    # that is down, and no restart would ever clear it.
                    origin = (
                        "--metrics-address"
                        if self.options.metrics_override
                        else f"daemon:metrics-address in {new.source}"
                    )
                    assert wanted is not None  # binding "none" cannot fail
                    failure = startup.metrics_failure(wanted, exc, origin=origin)
                    raise StartupError(failure) from None
                reason = f"cannot listen on {wanted}: {exc.strerror or exc}"
                if not starting and wanted != self.metrics_wanted(self.config):
                    # Asked for now: refuse, and undo the socket's new permissions.
                    if before is not None and before != self.server.permissions():
                        with contextlib.suppress(OSError):
                            self.server.set_permissions(before[0], before[1])
                    raise ConfigError(f"daemon:metrics-address: {reason}") from None
                # The same address as before (a retry): keep switching.
                self.metrics_error = reason
                self._log.err(f"metrics: {reason}")
            else:
                self.metrics_error = None
        self.access.admin_gid = admin_gid

    def _control_socket_failure(self, exc: OSError) -> str:
        path = self.server.path
        if isinstance(exc, SocketGroupError) and self.config.daemon.ctl_group is not None:
            return startup.socket_group_failure(path, self.config.daemon.ctl_group, exc)
        return startup.control_socket_failure(
            path, exc, given=self.options.unixctl_path is not None, rundir=self.options.rundir
        )

    def effective_daemon(self) -> tuple[dict[str, object], dict[str, str]]:
        """The ``[daemon]`` keys as in effect now, and a remark for some of them."""
        table: dict[str, object] = {}
        remarks: dict[str, str] = {}
        table["metrics-address"] = self.metrics.address or "none"
        if self.metrics_error is not None:
            remarks["metrics-address"] = self.metrics_error
        elif self.options.metrics_override:
            remarks["metrics-address"] = "from --metrics-address"
        perms = self.server.permissions()
        if perms is not None:
            table["ctl-mode"] = f"{perms[0]:04o}"
            table["ctl-group"] = _group_name(perms[1])
        else:
            table["ctl-mode"] = f"{self.config.daemon.ctl_mode:04o}"
        if self.config.daemon.admin_group is not None:
            table["admin-group"] = self.config.daemon.admin_group
        return table, remarks

    async def _signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if not self._ready.is_set():
                        self._log.warn("SIGHUP during start-up ignored: nothing to reload yet")
                        continue
                    try:
                        await self.reload()
                    except ConfigError:
                        pass  # reload() logged it; the running configuration stays
                    except Exception as exc:
                        # A bug must not turn SIGHUP into a crash of the switch.
                        self._log.err(f"reload on SIGHUP failed: {exc!r}")
                else:
                    self.request_stop(f"received signal {signal.Signals(signum).name}")

    async def _watchdog(self, interval: float) -> None:
        # Keep-alives come from the event loop itself: if it stops turning,
        # they stop, and systemd restarts the daemon (WatchdogSec=).
        while True:
            self.notifier.watchdog()
            await trio.sleep(interval)

    async def run(self) -> None:
        """Serve until stopped.

        Raises AlreadyRunning, OSError or StartupError when start-up fails
        for a reason the user can fix (one line says it all).  Anything else
        that ends the daemon is first logged at EMER with its traceback, to
        every log destination, then raised.
        """
        pidfile = PidFile(self.options.pidfile_path)
        try:
            os.makedirs(self.options.rundir, exist_ok=True)
            pidfile.acquire()
        except AlreadyRunning:
            raise
        except OSError as exc:
            raise StartupError(startup.rundir_failure(self.options.rundir, exc)) from None
        try:
            await self._run()
        except Exception as exc:
            leaf = sole_exception(exc)
            if isinstance(leaf, StartupError):
                raise leaf from None
            if not self._ready.is_set() and isinstance(leaf, OSError):
                raise StartupError(f"cannot start: {leaf}") from exc
            self._log.emer_exception(f"fatal error, exiting: {leaf!r}", exc)
            raise
        finally:
            pidfile.release()
            self._log.info("stopped")

    async def _run(self) -> None:
        async with trio.open_nursery() as root:
            # Signals first: a SIGTERM that arrives once the socket exists
            # (scripts wait for it) must stop the daemon cleanly, not kill it.
            await root.start(self._signals)
            try:
                await root.start(self.server.serve)
            except Exception as exc:
                leaf = sole_exception(exc)
                if isinstance(leaf, OSError):
                    raise StartupError(self._control_socket_failure(leaf)) from None
                raise
            async with trio.open_nursery() as services:
                await services.start(self.datapath.run)
                # Before the ports open: an interface that appears meanwhile is seen.
                await services.start(self.link_tracker.run)
                await services.start(self.metrics.run)
                await self.apply_config(self.config, starting=True)
                if self.db_source is not None:
                    await services.start(self.db_source.run)
                await services.start(self.coverage.run_periodically)
                await services.start(self.memory.monitor)
                tune_gc()
                self._log.info(f"{version_text(self.options.program)} ready on {self.server.path}")
                self._ready.set()
                self.notifier.ready()
                if self.notifier.watchdog_interval is not None:
                    services.start_soon(self._watchdog, self.notifier.watchdog_interval)
                await self._stop.wait()
                self.notifier.stopping()
                await self.datapath.shutdown()
                services.cancel_scope.cancel()
            self._stopped.set()
            # Let `exit` callers get their (deferred) empty reply before the socket goes.
            with trio.move_on_after(EXIT_REPLY_GRACE):
                await trio.lowlevel.checkpoint()
                await self.server.wait_idle()
            root.cancel_scope.cancel()
