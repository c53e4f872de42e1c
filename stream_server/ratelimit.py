"""Limits on how often something repeats: a token bucket (control messages) and a log that says "N more".

A peer decides how often its frames fail and how many control messages it sends; neither may flood the log or
the event loop. `ThrottledLog` writes the first occurrence with its traceback, then at most one record per
interval carrying the count since the last record, so a failure that lasts is still visible in the log.
"""

from __future__ import annotations

import logging
import time


class TokenBucket:
    """Allows `rate` events a second on average and bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._updated = time.monotonic()

    def allow(self) -> bool:
        """Take a token if there is one."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ThrottledLog:
    """Logs a repeating error at most once per `interval_s`, with how many occurred since the last record."""

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 1.0) -> None:
        self._logger = logger
        self._what = what
        self._interval_s = interval_s
        self._last = float("-inf")
        self._since_last = 0
        self.total = 0

    def error(self, exc: BaseException) -> None:
        """Count one occurrence; log it if the last record is older than the interval."""
        self.total += 1
        self._since_last += 1
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return
        if self.total == 1:
            self._logger.error("%s: %s", self._what, exc, exc_info=exc)
        else:
            self._logger.error("%s: %s (%d time(s) since the last report, %d in all)", self._what, exc,
                               self._since_last, self.total)
        self._last = now
        self._since_last = 0
