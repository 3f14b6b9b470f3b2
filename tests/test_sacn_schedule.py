"""Send timing of one universe: change, 44 Hz cap, 3 repeats, keep-alive."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.sacn.schedule import KEEPALIVE, PERIOD, REPEAT_GAP, REPEATS, SendSchedule


def run(schedule: SendSchedule, changes: list[float], until: float) -> list[float]:
    """Drive the schedule like the backend: send whenever due, record send times."""
    sent: list[float] = []
    pending = sorted(changes)
    now = 0.0
    while now <= until:
        while pending and pending[0] <= now:
            pending.pop(0)
            schedule.change()
        if schedule.next_time() <= now:
            schedule.sent(now)
            sent.append(now)
        now = round(now + 0.001, 6)
    return sent


class ScheduleTests(SynchronousTestCase):
    def test_change_then_repeats_then_keepalive(self) -> None:
        schedule = SendSchedule()
        sent = run(schedule, [0.0], 2.0)
        self.assertEqual(len(sent[:4]), 1 + REPEATS)
        gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
        for gap in gaps[:REPEATS]:
            self.assertLessEqual(abs(gap - REPEAT_GAP), 0.0011)
        for gap in gaps[REPEATS:]:
            self.assertGreaterEqual(gap, 0.8)
            self.assertLessEqual(gap, 1.0)
        self.assertEqual(len(sent), 1 + REPEATS + int((2.0 - 3 * REPEAT_GAP) / KEEPALIVE))

    def test_rate_cap(self) -> None:
        schedule = SendSchedule()
        changes = [i * 0.001 for i in range(1000)]  # a change every millisecond for 1 s
        sent = run(schedule, changes, 1.0)
        self.assertLessEqual(len([t for t in sent if t < 0.01]), 4)  # a burst of four at most
        steady = [t for t in sent if t >= 0.5]
        self.assertIn(len(steady), (22, 23))  # then 44 Hz

    def test_realtime_sends_every_change(self) -> None:
        schedule = SendSchedule(realtime=True)
        changes = [i * 0.002 for i in range(100)]
        self.assertEqual(len(run(schedule, changes, 0.199)), 100)

    def test_late_frames_do_not_delay_later_ones(self) -> None:
        """A source at exactly 44 Hz, some frames late by up to two periods: none waits."""
        schedule = SendSchedule()
        changes = [round(i * PERIOD + (0.045 if i % 7 == 3 else 0.0), 3) for i in range(400)]
        sent = run(schedule, changes, 10.0)
        self.assertEqual([c for c in sorted(changes) if c in sent], sorted(changes))

    def test_jitter_does_not_delay(self) -> None:
        """Frames at 44 Hz with a few ms of jitter go out at once."""
        schedule = SendSchedule()
        changes = [round(i * PERIOD + (0.004 if i % 2 else 0.0), 3) for i in range(40)]
        sent = run(schedule, changes, 1.0)
        self.assertEqual([c for c in changes if c in sent], changes)

    def test_latest_change_sent_after_burst(self) -> None:
        schedule = SendSchedule()
        sent = run(schedule, [i / 1000 for i in range(10)], 0.2)
        # at most four frames back to back; the latest change follows one period later
        self.assertEqual(sent[:4], [0.0, 0.001, 0.002, 0.003])
        self.assertTrue(0.009 <= sent[4] <= PERIOD + 0.001)
        self.assertGreater(sent[5] - sent[4], 0.04)  # then only its repeats

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.floats(0, 2.0), max_size=200))
    def test_never_over_44hz_on_average(self, changes: list[float]) -> None:
        sent = run(SendSchedule(), [round(c, 3) for c in changes], 2.0)
        for i in range(len(sent)):
            window = [t for t in sent[i:] if t - sent[i] < 1.0]
            self.assertLessEqual(len(window), 48)
        gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
        self.assertTrue(all(g <= 1.0 for g in gaps))
