"""A fake grandMA2 / dot2 web remote: an autobahn websocket server that behaves like the console.

No console or onPC can run in CI, so tests (netmidi's and those of programs embedding it) talk to
this instead. It follows what public clients and captures show of the real thing: ``server
ready`` with the app type, session ids from a counter that survives reconnects, forced login
with the MD5 of the password (user ``remote`` on dot2), sessions that expire without the bare
``{"session": n}`` keepalive, at most three sessions (a session is freed by ``close`` or by
expiry, not by a dropped socket), ``playbacks`` answers in the real response shape (blocks of 5
executors on gma2, of 1 on dot2), and ``playbacks_userInput``/``keyname``/``command`` recorded
and applied to an executor model. Knobs produce the error paths: web remote disabled, the limit,
a session id change, an abrupt close, slow or missing answers, a restart, raw frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autobahn.twisted import websocket as _websocket
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.task import deferLater
from twisted.logger import Logger

from netmidi.codec.maweb import BUTTON_VIEW, DOT2, FADER_VIEW, GMA2, password_hash

Reactor = Any
JSON = dict[str, Any]
# autobahn has no type hints; Twisted's interfaces are zope interfaces, which mypy cannot check
websocket: Any = _websocket
DelayedCall = Any


@dataclass
class FakeExecutor:
    """One executor of the console's model."""

    label: str
    fader: float = 0.0
    running: bool = False
    assigned: bool = True
    # combinedItems: a wide executor covers this many slots (and has one block per slot)
    width: int = 1


@dataclass
class FakeSession:
    id: int
    connection: FakeConsoleProtocol | None
    logged_in: bool = False
    expiry: DelayedCall | None = None


def _colour(t: str, c: str = "#FFFFFF") -> JSON:
    return {"t": t, "c": c}


class FakeConsoleProtocol(websocket.WebSocketServerProtocol):  # type: ignore[misc]
    """One remote's connection; everything is decided by the :class:`FakeConsole`."""

    console: FakeConsole
    session: FakeSession | None = None

    def onConnect(self, request: Any) -> None:
        self.console.paths.append(
            request.path
            + ("?" if request.params else "")
            + "&".join(f"{k}={v[0]}" for k, v in request.params.items())
        )

    def onOpen(self) -> None:
        self.console._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.console._message(self, payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.console._closed(self)


class FakeConsole:
    """The console: model, sessions, recorded requests and error knobs (plain attributes)."""

    log = Logger()

    def __init__(
        self,
        reactor: Reactor,
        app_type: str = GMA2,
        users: Mapping[str, str] | None = None,
        password: str = "",
        max_sessions: int = 3,
        keepalive_timeout: float = 20.0,
    ) -> None:
        self.reactor = reactor
        self.app_type = app_type
        # gma2 console users with their passwords; dot2 has one web remote password
        self.users = dict(users if users is not None else {"netmidi": "secret"})
        self.password = password
        self.max_sessions = max_sessions
        self.keepalive_timeout = keepalive_timeout
        # knobs
        self.remote_enabled = True
        self.answering = True
        self.answer_delay = 0.0
        self.acknowledge_input = True
        self.duplicate_world_index = False
        # model and records
        self.executors: dict[tuple[int, int], FakeExecutor] = {}
        self.received: list[JSON] = []
        self.paths: list[str] = []
        self.rejected: list[JSON] = []
        self.bad_frames: list[bytes] = []
        self.sessions: dict[int, FakeSession] = {}
        self.connections: list[FakeConsoleProtocol] = []
        self.logins = 0
        self.closed_sessions: list[int] = []
        self._counter = 0
        self._port: Any = None
        self._interface = "127.0.0.1"
        self.port_number = 0
        self._lost: dict[FakeConsoleProtocol, list[Deferred[None]]] = {}
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []
        self._timers: list[DelayedCall] = []

    # -- lifecycle

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> int:
        """Listen on loopback (``port`` 0: any free port); returns the port number."""
        factory = websocket.WebSocketServerFactory(reactor=self.reactor)
        factory.protocol = type("Protocol", (FakeConsoleProtocol,), {"console": self})
        factory.noisy = False
        factory.setProtocolOptions(
            openHandshakeTimeout=0, closeHandshakeTimeout=0, autoPingInterval=0
        )
        self._port = self.reactor.listenTCP(port, factory, interface=interface)
        self._interface = interface
        self.port_number = self._port.getHost().port
        return self.port_number

    @property
    def url(self) -> str:
        """``host:port`` as a show file's ``host`` option takes it."""
        host = f"[{self._interface}]" if ":" in self._interface else self._interface
        return f"{host}:{self.port_number}"

    def stop(self) -> Deferred[None]:
        """Stop listening, drop every connection, cancel all timers."""
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for session in self.sessions.values():
            if session.expiry is not None and session.expiry.active():
                session.expiry.cancel()
        self.sessions.clear()
        waits: list[Deferred[Any]] = [self._drop_all()]
        if self._port is not None:
            port, self._port = self._port, None
            waits.append(maybeDeferred(port.stopListening))
        return DeferredList(waits).addCallback(lambda _: None)

    def _drop_all(self) -> Deferred[None]:
        waits = []
        for connection in list(self.connections):
            lost: Deferred[None] = Deferred()
            self._lost.setdefault(connection, []).append(lost)
            waits.append(lost)
            connection.dropConnection(abort=True)
        if not waits:
            return succeed(None)
        return DeferredList(waits).addCallback(lambda _: None)

    def drop_all(self) -> Deferred[None]:
        """An abrupt close of every connection (sessions stay until they expire)."""
        return self._drop_all()

    def restart(self, down_for: float = 0.1) -> Deferred[int]:
        """A console restart: connections gone, sessions and faders reset, back after a while."""
        for session in self.sessions.values():
            if session.expiry is not None and session.expiry.active():
                session.expiry.cancel()
        self.sessions.clear()
        self._counter = 0
        for executor in self.executors.values():
            executor.fader, executor.running = 0.0, False
        port_number = self.port_number
        d = self.stop()
        d.addCallback(lambda _: deferLater(self.reactor, down_for))
        return d.addCallback(lambda _: self.listen(port_number, self._interface))

    def until(self, condition: Callable[[], bool]) -> Deferred[None]:
        """Fires once ``condition()`` holds (checked after each message and state change)."""
        d: Deferred[None] = Deferred()
        if condition():
            d.callback(None)
        else:
            self._waiters.append((condition, d))
        return d

    def _check_waiters(self) -> None:
        ready = [(c, d) for c, d in self._waiters if c()]
        for pair in ready:
            self._waiters.remove(pair)
            pair[1].callback(None)

    # -- model

    def executor(self, page: int, number: int) -> FakeExecutor:
        """The executor as numbered on the console (page 1, exec 5 or 101), created on demand."""
        key = (page - 1, number - 1)
        if key not in self.executors:
            self.executors[key] = FakeExecutor(f"Exec {page}.{number}")
        return self.executors[key]

    def requests(self, request_type: str) -> list[JSON]:
        return [m for m in self.received if _request_type(m) == request_type]

    # -- knobs

    def change_session(self) -> None:
        """Give every logged-in connection a new session id in mid-stream."""
        for session in list(self.sessions.values()):
            if session.connection is None:
                continue
            del self.sessions[session.id]
            self._counter += 1
            session.id = self._counter
            self.sessions[session.id] = session
            self._reply(session.connection, {"realtime": False, "session": session.id})

    def send_all(self, text: str | bytes, binary: bool = False) -> None:
        """A raw frame to every connection (for bad input tests)."""
        for connection in self.connections:
            payload = text.encode("utf-8") if isinstance(text, str) else text
            connection.sendMessage(payload, isBinary=binary)

    def ping_all(self) -> None:
        for connection in self.connections:
            connection.sendPing()

    # -- connections

    def _opened(self, connection: FakeConsoleProtocol) -> None:
        self.connections.append(connection)
        # spelled as the console does, with a space after the comma
        ready = '{"status":"server ready", "appType":"' + self.app_type + '"}'
        connection.sendMessage(ready.encode("utf-8"))

    def _closed(self, connection: FakeConsoleProtocol) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        if connection.session is not None:
            connection.session.connection = None
        for d in self._lost.pop(connection, []):
            d.callback(None)
        self._check_waiters()

    def _reply(self, connection: FakeConsoleProtocol, message: JSON) -> None:
        if not self.answering:
            return
        message.setdefault("worldIndex", 0)
        text = json.dumps(message, separators=(",", ":"))
        if self.duplicate_world_index:
            text = text[:-1] + ',"worldIndex":0}'
        if self.answer_delay > 0:
            timer = self.reactor.callLater(self.answer_delay, self._deliver, connection, text)
            self._timers = [t for t in self._timers if t.active()] + [timer]
        else:
            self._deliver(connection, text)

    def _deliver(self, connection: FakeConsoleProtocol, text: str) -> None:
        if connection in self.connections:
            connection.sendMessage(text.encode("utf-8"))

    def _message(self, connection: FakeConsoleProtocol, payload: bytes) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.bad_frames.append(payload)
            return
        self.received.append(message)
        try:
            self._handle(connection, message)
        finally:
            self._check_waiters()

    def _handle(self, connection: FakeConsoleProtocol, message: JSON) -> None:
        request = _request_type(message)
        number = message.get("session")
        session = connection.session
        if request is None:
            if number == 0:
                self._new_session(connection)
            elif session is not None and number == session.id:
                self._keepalive(session)
                self._reply(connection, {"realtime": False, "session": session.id})
            else:
                self.rejected.append(message)
            return
        if session is None or number != session.id or session.id not in self.sessions:
            self.rejected.append(message)
            return
        if request == "login":
            self._login(connection, session, message)
        elif request == "close":
            self._free(session)
        elif request == "getdata":
            self._reply(connection, {"realtime": False, "responseType": "getdata", "data": []})
        elif not session.logged_in:
            self.rejected.append(message)
        elif request == "playbacks":
            self._playbacks(connection, message)
        elif request == "playbacks_userInput":
            self._user_input(connection, message)
        elif request in ("keyname", "command"):
            self._reply(
                connection,
                {"prompt": "[Channel]>", "promptcolor": "#808080", "text": "", "realtime": False}
                | {"responseType": request},
            )
        else:
            self.rejected.append(message)

    # -- sessions

    def _new_session(self, connection: FakeConsoleProtocol) -> None:
        if not self.remote_enabled:
            self._reply(connection, {"realtime": False, "session": -1})
            return
        if len(self.sessions) >= self.max_sessions:
            self._reply(
                connection, {"realtime": False, "connections_limit_reached": "", "session": -2}
            )
            return
        if connection.session is not None:
            self._free(connection.session)
        self._counter += 1
        session = FakeSession(self._counter, connection)
        self.sessions[session.id] = session
        connection.session = session
        self._keepalive(session)
        self._reply(connection, {"realtime": False, "session": session.id, "forceLogin": True})

    def _keepalive(self, session: FakeSession) -> None:
        if session.expiry is not None and session.expiry.active():
            session.expiry.reset(self.keepalive_timeout)
        else:
            session.expiry = self.reactor.callLater(self.keepalive_timeout, self._expire, session)

    def _expire(self, session: FakeSession) -> None:
        self.sessions.pop(session.id, None)
        if session.connection is not None:
            session.connection.dropConnection(abort=True)
        self._check_waiters()

    def _free(self, session: FakeSession) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.closed_sessions.append(session.id)
        if session.expiry is not None and session.expiry.active():
            session.expiry.cancel()
        session.logged_in = False

    def _login(self, connection: FakeConsoleProtocol, session: FakeSession, message: JSON) -> None:
        user, hashed = message.get("username"), message.get("password")
        if self.app_type == DOT2:
            ok = user == "remote" and hashed == password_hash(self.password)
        else:
            ok = user in self.users and hashed == password_hash(self.users[user])
        session.logged_in = ok
        self.logins += ok
        prompt = " [Fixture]>" if self.app_type == DOT2 else "[Channel]>"
        self._reply(
            connection,
            {
                "prompt": prompt,
                "promptcolor": "#808080",
                "realtime": False,
                "responseType": "login",
                "result": ok,
            },
        )

    # -- executors

    def _user_input(self, connection: FakeConsoleProtocol, message: JSON) -> None:
        page_index, exec_index = message.get("pageIndex"), message.get("execIndex")
        if not isinstance(page_index, int) or not isinstance(exec_index, int):
            self.rejected.append(message)
            return
        executor = self.executor(page_index + 1, exec_index + 1)
        if message.get("type") == 1:
            value = message.get("faderValue")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                executor.fader = min(max(float(value), 0.0), 1.0)
        elif message.get("type") == 0 and message.get("buttonId") == 0:
            pressed = message.get("pressed") is True
            if exec_index < 100:
                executor.running = pressed  # a flash button
            elif pressed:
                executor.running = not executor.running  # a toggle button
        if self.acknowledge_input:
            self._reply(connection, {"realtime": False, "responseType": "playbacks_userInput"})

    def _playbacks(self, connection: FakeConsoleProtocol, message: JSON) -> None:
        try:
            page_index = int(message["pageIndex"])
            view = int(message["view"])
            groups = list(
                zip(message["startIndex"], message["itemsCount"], message["itemsType"], strict=True)
            )
        except (KeyError, TypeError, ValueError):
            self.rejected.append(message)
            return
        per_block = 5 if self.app_type == GMA2 else 1
        item_groups = []
        for start, count, items_type in groups:
            objects: list[JSON] = []
            index = start
            while index < start + count:
                executor = self.executors.get((page_index, index))
                objects.append(self._executor_object(page_index, index, executor, items_type, view))
                index += executor.width if executor is not None and executor.assigned else 1
            blocks = [objects[i : i + per_block] for i in range(0, len(objects), per_block)]
            item_groups.append({"itemsType": items_type, "cntPages": 10000, "items": blocks})
        self._reply(
            connection,
            {
                "realtime": False,
                "responseType": "playbacks",
                "responseSubType": view,
                "iPage": page_index + 1,
                "itemGroups": item_groups,
            },
        )

    def _executor_object(
        self,
        page_index: int,
        index: int,
        executor: FakeExecutor | None,
        items_type: int,
        view: int,
    ) -> JSON:
        assigned = executor is not None and executor.assigned
        obj: JSON = {
            "i": _colour(str(index + 1), "#C0C0C0" if assigned else "#000000"),
            "oType": _colour("Seq" if assigned else ""),
            "oI": _colour(str(index + 1) if assigned else ""),
            "tt": _colour(executor.label if executor is not None and assigned else ""),
            "bC": "#000000" if assigned else "#404040",
            "bdC": "#FFFF80" if assigned else "#3D3D3D",
            "cues": {},
            "combinedItems": executor.width if executor is not None and assigned else 1,
            "iExec": index,
        }
        if items_type == BUTTON_VIEW and view == BUTTON_VIEW:
            if executor is not None and assigned:
                obj["isRun"] = int(executor.running)
                fader = {"v": round(executor.fader, 3), "bC": "#808000"}
                obj["bottomButtons"] = {"items": [{"fader": fader, "n": _colour("Toggle")}]}
            return obj
        obj["isRun"] = int(executor.running) if executor is not None and assigned else 0
        width = obj["combinedItems"]
        obj["executorBlocks"] = [
            self._block(self.executors.get((page_index, index + k)) if k else executor, items_type)
            for k in range(width)
        ]
        return obj

    def _block(self, executor: FakeExecutor | None, items_type: int) -> JSON:
        assigned = executor is not None and executor.assigned
        label = "Go" if assigned else "Empty"
        button1 = {"id": 0, "t": "Flash" if assigned else "Empty", "s": False, "c": "#FFFF00"}
        block: JSON = {"button1": button1, "button2": {"id": 1, "t": label, "s": False}}
        if items_type == FADER_VIEW:
            if self.app_type == GMA2:
                block["button3"] = {"id": 2, "t": "Top" if assigned else "Empty", "s": False}
            value = executor.fader if executor is not None and assigned else 0.0
            block["fader"] = {"v": round(value, 3), "min": 0.0, "max": 1.0 if assigned else 0.0}
        return block


def _request_type(message: JSON) -> str | None:
    """MA's client always names the request; MIDIMonster's keyname messages do not."""
    request = message.get("requestType")
    if isinstance(request, str):
        return request
    if "keyname" in message:
        return "keyname"
    return None
