"""Hypothesis strategies for hostile unixctl input: what a fuzzing client sends.

Texts rather than Python values, because most of what matters cannot be
written by ``json.dumps``: lone surrogate escapes, ``NaN``/``Infinity``,
numbers outside a double's range, integers past the 4300-digit limit of
``int()``, nesting hundreds deep.  Used by the protocol unit tests, the
end-to-end bad-client tests and the soak's hostile client
(benchmarks/soak.py), so all three fuzz the same way.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Scalars Python's json module accepts but JSON cannot echo, and ordinary ones.
SPECIAL_SCALARS = (
    "null", "true", "false", "0", "-0", "1.5", "-2e-3", "NaN", "Infinity", "-Infinity",
    "1e400", "-1e999", "1e-400", '"\\ud800"', '"\\udfff"', '"a\\ud83d\\ude00b"',
    '"\\ud800\\u0041"', '"\\u0000"', '"\\\\ud800"',
)  # fmt: skip


def hostile_scalars() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(SPECIAL_SCALARS),
        st.integers().map(str),
        st.integers(min_value=4290, max_value=4400).map(lambda n: "9" * n),
        st.text(max_size=12).map(lambda s: json.dumps(s, ensure_ascii=False)),
    )


def _is_string(text: str) -> bool:
    return text.startswith('"')


def hostile_values() -> st.SearchStrategy[str]:
    """JSON-ish texts: arrays, objects and deep nests of :func:`hostile_scalars`."""
    scalars = hostile_scalars()
    return st.recursive(
        scalars,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
            st.lists(st.tuples(scalars.filter(_is_string), kids), max_size=3).map(
                lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
            ),
            st.integers(min_value=1, max_value=400).map(lambda d: "[" * d + "1" + "]" * d),
        ),
        max_leaves=12,
    )


def _harmless_method(text: str) -> bool:
    # Random strings must not hit a real command that stops or reconfigures
    # the daemon under test: all of those but exit have a "/" in their name.
    return "/" not in text and "exit" not in text


def hostile_requests() -> st.SearchStrategy[str]:
    """Request-shaped texts whose id, method and params are hostile values."""
    values = hostile_values()
    return st.builds(
        lambda i, m, p: '{"id":' + i + ',"method":' + m + ',"params":' + p + "}",
        values,
        st.one_of(values, st.sampled_from(['"version"', '"list-commands"'])).filter(
            _harmless_method
        ),
        st.one_of(values, st.just("[]"), st.just('["a","b"]')),
    )
