"""The ``rtpmidi`` backend: RTP-MIDI (RFC 6295) in direct mode and in AppleMIDI sessions.

The wire formats live in :mod:`netmidi.codec.rtpmidi` and :mod:`netmidi.codec.applemidi`, the
MIDI messages in :mod:`netmidi.codec.midi`, and the session logic in
:mod:`netmidi.applemidi_session`; this module owns the sockets and the timer and translates
between them and the router.

Recovery journal (:mod:`netmidi.codec.rtpjournal`): an instance sends one with every packet
unless ``journal: off`` (``instance.journal``, told about RS feedback through ``confirm``), and
runs the packets of each remote sender through ``instance.new_receiver()`` to repair losses.
Discovery (:mod:`netmidi.rtpmidi_discovery`): :meth:`RtpMidiInstance.discovered` and
:meth:`RtpMidiInstance.vanished` take session names and control addresses from mDNS.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from netmidi.applemidi_session import (
    CONTROL,
    DATA,
    Acknowledged,
    Address,
    Connected,
    Disconnected,
    Ignored,
    Output,
    Peer,
    Session,
    Synced,
    Transmit,
    ticks,
)
from netmidi.backend import Backend, Channel, Event, Instance
from netmidi.badinput import BadInput
from netmidi.codec import applemidi, rtpmidi
from netmidi.codec.midi import (
    MidiEvent,
    MidiEventDecoder,
    MidiEventEncoder,
    parse_midi_channel,
)
from netmidi.codec.rtpjournal import JournalReceiver, JournalSender
from netmidi.options import (
    HostPort,
    Option,
    OptionError,
    choice,
    flag,
    host_port,
    integer,
    ip_address,
    listof,
    text,
)
from netmidi.rtpmidi_discovery import GLOBAL_OPTIONS as DISCOVERY_OPTIONS
from netmidi.rtpmidi_discovery import Discovery

_RECEIVE_BUFFER = 4 << 20
_READ_BUDGET = 2048
_PAIR_ATTEMPTS = 32


def _address(value: Any) -> HostPort:
    """``address port`` with an IP literal (names are resolved by discovery, see ``invite``)."""
    parsed = host_port()(value)
    try:
        ip_address(parsed.host)
    except OptionError:
        raise OptionError(
            f"got {value!r}, expected 'address port' with an IPv4 or IPv6 address"
        ) from None
    return parsed


def _bind(value: Any) -> HostPort:
    parsed = host_port(default_port=0)(value)
    return HostPort(ip_address(parsed.host), parsed.port)


class _Source:
    """What is kept per remote sender: (N)RPN state, SysEx in progress, journal receiver."""

    __slots__ = ("decoder", "sysex", "receiver")

    def __init__(self, max_sysex: int, receiver: JournalReceiver | None) -> None:
        self.decoder = MidiEventDecoder()
        self.sysex = rtpmidi.SysexAssembler(max_sysex)
        self.receiver = receiver


class _Socket(DatagramProtocol):
    """Hands datagrams to the instance, saying which of its sockets they came to."""

    noisy = False

    def __init__(self, handler: Callable[[bytes, Any], None]) -> None:
        self.handler = handler

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.handler(datagram, addr)


class RtpMidiInstance(Instance):
    """One RTP-MIDI endpoint: a direct-mode data port, or an AppleMIDI session (port pair)."""

    backend: RtpMidiBackend
    log = Logger()

    def __init__(self, backend: RtpMidiBackend, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(backend, name, options)
        self.reactor = backend.reactor
        self.apple = options["mode"] == "apple"
        self.ssrc: int = options["ssrc"] or random.getrandbits(32) or 1
        self.title: str = options["title"] or name
        self.bad = BadInput(self.log, f"rtpmidi {name}", self.reactor.seconds)
        # The journal gets a quarter of the packet (at most 512 bytes); commands the rest.
        budget = min(512, options["max-packet"] // 4) if options["journal"] else 0
        self.journal: JournalSender | None = JournalSender(max_bytes=budget) if budget else None
        self.new_receiver: Callable[[], JournalReceiver] | None = JournalReceiver
        self.session: Session | None = None
        self.sent = 0
        """RTP packets sent so far (for status and tests)."""
        self._encoder = MidiEventEncoder(options["epn-tx"])
        self._marker = options["marker"] == "rfc"
        self._limit = options["max-packet"] - 14 - budget
        self._max_peers: int = options["max-peers"]
        self._sequence = random.getrandbits(16)
        self._epoch = 0.0
        self._pending: list[bytes] = []
        # Twisted's DelayedCall and UDP port (typed loosely: zope interfaces confuse mypy).
        self._flush_call: Any = None
        self._timer: Any = None
        self._ports: list[Any] = []
        self._v6 = ":" in options["bind"].host
        self._destinations: list[Address] = []
        self._configured: list[Address] = []
        self._sources: dict[Address, _Source] = {}
        self._invite: set[str] = set(options["invite"])
        self._discovered: dict[Address, str] = {}
        self._unreachable: weakref.WeakSet[Peer] = weakref.WeakSet()

    # -- channels ---------------------------------------------------------------------------

    def parse_channel(self, spec: str) -> Channel:
        return parse_midi_channel(spec)

    def channel_spec(self, channel: Channel) -> str:
        return str(channel)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Open the socket(s), then invite the configured peers."""
        now = self.reactor.seconds()
        self._epoch = now
        bind: HostPort = self.options["bind"]
        if not self.apple:
            self._ports = [self._listen(bind.host, bind.port, self._data_received)]
            self._configured = [self._wire((p.host, p.port)) for p in self.options["peer"]]
            self._destinations = list(self._configured)
            return
        self._ports = self._listen_pair(bind)
        self.session = Session(
            self.title,
            self.ssrc,
            now,
            token=lambda: random.getrandbits(32) or 1,
            join=self.options["join"],
            max_peers=self._max_peers,
        )
        for peer in self.options["peer"]:
            self._apply(self.session.invite((peer.host, peer.port), now))
        self.log.info(
            "{name}: AppleMIDI session {title!r} on {host} ports {control}/{data}",
            name=self.name,
            title=self.title,
            host=bind.host,
            control=self.control_port,
            data=self.control_port + 1,
        )

    def stop(self) -> Deferred[Any]:
        """Send BY to every peer, then close the sockets."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
            self._flush()
        if self.session is not None:
            self._apply(self.session.close())
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        ports, self._ports = self._ports, []
        return DeferredList([succeed(p.stopListening()) for p in ports])

    @property
    def started(self) -> bool:
        """True once the instance's sockets are open (and until it stops)."""
        return bool(self._ports)

    @property
    def control_port(self) -> int:
        """The control port (apple mode) or the data port (direct mode), once started."""
        return int(self._ports[0].getHost().port)

    def _listen(self, host: str, port: int, handler: Callable[[bytes, Any], None]) -> Any:
        listening = self.reactor.listenUDP(
            port, _Socket(handler), interface=host, maxPacketSize=65535
        )
        sock = getattr(listening, "socket", None)
        if sock is not None:  # large buffers: Windows rtpMIDI users lost messages without them
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        # Twisted reads up to 256 KiB per wakeup: 16 000 small packets from a flooding sender,
        # while every other socket and timer waits. A smaller budget keeps the daemon responsive.
        listening.maxThroughput = _READ_BUDGET
        return listening

    def _listen_pair(self, bind: HostPort) -> list[Any]:
        """Control port N and data port N+1; any free pair (N even, for node-rtpmidi) if N=0."""
        if bind.port:
            control = self._listen(bind.host, bind.port, self._control_received)
            try:
                return [control, self._listen(bind.host, bind.port + 1, self._data_received)]
            except CannotListenError:
                control.stopListening()
                raise
        for _ in range(_PAIR_ATTEMPTS):
            control = self._listen(bind.host, 0, self._control_received)
            port = control.getHost().port
            if port % 2 == 0:
                try:
                    return [control, self._listen(bind.host, port + 1, self._data_received)]
                except CannotListenError:
                    pass
            control.stopListening()
        error = OSError(errno.EADDRINUSE, "no free port pair")
        raise CannotListenError(bind.host, 0, error)

    # -- discovery --------------------------------------------------------------------------

    def discovered(self, name: str, control: Address) -> None:
        """A session announced itself (mDNS): invite it if ``invite`` names it (or is ``*``)."""
        if self.session is None or not ({name, "*"} & self._invite):
            return
        self._apply(self.session.invite(control, self.reactor.seconds()))
        if any(peer.control == control for peer in self.session.peers):
            self._discovered[control] = name  # only sessions we took on (max-peers bounds it)

    def vanished(self, control: Address) -> None:
        """A discovered session withdrew its announcement: end the session with it."""
        if self.session is not None and self._discovered.pop(control, None) is not None:
            self._apply(self.session.remove(control, self.reactor.seconds()))

    # -- receiving --------------------------------------------------------------------------

    def _source(self, addr: Any) -> Address:
        host: str = addr[0]
        if self._v6 and host.startswith("::ffff:") and "." in host:
            host = host[7:]
        return (host, addr[1])

    def _control_received(self, data: bytes, addr: Any) -> None:
        self._command(CONTROL, data, self._source(addr))

    def _command(self, port: int, data: bytes, source: Address) -> None:
        try:
            command = applemidi.decode(data)
        except applemidi.AppleMidiError as error:
            self.bad.drop(str(error), source=source)
            return
        if self.session is None:
            self.bad.drop("AppleMIDI command in direct mode", source=source)
            return
        self._apply(self.session.received(port, command, source, self.reactor.seconds()))

    def _data_received(self, data: bytes, addr: Any) -> None:
        source = addr if not self._v6 else self._source(addr)
        if data[:2] == b"\xff\xff":
            self._command(DATA, data, source)
            return
        try:
            packet = rtpmidi.decode(data)
        except rtpmidi.RtpMidiError as error:
            self.bad.drop(str(error), source=source)
            return
        header = packet.header
        session = self.session
        if session is not None:
            peer = session.rtp_received(
                source, header.ssrc, header.sequence, self.reactor.seconds()
            )
            if peer is None:
                self.bad.drop("RTP from outside the session", source=source)
                return
            if self._timer is None or peer.due < self._timer.getTime():
                self._schedule()
            state = peer.context
            if not isinstance(state, _Source):  # set on Connected; never trust it blindly
                state = peer.context = self._make_source()
        else:
            state = self._sources.get(source) or self._new_source(source)
        messages = packet.messages
        if packet.sysex:
            messages = self._reassemble(state, messages, source)
        if state.receiver is not None:
            received = state.receiver.packet(header.sequence, messages, packet.journal)
            if received.error is not None:
                self.bad.drop(f"recovery journal: {received.error}", source=source)
            messages = received.messages
        events = state.decoder.decode(messages)
        if events:
            self.emit(events)

    def _new_source(self, source: Address) -> _Source:
        """Per-sender state in direct mode (learning the sender as a destination if asked)."""
        if len(self._sources) >= self._max_peers:
            forgotten = next(iter(self._sources))
            del self._sources[forgotten]
            learned = self._wire(forgotten)
            if learned in self._destinations and learned not in self._configured:
                self._destinations.remove(learned)
        state = self._sources[source] = self._make_source()
        if self.options["learn"] and self._wire(source) not in self._destinations:
            self._destinations.append(self._wire(source))
            self.log.info("{name}: learned peer {source}", name=self.name, source=source)
        return state

    def _make_source(self) -> _Source:
        receiver = self.new_receiver() if self.new_receiver is not None else None
        return _Source(self.options["max-sysex"], receiver)

    def _reassemble(self, state: _Source, messages: list[bytes], source: Address) -> list[bytes]:
        """Replace SysEx segments by the messages they complete (SysEx is never an event)."""
        out: list[bytes] = []
        for message in messages:
            if message[0] not in (0xF0, 0xF7):
                out.append(message)
                continue
            complete, problem = state.sysex.feed(message)
            if problem is not None:
                self.bad.drop(problem, source=source)
            if complete is not None:
                out.append(complete)
        return out

    # -- sending ----------------------------------------------------------------------------

    def send(self, events: Sequence[Event]) -> None:
        # The router only sends channels that parse_channel made: MidiChannel keys.
        self._pending += self._encoder.encode_batch(cast(Sequence[MidiEvent], events))
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)

    def _flush(self) -> None:
        """Send what this reactor turn produced, in as few packets as fit the size limit."""
        self._flush_call = None
        pending, self._pending = self._pending, []
        destinations = self._destinations
        if not destinations or not self._ports:
            return
        sock = self._ports[-1].socket
        timestamp = ticks(self.reactor.seconds() - self._epoch)
        journal = self.journal
        # Event messages are at most 3 bytes (4 with a delta): most batches fit one packet.
        fits = len(pending) * 4 <= self._limit
        for group in (pending,) if fits else rtpmidi.pack_sections(pending, self._limit):
            sequence = self._sequence = (self._sequence + 1) & 0xFFFF
            header = rtpmidi.encode_header(sequence, timestamp, self.ssrc, self._marker)
            if journal is None:
                datagram = header + rtpmidi.encode_section(group)
            else:
                datagram = (
                    header + rtpmidi.encode_section(group, True) + journal.packet(sequence, group)
                )
            for destination in destinations:
                try:
                    sock.sendto(datagram, destination)
                except OSError as error:  # e.g. no route, or a full buffer: never crash
                    self.bad.drop(f"send failed: {os.strerror(error.errno or 0)}", destination)
            self.sent += 1
        if self.session is not None:
            self.session.last_sent = self._sequence

    # -- session plumbing -------------------------------------------------------------------

    def _apply(self, outputs: list[Output]) -> None:
        """Carry out what the session machine asks for, then re-arm its timer."""
        for output in outputs:
            if isinstance(output, Transmit):
                self._transmit(output)
            elif isinstance(output, Ignored):
                source = f"{output.source} ({output.detail})" if output.detail else output.source
                self.bad.drop(output.reason, source=source)
            elif isinstance(output, Acknowledged):
                if self.journal is not None:
                    self.journal.confirm(output.sequence, output.peer.control)
            elif isinstance(output, Connected):
                self._unreachable.discard(output.peer)
                output.peer.context = self._make_source()
                if self.journal is not None:
                    self.journal.track(output.peer.control)
                self._members_changed()
                self.log.info(
                    "{name}: session with {peer} established",
                    name=self.name,
                    peer=output.peer.describe(),
                )
            elif isinstance(output, Disconnected):
                self._disconnected(output)
            elif isinstance(output, Synced):
                self.log.info(
                    "{name}: clock sync with {peer}: round trip {latency:.1f} ms",
                    name=self.name,
                    peer=output.peer.describe(),
                    latency=(output.peer.latency or 0.0) * 1000,
                )
        self._schedule()

    def _disconnected(self, output: Disconnected) -> None:
        """Log a lost session; a peer that cannot be reached is logged once, not every retry."""
        peer = output.peer
        if self.journal is not None:
            self.journal.forget(peer.control)
        if peer.context is not None:
            peer.context = None
            self._members_changed()
            message = "{name}: session with {peer} ended: {reason}"
        elif peer in self._unreachable:
            return
        else:
            message = "{name}: no session with {peer}: {reason}"
        if peer.configured:
            self._unreachable.add(peer)
            message += " (retrying)"
        self.log.info(message, name=self.name, peer=peer.describe(), reason=output.reason)

    def _transmit(self, output: Transmit) -> None:
        if not self._ports:
            return
        try:
            self._ports[output.port].write(
                applemidi.encode(output.command), self._wire(output.address)
            )
        except Exception as error:  # a bad address or a failed send must not stop the session
            self.bad.drop(f"send failed: {error}", source=output.address)

    def _members_changed(self) -> None:
        assert self.session is not None
        self._destinations = [self._wire(peer.data) for peer in self.session.members()]

    def _wire(self, address: Address) -> Address:
        """The address as the socket takes it (an IPv6 socket reaches IPv4 peers v4-mapped)."""
        host = address[0]
        return ("::ffff:" + host, address[1]) if self._v6 and ":" not in host else address

    def _schedule(self) -> None:
        session = self.session
        if session is None:
            return
        deadline = session.deadline()
        timer = self._timer
        if timer is not None and timer.active():
            if deadline is not None and timer.getTime() == deadline:
                return
            timer.cancel()
        self._timer = None
        if deadline is not None and self._ports:
            delay = max(0.0, deadline - self.reactor.seconds())
            self._timer = self.reactor.callLater(delay, self._poll)

    def _poll(self) -> None:
        self._timer = None
        assert self.session is not None
        self._apply(self.session.poll(self.reactor.seconds()))

    def peers(self) -> list[Peer]:
        """The session's peers (apple mode), for status and tests."""
        return list(self.session.peers) if self.session is not None else []


class RtpMidiBackend(Backend):
    """RTP-MIDI endpoints; each instance is a direct-mode port or an AppleMIDI session."""

    name = "rtpmidi"
    instance_options = {
        "mode": Option(
            choice("direct", "apple"),
            None,
            "direct: plain RTP-MIDI to fixed peers; "
            "apple: AppleMIDI sessions (control port N, data port N+1)",
            required=True,
        ),
        "bind": Option(
            _bind,
            HostPort("0.0.0.0", 0),
            "local address and port (apple: the control "
            "port, the data port is one higher; 0 picks a free pair); '::' for IPv4 and IPv6",
        ),
        "peer": Option(
            listof(_address),
            [],
            "'address port' to send to (direct: data port) or to "
            "invite (apple: control port); re-invited whenever the session is lost",
        ),
        "learn": Option(flag, False, "direct mode: peers that send to us become destinations"),
        "ssrc": Option(
            integer(1, 0xFFFFFFFF), None, "RTP synchronisation source (random by default)"
        ),
        "title": Option(
            text(),
            None,
            "apple mode: the session name we send (and announce); default: the instance name",
        ),
        "join": Option(
            text(),
            None,
            "apple mode: accept invitations from this session name, "
            "'*' for any (peers in 'peer' are always accepted)",
        ),
        "invite": Option(
            listof(text()),
            [],
            "apple mode: session names to invite when discovered (mDNS), '*' for every one",
        ),
        "max-peers": Option(
            integer(1, 4096),
            16,
            "most peers (sessions or direct-mode senders) kept at once; more are refused",
        ),
        "epn-tx": Option(
            choice("full", "short"),
            "full",
            "(N)RPN output: full sends RPN 127/127 after each value, short does not",
        ),
        "marker": Option(
            choice("compat", "rfc"),
            "compat",
            "RTP marker bit: compat sends 0 "
            "(Windows rtpMIDI drops packets with 1), rfc sets it as RFC 6295 says",
        ),
        "max-packet": Option(integer(128, 65507), 1400, "largest UDP payload sent (below the MTU)"),
        "max-sysex": Option(integer(16, 1 << 24), 65536, "longest SysEx reassembled from segments"),
        "journal": Option(
            flag,
            True,
            "send a recovery journal (RFC 6295) in every packet, so receivers repair lost "
            "packets; off sends none (lost journals from peers are repaired either way)",
        ),
    }
    global_options = DISCOVERY_OPTIONS
    discovery: Discovery | None = None

    def create_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        return RtpMidiInstance(self, name, options)

    def check(self) -> list[str]:
        errors = []
        for name, instance in self.instances.items():
            options = instance.options
            if options["mode"] == "direct":
                for key in ("join", "invite", "title"):
                    if options[key]:
                        errors.append(f"{name}: {key!r} only applies to mode: apple")
            elif options["learn"]:
                errors.append(f"{name}: 'learn' only applies to mode: direct")
            elif options["bind"].port == 65535:
                errors.append(f"{name}: bind port 65535 leaves no room for the data port")
        return errors

    def startService(self) -> None:
        apple = [i for i in self.instances.values() if isinstance(i, RtpMidiInstance) and i.apple]
        if apple and self.options.get("mdns") and self.discovery is None:
            self.discovery = Discovery(self, self.reactor, self.options, self.detect)
        super().startService()  # type: ignore[no-untyped-call]
        for instance in self.instances.values():
            assert isinstance(instance, RtpMidiInstance)
            try:
                instance.start()
            except CannotListenError as error:  # one busy port must not stop the whole show
                self.log.error(
                    "{name}: cannot listen on {host} port {port} ({reason}); instance not started",
                    name=instance.name,
                    host=error.interface or "any address",
                    port=error.port,
                    reason=error.socketError,
                )
        if self.discovery is not None:
            self.discovery.start([instance for instance in apple if instance.started])

    def stopService(self) -> Deferred[Any]:
        stops = [i.stop() for i in self.instances.values() if isinstance(i, RtpMidiInstance)]
        parent = super().stopService()  # type: ignore[no-untyped-call]
        return DeferredList([*stops, parent] if parent is not None else stops)


BACKEND = RtpMidiBackend
