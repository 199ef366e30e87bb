"""Unit tests for pyvswitchd.ovsdb.source against a real ovsdb-server.

The source runs in this test's trio loop with stand-ins for the daemon
(``apply`` records configurations); ovs-vsctl runs as a child process, so
its wait for ``cur_cfg`` is answered by the source while the test awaits.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from pyvswitchd.config import Config
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.ovsdb.source import OvsdbSource
from tests.e2e.ovsdb_server import OVS_VSCTL, SKIP, OvsdbServer

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")


class FakeDaemon:
    def __init__(self) -> None:
        self.applied: list[Config] = []
        self.fail_next: BaseException | None = None

    async def apply(self, cfg: Config) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.applied.append(cfg)


async def vsctl(server: OvsdbServer, *args: str) -> str:
    done = await trio.run_process(
        [OVS_VSCTL, f"--db={server.remote}", "--timeout=10", *args],  # type: ignore[list-item]
        capture_stdout=True,
        capture_stderr=True,
    )
    return done.stdout.decode()


@asynccontextmanager
async def running_source(
    tmp_path: Path,
) -> AsyncIterator[tuple[OvsdbServer, FakeDaemon, io.StringIO]]:
    server = OvsdbServer(tmp_path / "db")
    out = io.StringIO()
    log = Vlog("test", console=out, syslog_method="null").module("ovsdb")
    daemon = FakeDaemon()
    source = OvsdbSource(
        server.remote,
        log=log,
        apply=daemon.apply,
        base=Config,
        check_port=lambda cfg: None,
        status=dict,
        statistics=dict,
        iface_types=lambda: ["dummy"],
        version="9.9.9",
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(source.run)
            yield server, daemon, out
            nursery.cancel_scope.cancel()
    finally:
        server.stop()


async def test_applies_each_change_and_answers_cur_cfg(tmp_path: Path) -> None:
    async with running_source(tmp_path) as (server, daemon, _out):
        with trio.fail_after(15):
            await vsctl(
                server, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"
            )
        assert [b.name for b in daemon.applied[-1].bridges] == ["br0"]
        assert daemon.applied[-1].source == f"database {server.remote}"
        cur = (await vsctl(server, "get", "Open_vSwitch", ".", "cur_cfg")).strip()
        nxt = (await vsctl(server, "get", "Open_vSwitch", ".", "next_cfg")).strip()
        assert cur == nxt != "0"
        assert (await vsctl(server, "get", "Open_vSwitch", ".", "ovs_version")).strip() == '"9.9.9"'
        with trio.fail_after(15):
            await vsctl(server, "set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3")
        assert daemon.applied[-1].other_config.pmd_cpu_mask == 0x3


async def test_an_apply_that_fails_is_logged_and_answered(tmp_path: Path) -> None:
    async with running_source(tmp_path) as (server, daemon, out):
        daemon.fail_next = RuntimeError("boom")
        with trio.fail_after(15):  # cur_cfg is answered all the same: vsctl returns
            await vsctl(
                server, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"
            )
        assert "configuration from the database not applied: RuntimeError('boom')" in out.getvalue()
        with trio.fail_after(15):
            await vsctl(server, "add-port", "br0", "p1")
        assert [p.name for p in daemon.applied[-1].bridges[0].ports] == ["p1"]


async def test_status_writes_do_not_reapply(tmp_path: Path) -> None:
    async with running_source(tmp_path) as (server, daemon, _out):
        with trio.fail_after(15):
            await vsctl(
                server, "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"
            )
        count = len(daemon.applied)
        # A change of a column the daemon only writes (and of external_ids) is no reconfiguration.
        await vsctl(server, "--no-wait", "set", "Interface", "br0", "statistics:rx_packets=5")
        await vsctl(server, "--no-wait", "set", "Bridge", "br0", "external_ids:x=y")
        await trio.sleep(0.5)
        assert len(daemon.applied) == count
