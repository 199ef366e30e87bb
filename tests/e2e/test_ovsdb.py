"""pyvswitchd configured by a real ovsdb-server and ovs-vsctl (``--db``).

Each test starts its own ovsdb-server (private directory, Debian's
Open_vSwitch schema) and the real daemon with ``--db unix:PATH``, then
works as an operator does: ``ovs-vsctl`` to change the switch and read
the rows back, ``ovs-appctl``/``pyappctl`` to see the datapath.  ovs-vsctl
waits for ``cur_cfg`` to reach its ``next_cfg``, so what it changed must be
in effect when it returns: the checks below read the datapath right after
it, without waiting.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import DaemonProcess
from .ovsdb_server import SKIP, OvsdbServer
from .test_metrics import free_port, listed_families, scrape
from .test_real_interfaces import _can_netns, sh

pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

DAEMON_ONLY = '[daemon]\nmetrics-address = "none"\n'

SINK_MAC = "02:00:00:00:00:02"
FROM_SINK = (
    f"eth(src={SINK_MAC},dst=ff:ff:ff:ff:ff:ff),eth_type(0x0800),"
    "ipv4(src=10.0.0.2,dst=10.0.0.1,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
)


StartDaemon = Callable[..., DaemonProcess]


def start_on(start_daemon: StartDaemon, ovsdb: OvsdbServer, *args: str) -> DaemonProcess:
    return start_daemon(DAEMON_ONLY, "--db", ovsdb.remote, *args)


def add_netdev_bridge(ovsdb: OvsdbServer, name: str = "br0") -> None:
    ovsdb.vsctl("add-br", name, "--", "set", "bridge", name, "datapath_type=netdev")


def rxq_layout(text: str) -> dict[int, list[tuple[str, int]]]:
    """core id -> [(port, queue)] of a pmd-rxq-show reply."""
    layout: dict[int, list[tuple[str, int]]] = {}
    core = -1
    for line in text.splitlines():
        m = re.match(r"pmd thread numa_id \d+ core_id (\d+):", line)
        if m:
            core = int(m.group(1))
            layout[core] = []
            continue
        m = re.match(r"\s+port: (\S+)\s+queue-id:\s+(\d+)", line)
        if m:
            layout[core].append((m.group(1), int(m.group(2))))
    return layout


def column(ovsdb: OvsdbServer, table: str, record: str, name: str) -> str:
    return ovsdb.vsctl("get", table, record, name).strip()


def wait_for(check: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_vsctl_changes_are_in_effect_when_it_returns(
    start_daemon: StartDaemon, ovsdb: OvsdbServer
) -> None:
    d = start_on(start_daemon, ovsdb)
    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:dummy-numa=0,0")
    add_netdev_bridge(ovsdb)
    ovsdb.vsctl(
        "add-port", "br0", "p0", "--", "set", "Interface", "p0", "type=dummy-pmd", "options:n_rxq=2"
    )
    assert rxq_layout(d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout) == {
        0: [("p0", 0), ("p0", 1)]
    }

    ovsdb.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-cpu-mask=0x3")
    layout = rxq_layout(d.appctl("dpif-netdev/pmd-rxq-show").stdout)
    assert sorted(layout) == [0, 1]
    assert sorted(q for qs in layout.values() for q in qs) == [("p0", 0), ("p0", 1)]

    ovsdb.vsctl("set", "Interface", "p0", "options:n_rxq=4")
    layout = rxq_layout(d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout)
    assert sorted(q for qs in layout.values() for q in qs) == [("p0", q) for q in range(4)]

    ovsdb.vsctl("set", "Interface", "p0", 'other_config:pmd-rxq-affinity="0:1,1:1"')
    text = d.appctl("dpif-netdev/pmd-rxq-show").stdout
    layout = rxq_layout(text)
    assert layout[1] == [("p0", 0), ("p0", 1)]
    assert sorted(layout[0]) == [("p0", 2), ("p0", 3)]
    assert re.search(r"core_id 1:\n\s+isolated : true", text), text

    ovsdb.vsctl(
        "add-port", "br0", "src", "--", "set", "Interface", "src", "type=traffic-source",
        "options:pps=1000",
    )  # fmt: skip
    assert "src (traffic-source" in d.call("dpctl/show")
    ovsdb.vsctl("del-port", "br0", "src")
    assert "src" not in d.call("dpctl/show")
    ovsdb.vsctl("del-port", "br0", "p0")
    assert "p0" not in d.ovs_appctl("dpif-netdev/pmd-rxq-show").stdout
    assert "p0" not in d.call("dpctl/show")
    ovsdb.vsctl("del-br", "br0")
    assert d.call("dpctl/show") == ""


def test_interface_columns_are_written_back(start_daemon: StartDaemon, ovsdb: OvsdbServer) -> None:
    d = start_on(start_daemon, ovsdb)
    add_netdev_bridge(ovsdb)
    ovsdb.vsctl(
        "add-port", "br0", "sink", "--", "set", "Interface", "sink", "type=dummy-pmd",
        "--", "add-port", "br0", "src", "--", "set", "Interface", "src", "type=traffic-source",
        "options:pps=2000",
    )  # fmt: skip
    # The OpenFlow numbers are dpif/show's, the bridge's own port is LOCAL.
    shown = d.ovs_appctl("dpif/show").stdout
    for name in ("sink", "src", "br0"):
        ofport = column(ovsdb, "Interface", name, "ofport")
        assert re.search(rf"\b{name} {ofport}/\d+:", shown), (name, ofport, shown)
    assert column(ovsdb, "Interface", "br0", "ofport") == "65534"
    for name in ("sink", "src"):
        assert column(ovsdb, "Interface", name, "link_state") == "up"
        assert column(ovsdb, "Interface", name, "admin_state") == "up"
        assert column(ovsdb, "Interface", name, "mtu") == "1500"
        assert re.fullmatch(
            r'"[0-9a-f]{2}(:[0-9a-f]{2}){5}"', column(ovsdb, "Interface", name, "mac_in_use")
        )
        assert column(ovsdb, "Interface", name, "error") == "[]"
    assert column(ovsdb, "Bridge", "br0", "datapath_version") == '"<built-in>"'
    assert re.fullmatch(r'"[0-9a-f]{16}"', column(ovsdb, "Bridge", "br0", "datapath_id"))
    assert column(ovsdb, "Open_vSwitch", ".", "datapath_types") == "[netdev]"
    assert "dummy-pmd" in column(ovsdb, "Open_vSwitch", ".", "iface_types")
    assert column(ovsdb, "Open_vSwitch", ".", "dpdk_initialized") == "false"

    # Statistics arrive within the 5-second period, and match dpctl/show -s.
    def flooded() -> int:
        text = column(ovsdb, "Interface", "sink", "statistics")
        m = re.search(r"tx_packets=(\d+)", text)
        return int(m.group(1)) if m else 0

    wait_for(lambda: flooded() > 0, "sink statistics", timeout=12)
    listed = ovsdb.vsctl("list", "Interface", "src")
    assert re.search(r"statistics\s+: \{.*rx_packets=[1-9]", listed), listed

    # A refused interface gets its error; the rest of the change still applies.
    ovsdb.vsctl(
        "add-port", "br0", "bad", "--", "set", "Interface", "bad", "type=dummy-pmd",
        "options:n_rxq=lots", "--", "add-port", "br0", "good", "--", "set", "Interface",
        "good", "type=dummy-pmd",
    )  # fmt: skip
    error = column(ovsdb, "Interface", "bad", "error")
    assert "n_rxq" in error and "lots" in error, error
    assert column(ovsdb, "Interface", "bad", "ofport") == "-1"
    assert "good (dummy-pmd" in d.call("dpctl/show")
    assert "bad" not in d.call("dpctl/show")
    ovsdb.vsctl("set", "Interface", "bad", "type=nosuchtype")
    assert "nosuchtype" in column(ovsdb, "Interface", "bad", "error")
    ovsdb.vsctl("set", "Interface", "bad", "type=dummy-pmd", "options:n_rxq=2")
    assert column(ovsdb, "Interface", "bad", "error") == "[]"
    assert int(column(ovsdb, "Interface", "bad", "ofport")) > 0
    assert "bad (dummy-pmd: n_rxq=2" in d.call("dpctl/show")
    log = d.log_path.read_text()
    assert log.count("interface bad: not configured:") == 2, log  # once per distinct reason


def test_database_restart_keeps_forwarding_and_resynchronises(
    start_daemon: StartDaemon, ovsdb: OvsdbServer
) -> None:
    count = 8000
    port = free_port()
    d = start_daemon(f'[daemon]\nmetrics-address = "127.0.0.1:{port}"\n', "--db", ovsdb.remote)

    def database_metrics() -> dict[str, float]:
        families = scrape(port)
        return {
            name: families[name].samples[0].value  # type: ignore[attr-defined]
            for name in (
                "pyvswitchd_ovsdb_connected",
                "pyvswitchd_ovsdb_reconnects",
                "pyvswitchd_ovsdb_transaction_failures",
                "pyvswitchd_ovsdb_rejected_interfaces",
            )
        }

    served = scrape(port)
    for name, kind, database_only in listed_families():
        if database_only:
            assert served[name.removesuffix("_total")].type == kind, name  # type: ignore[attr-defined]
    assert database_metrics()["pyvswitchd_ovsdb_connected"] == 1
    add_netdev_bridge(ovsdb)
    ovsdb.vsctl("add-port", "br0", "sink", "--", "set", "Interface", "sink", "type=dummy-pmd")
    d.call("netdev-dummy/receive", "sink", FROM_SINK)  # the bridge learns where the sink is
    ovsdb.vsctl(
        "add-port", "br0", "src", "--", "set", "Interface", "src", "type=traffic-source",
        "options:pps=2000", f"options:count={count}", f"options:dst_mac={SINK_MAC}",
    )  # fmt: skip
    time.sleep(0.5)
    ovsdb.stop(signal.SIGKILL)
    shown = wait_for(
        lambda: "(not connected" in (s := d.call("config/show")) and s, "disconnection"
    )
    assert "source: database " in str(shown)
    # Scrapes are served from the last collection: give it a period.
    wait_for(lambda: database_metrics()["pyvswitchd_ovsdb_connected"] == 0, "connected 0")
    # While the server is down the file changes, as another node's ovsdb-tool would.
    ovsdb.transact_offline(
        '["Open_vSwitch",{"op":"mutate","table":"Open_vSwitch","where":[],'
        '"mutations":[["other_config","insert",["map",[["tx-flush-interval","50"]]]]]}]'
    )
    time.sleep(1.0)
    ovsdb.start()
    wait_for(lambda: "tx-flush-interval=50" in d.call("config/show"), "re-synchronisation", 20)
    assert "(connected" in d.call("config/show")
    wait_for(
        lambda: (
            (m := database_metrics())["pyvswitchd_ovsdb_connected"] == 1
            and m["pyvswitchd_ovsdb_reconnects"] == 1
            and m["pyvswitchd_ovsdb_rejected_interfaces"] == 0
        ),
        "connected 1, reconnects 1",
    )

    def counts() -> tuple[int, int]:
        shown = d.call("dpctl/show", "-s")
        src = re.search(r"src \([^\n]*\n\s+RX packets:(\d+)", shown)
        sink = re.search(r"sink \([^\n]*\n[^\n]*\n\s+TX packets:(\d+) errors:0 dropped:0", shown)
        assert src and sink, shown
        return int(src.group(1)), int(sink.group(1))

    wait_for(lambda: counts() == (count, count), f"{count} packets through", timeout=20)
    assert int(d.call("coverage/read-counter", "datapath_drop_invalid_port")) == 0
    log = d.log_path.read_text()
    assert log.count("connection lost; forwarding on the last configuration") == 1, log
    assert log.count("connection re-established after") == 1, log
    # Back in charge: the database changes the switch again.
    ovsdb.vsctl("set", "Interface", "sink", "options:n_rxq=2")
    assert "sink (dummy-pmd: n_rxq=2" in d.call("dpctl/show")


def test_foreign_bridges_and_file_commands(start_daemon: StartDaemon, ovsdb: OvsdbServer) -> None:
    d = start_on(start_daemon, ovsdb)
    ovsdb.vsctl("add-br", "kernelbr")  # datapath_type "": the kernel datapath's, not ours
    add_netdev_bridge(ovsdb)
    ovsdb.vsctl("add-port", "kernelbr", "k0", "--", "set", "Interface", "k0", "type=dummy")
    shown = d.call("dpctl/show")
    assert "br0" in shown and "kernelbr" not in shown and "k0" not in shown
    assert column(ovsdb, "Interface", "k0", "ofport") == "[]"  # untouched
    assert (
        d.log_path.read_text().count("bridge kernelbr: datapath_type is neither netdev nor dummy")
        == 1
    )

    for args in (["config/set", "other_config:pmd-cpu-mask=0x3"], ["config/save", "x.toml"]):
        done = d.ovs_appctl(*args)
        assert done.returncode == 2, done
        assert f"the configuration is the database at {ovsdb.remote}" in done.stderr
        assert "ovs-vsctl" in done.stderr
    first = d.appctl("config/show").stdout.splitlines()[0]
    assert re.fullmatch(rf"source: database {ovsdb.remote} \(connected, cur_cfg \d+\)", first)
    # config/reload re-reads the file's [daemon] table and keeps the database's bridges.
    d.config_path.write_text('[daemon]\nmetrics-address = "none"\nctl-mode = "0700"\n')
    d.call("config/reload")
    assert os.stat(d.ctl_path).st_mode & 0o777 == 0o700
    assert "br0" in d.call("dpctl/show")


def test_started_before_its_database(start_daemon: StartDaemon, tmp_path: Path) -> None:
    sock = tmp_path / "ovsdb" / "db.sock"
    d = start_daemon(DAEMON_ONLY, "--db", f"unix:{sock}")
    assert d.call("dpctl/show") == ""
    wait_for(lambda: "cannot connect yet" in d.log_path.read_text(), "the unreachable warning", 10)
    server = OvsdbServer(tmp_path / "ovsdb")
    try:
        add_netdev_bridge(server)
        server.vsctl("add-port", "br0", "p1", "--", "set", "Interface", "p1", "type=dummy-pmd")
        assert "p1 (dummy-pmd" in d.call("dpctl/show")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (
            ["--db", "tcp:nohost"],
            DAEMON_ONLY,
            'pyvswitchd: --db: invalid value "tcp:nohost": expected "unix:PATH", '
            '"tcp:HOST:PORT", "ssl:HOST:PORT" or "none"',
        ),
        (
            ["--db", "punix:/tmp/x"],
            DAEMON_ONLY,
            'pyvswitchd: --db: invalid value "punix:/tmp/x": expected "unix:PATH", '
            '"tcp:HOST:PORT", "ssl:HOST:PORT" or "none": pyvswitchd connects to the '
            "database server, it does not listen",
        ),
        (
            [],
            DAEMON_ONLY + 'db = "db.sock"\n',
            'pyvswitchd: daemon:db: invalid value "db.sock": expected "unix:PATH", '
            '"tcp:HOST:PORT", "ssl:HOST:PORT" or "none"',
        ),
        (
            ["--db", "ssl:127.0.0.1:6640"],
            DAEMON_ONLY,
            "pyvswitchd: --db ssl:127.0.0.1:6640: an ssl: database needs --private-key, "
            "--certificate, --ca-cert",
        ),
    ],
)
def test_bad_database_address_is_one_line(
    tmp_path: Path, args: list[str], config: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyvswitchd",
            "--config",
            str(path),
            "--rundir",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr == expected + "\n"


NETNS_SKIP = _can_netns()


@pytest.mark.skipif(NETNS_SKIP is not None, reason=NETNS_SKIP or "")
def test_system_port_whose_interface_appears_later(
    start_daemon: StartDaemon, ovsdb: OvsdbServer
) -> None:
    ns = f"pyvdb{os.getpid()}"
    sh("ip", "netns", "add", ns)
    try:
        d = start_daemon(DAEMON_ONLY, "--db", ovsdb.remote, prefix=("ip", "netns", "exec", ns))
        add_netdev_bridge(ovsdb)
        ovsdb.vsctl("add-port", "br0", "late0")  # type "": a kernel interface
        assert column(ovsdb, "Interface", "late0", "error") == (
            '"could not open network device late0 (No such device)"'
        )
        assert column(ovsdb, "Interface", "late0", "ofport") == "-1"
        sh("ip", "-n", ns, "link", "add", "late0", "type", "veth", "peer", "name", "late0p")
        sh("ip", "-n", ns, "link", "set", "late0", "up")
        sh("ip", "-n", ns, "link", "set", "late0p", "up")
        wait_for(lambda: column(ovsdb, "Interface", "late0", "error") == "[]", "the error cleared")
        assert int(column(ovsdb, "Interface", "late0", "ofport")) > 0
        assert re.search(r"port \d+: late0 \(system", d.call("dpctl/show"))
        wait_for(lambda: column(ovsdb, "Interface", "late0", "link_state") == "up", "link up")
        index = sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/late0/ifindex").stdout
        assert column(ovsdb, "Interface", "late0", "ifindex") == index.strip()
        mtu = sh("ip", "netns", "exec", ns, "cat", "/sys/class/net/late0/mtu").stdout
        assert column(ovsdb, "Interface", "late0", "mtu") == mtu.strip()
        # Gone again: the error comes back.
        sh("ip", "-n", ns, "link", "del", "late0")
        wait_for(
            lambda: "disappeared" in column(ovsdb, "Interface", "late0", "error"),
            "the device's disappearance",
        )
    finally:
        sh("ip", "netns", "del", ns, check=False)


OPENSSL = shutil.which("openssl")


def make_certificates(directory: Path) -> None:
    """A CA and a certificate signed by it for each side (ca.*, server.*, client.*)."""

    def run(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=directory, check=True, capture_output=True)  # type: ignore[list-item]

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=test-ca",
        "-days",
        "2",
    )
    for side in ("server", "client"):
        run("req", *ec, "-keyout", f"{side}.key", "-out", f"{side}.csr", "-subj", f"/CN={side}")
        run("x509", "-req", "-in", f"{side}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{side}.crt", "-days", "2")  # fmt: skip


@pytest.mark.parametrize("method", ["tcp", pytest.param("ssl", marks=pytest.mark.skipif(
    OPENSSL is None, reason="openssl is not installed (apt-get install openssl)"))])  # fmt: skip
def test_tcp_and_ssl_databases(start_daemon: StartDaemon, tmp_path: Path, method: str) -> None:
    port = free_port()
    certs = tmp_path / "certs"
    certs.mkdir()
    server_args = [f"--remote=p{method}:{port}:127.0.0.1"]
    client_args: list[str] = []
    if method == "ssl":
        make_certificates(certs)
        server_args += [
            f"--{o}={certs}/server.{e}" for o, e in (("private-key", "key"), ("certificate", "crt"))
        ]
        server_args.append(f"--ca-cert={certs}/ca.crt")
        client_args = [
            "--private-key", f"{certs}/client.key",
            "--certificate", f"{certs}/client.crt",
            "--ca-cert", f"{certs}/ca.crt",
        ]  # fmt: skip
    server = OvsdbServer(tmp_path / "ovsdb", *server_args)
    try:
        d = start_daemon(DAEMON_ONLY, "--db", f"{method}:127.0.0.1:{port}", *client_args)
        add_netdev_bridge(server)  # through the Unix socket; the daemon is on tcp/ssl
        server.vsctl("add-port", "br0", "p1", "--", "set", "Interface", "p1", "type=dummy-pmd")
        assert "p1 (dummy-pmd" in d.call("dpctl/show")
        assert column(server, "Interface", "p1", "ofport") == "1"
        assert d.call("config/show").startswith(
            f"source: database {method}:127.0.0.1:{port} (connected"
        )
    finally:
        server.stop()
