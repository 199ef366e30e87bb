"""Socket paths longer than sun_path: the /proc/self/fd alias."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from pyvswitchd.control.sun_path import SUN_PATH_MAX, unix_address


def test_short_path_is_used_as_is(tmp_path: Path) -> None:
    with unix_address(str(tmp_path / "s.ctl")) as address:
        assert address == str(tmp_path / "s.ctl")


def test_long_path_goes_through_its_directory(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 150)
    deep.mkdir()
    path = str(deep / "s.ctl")
    assert len(path) > SUN_PATH_MAX
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        with unix_address(path) as address:
            assert address.startswith("/proc/self/fd/") and address.endswith("/s.ctl")
            assert len(address) <= SUN_PATH_MAX
            server.bind(address)
        server.listen(1)
        assert os.path.exists(path)  # the real file, where it belongs
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client,
            unix_address(path) as address,
        ):
            client.connect(address)
    fds = len(os.listdir("/proc/self/fd"))
    with unix_address(path):
        pass
    assert len(os.listdir("/proc/self/fd")) == fds  # the directory descriptor is closed


def test_name_too_long_even_for_the_alias(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info, unix_address(str(tmp_path / ("n" * 100))):
        pass
    assert info.value.errno == errno.ENAMETOOLONG
