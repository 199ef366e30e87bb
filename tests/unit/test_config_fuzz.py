"""Hypothesis: the config loader raises nothing but ConfigError, whatever it is fed."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from pyvswitchd import config
from pyvswitchd.config.assignments import with_settings

KEYS = [k for _, k, _, _ in config.describe_keys()] + ["name", "type", "port", "bogus"]
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=12),
    st.floats(allow_nan=True),
    st.none(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    ),
    max_leaves=12,
)
documents = st.dictionaries(
    st.sampled_from(["other_config", "daemon", "bridge", "nonsense"]), values, max_size=3
)


@settings(max_examples=300, deadline=None)
@given(documents)
def test_any_document_is_accepted_or_refused_with_config_error(doc: dict[str, object]) -> None:
    with contextlib.suppress(config.ConfigError):
        config.from_dict(doc)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_accepted_or_refused_with_config_error(text: str) -> None:
    with contextlib.suppress(config.ConfigError):
        config.loads(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=4))
def test_config_set_assignments_never_escape(assignments: list[str]) -> None:
    base = config.loads('[[bridge]]\nname = "br0"\n')
    with contextlib.suppress(config.ConfigError):
        with_settings(base, assignments)
