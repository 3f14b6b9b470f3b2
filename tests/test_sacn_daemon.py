"""End to end: ``twistd -n netmidi`` on a show file with sACN instances, inside the network lab."""

from __future__ import annotations

import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from netmidi.codec import e131
from netmidi.testing.daemon import start_daemon
from tests.showfiles import write_show
from tests.test_sacn import LAB, PEER, datagrams, listener, sender, sleep

SHOW = """
backends:
  sacn:
    name: daemon test
    interface: 127.0.0.1

instances:
  desk:
    backend: sacn
    universe: 1
  node:
    backend: sacn
    universe: 2
    priority: 150
  other:
    backend: sacn
    universe: 3
  relay:
    backend: loopback

map:
  - desk.{3..512} > node.{512..3}
  - desk.1+2 > relay.wide
  - relay.wide > other.10+11
  - desk.3 > relay.eight
  - relay.eight > other.20+21
"""


class DaemonTests(TestCase):
    if not LAB:
        skip = "needs the network lab (run inside ../shared/netlab)"

    timeout = 60

    @inlineCallbacks
    def test_show_file(self) -> Any:
        directory = tempfile.mkdtemp()
        path = write_show(directory, SHOW)
        rx = listener(2, 3)
        self.addCleanup(rx.close)
        daemon = start_daemon(reactor, "-c", path, cwd=directory)
        self.addCleanup(lambda: daemon.exit_code.called or daemon.stop())
        yield daemon.wait_for(reactor, "netmidi running")
        yield sleep(0.3)
        datagrams(rx)  # the initial frames
        slots = bytes([0x12, 0x34, 200]) + bytes(range(3, 256)) + bytes(256)
        sender().sendto(e131.encode_data(PEER, "desk", 1, 0, slots), (e131.ipv4_group(1), 5568))
        yield sleep(0.3)
        data = {p.universe: p for p in datagrams(rx) if isinstance(p, e131.DataPacket)}
        # sACN to sACN: carried by the backend as a vector, reversed
        self.assertEqual(data[2].slots[2:], bytes(reversed(slots[2:])))
        self.assertEqual(data[2].slots[:2], b"\0\0")
        self.assertEqual(data[2].priority, 150)
        self.assertEqual(data[2].source_name, "daemon test")
        # through the loopback backend, as events: 16 bit exact, and 8 bit widened to 16
        self.assertEqual(data[3].slots[9:11], b"\x12\x34")
        self.assertEqual(data[3].slots[19:21], bytes([200, 200]))  # 200/255 = 51400/65535
        code = yield daemon.stop()
        self.assertEqual(code, 0)
        ends = [p for p in datagrams(rx) if isinstance(p, e131.DataPacket) and p.terminated]
        self.assertEqual(sorted(p.universe for p in ends), [2, 2, 2, 3, 3, 3])
        self.assertNotIn("Traceback", daemon.output)

    @inlineCallbacks
    def test_wide_and_single_conflict_is_a_show_file_error(self) -> Any:
        directory = tempfile.mkdtemp()
        path = write_show(
            directory,
            """
            instances:
              a: {backend: sacn, universe: 1}
              b: {backend: sacn, universe: 2}
            map:
              - a.5+6 > b.1+2
              - a.6 > b.3
            """,
        )
        daemon = start_daemon(reactor, "-c", path, cwd=directory)
        code = yield daemon.exit_code
        self.assertNotEqual(code, 0)
        self.assertIn("slot 6 is part of the wide channel 5+6", daemon.output)
        self.assertNotIn("Traceback", daemon.output)
