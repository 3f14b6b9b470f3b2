"""The one value type that crosses the router.

A value keeps its raw integer and resolution next to the normalised float, so that a 7-bit CC
routed to a 7-bit CC stays bit-exact and a 14-bit pitch bend routed to a 16-bit sACN channel keeps
its precision.
"""

from __future__ import annotations

from typing import NamedTuple


class Value(NamedTuple):
    """A channel value: ``normalised`` in [0, 1], ``raw`` in [0, 2**bits - 1]."""

    normalised: float
    raw: int
    bits: int

    @classmethod
    def from_raw(cls, raw: int, bits: int) -> Value:
        """A value read from the wire at a given resolution."""
        return cls(raw / ((1 << bits) - 1), raw, bits)

    @classmethod
    def from_normalised(cls, normalised: float, bits: int = 16) -> Value:
        """A value computed by the daemon (clamped), stored at ``bits`` resolution."""
        clamped = 0.0 if normalised <= 0.0 else 1.0 if normalised >= 1.0 else normalised
        return cls(clamped, round(clamped * ((1 << bits) - 1)), bits)

    def scaled(self, bits: int) -> int:
        """The raw value at another resolution; exact when the resolutions agree."""
        if bits == self.bits:
            return self.raw
        return round(self.normalised * ((1 << bits) - 1))

    def __str__(self) -> str:
        return f"{self.normalised:.6f} ({self.raw}/{(1 << self.bits) - 1})"


ZERO = Value(0.0, 0, 7)
