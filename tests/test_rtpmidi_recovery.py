"""The rtpmidi backend with discovery and the recovery journal, over real sockets.

* Two backends find each other over mDNS (inside the network lab, on lo) and set up a session
  with no ``peer:``; a restarted session is invited again.
* A lossy UDP relay drops 10 % of the RTP packets between two instances while notes and
  controllers stream: with the journal the receiver ends in the sender's state, without it not.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor as _reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from netmidi.backend import Channel, Event, Instance
from netmidi.backends.rtpmidi import RtpMidiBackend, RtpMidiInstance
from netmidi.codec import rtpmidi
from netmidi.codec.midi import parse_midi_channel
from netmidi.mdns import DiscoveredSession
from netmidi.options import HostPort, parse_options
from netmidi.rtpmidi_discovery import Discovery, reachable
from netmidi.testing.daemon import DaemonProcess, start_daemon
from netmidi.values import Value
from tests import test_rtpmidi_interop as interop

reactor: Any = _reactor
IN_LAB = os.environ.get("NETMIDI_NETLAB") == "1"


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> float:
    """Run the reactor until ``condition()`` holds; the seconds it took (fail after timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await deferLater(reactor, 0.02)
    return time.monotonic() - start


class Relay(DatagramProtocol):
    """Forwards datagrams to ``target``, dropping each with probability ``loss``."""

    def __init__(self, target: tuple[str, int], loss: float, seed: int) -> None:
        self.target = target
        self.loss = loss
        self.random = random.Random(seed)
        self.forwarded = self.dropped = self.dropped_events = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self.random.random() < self.loss:
            self.dropped += 1
            self.dropped_events += len(rtpmidi.decode(datagram).messages)
            return
        self.forwarded += 1
        assert self.transport is not None
        self.transport.write(datagram, self.target)


def start_backend(
    case: TestCase, global_options: dict[str, Any], **instances: dict[str, Any]
) -> tuple[RtpMidiBackend, dict[str, list[list[Event]]]]:
    """A started rtpmidi backend with these instances, and the event batches each emits."""
    parsed, errors = parse_options(RtpMidiBackend.all_global_options(), global_options)
    case.assertEqual(errors, {})
    backend = RtpMidiBackend(reactor, parsed)
    sinks: dict[str, list[list[Event]]] = {}
    for name, given in instances.items():
        options, errors = parse_options(RtpMidiBackend.instance_options, given)
        case.assertEqual(errors, {})
        instance = backend.add_instance(name, options)
        received: list[list[Event]] = []
        sinks[name] = received

        def sink(source: Instance, events: Sequence[Event], into: Any = received) -> None:
            into.append(list(events))

        instance.attach(sink)
    case.assertEqual(backend.check(), [])
    backend.startService()
    case.addCleanup(lambda: backend.stopService() if backend.running else None)
    return backend, sinks


class RecoveryTestsBase(TestCase):
    def backend(self, global_options: dict[str, Any], **instances: dict[str, Any]) -> Any:
        return start_backend(self, global_options, **instances)


class FakeInstance:
    """An apple-mode instance as discovery sees it, recording what it is told."""

    def __init__(self, name: str, bind: str, invite: list[str]) -> None:
        self.name = self.title = name
        self.options = {"bind": HostPort(bind, 0), "invite": invite}
        self.calls: list[tuple[str, object]] = []

    @property
    def control_port(self) -> int:
        return 5004

    def discovered(self, name: str, control: tuple[str, int]) -> None:
        self.calls.append(("discovered", (name, control)))

    def vanished(self, control: tuple[str, int]) -> None:
        self.calls.append(("vanished", control))


class DiscoveryUnitTests(TestCase):
    """Which address a discovered session is invited on, and what happens when it moves."""

    def test_reachable(self) -> None:
        session = DiscoveredSession("iPad", ("10.0.0.5", "fe80::5%2"), 5004, "ipad.local.")
        self.assertEqual(reachable(session, "0.0.0.0"), "10.0.0.5")
        self.assertEqual(reachable(session, "::"), "10.0.0.5")  # dual stack: IPv4 first
        self.assertEqual(reachable(session, "::1"), "fe80::5%2")
        v6_only = DiscoveredSession("x", ("fe80::5%2",), 5004, "")
        self.assertIsNone(reachable(v6_only, "127.0.0.1"))

    def test_moved_and_removed(self) -> None:
        discovery = Discovery(MultiService(), Clock(), {"mdns-name": "t"})
        v4 = FakeInstance("a", "0.0.0.0", ["*"])
        v6 = FakeInstance("b", "::1", ["iPad"])
        discovery.instances = [v4, v6]
        discovery._added(DiscoveredSession("iPad", ("10.0.0.5",), 5004, ""))
        discovery._added(DiscoveredSession("iPad", ("10.0.0.6",), 5004, ""))
        discovery._removed("iPad")
        self.assertEqual(
            v4.calls,
            [
                ("discovered", ("iPad", ("10.0.0.5", 5004))),
                ("vanished", ("10.0.0.5", 5004)),
                ("discovered", ("iPad", ("10.0.0.6", 5004))),
                ("vanished", ("10.0.0.6", 5004)),
            ],
        )
        self.assertEqual(v6.calls, [])  # no IPv6 address to reach it on


class DiscoveryLabTests(RecoveryTestsBase):
    """Sessions found over mDNS, inside the network lab."""

    timeout = 60

    def setUp(self) -> None:
        if not IN_LAB:
            self.skipTest("needs the network lab (run inside ../shared/netlab)")

    def lab(self, host: str) -> dict[str, Any]:
        return {"mdns-name": host, "mdns-interface": "127.0.0.1"}

    async def test_discovered_and_invited_without_peer(self) -> None:
        """A invites '*' and finds B by mDNS: a session within 5 s, MIDI flows, and after B
        restarts (goodbye, then a new announcement) A invites it again."""
        b_backend, _ = self.backend(
            self.lab("host-b"), b={"mode": "apple", "bind": "127.0.0.1", "join": "*"}
        )
        started = time.monotonic()
        a_backend, _ = self.backend(
            self.lab("host-a"), a={"mode": "apple", "bind": "127.0.0.1", "invite": "*"}
        )
        a: RtpMidiInstance = a_backend.instances["a"]
        await wait_until(lambda: a._destinations, timeout=10)
        took = time.monotonic() - started
        self.assertLess(took, 5.0)
        b_port = b_backend.instances["b"].control_port
        self.assertEqual([p.control for p in a.session.peers], [("127.0.0.1", b_port)])

        # B goes away (BY and an mDNS goodbye), then comes back on a new port pair.
        await b_backend.stopService()
        await wait_until(lambda: not a._destinations and not a.session.peers, timeout=10)
        b2_backend, b2_in = self.backend(
            self.lab("host-b"), b={"mode": "apple", "bind": "127.0.0.1", "join": "*"}
        )
        new_port = b2_backend.instances["b"].control_port
        await wait_until(lambda: a._destinations, timeout=10)
        self.assertEqual([p.control for p in a.session.peers], [("127.0.0.1", new_port)])
        note = parse_midi_channel("ch0.note60")
        a.send([(note, Value.from_raw(99, 7))])
        await wait_until(lambda: b2_in["b"])
        self.assertEqual(b2_in["b"], [[(note, Value.from_raw(99, 7))]])

    async def test_invite_by_name_only(self) -> None:
        """``invite: <name>`` invites that session and no other."""
        self.backend(self.lab("host-b"), b={"mode": "apple", "bind": "127.0.0.1", "join": "*"})
        self.backend(
            self.lab("host-c"),
            c={"mode": "apple", "bind": "127.0.0.1", "join": "*", "title": "other"},
        )
        a_backend, _ = self.backend(
            self.lab("host-a"), a={"mode": "apple", "bind": "127.0.0.1", "invite": "b"}
        )
        a = a_backend.instances["a"]
        await wait_until(lambda: a._destinations, timeout=10)
        await deferLater(reactor, 1.0)
        self.assertEqual(len(a.session.peers), 1)
        discovered = a_backend.discovery.mdns.discovered
        self.assertEqual(sorted(s.name for s in discovered.values()), ["b", "other"])

    async def test_detect_lists_sessions(self) -> None:
        """With detect on, every session found is listed with the line that invites it."""
        logged: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            logged.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.backend(
            self.lab("host-b"), b={"mode": "apple", "bind": "127.0.0.1", "title": "Stage iPad"}
        )
        self.backend(
            {**self.lab("host-a"), "detect": "on"}, a={"mode": "apple", "bind": "127.0.0.1"}
        )
        await wait_until(lambda: any("detect: session" in line for line in logged), 10)
        (line,) = [line for line in logged if "detect: session" in line]
        self.assertIn("'Stage iPad' at 127.0.0.1 port", line)
        self.assertIn("invite it with 'invite: Stage iPad'", line)


def final_state(batches: Sequence[Sequence[Event]]) -> dict[Channel, int]:
    state: dict[Channel, int] = {}
    for batch in batches:
        for channel, value in batch:
            state[channel] = value.raw
    return state


class LossTests(RecoveryTestsBase):
    """10 % of the RTP packets lost on the way: the journal repairs the receiver's state."""

    timeout = 120

    async def stream(self, journal: bool, seed: int = 7) -> dict[str, Any]:
        b_backend, sinks = self.backend({}, b={"mode": "direct", "bind": "127.0.0.1"})
        b_in = sinks["b"]
        b = b_backend.instances["b"]
        b_port = b.control_port
        relay = Relay(("127.0.0.1", b_port), 0.10, seed)
        relay_port = reactor.listenUDP(0, relay, interface="127.0.0.1")
        self.addCleanup(relay_port.stopListening)
        a_backend, _ = self.backend(
            {},
            a={
                "mode": "direct",
                "bind": "127.0.0.1",
                "peer": f"127.0.0.1 {relay_port.getHost().port}",
                "journal": journal,
            },
        )
        a = a_backend.instances["a"]
        rng = random.Random(seed)
        sent: list[Event] = []
        packets = 1500
        for _ in range(packets):
            events: list[Event] = []
            for _ in range(rng.randint(1, 2)):
                ch = rng.randint(0, 3)
                if rng.random() < 0.5:
                    channel = parse_midi_channel(f"ch{ch}.note{rng.randint(48, 83)}")
                    raw = rng.choice([0, rng.randint(1, 127)])
                else:
                    channel = parse_midi_channel(f"ch{ch}.cc{rng.randint(1, 32)}")
                    raw = rng.randint(0, 127)
                events.append((channel, Value.from_raw(raw, 7)))
            a.send(events)
            sent += events
            await deferLater(reactor, 0)  # one reactor turn, one packet
        # A last packet that is never dropped carries the journal of the tail of the stream.
        relay.loss = 0.0
        a.send([(parse_midi_channel("ch5.cc1"), Value.from_raw(1, 7))])
        await wait_until(lambda: b_in and b_in[-1][-1][0] == parse_midi_channel("ch5.cc1"))
        got = [event for batch in b_in for event in batch]
        (source,) = b._sources.values()
        return {
            "sent": sent,
            "got": got,
            "dropped": relay.dropped,
            "dropped_events": relay.dropped_events,
            "lost": source.receiver.lost,
            "repaired": source.receiver.repaired,
            "packets": relay.forwarded + relay.dropped,
            "want": final_state([sent]),
            "have": final_state([got]),
        }

    async def test_journal_repairs_final_state(self) -> None:
        with_journal = await self.stream(journal=True)
        without = await self.stream(journal=False)
        self.assertGreater(with_journal["dropped"], 100)
        self.assertEqual(with_journal["dropped"], without["dropped"])  # same seed, same losses
        want = with_journal["want"]
        have = {k: v for k, v in with_journal["have"].items() if k in want}
        self.assertEqual(have, want)
        bare = {k: v for k, v in without["have"].items() if k in want}
        wrong = sum(1 for k in want if bare.get(k) != want[k])
        self.assertGreater(wrong, 0)
        # The figures for the report (see docs/backends/rtpmidi-discovery.rst).
        self.assertEqual(with_journal["lost"], with_journal["dropped"])
        self.assertGreater(with_journal["repaired"], 0)
        self.assertEqual(without["repaired"], 0)
        print(
            f"\n10 % loss: {with_journal['packets']} packets, {with_journal['dropped']} dropped"
            f" carrying {with_journal['dropped_events']} of {len(with_journal['sent'])} events."
            f" Without journal: all {without['dropped_events']} lost, {wrong} of {len(want)}"
            f" channels end wrong. With journal: {with_journal['repaired']} repair messages,"
            f" 0 channels end wrong."
        )


SHOW = """\
backends:
  rtpmidi:
    mdns-name: {host}
    mdns-interface: 127.0.0.1
instances:
  {name}:
    backend: rtpmidi
    mode: apple
    bind: 127.0.0.1
    {role}: "*"
  lb:
    backend: loopback
map:
  - lb.x > {name}.ch0.note60
"""


class DaemonDiscoveryTests(TestCase):
    """Two ``twistd netmidi`` daemons in the lab find each other with no ``peer:``."""

    timeout = 60

    def setUp(self) -> None:
        if not IN_LAB:
            self.skipTest("needs the network lab (run inside ../shared/netlab)")

    def daemon(self, directory: str, name: str, role: str) -> DaemonProcess:
        show = os.path.join(directory, f"{name}.yaml")
        with open(show, "w") as file:
            file.write(SHOW.format(host=f"host-{name}", name=name, role=role))
        process = start_daemon(reactor, "-c", show, cwd=directory)
        self.addCleanup(lambda: process.stop() if not process.exit_code.called else None)
        return process

    async def test_two_daemons_establish_a_session(self) -> None:
        temporary = tempfile.TemporaryDirectory()
        self.addCleanup(temporary.cleanup)
        directory = temporary.name
        b = self.daemon(directory, "b", "join")
        a = self.daemon(directory, "a", "invite")
        await a.wait_for(reactor, "netmidi running")
        await b.wait_for(reactor, "netmidi running")
        started = time.monotonic()
        await a.wait_for(reactor, "a: session with 'b'", timeout=10)
        took = time.monotonic() - started
        await b.wait_for(reactor, "b: session with 'a'", timeout=5)
        self.assertLess(took, 5.0, a.output)
        # B's goodbye reaches A before B exits: A sees the session go away.
        self.assertEqual(await b.stop(), 0)
        self.assertIn("mdns: goodbye sent for 1 announcement(s)", b.output)
        await a.wait_for(reactor, "mdns: session 'b' went away", timeout=5)
        self.assertEqual(await a.stop(), 0)
        self.assertNotIn("Traceback", a.output + b.output)


class WithDiscovery:
    """Runs the interop tests with mDNS on (restricted to lo): discovery must not disturb them."""

    def instance(self, name: str = "r", **given: Any) -> tuple[Instance, list[list[Event]]]:
        mdns = {"mdns-name": "netmidi-test", "mdns-interface": "127.0.0.1"}
        backend, sinks = start_backend(self, mdns, **{name: given})  # type: ignore[arg-type]
        assert backend.discovery is not None or given.get("mode") != "apple"
        return backend.instances[name], sinks[name]


class PymidiWithDiscoveryTests(WithDiscovery, interop.PymidiTests):
    pass


class NodeWithDiscoveryTests(WithDiscovery, interop.NodeTests):
    pass
