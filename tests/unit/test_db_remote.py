"""Unit tests for pyvswitchd.config.db_remote: the shape of --db / [daemon] db."""

from __future__ import annotations

import pytest

from pyvswitchd import config
from pyvswitchd.config.db_remote import parse_db_remote


@pytest.mark.parametrize(
    "remote",
    [
        "unix:/run/openvswitch/db.sock",
        "unix:db.sock",
        "tcp:127.0.0.1:6640",
        "tcp:ovsdb.example.net:6640",
        "ssl:[::1]:6640",
        "tcp:[fe80::1]:6641",
    ],
)
def test_active_remotes_are_taken_as_given(remote: str) -> None:
    assert parse_db_remote(remote) == remote


@pytest.mark.parametrize("none", ["none", "NONE"])
def test_none_means_no_database(none: str) -> None:
    assert parse_db_remote(none) is None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "unix:",
        "db.sock",
        "tcp:host",
        "tcp:host:0",
        "tcp:host:99999",
        "tcp:::1:6640",
        "udp:x:1",
        7,
    ],
)
def test_anything_else_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match='expected "unix:PATH"'):
        parse_db_remote(bad)


@pytest.mark.parametrize("passive", ["punix:/tmp/db.sock", "ptcp:6640", "pssl:6640"])
def test_passive_remotes_are_refused_saying_why(passive: str) -> None:
    with pytest.raises(ValueError, match="it does not listen"):
        parse_db_remote(passive)


def test_daemon_table_takes_db() -> None:
    cfg = config.loads('[daemon]\ndb = "unix:/run/openvswitch/db.sock"\n')
    assert cfg.daemon.db == "unix:/run/openvswitch/db.sock"
    assert config.load_default().daemon.db is None
    with pytest.raises(config.ConfigError, match='daemon:db: invalid value "x"'):
        config.loads('[daemon]\ndb = "x"\n')


def test_one_server_only() -> None:
    with pytest.raises(ValueError, match="one server, not a list"):
        parse_db_remote("unix:/a.sock,tcp:127.0.0.1:6640")
