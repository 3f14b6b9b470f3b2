"""Interop with real AppleMIDI peers inside the network lab: node-rtpmidi and pymidi.

Known bugs of the peers, worked around here and tolerated by netmidi:

* node-rtpmidi 1.0.0 picks its reply socket by ``remote port % 2``, so both sides use even
  control ports; it sends no MIDI until one CK exchange has completed (its first CK0 comes
  1.5 s after connecting), so the test repeats its sends until one arrives; it starts its own CK0
  after each CK2 as responder (netmidi answers it); it binds 0.0.0.0 (fine inside the lab).
* pymidi 0.5.0 answers the data-port IN with another SSRC than the control-port OK, decodes
  only note on/off, poly pressure and CC, and never sends RS.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

from netmidi.codec.midi import parse_midi_channel
from netmidi.values import Value
from tests.test_rtpmidi_backend import BackendTestsBase, free_even_port, wait_until

reactor: Any = _reactor
ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / ".ci" / "node_modules"
PEERS = Path(__file__).resolve().parent / "peers"

NOTE60 = parse_midi_channel("ch0.note60")
NOTE64 = parse_midi_channel("ch0.note64")
CC7 = parse_midi_channel("ch1.cc7")
CC10 = parse_midi_channel("ch0.cc10")


class PeerProcess(ProcessProtocol):
    """A peer program printing ``@@ {json}`` lines; collects them as events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.output = ""
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace")
            self.output += text + "\n"
            if text.startswith("@@ "):
                self.events.append(json.loads(text[3:]))

    def errReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")

    def saw(self, event: str) -> bool:
        return any(e["event"] == event for e in self.events)

    def midi(self) -> list[Any]:
        return [e for e in self.events if e["event"] == "midi"]

    def send(self, message: list[int]) -> None:
        assert self.transport is not None
        self.transport.write(json.dumps(message).encode() + b"\n")


class InteropBase(BackendTestsBase):
    def setUp(self) -> None:
        if os.environ.get("NETMIDI_NETLAB") != "1":
            raise SkipTest("interop peers bind every address: only inside the network lab")

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> PeerProcess:
        process = PeerProcess()
        transport = reactor.spawnProcess(process, argv[0], argv, env={**os.environ, **(env or {})})

        def stop() -> Deferred[None]:
            if transport.pid is not None:
                transport.signalProcess("KILL")
            return process.ended

        self.addCleanup(stop)
        return process

    def node(self, *ports: int) -> PeerProcess:
        node = shutil.which("node")
        if node is None or not (NODE_MODULES / "rtpmidi").is_dir():
            raise SkipTest("node or npm rtpmidi missing: run .ci/peers/rtpmidi.sh")
        argv = [node, str(PEERS / "rtpmidi_node.js"), *map(str, ports)]
        return self.spawn(argv, {"NODE_PATH": str(NODE_MODULES)})

    async def resend_until(self, peer: PeerProcess, message: list[int], done: Any) -> None:
        """node sends nothing before its first completed CK exchange: repeat until it arrives."""
        for _ in range(20):
            peer.send(message)
            try:
                await wait_until(done, 0.5)
                return
            except AssertionError:
                continue
        raise AssertionError(f"node never delivered {message}:\n{peer.output[-2000:]}")


class NodeTests(InteropBase):
    async def test_node_initiator(self) -> None:
        """node-rtpmidi invites netmidi; notes and CCs cross both ways with exact values."""
        r, r_in = self.instance(mode="apple", bind=f"127.0.0.1 {free_even_port()}", join="*")
        node = self.node(free_even_port(), r.control_port)
        await wait_until(lambda: r._destinations, 10)
        self.assertEqual(r.peers()[0].name, "node-rtpmidi")
        r.send([(NOTE60, Value.from_raw(100, 7)), (CC7, Value.from_raw(127, 7))])
        await wait_until(lambda: len(node.midi()) >= 2, 5)
        self.assertEqual([e["bytes"] for e in node.midi()], [[0x90, 60, 100], [0xB1, 7, 127]])
        await self.resend_until(node, [0x90, 64, 127], lambda: r_in)
        r_in.clear()
        await self.resend_until(node, [0xB0, 10, 5], lambda: r_in)
        self.assertEqual(r_in[0], [(CC10, Value.from_raw(5, 7))])
        self.assertEqual(r.bad.total, 0, dict(r.bad.counts))

    async def test_node_responder(self) -> None:
        """netmidi invites node-rtpmidi; netmidi drives CK and MIDI crosses both ways."""
        port = free_even_port()
        node = self.node(port)
        await wait_until(lambda: node.saw("ready"), 10)
        r, r_in = self.instance(mode="apple", bind="127.0.0.1", peer=f"127.0.0.1 {port}")
        await wait_until(lambda: r._destinations and node.saw("connected"), 10)
        r.send([(NOTE64, Value.from_raw(1, 7))])
        await wait_until(lambda: node.midi(), 5)
        self.assertEqual(node.midi()[0]["bytes"], [0x90, 64, 1])
        await self.resend_until(node, [0x90, 60, 0], lambda: r_in)
        self.assertEqual(r_in[0], [(NOTE60, Value.from_raw(0, 7))])
        peer = r.peers()[0]
        self.assertGreaterEqual(peer.exchanges, 1)
        self.assertIsNotNone(peer.latency)


class NodeIpv6Tests(InteropBase):
    async def test_node_responder_ipv6(self) -> None:
        """netmidi invites node-rtpmidi over IPv6 loopback; notes cross both ways."""
        port = free_even_port()
        node = self.node(port, 0, 6)
        await wait_until(lambda: node.saw("ready"), 10)
        r, r_in = self.instance(mode="apple", bind="::1", peer=f"::1 {port}")
        await wait_until(lambda: r._destinations and node.saw("connected"), 10)
        r.send([(NOTE64, Value.from_raw(2, 7))])
        await wait_until(lambda: node.midi(), 5)
        self.assertEqual(node.midi()[0]["bytes"], [0x90, 64, 2])
        await self.resend_until(node, [0x90, 60, 3], lambda: r_in)
        self.assertEqual(r_in[0], [(NOTE60, Value.from_raw(3, 7))])


class PymidiTests(InteropBase):
    def pymidi(self, port: int, host: str = "127.0.0.1") -> PeerProcess:
        try:
            import pymidi  # noqa: F401
        except ImportError:
            raise SkipTest("pymidi missing: run .ci/peers/rtpmidi.sh") from None
        return self.spawn([sys.executable, str(PEERS / "rtpmidi_pymidi.py"), str(port), host])

    async def test_pymidi_participant(self) -> None:
        """pymidi accepts netmidi's invitation and receives its notes and CCs exactly."""
        port = free_even_port()
        peer = self.pymidi(port)
        await wait_until(lambda: peer.saw("ready"), 10)
        r, _ = self.instance(mode="apple", bind="127.0.0.1", peer=f"127.0.0.1 {port}")
        await wait_until(lambda: r._destinations, 10)
        # pymidi's two OKs carry different SSRCs: netmidi keeps both.
        self.assertEqual(len(r.peers()[0].ssrcs), 2)
        r.send([(NOTE60, Value.from_raw(100, 7))])
        r.send([(CC7, Value.from_raw(64, 7)), (NOTE60, Value.from_raw(0, 7))])
        await wait_until(lambda: len(peer.midi()) >= 3, 5)
        self.assertEqual(
            [(e["command"], e["channel"], e["params"]) for e in peer.midi()],
            [
                ("note_on", 0, {"key": 60, "velocity": 100}),
                ("control_mode_change", 1, {"controller": 7, "value": 64}),
                ("note_on", 0, {"key": 60, "velocity": 0}),
            ],
        )
        # pymidi answers CK; the session stays up through the burst.
        await wait_until(lambda: r.peers()[0].exchanges >= 2, 5)
        self.assertEqual(r.bad.total, 0, dict(r.bad.counts))

    async def test_pymidi_ipv6(self) -> None:
        """The same over IPv6 loopback."""
        port = free_even_port()
        peer = self.pymidi(port, "::1")
        await wait_until(lambda: peer.saw("ready"), 10)
        r, _ = self.instance(mode="apple", bind="::1", peer=f"::1 {port}")
        await wait_until(lambda: r._destinations, 10)
        r.send([(NOTE64, Value.from_raw(127, 7))])
        await wait_until(lambda: peer.midi(), 5)
        self.assertEqual(peer.midi()[0]["params"], {"key": 64, "velocity": 127})
