"""The AppleMIDI session machine, driven by a task.Clock: handshakes, retries, timeouts, quirks."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from netmidi.applemidi_session import (
    CONTROL,
    DATA,
    INVITE_RESENDS,
    JOIN_TIMEOUT,
    REINVITE_BACKOFF,
    SYNC_TIMEOUT,
    Acknowledged,
    Address,
    Connected,
    Disconnected,
    Ignored,
    Output,
    Session,
    State,
    Transmit,
)
from netmidi.codec import applemidi
from netmidi.codec.applemidi import Exchange, Feedback, Sync

A_CONTROL: Address = ("127.0.0.1", 5004)
A_DATA: Address = ("127.0.0.1", 5005)
B_CONTROL: Address = ("127.0.0.1", 6004)
B_DATA: Address = ("127.0.0.1", 6005)
SSRC_A, SSRC_B = 0x11111111, 0x22222222


def tokens(start: int = 0x33333333) -> itertools.count[int]:
    return itertools.count(start)


class Wire:
    """Two sessions A (5004/5005) and B (6004/6005) joined by a clock-driven network."""

    def __init__(self, a: Session, b: Session, clock: task.Clock) -> None:
        self.a, self.b, self.clock = a, b, clock
        self.log: list[tuple[str, Output]] = []
        self.times: list[float] = []
        self.drop_to: set[Address] = set()

    def deliver(self, sender: str, outputs: list[Output]) -> None:
        session = self.b if sender == "a" else self.a
        control, data = (A_CONTROL, A_DATA) if sender == "a" else (B_CONTROL, B_DATA)
        for output in outputs:
            self.log.append((sender, output))
            self.times.append(self.clock.seconds())
            if not isinstance(output, Transmit) or output.address in self.drop_to:
                continue
            port = CONTROL if output.address[1] % 2 == 0 else DATA
            source = control if output.port == CONTROL else data
            # Every command crosses the wire as bytes.
            command = applemidi.decode(applemidi.encode(output.command))
            reply = session.received(port, command, source, self.clock.seconds())
            self.deliver("b" if sender == "a" else "a", reply)

    def run(self, seconds: float, step: float = 0.25) -> None:
        """Advance the clock, polling both sides as a reactor timer would."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(step)
            now = self.clock.seconds()
            self.deliver("a", self.a.poll(now))
            self.deliver("b", self.b.poll(now))

    def sent(self, sender: str, kind: type, address: Address | None = None) -> list[Transmit]:
        return [
            o
            for s, o in self.log
            if s == sender
            and isinstance(o, Transmit)
            and isinstance(o.command, kind)
            and (address is None or o.address == address)
        ]

    def events(self, sender: str, kind: type) -> list[Output]:
        return [o for s, o in self.log if s == sender and isinstance(o, kind)]


class SessionTestsBase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.a = Session("A", SSRC_A, self.clock.seconds(), tokens().__next__)
        self.b = Session("B", SSRC_B, self.clock.seconds(), tokens(0x44444444).__next__, join="*")
        self.wire = Wire(self.a, self.b, self.clock)

    def connect(self) -> None:
        self.wire.deliver("a", self.a.invite(B_CONTROL, self.clock.seconds()))
        self.assertEqual([p.state for p in self.a.peers], [State.CONNECTED])
        self.assertEqual([p.state for p in self.b.peers], [State.CONNECTED])


class HandshakeTests(SessionTestsBase):
    def test_invitation_sequence(self) -> None:
        """IN and OK on the control port, then on the data port, same token, then CK0-CK2."""
        self.connect()
        transmits = [(s, o) for s, o in self.wire.log if isinstance(o, Transmit)]
        token = 0x33333333
        self.assertEqual(
            transmits[:4],
            [
                ("a", Transmit(CONTROL, B_CONTROL, Exchange(b"IN", token, SSRC_A, "A"))),
                ("b", Transmit(CONTROL, A_CONTROL, Exchange(b"OK", token, SSRC_B, "B"))),
                ("a", Transmit(DATA, B_DATA, Exchange(b"IN", token, SSRC_A, "A"))),
                ("b", Transmit(DATA, A_DATA, Exchange(b"OK", token, SSRC_B, "B"))),
            ],
        )
        kinds = [
            (s, type(o.command).__name__, getattr(o.command, "count", None))
            for s, o in transmits[4:]
        ]
        self.assertEqual(kinds, [("a", "Sync", 0), ("b", "Sync", 1), ("a", "Sync", 2)])
        self.assertEqual(len(self.wire.events("a", Connected)), 1)
        self.assertEqual(len(self.wire.events("b", Connected)), 1)
        peer = self.a.peers[0]
        self.assertEqual((peer.ssrc, peer.name, peer.exchanges), (SSRC_B, "B", 1))
        self.assertEqual(peer.latency, 0.0)
        self.assertEqual(self.a.members(), [peer])
        self.assertEqual(self.b.members()[0].data, A_DATA)

    def test_same_ssrc_everywhere(self) -> None:
        """Every packet a session sends carries its one SSRC (pymidi gets this wrong)."""
        self.connect()
        self.wire.run(30)
        for sender, ssrc in (("a", SSRC_A), ("b", SSRC_B)):
            ssrcs = {
                o.command.ssrc for s, o in self.wire.log if s == sender and isinstance(o, Transmit)
            }
            self.assertEqual(ssrcs, {ssrc})

    def test_clock_offset_and_latency(self) -> None:
        """The initiator measures round trip and offset from CK timestamps in 100 µs units."""
        self.connect()
        peer = self.a.peers[0]
        now = self.clock.seconds()
        # A CK1 that comes back 5 ms after our CK0, from a peer whose clock is 2 s ahead.
        self.clock.advance(0.5)
        self.a.poll(self.clock.seconds() + 0.5)
        sent = peer.sync_sent
        assert sent is not None
        out = self.a.received(
            DATA,
            Sync(SSRC_B, 1, (sent, sent + 20000 + 25, 0)),
            B_DATA,
            self.clock.seconds() + 0.505,
        )
        self.assertIsInstance(out[0], Transmit)
        self.assertAlmostEqual(peer.latency or 0, 0.005, places=4)
        self.assertAlmostEqual(peer.offset or 0, 2.0, places=4)
        self.assertGreater(self.a.timestamp(now + 1) - self.a.timestamp(now), 9999)

    def test_long_utf8_name_kept(self) -> None:
        """Session names are not truncated and non-ASCII survives (Arduino cut at 24)."""
        name = "Bühne links – Keyboard 2 " * 4
        a = Session(name, SSRC_A, 0.0, tokens().__next__)
        wire = Wire(a, self.b, self.clock)
        wire.deliver("a", a.invite(B_CONTROL, self.clock.seconds()))
        self.assertEqual(self.b.peers[0].name, name)

    def test_repeated_in_answered_again(self) -> None:
        """A control IN repeated because our OK was lost gets the same OK again."""
        invite = Exchange(b"IN", 7, SSRC_A, "A")
        first = self.b.received(CONTROL, invite, A_CONTROL, 0)
        second = self.b.received(CONTROL, invite, A_CONTROL, 0.5)
        self.assertEqual(first, second)
        self.assertEqual(len(self.b.peers), 1)


class RetryTests(SessionTestsBase):
    def test_invitation_retries_then_backoff(self) -> None:
        """IN is resent every second, 12 times, then a configured peer waits and starts over."""
        self.wire.drop_to = {B_CONTROL}
        start = self.clock.seconds()
        self.wire.deliver("a", self.a.invite(B_CONTROL, start))
        self.wire.run(INVITE_RESENDS + 1.5)
        invites = self.wire.sent("a", Exchange, B_CONTROL)
        self.assertEqual(len(invites), INVITE_RESENDS + 1)
        self.assertEqual({i.command.command for i in invites}, {b"IN"})
        self.assertEqual(len({i.command.token for i in invites}), 1)
        gone = self.wire.events("a", Disconnected)
        self.assertEqual([d.reason for d in gone], ["no answer to invitations"])
        self.assertEqual(self.a.peers[0].state, State.WAITING)
        self.wire.run(REINVITE_BACKOFF)
        again = self.wire.sent("a", Exchange, B_CONTROL)[INVITE_RESENDS + 1 :]
        self.assertTrue(again)
        self.assertNotEqual(again[0].command.token, invites[0].command.token)

    def test_unconfigured_peer_forgotten(self) -> None:
        """A peer invited once (not configured) is forgotten after the retries."""
        self.wire.drop_to = {B_CONTROL}
        self.wire.deliver("a", self.a.invite(B_CONTROL, self.clock.seconds(), configured=False))
        self.wire.run(INVITE_RESENDS + 2)
        self.assertEqual(self.a.peers, [])
        self.assertIsNone(self.a.deadline())

    def test_data_port_retries(self) -> None:
        """The data-port IN is retried on its own after the control OK."""
        self.wire.drop_to = {B_DATA}
        self.wire.deliver("a", self.a.invite(B_CONTROL, self.clock.seconds()))
        self.wire.run(3.1)
        self.assertEqual(len(self.wire.sent("a", Exchange, B_DATA)), 4)
        self.wire.drop_to = set()
        self.wire.run(1)
        self.assertEqual(self.a.peers[0].state, State.CONNECTED)

    def test_join_timeout(self) -> None:
        """A responder forgets a peer that never sends the data-port IN."""
        self.b.received(CONTROL, Exchange(b"IN", 9, SSRC_A, "A"), A_CONTROL, self.clock.seconds())
        self.assertEqual(self.b.peers[0].state, State.JOINING)
        self.wire.run(JOIN_TIMEOUT + 0.5)
        self.assertEqual(self.b.peers, [])
        self.assertEqual(
            [d.reason for d in self.wire.events("b", Disconnected)], ["no data-port invitation"]
        )

    def test_rejected(self) -> None:
        """NO ends the attempt; a configured peer is invited again after the backoff."""
        self.b.join = None
        self.wire.deliver("a", self.a.invite(B_CONTROL, self.clock.seconds()))
        self.assertEqual(self.wire.sent("b", Exchange)[0].command.command, b"NO")
        self.assertEqual(
            [d.reason for d in self.wire.events("a", Disconnected)], ["invitation rejected"]
        )
        self.assertEqual(self.a.peers[0].state, State.WAITING)
        self.assertEqual(self.a.deadline(), self.clock.seconds() + REINVITE_BACKOFF)


class SyncTests(SessionTestsBase):
    def test_resync_schedule(self) -> None:
        """CK0 at connect, a quick burst, then every 10 s; the responder never starts one."""
        start = self.clock.seconds()
        self.connect()
        self.wire.run(60, step=0.5)
        times = [
            round(t - start, 1)
            for t, (s, o) in zip(self.wire.times, self.wire.log, strict=True)
            if s == "a"
            and isinstance(o, Transmit)
            and isinstance(o.command, Sync)
            and o.command.count == 0
        ]
        self.assertEqual(times[:4], [0.0, 1.0, 2.0, 3.0])
        gaps = {round(b - a, 1) for a, b in itertools.pairwise(times[3:])}
        self.assertEqual(gaps, {10.0})
        responder_ck0 = [o for o in self.wire.sent("b", Sync) if o.command.count == 0]
        self.assertEqual(responder_ck0, [])
        self.assertEqual(len(self.a.members()), 1)
        self.assertEqual(len(self.b.members()), 1)

    def test_responder_times_out_initiator(self) -> None:
        """A responder drops an initiator silent for 60 s and says BY on both ports."""
        self.connect()
        self.wire.drop_to = {B_DATA, B_CONTROL}
        self.wire.run(SYNC_TIMEOUT + 1)
        self.assertEqual(self.b.peers, [])
        byes = [o.address for o in self.wire.sent("b", Exchange) if o.command.command == b"BY"]
        self.assertEqual(byes, [A_CONTROL, A_DATA])

    def test_initiator_reinvites_after_timeout(self) -> None:
        """An initiator whose CK0s go unanswered for 60 s drops the peer and invites it again."""
        self.connect()
        self.wire.drop_to = {B_DATA}
        self.wire.run(SYNC_TIMEOUT + 0.5)
        reasons = [d.reason for d in self.wire.events("a", Disconnected)]
        self.assertEqual(reasons, ["no clock sync for 61 s"])
        self.wire.drop_to = set()
        self.wire.run(2)
        self.assertEqual(self.a.peers[0].state, State.CONNECTED)

    def test_resync_at_exactly_60_s_tolerated(self) -> None:
        """An initiator that syncs every 60 s (the Apple maximum) keeps its session."""
        self.connect()
        peer = self.b.peers[0]
        for _ in range(5):
            self.clock.advance(60)
            now = self.clock.seconds()
            self.assertEqual(self.b.poll(now), [])
            self.b.received(DATA, Sync(SSRC_A, 0, (1, 0, 0)), A_DATA, now)
        self.assertEqual(self.b.members(), [peer])

    def test_unsolicited_ck0_answered(self) -> None:
        """node-rtpmidi starts its own CK0 as responder: the initiator still answers it."""
        self.connect()
        out = self.a.received(DATA, Sync(SSRC_B, 0, (5, 0, 0)), B_DATA, self.clock.seconds())
        self.assertEqual(
            out,
            [
                Transmit(
                    DATA, B_DATA, Sync(SSRC_A, 1, (5, self.a.timestamp(self.clock.seconds()), 0))
                )
            ],
        )

    def test_stale_ck1_ignored(self) -> None:
        """A CK1 that answers no CK0 of ours changes nothing."""
        self.connect()
        out = self.a.received(DATA, Sync(SSRC_B, 1, (12345, 1, 0)), B_DATA, self.clock.seconds())
        self.assertIsInstance(out[0], Ignored)

    def test_truncated_echo_accepted(self) -> None:
        """node-rtpmidi echoes only the low 32 bits of our CK0 timestamp; still a match."""
        self.connect()
        peer = self.a.peers[0]
        peer.sync_sent = (1 << 32) + 77
        out = self.a.received(DATA, Sync(SSRC_B, 1, (77, 5, 0)), B_DATA, self.clock.seconds())
        self.assertIsInstance(out[0], Transmit)


class ByeTests(SessionTestsBase):
    def test_bye_token_zero(self) -> None:
        """macOS ends sessions with BY token 0: matched by SSRC and address."""
        self.connect()
        out = self.a.received(CONTROL, Exchange(b"BY", 0, SSRC_B), B_CONTROL, self.clock.seconds())
        self.assertEqual([type(o) for o in out], [Disconnected])
        self.assertEqual(self.a.members(), [])
        self.assertEqual(self.a.peers[0].state, State.WAITING)

    def test_stale_bye_ignored(self) -> None:
        """A BY with a reused SSRC but another session's token does not end this session."""
        self.connect()
        out = self.a.received(
            CONTROL, Exchange(b"BY", 0x5555, SSRC_B), B_CONTROL, self.clock.seconds()
        )
        self.assertIsInstance(out[0], Ignored)
        self.assertEqual(len(self.a.members()), 1)

    def test_bye_from_other_host_ignored(self) -> None:
        self.connect()
        out = self.a.received(CONTROL, Exchange(b"BY", 0, SSRC_B), ("127.0.0.2", 6004), 0)
        self.assertIsInstance(out[0], Ignored)
        self.assertEqual(len(self.a.members()), 1)

    def test_close_says_bye_on_both_ports(self) -> None:
        self.connect()
        out = self.a.close()
        byes = [(o.port, o.address, o.command) for o in out if isinstance(o, Transmit)]
        token = self.a.peers[0].token if self.a.peers else 0x33333333
        self.assertEqual(
            byes,
            [
                (CONTROL, B_CONTROL, Exchange(b"BY", token, SSRC_A)),
                (DATA, B_DATA, Exchange(b"BY", token, SSRC_A)),
            ],
        )
        self.assertEqual(
            applemidi.encode(byes[0][2]), bytes.fromhex("ffff4259000000023333333311111111")
        )
        self.assertEqual(self.a.peers, [])

    def test_remove(self) -> None:
        """A peer removed by discovery gets BY and is not re-invited."""
        self.connect()
        out = self.a.remove(B_CONTROL, self.clock.seconds())
        self.assertTrue(any(isinstance(o, Transmit) for o in out))
        self.assertEqual(self.a.peers, [])


class QuirkTests(SessionTestsBase):
    def test_changed_ssrc_between_ports(self) -> None:
        """pymidi answers with another SSRC on the data port: accepted, both kept for BY."""
        self.a.invite(B_CONTROL, 0)
        self.a.received(CONTROL, Exchange(b"OK", 0x33333333, 0xAAAA, "py"), B_CONTROL, 0)
        out = self.a.received(DATA, Exchange(b"OK", 0x33333333, 0xBBBB, "py"), B_DATA, 0)
        self.assertIsInstance(out[0], Connected)
        peer = self.a.peers[0]
        self.assertEqual((peer.ssrc, peer.ssrcs), (0xBBBB, [0xAAAA, 0xBBBB]))
        self.assertIs(self.a.rtp_received(B_DATA, 0xBBBB, 1, 0), peer)
        bye = self.a.received(CONTROL, Exchange(b"BY", 0, 0xAAAA), B_CONTROL, 0)
        self.assertIsInstance(bye[0], Disconnected)

    def test_ssrc_change_in_rtp(self) -> None:
        """A member that changes its SSRC mid-session keeps its session."""
        self.connect()
        peer = self.a.rtp_received(B_DATA, 0x9999, 10, self.clock.seconds())
        self.assertIsNotNone(peer)
        assert peer is not None
        self.assertEqual(peer.ssrc, 0x9999)
        self.assertIn(SSRC_B, peer.ssrcs)
        for ssrc in range(100):  # a member cycling SSRCs cannot grow what is kept
            self.a.rtp_received(B_DATA, ssrc, 11 + ssrc, self.clock.seconds())
        self.assertEqual(peer.ssrcs, [96, 97, 98, 99])

    def test_answer_from_wrong_port(self) -> None:
        """node-rtpmidi's OKs may come from its other socket: matched by token and host."""
        self.a.invite(B_CONTROL, 0)
        out = self.a.received(CONTROL, Exchange(b"OK", 0x33333333, SSRC_B, "n"), B_DATA, 0)
        self.assertEqual(out, [Transmit(DATA, B_DATA, Exchange(b"IN", 0x33333333, SSRC_A, "A"))])
        out = self.a.received(DATA, Exchange(b"OK", 0x33333333, SSRC_B, "n"), B_CONTROL, 0)
        self.assertIsInstance(out[0], Connected)
        # Data still goes to the port we invited, and CK0 follows.
        self.assertEqual(self.a.members()[0].data, B_DATA)
        self.assertEqual(
            out[1], Transmit(DATA, B_DATA, Sync(SSRC_A, 0, (self.a.timestamp(0), 0, 0)))
        )

    def test_ok_from_other_host_ignored(self) -> None:
        self.a.invite(B_CONTROL, 0)
        out = self.a.received(CONTROL, Exchange(b"OK", 0x33333333, SSRC_B), ("127.0.0.9", 6004), 0)
        self.assertIsInstance(out[0], Ignored)

    def test_ck_on_control_port_answered_there(self) -> None:
        """MIDIMonster sends CK0 to the control port: answered from the control port."""
        self.connect()
        out = self.b.received(CONTROL, Sync(SSRC_A, 0, (1, 0, 0)), A_CONTROL, self.clock.seconds())
        self.assertEqual(out[0].port, CONTROL)  # type: ignore[union-attr]
        self.assertEqual(out[0].address, A_CONTROL)  # type: ignore[union-attr]

    def test_peer_restart(self) -> None:
        """A new IN (new token) from a member's control address replaces the old session."""
        self.connect()
        out = self.b.received(
            CONTROL, Exchange(b"IN", 99, SSRC_A, "A"), A_CONTROL, self.clock.seconds()
        )
        self.assertEqual([type(o) for o in out], [Disconnected, Transmit])
        self.assertEqual(self.b.peers[0].token, 99)
        self.assertEqual(self.b.members(), [])

    def test_crossed_invitations(self) -> None:
        """Both sides invite each other: the invitation we receive wins, and it connects."""
        self.b.join = None
        self.wire.drop_to = {A_CONTROL}
        self.wire.deliver("b", self.b.invite(A_CONTROL, self.clock.seconds()))
        self.wire.drop_to = set()
        self.wire.deliver("a", self.a.invite(B_CONTROL, self.clock.seconds()))
        self.assertEqual([p.state for p in self.b.peers], [State.CONNECTED])
        self.assertFalse(self.b.peers[0].initiator)
        self.assertTrue(self.b.peers[0].configured)
        self.assertEqual(self.wire.events("b", Disconnected), [])


class AdmissionTests(SessionTestsBase):
    def test_join_by_name(self) -> None:
        self.b.join = "show"
        out = self.b.received(CONTROL, Exchange(b"IN", 1, SSRC_A, "other"), A_CONTROL, 0)
        self.assertEqual(out[0], Transmit(CONTROL, A_CONTROL, Exchange(b"NO", 1, SSRC_B, "B")))
        out = self.b.received(CONTROL, Exchange(b"IN", 1, SSRC_A, "show"), A_CONTROL, 0)
        self.assertEqual(out, [Transmit(CONTROL, A_CONTROL, Exchange(b"OK", 1, SSRC_B, "B"))])

    def test_data_invitation_without_control(self) -> None:
        out = self.b.received(DATA, Exchange(b"IN", 1, SSRC_A, "A"), A_DATA, 0)
        self.assertEqual(out[0], Transmit(DATA, A_DATA, Exchange(b"NO", 1, SSRC_B, "B")))
        self.assertEqual(self.b.peers, [])

    def test_invitation_flood_bounded(self) -> None:
        """Invitations from many ports fill at most max_peers slots; the rest get NO."""
        self.b.max_peers = 3
        for port in range(20000, 20100):
            self.b.received(CONTROL, Exchange(b"IN", port, port, "x"), ("127.0.0.1", port), 0)
        self.assertEqual(len(self.b.peers), 3)
        self.wire.run(JOIN_TIMEOUT + 1)
        self.assertEqual(self.b.peers, [])

    def test_outsiders_ignored(self) -> None:
        """CK, RS and RTP from addresses that are not members are not acted on."""
        self.connect()
        stranger = ("127.0.0.7", 7005)
        self.assertIsInstance(self.a.received(DATA, Sync(1, 0, (1, 0, 0)), stranger, 0)[0], Ignored)
        self.assertIsInstance(self.a.received(CONTROL, Feedback(1, 0), stranger, 0)[0], Ignored)
        self.assertIsNone(self.a.rtp_received(stranger, 1, 1, 0))


class FeedbackTests(SessionTestsBase):
    def test_rs_sent_after_data(self) -> None:
        """RS goes to the control port a second after data arrives, seq in the upper half."""
        self.connect()
        now = self.clock.seconds()
        self.a.rtp_received(B_DATA, SSRC_B, 1000, now)
        self.a.rtp_received(B_DATA, SSRC_B, 1001, now + 0.2)
        self.assertEqual(self.a.deadline(), now + 1.0)
        out = self.a.poll(now + 1.0)
        rs = [o for o in out if isinstance(o, Transmit) and isinstance(o.command, Feedback)]
        self.assertEqual(rs, [Transmit(CONTROL, B_CONTROL, Feedback(SSRC_A, 1001 << 16))])
        self.assertEqual(
            applemidi.encode(rs[0].command),
            bytes.fromhex("ffff5253111111110 3e90000".replace(" ", "")),
        )
        again = self.a.poll(now + 2.0)
        self.assertEqual(
            [o for o in again if isinstance(getattr(o, "command", None), Feedback)], []
        )

    def test_rs_both_layouts(self) -> None:
        """RS in the Apple layout and in rtpmidid's low half both acknowledge."""
        self.connect()
        self.b.last_sent = 1000
        out = self.b.received(CONTROL, Feedback(SSRC_A, 1000 << 16), A_CONTROL, 0)
        self.assertEqual(out, [Acknowledged(self.b.peers[0], 1000)])
        out = self.b.received(CONTROL, Feedback(SSRC_A, 998), A_CONTROL, 0)
        self.assertEqual(out, [Acknowledged(self.b.peers[0], 998)])
        out = self.b.received(CONTROL, Feedback(SSRC_A, 5000 << 16), A_CONTROL, 0)
        self.assertIsInstance(out[0], Ignored)


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([CONTROL, DATA]),
                st.binary(min_size=0, max_size=48),
                st.integers(6000, 6003),
            ),
            max_size=30,
        )
    )
    def test_any_packets(self, packets: list[tuple[int, bytes, int]]) -> None:
        """Whatever decodes as a command, the machine never raises and stays within bounds."""
        session = Session("S", 1, 0.0, tokens().__next__, join="*", max_peers=2)
        now = 0.0
        for port, data, source in packets:
            now += 0.7
            try:
                command = applemidi.decode(b"\xff\xff" + data)
            except applemidi.AppleMidiError:
                continue
            session.received(port, command, ("127.0.0.1", source), now)
            session.poll(now)
            self.assertLessEqual(len(session.peers), 2)
        session.close()
        self.assertEqual(session.peers, [])
