"""The public fake console, driven by a raw websocket client as other programs would drive it."""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from netmidi.codec.maweb import DOT2, password_hash
from netmidi.testing.fakeconsole import FakeConsole


class RawClient(WebSocketClientProtocol):  # type: ignore[misc]
    """Collects every frame; ``next()`` fires with the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Any] = []
        self.waiting: list[Deferred[Any]] = []
        self.closed: Deferred[None] = Deferred()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        if self.waiting:
            self.waiting.pop(0).callback(message)
        else:
            self.frames.append(message)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.closed.callback(None)

    def next(self) -> Deferred[Any]:
        if self.frames:
            return succeed(self.frames.pop(0))
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        return d.addTimeout(5, reactor)

    def send(self, message: dict[str, Any]) -> None:
        self.sendMessage(json.dumps(message).encode())


class FakeConsoleTests(TestCase):
    timeout = 20

    def console(self, **options: Any) -> FakeConsole:
        console = FakeConsole(reactor, **options)
        console.listen()
        self.addCleanup(console.stop)
        return console

    @inlineCallbacks
    def connect(self, console: FakeConsole, path: str = "/?ma=1") -> Any:
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{console.port_number}{path}")
        factory.protocol = RawClient
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", console.port_number)
        client = yield endpoint.connect(factory)
        self.addCleanup(lambda: client.dropConnection(abort=True) or client.closed)
        greeting = yield client.next()
        self.assertEqual(greeting["status"], "server ready")
        return client

    @inlineCallbacks
    def login(self, client: RawClient, user: str = "netmidi", password: str = "secret") -> Any:
        client.send({"session": 0})
        session = yield client.next()
        self.assertTrue(session["forceLogin"])
        client.send(
            {
                "requestType": "login",
                "username": user,
                "password": password_hash(password),
                "session": session["session"],
            }
        )
        result = yield client.next()
        return session["session"], result["result"]

    @inlineCallbacks
    def test_session_login_and_limit(self) -> Any:
        """Ids count up across connections; a wrong password fails; a fourth session is -2."""
        console = self.console()
        clients = []
        for n in range(3):
            client = yield self.connect(console, "/" if n else "/?ma=1")
            session, ok = yield self.login(client, password="secret" if n else "nope")
            self.assertEqual((session, ok), (n + 1, n > 0))
            clients.append(client)
        fourth = yield self.connect(console)
        fourth.send({"session": 0})
        refused = yield fourth.next()
        self.assertEqual(refused["session"], -2)
        self.assertIn("connections_limit_reached", refused)
        clients[1].send({"requestType": "close", "session": 2})
        yield deferLater(reactor, 0.05)
        fourth.send({"session": 0})
        self.assertEqual((yield fourth.next())["session"], 4)
        self.assertEqual(console.paths[:2], ["/?ma=1", "/"])

    @inlineCallbacks
    def test_requests_before_login_are_ignored(self) -> Any:
        """Before login only getdata, close and keepalives are served."""
        console = self.console()
        client = yield self.connect(console)
        client.send({"session": 0})
        yield client.next()
        client.send({"requestType": "playbacks_userInput", "session": 1, "execIndex": 0,
                     "pageIndex": 0, "faderValue": 1.0, "type": 1})  # fmt: skip
        client.send({"session": 1})
        self.assertEqual((yield client.next())["session"], 1)
        self.assertEqual(len(console.rejected), 1)
        self.assertEqual(console.executor(1, 1).fader, 0.0)

    @inlineCallbacks
    def test_playbacks_and_input(self) -> Any:
        """Writes change the model; answers come in blocks of 5 with 1-based iPage."""
        console = self.console()
        client = yield self.connect(console)
        yield self.login(client)
        client.send({"requestType": "playbacks_userInput", "session": 1, "execIndex": 6,
                     "pageIndex": 1, "faderValue": 0.5, "type": 1})  # fmt: skip
        yield client.next()
        client.send({"keyname": "CLEAR", "value": 1, "session": 1})  # MIDIMonster's form
        self.assertEqual((yield client.next())["responseType"], "keyname")
        client.send({"requestType": "playbacks", "session": 1, "startIndex": [5],
                     "itemsCount": [10], "pageIndex": 1, "itemsType": [2], "view": 2})  # fmt: skip
        answer = yield client.next()
        self.assertEqual((answer["iPage"], answer["responseSubType"]), (2, 2))
        blocks = answer["itemGroups"][0]["items"]
        self.assertEqual([len(b) for b in blocks], [5, 5])
        self.assertEqual(blocks[0][1]["iExec"], 6)
        self.assertEqual(blocks[0][1]["executorBlocks"][0]["fader"]["v"], 0.5)
        self.assertEqual(blocks[0][0]["executorBlocks"][0]["fader"]["max"], 0.0)  # empty

    @inlineCallbacks
    def test_dot2(self) -> Any:
        """dot2: user 'remote' only; one executor per block; button rows in the fader view."""
        console = self.console(app_type=DOT2, password="pw")
        client = yield self.connect(console)
        _, ok = yield self.login(client, user="admin", password="pw")
        self.assertFalse(ok)
        client = yield self.connect(console)
        _, ok = yield self.login(client, user="remote", password="pw")
        self.assertTrue(ok)
        console.executor(1, 101).running = True
        poll = {"requestType": "playbacks", "session": 2, "startIndex": [0, 100],
                "itemsCount": [2, 2], "pageIndex": 0, "itemsType": [2, 3], "view": 2}  # fmt: skip
        client.send(poll)
        answer = yield client.next()
        groups = answer["itemGroups"]
        self.assertEqual([len(b) for b in groups[0]["items"]], [1, 1])
        self.assertEqual(groups[1]["items"][0][0]["isRun"], 1)
        self.assertIn("button1", groups[1]["items"][0][0]["executorBlocks"][0])

    @inlineCallbacks
    def test_expiry_and_disabled(self) -> Any:
        """No keepalive: the session expires and the socket is dropped; disabled remote: -1."""
        console = self.console(keepalive_timeout=0.2)
        client = yield self.connect(console)
        yield self.login(client)
        yield client.closed
        self.assertEqual(console.sessions, {})
        console.remote_enabled = False
        client = yield self.connect(console)
        client.send({"session": 0})
        self.assertEqual((yield client.next())["session"], -1)
