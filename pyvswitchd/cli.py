"""``pyvswitchd`` command line: ovs-vswitchd's flags where it has them.

Every failure before the daemon is up (bad flag, bad config, run directory
taken by a live daemon) prints one ``pyvswitchd: ...`` line on stderr and
exits 1, so a service manager's log says exactly what to fix.
"""

from __future__ import annotations

import faulthandler
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

import click
import trio

from . import PROGRAM_NAME
from .config import ConfigError, no_bridge_warning, parse_address, parse_numa_list
from .config.db_remote import parse_db_remote
from .daemon import (
    DEFAULT_RUNDIR,
    Daemon,
    DaemonOptions,
    StartupError,
    load_config,
    version_text,
)
from .daemon import list_metrics as metrics_table
from .datapath.config_check import check_config as check_ports
from .netdev.registry import default_registry
from .observe.vlog import Vlog, VlogError
from .pidfile import AlreadyRunning
from .startup import log_file_failure

DEFAULT_LOGDIR = "/var/log/pyvswitch"
_PROGRAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _fail(message: str, program: str = PROGRAM_NAME) -> NoReturn:
    click.echo(f"{program}: {message}", err=True)
    sys.exit(1)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    help="TOML config file (default: the built-in default config).",
)
@click.option("--check-config", metavar="FILE", help="Validate FILE, report, and exit.")
@click.option(
    "--rundir",
    metavar="DIR",
    envvar="PYVSWITCH_RUNDIR",
    show_envvar=True,
    help=f"Directory for the control socket and pidfile [default: {DEFAULT_RUNDIR}].",
)
@click.option(
    "--unixctl",
    "unixctl_path",
    metavar="PATH",
    help="Control socket path (relative paths are taken inside --rundir).",
)
@click.option(
    "--pidfile",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[=FILE]",
    help="Pidfile name (default: <rundir>/pyvswitchd.pid; always written).",
)
@click.option(
    "--log-file",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[=FILE]",
    help=f"Also log to FILE (default {DEFAULT_LOGDIR}/pyvswitchd.log).",
)
@click.option(
    "-v",
    "--verbose",
    multiple=True,
    metavar="SPEC",
    help="Set log levels, as vlog/set (e.g. -v unixctl:file:dbg).",
)
@click.option(
    "--syslog-method",
    default="libc",
    show_default=True,
    metavar="libc|null|unix:PATH",
    help="How to reach syslog.",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT|none",
    help="Prometheus listener (overrides [daemon] metrics-address).",
)
@click.option(
    "--db",
    metavar="unix:PATH|tcp:HOST:PORT|ssl:HOST:PORT",
    help="Take the configuration from this OVSDB server, as ovs-vswitchd does "
    "(overrides [daemon] db; the file then gives only [daemon]).",
)
@click.option("--private-key", metavar="FILE", help="SSL private key for an ssl: --db.")
@click.option("--certificate", metavar="FILE", help="SSL certificate for an ssl: --db.")
@click.option("--ca-cert", metavar="FILE", help="CA certificate to trust for an ssl: --db.")
@click.option(
    "--dummy-numa",
    metavar="N,N,...",
    help="NUMA node of each core, core 0 first, as ovs-vswitchd's --dummy-numa "
    "(overrides other_config:dummy-numa).",
)
@click.option("--list-metrics", is_flag=True, help="Print the Prometheus families and exit.")
@click.option(
    "--enable-fault-injection",
    is_flag=True,
    help="Register the test-only netdev-dummy/fault and offload-dummy/fault commands.",
)
@click.option(
    "--program-name",
    default=PROGRAM_NAME,
    show_default=True,
    metavar="NAME",
    help="Name for the pidfile and control socket (NAME.pid, NAME.PID.ctl), log and "
    "error lines, e.g. ovs-vswitchd for tools that look for it.",
)
@click.option("-V", "--version", is_flag=True, help="Print the version and exit.")
def command(
    config_path: str | None,
    check_config: str | None,
    rundir: str | None,
    unixctl_path: str | None,
    pidfile: str | None,
    log_file: str | None,
    verbose: tuple[str, ...],
    syslog_method: str,
    metrics_address: str | None,
    db: str | None,
    private_key: str | None,
    certificate: str | None,
    ca_cert: str | None,
    dummy_numa: str | None,
    list_metrics: bool,
    enable_fault_injection: bool,
    program_name: str,
    version: bool,
) -> None:
    """Open vSwitch's userspace datapath and PMD machinery, on trio."""
    if not _PROGRAM_NAME.fullmatch(program_name):
        _fail(f'--program-name: invalid value "{program_name}": expected letters, digits, "._-"')
    program = program_name
    if version:
        click.echo(version_text(program))
        return
    if list_metrics:
        click.echo(metrics_table(), nl=False)
        return
    if check_config is not None:
        try:
            cfg = load_config(check_config)
            port_warnings = check_ports(cfg, default_registry())
        except ConfigError as exc:
            _fail(str(exc), program)
        n_ports = sum(len(b.ports) for b in cfg.bridges)
        warnings = [*cfg.notes, *port_warnings, no_bridge_warning(cfg)]
        for warning in warnings:
            if warning is not None:
                click.echo(f"{check_config}: warning: {warning}")
        click.echo(f"{check_config}: OK ({len(cfg.bridges)} bridges, {n_ports} ports)")
        return
    try:
        config = load_config(config_path)
        check_ports(config, default_registry())
    except ConfigError as exc:
        _fail(str(exc), program)
    metrics: str | None = None
    if metrics_address is not None:
        try:
            metrics = parse_address(metrics_address)
        except ValueError as exc:
            _fail(f'--metrics-address: invalid value "{metrics_address}": {exc}', program)
    if db is not None:
        try:
            parse_db_remote(db)
        except ValueError as exc:
            _fail(f'--db: invalid value "{db}": {exc}', program)
    numa: tuple[int, ...] | None = None
    if dummy_numa is not None:
        try:
            numa = parse_numa_list(dummy_numa)
        except ValueError as exc:
            _fail(f'--dummy-numa: invalid value "{dummy_numa}": {exc}', program)
    remote = db or config.daemon.db
    if remote is not None and remote.startswith("ssl:"):
        _ssl_files(remote, private_key, certificate, ca_cert, program)
    if syslog_method not in ("libc", "null") and not syslog_method.startswith("unix:"):
        _fail(
            f'--syslog-method: invalid value "{syslog_method}": expected libc, null or unix:PATH',
            program,
        )

    vlog = Vlog(program, syslog_method=syslog_method)
    options = DaemonOptions(
        config_path=config_path,
        rundir=os.path.abspath(rundir or DEFAULT_RUNDIR),
        unixctl_path=unixctl_path,
        pidfile=pidfile or None,
        log_file=_log_path(log_file, program),
        verbose=verbose,
        metrics_address=metrics,
        metrics_override=metrics_address is not None,
        syslog_method=syslog_method,
        fault_injection=enable_fault_injection,
        program=program,
        db=db,
        dummy_numa=numa,
    )
    daemon = Daemon(options, config, vlog=vlog)
    # Flags are applied after the daemon defined its modules, so -v can name them.
    for spec in verbose:
        try:
            if spec:
                vlog.set_levels_from_string(spec)
            else:
                vlog.set_all_levels_dbg()
        except VlogError as exc:
            _fail(f"-v {spec}: {exc}", program)
    if options.log_file:
        try:
            vlog.open_log_file(options.log_file, warn=False)
        except VlogError as exc:
            cause = exc.__cause__
            _fail(
                log_file_failure(options.log_file, cause)
                if isinstance(cause, OSError)
                else f"--log-file {options.log_file}: cannot open: {exc}",
                program,
            )
    # A watchdog's SIGABRT (WatchdogSec=) or a crash in C code leaves every
    # thread's Python stack on stderr, which is the journal under systemd.
    faulthandler.enable()
    try:
        trio.run(daemon.run)
    except (AlreadyRunning, StartupError) as exc:
        _fail(str(exc), program)
    except OSError as exc:  # before the daemon's tasks started (run directory, pidfile)
        _fail(f"cannot start: {exc}", program)
    except Exception:
        # Daemon.run logged it at EMER, traceback included, to every log
        # destination (console included): printing it again would only repeat it.
        sys.exit(1)


def _ssl_files(
    remote: str,
    private_key: str | None,
    certificate: str | None,
    ca_cert: str | None,
    program: str,
) -> None:
    """Hand the SSL files to the OVSDB client, or fail naming what is missing."""
    files = {"--private-key": private_key, "--certificate": certificate, "--ca-cert": ca_cert}
    missing = [flag for flag, path in files.items() if not path]
    if missing:
        _fail(f"--db {remote}: an ssl: database needs {', '.join(missing)}", program)
    for flag, path in files.items():
        assert path is not None
        if not os.access(path, os.R_OK):
            _fail(f"{flag} {path}: cannot read it", program)
    from ovs.stream import Stream  # only an ssl: database needs it

    Stream.ssl_set_private_key_file(private_key)
    Stream.ssl_set_certificate_file(certificate)
    Stream.ssl_set_ca_cert_file(ca_cert)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    command.main(
        args=_expand_bare_verbose(sys.argv[1:] if argv is None else argv), prog_name=PROGRAM_NAME
    )


def _expand_bare_verbose(argv: Sequence[str]) -> list[str]:
    """ovs-vswitchd's ``-v`` takes an optional SPEC; alone it means "all to dbg".

    click options cannot have optional values, so a bare ``-v`` (last, or
    followed by another option) becomes ``--verbose=`` before parsing.
    """
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg in ("-v", "--verbose") and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out[i] = "--verbose="
    return out


def _log_path(flag: str | None, program: str) -> str | None:
    if flag is None:
        return None
    if flag:
        return os.path.abspath(flag)
    logdir = os.environ.get("PYVSWITCH_LOGDIR", DEFAULT_LOGDIR)
    return os.path.join(logdir, f"{program}.log")
