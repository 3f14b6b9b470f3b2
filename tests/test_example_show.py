"""The shipped example show does something real: run as a user would, inside the lab."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from netmidi.codec import e131
from netmidi.testing.daemon import TREE, start_daemon
from tests.test_sacn import LAB, datagrams, listener, sleep

EXAMPLE = os.path.join(TREE, "etc", "show.yaml")


class ExampleShowTests(TestCase):
    if not LAB:
        skip = "announces over mDNS and sends sACN: runs inside the network lab only"

    timeout = 60

    @inlineCallbacks
    def test_example_runs_announces_and_sends(self) -> Any:
        """The session is announced, the preset reaches dimmer 31, and SIGTERM ends it cleanly."""
        rx = listener(1)
        self.addCleanup(rx.close)
        daemon = start_daemon(reactor, "-c", EXAMPLE, cwd=tempfile.mkdtemp())
        self.addCleanup(daemon.ensure_stopped)
        yield daemon.wait_for(reactor, "netmidi running")
        yield daemon.wait_for(reactor, "mdns: announced 'netmidi example'")
        yield sleep(0.5)
        levels = [p for p in datagrams(rx) if isinstance(p, e131.DataPacket)]
        self.assertTrue(levels, daemon.output)
        last = levels[-1]
        self.assertEqual(
            (last.universe, last.priority, last.source_name), (1, 100, "netmidi example")
        )
        self.assertEqual(last.slots[30], round(0.6 * 255))  # preset.worklight > dimmers.31
        code = yield daemon.stop()
        self.assertEqual(code, 0, daemon.output)
        ends = [p for p in datagrams(rx) if isinstance(p, e131.DataPacket) and p.terminated]
        self.assertEqual(len(ends), 3)
        self.assertIn("mdns: goodbye sent", daemon.output)
        self.assertNotIn("Traceback", daemon.output)
