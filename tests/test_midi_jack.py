"""The midi backend on real ports: a private JACK dummy server and a peer program's ports."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from netmidi.backend import Event, Instance
from netmidi.options import parse_options
from netmidi.testing.daemon import start_daemon
from netmidi.testing.jack import JackDummy, JackPeer, JackUnavailable
from netmidi.values import Value
from tests.showfiles import write_show

try:
    from netmidi.backends.midi import MidiBackend, MidiInstance
except ImportError as error:
    raise SkipTest(str(error)) from None


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("timed out")


class JackCase(TestCase):
    """A private JACK server for the class, and a peer program's ports for each test."""

    server: JackDummy

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = JackDummy(period=256)
        try:
            cls.server.start()
        except JackUnavailable as error:
            raise SkipTest(str(error)) from None

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()

    def setUp(self) -> None:
        self.peer = JackPeer("peer")
        self.addCleanup(self.peer.close)

    async def arrived(self, count: int) -> list[list[int]]:
        await wait_for(lambda: len(self.peer.received) >= count)
        await deferLater(reactor, 0.05, lambda: None)  # nothing more should come
        return [message for _, message in self.peer.received]


class JackTests(JackCase):
    async def start(self, **options: Any) -> tuple[MidiBackend, MidiInstance, list[Event]]:
        """Start a backend with one instance; give JACK a moment to make the connections."""
        parsed, errors = parse_options(
            MidiBackend.all_global_options(), {"api": "jack", "rescan": 0.1}
        )
        self.assertEqual(errors, {})
        backend = MidiBackend(reactor, parsed)
        instance_options, errors = parse_options(MidiBackend.instance_options, options)
        self.assertEqual(errors, {})
        instance = backend.add_instance("dev", instance_options)
        received: list[Event] = []

        def sink(_instance: Instance, events: Sequence[Event]) -> None:
            received.extend(events)

        instance.attach(sink)
        backend.startService()
        self.addCleanup(backend.stopService)
        await deferLater(reactor, 0.2, lambda: None)
        return backend, backend.instances["dev"], received

    async def test_every_message_type_in(self) -> None:
        _, _, received = await self.start(read="peer-tx")
        messages = [
            [0x90, 60, 100],
            [0x80, 60, 10],
            [0xA1, 61, 20],
            [0xB2, 7, 30],
            [0xC3, 4],
            [0xD4, 50],
            [0xE5, 0x01, 0x40],
            [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7],
            [0xF8],
            [0xF2, 0x01, 0x02],
            [0xB6, 99, 7],
            [0xB6, 98, 4],
            [0xB6, 6, 0x10],
            [0xB6, 38, 0x05],
            [0xB7, 101, 0],
            [0xB7, 100, 1],
            [0xB7, 6, 0x40],
            [0xB7, 38, 0],
        ]
        for message in messages:
            self.peer.send(message)

        await wait_for(lambda: any("rpn1" in str(channel) for channel, _ in received))
        events = [(str(channel), value.raw, value.bits) for channel, value in received]
        self.assertEqual(
            [event for event in events if not event[0].startswith(("ch6.cc", "ch7.cc"))],
            [
                ("ch0.note60", 100, 7),
                ("ch0.note60", 0, 7),
                ("ch1.pressure61", 20, 7),
                ("ch2.cc7", 30, 7),
                ("ch3.program", 4, 7),
                ("ch4.aftertouch", 50, 7),
                ("ch5.pitch", 0x2001, 14),
                ("ch6.nrpn900", 0x10 << 7 | 5, 14),
                ("ch7.rpn1", 0x40 << 7, 14),
            ],
        )

    async def test_every_message_type_out(self) -> None:
        _, instance, _ = await self.start(write="peer-rx", **{"epn-tx": "full"})
        events = [
            ("ch0.note60", Value.from_raw(100, 7)),
            ("ch0.note60", Value.from_raw(0, 7)),
            ("ch1.pressure61", Value.from_raw(20, 7)),
            ("ch2.cc7", Value.from_normalised(1.0)),
            ("ch3.program", Value.from_raw(4, 7)),
            ("ch4.aftertouch", Value.from_raw(50, 7)),
            ("ch5.pitch", Value.from_raw(0x2001, 14)),
            ("ch6.nrpn900", Value.from_raw(0x0805, 14)),
        ]
        instance.send([(instance.parse_channel(spec), value) for spec, value in events])
        expected = [
            [0x90, 60, 100],
            [0x90, 60, 0],
            [0xA1, 61, 20],
            [0xB2, 7, 127],
            [0xC3, 4],
            [0xD4, 50],
            [0xE5, 0x01, 0x40],
            [0xB6, 99, 7],
            [0xB6, 98, 4],
            [0xB6, 6, 0x10],
            [0xB6, 38, 0x05],
            [0xB6, 101, 127],
            [0xB6, 100, 127],
        ]
        await wait_for(lambda: len(self.peer.received) >= len(expected))
        self.assertEqual([message for _, message in self.peer.received], expected)

    async def test_unplug_and_replug(self) -> None:
        backend, instance, received = await self.start(read="peer-tx")
        self.peer.send([0x90, 1, 1])
        await wait_for(lambda: len(received) == 1)
        self.peer.unplug()
        await wait_for(lambda: instance.endpoints[0].port is None)
        self.peer.replug()
        await wait_for(lambda: instance.endpoints[0].port is not None)
        self.peer.send([0x90, 2, 2])
        await wait_for(lambda: len(received) == 2)
        self.assertEqual(str(received[1][0]), "ch0.note2")

    async def test_virtual_port(self) -> None:
        import rtmidi

        _, instance, received = await self.start(virtual="show")
        sender = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "sender")
        self.addCleanup(sender.delete)
        await wait_for(lambda: any(name.endswith(":show") for name in sender.get_ports()))
        index = next(i for i, n in enumerate(sender.get_ports()) if n.endswith(":show"))
        sender.open_port(index, "out")
        self.addCleanup(sender.close_port)
        sender.send_message([0xB0, 1, 99])
        await wait_for(lambda: len(received) == 1)
        self.assertEqual((str(received[0][0]), received[0][1].raw), ("ch0.cc1", 99))


THROUGH_THE_DAEMON = """
backends:
  midi: {api: jack, rescan: 0.2}
instances:
  keys: {backend: midi, read: peer-tx}
  loop: {backend: loopback}
  synth: {backend: midi, write: peer-rx, epn-tx: short}
map:
  - keys.ch0.note{0..127} > loop.note{0..127}
  - loop.note{0..127} > synth.ch1.cc{0..127}
  - keys.ch0.pitch > loop.bend
  - loop.bend > synth.ch2.nrpn900
  - keys.ch3.nrpn5 > synth.ch4.pitch
"""


class DaemonTests(JackCase):
    """``twistd netmidi`` routing midi -> loopback -> midi between a peer's two JACK ports."""

    timeout = 60

    async def test_route_through_the_daemon(self) -> None:
        directory = os.path.abspath(self.mktemp())
        write_show(directory, THROUGH_THE_DAEMON)
        daemon = start_daemon(reactor, "-c", "show.yaml", cwd=directory)
        self.addCleanup(daemon.ensure_stopped)
        await daemon.wait_for(reactor, "midi keys: input port peer-tx:midi open")
        await daemon.wait_for(reactor, "midi synth: output port peer-rx:midi open")
        await daemon.wait_for(reactor, "netmidi running")
        await deferLater(reactor, 0.3, lambda: None)

        self.peer.send([0x90, 60, 100])
        self.assertEqual(await self.arrived(1), [[0xB1, 60, 100]])
        self.peer.received.clear()
        self.peer.send([0x80, 60, 64])
        self.assertEqual(await self.arrived(1), [[0xB1, 60, 0]])
        self.peer.received.clear()
        # 14 bits in, 14 bits out, through a loopback channel: exact.
        self.peer.send([0xE0, 0x01, 0x40])
        self.assertEqual(
            await self.arrived(4), [[0xB2, 99, 7], [0xB2, 98, 4], [0xB2, 6, 0x40], [0xB2, 38, 1]]
        )
        self.peer.received.clear()
        for message in ([0xB3, 99, 0], [0xB3, 98, 5], [0xB3, 6, 0x7F], [0xB3, 38, 0x7E]):
            self.peer.send(message)
        self.assertEqual(await self.arrived(1), [[0xE4, 0x7E, 0x7F]])

        code = await daemon.stop(signal.SIGTERM)
        self.assertEqual(code, 0)
        self.assertNotIn("Traceback", daemon.output)
