"""The rtpmidi backend over real sockets on loopback: two netmidi instances, raw peers, tshark."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet import task
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SkipTest, TestCase

from netmidi.backend import Event, Instance
from netmidi.backends.rtpmidi import RtpMidiBackend, RtpMidiInstance
from netmidi.codec import applemidi, rtpmidi
from netmidi.codec.applemidi import Exchange, Sync
from netmidi.codec.midi import parse_midi_channel
from netmidi.options import parse_options
from netmidi.show import load_show
from netmidi.testing.pcap import tshark_available, tshark_fields, write_pcap
from netmidi.values import Value

reactor: Any = _reactor

NOTE60 = parse_midi_channel("ch0.note60")
CC7 = parse_midi_channel("ch1.cc7")
PITCH = parse_midi_channel("ch2.pitch")
NRPN = parse_midi_channel("ch3.nrpn900")


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the reactor run until ``condition()`` holds (fail after ``timeout``)."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await deferLater(reactor, 0.01)
    raise AssertionError("condition not met in time")


def free_even_port() -> int:
    """An even port whose successor is free too (node-rtpmidi's parity bug)."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port % 2:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no free even port pair")


class Peer(DatagramProtocol):
    """A raw UDP endpoint that records what it receives (a scripted AppleMIDI peer)."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, (addr[0], addr[1])))

    def commands(self) -> list[applemidi.Command]:
        return [applemidi.decode(d) for d, _ in self.received if d[:2] == b"\xff\xff"]

    def rtp(self) -> list[rtpmidi.Packet]:
        return [rtpmidi.decode(d) for d, _ in self.received if d[:2] != b"\xff\xff"]


class BackendTestsBase(TestCase):
    def instance(self, name: str = "r", **given: Any) -> tuple[RtpMidiInstance, list[list[Event]]]:
        options, errors = parse_options(RtpMidiBackend.instance_options, given)
        self.assertEqual(errors, {})
        backend = RtpMidiBackend(reactor, {"detect": "off"})
        instance = backend.add_instance(name, options)
        assert isinstance(instance, RtpMidiInstance)
        self.assertEqual(backend.check(), [])
        received: list[list[Event]] = []

        def sink(source: Instance, events: Sequence[Event]) -> None:
            received.append(list(events))

        instance.attach(sink)
        backend.startService()
        self.addCleanup(backend.stopService)
        return instance, received

    def peer(self, port: int = 0, host: str = "127.0.0.1") -> tuple[Peer, Any]:
        protocol = Peer()
        listening = reactor.listenUDP(port, protocol, interface=host)
        self.addCleanup(listening.stopListening)
        return protocol, listening


class AppleSessionTests(BackendTestsBase):
    async def test_two_instances_exchange_midi(self) -> None:
        """Initiator and participant connect, then notes and CCs cross both ways, exact."""
        b, b_in = self.instance("b", mode="apple", bind="127.0.0.1 0", join="*")
        a, a_in = self.instance(
            "a", mode="apple", bind="127.0.0.1", peer=f"127.0.0.1 {b.control_port}"
        )
        self.assertEqual(a.control_port % 2, 0)
        await wait_until(lambda: a._destinations and b._destinations)
        a.send([(NOTE60, Value.from_raw(100, 7)), (CC7, Value.from_raw(127, 7))])
        a.send([(PITCH, Value.from_raw(12345, 14))])
        await wait_until(lambda: b_in)
        # One reactor turn, one packet: all three events arrive in one batch.
        self.assertEqual(
            b_in,
            [
                [
                    (NOTE60, Value.from_raw(100, 7)),
                    (CC7, Value.from_raw(127, 7)),
                    (parse_midi_channel("ch2.pitch"), Value.from_raw(12345, 14)),
                ]
            ],
        )
        b.send([(NRPN, Value.from_raw(9000, 14))])
        await wait_until(lambda: any(ch == NRPN for batch in a_in for ch, _ in batch))
        self.assertIn((NRPN, Value.from_raw(9000, 14)), a_in[-1])
        # RS comes back about a second after data, and is accepted by the sender.
        await wait_until(lambda: a.session and a.session.peers[0].acknowledged is not None, 3)
        self.assertEqual(a.session.peers[0].acknowledged, a._sequence)  # type: ignore[union-attr]
        self.assertEqual(a.bad.total + b.bad.total, 0)

    async def test_bye_on_stop(self) -> None:
        """Stopping an instance sends BY; the other side ends the session at once."""
        b, _ = self.instance("b", mode="apple", bind="127.0.0.1", join="*")
        options, _ = parse_options(
            RtpMidiBackend.instance_options,
            {"mode": "apple", "bind": "127.0.0.1", "peer": f"127.0.0.1 {b.control_port}"},
        )
        backend = RtpMidiBackend(reactor, {"detect": "off"})
        backend.add_instance("a", options)
        backend.startService()
        await wait_until(lambda: b._destinations)
        await backend.stopService()
        await wait_until(lambda: not b._destinations, 1)
        self.assertEqual(b.peers(), [])

    async def test_raw_peer_with_quirks(self) -> None:
        """A scripted peer: BY token 0, changed SSRC, outsiders' RTP dropped and counted."""
        r, r_in = self.instance(
            mode="apple", bind="127.0.0.1", join="*", title="netmidi ✓ long name " * 3
        )
        control, control_port = self.peer()
        data, data_port = self.peer(control_port.getHost().port + 1)
        target = ("127.0.0.1", r.control_port)
        target_data = ("127.0.0.1", r.control_port + 1)
        control_port.write(applemidi.encode(Exchange(b"IN", 77, 0xAAAA, "raw")), target)
        await wait_until(lambda: control.received)
        data_port.write(applemidi.encode(Exchange(b"IN", 77, 0xBBBB, "raw")), target_data)
        await wait_until(lambda: data.received)
        ok = applemidi.decode(data.received[0][0])
        self.assertEqual(ok, Exchange(b"OK", 77, r.ssrc, "netmidi ✓ long name " * 3))
        # The responder answers CK0 and never starts one itself.
        data_port.write(applemidi.encode(Sync(0xBBBB, 0, (42, 0, 0))), target_data)
        await wait_until(lambda: len(data.received) == 2)
        ck1 = applemidi.decode(data.received[1][0])
        assert isinstance(ck1, Sync)
        self.assertEqual((ck1.ssrc, ck1.count, ck1.timestamps[0]), (r.ssrc, 1, 42))
        # RTP from the member (even under a new SSRC) is taken; from another port it is not.
        packet = rtpmidi.encode_header(5, 0, 0xCCCC) + rtpmidi.encode_section([b"\x90\x3c\x40"])
        data_port.write(packet, target_data)
        control_port.write(packet, target_data)
        await wait_until(lambda: r.bad.counts["RTP from outside the session"] == 1)
        self.assertEqual(r_in, [[(NOTE60, Value.from_raw(64, 7))]])
        # macOS-style BY with token 0 on the control port ends it.
        control_port.write(applemidi.encode(Exchange(b"BY", 0, 0xAAAA)), target)
        await wait_until(lambda: not r._destinations)
        self.assertEqual(r.peers(), [])
        self.assertFalse(any(isinstance(c, Sync) and c.count == 0 for c in data.commands()))

    async def test_garbage_counted_not_fatal(self) -> None:
        """Malformed packets on both ports are dropped, counted and survive."""
        r, r_in = self.instance(mode="apple", bind="127.0.0.1", join="*")
        raw, raw_port = self.peer()
        for data in (
            b"",
            b"\xff\xff",
            b"\xff\xffIN\0\0\0\x01" + bytes(8),
            b"\x80",
            b"\x80\x61" + bytes(11) + b"\x0f",
        ):
            raw_port.write(data, ("127.0.0.1", r.control_port))
            raw_port.write(data, ("127.0.0.1", r.control_port + 1))
        await wait_until(lambda: r.bad.total >= 10)
        self.assertEqual(r_in, [])
        self.assertIn("IN with a protocol version other than 2", r.bad.counts)


class DirectModeTests(BackendTestsBase):
    async def test_direct_and_learn(self) -> None:
        """Direct mode sends to its peers; with learn the receiver answers the sender."""
        b, b_in = self.instance("b", mode="direct", bind="127.0.0.1", learn=True)
        a, a_in = self.instance(
            "a", mode="direct", bind="127.0.0.1", peer=f"127.0.0.1 {b.control_port}"
        )
        a.send([(CC7, Value.from_raw(1, 7))])
        await wait_until(lambda: b_in)
        b.send([(CC7, Value.from_raw(2, 7))])
        await wait_until(lambda: a_in)
        self.assertEqual(
            (b_in, a_in), ([[(CC7, Value.from_raw(1, 7))]], [[(CC7, Value.from_raw(2, 7))]])
        )

    async def test_many_senders_bounded(self) -> None:
        """Senders from many ports keep at most max-peers states; learned peers are replaced."""
        r, r_in = self.instance(mode="direct", bind="127.0.0.1", learn=True, **{"max-peers": 3})
        packet = rtpmidi.encode_header(1, 0, 5) + rtpmidi.encode_section([b"\x90\x3c\x01"])
        for _ in range(10):
            _, port = self.peer()
            port.write(packet, ("127.0.0.1", r.control_port))
        await wait_until(lambda: len(r_in) == 10)
        self.assertEqual(len(r._sources), 3)
        self.assertEqual(len(r._destinations), 3)

    async def test_sysex_never_an_event(self) -> None:
        """SysEx segments are reassembled and dropped, never misread; notes around them count."""
        r, r_in = self.instance(mode="direct", bind="127.0.0.1", **{"max-sysex": 64})
        raw, raw_port = self.peer()
        to = ("127.0.0.1", r.control_port)
        sections = [
            [b"\xf0\x7e\x7f\xf0", b"\x90\x3c\x7f"],
            [b"\xf7\x06\x01\xf0"],
            [b"\xf7\x02\xf7", b"\x90\x3c\x00"],
            [b"\xf7\x03\xf7"],  # continuation without a start
            [b"\xf0" + bytes(100) + b"\xf7"],  # over max-sysex
        ]
        for number, messages in enumerate(sections):
            raw_port.write(
                rtpmidi.encode_header(number, 0, 5) + rtpmidi.encode_section(messages), to
            )
        await wait_until(lambda: r.bad.total >= 2)
        await wait_until(lambda: len(r_in) == 2)
        self.assertEqual(
            r_in, [[(NOTE60, Value.from_raw(127, 7))], [(NOTE60, Value.from_raw(0, 7))]]
        )
        self.assertEqual(
            dict(r.bad.counts),
            {"SysEx continuation without a start": 1, "SysEx longer than 64 bytes": 1},
        )

    async def test_large_batch_split(self) -> None:
        """A batch bigger than max-packet goes out as several packets, nothing lost."""
        r, r_in = self.instance("r", mode="direct", bind="127.0.0.1", **{"max-packet": 200})
        raw, raw_port = self.peer()
        s, _ = self.instance(
            "s",
            mode="direct",
            bind="127.0.0.1",
            peer=f"127.0.0.1 {raw_port.getHost().port}",
            **{"max-packet": 200},
        )
        s.send([(parse_midi_channel(f"ch0.cc{n}"), Value.from_raw(n, 7)) for n in range(128)])
        await wait_until(lambda: sum(len(p.messages) for p in raw.rtp()) == 128)
        packets = raw.rtp()
        self.assertGreater(len(packets), 1)
        self.assertTrue(all(len(d) <= 200 for d, _ in raw.received))
        sequences = [p.header.sequence for p in packets]
        self.assertEqual(sequences, [(sequences[0] + i) & 0xFFFF for i in range(len(packets))])
        self.assertFalse(any(p.header.marker for p in packets))
        del r, r_in

    async def test_marker_rfc(self) -> None:
        """marker: rfc sets M=1 on packets with commands; the default (compat) sends 0."""
        raw, raw_port = self.peer()
        to = f"127.0.0.1 {raw_port.getHost().port}"
        s, _ = self.instance("s", mode="direct", bind="127.0.0.1", peer=to, marker="rfc")
        s.send([(NOTE60, Value.from_raw(1, 7))])
        await wait_until(lambda: raw.received)
        self.assertEqual([p.header.marker for p in raw.rtp()], [True])

    async def test_ipv6(self) -> None:
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            probe.bind(("::1", 0))
            probe.close()
        except OSError:
            raise SkipTest("no IPv6 loopback here") from None
        b, b_in = self.instance("b", mode="apple", bind="::1", join="*")
        a, _ = self.instance("a", mode="apple", bind="[::1]:0", peer=f"::1 {b.control_port}")
        await wait_until(lambda: a._destinations)
        a.send([(NOTE60, Value.from_raw(1, 7))])
        await wait_until(lambda: b_in)
        self.assertEqual(b_in, [[(NOTE60, Value.from_raw(1, 7))]])

    async def test_dual_stack(self) -> None:
        """Bound to '::', an instance serves IPv4 peers too (v4-mapped addresses)."""
        if os.environ.get("NETMIDI_NETLAB") != "1":
            raise SkipTest("binds every address: only inside the network lab")
        b, b_in = self.instance("b", mode="apple", bind="::", join="*")
        a, a_in = self.instance(
            "a", mode="apple", bind="127.0.0.1", peer=f"127.0.0.1 {b.control_port}"
        )
        await wait_until(lambda: a._destinations and b._destinations)
        self.assertEqual(b.peers()[0].host, "127.0.0.1")
        b.send([(NOTE60, Value.from_raw(3, 7))])
        await wait_until(lambda: a_in)
        self.assertEqual(a_in, [[(NOTE60, Value.from_raw(3, 7))]])


class StartTests(BackendTestsBase):
    def test_busy_port(self) -> None:
        """A port already in use is logged and leaves that instance down, without a traceback."""
        _, taken = self.peer()
        options, _ = parse_options(
            RtpMidiBackend.instance_options,
            {"mode": "direct", "bind": f"127.0.0.1 {taken.getHost().port}"},
        )
        backend = RtpMidiBackend(reactor, {"detect": "off"})
        instance = backend.add_instance("busy", options)
        with capturedLogs() as events:
            backend.startService()
        self.addCleanup(backend.stopService)
        self.assertEqual(
            [formatEvent(e) for e in events if e.get("log_level").name == "error"],
            [
                f"busy: cannot listen on 127.0.0.1 port {taken.getHost().port}"
                " ([Errno 98] Address already in use); instance not started"
            ],
        )
        instance.send([(NOTE60, Value.from_raw(1, 7))])  # harmless while down


class OptionTests(BackendTestsBase):
    def test_option_errors(self) -> None:
        table = RtpMidiBackend.instance_options
        _, errors = parse_options(table, {"mode": "tcp", "peer": "ipad.local 5004", "ssrc": 0})
        self.assertEqual(
            errors,
            {
                "mode": "got 'tcp', expected one of: direct, apple",
                "peer": "got 'ipad.local 5004', expected 'address port' with an IPv4 or IPv6"
                " address",
                "ssrc": "got 0, expected a whole number 1-4294967295",
            },
        )
        options, errors = parse_options(table, {"mode": "direct", "join": "*"})
        backend = RtpMidiBackend(reactor, {})
        backend.add_instance("d", options)
        self.assertEqual(backend.check(), ["d: 'join' only applies to mode: apple"])

    def test_docs_example_loads(self) -> None:
        """The show-file example on the options page is a valid show."""
        page = Path(__file__).resolve().parent.parent / "docs" / "backends" / "rtpmidi.rst"
        text = page.read_text().split("Example\n-------\n", 1)[1].split("::\n\n", 1)[1]
        example = []
        for line in text.splitlines():
            if line and not line.startswith("    "):
                break
            example.append(line[4:])
        with tempfile.TemporaryDirectory() as directory:
            show_file = Path(directory) / "show.yaml"
            show_file.write_text("\n".join(example))
            show = load_show(str(show_file), reactor)
        self.assertEqual(sorted(show.instances), ["daw", "ipad", "monster"])
        self.assertEqual(len(show.router.routes), 17)

    def test_channels(self) -> None:
        options, _ = parse_options(RtpMidiBackend.instance_options, {"mode": "direct"})
        instance = RtpMidiBackend(reactor, {}).add_instance("d", options)
        channel = instance.parse_channel("channel15.cc7")
        self.assertEqual(instance.channel_spec(channel), "ch15.cc7")


class TsharkTests(BackendTestsBase):
    async def test_capture_decodes_cleanly(self) -> None:
        """Everything netmidi sends in a session decodes in tshark without a Malformed mark."""
        if not tshark_available():
            raise SkipTest("tshark is not installed (.ci/peers/rtpmidi.sh installs it)")
        r, _ = self.instance(mode="apple", bind="127.0.0.1 0", join="*", title="netmidi")
        control, control_port = self.peer()
        data, data_port = self.peer(control_port.getHost().port + 1)
        here = control_port.getHost().port
        there = r.control_port
        sent: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []

        def send(port: Any, payload: bytes, to: int) -> None:
            sent.append((("127.0.0.1", port.getHost().port), ("127.0.0.1", to), payload))
            port.write(payload, ("127.0.0.1", to))

        send(control_port, applemidi.encode(Exchange(b"IN", 5, 0xAB, "tshark")), there)
        send(data_port, applemidi.encode(Exchange(b"IN", 5, 0xAB, "tshark")), there + 1)
        await wait_until(lambda: r._destinations)
        send(data_port, applemidi.encode(Sync(0xAB, 0, (1, 0, 0))), there + 1)
        send(
            data_port,
            rtpmidi.encode_header(9, 0, 0xAB) + rtpmidi.encode_section([b"\x90\x3c\x40"]),
            there + 1,
        )
        r.send([(NOTE60, Value.from_raw(100, 7)), (CC7, Value.from_raw(5, 7))])
        r.send([(parse_midi_channel(f"ch4.cc{n}"), Value.from_raw(n, 7)) for n in range(20)])
        await wait_until(lambda: len(data.rtp()) >= 1)
        r.send([(NRPN, Value.from_raw(300, 14)), (PITCH, Value.from_raw(0x3FFF, 14))])
        await wait_until(lambda: len(data.rtp()) >= 2 and len(control.received) >= 2, 3)
        await r.stop()
        await wait_until(
            lambda: any(c.command == b"BY" for c in data.commands() if isinstance(c, Exchange))
        )
        frames = sent[:2]
        frames += [(("127.0.0.1", there), ("127.0.0.1", here), d) for d, _ in control.received[:1]]
        frames += [(("127.0.0.1", there + 1), ("127.0.0.1", here + 1), d) for d, _ in data.received]
        frames += [(("127.0.0.1", there), ("127.0.0.1", here), d) for d, _ in control.received[1:]]
        frames += sent[2:]
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "session.pcap"
            write_pcap(path, frames)
            lines = tshark_fields(
                path, ["frame.number", "_ws.col.Protocol", "_ws.col.Info", "_ws.malformed"]
            )
        rows = [line.split("|") for line in lines.strip().splitlines()]
        self.assertEqual(len(rows), len(frames))
        for number, protocol, info, malformed in rows:
            self.assertEqual(malformed, "", f"frame {number}: {info}")
            self.assertIn(protocol, ("AppleMIDI", "RTP-MIDI"), f"frame {number}: {info}")
        infos = " ".join(row[2] for row in rows)
        for word in ("Invitation", "Synchronization", "Receiver Feedback", "End Session"):
            self.assertIn(word, infos)
        self.assertGreaterEqual(sum(row[1] == "RTP-MIDI" for row in rows), 3)


class DiscoveryHookTests(BackendTestsBase):
    async def test_discovered_and_vanished(self) -> None:
        """A discovered session is invited only if ``invite`` names it, and left when it goes."""
        b, _ = self.instance("b", mode="apple", bind="127.0.0.1", join="*", title="stage")
        a, _ = self.instance("a", mode="apple", bind="127.0.0.1", invite=["stage"])
        address = ("127.0.0.1", b.control_port)
        a.discovered("elsewhere", address)
        self.assertEqual(a.peers(), [])
        a.discovered("stage", address)
        await wait_until(lambda: b._destinations and a._destinations)
        a.vanished(address)
        await wait_until(lambda: not b._destinations)
        self.assertEqual(a.peers(), [])


class FakePort:
    """A UDP port for a clock-driven reactor: records what is written."""

    def __init__(self, port: int, written: list[tuple[int, bytes, Any]]) -> None:
        self.port, self.written, self.socket = port, written, self

    def getHost(self) -> Any:
        return type("Host", (), {"port": self.port})()

    def write(self, data: bytes, addr: Any) -> None:
        self.written.append((self.port, data, addr))

    sendto = write

    def setsockopt(self, *option: Any) -> None:
        pass

    def stopListening(self) -> None:
        pass


class FakeReactor(task.Clock):
    """A task.Clock that also opens fake UDP ports (MemoryReactor has no listenUDP)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[int, bytes, Any]] = []
        self.next_port = 7000

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 0
    ) -> FakePort:
        if not port:
            port, self.next_port = self.next_port, self.next_port + 1
        return FakePort(port, self.written)


class ClockDrivenTests(TestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        options, _ = parse_options(
            RtpMidiBackend.instance_options,
            {"mode": "apple", "bind": "127.0.0.1 0", "peer": "127.0.0.1 6004"},
        )
        backend = RtpMidiBackend(self.reactor, {"detect": "off"})
        self.instance = backend.add_instance("c", options)
        assert isinstance(self.instance, RtpMidiInstance)
        self.instance.start()

    def test_invitation_timer(self) -> None:
        """The instance's timer resends IN every second, 13 times, then waits to retry."""
        for _ in range(30):
            self.reactor.advance(0.5)
        invites = [(port, applemidi.decode(d), to) for port, d, to in self.reactor.written]
        self.assertEqual(len(invites), 13)
        self.assertEqual({(port, to) for port, _, to in invites}, {(7000, ("127.0.0.1", 6004))})
        self.assertEqual(self.instance.control_port, 7000)
        # The last IN at 12 s goes unanswered for a second, then 10 s until the next round.
        self.assertEqual(self.instance.peers()[0].due, 23)

    def test_unreachable_logged_once(self) -> None:
        """A configured peer that never answers is logged once, not at every retry round."""
        with capturedLogs() as events:
            for _ in range(120):
                self.reactor.advance(1)
        lines = [formatEvent(e) for e in events if "session" in formatEvent(e)]
        self.assertEqual(
            lines,
            ["c: no session with at 127.0.0.1 port 6004: no answer to invitations (retrying)"],
        )
        self.assertGreater(len(self.reactor.written), 13 * 4)

    def test_send_batches_one_turn(self) -> None:
        """Events sent in one reactor turn leave as one packet (nothing without members)."""
        peer = self.instance.peers()[0]
        self.instance.session.received(  # type: ignore[union-attr]
            0, Exchange(b"OK", peer.token, 9, "p"), ("127.0.0.1", 6004), 0
        )
        self.instance._apply(
            self.instance.session.received(  # type: ignore[union-attr]
                1, Exchange(b"OK", peer.token, 9, "p"), ("127.0.0.1", 6005), 0
            )
        )
        self.reactor.written.clear()
        self.instance.send([(NOTE60, Value.from_raw(1, 7))])
        self.instance.send([(CC7, Value.from_raw(2, 7))])
        self.assertEqual(self.reactor.written, [])
        self.reactor.advance(0)
        rtp = [rtpmidi.decode(d) for _, d, _ in self.reactor.written if d[:2] != b"\xff\xff"]
        self.assertEqual([p.messages for p in rtp], [[b"\x90\x3c\x01", b"\xb1\x07\x02"]])


class LossyRelay(DatagramProtocol):
    """Forwards between a client and one target port, dropping the first ``drop`` datagrams."""

    def __init__(self, target: tuple[str, int], drop: int) -> None:
        self.target, self.drop, self.client = target, drop, None
        self.dropped = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        source = (addr[0], addr[1])
        if source != self.target:
            self.client = source  # type: ignore[assignment]
            if self.dropped < self.drop:
                self.dropped += 1
                return
        destination = self.client if source == self.target else self.target
        if destination is not None and self.transport is not None:
            self.transport.write(datagram, destination)


class LossTests(BackendTestsBase):
    async def test_invitations_survive_loss(self) -> None:
        """Lost INs on both ports are resent by the instance's timer until the session forms."""
        b, b_in = self.instance("b", mode="apple", bind="127.0.0.1", join="*")
        relays = [
            LossyRelay(("127.0.0.1", b.control_port), drop=2),
            LossyRelay(("127.0.0.1", b.control_port + 1), drop=1),
        ]
        control, _ = self.peer_with(relays[0])
        self.peer_with(relays[1], control + 1)
        a, _ = self.instance("a", mode="apple", bind="127.0.0.1", peer=f"127.0.0.1 {control}")
        await wait_until(lambda: a._destinations and b._destinations, 8)
        self.assertEqual([r.dropped for r in relays], [2, 1])
        a.send([(NOTE60, Value.from_raw(9, 7))])
        await wait_until(lambda: b_in)
        self.assertEqual(b_in, [[(NOTE60, Value.from_raw(9, 7))]])

    def peer_with(self, protocol: DatagramProtocol, port: int = 0) -> tuple[int, Any]:
        listening = reactor.listenUDP(port or free_even_port(), protocol, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return listening.getHost().port, listening
