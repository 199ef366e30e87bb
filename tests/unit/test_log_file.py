"""The log file's rotation check."""

from __future__ import annotations

import os
from pathlib import Path

from pyvswitchd.observe.log_file import RETRY_INTERVAL, LogFile


def test_moved_compares_the_name_with_the_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    f = LogFile.open(str(path), check_interval=10.0)
    try:
        assert not f.moved(100.0)
        path.rename(tmp_path / "x.log.1")
        path.write_text("")  # logrotate's `create`
        assert not f.moved(105.0)  # not looked at before the interval is over
        assert f.moved(110.0)
        path.unlink()
        assert f.moved(120.0)  # gone counts as moved
        f.postpone(120.0)
        assert not f.moved(120.0 + RETRY_INTERVAL - 1)
        assert f.moved(120.0 + RETRY_INTERVAL)
    finally:
        f.close()


def test_same_file_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    a, b = LogFile.open(str(path)), LogFile.open(str(path))
    other = LogFile.open(str(tmp_path / "y.log"))
    try:
        assert a.same_file(b) and not a.same_file(other)
        a.write(b"one\n")
        b.write(b"two\n")
        assert path.read_text() == "one\ntwo\n"
        assert os.get_inheritable(a.fd) is False
    finally:
        for f in (a, b, other):
            f.close()
    a.write(b"closed: lost, no exception\n")
    a.close()
