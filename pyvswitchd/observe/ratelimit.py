"""Token-bucket rate limiting of log messages (OVS's ``VLOG_RATE_LIMIT_INIT``)."""

from __future__ import annotations

import attrs

_MSG_TOKENS = 60_000  # tokens per message: a rate is in messages per minute
_UINT_MAX = 2**32 - 1


@attrs.define(eq=False)
class RateLimit:
    """A token bucket limiting one call site to ``rate`` messages a minute
    sustained and ``burst`` at once (OVS's ``VLOG_RATE_LIMIT_INIT``).

    The bucket holds ``burst * 60000`` tokens, gains ``rate`` per millisecond
    and a message costs 60000; it is full before its first use.  Share one
    instance between all the calls it should limit together.
    """

    rate: int
    burst: int
    _tokens: int = attrs.field(default=0, init=False)
    _last_fill_ms: int | None = attrs.field(default=None, init=False)
    _n_dropped: int = attrs.field(default=0, init=False)
    _first_dropped: int = attrs.field(default=0, init=False)
    _last_dropped: int = attrs.field(default=0, init=False)

    @property
    def n_dropped(self) -> int:
        """Messages dropped since the last one that passed."""
        return self._n_dropped

    def _withdraw(self, now_ms: int) -> bool:
        if self._tokens < _MSG_TOKENS:
            capacity = min(self.burst * _MSG_TOKENS, _UINT_MAX)
            if self._last_fill_ms is None:
                self._tokens = capacity
                self._last_fill_ms = now_ms
            elif now_ms > self._last_fill_ms:
                added = min(self.rate * (now_ms - self._last_fill_ms), _UINT_MAX)
                self._tokens = min(self._tokens + added, capacity)
                self._last_fill_ms = now_ms
            if self._tokens < _MSG_TOKENS:
                return False
        self._tokens -= _MSG_TOKENS
        return True

    def _drop(self, now_s: int) -> None:
        if not self._n_dropped:
            self._first_dropped = now_s
        self._last_dropped = now_s
        self._n_dropped += 1

    def _take_summary(self, now_s: int) -> str | None:
        if not self._n_dropped:
            return None
        summary = (
            f"Dropped {self._n_dropped} log messages in last {now_s - self._first_dropped} "
            f"seconds (most recently, {now_s - self._last_dropped} seconds ago) "
            "due to excessive rate"
        )
        self._n_dropped = 0
        return summary
