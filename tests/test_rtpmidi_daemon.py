"""End to end through ``twistd netmidi``: peer A's note -> netmidi -> peer B's CC, values exact.

Two versions: scripted AppleMIDI peers on loopback (everything the daemon sends is also checked
by tshark), and, inside the network lab, node-rtpmidi as A and pymidi as B.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest

from netmidi.codec import applemidi, rtpmidi
from netmidi.codec.applemidi import Exchange
from netmidi.testing.daemon import DaemonProcess, start_daemon
from netmidi.testing.pcap import tshark_available, tshark_fields, write_pcap
from tests.test_rtpmidi_backend import BackendTestsBase, Peer, free_even_port, reactor, wait_until
from tests.test_rtpmidi_interop import PEERS, InteropBase

SHOW = """\
backends:
  rtpmidi:
    mdns: off  # this test also runs outside the network lab: no multicast
instances:
  a:
    backend: rtpmidi
    mode: apple
    bind: "127.0.0.1 {a}"
    join: "*"
    title: netmidi A
  b:
    backend: rtpmidi
    mode: apple
    bind: "127.0.0.1 0"
    peer: "127.0.0.1 {b}"
    title: netmidi B
map:
  - a.ch0.note60 > b.ch2.cc7
  - a.ch0.pitch > b.ch3.nrpn1000
"""


class DaemonMixin:
    async def daemon(self: Any, a: int, b: int) -> DaemonProcess:
        directory = tempfile.mkdtemp()
        show = Path(directory) / "show.yaml"
        show.write_text(SHOW.format(a=a, b=b))
        process = start_daemon(reactor, "-c", str(show), cwd=directory)

        async def stop() -> None:
            await process.stop()

        self.addCleanup(stop)
        await process.wait_for(reactor, "netmidi running", 30)
        return process


Frame = tuple[tuple[str, int], tuple[str, int], bytes]


class RecordingPeer(Peer):
    """A scripted peer that also logs what it receives into a shared, ordered capture."""

    def __init__(self, capture: list[Frame]) -> None:
        super().__init__()
        self.capture = capture

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        super().datagramReceived(datagram, addr)
        assert self.transport is not None
        here = ("127.0.0.1", self.transport.getHost().port)
        self.capture.append(((addr[0], addr[1]), here, datagram))


class ScriptedDaemonTests(DaemonMixin, BackendTestsBase):
    def recording_peer(self, capture: list[Frame], port: int) -> tuple[RecordingPeer, Any]:
        protocol = RecordingPeer(capture)
        listening = reactor.listenUDP(port, protocol, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return protocol, listening

    async def test_note_to_cc(self) -> None:
        """A scripted initiator's note arrives as a scripted participant's CC, exact.

        Everything on the wire, both ways, is then checked by tshark.
        """
        capture: list[Frame] = []
        a_port = free_even_port()
        b_control, b_control_port = self.recording_peer(capture, free_even_port())
        b_data, b_data_port = self.recording_peer(capture, b_control_port.getHost().port + 1)
        a_control, a_control_port = self.recording_peer(capture, free_even_port())
        a_data, a_data_port = self.recording_peer(capture, a_control_port.getHost().port + 1)
        daemon = await self.daemon(a_port, b_control_port.getHost().port)

        def send(port: Any, payload: bytes, to: tuple[str, int]) -> None:
            capture.append((("127.0.0.1", port.getHost().port), to, payload))
            port.write(payload, to)

        def accept(protocol: Peer, port: Any) -> None:
            """Accept the daemon's invitation on this port."""
            data, source = protocol.received[0]
            invite = applemidi.decode(data)
            assert isinstance(invite, Exchange) and invite.command == b"IN"
            send(port, applemidi.encode(Exchange(b"OK", invite.token, 0xB0B, "peer B")), source)

        # B: netmidi invites it (control, then data).
        await wait_until(lambda: b_control.received, 10)
        accept(b_control, b_control_port)
        await wait_until(lambda: b_data.received, 5)
        accept(b_data, b_data_port)
        # A invites netmidi, then plays.
        a_control_address, a_data_address = ("127.0.0.1", a_port), ("127.0.0.1", a_port + 1)
        invite = applemidi.encode(Exchange(b"IN", 0xA, 0xA0A, "peer A"))
        send(a_control_port, invite, a_control_address)
        await wait_until(lambda: a_control.received, 5)
        send(a_data_port, invite, a_data_address)
        await wait_until(lambda: a_data.received, 5)
        note = rtpmidi.encode_header(1, 0, 0xA0A) + rtpmidi.encode_section([b"\x90\x3c\x64"])
        send(a_data_port, note, a_data_address)
        bend = rtpmidi.encode_header(2, 0, 0xA0A) + rtpmidi.encode_section([b"\xe0\x7f\x7f"])
        send(a_data_port, bend, a_data_address)
        # Both input packets may arrive in one reactor turn and leave as one packet.
        await wait_until(lambda: sum(len(p.messages) for p in b_data.rtp()) >= 7, 5)
        messages = [m for packet in b_data.rtp() for m in packet.messages]
        self.assertEqual(messages[0], b"\xb2\x07\x64")
        # Pitch 16383 -> NRPN 1000 = 16383: parameter, data MSB and LSB, then RPN 127/127.
        self.assertEqual(
            messages[1:],
            [b"\xb3\x63\x07", b"\xb3\x62\x68", b"\xb3\x06\x7f", b"\xb3\x26\x7f"]
            + [b"\xb3\x65\x7f", b"\xb3\x64\x7f"],
        )
        await wait_until(lambda: len(a_control.received) >= 2, 3)  # RS for A's packets
        await daemon.stop()
        await wait_until(lambda: any(d[:4] == b"\xff\xffBY" for d, _ in b_control.received), 5)
        self.assert_clean_in_tshark(capture)

    def assert_clean_in_tshark(self, frames: list[Frame]) -> None:
        if not tshark_available():
            raise SkipTest("tshark is not installed (.ci/peers/rtpmidi.sh installs it)")
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "daemon.pcap"
            write_pcap(path, frames)
            fields = ["frame.number", "_ws.col.Protocol", "_ws.col.Info", "_ws.malformed"]
            lines = tshark_fields(path, fields)
        rows = [line.split("|") for line in lines.strip().splitlines()]
        self.assertEqual(len(rows), len(frames))
        for number, protocol, info, malformed in rows:
            self.assertEqual(malformed, "", f"frame {number}: {info}")
            self.assertIn(protocol, ("AppleMIDI", "RTP-MIDI"), f"frame {number}: {info}")
        self.assertGreaterEqual(sum(row[1] == "RTP-MIDI" for row in rows), 3)


class PeerDaemonTests(DaemonMixin, InteropBase):
    async def test_node_note_to_pymidi_cc(self) -> None:
        """node-rtpmidi plays a note into netmidi; pymidi receives it as a CC, value exact."""
        a_port, b_port = free_even_port(), free_even_port()
        pymidi = self.spawn([sys.executable, str(PEERS / "rtpmidi_pymidi.py"), str(b_port)])
        await wait_until(lambda: pymidi.saw("ready"), 10)
        await self.daemon(a_port, b_port)
        await wait_until(lambda: pymidi.saw("connected"), 10)
        node = self.node(free_even_port(), a_port)
        await wait_until(lambda: node.saw("connected"), 10)
        await self.resend_until(node, [0x90, 60, 77], lambda: pymidi.midi())
        self.assertEqual(
            pymidi.midi()[0],
            {
                "event": "midi",
                "command": "control_mode_change",
                "channel": 2,
                "params": {"controller": 7, "value": 77},
            },
        )
