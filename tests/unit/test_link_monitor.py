"""rtnetlink link notifications: decoding, and a real subscription seeing a link come and go."""

from __future__ import annotations

import os
import shutil
import struct

import pytest
import trio

from pyvswitchd.netdev.link_monitor import (
    IFLA_IFNAME,
    RTM_DELLINK,
    RTM_NEWLINK,
    LinkEvent,
    LinkMonitor,
    parse_link_messages,
)


def message(kind: int, index: int, name: str | None, flags: int = 0) -> bytes:
    attrs = b""
    if name is not None:
        raw = name.encode() + b"\0"
        attr = struct.pack("=HH", 4 + len(raw), IFLA_IFNAME) + raw
        attrs = attr + b"\0" * (-len(attr) % 4)
    # An attribute of another type first: the decoder must step over it.
    mtu = struct.pack("=HHI", 8, 4, 1500)
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0) + mtu + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_decodes_new_and_deleted_links() -> None:
    data = (
        message(RTM_NEWLINK, 7, "veth0", 0x1043)
        + message(20, 1, "lo")  # RTM_NEWADDR: not a link event
        + message(RTM_DELLINK, 8, "veth1")
        + message(RTM_NEWLINK, 9, None)
    )
    assert parse_link_messages(data) == [
        LinkEvent(False, 7, "veth0", 0x1043),
        LinkEvent(True, 8, "veth1", 0),
        LinkEvent(False, 9, "", 0),
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x02",
        struct.pack("=IHHII", 4, RTM_NEWLINK, 0, 0, 0),  # length shorter than the header
        struct.pack("=IHHII", 999, RTM_NEWLINK, 0, 0, 0),  # longer than the data
        struct.pack("=IHHII", 20, RTM_NEWLINK, 0, 0, 0) + b"\0" * 4,  # no room for ifinfomsg
        message(RTM_NEWLINK, 3, "x")[:-3],
    ],
)
def test_malformed_input_yields_what_is_whole(data: bytes) -> None:
    assert parse_link_messages(data) in ([], [LinkEvent(False, 3, "", 0)])


def test_bad_attribute_length_stops_at_the_name() -> None:
    msg = bytearray(message(RTM_NEWLINK, 5, "abc"))
    struct.pack_into("=H", msg, 32, 2)  # the first attribute claims 2 bytes
    assert parse_link_messages(bytes(msg)) == [LinkEvent(False, 5, "", 0)]


async def test_sees_a_link_created_and_deleted() -> None:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs iproute2 and CAP_NET_ADMIN to create a link")
    name = f"pvlm{os.getpid() % 100000}"
    with LinkMonitor() as monitor:
        await trio.run_process(
            ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"]
        )
        try:
            seen: list[LinkEvent] = []
            with trio.fail_after(5):
                while not any(e.name == name and not e.deleted for e in seen):
                    seen += await monitor.receive() or []
            index = next(e.ifindex for e in seen if e.name == name)
        finally:
            await trio.run_process(["ip", "link", "del", name], check=False)
        with trio.fail_after(5):
            while not any(e.deleted and e.ifindex == index for e in seen):
                seen += await monitor.receive() or []
