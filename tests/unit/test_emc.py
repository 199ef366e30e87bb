"""The exact-match cache's key: header signatures (fast_signature).

Equal signatures must mean equal flow keys; the frames are the ones
:mod:`tests.unit.test_flow_extract` parses.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvswitchd.datapath.emc import fast_signature, signature_tot, udp_signature
from pyvswitchd.odp.flow_extract import parse_key
from pyvswitchd.odp.flow_key import FlowKey
from tests.unit.test_flow_extract import (
    FULL_TEXTS,
    SAMPLES,
    TCP_HDR,
    UDP_HDR,
    eth_header,
    frame,
    ipv4,
    mutate,
)

# -- fast_signature --------------------------------------------------------------

FAST = {
    "udp": frame(FULL_TEXTS[0], length=64),
    "tcp": frame(FULL_TEXTS[1]),
    "icmp": frame(FULL_TEXTS[3]),
}


@pytest.mark.parametrize("name", FAST)
def test_fast_shapes_have_a_signature(name: str) -> None:
    assert fast_signature(FAST[name]) is not None


@pytest.mark.parametrize(
    "data",
    [
        SAMPLES["vlan"],
        SAMPLES["ipv6-ext"],
        SAMPLES["arp"],
        frame(FULL_TEXTS[5]),  # SCTP
        frame(FULL_TEXTS[6]),  # first fragment
        frame(FULL_TEXTS[7]),  # later fragment
        eth_header(0x0800) + ipv4(17, UDP_HDR, options=bytes(4)),
        eth_header(0x0800) + ipv4(17, UDP_HDR[:4]),  # UDP cut by the IP length
        eth_header(0x0800) + ipv4(17, UDP_HDR, tot=29),  # IP length beyond the frame
        eth_header(0x0800) + ipv4(6, TCP_HDR[:12] + b"\x40" + TCP_HDR[13:]),  # offset 4
        eth_header(0x0800) + ipv4(6, TCP_HDR[:12] + b"\x60" + TCP_HDR[13:]),  # offset 6 > 20
        eth_header(0x0800) + ipv4(2, bytes(8)),
        eth_header(0x0800) + ipv4(17, UDP_HDR) + bytes(0x10000),
        FAST["udp"][:41],
    ],
)
def test_other_shapes_have_none(data: bytes) -> None:
    assert fast_signature(data) is None


def test_signature_ignores_padding_id_and_checksums() -> None:
    base = FAST["udp"]
    variant = bytearray(base + bytes(30))  # Ethernet padding
    variant[18:20] = b"\x12\x34"  # IP id
    variant[24:26] = b"\xab\xcd"  # IP checksum
    variant[38:42] = b"\x00\x08\xee\xee"  # UDP length and checksum
    variant[42:64] = bytes(22)  # payload
    assert fast_signature(bytes(variant)) == fast_signature(base)
    assert parse_key(bytes(variant), 1) == parse_key(base, 1)
    icmp = bytearray(FAST["icmp"])
    icmp[36:38] = b"\x00\x00"  # ICMP checksum
    assert fast_signature(bytes(icmp)) == fast_signature(FAST["icmp"])


def test_signature_keeps_total_length_and_df() -> None:
    """Both are in the key so a batch of cache hits needs only a length check."""
    base = FAST["udp"]
    df = bytearray(base)
    df[20] = 0x40
    assert fast_signature(bytes(df)) != fast_signature(base)
    assert parse_key(bytes(df), 1) == parse_key(base, 1)
    sig = fast_signature(base)
    assert sig is not None and signature_tot(sig) == len(base) - 14
    assert udp_signature(base) == sig


def test_signature_kinds_never_collide() -> None:
    sigs = {name: fast_signature(FAST[name]) for name in FAST}
    assert len({len(sig) for sig in sigs.values() if sig is not None}) == 2
    assert len(set(sigs.values())) == 3


@pytest.mark.parametrize("name", FAST)
def test_single_byte_changes_with_equal_signatures_have_equal_keys(name: str) -> None:
    """Exhaustive: each header byte set to each value, and each length."""
    base = FAST[name]
    seen: dict[object, FlowKey | None] = {}
    variants = [base[:n] for n in range(len(base))] + [base + bytes(n) for n in (1, 64)]
    for position in range(min(len(base), 60)):
        for value in range(256):
            variants.append(base[:position] + bytes([value]) + base[position + 1 :])
    for data in variants:
        sig = fast_signature(data)
        if sig is None:
            continue
        k = parse_key(data, 1)
        assert seen.setdefault(sig, k) == k, data.hex()
    assert len(seen) > 1000  # the signature does vary with the bytes that matter


FAST_EDITS = st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4)


@settings(max_examples=300)
@given(st.sampled_from(sorted(FAST)), FAST_EDITS, FAST_EDITS, st.integers(-8, 40))
def test_equal_signatures_mean_equal_keys(
    name: str, edits_a: list[tuple[int, int]], edits_b: list[tuple[int, int]], grow: int
) -> None:
    base = FAST[name]
    a = mutate(base, edits_a, len(base))
    b = mutate(base, edits_b, len(base) + grow)
    sig_a, sig_b = fast_signature(a), fast_signature(b)
    if sig_a is not None and sig_a == sig_b:
        assert parse_key(a, 5) == parse_key(b, 5)
    if sig_a is not None:
        assert parse_key(a, 5) is not None
