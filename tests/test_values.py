from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.values import Value


class ValueTests(SynchronousTestCase):
    def test_same_resolution_is_bit_exact(self) -> None:
        """A 7-bit CC routed to a 7-bit CC keeps every raw value."""
        for raw in range(128):
            self.assertEqual(Value.from_raw(raw, 7).scaled(7), raw)

    def test_pitch_bend_keeps_precision_in_16_bit(self) -> None:
        """Distinct 14-bit values stay distinct at 16 bits, and the ends map to the ends."""
        scaled = [Value.from_raw(raw, 14).scaled(16) for raw in range(1 << 14)]
        self.assertEqual(len(set(scaled)), 1 << 14)
        self.assertEqual((scaled[0], scaled[-1]), (0, 65535))
        self.assertEqual(Value.from_raw(8192, 14).scaled(16), 32770)

    def test_scaling_down_rounds(self) -> None:
        self.assertEqual(Value.from_raw(255, 8).scaled(7), 127)
        self.assertEqual(Value.from_raw(128, 8).scaled(7), 64)
        self.assertEqual(Value.from_raw(64, 7).scaled(8), 129)

    def test_from_normalised_clamps(self) -> None:
        self.assertEqual(Value.from_normalised(1.5, 8), Value(1.0, 255, 8))
        self.assertEqual(Value.from_normalised(-1, 8), Value(0.0, 0, 8))

    @given(st.integers(1, 16), st.integers(1, 16), st.data())
    def test_round_trip_through_wider_is_exact(
        self, bits: int, wider: int, data: st.DataObject
    ) -> None:
        """Up-scaling then scaling back never changes a value."""
        if wider < bits:
            bits, wider = wider, bits
        raw = data.draw(st.integers(0, (1 << bits) - 1))
        there = Value.from_raw(Value.from_raw(raw, bits).scaled(wider), wider)
        self.assertEqual(there.scaled(bits), raw)
