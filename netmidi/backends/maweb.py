"""The grandMA2 / dot2 web remote: executors and command keys, both directions.

Each instance is an autobahn websocket client to ``ws://host:port/?ma=1``. The session logic
(login, keepalive, polling, fader pacing) is :mod:`netmidi.session.maweb`; this module only
connects, reconnects through the failover host list with backoff, and moves text frames and
events between the websocket and that state machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from autobahn.twisted import websocket as _websocket
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from netmidi.backend import Backend, Channel, Event, Instance, Reactor
from netmidi.badinput import BadInput
from netmidi.codec import maweb
from netmidi.options import (
    HostPort,
    Option,
    OptionError,
    choice,
    flag,
    host_port,
    integer,
    listof,
    text,
)
from netmidi.session.maweb import (
    BUTTON,
    FADER,
    Backoff,
    ClientSession,
    CommandKey,
    Control,
    Credentials,
    Executor,
    Failover,
    Reaction,
    RemoteState,
    Timing,
)
from netmidi.values import Value

# autobahn has no type hints
websocket: Any = _websocket

MAX_MESSAGE = 4 * 1024 * 1024
_EXECUTOR = re.compile(r"page(\d{1,4})\.(fader|upper|lower|flash|button)(\d{1,3})")


def parse_control(spec: str, cmdline: str) -> Control:
    """``page1.fader5``, ``page2.button103`` or a command key name, checked for the mode."""
    match = _EXECUTOR.fullmatch(spec)
    if match is not None:
        page, control, number = int(match[1]), match[2], int(match[3])
        index = number - 1
        on_fader = 0 <= index < 90
        if page < 1:
            raise OptionError(f"got {spec!r}, expected a page from 1")
        if control != BUTTON and not on_fader:
            raise OptionError(f"got {spec!r}, expected {control} on a fader executor 1-90")
        if not (maweb.exists(maweb.GMA2, index) or maweb.exists(maweb.DOT2, index)):
            raise OptionError(
                f"got {spec!r}, expected an executor 1-90 or 101-190"
                " (dot2 also 201-222 and 301-316 ... 801-816)"
            )
        return Executor(page, number, control)
    key = maweb.KEYS.get(spec)
    if key is None:
        raise OptionError(
            f"got {spec!r}, expected pageN.faderN/upperN/lowerN/flashN/buttonN"
            " or a command key name such as GO_PLUS (see the maweb backend page)"
        )
    if cmdline == "console" and not key.lua:
        raise OptionError(f"got {spec!r}, a key with no console hardkey; use cmdline remote")
    if cmdline == "remote" and not key.remote:
        raise OptionError(
            f"got {spec!r}, a console hardkey; use cmdline console or downgrade (gma2 only)"
        )
    return CommandKey(key)


class MawebProtocol(websocket.WebSocketClientProtocol):  # type: ignore[misc]
    """Moves frames between one websocket connection and its :class:`MawebClient`."""

    client: MawebClient

    def onOpen(self) -> None:
        self.client.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.client.bad.drop("a binary frame", source=self.client.host)
        else:
            self.client.message(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.localCloseCode in (1002, 1007):
            self.client.bad.drop(f"a websocket protocol error ({reason})", source=self.client.host)
        elif reason and "payload limit" in reason:
            self.client.bad.drop("a message over the size limit", source=self.client.host)
        self.client.closed(self, reason)


class MawebClient:
    """One instance's connection to the console, kept up through the failover host list."""

    log = Logger()

    def __init__(
        self,
        reactor: Reactor,
        instance: MawebInstance,
        state: RemoteState,
        credentials: Credentials,
        timing: Timing,
        failover: Failover,
    ) -> None:
        self.reactor = reactor
        self.instance = instance
        self.name = instance.name
        self.hosts: list[HostPort] = instance.options["host"]
        self.state = state
        self._credentials = credentials
        self.timing = timing
        self.failover = failover
        self.quiet: bool = instance.backend.options.get("quiet", False)
        self.bad = BadInput(self.log, f"maweb {self.name}", reactor.seconds)
        self.session: ClientSession | None = None
        self._protocol: MawebProtocol | None = None
        self._connecting: Deferred[Any] | None = None
        self._retry: Any = None
        self._timer: Any = None
        self._logged_in = False
        self._drop_reason: str | None = None
        self._stopping: Deferred[None] | None = None
        self._offline_drops = 0
        self._running = False

    @property
    def host(self) -> HostPort:
        return self.hosts[self.failover.host]

    # -- connecting

    def start(self) -> None:
        self._running = True
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        host = self.host
        factory = websocket.WebSocketClientFactory(f"ws://{host}/?ma=1", reactor=self.reactor)
        factory.protocol = type("Protocol", (MawebProtocol,), {"client": self})
        factory.noisy = False
        factory.setProtocolOptions(
            maxFramePayloadSize=MAX_MESSAGE,
            maxMessagePayloadSize=MAX_MESSAGE,
            openHandshakeTimeout=self.timing.answer_timeout,
            closeHandshakeTimeout=1,
            autoPingInterval=0,
        )
        endpoint = HostnameEndpoint(
            self.reactor, host.host, host.port, timeout=self.timing.answer_timeout
        )
        self._connecting = endpoint.connect(factory)
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, protocol: MawebProtocol) -> None:
        self._connecting = None
        self._protocol = protocol

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        self._again(f"cannot connect: {failure.getErrorMessage()}", logged_in=False)

    def _again(self, why: str, logged_in: bool) -> None:
        if not self._running:
            return
        was = self.host
        delay = self.failover.dropped() if logged_in else self.failover.failed()
        following = "" if self.host == was else f" to {self.host}"
        self.log.warn(
            "maweb {instance}: {host}: {why}; trying again{following} in {delay:g} s",
            instance=self.name,
            host=str(was),
            why=why,
            following=following,
            delay=delay,
        )
        self._retry = self.reactor.callLater(delay, self._connect)

    # -- the connection

    def opened(self, protocol: MawebProtocol) -> None:
        self._protocol = protocol
        self._logged_in = False
        self._drop_reason = None
        self.session = ClientSession(
            self.state, self._credentials, self.timing, self.reactor.seconds()
        )
        self._schedule()

    def message(self, payload: bytes) -> None:
        if self.session is not None:
            self._apply(self.session.received(payload, self.reactor.seconds()))

    def closed(self, protocol: MawebProtocol, reason: str | None) -> None:
        if protocol is not self._protocol and self._protocol is not None:
            return
        self._protocol = None
        self.session = None
        self._cancel_timer()
        if self._stopping is not None:
            stopping, self._stopping = self._stopping, None
            stopping.callback(None)
            return
        if not self._running:
            return
        why = self._drop_reason or f"connection closed ({reason or 'no reason given'})"
        if self._logged_in and self._drop_reason is None:
            why = f"connection lost ({reason or 'no reason given'})"
        self._again(why, logged_in=self._logged_in)

    def _apply(self, reaction: Reaction) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        for frame in reaction.send:
            protocol.sendMessage(frame.encode("utf-8"))
        for reason in reaction.bad:
            self.bad.drop(reason, source=self.host)
        for notice in reaction.notices:
            if notice.expert and self.quiet:
                continue
            self.log.emit(
                _LEVELS[notice.level],
                "maweb {instance}: {host}: {text}",
                instance=self.name,
                host=str(self.host),
                text=notice.text,
            )
        if reaction.events:
            self.instance.emit([(c, _value(c, v)) for c, v in reaction.events])
        if reaction.logged_in:
            self._logged_in = True
            self._offline_drops = 0
            self.failover.logged_in()
        if reaction.drop is not None:
            self._drop_reason = reaction.drop
            self._hang_up(protocol)
        else:
            self._schedule()

    def _hang_up(self, protocol: MawebProtocol) -> None:
        """Log out (freeing the console's remote slot), then close the websocket."""
        if self.session is not None:
            for frame in self.session.goodbye():
                protocol.sendMessage(frame.encode("utf-8"))
        self.session = None
        self._cancel_timer()
        if protocol.state == protocol.STATE_OPEN:
            protocol.sendClose(1000)
        elif protocol.state in (protocol.STATE_CONNECTING, protocol.STATE_PROXY_CONNECTING):
            protocol.dropConnection(abort=True)
        # else it is closing already, with the goodbye still to be flushed: leave it be

    # -- time

    def _schedule(self) -> None:
        """Have :meth:`_tick` run at the session's wakeup; an earlier timer is kept as it is
        (ticking early is harmless), which saves a cancel and a callLater per event."""
        when = self.session.wakeup() if self.session is not None else None
        if when is None:
            self._cancel_timer()
            return
        timer = self._timer
        if timer is not None and timer.active() and timer.getTime() <= when:
            return
        self._cancel_timer()
        self._timer = self.reactor.callLater(max(0.0, when - self.reactor.seconds()), self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.session is not None:
            self._apply(self.session.tick(self.reactor.seconds()))

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- output

    def output(self, control: Control, value: float) -> None:
        if not self.state.record(control, value):
            return
        if self.session is not None and self.session.logged_in:
            self._apply(self.session.output(control, value, self.reactor.seconds()))
            return
        if isinstance(control, Executor) and control.control == FADER:
            return  # sent on login
        self._offline_drops += 1
        if self._offline_drops == 1 and not self.quiet:
            self.log.warn(
                "maweb {instance}: not logged in; button and key events are dropped until then",
                instance=self.name,
            )

    # -- stopping

    def stop(self) -> Deferred[None]:
        """Log out and close; fires when the connection is gone."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.addErrback(lambda _: None)
            connecting.cancel()
        protocol = self._protocol
        if protocol is None:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._stopping = done
        self._hang_up(protocol)
        # a console that does not finish the closing handshake is cut off
        fallback = self.reactor.callLater(2.0, protocol.dropConnection, abort=True)

        def gone(result: None) -> None:
            if fallback.active():
                fallback.cancel()

        return done.addCallback(gone)


_LEVELS = {"info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error}


def _value(control: Executor, number: float) -> Value:
    if control.control == FADER:
        return Value.from_normalised(number, 16)
    return Value.from_raw(int(number), 1)


class MawebInstance(Instance):
    backend: MawebBackend

    def __init__(self, backend: MawebBackend, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(backend, name, options)
        self.client: MawebClient | None = None
        self.state = RemoteState((), options["cmdline"])

    def parse_channel(self, spec: str) -> Channel:
        return parse_control(spec, self.options["cmdline"])

    def channel_spec(self, channel: Channel) -> str:
        return str(channel)

    def mapped(self, inputs: frozenset[Channel], outputs: frozenset[Channel]) -> None:
        super().mapped(inputs, outputs)
        controls = [c for c in inputs if isinstance(c, (Executor, CommandKey))]
        self.state = RemoteState(controls, self.options["cmdline"])
        unreadable = sorted(str(c) for c in inputs if c not in self.state.inputs)
        if unreadable and not self.backend.options.get("quiet", False):
            self.log.warn(
                "maweb {instance}: the web remote never reports {channels}; no input from them",
                instance=self.name,
                channels=", ".join(unreadable),
            )

    def start(self) -> None:
        options = self.options
        credentials = Credentials(options["user"], maweb.password_hash(options["password"]))
        self.client = MawebClient(
            self.backend.reactor,
            self,
            self.state,
            credentials,
            self.backend.timing,
            Failover(len(options["host"]), self.backend.backoff),
        )
        self.client.start()

    def stop(self) -> Deferred[None]:
        return self.client.stop() if self.client is not None else succeed(None)

    def send(self, events: Sequence[Event]) -> None:
        for channel, value in events:
            if not isinstance(channel, (Executor, CommandKey)):
                continue
            if self.client is not None:
                self.client.output(channel, value.normalised)
            else:  # before start: remembered, and the faders are sent at login
                self.state.record(channel, value.normalised)


class MawebBackend(Backend):
    """grandMA2 / dot2 consoles through their web remote."""

    name = "maweb"
    global_options = {
        "interval": Option(
            integer(0, 60000),
            50,
            "input poll interval in ms; 0 polls again as soon as the previous answer arrived",
        ),
        "quiet": Option(flag, False, "hide warnings about channels the console cannot serve"),
    }
    instance_options = {
        "host": Option(
            listof(host_port(80)),
            None,
            "console address and optional port (default 80); a list is tried in turn",
            required=True,
        ),
        "user": Option(text(), "remote", "console user (dot2 always logs in as 'remote')"),
        "password": Option(text(allow_empty=True), "", "password of that user (sent as MD5)"),
        "cmdline": Option(
            choice("remote", "console", "downgrade"),
            "remote",
            "command keys on the remote's own command line, on the console (Lua, gma2),"
            " or on the console where the key has a hardkey",
        ),
    }

    def __init__(self, reactor: Reactor, options: Mapping[str, Any]) -> None:
        super().__init__(reactor, options)
        interval = options.get("interval", 50)
        self.timing = Timing(poll_interval=interval / 1000)
        self.backoff = Backoff()

    def create_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        return MawebInstance(self, name, options)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call, unused-ignore]
        for instance in self.instances.values():
            assert isinstance(instance, MawebInstance)
            instance.start()

    def stopService(self) -> Deferred[None]:
        stops = [i.stop() for i in self.instances.values() if isinstance(i, MawebInstance)]
        return DeferredList(stops).addCallback(self._stop_children)

    def _stop_children(self, _: object) -> Deferred[None]:
        stopped = super().stopService()  # type: ignore[no-untyped-call, unused-ignore]
        return stopped if isinstance(stopped, Deferred) else succeed(None)


BACKEND = MawebBackend
