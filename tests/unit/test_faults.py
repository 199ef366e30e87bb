"""Fault injection hooks: netdev-dummy/fault, offload-dummy/fault, tasks/show."""

from __future__ import annotations

import errno
import io

import pytest
import trio

from pyvswitchd.control.registry import CommandContext, CommandError, CommandRegistry
from pyvswitchd.datapath.perf import Stat
from pyvswitchd.netdev import faults
from pyvswitchd.netdev.dummy import DummyNetdev, DummyPmdNetdev
from pyvswitchd.netdev.faults import FaultMode, FaultSpec, NetdevFault, NetdevFaults
from pyvswitchd.netdev.provider import EINPROGRESS, OK, Netdev, NetdevError
from pyvswitchd.netdev.traffic_source import TrafficSource
from pyvswitchd.observe import tasks
from pyvswitchd.observe.coverage import Coverage
from pyvswitchd.observe.vlog import Vlog
from pyvswitchd.odp.packet import Packet
from pyvswitchd.offload import faults as offload_faults
from pyvswitchd.offload.dummy import DummyOffload
from pyvswitchd.offload.faults import OffloadFault, OffloadFaults, OffloadFaultSpec
from pyvswitchd.offload.pmd_context import PmdOffloadContext
from tests.dp_harness import running_datapath
from tests.offload_support import captured_vlog, log_messages


def frames(n: int, start: int = 0) -> list[bytes]:
    return [bytes([(start + i) % 256]) * 60 for i in range(n)]


def with_fault(netdev: DummyNetdev, log: Vlog | None = None, **spec: object) -> NetdevFaults:
    state = NetdevFaults(netdev.name, log.module("netdev_dummy") if log else None)
    state.set(FaultSpec(**spec))  # type: ignore[arg-type]
    netdev.fault = state
    return state


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- spec parsing ------------------------------------------------------------------


def test_parse_spec_keeps_unset_keys_and_names_bad_values() -> None:
    spec = faults.parse_spec("p1", ["send=error", "every=3"], FaultSpec())
    assert spec == FaultSpec(send=FaultMode.ERROR, every=3)
    spec = faults.parse_spec("p1", ["recv=stall", "vanish=true"], spec)
    assert spec.format() == "recv=stall send=error every=3 delay_us=1000 vanish=true"
    cases = {
        ("recv=bogus",): 'p1: bad recv "bogus" (expected none, error, stall, slow or raise)',
        ("every=0",): 'p1: bad every "0" (expected an integer 1..1000000)',
        ("delay_us=x",): 'p1: bad delay_us "x" (expected an integer 0..10000000)',
        ("vanish=yes",): 'p1: bad vanish "yes" (expected true or false)',
        ("send",): 'p1: "send": expected KEY=VALUE',
        ("colour=red",): 'p1: unknown fault option "colour" (value "red"; '
        "known: recv, send, every, delay_us, vanish)",
    }
    for args, text in cases.items():
        with pytest.raises(CommandError) as info:
            faults.parse_spec("p1", args, FaultSpec())
        assert str(info.value) == text


# -- receive -----------------------------------------------------------------------


def test_recv_error_loses_every_nth_burst_in_rx_errors() -> None:
    dev = DummyPmdNetdev("p1")
    state = with_fault(dev, recv=FaultMode.ERROR, every=2)
    got = 0
    for i in range(4):
        dev.inject(frames(10, i * 10))
        got += len(dev.recv(0))
    # Bursts 2 and 4 were lost; bursts 1 and 3 came through.
    assert (got, dev.stats.rx_packets, dev.stats.rx_errors) == (20, 20, 20)
    assert (state.rx.bursts, state.rx.faults, state.rx.packets) == (4, 2, 20)
    assert dev.recv(0) == []  # an empty poll is not a burst
    assert state.rx.bursts == 4


def test_recv_stall_keeps_frames_until_cleared_and_overflow_is_counted() -> None:
    dev = DummyNetdev("p1")
    with_fault(dev, recv=FaultMode.STALL)
    dev.inject(frames(DummyNetdev.MAX_RX_QUEUE + 5))
    assert dev.recv(0) == [] and dev.queued(0) == DummyNetdev.MAX_RX_QUEUE
    assert dev.stats.rx_dropped == 5
    dev.fault = None
    assert len(dev.recv(0)) == 32 and dev.stats.rx_packets == 32


async def test_stalled_or_vanished_device_is_not_readable_until_cleared() -> None:
    # A vanished device drops what arrives meanwhile; a stalled one queues it.
    for spec, queued in (({"recv": FaultMode.STALL}, 3), ({"vanish": True}, 2)):
        dev = DummyPmdNetdev("p1")
        dev.inject(frames(2))
        state = NetdevFaults("p1")
        state.set(FaultSpec(**spec))  # type: ignore[arg-type]
        dev.set_fault(state)
        with trio.move_on_after(0.05) as scope:
            await dev.wait_readable(0)
        assert scope.cancelled_caught  # frames queued, yet nothing to read
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dev.wait_readable, 0)
            await trio.sleep(0.01)
            dev.inject(frames(1))  # still blocked: the waiter keeps waiting
            await trio.sleep(0.01)
            dev.set_fault(None)  # wakes it: the nursery ends
        assert len(dev.recv(0)) == queued


def test_recv_slow_blocks_then_receives() -> None:
    dev = DummyNetdev("p1")
    slept: list[int] = []
    state = NetdevFaults("p1", sleep=slept.append)
    state.set(FaultSpec(recv=FaultMode.SLOW, delay_us=250))
    dev.fault = state
    dev.inject(frames(3))
    assert len(dev.recv(0)) == 3 and slept == [250]


def test_recv_raise_leaves_frames_queued() -> None:
    dev = DummyNetdev("p1")
    with_fault(dev, recv=FaultMode.RAISE)
    dev.inject(frames(3))
    with pytest.raises(NetdevFault):
        dev.recv(0)
    assert dev.queued(0) == 3 and dev.stats.rx_packets == 0


# -- transmit ----------------------------------------------------------------------


def test_send_error_counts_tx_errors_and_returns_eio() -> None:
    dev = DummyNetdev("p1")
    state = with_fault(dev, send=FaultMode.ERROR, every=3)
    rcs = [dev.send(0, [Packet(f) for f in frames(4, i)]) for i in range(6)]
    assert rcs == [OK, OK, errno.EIO, OK, OK, errno.EIO]
    assert (dev.stats.tx_packets, dev.stats.tx_errors) == (16, 8)
    assert (state.tx.faults, state.tx.packets) == (2, 8)
    assert dev.send(0, []) == OK and state.tx.bursts == 6  # empty batches are not bursts


def test_send_stall_holds_batches_until_forced_then_drops_them() -> None:
    dev = DummyPmdNetdev("p1")
    with_fault(dev, send=FaultMode.STALL)
    assert dev.send(0, [Packet(f) for f in frames(5)]) == EINPROGRESS
    assert dev.send(0, [Packet(f) for f in frames(3)]) == EINPROGRESS
    for _ in range(50):
        assert dev.process_async(0, False) == EINPROGRESS
    dev.fault = None  # a hung queue keeps what it held even once the fault is gone
    assert dev.process_async(0, False) == EINPROGRESS
    assert dev.process_async(0, True) != OK
    assert (dev.stats.tx_packets, dev.stats.tx_dropped, dev.pending_async(0)) == (0, 8, 0)


def test_send_stall_behind_async_batches_and_close_accounts_held_batches() -> None:
    dev = DummyNetdev("p1", {"tx_async_polls": "2"})
    assert dev.send(0, [Packet(f) for f in frames(2)]) == EINPROGRESS  # normal async
    with_fault(dev, send=FaultMode.STALL)
    assert dev.send(0, [Packet(f) for f in frames(3)]) == EINPROGRESS
    assert dev.process_async(0, False) == EINPROGRESS
    assert dev.process_async(0, False) == EINPROGRESS  # the first went out, the stalled stays
    assert dev.stats.tx_packets == 2
    dev.close()
    assert dev.stats.tx_dropped == 3


def test_send_raise_counts_nothing() -> None:
    dev = DummyNetdev("p1")
    with_fault(dev, send=FaultMode.RAISE)
    with pytest.raises(NetdevFault):
        dev.send(0, [Packet(f) for f in frames(2)])
    assert dev.stats.tx_packets == dev.stats.tx_errors == dev.stats.tx_dropped == 0


# -- vanish ------------------------------------------------------------------------


def test_vanished_device_fails_every_call_and_comes_back() -> None:
    for cls, status in ((DummyPmdNetdev, ", error="), (DummyNetdev, "error=")):
        dev = cls("p1")
        dev.inject(frames(2))
        state = with_fault(dev, vanish=True)
        assert status + '"No such device"' in dev.status()
        assert dev.inject(frames(3)) == 0 and dev.stats.rx_dropped == 3
        assert dev.recv(0) == [] and dev.queued(0) == 2
        assert dev.send(0, [Packet(f) for f in frames(4)]) == errno.ENODEV
        assert dev.stats.tx_errors == 4 and state.tx.packets == 4
        with pytest.raises(NetdevError, match="p1: No such device"):
            dev.set_config({"n_rxq": "2"})
        state.set(FaultSpec())
        dev.fault = None
        assert "error" not in dev.status()
        assert len(dev.recv(0)) == 2


# -- logging: once per rate-limit window -------------------------------------------


def test_fault_is_logged_once_per_window_with_a_summary_afterwards() -> None:
    clock = Clock()
    console = io.StringIO()
    vlog = Vlog("test", clock=clock, console=console, syslog_method="null")
    dev = DummyNetdev("p1")
    state = with_fault(dev, vlog, send=FaultMode.ERROR)
    for _ in range(100):
        dev.send(0, [Packet(f) for f in frames(1)])
    lines = console.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        "|netdev_dummy|WARN|error sending packets on p1: Input/output error [fault injection]"
    )
    clock.now += 30  # still inside the window
    dev.send(0, [Packet(f) for f in frames(1)])
    assert len(console.getvalue().splitlines()) == 1
    clock.now += 31
    dev.send(0, [Packet(f) for f in frames(1)])
    lines = console.getvalue().splitlines()[1:]
    assert len(lines) == 2
    assert "Dropped 100 log messages in last 61 seconds" in lines[0]
    assert lines[1].endswith("error sending packets on p1: Input/output error [fault injection]")
    assert state.tx.faults == 102
    # The receive direction has a window of its own.
    state.set(FaultSpec(send=FaultMode.ERROR, recv=FaultMode.STALL))
    dev.inject(frames(1))
    dev.recv(0)
    assert (
        console.getvalue()
        .splitlines()[-1]
        .endswith("netdev_dummy|WARN|p1: receive stalled on queue 0 [fault injection]")
    )


# -- the commands ------------------------------------------------------------------


class Commands:
    def __init__(self) -> None:
        self.console, self.vlog = captured_vlog()
        self.coverage = Coverage()
        self.ports: dict[str, Netdev] = {
            "p1": DummyPmdNetdev("p1"),
            "src": TrafficSource("src"),
        }
        self.registry = CommandRegistry()
        faults.register_commands(self.registry, self.ports.get, self.vlog, self.coverage)

    async def call(self, command: str, *args: str) -> str:
        reply = await self.registry.invoke(CommandContext(command), list(args))
        return reply.text

    async def error(self, command: str, *args: str) -> str:
        with pytest.raises(CommandError) as info:
            await self.call(command, *args)
        return str(info.value)


async def test_fault_commands_set_show_clear() -> None:
    c = Commands()
    p1 = c.ports["p1"]
    assert isinstance(p1, DummyNetdev)
    assert c.registry.get("netdev-dummy/fault").mutating  # type: ignore[union-attr]
    assert not c.registry.get("netdev-dummy/fault-show").mutating  # type: ignore[union-attr]
    reply = await c.call("netdev-dummy/fault", "p1", "send=error", "every=2")
    assert reply == "p1: recv=none send=error every=2 delay_us=1000 vanish=false\n"
    assert p1.fault is not None
    for _ in range(4):
        p1.send(0, [Packet(frames(1)[0])])
    assert c.coverage.define("netdev_fault_injected").total == 2
    reply = await c.call("netdev-dummy/fault", "p1", "vanish=true")
    assert "send=error every=2 delay_us=1000 vanish=true" in reply
    assert "p1: device vanished (No such device) [fault injection]" in log_messages(c.console)
    assert await c.call("netdev-dummy/fault", "p1", "clear") == (
        "p1: recv=none send=none every=1 delay_us=1000 vanish=false\n"
    )
    assert p1.fault is None
    assert await c.call("netdev-dummy/fault-show") == (
        "p1: recv=none send=none every=1 delay_us=1000 vanish=false\n"
        "  recv: 0 bursts hit, 0 packets\n"
        "  send: 2 bursts hit, 2 packets\n"
    )
    # Setting only inactive values leaves no hook behind.
    await c.call("netdev-dummy/fault", "p1", "every=5")
    assert p1.fault is None
    assert await c.error("netdev-dummy/fault", "src", "send=error") == "no such dummy netdev"
    assert await c.error("netdev-dummy/fault", "nope", "send=error") == "no such dummy netdev"
    assert await c.error("netdev-dummy/fault", "p1", "send=maybe") == (
        'p1: bad send "maybe" (expected none, error, stall, slow or raise)'
    )
    assert await c.error("netdev-dummy/fault-show", "src") == "src: no fault was ever set"


async def test_a_recreated_device_starts_without_the_old_fault() -> None:
    c = Commands()
    await c.call("netdev-dummy/fault", "p1", "recv=stall")
    c.ports["p1"] = DummyPmdNetdev("p1")
    reply = await c.call("netdev-dummy/fault", "p1", "send=error")
    assert reply.startswith("p1: recv=none send=error")


# -- the datapath under netdev faults -----------------------------------------------

DP_CONFIG = """
[other_config]
pmd-cpu-mask = "0x1"
dummy-numa = "0"
[[bridge]]
name = "br0"
  [[bridge.port]]
  name = "p1"
  type = "{t1}"
  [[bridge.port]]
  name = "p2"
  type = "{t2}"
  [[bridge.port]]
  name = "p3"
  type = "dummy-pmd"
"""
MAC = "50:54:00:00:00:{:02x}"


def flow(src: int, dst: int) -> str:
    return (
        f"eth(src={MAC.format(src)},dst={MAC.format(dst)}),eth_type(0x0800),"
        "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=17,tos=0,ttl=64,frag=no),udp(src=1,dst=2)"
    )


async def test_stalled_pmd_transmit_queue_is_forced_and_every_packet_counted() -> None:
    async with running_datapath(DP_CONFIG.format(t1="dummy-pmd", t2="dummy-pmd")) as h:
        p1, p2 = h.dp.netdev_by_name("p1"), h.dp.netdev_by_name("p2")
        assert isinstance(p1, DummyNetdev) and isinstance(p2, DummyNetdev)
        await h.call("netdev-dummy/receive", "p2", flow(2, 0xFF))  # learn host 2 on p2
        await h.wait_for(lambda: p1.stats.tx_packets == 1)
        with_fault(p2, send=FaultMode.STALL)
        for _ in range(20):
            await h.call("netdev-dummy/receive", "p1", *[flow(1, 2)] * 10)
            await trio.sleep(0.005)
        s2 = p2.stats
        await h.wait_for(lambda: s2.tx_dropped == 200)
        assert (p1.stats.rx_packets, s2.tx_packets, p2.pending_async(0)) == (200, 0, 0)
        pmd = h.dp.pmds[0]
        assert pmd.perf.n[Stat.WORK_DROPPED] >= 1


@pytest.mark.parametrize("side", ["recv", "send"])
@pytest.mark.parametrize("kind", ["dummy-pmd", "dummy"])
async def test_datapath_survives_a_raising_netdev(kind: str, side: str) -> None:
    async with running_datapath(DP_CONFIG.format(t1=kind, t2=kind)) as h:
        p1, p2, p3 = (h.dp.netdev_by_name(n) for n in ("p1", "p2", "p3"))
        assert isinstance(p1, DummyNetdev) and isinstance(p2, DummyNetdev)
        assert isinstance(p3, DummyNetdev)
        await h.call("netdev-dummy/receive", "p2", flow(2, 0xFF))
        await h.call("netdev-dummy/receive", "p3", flow(3, 0xFF))
        await h.wait_for(lambda: p1.stats.tx_packets == 2)
        p2_sent = p2.stats.tx_packets  # p3's broadcast
        with_fault(p1 if side == "recv" else p2, **{side: FaultMode.RAISE})
        await h.call("netdev-dummy/receive", "p1", *[flow(1, 2)] * 10)
        await trio.sleep(0.1)
        # The faulty port's packets are counted as drops somewhere; the others still flow.
        await h.call("netdev-dummy/receive", "p3", *[flow(3, 1)] * 10)
        await h.wait_for(lambda: p1.stats.tx_packets == 12, limit=2)
        if side == "send":
            drops = sum(
                c.total for c in h.coverage.counters() if c.name.startswith("datapath_drop_")
            )
            assert p1.stats.rx_packets == p2.stats.tx_packets - p2_sent + drops == 10


# -- offload faults ----------------------------------------------------------------


def test_offload_fault_raise_removes_the_callback_once_and_is_counted() -> None:
    console, vlog = captured_vlog()
    coverage = Coverage()
    from pyvswitchd.offload.registry import Offload

    offload = Offload(vlog, coverage)
    offload.config.set_global_config({"hw-offload": "true"})
    collection, _ = offload.open("dummy@ovs-dummy", "dummy")
    dummy = collection.find("dummy")
    assert isinstance(dummy, DummyOffload)
    state = OffloadFaults(vlog.module("dpif_offload_dummy"))
    state.set(OffloadFaultSpec(work="raise", every=3))
    dummy.fault = state
    failed = coverage.define("dpif_offload_work_failed")
    ctx = PmdOffloadContext(0, 0, vlog.module("dpif_offload"), failed)
    ctx.reload(collection, True)
    for _ in range(10):
        ctx.do_work()
    # Runs 1 and 2 worked, run 3 raised and the callback left this PMD's work list.
    assert dummy.do_work_counter.total == 2 and ctx.nodes == [] and failed.total == 1
    msgs = log_messages(console, "WARN") + log_messages(console, "ERR")
    assert msgs == [
        "dummy: work callback raising on pmd-c00 [fault injection]",
        "pmd-c00: offload provider dummy work callback failed "
        "(OffloadFault('dummy: injected work callback fault')); "
        "removed from this PMD's work list",
    ]
    ctx.reload(collection, True)  # the next reload brings it back
    assert len(ctx.nodes) == 1


def test_offload_fault_slow_blocks_and_parses() -> None:
    slept: list[int] = []
    state = OffloadFaults(sleep=slept.append)
    state.set(offload_faults.parse_spec(["work=slow", "delay_us=70", "every=2"], state.spec))
    for _ in range(5):
        state.before_work("dummy", 1)
    assert slept == [70, 70] and state.runs.faults == 2
    assert state.format() == "work=slow every=2 delay_us=70\n  work: 2 runs hit\n"
    with pytest.raises(CommandError, match=r'dummy: bad work "fast" \(expected none, raise or'):
        offload_faults.parse_spec(["work=fast"], state.spec)
    state.set(OffloadFaultSpec(work="raise"))
    with pytest.raises(OffloadFault):
        state.before_work("dummy", 1)


async def test_offload_fault_command_needs_an_open_provider() -> None:
    _, vlog = captured_vlog()
    providers: list[DummyOffload] = []
    registry = CommandRegistry()
    offload_faults.register_commands(registry, lambda: providers, vlog, Coverage())

    async def call(*args: str) -> str:
        reply = await registry.invoke(CommandContext("offload-dummy/fault"), list(args))
        return reply.text

    with pytest.raises(CommandError, match="no dummy offload provider is open"):
        await call("work=raise")
    from pyvswitchd.offload.registry import Offload

    offload = Offload(vlog, Coverage())
    offload.config.set_global_config({"hw-offload": "true"})
    collection, _ = offload.open("dummy@ovs-dummy", "dummy")
    dummy = collection.find("dummy")
    assert isinstance(dummy, DummyOffload)
    providers.append(dummy)
    assert await call("work=slow", "delay_us=5") == "work=slow every=1 delay_us=5\n"
    assert dummy.fault is not None
    assert await call("clear") == "work=none every=1 delay_us=1000\n"
    assert dummy.fault is None


# -- tasks/show --------------------------------------------------------------------


async def test_tasks_show_counts_live_tasks() -> None:
    registry = CommandRegistry()
    tasks.register_commands(registry)
    before = len(tasks.live_tasks())
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(trio.sleep_forever, name="sleeper")
        await trio.lowlevel.checkpoint()
        reply = await registry.invoke(CommandContext("tasks/show"), [])
        assert reply.data["total"] == before + 3
        assert reply.data["by_name"]["sleeper"] == 3
        assert reply.text.startswith(f"tasks: {before + 3}\n")
        assert "      3 sleeper\n" in reply.text
        nursery.cancel_scope.cancel()
    assert len(tasks.live_tasks()) == before


def test_live_tasks_outside_trio_is_empty() -> None:
    assert tasks.live_tasks() == []


async def test_hardware_output_failures_are_counted_not_blamed_on_the_provider() -> None:
    cfg = DP_CONFIG.format(t1="dummy-pmd", t2="dummy-pmd")
    cfg = cfg.replace("[other_config]\n", "[other_config]\nhw-offload = true\n", 1)
    async with running_datapath(cfg) as h:
        dummy = h.dp.offload.collection.find("dummy")  # type: ignore[union-attr]
        assert isinstance(dummy, DummyOffload) and dummy.hw_output is not None
        p2 = h.dp.netdev_by_name("p2")
        assert isinstance(p2, DummyNetdev)
        with_fault(p2, send=FaultMode.RAISE)
        dummy.hw_output(h.dp.port_numbers()["p2"], frames(1)[0])  # raises inside: caught
        dummy.hw_output(99, frames(1)[0])  # the output port left meanwhile
        assert h.coverage.define("datapath_drop_hw_output_error").total == 1
        assert h.coverage.define("datapath_drop_invalid_port").total == 1
        assert "p2: hardware output failed (NetdevFault(" in h.log()
