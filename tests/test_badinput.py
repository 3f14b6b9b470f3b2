from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from netmidi.badinput import BadInput


class BadInputTests(SynchronousTestCase):
    def test_counts_every_drop_and_logs_once_per_interval(self) -> None:
        clock = Clock()
        bad = BadInput(Logger(), "sacn", clock.seconds, interval=10)
        with capturedLogs() as events:
            for _ in range(100):
                bad.drop("truncated packet", ("127.0.0.1", 5568))
            bad.drop("wrong vector")
            clock.advance(10)
            bad.drop("truncated packet")
        self.assertEqual(bad.counts["truncated packet"], 101)
        self.assertEqual(bad.total, 102)
        lines = [e for e in events if e["log_level"].name == "warn"]
        self.assertEqual(len(lines), 3)
        self.assertEqual(lines[2]["suppressed"], 99)
        self.assertEqual(lines[2]["total"], 101)
