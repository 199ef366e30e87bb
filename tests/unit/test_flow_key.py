"""Flow keys: megaflow identity (ufid) and the simple-match rule."""

from __future__ import annotations

import re

from pyvswitchd.odp.flow_key import ETH_TYPE, NW_DST, VLAN_TCI, mask_is_simple, masked, ufid_for
from pyvswitchd.odp.flow_text import parse_flow
from tests.unit.test_flow_text import frame_key, mask_of, replace

# -- ufid and simple match -------------------------------------------------------


def test_ufid_is_stable_uuid_and_depends_on_masked_key_and_mask() -> None:
    k = frame_key("eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0x20),tcp()")
    m = mask_of(eth_type=0xFFFF, nw_src=0xFFFFFFFF)
    ufid = ufid_for(k, m)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", ufid
    )
    assert ufid_for(masked(k, m), m) == ufid  # bits outside the mask do not count
    assert ufid_for(k, replace(m, NW_DST, 1)) != ufid
    # OVS's "mega flow ufid uniqueness": tos=0x20/0 and tos=0 give equal masked keys.
    a = parse_flow("in_port(1),eth(),eth_type(0x0800),ipv4(src=10.0.0.1,tos=0x20/0),tcp(dst=80)")
    b = parse_flow("in_port(1),eth(),eth_type(0x0800),ipv4(src=10.0.0.1,tos=0),tcp(dst=80)")
    assert a[0] == b[0] and ufid_for(*a) != ufid_for(*b)


def test_simple_match_masks() -> None:
    m = parse_flow("in_port(1),eth_type(0x0800),ipv4(frag=no)")[1]
    assert mask_is_simple(m)
    assert mask_is_simple(parse_flow("in_port(1),eth_type(0x1234)")[1])
    assert not mask_is_simple(parse_flow("in_port(1),eth_type(0x0800),ipv4(ttl=1)")[1])
    assert not mask_is_simple(parse_flow("in_port(1),eth(src=00:00:00:00:00:01)")[1])
    assert not mask_is_simple(parse_flow("in_port(1)")[1])  # VLAN not matched
    assert not mask_is_simple(replace(m, VLAN_TCI, 0xFFFF))
    assert mask_is_simple(replace(m, ETH_TYPE, 0))  # OVS: a subset suffices
