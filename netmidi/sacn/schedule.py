"""When a universe's next data packet goes out (pure state machine, time passed in).

E1.31 6.6: send when the data changes, but at most about 44 times a second (the DMX maximum
refresh, E1.11), unless the universe is ``realtime``; after a change repeat the frame 3 times so a
lost packet is soon repaired, then send a keep-alive every 800-1000 ms while nothing changes, so
receivers do not declare source loss (2.5 s).

The rate cap is a virtual-clock limiter (GCRA) rather than a fixed minimum gap: the long-term rate
never exceeds 44 Hz, but frames that arrive early or bunched because of jitter go out at once. The
tolerance matters with a source at exactly 44 Hz: with one period of tolerance, every late frame
leaves the virtual clock ahead for good and the next frames wait (a simulated 3-hour show at
44 Hz with 1 % of frames 10-50 ms late reached 20 ms median added latency); with three periods a
late frame moves the clock by no more than its own lateness, and nothing waits.
"""

from __future__ import annotations

from typing import Final

PERIOD: Final = 1 / 44
"""Minimum average interval between packets of one universe."""
TOLERANCE: Final = 3 * PERIOD
"""How early a frame may go out against the 44 Hz virtual clock (a burst of four at most)."""
REPEATS: Final = 3
REPEAT_GAP: Final = 2 * PERIOD
"""Repeats wait two frame periods, so that with input at 44 Hz they never push a change back."""
KEEPALIVE: Final = 0.85
"""Inside the 800-1000 ms the standard asks for, with margin for timer lateness."""


class SendSchedule:
    """One universe's transmit timing; call :meth:`sent` for every data packet sent."""

    __slots__ = ("_last", "_tat", "pending", "realtime", "repeats")

    def __init__(self, realtime: bool = False) -> None:
        self.realtime = realtime
        self.pending = False
        self.repeats = 0
        self._tat = float("-inf")  # theoretical arrival time of the next packet
        self._last = float("-inf")

    def change(self) -> None:
        """The frame changed: it must go out (then be repeated)."""
        self.pending = True

    def next_time(self) -> float:
        """When the next packet is due (possibly in the past: due now)."""
        allowed = float("-inf") if self.realtime else self._tat - TOLERANCE
        if self.pending:
            return allowed
        if self.repeats:
            return max(allowed, self._last + REPEAT_GAP)
        return self._last + KEEPALIVE

    def sent(self, now: float) -> None:
        """A packet went out at ``now``."""
        if self.pending:
            self.pending = False
            self.repeats = REPEATS
        elif self.repeats:
            self.repeats -= 1
        self._last = now
        self._tat = max(self._tat, now) + PERIOD
