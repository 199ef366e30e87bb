"""The datapath's ports and bridges: opening, configuring and removing ports.

:class:`DatapathPorts`, which a :class:`~.dp.Datapath` holds, turns the
bridges of the configuration into datapath ports (netdevs with port
numbers), each bridge's local port and learning switch included, and
serves ``dpctl/add-if`` / ``del-if``.  A removed port's netdev is closed
only after the reconfigure that stops every PMD polling it.

Ports on kernel interfaces (:data:`REAL_NETDEV_TYPES`) follow their
interface (:meth:`DatapathPorts.track_links`, driven by the link tracker
and by every reload): one that vanishes is marked gone, one that comes
back, or was missing when the port was configured, is opened.  A port
opened anew keeps its number and statistics; its netdev is replaced, its
rx queues rebuilt and its generation bumped, so that PMD workers reopen
their side of it at the reload that follows.

Without bridges, ``dpctl/add-dp`` makes a datapath of another name whose
ports belong to no bridge (:meth:`DatapathPorts.create`); the
configuration leaves it alone until it brings bridges, which replace it.
There is one datapath at a time.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from ..config import BridgeConfig, PortConfig
from ..netdev.dummy import DummyNetdev
from ..netdev.provider import Netdev, NetdevError
from ..netdev.registry import NetdevRegistry
from ..observe.coverage import Counter, Coverage
from ..observe.vlog import Vlog, VlogModule
from ..odp.int_parse import parse_decimal
from . import rxq_sched
from .mac_learning import MacLearning
from .normal import NormalBridge
from .port import Port

if TYPE_CHECKING:
    from .dp_offload import DatapathOffload
    from .dp_settings import DatapathSettings

#: Hands frames for rx queue ``qid`` of a port to the PMD worker polling it.
ForwardRx = Callable[[Port, int, list[bytes]], Awaitable[bool]]

DP_NAME = "ovs-netdev"
#: The type the datapath's full name (``netdev@ovs-netdev``) shows.
DP_TYPE = "netdev"
#: OVS's test datapath class: ports numbered after their names (:func:`choose_port_no`).
DUMMY_DP_TYPE = "dummy"
#: Types ``dpctl/add-dp`` takes: OVS's tests make their datapaths as ``dummy@NAME``,
#: the userspace datapath under the name of OVS's test class; the datapath is the same.
DP_TYPES = (DP_TYPE, DUMMY_DP_TYPE)
#: Largest datapath port number (ODPP_NONE, all ones, is no port).
_MAX_PORT_NO = 0xFFFF_FFFE


def _bridges_dp_name(dp_type: str) -> str:
    """The name of the datapath that runs the bridges of type ``dp_type``, as OVS names it."""
    return DP_NAME if dp_type == DP_TYPE else f"ovs-{dp_type}"


def choose_port_no(name: str, taken: Container[int], by_name: bool) -> int:
    """The datapath port number a new port ``name`` gets (OVS's rule).

    Normally the lowest free number from 1.  ``by_name`` (a ``dummy``
    datapath, as OVS's test datapath does, so test texts can name ports by
    number): the decimal number starting at the first digit of the name,
    plus 100 for names beginning with ``br`` -- p1 is 1, br0 100 -- when
    that number is not 0 and free; else the lowest free one.
    """
    if by_name:
        digits = re.search(r"[0-9]+", name)
        if digits is not None:
            wanted = int(digits[0]) + (100 if name.startswith("br") else 0)
            if 0 < wanted <= _MAX_PORT_NO and wanted not in taken:
                return wanted
    port_no = 1
    while port_no in taken:
        port_no += 1
    return port_no


LOCAL_PORT_TYPE = "dummy-internal"
#: Types backed by a kernel interface (their problems log as ``netdev_linux``).
REAL_NETDEV_TYPES = frozenset(("afpacket", "system", "tap", "internal"))


class DatapathPorts:
    """The ports and bridges of a :class:`~.dp.Datapath`, which holds one of these.

    It fills the datapath's port map ``ports`` (port number to port) and
    keeps the bridges of the configuration, each bridge's NORMAL switch
    (``normal``), the errors of ports that could not be opened and the
    removed ports whose netdevs wait to be closed (:meth:`take_closing`).
    It never reconfigures the PMDs: the datapath does that after every
    change, under its lock.
    """

    def __init__(
        self,
        ports: dict[int, Port],
        *,
        log: VlogModule,
        vlog: Vlog,
        netdevs: NetdevRegistry,
        coverage: Coverage,
        settings: DatapathSettings,
        offload: DatapathOffload,
        port_added: Counter,
        port_removed: Counter,
        allocate_slot: Callable[[], int] = lambda: 0,
        forward_rx: ForwardRx | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``allocate_slot`` gives each port its statistics slot in the PMD
        workers' counter blocks; ``forward_rx``, set when PMDs run in worker
        processes, hands ``netdev-dummy/receive`` frames to the worker that
        polls the queue; ``clock`` (seconds) ages the bridges' MAC entries."""
        self.ports = ports
        self._clock = clock
        self._allocate_slot = allocate_slot
        self._forward_rx = forward_rx
        self.bridges: dict[str, BridgeConfig] = {}
        #: Port name -> why it could not be opened or configured (last apply).
        self.errors: dict[str, str] = {}
        #: Every port of the configuration: name -> (bridge, config), local ports too.
        self.wanted: dict[str, tuple[str, PortConfig]] = {}
        #: Bridge name -> its learning switch.
        self.normal: dict[str, NormalBridge] = {}
        self.log = log
        self.vlog = vlog
        self.netdevs = netdevs
        self.coverage = coverage
        self.settings = settings
        self.offload = offload
        self._closing: list[Port] = []
        self._retired: list[Netdev] = []
        self._cov_port_add = port_added
        self._cov_port_del = port_removed
        #: The datapath's name, which its port 0 bears.
        self.dp_name = DP_NAME
        #: Whether ``dpctl/add-dp`` made the datapath (it has no bridges then).
        self.standalone = False
        #: The datapath's type as its full name shows it (``dpctl/add-dp`` may say dummy).
        self.dp_type = DP_TYPE

    @property
    def closing(self) -> bool:
        """Whether removed ports wait for their netdevs to be closed."""
        return bool(self._closing)

    def take_closing(self) -> list[Port]:
        """The removed ports whose netdevs are to be closed now (each returned once)."""
        closing, self._closing = self._closing, []
        return closing

    @property
    def retiring(self) -> bool:
        """Whether ports were opened anew, their old netdevs waiting to be closed."""
        return bool(self._retired)

    def take_retired(self) -> list[Netdev]:
        """The netdevs replaced by reopening their ports, to be closed now."""
        retired, self._retired = self._retired, []
        return retired

    def unopened(self) -> list[tuple[str, str, str]]:
        """(name, type, why) of the configured ports that could not be opened."""
        return [
            (name, self.wanted[name][1].type, why)
            for name, why in sorted(self.errors.items())
            if name in self.wanted and self.by_name(name) is None
        ]

    def by_name(self, name: str) -> Port | None:
        for port in self.ports.values():
            if port.name == name:
                return port
        return None

    def apply_bridges(self, bridges: tuple[BridgeConfig, ...]) -> None:
        """Open, reconfigure and remove ports and bridges to match ``bridges``."""
        if self.standalone:
            if not bridges:
                return  # made by dpctl/add-dp: not the configuration's
            self.log.info(f"datapath {self.dp_name} replaced by the configured bridges")
            self.delete()
        dp_type = bridges[0].datapath_type if bridges else DP_TYPE
        if dp_type != self.dp_type:
            # Another class of datapath (OVS's tests use dummy@ovs-dummy): its
            # ports are numbered anew, so the bridges move over whole, as OVS
            # moves a bridge whose datapath_type changed.
            if self.ports:
                self.log.info(
                    f"datapath {self.dp_type}@{self.dp_name} replaced by "
                    f"{dp_type}@{_bridges_dp_name(dp_type)}"
                )
                self.delete()
            self.dp_type = dp_type
            self.dp_name = _bridges_dp_name(dp_type)
        wanted: dict[str, tuple[str, PortConfig]] = {}
        for bc in bridges:
            local_type = local_port_type(bc)
            wanted[bc.name] = (bc.name, PortConfig(name=bc.name, type=local_type))
            for pc in bc.ports:
                wanted[pc.name] = (bc.name, pc)
        self.bridges = {b.name: b for b in bridges}
        self.wanted = wanted
        for name in list(self.normal):
            if name not in self.bridges:
                del self.normal[name]
        for bc in bridges:
            self._configure_normal(bc)
        if bridges and self.by_name(self.dp_name) is None:
            self._open_port(None, PortConfig(name=self.dp_name, type=LOCAL_PORT_TYPE), port_no=0)
        for port in list(self.ports.values()):
            if port.port_no == 0:
                if not bridges:
                    self._remove_port(port)
                continue
            spec = wanted.get(port.name)
            if spec is None or spec[1].type != port.type or spec[0] != port.bridge:
                self._remove_port(port)
        self.errors = {}
        for name, (bridge_name, pc) in wanted.items():
            existing = self.by_name(name)
            if existing is None:
                self._open_port(bridge_name, pc)
                continue
            options = self._port_options(pc)
            if existing.netdev.error is not None and existing.type in REAL_NETDEV_TYPES:
                # Its device vanished: a reload is the operator's "try again".
                self._reopen(existing, options)
                self._set_port_other_config(existing, pc.other_config)
                continue
            try:
                existing.netdev.set_config(options)
                if options != existing.options:
                    # PMD workers reopen their side of the port with the new options.
                    existing.options = options
                    existing.generation += 1
            except NetdevError as exc:
                self.errors[name] = str(exc)
                self.log.warn(f"{name}: could not set configuration ({exc})")
            self._set_port_other_config(existing, pc.other_config)

    def _configure_normal(self, bc: BridgeConfig) -> None:
        """Create or update the bridge's learning switch from its other_config."""
        aging = _int_or(bc.other_config.get("mac-aging-time"), 300)
        size = _int_or(bc.other_config.get("mac-table-size"), 8192)
        bridge = self.normal.get(bc.name)
        if bridge is None:
            mac = MacLearning(self._clock, self.coverage, idle_time=aging, max_entries=size)
            bridge = NormalBridge(bc.name, mac, self.vlog.module("bridge"), self.coverage)
            self.normal[bc.name] = bridge
        else:
            bridge.mac_learning.set_idle_time(aging)
            bridge.mac_learning.set_max_entries(size)

    def _open_port(
        self, bridge: str | None, pc: PortConfig, port_no: int | None = None
    ) -> Port | None:
        try:
            netdev = self.netdevs.create(pc.type, pc.name, self._port_options(pc))
        except NetdevError as exc:
            self.errors[pc.name] = str(exc)
            text = str(exc).removeprefix(f"{pc.name}: ")
            if not text.startswith("could not open"):  # a provider's own wording
                text = f"could not open network device {pc.name} ({text})"
            self.log.warn(text)
            return None
        netdev.log = self.vlog.module(
            "netdev_linux" if pc.type in REAL_NETDEV_TYPES else "netdev_dummy"
        )
        if port_no is None:
            port_no = choose_port_no(pc.name, self.ports, self.dp_type == DUMMY_DP_TYPE)
        port = Port(port_no, netdev, bridge)
        port.options = self._port_options(pc)
        port.stats_slot = self._allocate_slot()
        forward_rx = self._forward_rx
        if forward_rx is not None and netdev.pmd and isinstance(netdev, DummyNetdev):
            netdev.rx_forward = lambda qid, frames: forward_rx(port, qid, frames)
        self._set_port_other_config(port, pc.other_config)
        self.ports[port_no] = port
        self.errors.pop(pc.name, None)
        self.offload.port_added(port)
        self._cov_port_add.inc()
        self.log.info(f"Port {port_no} ({pc.name}) added to datapath {self.dp_name}")
        return port

    def _reopen(self, port: Port, options: dict[str, str]) -> bool:
        """Open ``port``'s device anew in place of its netdev; False (logged) if it cannot be."""
        try:
            netdev = self.netdevs.create(port.type, port.name, options)
        except NetdevError as exc:
            self.log.warn(f"could not reopen network device {port.name} ({exc})")
            return False
        old = port.netdev
        netdev.log = old.log
        _carry_stats(old, netdev)
        port.netdev = netdev
        port.options = options
        port.rebuild_rxqs()  # new queues, new generation: PMD workers reopen their side
        self._retired.append(old)
        self.offload.port_removed(port.port_no)
        self.offload.port_added(port)
        self.log.info(
            f"Port {port.port_no} ({port.name}) reopened in datapath {self.dp_name} "
            f"(ifindex {netdev.ifindex})"
        )
        return True

    def track_links(self, names: Iterable[str] | None = None) -> bool:
        """Bring the ports on kernel interfaces ``names`` (None: all) in line with the kernel.

        A port whose interface is gone is marked so (its netdev stops using
        it); one whose interface is there again, under a new index or after
        its netdev gave up, is opened anew; a configured port that could not
        be opened is opened once its interface exists.  True when ports
        were added or reopened (the datapath must reconfigure).
        """
        tracked = self._tracked()
        changed = False
        for name in sorted(tracked if names is None else tracked & set(names)):
            ifindex = _ifindex(name)
            port = self.by_name(name)
            if port is None:
                bridge, pc = self.wanted[name]
                if ifindex and self._open_port(bridge, pc) is not None:
                    changed = True
                continue
            netdev = port.netdev
            if not ifindex:
                if netdev.error is None:
                    netdev.device_gone(f"device {name} disappeared")
            elif netdev.error is not None or ifindex != netdev.ifindex:
                changed |= self._reopen(port, port.options)
        return changed

    def _tracked(self) -> set[str]:
        """Names of the ports (open or not) whose device is a kernel interface."""
        names = {p.name for p in self.ports.values() if p.type in REAL_NETDEV_TYPES}
        return names | {
            name
            for name, (_, pc) in self.wanted.items()
            if pc.type in REAL_NETDEV_TYPES and name in self.errors
        }

    def _port_options(self, pc: PortConfig) -> dict[str, str]:
        return port_options(pc, self.netdevs, self.settings.userspace_tso)

    def _set_port_other_config(self, port: Port, other_config: Mapping[str, str]) -> None:
        oc = dict(other_config)
        port.other_config = oc
        text = oc.get("pmd-rxq-affinity")
        affinity: dict[int, int] = {}
        if text:
            try:
                affinity = rxq_sched.parse_affinity(text)
            except ValueError:
                self.log.err(f"{port.name}: invalid pmd-rxq-affinity '{text}'; keeping the old one")
                affinity = port.affinity
        port.affinity = affinity
        port.apply_affinity()

    def _remove_port(self, port: Port) -> None:
        # The netdev is closed after the reconfigure that stops every PMD using it.
        del self.ports[port.port_no]
        self.offload.port_removed(port.port_no)
        self._closing.append(port)
        self._cov_port_del.inc()
        self.log.info(f"Port {port.port_no} ({port.name}) removed from datapath {self.dp_name}")

    # -- port commands --------------------------------------------------------------

    def create(self, name: str, dp_type: str = DP_TYPE) -> None:
        """``dpctl/add-dp``: a datapath named ``name`` without bridges (none may exist)."""
        self.dp_name = name
        self.dp_type = dp_type
        self.standalone = True
        self._open_port(None, PortConfig(name=name, type=LOCAL_PORT_TYPE), port_no=0)

    def delete(self) -> None:
        """``dpctl/del-dp``: every port goes, and with them the datapath."""
        for port in sorted(self.ports.values(), key=lambda p: p.port_no, reverse=True):
            self._remove_port(port)
        self.dp_name = DP_NAME
        self.dp_type = DP_TYPE
        self.standalone = False
        self.normal.clear()

    def add(self, bridge: str | None, pc: PortConfig) -> Port:
        """``dpctl/add-if``: open port ``pc`` on ``bridge`` (None: in no bridge, for a
        datapath of ``dpctl/add-dp``); NetdevError saying why not."""
        if self.by_name(pc.name) is not None:
            raise NetdevError(f"{pc.name}: port already exists")
        if bridge is None and not self.standalone:
            raise NetdevError("no bridge to add the port to")
        if bridge is not None and bridge not in self.bridges:
            raise NetdevError(f"{bridge}: no such bridge")
        port = self._open_port(bridge, pc)
        if port is None:
            raise NetdevError(self.errors.pop(pc.name))
        return port

    def remove(self, name: str) -> None:
        """``dpctl/del-if``: remove port ``name``; NetdevError if there is no such port."""
        port = self.by_name(name)
        if port is None or port.port_no == 0 or port.name in self.bridges:
            raise NetdevError(f"{name}: no such port")
        self._remove_port(port)


def port_options(pc: PortConfig, netdevs: NetdevRegistry, userspace_tso: bool) -> dict[str, str]:
    """The port's options, plus ``userspace-tso`` from other_config where it applies."""
    options = dict(pc.options)
    cls = netdevs.get(pc.type)
    if cls is not None and cls.tso_capable:
        options.setdefault("userspace-tso", "true" if userspace_tso else "false")
    return options


def local_port_type(bc: BridgeConfig) -> str:
    """The type of the bridge's own port (OVS's internal interface ``br0``).

    Other_config ``local-port-type`` chooses; by default a bridge with a
    port on a real interface gets a real TAP device, as OVS's netdev
    datapath gives it, and a bridge of dummy ports a dummy one (so tests
    and demos create no kernel devices).
    """
    chosen = bc.other_config.get("local-port-type")
    if chosen:
        return chosen
    if any(pc.type in REAL_NETDEV_TYPES for pc in bc.ports):
        return "internal"
    return LOCAL_PORT_TYPE


def _ifindex(name: str) -> int:
    """The index of kernel interface ``name``, 0 if there is none."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


def _carry_stats(old: Netdev, new: Netdev) -> None:
    # In place: the new device's queues already count into this object.
    for field in attrs.fields(type(new.stats)):
        setattr(
            new.stats, field.name, getattr(new.stats, field.name) + getattr(old.stats, field.name)
        )


def _int_or(text: str | None, default: int) -> int:
    value = parse_decimal(text) if text is not None else None
    return default if value is None else value
