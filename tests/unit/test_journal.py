"""Recognising systemd's journal stream, and the <N> priority prefix."""

from __future__ import annotations

import io
import os
from pathlib import Path

from pyvswitchd.observe.journal import is_journal_stream, with_priority


def test_the_stream_journal_stream_names_is_recognised(tmp_path: Path) -> None:
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert is_journal_stream(a, env)
        # Redirected elsewhere (the variable is inherited, the inode is not).
        assert not is_journal_stream(b, env)
        assert not is_journal_stream(a, {})
        for bad in ("", "1", ":", "x:y", f"{st.st_dev}:", f"-{st.st_dev}:{st.st_ino}"):
            assert not is_journal_stream(a, {"JOURNAL_STREAM": bad}), bad
    # Streams without a descriptor, or closed ones, or none.
    assert not is_journal_stream(io.StringIO(), env)
    assert not is_journal_stream(a, env)
    assert not is_journal_stream(None, env)


def test_every_line_gets_the_priority() -> None:
    assert with_priority("one\n", 4) == "<4>one\n"
    assert with_priority("one\ntwo\n", 3) == "<3>one\n<3>two\n"
    assert with_priority("", 5) == "<5>"
