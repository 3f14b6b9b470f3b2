"""AppleMIDI session state machine, with no I/O: packets and the time in, packets to send out.

One :class:`Session` is one local AppleMIDI endpoint (a control port N and a data port N+1,
one SSRC) with any number of peers, each either invited by us (we are the initiator and drive
clock sync) or inviting us (we answer). The caller feeds every decoded command with its source
and the current time, sends the :class:`Transmit` outputs, and calls :meth:`Session.poll` at
:meth:`Session.deadline`. Time is in seconds; timestamps on the wire count 100 µs from the
session's creation.

It is tolerant of every quirk seen in real peers: OKs from the wrong source port (node-rtpmidi),
different SSRCs on the control and data OK (pymidi), BY with token 0 (macOS), CK arriving on the
control port (MIDIMonster), RS with the sequence number in the low half (rtpmidid), and a
responder that starts its own CK exchange (node-rtpmidi).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from netmidi.codec.applemidi import (
    ACCEPT,
    BYE,
    INVITE,
    REJECT,
    BitrateLimit,
    Command,
    Exchange,
    Feedback,
    Sync,
    feedback_candidates,
)

Address = tuple[str, int]

CONTROL: Final = 0
DATA: Final = 1

INVITE_INTERVAL: Final = 1.0
INVITE_RESENDS: Final = 12
"""Apple: "Invitation requests are resent every second, up to 12 times"."""
REINVITE_BACKOFF: Final = 10.0
"""How long a configured peer that did not answer (or said NO, or left) waits for a new try."""
JOIN_TIMEOUT: Final = 10.0
"""How long an invited-by-peer session may wait for the data-port IN after the control OK."""
SYNC_BURST: Final = 3
SYNC_BURST_INTERVAL: Final = 1.0
SYNC_INTERVAL: Final = 10.0
SYNC_TIMEOUT: Final = 61.0
"""Apple: the initiator must resync at least every 60 s, or the responder may assume it died.

One second of grace, as Arduino's listener has, for initiators that resync at exactly 60 s.
"""
FEEDBACK_DELAY: Final = 1.0
KNOWN_SSRCS: Final = 4
"""SSRCs remembered per peer: enough for every quirk seen, bounded against a hostile member."""
TICKS_PER_SECOND: Final = 10_000
_U64: Final = (1 << 64) - 1


def ticks(seconds: float) -> int:
    """Seconds as 64-bit AppleMIDI/RTP-MIDI clock ticks (100 µs), rounded, not truncated."""
    return round(seconds * TICKS_PER_SECOND) & _U64


class State(enum.Enum):
    INVITING_CONTROL = "inviting (control port)"
    INVITING_DATA = "inviting (data port)"
    JOINING = "joining"
    CONNECTED = "connected"
    WAITING = "waiting to re-invite"


@dataclass(eq=False)
class Peer:
    """One remote session member, in either role."""

    control: Address
    data: Address
    initiator: bool
    """True when we invited the peer (and so drive clock sync)."""
    state: State
    token: int
    configured: bool = False
    """Re-invited whenever the session is lost (a ``peer`` option or a discovered name)."""
    name: str | None = None
    ssrc: int | None = None
    ssrcs: list[int] = field(default_factory=list)
    """The last SSRCs the peer used (pymidi uses one on the control port, another on data)."""
    attempts: int = 0
    due: float = 0.0
    """When :meth:`Session.poll` must next look at this peer."""
    last_sync: float = 0.0
    sync_due: float | None = None
    sync_sent: int | None = None
    exchanges: int = 0
    latency: float | None = None
    """Round trip of the last clock exchange, in seconds."""
    offset: float | None = None
    """Peer's clock minus ours, in seconds (from the last exchange)."""
    feedback_due: float | None = None
    received: int | None = None
    """Sequence number of the last RTP packet from the peer (reported back in RS)."""
    acknowledged: int | None = None
    """Our sequence number the peer last reported in RS."""
    bitrate_limit: int | None = None
    context: object = None
    """Free for the caller (e.g. the peer's journal receiver or SysEx assembler)."""

    def use_ssrc(self, ssrc: int) -> None:
        """The peer now sends as ``ssrc``; a few earlier ones stay known (for BY), no more."""
        self.ssrc = ssrc
        if ssrc not in self.ssrcs:
            self.ssrcs.append(ssrc)
            del self.ssrcs[:-KNOWN_SSRCS]

    @property
    def host(self) -> str:
        return self.control[0]

    def describe(self) -> str:
        name = f"{self.name!r} " if self.name else ""
        return f"{name}at {self.control[0]} port {self.control[1]}"


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send ``command`` from our control or data socket to ``address``."""

    port: int
    address: Address
    command: Command


@dataclass(frozen=True, slots=True)
class Connected:
    peer: Peer


@dataclass(frozen=True, slots=True)
class Disconnected:
    peer: Peer
    reason: str


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """The peer has our RTP packets up to ``sequence`` (for trimming the journal)."""

    peer: Peer
    sequence: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """An AppleMIDI packet that was not acted on: a fixed reason (the drop counter's key)."""

    source: Address
    reason: str
    detail: str = ""


Output = Transmit | Connected | Disconnected | Acknowledged | Ignored


class Session:
    """The peers of one local AppleMIDI endpoint and everything they are waiting for."""

    def __init__(
        self,
        name: str,
        ssrc: int,
        now: float,
        token: Callable[[], int],
        join: str | None = None,
        max_peers: int = 16,
    ) -> None:
        self.name = name
        self.ssrc = ssrc
        self.join = join
        self.max_peers = max_peers
        self.peers: list[Peer] = []
        self.last_sent: int | None = None
        """Our latest RTP sequence number (kept by the sender, to check RS against)."""
        self._epoch = now
        self._token = token
        self._by_data: dict[Address, Peer] = {}

    # -- time -------------------------------------------------------------------------------

    def timestamp(self, now: float) -> int:
        """The session clock in 100 µs units (RTP carries its low 32 bits)."""
        return ticks(now - self._epoch)

    def deadline(self) -> float | None:
        """When :meth:`poll` must next be called (None: nothing is pending)."""
        return min((peer.due for peer in self.peers), default=None)

    # -- what the caller asks for -----------------------------------------------------------

    def invite(self, control: Address, now: float, configured: bool = True) -> list[Output]:
        """Invite the session at ``control`` (data port: control + 1) unless it is a member."""
        if self._find_control(control) is not None:
            return []
        if len(self.peers) >= self.max_peers:
            return [Ignored(control, f"peer limit of {self.max_peers} reached, not inviting")]
        peer = Peer(
            control=control,
            data=(control[0], control[1] + 1),
            initiator=True,
            state=State.INVITING_CONTROL,
            token=self._token(),
            configured=configured,
            due=now,
        )
        self.peers.append(peer)
        return self.poll(now)

    def remove(self, control: Address, now: float) -> list[Output]:
        """End the session with the peer at ``control`` (sends BY) and forget it."""
        peer = self._find_control(control)
        if peer is None:
            return []
        return self._drop(peer, "removed", now, None)

    def close(self) -> list[Output]:
        """Say goodbye to everyone (on shutdown)."""
        outputs: list[Output] = []
        for peer in list(self.peers):
            outputs += self._goodbye(peer)
            self._forget(peer)
            outputs.append(Disconnected(peer, "shutting down"))
        return outputs

    def poll(self, now: float) -> list[Output]:
        """Do whatever is due: resend invitations, clock sync, feedback, timeouts."""
        outputs: list[Output] = []
        for peer in list(self.peers):
            if peer.due <= now:
                self._step(peer, now, outputs)
        return outputs

    # -- what arrives -----------------------------------------------------------------------

    def received(self, port: int, command: Command, source: Address, now: float) -> list[Output]:
        """Handle a command that arrived on our control or data socket from ``source``."""
        if isinstance(command, Exchange):
            if command.command == INVITE:
                if port == CONTROL:
                    return self._invited(command, source, now)
                return self._invited_data(command, source, now)
            if command.command == ACCEPT:
                return self._accepted(port, command, source, now)
            if command.command == REJECT:
                return self._rejected(command, source, now)
            return self._bye(command, source, now)
        peer = self._member(source, command.ssrc)
        if peer is None:
            return [Ignored(source, f"{type(command).__name__} from outside the session")]
        if isinstance(command, Sync):
            return self._sync(peer, port, command, source, now)
        if isinstance(command, Feedback):
            return self._feedback(peer, command, source)
        assert isinstance(command, BitrateLimit)
        peer.bitrate_limit = command.limit
        return []

    def rtp_received(self, source: Address, ssrc: int, sequence: int, now: float) -> Peer | None:
        """The member an RTP packet came from, by its data address (None: drop it).

        Schedules receiver feedback; check :meth:`deadline` afterwards when it matters.
        """
        peer = self._by_data.get(source)
        if peer is None:
            return None
        if ssrc != peer.ssrc:
            peer.use_ssrc(ssrc)
        peer.received = sequence
        if peer.feedback_due is None:
            peer.feedback_due = now + FEEDBACK_DELAY
            peer.due = min(peer.due, peer.feedback_due)
        return peer

    def members(self) -> list[Peer]:
        """Connected peers, the destinations of our RTP packets."""
        return list(self._by_data.values())

    # -- handshake --------------------------------------------------------------------------

    def _invited(self, command: Exchange, source: Address, now: float) -> list[Output]:
        peer = self._find_control(source)
        reply = Exchange(ACCEPT, command.token, self.ssrc, self.name)
        if peer is not None and peer.token == command.token and not peer.initiator:
            return [Transmit(CONTROL, source, reply)]  # our OK was lost; say it again
        configured = peer is not None and peer.configured
        accept = (
            configured or self.join == "*" or (self.join is not None and self.join == command.name)
        )
        if not accept:
            return [
                Transmit(CONTROL, source, Exchange(REJECT, command.token, self.ssrc, self.name)),
                Ignored(source, "invitation not accepted (see join)", f"session {command.name!r}"),
            ]
        outputs: list[Output] = []
        if peer is not None and peer.state is State.CONNECTED:
            outputs += self._drop(peer, "the peer restarted the session", now, None, False)
        elif peer is not None:  # it invited us while we invited it: its invitation wins
            self._forget(peer)
        elif len(self.peers) >= self.max_peers:
            return [
                Transmit(CONTROL, source, Exchange(REJECT, command.token, self.ssrc, self.name)),
                Ignored(source, f"peer limit of {self.max_peers} reached"),
            ]
        peer = Peer(
            control=source,
            data=(source[0], source[1] + 1),
            initiator=False,
            state=State.JOINING,
            token=command.token,
            configured=configured,
            name=command.name,
            ssrc=command.ssrc,
            ssrcs=[command.ssrc],
            due=now + JOIN_TIMEOUT,
        )
        self.peers.append(peer)
        outputs.append(Transmit(CONTROL, source, reply))
        return outputs

    def _invited_data(self, command: Exchange, source: Address, now: float) -> list[Output]:
        reply = Exchange(ACCEPT, command.token, self.ssrc, self.name)
        for peer in self.peers:
            if peer.initiator or peer.token != command.token or peer.host != source[0]:
                continue
            if peer.state is State.CONNECTED:
                return [Transmit(DATA, source, reply)]  # our OK was lost; say it again
            peer.data = source
            peer.use_ssrc(command.ssrc)
            peer.name = command.name or peer.name
            return [Transmit(DATA, source, reply), *self._connect(peer, now)]
        return [
            Transmit(DATA, source, Exchange(REJECT, command.token, self.ssrc, self.name)),
            Ignored(source, "data-port invitation without a control-port one"),
        ]

    def _accepted(self, port: int, command: Exchange, source: Address, now: float) -> list[Output]:
        # Matched by token and host, not source port: node-rtpmidi answers from the wrong socket.
        peer = self._find_token(command.token, source[0], initiator=True)
        if peer is None:
            return [Ignored(source, "OK for no invitation of ours")]
        peer.use_ssrc(command.ssrc)
        peer.name = command.name or peer.name
        if peer.state is State.INVITING_CONTROL:
            peer.state, peer.attempts, peer.due = State.INVITING_DATA, 0, now
            return self.poll(now)
        if peer.state is State.INVITING_DATA and port == DATA:
            return self._connect(peer, now)
        return []  # a repeated OK for a step already done

    def _rejected(self, command: Exchange, source: Address, now: float) -> list[Output]:
        peer = self._find_token(command.token, source[0], initiator=True)
        if peer is None or peer.state not in (State.INVITING_CONTROL, State.INVITING_DATA):
            return [Ignored(source, "NO for no invitation of ours")]
        return self._drop(peer, "invitation rejected", now, goodbye=False)

    def _bye(self, command: Exchange, source: Address, now: float) -> list[Output]:
        # macOS says BY with token 0; a non-zero token must match, so that a stale BY with a
        # reused SSRC cannot end a newer session.
        for peer in self.peers:
            if peer.host == source[0] and command.ssrc in peer.ssrcs:
                if command.token in (0, peer.token):
                    return self._drop(peer, "peer said goodbye", now, REINVITE_BACKOFF, False)
        return [Ignored(source, "BY from outside the session")]

    def _connect(self, peer: Peer, now: float) -> list[Output]:
        peer.state = State.CONNECTED
        peer.last_sync = now
        peer.attempts = 0
        self._by_data[peer.data] = peer
        if peer.initiator:
            peer.exchanges = 0
            peer.sync_due = now
        self._reschedule(peer, now)
        outputs: list[Output] = [Connected(peer)]
        if peer.initiator:
            outputs += self.poll(now)
        return outputs

    # -- clock sync and feedback ------------------------------------------------------------

    def _sync(
        self, peer: Peer, port: int, command: Sync, source: Address, now: float
    ) -> list[Output]:
        ts1, ts2, ts3 = command.timestamps
        here = self.timestamp(now)
        peer.last_sync = now
        if command.count == 0:  # answer from the socket it came to (MIDIMonster uses control)
            reply = Sync(self.ssrc, 1, (ts1, here, 0))
            self._reschedule(peer, now)
            return [Transmit(port, source, reply)]
        if command.count == 1:
            # node-rtpmidi echoes only the low 32 bits of our timestamp
            if peer.sync_sent is None or (peer.sync_sent ^ ts1) & 0xFFFFFFFF:
                return [Ignored(source, "CK1 for no CK0 of ours")]
            peer.sync_sent = None
            peer.exchanges += 1
            peer.latency = (here - ts1) / TICKS_PER_SECOND
            peer.offset = ((ts1 + here) / 2 - ts2) / -TICKS_PER_SECOND
            self._reschedule(peer, now)
            return [Transmit(port, source, Sync(self.ssrc, 2, (ts1, ts2, here)))]
        peer.latency = (here - ts2) / TICKS_PER_SECOND
        peer.offset = ((ts1 + ts3) / 2 - ts2) / TICKS_PER_SECOND
        self._reschedule(peer, now)
        return []

    def _feedback(self, peer: Peer, command: Feedback, source: Address) -> list[Output]:
        last = self.last_sent
        for sequence in feedback_candidates(command.field):
            if last is not None and (last - sequence) & 0xFFFF < 0x8000:
                peer.acknowledged = sequence
                return [Acknowledged(peer, sequence)]
        return [Ignored(source, "RS for no packet we sent", f"field {command.field:#010x}")]

    # -- timers -----------------------------------------------------------------------------

    def _step(self, peer: Peer, now: float, outputs: list[Output]) -> None:
        state = peer.state
        if state is State.WAITING:
            peer.state, peer.attempts, peer.token = State.INVITING_CONTROL, 0, self._token()
            state = peer.state
        if state in (State.INVITING_CONTROL, State.INVITING_DATA):
            if peer.attempts > INVITE_RESENDS:
                outputs += self._drop(peer, "no answer to invitations", now, goodbye=False)
                return
            port, address = (
                (CONTROL, peer.control) if state is State.INVITING_CONTROL else (DATA, peer.data)
            )
            outputs.append(
                Transmit(port, address, Exchange(INVITE, peer.token, self.ssrc, self.name))
            )
            peer.attempts += 1
            peer.due = now + INVITE_INTERVAL
            return
        if state is State.JOINING:
            outputs += self._drop(peer, "no data-port invitation", now, goodbye=False)
            return
        if now - peer.last_sync >= SYNC_TIMEOUT:
            outputs += self._drop(peer, f"no clock sync for {SYNC_TIMEOUT:.0f} s", now, 0.0)
            return
        if peer.feedback_due is not None and peer.feedback_due <= now:
            peer.feedback_due = None
            if peer.received is not None:
                feedback = Feedback.for_sequence(self.ssrc, peer.received)
                outputs.append(Transmit(CONTROL, peer.control, feedback))
        if peer.sync_due is not None and peer.sync_due <= now:
            peer.sync_sent = self.timestamp(now)
            outputs.append(Transmit(DATA, peer.data, Sync(self.ssrc, 0, (peer.sync_sent, 0, 0))))
            interval = SYNC_BURST_INTERVAL if peer.exchanges < SYNC_BURST else SYNC_INTERVAL
            peer.sync_due = now + interval
        self._reschedule(peer, now)

    def _reschedule(self, peer: Peer, now: float) -> None:
        """Set a connected peer's next due time from its timers."""
        due = peer.last_sync + SYNC_TIMEOUT
        if peer.sync_due is not None:
            due = min(due, peer.sync_due)
        if peer.feedback_due is not None:
            due = min(due, peer.feedback_due)
        peer.due = due

    # -- membership -------------------------------------------------------------------------

    def _drop(
        self,
        peer: Peer,
        reason: str,
        now: float,
        retry_in: float | None = REINVITE_BACKOFF,
        goodbye: bool = True,
    ) -> list[Output]:
        """End a peer's session; a configured one is re-invited ``retry_in`` s later (None: not)."""
        outputs: list[Output] = self._goodbye(peer) if goodbye else []
        self._forget(peer)
        outputs.append(Disconnected(peer, reason))
        if retry_in is not None and peer.configured:
            peer.state = State.WAITING
            peer.initiator = True
            peer.sync_due = peer.sync_sent = peer.feedback_due = None
            peer.due = now + retry_in
            self.peers.append(peer)
        return outputs

    def _goodbye(self, peer: Peer) -> list[Output]:
        if peer.state in (State.INVITING_CONTROL, State.WAITING):
            return []
        bye = Exchange(BYE, peer.token, self.ssrc)
        outputs: list[Output] = [Transmit(CONTROL, peer.control, bye)]
        if peer.state is State.CONNECTED:
            outputs.append(Transmit(DATA, peer.data, bye))
        return outputs

    def _forget(self, peer: Peer) -> None:
        self.peers.remove(peer)
        if self._by_data.get(peer.data) is peer:
            del self._by_data[peer.data]

    def _find_control(self, control: Address) -> Peer | None:
        for peer in self.peers:
            if peer.control == control:
                return peer
        return None

    def _find_token(self, token: int, host: str, initiator: bool) -> Peer | None:
        for peer in self.peers:
            if peer.token == token and peer.host == host and peer.initiator == initiator:
                return peer
        return None

    def _member(self, source: Address, ssrc: int) -> Peer | None:
        """The connected peer a packet came from: by data address, else by host and SSRC."""
        peer = self._by_data.get(source)
        if peer is not None:
            return peer
        for peer in self.peers:
            if peer.state is State.CONNECTED and peer.host == source[0] and ssrc in peer.ssrcs:
                return peer
        return None
