"""Counting and rate-limited logging of bad input from the network or from devices.

Bad input must never raise: each receiver counts what it dropped, by reason, and logs at most one
line per reason per interval, saying how many were dropped since the last line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from twisted.logger import Logger


class BadInput:
    """Per-reason drop counters with a rate-limited warning line per reason."""

    def __init__(
        self,
        log: Logger,
        what: str,
        clock: Callable[[], float],
        interval: float = 10.0,
    ) -> None:
        self._log = log
        self._what = what
        self._clock = clock
        self._interval = interval
        self.counts: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def drop(self, reason: str, source: object = None) -> None:
        """Count one dropped input; log it unless this reason was logged recently."""
        self.counts[reason] += 1
        now = self._clock()
        last = self._last_logged.get(reason)
        if last is not None and now - last < self._interval:
            self._unlogged[reason] += 1
            return
        self._last_logged[reason] = now
        suppressed = self._unlogged.pop(reason, 0)
        self._log.warn(
            "{what}: dropped bad input from {source}: {reason}"
            " ({total} so far, {suppressed} not logged since the last line)",
            what=self._what,
            source=source if source is not None else "unknown",
            reason=reason,
            total=self.counts[reason],
            suppressed=suppressed,
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())
