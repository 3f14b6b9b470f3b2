"""The maweb backend against the fake console over real websockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netmidi.backend import Instance
from netmidi.backends.maweb import MawebBackend, MawebInstance, parse_control
from netmidi.codec.maweb import DOT2, KEYS, password_hash
from netmidi.options import OptionError, parse_options
from netmidi.session.maweb import Backoff, CommandKey, Executor, Timing
from netmidi.testing.fakeconsole import FakeConsole
from netmidi.values import Value

PASSWORD = "s3cr3t-pw"
HASH = password_hash(PASSWORD)


def value(x: float) -> Value:
    return Value.from_normalised(x)


class Setup:
    """One backend with one instance, wired to a list of received events."""

    def __init__(
        self,
        hosts: list[str],
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        name: str = "ma",
        **options: Any,
    ) -> None:
        global_options, errors = parse_options(
            MawebBackend.all_global_options(),
            {"interval": options.pop("interval", 10), "quiet": options.pop("quiet", False)},
        )
        assert not errors, errors
        self.backend = MawebBackend(reactor, global_options)
        self.backend.timing = Timing(poll_interval=0.01, keepalive=0.3, answer_timeout=1.0)
        self.backend.backoff = Backoff(0.05, 2.0, 0.4)
        given = {"host": hosts, "user": "netmidi", "password": PASSWORD, **options}
        parsed, errors = parse_options(MawebBackend.instance_options, given)
        assert not errors, errors
        instance = self.backend.add_instance(name, parsed)
        assert isinstance(instance, MawebInstance)
        self.instance = instance
        self.inputs = {spec: instance.parse_channel(spec) for spec in inputs}
        self.outputs = {spec: instance.parse_channel(spec) for spec in outputs}
        instance.mapped(frozenset(self.inputs.values()), frozenset(self.outputs.values()))
        self.events: list[tuple[Any, Value]] = []
        instance.attach(self.sink)

    def sink(self, instance: Instance, events: Sequence[tuple[Any, Value]]) -> None:
        self.events.extend(events)

    def latest(self, spec: str) -> float | None:
        channel = self.inputs[spec]
        found = [v.normalised for c, v in self.events if c == channel]
        return found[-1] if found else None

    def send(self, spec: str, x: float) -> None:
        self.instance.send([(self.outputs[spec], value(x))])

    @property
    def client(self) -> Any:
        return self.instance.client

    def ready(self) -> bool:
        """The client has the login answer (the console counts the login before that)."""
        session = self.client.session
        return session is not None and bool(session.logged_in)


class MawebTestCase(TestCase):
    timeout = 30

    def console(self, **options: Any) -> FakeConsole:
        console = FakeConsole(reactor, users={"netmidi": PASSWORD}, **options)
        console.listen()
        self.addCleanup(console.stop)
        return console

    def setup(
        self, hosts: list[str], *args: Any, timing: Timing | None = None, **options: Any
    ) -> Setup:
        setup = Setup(hosts, *args, **options)
        if timing is not None:
            setup.backend.timing = timing
        setup.backend.startService()
        self.addCleanup(setup.backend.stopService)
        return setup

    @inlineCallbacks
    def wait(self, condition: Callable[[], bool], seconds: float = 5.0) -> Any:
        """Wait (in real time) until ``condition()`` holds."""
        for _ in range(int(seconds / 0.01)):
            if condition():
                return
            yield deferLater(reactor, 0.01)
        self.fail(f"timed out waiting for {condition}")

    def sleep(self, seconds: float) -> Deferred[None]:
        return deferLater(reactor, seconds)


class LoginTests(MawebTestCase):
    @inlineCallbacks
    def test_gma2(self) -> Any:
        """Login on a gma2 with the configured user; the client asked for /?ma=1."""
        console = self.console()
        self.setup([console.url])
        yield self.wait(lambda: console.logins == 1)
        self.assertEqual(console.paths, ["/?ma=1"])
        self.assertEqual(console.requests("login")[0]["username"], "netmidi")
        self.assertEqual(console.requests("login")[0]["password"], HASH)

    @inlineCallbacks
    def test_dot2(self) -> Any:
        """Login on a dot2 as 'remote' with the web remote password."""
        console = self.console(app_type=DOT2, password=PASSWORD)
        self.setup([console.url])
        yield self.wait(lambda: console.logins == 1)
        self.assertEqual(console.requests("login")[0]["username"], "remote")

    @inlineCallbacks
    def test_wrong_password(self) -> Any:
        """A clear log line, retries with growing waits, the slot freed, no hash logged."""
        console = self.console(max_sessions=1)
        with capturedLogs() as events:
            setup = self.setup([console.url], password="Wr0ng-pass")
            yield self.wait(lambda: len(console.requests("login")) >= 4)
            yield setup.backend.stopService()
        texts = [formatEvent(e) for e in events]
        self.assertTrue(any("login refused: wrong user or password" in t for t in texts))
        self.assertEqual(console.logins, 0)
        self.assertEqual(len(console.closed_sessions), len(console.requests("login")))
        self.assertFalse(any(m.get("session") == -2 for m in console.received))
        times = [m for m in texts if "trying again in" in m]
        self.assertTrue(any("in 0.1 s" in t for t in times) and any("in 0.2 s" in t for t in times))
        for event, text in zip(events, texts, strict=True):
            for secret in (PASSWORD, "Wr0ng-pass", password_hash("Wr0ng-pass"), HASH):
                self.assertNotIn(secret, text)
                self.assertNotIn(secret, repr(event))

    @inlineCallbacks
    def test_no_credentials_logged_on_success(self) -> Any:
        """A normal login logs neither the password nor its hash."""
        console = self.console()
        with capturedLogs() as events:
            setup = self.setup([console.url], ["page1.fader1"])
            yield self.wait(lambda: setup.latest("page1.fader1") is not None)
            yield setup.backend.stopService()
        self.assertTrue(any("logged in" in formatEvent(e) for e in events))
        for event in events:
            self.assertNotIn(HASH, repr(event))
            self.assertNotIn(PASSWORD, repr(event))

    @inlineCallbacks
    def test_remote_disabled(self) -> Any:
        """session -1: logged as a disabled web remote, retried until it is enabled."""
        console = self.console()
        console.remote_enabled = False
        with capturedLogs() as events:
            self.setup([console.url])
            yield self.wait(lambda: any(m == {"session": 0} for m in console.received))
            yield self.sleep(0.1)
            console.remote_enabled = True
            yield self.wait(lambda: console.logins == 1)
        self.assertTrue(any("web remote disabled" in formatEvent(e) for e in events))

    @inlineCallbacks
    def test_connection_limit(self) -> Any:
        """A full console (-2) is retried; the slot another instance frees on stop is taken."""
        console = self.console(max_sessions=1)
        first = self.setup([console.url], name="first")
        yield self.wait(lambda: console.logins == 1)
        with capturedLogs() as events:
            second = self.setup([console.url], name="second")
            yield self.wait(lambda: any(m.get("session") == 0 for m in console.received[2:]))
            yield self.sleep(0.2)
            self.assertEqual(console.logins, 1)
            yield first.backend.stopService()
            yield self.wait(lambda: console.logins == 2)
        self.assertTrue(any("connection limit reached" in formatEvent(e) for e in events))
        self.assertTrue(second.client.session.logged_in)

    @inlineCallbacks
    def test_ipv6(self) -> Any:
        """A console on ::1, written [::1]:port."""
        console = FakeConsole(reactor, users={"netmidi": PASSWORD})
        console.listen(interface="::1")
        self.addCleanup(console.stop)
        self.assertTrue(console.url.startswith("[::1]:"))
        self.setup([console.url])
        yield self.wait(lambda: console.logins == 1)

    @inlineCallbacks
    def test_duplicate_world_index(self) -> Any:
        """Session messages with a duplicate worldIndex key (seen on consoles) are accepted."""
        console = self.console()
        console.duplicate_world_index = True
        setup = self.setup([console.url])
        yield self.wait(setup.ready)

    @inlineCallbacks
    def test_session_expiry(self) -> Any:
        """A console that expires the session (keepalive too rare) drops it; netmidi returns."""
        console = self.console(keepalive_timeout=0.5)
        self.setup([console.url], timing=Timing(keepalive=5.0, answer_timeout=1.0))
        yield self.wait(lambda: console.logins == 2)
        self.assertEqual(list(console.sessions), [2])

    @inlineCallbacks
    def test_close_on_shutdown(self) -> Any:
        """Stopping logs out (close with the session id) and closes the connection."""
        console = self.console()
        setup = self.setup([console.url])
        yield self.wait(lambda: console.logins == 1)
        yield setup.backend.stopService()
        self.assertEqual(console.requests("close"), [{"requestType": "close", "session": 1,
                                                      "maxRequests": 0}])  # fmt: skip
        yield self.wait(lambda: not console.connections)
        self.assertEqual(console.sessions, {})

    @inlineCallbacks
    def test_keepalive_holds_session(self) -> Any:
        """The bare keepalive keeps the session past the console's expiry time."""
        console = self.console(keepalive_timeout=0.6)
        setup = self.setup([console.url])
        yield self.wait(lambda: console.logins == 1)
        yield self.sleep(1.5)
        self.assertEqual((console.logins, list(console.sessions)), (1, [1]))
        self.assertIn({"session": 1}, console.received)
        self.assertTrue(setup.client.session.logged_in)

    @inlineCallbacks
    def test_session_change(self) -> Any:
        """A session id change in mid-stream is followed: no request is refused after it."""
        console = self.console()
        setup = self.setup([console.url], ["page1.fader1"], ["page1.fader2"])
        yield self.wait(setup.ready)
        console.change_session()
        yield self.sleep(0.1)
        setup.send("page1.fader2", 0.5)
        yield self.wait(lambda: console.executor(1, 2).fader == 0.5)
        after = [m for m in console.rejected if m.get("session") == 1]
        yield self.sleep(0.1)
        self.assertEqual([m for m in console.rejected if m.get("session") == 1], after)
        self.assertEqual(console.requests("playbacks")[-1]["session"], 2)


class ChannelTests(MawebTestCase):
    @inlineCallbacks
    def test_every_channel_type_out(self) -> Any:
        """Faders, the three fader-executor buttons, button executors and keys reach the console."""
        console = self.console()
        specs = ["page2.fader5", "page1.upper3", "page1.lower3", "page1.flash3",
                 "page1.button103", "CLEAR", "SET", "MA"]  # fmt: skip
        setup = self.setup([console.url], (), specs)
        yield self.wait(setup.ready)
        for spec in specs:
            setup.send(spec, 1.0)
        yield self.wait(lambda: console.executor(1, 103).running)
        self.assertTrue(console.executor(1, 3).running)  # flash held
        for spec in specs:
            setup.send(spec, 0.0)
        # the fader's 0 may wait for its pacing interval
        yield self.wait(lambda: not console.executor(1, 3).running)
        yield self.wait(lambda: console.executor(2, 5).fader == 0.0)
        buttons = [(m["execIndex"], m["buttonId"], m["pressed"]) for m in
                   console.requests("playbacks_userInput") if m["type"] == 0]  # fmt: skip
        self.assertEqual(
            buttons,
            [(2, 2, True), (2, 1, True), (2, 0, True), (102, 0, True),
             (2, 2, False), (2, 1, False), (2, 0, False), (102, 0, False)],
        )  # fmt: skip
        faders = [m["faderValue"] for m in console.requests("playbacks_userInput") if m["type"]]
        self.assertEqual(faders, [1.0, 0.0])
        self.assertTrue(console.executor(1, 103).running)  # a toggle stays on
        keys = [(m["keyname"], m["value"]) for m in console.requests("keyname")]
        self.assertEqual(keys, [("CLEAR", 1), ("SET", 1), ("CLEAR", 0), ("MA", 0)])

    @inlineCallbacks
    def test_console_keys(self) -> Any:
        """cmdline console sends Lua hardkeys."""
        console = self.console()
        setup = self.setup([console.url], (), ["GO_PLUS", "SETUP"], cmdline="console")
        yield self.wait(setup.ready)
        setup.send("GO_PLUS", 1.0)
        setup.send("SETUP", 1.0)
        yield self.wait(lambda: len(console.requests("command")) == 2)
        self.assertEqual(
            [m["command"] for m in console.requests("command")],
            [
                "LUA 'gma.canbus.hardkey(11, true, false)'",
                "LUA 'gma.canbus.hardkey(118, true, false)'",
            ],
        )

    @inlineCallbacks
    def test_input_polling(self) -> Any:
        """Mapped faders and run states become events: initial values, then changes only."""
        console = self.console()
        console.executor(1, 1).fader = 0.25
        console.executor(1, 2).running = True
        console.executor(3, 101).running = True
        setup = self.setup([console.url], ["page1.fader1", "page1.flash2", "page3.button101",
                                           "page1.fader7"])  # fmt: skip
        yield self.wait(lambda: len(setup.events) == 4)
        self.assertEqual(setup.latest("page1.fader1"), 0.25)
        self.assertEqual(setup.latest("page1.fader7"), 0.0)
        self.assertEqual((setup.latest("page1.flash2"), setup.latest("page3.button101")), (1, 1))
        console.executor(1, 1).fader = 0.5
        console.executor(3, 101).running = False
        yield self.wait(lambda: len(setup.events) == 6)
        self.assertEqual(setup.latest("page1.fader1"), 0.5)
        self.assertEqual(setup.latest("page3.button101"), 0.0)
        yield self.sleep(0.1)
        self.assertEqual(len(setup.events), 6)
        polls = {(m["pageIndex"], m["view"], m["startIndex"][0], m["itemsCount"][0])
                 for m in console.requests("playbacks")}  # fmt: skip
        self.assertEqual(polls, {(0, 2, 0, 10), (2, 3, 100, 5)})

    @inlineCallbacks
    def test_dot2_input(self) -> Any:
        """dot2: executors one per block; the fader view carries the 1xx/2xx button rows."""
        console = self.console(app_type=DOT2, password=PASSWORD)
        console.executor(1, 3).fader = 0.75
        console.executor(1, 203).running = True
        console.executor(1, 805).running = True
        setup = self.setup([console.url], ["page1.fader3", "page1.button203", "page1.button805"])
        yield self.wait(lambda: len(setup.events) == 3)
        self.assertEqual(setup.latest("page1.fader3"), 0.75)
        self.assertEqual(setup.latest("page1.button203"), 1.0)
        self.assertEqual(setup.latest("page1.button805"), 1.0)

    @inlineCallbacks
    def test_flood(self) -> Any:
        """1,000 events/s to one fader: a bounded rate at the console, the last value arrives."""
        console = self.console()
        setup = self.setup([console.url], (), ["page1.fader1"])
        yield self.wait(setup.ready)
        start = reactor.seconds()
        for step in range(100):
            for n in range(10):
                setup.send("page1.fader1", (step * 10 + n) / 999)
            yield deferLater(reactor, max(0.0, start + (step + 1) / 100 - reactor.seconds()))
        elapsed = reactor.seconds() - start
        yield self.wait(lambda: console.executor(1, 1).fader == 1.0)
        writes = len(console.requests("playbacks_userInput"))
        self.assertLessEqual(writes, 50 * (elapsed + 0.1) + 1)


class RecoveryTests(MawebTestCase):
    @inlineCallbacks
    def test_console_restart(self) -> Any:
        """After a restart the client logs in again and re-sends the latest fader values."""
        console = self.console()
        setup = self.setup([console.url], ["page1.fader1"], ["page1.fader2"])
        yield self.wait(setup.ready)
        setup.send("page1.fader2", 0.7)
        yield self.wait(lambda: console.executor(1, 2).fader == 0.7)
        console.executor(1, 1).fader = 0.4
        yield self.wait(lambda: setup.latest("page1.fader1") == 0.4)
        yield console.restart(down_for=0.3)
        self.assertEqual(console.executor(1, 2).fader, 0.0)
        yield self.wait(lambda: console.logins == 2 and console.executor(1, 2).fader == 0.7)
        yield self.wait(lambda: setup.latest("page1.fader1") == 0.0)  # input re-read

    @inlineCallbacks
    def test_output_before_start(self) -> Any:
        """A fader value routed before the backend started reaches the console at login."""
        console = self.console()
        setup = Setup([console.url], (), ["page1.fader4"])
        setup.send("page1.fader4", 0.35)
        setup.backend.startService()
        self.addCleanup(setup.backend.stopService)
        yield self.wait(lambda: console.executor(1, 4).fader == 0.35)

    @inlineCallbacks
    def test_failover(self) -> Any:
        """The first host refuses; the second is used, and the log says so."""
        console = self.console()
        dead = FakeConsole(reactor)
        dead_port = dead.listen()
        yield dead.stop()
        with capturedLogs() as events:
            self.setup([f"127.0.0.1:{dead_port}", console.url])
            yield self.wait(lambda: console.logins == 1)
        texts = [formatEvent(e) for e in events]
        self.assertTrue(any(f"trying again to {console.url} in 0 s" in t for t in texts), texts)

    @inlineCallbacks
    def test_console_stops_answering(self) -> Any:
        """Polls that go unanswered recycle the connection."""
        console = self.console()
        setup = self.setup([console.url], ["page1.fader1"])
        yield self.wait(lambda: setup.latest("page1.fader1") is not None)
        console.answering = False
        with capturedLogs() as events:
            yield self.wait(lambda: sum(m == {"session": 0} for m in console.received) >= 2)
            console.answering = True
            yield self.wait(lambda: console.logins == 2)
        self.assertTrue(any("did not answer (playbacks)" in formatEvent(e) for e in events))

    @inlineCallbacks
    def test_slow_answers(self) -> Any:
        """Answers slower than the poll interval slow the polling down, nothing else."""
        console = self.console()
        console.answer_delay = 0.1
        setup = self.setup([console.url], ["page1.fader1"])
        yield self.wait(lambda: setup.latest("page1.fader1") is not None)
        console.executor(1, 1).fader = 0.9
        yield self.wait(lambda: setup.latest("page1.fader1") == 0.9)
        self.assertEqual(console.logins, 1)

    @inlineCallbacks
    def test_bad_frames(self) -> Any:
        """Garbage, unknown types, binary and ping frames are counted; the session goes on."""
        console = self.console()
        setup = self.setup([console.url], ["page1.fader1"])
        yield self.wait(lambda: setup.latest("page1.fader1") is not None)
        console.send_all("{garbage")
        console.send_all('{"responseType":"surprise"}')
        console.send_all(b"\x00\x01", binary=True)
        console.ping_all()
        console.executor(1, 1).fader = 0.3
        yield self.wait(lambda: setup.latest("page1.fader1") == 0.3)
        self.assertEqual(setup.client.bad.total, 3)
        self.assertEqual(console.logins, 1)

    @inlineCallbacks
    def test_silent_server(self) -> Any:
        """A server that never answers the upgrade is retried; stopping mid-handshake is clean."""
        accepted: list[Protocol] = []

        class Silent(Protocol):
            def connectionMade(self) -> None:
                accepted.append(self)

        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        setup = self.setup([f"127.0.0.1:{port.getHost().port}"])
        yield self.wait(lambda: len(accepted) >= 2)
        yield self.wait(lambda: setup.client._protocol is not None)
        yield setup.backend.stopService()
        yield self.wait(lambda: all(not p.transport.connected for p in accepted))

    @inlineCallbacks
    def test_huge_frame(self) -> Any:
        """A frame over the size limit recycles the connection and is counted."""
        console = self.console()
        setup = self.setup([console.url])
        yield self.wait(lambda: console.logins == 1)
        console.send_all('{"x":"' + "a" * (5 * 1024 * 1024) + '"}')
        yield self.wait(lambda: console.logins == 2)
        self.assertEqual(setup.client.bad.counts["a message over the size limit"], 1)


class ParseTests(SynchronousTestCase):
    def test_executors(self) -> None:
        """MIDIMonster's channel syntax; dot2 numbers are accepted too."""
        self.assertEqual(parse_control("page1.fader5", "remote"), Executor(1, 5, "fader"))
        self.assertEqual(parse_control("page2.button103", "remote"), Executor(2, 103, "button"))
        self.assertEqual(parse_control("page1.button807", "remote"), Executor(1, 807, "button"))
        self.assertEqual(str(Executor(3, 2, "upper")), "page3.upper2")

    def test_keys(self) -> None:
        """Keys by name, checked against the cmdline mode."""
        self.assertEqual(parse_control("GO_PLUS", "remote"), CommandKey(KEYS["GO_PLUS"]))
        self.assertEqual(parse_control("BLACKOUT", "console"), CommandKey(KEYS["BLACKOUT"]))
        self.assertEqual(parse_control("LABEL", "downgrade"), CommandKey(KEYS["LABEL"]))

    def test_errors(self) -> None:
        """Each bad spec says what was expected."""
        for spec, cmdline, words in [
            ("page1.fader91", "remote", "fader on a fader executor 1-90"),
            ("page1.upper101", "remote", "upper on a fader executor"),
            ("page1.button191", "remote", "expected an executor 1-90 or 101-190"),
            ("page0.fader1", "remote", "page from 1"),
            ("page1.knob1", "remote", "a command key name"),
            ("go_plus", "remote", "a command key name"),
            ("BLACKOUT", "remote", "use cmdline console or downgrade"),
            ("LABEL", "console", "use cmdline remote"),
        ]:
            with self.assertRaises(OptionError) as caught:
                parse_control(spec, cmdline)
            self.assertIn(words, str(caught.exception))

    def test_quiet(self) -> None:
        """Mapped inputs the remote never reports are warned about, unless quiet."""
        for quiet, expected in ((False, 1), (True, 0)):
            with capturedLogs() as events:
                Setup(["127.0.0.1:9"], ["page1.upper1", "GO_PLUS", "page1.fader1"], quiet=quiet)
            warnings = [formatEvent(e) for e in events if "never reports" in formatEvent(e)]
            self.assertEqual(len(warnings), expected)
            if warnings:
                self.assertIn("GO_PLUS, page1.upper1", warnings[0])

    def test_options(self) -> None:
        """Hosts default to port 80; several hosts make a failover list."""
        parsed, errors = parse_options(
            MawebBackend.instance_options, {"host": ["10.0.0.1", "10.0.0.2 8080"]}
        )
        self.assertEqual(errors, {})
        self.assertEqual([str(h) for h in parsed["host"]], ["10.0.0.1:80", "10.0.0.2:8080"])
        self.assertEqual((parsed["user"], parsed["password"], parsed["cmdline"]),
                         ("remote", "", "remote"))  # fmt: skip
        _, errors = parse_options(MawebBackend.instance_options, {"cmdline": "lua"})
        self.assertIn("expected one of: remote, console, downgrade", errors["cmdline"])
        self.assertIn("required", errors["host"])
