"""The midi backend against a fake MIDI API: port finding, unplug/replug, the thread hand-over."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from netmidi.backend import Event, Instance
from netmidi.options import parse_options
from netmidi.testing.midi import FakeMidiApi
from netmidi.values import Value

try:
    from netmidi.backends.midi import (
        MidiBackend,
        MidiInstance,
        MidiPortMissing,
        _Poller,
        match_port,
    )
except ImportError as error:
    raise SkipTest(str(error)) from None


class ThreadClock(Clock):
    """A task.Clock that also takes callFromThread calls and runs them when told."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def callFromThread(self, f: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self.from_threads.append(lambda: f(*args))

    def run_threads(self) -> int:
        with self._lock:
            calls, self.from_threads = self.from_threads, []
        for call in calls:
            call()
        return len(calls)


def make_backend(
    api: FakeMidiApi,
    instances: Mapping[str, Mapping[str, Any]],
    clock: Any = None,
    **global_options: Any,
) -> tuple[MidiBackend, list[str]]:
    parsed, errors = parse_options(MidiBackend.all_global_options(), global_options)
    assert not errors, errors
    backend = MidiBackend(clock or ThreadClock(), parsed, api_factory=api.factory)
    lines: list[str] = []
    logger = Logger(observer=lambda event: lines.append(formatEvent(event)))
    backend.log = logger
    for name, options in instances.items():
        parsed_instance, errors = parse_options(MidiBackend.instance_options, options)
        assert not errors, errors
        instance = backend.add_instance(name, parsed_instance)
        instance.log = logger
        instance.bad._log = logger  # type: ignore[attr-defined]
    return backend, lines


def collect(instance: Instance) -> list[list[Event]]:
    batches: list[list[Event]] = []

    def sink(_instance: Instance, events: Sequence[Event]) -> None:
        batches.append(list(events))

    instance.attach(sink)
    return batches


def specs(batches: list[list[Event]]) -> list[tuple[str, int]]:
    return [(str(channel), value.raw) for batch in batches for channel, value in batch]


class PortMatchTests(SynchronousTestCase):
    def test_index_and_prefix(self) -> None:
        names = ["Midi Through:Port-0 14:0", "nanoKONTROL2:MIDI 1 20:0", "peer:src"]
        self.assertEqual(match_port("1", names), 1)
        self.assertEqual(match_port("3", names), None)
        self.assertEqual(match_port("nano", names), 1)
        self.assertEqual(match_port("peer:src", names), 2)
        self.assertEqual(match_port("Kontrol", names), None)


class BackendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.api = FakeMidiApi(inputs=["Through", "nanoKONTROL2 in"], outputs=["synth out"])

    def start(self, **options: Any) -> tuple[MidiBackend, MidiInstance, list[str]]:
        backend, lines = make_backend(self.api, {"dev": options})
        backend.startService()
        self.addCleanup(backend.stopService)
        return backend, backend.instances["dev"], lines

    def test_input_by_prefix_batches_per_turn(self) -> None:
        backend, instance, lines = self.start(read="nano")
        batches = collect(instance)
        self.api.play("nanoKONTROL2 in", [[0x90, 60, 100], [0x80, 60, 0], [0xB1, 7, 64]])
        self.assertEqual(batches, [])
        self.assertEqual(backend.reactor.run_threads(), 1)  # one wake-up for three messages
        self.assertEqual(len(batches), 1)
        self.assertEqual(specs(batches), [("ch0.note60", 100), ("ch0.note60", 0), ("ch1.cc7", 64)])
        self.assertIn("midi dev: input port nanoKONTROL2 in open", lines)

    def test_input_by_index_and_source_alias(self) -> None:
        backend, instance, _ = self.start(source="0")
        batches = collect(instance)
        self.api.play("Through", [[0xE0, 0, 64]])
        backend.reactor.run_threads()
        self.assertEqual(specs(batches), [("ch0.pitch", 8192)])

    def test_non_channel_and_bad_input(self) -> None:
        backend, instance, lines = self.start(read="Through")
        batches = collect(instance)
        self.api.play(
            "Through",
            [[0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], [0xF8], [0xF1, 0x10], [0x90, 60], [0x40]],
        )
        backend.reactor.run_threads()
        self.assertEqual(batches, [])
        self.assertEqual(instance.bad.total, 2)
        self.assertTrue(any("incomplete message" in line for line in lines), lines)

    def test_rpn_across_messages(self) -> None:
        backend, instance, _ = self.start(read="Through")
        batches = collect(instance)
        self.api.play("Through", [[0xB0, 101, 0], [0xB0, 100, 1], [0xB0, 6, 64], [0xB0, 38, 1]])
        backend.reactor.run_threads()
        self.assertIn(("ch0.rpn1", 64 << 7 | 1), specs(batches))
        self.assertNotIn(("ch0.rpn1", 64 << 7), specs(batches))

    def test_output_immediate(self) -> None:
        _, instance, _ = self.start(write="synth", **{"epn-tx": "short"})
        instance.send(
            [
                (instance.parse_channel("ch0.note60"), Value.from_raw(127, 7)),
                (instance.parse_channel("ch2.nrpn900"), Value.from_normalised(1.0)),
                (instance.parse_channel("ch3.pitch"), Value.from_raw(8192, 14)),
            ]
        )
        self.assertEqual(
            [m.hex(" ") for m in self.api.sent["synth out"]],
            ["90 3c 7f", "b2 63 07", "b2 62 04", "b2 06 7f", "b2 26 7f", "e3 00 40"],
        )

    def test_missing_port_waits_with_one_line(self) -> None:
        backend, instance, lines = self.start(read="Launchpad", write="synth")
        waiting = [line for line in lines if "no input port matches 'Launchpad'" in line]
        self.assertEqual(
            waiting,
            [
                "midi dev: no input port matches 'Launchpad'; waiting for it"
                " (input ports: 0: Through, 1: nanoKONTROL2 in)"
            ],
        )
        backend.reactor.advance(1.0)
        backend.reactor.advance(1.0)
        self.assertEqual(len([line for line in lines if "no input port" in line]), 1)
        self.api.inputs.append("Launchpad Mini")
        backend.reactor.advance(1.0)
        batches = collect(instance)
        self.api.play("Launchpad Mini", [[0x92, 1, 2]])
        backend.reactor.run_threads()
        self.assertEqual(specs(batches), [("ch2.note1", 2)])

    def test_required_port_missing_refuses_to_start(self) -> None:
        backend, lines = make_backend(self.api, {"dev": {"read": "Launchpad", "required": True}})
        with self.assertRaises(MidiPortMissing) as caught:
            backend.startService()
        self.assertIn("dev input 'Launchpad'", str(caught.exception))
        self.assertTrue(any("required ports missing" in line for line in lines))

    def test_unplug_and_replug(self) -> None:
        backend, instance, lines = self.start(read="nano", write="synth")
        batches = collect(instance)
        self.api.unplug("nanoKONTROL2 in")
        self.api.unplug("synth out")
        backend.reactor.advance(1.0)
        gone = [line for line in lines if "disappeared" in line]
        self.assertEqual(len(gone), 2, lines)
        self.assertIn("input port nanoKONTROL2 in disappeared; reopening it", gone[0])
        self.assertEqual(self.api.open_inputs, [])
        backend.reactor.advance(1.0)
        self.assertEqual(len([line for line in lines if "disappeared" in line]), 2)
        # Sending while the output is away goes nowhere and raises nothing.
        instance.send([(instance.parse_channel("ch0.cc1"), Value.from_raw(1, 7))])
        self.api.inputs.append("nanoKONTROL2 in")
        self.api.outputs.append("synth out")
        backend.reactor.advance(1.0)
        self.api.play("nanoKONTROL2 in", [[0xB0, 1, 5]])
        backend.reactor.run_threads()
        self.assertEqual(specs(batches), [("ch0.cc1", 5)])
        instance.send([(instance.parse_channel("ch0.cc1"), Value.from_raw(2, 7))])
        self.assertEqual(self.api.sent["synth out"], [b"\xb0\x01\x02"])

    def test_write_failure_closes_and_reopens(self) -> None:
        backend, instance, lines = self.start(write="synth")
        self.api.open_outputs[0].closed = True
        instance.send([(instance.parse_channel("ch0.cc1"), Value.from_raw(1, 7))])
        self.assertTrue(any("writing failed" in line for line in lines), lines)
        backend.reactor.advance(1.0)
        instance.send([(instance.parse_channel("ch0.cc1"), Value.from_raw(3, 7))])
        self.assertEqual(self.api.sent["synth out"], [b"\xb0\x01\x03"])

    def test_virtual_ports(self) -> None:
        backend, instance, _ = self.start(virtual="netmidi show")
        self.assertEqual(self.api.virtual, ["netmidi show", "netmidi show"])
        batches = collect(instance)
        self.api.play("netmidi show", [[0xC0, 5]])
        backend.reactor.run_threads()
        self.assertEqual(specs(batches), [("ch0.program", 5)])
        instance.send([(instance.parse_channel("ch0.aftertouch"), Value.from_raw(9, 7))])
        self.assertEqual(self.api.sent["netmidi show"], [b"\xd0\x09"])

    def test_api_failure_retried(self) -> None:
        self.api.fail = RuntimeError("no JACK server")
        backend, instance, lines = self.start(read="nano")
        backend.reactor.advance(1.0)
        failures = [line for line in lines if "cannot use the MIDI API" in line]
        self.assertEqual(len(failures), 1)
        self.assertIn("no JACK server", failures[0])
        self.api.fail = None
        backend.reactor.advance(1.0)
        self.assertIn("midi: the MIDI API default works now", lines)
        self.assertEqual(len(self.api.open_inputs), 1)

    def test_list_option(self) -> None:
        backend, lines = make_backend(self.api, {"dev": {"read": "0"}}, list=True)
        backend.startService()
        self.addCleanup(backend.stopService)
        self.assertIn("midi input port 1: nanoKONTROL2 in", lines)
        self.assertIn("midi output port 0: synth out", lines)

    def test_stop_closes_everything(self) -> None:
        backend, instance, _ = self.start(read="nano", write="synth", virtual="v")
        batches = collect(instance)
        port = self.api.reader("nanoKONTROL2 in")
        backend.stopService()
        self.assertEqual(self.api.open_inputs, [])
        self.assertEqual(self.api.open_outputs, [])
        self.assertTrue(self.api.closed)
        port.deliver([0x90, 1, 1])  # a late callback after stop is ignored
        backend.reactor.run_threads()
        self.assertEqual(batches, [])

    def test_check(self) -> None:
        backend, _ = make_backend(
            self.api, {"a": {"read": "x", "source": "y"}, "b": {}, "c": {"virtual": "v"}}
        )
        self.assertEqual(
            backend.check(),
            [
                "instance a: give read or source, not both",
                "instance b: expected read, write or virtual",
            ],
        )

    def test_channel_specs(self) -> None:
        _, instance, _ = self.start(read="nano")
        channel = instance.parse_channel("channel15.cc7")
        self.assertEqual(instance.channel_spec(channel), "ch15.cc7")


class ThreadHandOverTests(TestCase):
    """Real threads and the real reactor: many messages, no loss, no reordering."""

    async def test_no_loss_no_reordering(self) -> None:
        api = FakeMidiApi(inputs=["dev"])
        backend, _ = make_backend(api, {"in": {"read": "dev"}}, clock=reactor)
        backend.startService()
        self.addCleanup(backend.stopService)
        batches = collect(backend.instances["in"])
        count = 20_000
        messages = [[0xB0 | (n >> 14) % 16, (n >> 7) & 0x7F, n & 0x7F] for n in range(count)]
        sender = threading.Thread(target=api.play, args=("dev", messages, False))
        sender.start()
        for _ in range(1000):
            if len(specs(batches)) >= count:
                break
            await deferLater(reactor, 0.01, lambda: None)
        sender.join()
        # (N)RPN events decoded from CC 6/38/98-101 come on top; compare the CCs.
        received = [event for event in specs(batches) if ".cc" in event[0]]
        expected = [(f"ch{(n >> 14) % 16}.cc{(n >> 7) & 0x7F}", n & 0x7F) for n in range(count)]
        self.assertEqual(received, expected)
        self.assertLess(len(batches), count // 10)


class QueuedPort:
    """Stands in for an rtmidi input port in queue mode (no callback): ``get_message``."""

    def __init__(self) -> None:
        self.queue: list[tuple[list[int], float]] = []
        self.lock = threading.Lock()

    def push(self, message: list[int]) -> None:
        with self.lock:
            self.queue.append((message, 0.0))

    def get_message(self) -> tuple[list[int], float] | None:
        with self.lock:
            return self.queue.pop(0) if self.queue else None


class PollerTests(TestCase):
    """The thread that reads JACK input queues: order kept, nothing read after removal."""

    async def test_order_and_removal(self) -> None:
        poller = _Poller((0.0005, 0.002, 0.05))
        self.addCleanup(poller.stop)
        port, other = QueuedPort(), QueuedPort()
        got: list[tuple[str, list[int]]] = []
        poller.add(port, lambda message: got.append(("a", message)))
        poller.add(other, lambda message: got.append(("b", message)))
        for n in range(1000):
            port.push([0xB0, 1, n % 128])
        other.push([0x90, 1, 1])
        for _ in range(200):
            if len(got) == 1001:
                break
            await deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(
            [m for source, m in got if source == "a"], [[0xB0, 1, n % 128] for n in range(1000)]
        )
        self.assertIn(("b", [0x90, 1, 1]), got)
        await deferLater(reactor, 0.1, lambda: None)  # idle: the poller slows down
        poller.remove(port)
        port.push([0xB0, 2, 2])
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(got), 1001)
        self.assertEqual(len(port.queue), 1)
