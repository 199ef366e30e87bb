"""The task that makes an Open_vSwitch database the daemon's configuration.

One :class:`OvsdbSource` runs for the daemon's lifetime:

1. It asks the server for the Open_vSwitch schema (so any schema version
   the server has will do) and replicates the tables and columns it uses
   with the ``ovs`` package's IDL client, driven by :mod:`.trio_poller`.
2. Whenever the replica changes it reads the configuration out of it
   (:mod:`.tables`) and, when that differs from the one applied last,
   applies it through the daemon's ordinary reconfiguration path (the same
   checks and errors as a reloaded file).
3. It then answers ``next_cfg`` with ``cur_cfg``, in one transaction with
   the interfaces' new port numbers and errors, so an ``ovs-vsctl`` that
   waits for ``cur_cfg`` returns once the change is in effect, and can read
   ``ofport`` at once.  Interface state is refreshed every second (only
   what changed is written) and ``statistics`` every five seconds.
4. When the connection drops the switch keeps forwarding on what it runs;
   the IDL reconnects with back-off, and the replica it fetches anew is
   compared with what runs, so only real differences are applied.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs
import trio
from ovs import jsonrpc
from ovs.db import idl as ovs_idl
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import config as config_mod
from ..config import DATAPATH_TYPES, Config, ConfigError
from ..observe.vlog import VlogModule
from . import writeback
from .tables import DbConfig, PortCheck, datapath_type, fingerprint, read_tables, root_row
from .trio_poller import TrioPoller

DATABASE = "Open_vSwitch"

#: The columns replicated per table (those missing from an older schema are skipped).
COLUMNS = {
    "Open_vSwitch": [
        "other_config",
        "bridges",
        "next_cfg",
        "cur_cfg",
        "datapath_types",
        "iface_types",
        "dpdk_initialized",
        "ovs_version",
        "db_version",
    ],
    "Bridge": ["name", "datapath_type", "other_config", "ports", "datapath_id", "datapath_version"],
    "Port": ["name", "interfaces"],
    "Interface": [
        "name",
        "type",
        "options",
        "other_config",
        "ofport_request",
        "statistics",
        *writeback.INTERFACE_COLUMNS,
    ],
}

#: Columns only this daemon writes: their changes do not wake the configuration reader.
WRITE_ONLY = {
    "Open_vSwitch": ["cur_cfg", "datapath_types", "iface_types", "dpdk_initialized"],
    "Bridge": ["datapath_id", "datapath_version"],
    "Interface": ["statistics", *writeback.INTERFACE_COLUMNS],
}

STATUS_INTERVAL = 1.0
STATISTICS_INTERVAL = 5.0
#: How long to wait before asking again for a schema the server refused.
SCHEMA_RETRY = 5.0
#: How long to wait before starting over after an unexpected error.
RESTART_AFTER_ERROR = 5.0

Apply = Callable[[Config], Awaitable[None]]


@attrs.define
class SourceState:
    """What ``config/show`` and the metrics say about the database."""

    connected: bool = False
    #: Connections made after the first (each one a re-synchronisation).
    reconnects: int = 0
    #: The ``next_cfg`` last applied and answered.
    cur_cfg: int | None = None
    #: Since when the connection is down (monotonic seconds), None when up.
    down_since: float | None = None
    #: Interfaces refused, with the reason written to their row.
    rejected: dict[str, str] = attrs.field(factory=dict)
    #: Bridges of another datapath type, left alone.
    foreign_bridges: tuple[str, ...] = ()
    transaction_failures: int = 0


class OvsdbSource:
    """Keeps the daemon configured from, and reported into, one OVSDB server."""

    def __init__(
        self,
        remote: str,
        *,
        log: VlogModule,
        apply: Apply,
        base: Callable[[], Config],
        check_port: PortCheck,
        status: Callable[[], dict[str, Any]],
        statistics: Callable[[], dict[str, dict[str, int]]],
        iface_types: Callable[[], Iterable[str]],
        version: str,
    ) -> None:
        """``apply`` reconfigures the daemon; ``base`` gives the configuration
        whose ``[daemon]`` table (the file's) is kept; ``status`` and
        ``statistics`` read the datapath's interfaces (see
        :mod:`pyvswitchd.datapath.interface_status`)."""
        self.remote = remote
        self.log = log
        self._apply = apply
        self._base = base
        self._check_port = check_port
        self._status = status
        self._statistics = statistics
        self._iface_types = iface_types
        self._version = version
        self.state = SourceState()
        self._idl: Any = None
        self._db_version = ""
        self._applied: dict[str, Any] | None = None
        self._said: set[str] = set()
        self._root_written = False
        self._txn: Any = None
        self._next_status = 0.0
        self._next_statistics = 0.0
        self._last_seqno = -1
        self._fingerprint: tuple[Any, ...] | None = None

    # -- what others read -----------------------------------------------------

    def describe(self) -> str:
        """One line for ``config/show``: the source and its state."""
        state = "connected" if self.state.connected else "not connected"
        cur = "" if self.state.cur_cfg is None else f", cur_cfg {self.state.cur_cfg}"
        return f"database {self.remote} ({state}{cur})"

    def metrics(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "pyvswitchd_ovsdb_connected",
            "1 while the daemon is connected to its OVSDB server (--db), else 0",
            value=int(self.state.connected),
        )
        yield CounterMetricFamily(
            "pyvswitchd_ovsdb_reconnects",
            "Connections to the OVSDB server made after the first",
            value=self.state.reconnects,
        )
        yield CounterMetricFamily(
            "pyvswitchd_ovsdb_transaction_failures",
            "Write-back transactions the OVSDB server did not commit",
            value=self.state.transaction_failures,
        )
        yield GaugeMetricFamily(
            "pyvswitchd_ovsdb_rejected_interfaces",
            "Interfaces of the database this daemon refused (see their error column)",
            value=len(self.state.rejected),
        )

    # -- the task ---------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self.state.down_since = time.monotonic()
        while True:
            try:
                await self._connect_and_replicate()
            except Exception as exc:
                # A bug, or a server sending what the IDL cannot take, must
                # not end the switch: it keeps its configuration and this
                # starts over with a fresh connection.
                self.state.connected = False
                self.state.down_since = time.monotonic()
                self._txn = None
                self.log.err(
                    f"database {self.remote}: unexpected error, starting over in "
                    f"{RESTART_AFTER_ERROR:.0f} s: {exc!r}"
                )
                await trio.sleep(RESTART_AFTER_ERROR)

    async def _connect_and_replicate(self) -> None:
        self._last_seqno = -1
        self._root_written = False
        schema = await self._fetch_schema()
        helper = ovs_idl.SchemaHelper(None, schema)
        tables = schema.get("tables", {})
        for table, columns in COLUMNS.items():
            known = tables.get(table, {}).get("columns", {})
            helper.register_columns(table, [c for c in columns if c in known])
        self._db_version = str(schema.get("version", ""))
        self._idl = ovs_idl.Idl(self.remote, helper)
        for table, columns in WRITE_ONLY.items():
            for column in columns:
                replicated = self._idl.tables[table].columns.get(column)
                if replicated is not None:
                    replicated.alert = False
        try:
            await self._replicate()
        finally:
            self._idl.close()

    async def _fetch_schema(self) -> dict[str, Any]:
        """The server's Open_vSwitch schema, asked for until it is given."""
        started = time.monotonic()
        while True:
            session = jsonrpc.Session.open(self.remote)
            try:
                request_id = None
                while True:
                    session.run()
                    if session.is_connected() and request_id is None:
                        request = jsonrpc.Message.create_request("get_schema", [DATABASE])
                        request_id = request.id
                        session.send(request)
                    elif not session.is_connected():
                        request_id = None  # ask again once reconnected
                    msg = session.recv()
                    if msg is not None and request_id is not None and msg.id == request_id:
                        if msg.type == jsonrpc.Message.T_REPLY and isinstance(msg.result, dict):
                            return msg.result
                        self._say_once(
                            "no-schema",
                            f"database {self.remote}: no {DATABASE} database "
                            f"({msg.error}); asking again every {SCHEMA_RETRY:.0f} s",
                        )
                        break
                    if msg is not None:
                        continue
                    if not session.is_connected() and time.monotonic() - started > 2:
                        self._say_once(
                            "unreachable",
                            f"database {self.remote}: cannot connect yet; "
                            "trying again with back-off",
                            warn=True,
                        )
                    poller = TrioPoller()
                    session.wait(poller)
                    session.recv_wait(poller)
                    await poller.block()
            finally:
                session.close()
            await trio.sleep(SCHEMA_RETRY)

    async def _replicate(self) -> None:
        idl = self._idl
        while True:
            idl.run()
            # The IDL has no public "is connected"; its session does.
            connected = bool(idl._session.is_connected())
            self._track_connection(connected)
            if self._txn is not None:
                self._finish_transaction()
            if self._txn is None and idl.state == idl.IDL_S_MONITORING and connected:
                if idl.change_seqno != self._last_seqno:
                    self._last_seqno = idl.change_seqno
                    await self._reconfigure()
                    continue  # applying took time: let the IDL catch up first
                self._write_back()
            poller = TrioPoller()
            idl.wait(poller)
            if self._txn is not None:
                self._txn.wait(poller)
            now = time.monotonic()
            limit = max(0.0, min(self._next_status, self._next_statistics) - now)
            await poller.block(limit if connected else math.inf)

    def _track_connection(self, connected: bool) -> None:
        state = self.state
        if connected == state.connected:
            return
        state.connected = connected
        if connected:
            if state.down_since is not None and self._applied is not None:
                state.reconnects += 1
                self.log.info(
                    f"database {self.remote}: connection re-established after "
                    f"{time.monotonic() - state.down_since:.1f} s; re-reading the configuration"
                )
            else:
                self.log.info(f"database {self.remote}: connected")
            state.down_since = None
            self._root_written = False
            self._said.discard("down")
        else:
            state.down_since = time.monotonic()
            if self._applied is not None:
                self._say_once(
                    "down",
                    f"database {self.remote}: connection lost; forwarding on the last "
                    "configuration, reconnecting with back-off",
                    warn=True,
                )

    def _say_once(self, key: str, text: str, *, warn: bool = False) -> None:
        if key in self._said:
            return
        self._said.add(key)
        (self.log.warn if warn else self.log.info)(text)

    # -- reading ---------------------------------------------------------------

    async def _reconfigure(self) -> None:
        root = root_row(self._idl.tables["Open_vSwitch"].rows.values())
        if root is None:
            self._say_once(
                "no-root",
                f"database {self.remote}: the Open_vSwitch table is empty "
                "(ovs-vsctl --no-wait init creates its row); waiting for it",
            )
            return
        self._said.discard("no-root")
        seen = fingerprint(root)
        if seen == self._fingerprint:
            return  # a status write of ours, or another table: nothing to re-read
        self._fingerprint = seen
        db = read_tables(root, self._check_port)
        self._report(db)
        if db.document != self._applied:
            await self._apply_document(db)
        # Answered whether or not anything changed: ovs-vsctl waits for it.
        self.state.cur_cfg = db.next_cfg
        self._next_status = 0.0

    def _report(self, db: DbConfig) -> None:
        state = self.state
        for name in db.foreign_bridges:
            if name not in state.foreign_bridges:
                self.log.info(
                    f"bridge {name}: datapath_type is neither netdev nor dummy: "
                    "not this daemon's, ignored"
                )
        state.foreign_bridges = db.foreign_bridges
        for name, why in sorted(db.rejected.items()):
            if state.rejected.get(name) != why:
                self.log.warn(f"interface {name}: not configured: {why}")
        state.rejected = dict(db.rejected)
        for warning in db.warnings:
            self._say_once(f"warning:{warning}", warning, warn=True)

    async def _apply_document(self, db: DbConfig) -> None:
        self._applied = db.document
        try:
            new = config_mod.from_dict(db.document, source=f"database {self.remote}")
        except ConfigError as exc:  # each part passed alone: only their mix can fail
            self.log.err(f"configuration from the database not applied: {exc}")
            return
        new = attrs.evolve(new, daemon=self._base().daemon)
        try:
            await self._apply(new)
        except ConfigError as exc:
            self.log.err(f"configuration from the database not applied: {exc}")
            return
        except Exception as exc:  # a bug: keep the switch, say what failed
            self.log.err(f"configuration from the database not applied: {exc!r}")
            return
        self.log.info(f"configuration from database {self.remote} applied (next_cfg {db.next_cfg})")

    # -- writing -----------------------------------------------------------------

    def _write_back(self) -> None:
        """Start a transaction with what differs from the rows, if anything does."""
        idl = self._idl
        root = root_row(idl.tables["Open_vSwitch"].rows.values())
        if root is None:
            return
        now = time.monotonic()
        statistics_due = now >= self._next_statistics
        status_due = now >= self._next_status
        if not (status_due or statistics_due or self._cur_cfg_due(root)):
            return
        txn = ovs_idl.Transaction(idl)
        txn.add_comment("pyvswitchd: status")
        changes = 0
        if self._cur_cfg_due(root):
            root.cur_cfg = self.state.cur_cfg
            changes += 1
        if not self._root_written:
            wanted = writeback.root_columns(
                iface_types=self._iface_types(), version=self._version, db_version=self._db_version
            )
            changes += self._set(root, wanted)
        if status_due:
            changes += self._write_interfaces(idl)
            self._next_status = now + STATUS_INTERVAL
        if statistics_due:
            changes += self._write_statistics(idl)
            self._next_statistics = now + STATISTICS_INTERVAL
        if not changes:
            txn.abort()
            self._root_written = True
            return
        self._txn = txn
        self._finish_transaction()

    def _cur_cfg_due(self, root: Any) -> bool:
        return self.state.cur_cfg is not None and root.cur_cfg != self.state.cur_cfg

    def _set(self, row: Any, wanted: dict[str, Any]) -> int:
        diff = writeback.changed(row, wanted, self._idl.tables[row._table.name].columns)
        for column, value in diff.items():
            setattr(row, column, value)
        return len(diff)

    def _write_interfaces(self, idl: Any) -> int:
        ours = self._our_bridges(idl)
        status = self._status()
        changes = 0
        for bridge in ours:
            changes += self._set(bridge, writeback.bridge_columns(str(bridge.name)))
            for port in bridge.ports:
                for iface in port.interfaces:
                    name = str(iface.name)
                    if name in self.state.rejected:
                        wanted = writeback.rejected_columns(self.state.rejected[name])
                    elif name in status:
                        wanted = writeback.interface_columns(status[name])
                    else:
                        continue  # not applied yet
                    changes += self._set(iface, wanted)
        return changes

    def _write_statistics(self, idl: Any) -> int:
        if "statistics" not in idl.tables["Interface"].columns:
            return 0
        stats = self._statistics()
        changes = 0
        for bridge in self._our_bridges(idl):
            for port in bridge.ports:
                for iface in port.interfaces:
                    counts = stats.get(str(iface.name))
                    if counts is not None and iface.statistics != counts:
                        iface.statistics = counts
                        changes += 1
        return changes

    @staticmethod
    def _our_bridges(idl: Any) -> list[Any]:
        return [b for b in idl.tables["Bridge"].rows.values() if datapath_type(b) in DATAPATH_TYPES]

    def _finish_transaction(self) -> None:
        txn = self._txn
        status = txn.commit()
        if status == ovs_idl.Transaction.INCOMPLETE:
            return
        self._txn = None
        if status in (ovs_idl.Transaction.SUCCESS, ovs_idl.Transaction.UNCHANGED):
            self._root_written = True
            return
        # TRY_AGAIN after a reconnect or a concurrent change: the next pass
        # compares the rows again and writes what still differs.
        self.state.transaction_failures += 1
        self._next_status = 0.0
        self.log.dbg(f"database {self.remote}: status transaction: {txn.get_error()}")
