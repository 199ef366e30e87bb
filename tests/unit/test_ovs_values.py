"""OVS's other_config keys read as ovs-vswitchd reads them, every replacement noted.

The cases come from OVS's own tests (tests/alb.at, tests/pmd.at) and from
its readers (smap_get_*, parse_pmd_sleep_list, bridge_configure_mac_table).
"""

from __future__ import annotations

import pytest

from pyvswitchd import config
from pyvswitchd.config import ovs_values
from pyvswitchd.config.assignments import with_settings


def other(text: str) -> tuple[config.OtherConfig, tuple[str, ...]]:
    cfg = config.loads(f"[other_config]\n{text}\n")
    return cfg.other_config, cfg.notes


@pytest.mark.parametrize(
    ("value", "used", "noted"),
    [
        ('"10"', 10, False),
        ('"1"', 1, False),
        ('"20000"', 20000, False),
        ('"0"', 0, False),  # OVS: 0 means the default, 1 minute (the ALB applies it)
        ('"100"', 100, False),
        ('"20001"', 1, True),
        ('"1000"', 1000, False),
        ('"-1"', 1, True),
        ('"ten"', 1, True),
    ],
)
def test_alb_interval_like_alb_at(value: str, used: int, noted: bool) -> None:
    oc, notes = other(f"pmd-auto-lb-rebal-interval = {value}")
    assert oc.pmd_auto_lb_rebal_interval == used
    assert bool(notes) == noted
    if noted:
        assert notes == (
            f"other_config:pmd-auto-lb-rebal-interval: invalid value {value}: "
            "expected an integer from 0 to 20000 minutes; using 1",
        )


@pytest.mark.parametrize(
    ("key", "default"),
    [("pmd-auto-lb-improvement-threshold", 25), ("pmd-auto-lb-load-threshold", 95)],
)
def test_alb_thresholds_like_alb_at(key: str, default: int) -> None:
    for value, used in (("60", 60), ("0", 0), ("-1", default), ("100", 100), ("101", default)):
        oc, notes = other(f'{key} = "{value}"')
        attr = key.replace("-", "_")
        assert getattr(oc, attr) == used
        assert bool(notes) == (used != int(value)), value
    _, notes = other(f'{key} = "101"')
    assert notes[0].endswith(f"expected an integer from 0 to 100; using {default}")


@pytest.mark.parametrize(
    ("text", "entries", "noted"),
    [
        ("1", ((None, 1),), False),
        ("10000", ((None, 10000),), False),
        ("0", ((None, 0),), False),
        ("10001", ((None, 10000),), True),
        ("490", ((None, 490),), False),
        ("3:300,0:100,5:400", ((3, 300), (0, 100), (5, 400)), False),
        ("50,3:300,0:100,5:200", ((None, 50), (3, 300), (0, 100), (5, 200)), False),
        ("3:400,200", ((3, 400), (None, 200)), False),
        ("qwe", (), True),
        ("50,1:qwe,2:0", ((None, 50), (2, 0)), True),
        # OVS reads entries with strtoull: -5 wraps to a huge value, then capped.
        ("-5", ((None, 10000),), True),
        ("abc", (), True),
        ("0x10 2=8", ((None, 16), (2, 8)), False),
        ("5,5:1,5:2", ((None, 5), (5, 2)), False),
    ],
)
def test_sleep_list_like_pmd_at(text: str, entries: tuple[object, ...], noted: bool) -> None:
    oc, notes = other(f'pmd-sleep-max = "{text}"')
    assert oc.pmd_sleep_max == entries
    assert bool(notes) == noted


def test_sleep_list_notes_name_entries_and_what_is_used() -> None:
    _, notes = other('pmd-sleep-max = "abc"')
    assert notes == (
        'other_config:pmd-sleep-max: invalid value "abc": entry "abc" is not a number, '
        "ignored; using 0 us for every PMD (busy polling)",
    )
    _, notes = other('pmd-sleep-max = "50,1:qwe,2:20000"')
    assert notes == (
        'other_config:pmd-sleep-max: invalid value "50,1:qwe,2:20000": entry "1:qwe" is not '
        'CORE:N, ignored; entry "2:20000" is over 10000 us, capped; using "50,2:10000"',
    )


def test_maxsleep_is_capped() -> None:
    oc, notes = other("pmd-maxsleep = 20000")
    assert oc.pmd_maxsleep == 10000
    assert notes == (
        "other_config:pmd-maxsleep: invalid value 20000: expected an integer from 0 to 10000 "
        "us; using 10000",
    )
    assert other('pmd-maxsleep = "abc"')[0].pmd_maxsleep == 0
    assert other("pmd-maxsleep = true")[0].pmd_maxsleep == 0


@pytest.mark.parametrize(
    ("text", "attr", "used"),
    [
        ('pmd-perf-metrics = "yes"', "pmd_perf_metrics", False),
        ('pmd-rxq-isolate = "no"', "pmd_rxq_isolate", True),  # smap_get_bool(def=true)
        ('pmd-rxq-assign = "random"', "pmd_rxq_assign", "cycles"),
        ('pmd-rxq-assign = "Cycles"', "pmd_rxq_assign", "cycles"),  # OVS compares exactly
        ('emc-insert-inv-prob = "-1"', "emc_insert_inv_prob", 100),
        ("emc-insert-inv-prob = 4294967296", "emc_insert_inv_prob", 100),
        ('tx-flush-interval = "-5"', "tx_flush_interval", 0),
        ('tx-flush-interval = "abc"', "tx_flush_interval", 0),
        ("max-idle = 1.5", "max_idle", 10000),
        ('pmd-cpu-mask = "zz"', "pmd_cpu_mask", 0),
        ('pmd-cpu-mask = "banana"', "pmd_cpu_mask", 0xBA0A0A),  # 'n' reads as 0
    ],
)
def test_replaced_values_are_noted(text: str, attr: str, used: object) -> None:
    oc, notes = other(text)
    assert getattr(oc, attr) == used
    key, _, raw = text.partition(" = ")
    assert len(notes) == 1 and notes[0].startswith(f"other_config:{key}: invalid value {raw}: ")
    assert "; using " in notes[0]


@pytest.mark.parametrize(
    "text",
    [
        'pmd-perf-metrics = "TRUE"',
        "pmd-auto-lb = false",
        'pmd-cpu-mask = "0X3"',
        'pmd-cpu-mask = ""',
        "tx-flush-interval = 2000000",  # above the documented range, used by OVS as is
        'max-idle = "100"',
        'emc-insert-inv-prob = " 7"',  # strtoull skips leading blanks
    ],
)
def test_values_ovs_takes_as_written_make_no_note(text: str) -> None:
    assert other(text)[1] == ()


def test_cpu_mask_of_no_core_means_no_pmd() -> None:
    assert other('pmd-cpu-mask = "0x0"') == (config.OtherConfig(pmd_cpu_mask=0), ())
    oc, notes = other('pmd-cpu-mask = "0xg"')
    assert oc.pmd_cpu_mask == 0
    assert notes[0].endswith("not hexadecimal: 'g', read as 0; using 0x0 (no core: no PMD thread)")


def test_tables_and_arrays_are_still_refused() -> None:
    with pytest.raises(config.ConfigError, match="expected a string or number"):
        config.loads("[other_config]\npmd-cpu-mask = [1]\n")


@pytest.mark.parametrize(
    ("key", "value", "used", "noted"),
    [
        ("mac-table-size", "-1", "1000000", True),  # OVS: read into a size_t, then capped
        ("mac-table-size", "5", "10", True),
        ("mac-table-size", "0", "8192", False),  # OVS: 0 means the default
        ("mac-table-size", "2048", "2048", False),
        ("mac-aging-time", "abc", "300", True),
        ("mac-aging-time", "-1", "3600", True),
        ("mac-aging-time", "60", "60", False),
        ("mac-aging-time", "99999999999", "300", True),  # not an int: the default
    ],
)
def test_bridge_mac_table_knobs(key: str, value: str, used: str, noted: bool) -> None:
    cfg = config.loads(f'[[bridge]]\nname = "br0"\nother_config = {{ {key} = "{value}" }}\n')
    assert cfg.bridges[0].other_config[key] == used
    assert bool(cfg.notes) == noted
    if noted:
        assert cfg.notes[0].startswith(f'bridge:br0:{key}: invalid value "{value}": expected')
        assert cfg.notes[0].endswith(f"; using {used}")


def test_effective_values_read_back_without_notes() -> None:
    cfg = config.loads(
        '[other_config]\npmd-sleep-max = "50,1:qwe,7:99999"\npmd-maxsleep = 20000\n'
        'pmd-cpu-mask = "zz"\n'
        '[[bridge]]\nname = "br0"\nother_config = { mac-table-size = -1 }\n'
    )
    assert len(cfg.notes) == 4
    again = config.from_dict(config.to_dict(cfg), cfg.source)
    assert again == cfg and again.notes == ()
    assert with_settings(cfg, ["max-idle=2000"]).notes == ()


def test_c_integer_reads_like_strtoll() -> None:
    c = ovs_values.c_integer
    assert (c("42"), c(" +42"), c("-42"), c("42 "), c(""), c("4x")) == (
        42,
        42,
        -42,
        None,
        None,
        None,
    )
    assert c("-1", unsigned=True) == 2**64 - 1
    assert (c("0x1f", base0=True), c("017", base0=True), c("0", base0=True)) == (31, 15, 0)
    assert c(str(2**64), unsigned=True) is None and c(str(2**63)) is None
