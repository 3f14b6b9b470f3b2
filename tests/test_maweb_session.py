"""The sans-IO web remote session, driven message by message with explicit times."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec import maweb
from netmidi.codec.maweb import DOT2, GMA2, KEYS
from netmidi.session.maweb import (
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

HASH = maweb.password_hash("secret")
FADER1 = Executor(1, 1, "fader")
FLASH1 = Executor(1, 1, "flash")
BUTTON101 = Executor(1, 101, "button")


def answer(page: int, execs: dict[int, tuple[float, int]]) -> str:
    """A playbacks answer with (fader, isRun) per 0-based executor index."""
    items = [
        [{"iExec": i, "isRun": run, "executorBlocks": [{"fader": {"v": round(v, 3)}}]}]
        for i, (v, run) in sorted(execs.items())
    ]
    return json.dumps(
        {"responseType": "playbacks", "iPage": page, "itemGroups": [{"items": items}]}
    )


class Driver:
    """A session plus the frames it sent, as parsed JSON."""

    def __init__(
        self,
        inputs: tuple[Control, ...] = (),
        app_type: str = GMA2,
        cmdline: str = "remote",
        timing: Timing | None = None,
        state: RemoteState | None = None,
    ) -> None:
        self.state = state or RemoteState(inputs, cmdline)
        self.timing = timing or Timing()
        self.session = ClientSession(self.state, Credentials("netmidi", HASH), self.timing, 0.0)
        self.app_type = app_type
        self.sent: list[dict[str, Any]] = []
        self.events: list[tuple[Executor, float]] = []
        self.reactions: list[Reaction] = []

    def take(self, reaction: Reaction) -> Reaction:
        self.sent.extend(json.loads(frame) for frame in reaction.send)
        self.events.extend(reaction.events)
        self.reactions.append(reaction)
        return reaction

    def feed(self, message: str | dict[str, Any], now: float) -> Reaction:
        text = message if isinstance(message, str) else json.dumps(message)
        return self.take(self.session.received(text, now))

    def tick(self, now: float) -> Reaction:
        return self.take(self.session.tick(now))

    def output(self, control: Control, value: float, now: float) -> Reaction:
        if not self.state.record(control, value):
            return Reaction()
        return self.take(self.session.output(control, value, now))

    def login(self, now: float = 0.0, session: int = 1) -> None:
        self.feed({"status": "server ready", "appType": self.app_type}, now)
        self.feed({"realtime": False, "session": session, "forceLogin": True}, now)
        self.feed({"responseType": "login", "result": True}, now)

    def polls(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("requestType") == "playbacks"]

    def inputs(self) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("requestType") == "playbacks_userInput"]


class LoginTests(SynchronousTestCase):
    def test_gma2_login(self) -> None:
        """server ready -> session 0 -> forced login with user and MD5 -> logged in."""
        d = Driver()
        d.feed('{"status":"server ready", "appType":"gma2"}', 0.0)
        self.assertEqual(d.sent, [{"session": 0}])
        d.feed({"realtime": False, "session": 7, "forceLogin": True, "worldIndex": 0}, 0.1)
        self.assertEqual(
            d.sent[-1],
            {
                "requestType": "login",
                "username": "netmidi",
                "password": HASH,
                "session": 7,
                "maxRequests": 10,
            },
        )
        self.assertFalse(d.session.logged_in)
        reaction = d.feed({"responseType": "login", "result": True}, 0.2)
        self.assertTrue(reaction.logged_in)
        self.assertTrue(d.session.logged_in)
        self.assertEqual([n.text for n in reaction.notices], ["logged in to the gma2 web remote"])

    def test_dot2_user(self) -> None:
        """dot2 always logs in as 'remote'."""
        d = Driver(app_type=DOT2)
        d.login()
        self.assertEqual(d.sent[1]["username"], "remote")

    def test_refused(self) -> None:
        """A refused login drops the connection; goodbye frees the slot with close."""
        d = Driver()
        d.feed({"status": "server ready", "appType": "gma2"}, 0.0)
        d.feed({"session": 3, "forceLogin": True}, 0.0)
        reaction = d.feed({"responseType": "login", "result": False}, 0.0)
        self.assertEqual(reaction.drop, "login refused: wrong user or password")
        self.assertEqual(
            [json.loads(f) for f in d.session.goodbye()],
            [{"requestType": "close", "session": 3, "maxRequests": 0}],
        )

    def test_no_goodbye_without_session(self) -> None:
        """Nothing to log out from before a session id was given."""
        self.assertEqual(Driver().session.goodbye(), [])

    def test_error_sessions(self) -> None:
        """session -1 (remote disabled) and -2 (limit) end the connection with a clear reason."""
        d = Driver()
        d.feed({"status": "server ready", "appType": "gma2"}, 0.0)
        reaction = d.feed({"realtime": False, "session": -1}, 0.0)
        self.assertIn("web remote disabled", reaction.drop or "")
        d = Driver()
        d.feed({"status": "server ready", "appType": "gma2"}, 0.0)
        reaction = d.feed({"connections_limit_reached": "", "session": -2}, 0.0)
        self.assertIn("connection limit reached", reaction.drop or "")

    def test_unsupported_console(self) -> None:
        """A grandMA3 (or anything else) is refused by name."""
        reaction = Driver().feed({"status": "server ready", "appType": "gma3"}, 0.0)
        self.assertIn("'gma3'", reaction.drop or "")

    def test_session_change(self) -> None:
        """A new session id in mid-stream is adopted for every later request."""
        d = Driver()
        d.login()
        reaction = d.feed({"realtime": False, "session": 9}, 1.0)
        self.assertEqual([n.text for n in reaction.notices], ["session id changed from 1 to 9"])
        d.output(FADER1, 0.5, 2.0)
        self.assertEqual(d.inputs()[-1]["session"], 9)
        d.tick(20.0)
        self.assertIn({"session": 9}, d.sent)

    def test_session_zero_and_forced_relogin(self) -> None:
        """session 0 asks for a new session; a later forceLogin logs in again."""
        d = Driver()
        d.login()
        d.feed({"realtime": False, "session": 0}, 1.0)
        self.assertEqual(d.sent[-1], {"session": 0})
        self.assertFalse(d.session.logged_in)
        d.feed({"session": 4, "forceLogin": True}, 1.1)
        self.assertEqual(d.sent[-1]["requestType"], "login")
        self.assertEqual(d.sent[-1]["session"], 4)

    def test_answer_timeouts(self) -> None:
        """No greeting, or no login answer, within the timeout drops the connection."""
        d = Driver()
        self.assertEqual(d.session.wakeup(), 5.0)
        self.assertIsNone(d.tick(4.9).drop)
        self.assertIn("server ready", d.tick(5.0).drop or "")
        d = Driver()
        d.feed({"status": "server ready", "appType": "gma2"}, 0.0)
        d.feed({"session": 1, "forceLogin": True}, 1.0)
        self.assertIn("(login)", d.tick(6.0).drop or "")


class KeepaliveTests(SynchronousTestCase):
    def test_every_ten_seconds(self) -> None:
        """The bare session message goes out every 10 s from the session id on."""
        d = Driver()
        d.login(now=1.0)
        self.assertEqual(d.session.wakeup(), 11.0)
        d.tick(10.9)
        self.assertNotIn({"session": 1}, d.sent)
        d.tick(11.0)
        self.assertEqual(d.sent[-1], {"session": 1})
        self.assertEqual(d.session.wakeup(), 21.0)


class PollTests(SynchronousTestCase):
    def test_cycle(self) -> None:
        """One request in flight; the next view right after the answer; cycles at the interval."""
        d = Driver(inputs=(FADER1, BUTTON101), timing=Timing(poll_interval=0.05))
        d.login()
        self.assertEqual(len(d.polls()), 1)
        self.assertEqual(d.polls()[0]["view"], 2)
        d.feed(answer(1, {0: (0.0, 0)}), 0.01)
        self.assertEqual(len(d.polls()), 2)
        self.assertEqual(d.polls()[1]["startIndex"], [100])
        d.feed(answer(1, {100: (0.0, 0)}), 0.02)
        self.assertEqual(len(d.polls()), 2)
        self.assertEqual(d.session.wakeup(), 0.05)
        d.tick(0.05)
        self.assertEqual(len(d.polls()), 3)

    def test_interval_zero(self) -> None:
        """interval 0: poll again as soon as the answer arrived."""
        d = Driver(inputs=(FADER1,), timing=Timing(poll_interval=0.0))
        d.login()
        d.feed(answer(1, {0: (0.0, 0)}), 0.01)
        self.assertEqual(len(d.polls()), 2)

    def test_changes_only(self) -> None:
        """The first answer reports everything (zeros too); later only changes."""
        d = Driver(inputs=(FADER1, FLASH1, BUTTON101), timing=Timing(poll_interval=0.0))
        d.login()
        d.feed(answer(1, {0: (0.0, 0), 1: (0.7, 1)}), 0.01)
        self.assertEqual(sorted(d.events, key=str), [(FADER1, 0.0), (FLASH1, 0.0)])
        d.feed(answer(1, {100: (1.0, 1)}), 0.02)
        self.assertEqual(d.events[-1], (BUTTON101, 1.0))
        del d.events[:]
        d.feed(answer(1, {0: (0.0, 0)}), 0.03)
        d.feed(answer(1, {100: (1.0, 1)}), 0.04)
        self.assertEqual(d.events, [])
        d.feed(answer(1, {0: (0.5, 1)}), 0.05)
        self.assertEqual(sorted(d.events, key=str), [(FADER1, 0.5), (FLASH1, 1.0)])

    def test_own_writes_are_not_echoed(self) -> None:
        """An answer to a poll sent before a fader write is stale; the write is not reported."""
        d = Driver(inputs=(FADER1,), timing=Timing(poll_interval=0.0))
        d.login()
        d.feed(answer(1, {0: (0.1, 0)}), 0.01)  # poll 2 now in flight
        d.output(FADER1, 0.8, 0.02)
        del d.events[:]
        d.feed(answer(1, {0: (0.1, 0)}), 0.03)  # poll 2: from before the write
        d.feed(answer(1, {0: (0.8, 0)}), 0.04)  # poll 3: the console has it
        self.assertEqual(d.events, [])
        d.feed(answer(1, {0: (0.3, 0)}), 0.05)  # someone moved it on the console
        self.assertEqual(d.events, [(FADER1, 0.3)])

    def test_unasked_answer(self) -> None:
        """An answer with no request in flight (a request asked again) is ignored."""
        d = Driver(inputs=(FADER1,))
        d.login()
        d.feed(answer(1, {0: (0.1, 0)}), 0.01)
        reaction = d.feed(answer(1, {0: (0.9, 0)}), 0.02)
        self.assertEqual((reaction.bad, reaction.events), ([], []))

    def test_session_change_reasks(self) -> None:
        """A poll in flight when the session id changes is asked again under the new id."""
        d = Driver(inputs=(FADER1,))
        d.login()
        d.feed({"realtime": False, "session": 5}, 0.01)
        self.assertEqual([m["session"] for m in d.polls()], [1, 5])
        d.feed(answer(1, {0: (0.1, 0)}), 0.02)
        self.assertEqual(d.events, [(FADER1, 0.1)])

    def test_poll_timeout(self) -> None:
        """A console that stops answering polls is dropped."""
        d = Driver(inputs=(FADER1,))
        d.login(now=1.0)
        self.assertIn("(playbacks)", d.tick(6.0).drop or "")

    def test_missing_executors_warned(self) -> None:
        """Executors the detected console lacks are named once (an expert warning)."""
        d = Driver(inputs=(Executor(1, 201, "button"),))
        reaction = d.feed({"status": "server ready", "appType": "gma2"}, 0.0)
        self.assertEqual([(n.text, n.expert) for n in reaction.notices],
                         [("a gma2 console has no page1.button201", True)])  # fmt: skip


class OutputTests(SynchronousTestCase):
    def test_fader(self) -> None:
        """A fader write carries 0-based page/exec indices and the session."""
        d = Driver()
        d.login()
        d.output(Executor(2, 5, "fader"), 0.25, 1.0)
        self.assertEqual(
            d.inputs(),
            [
                {
                    "requestType": "playbacks_userInput",
                    "execIndex": 4,
                    "pageIndex": 1,
                    "faderValue": 0.25,
                    "type": 1,
                    "session": 1,
                    "maxRequests": 0,
                }
            ],
        )

    def test_flood_is_paced_and_last_value_arrives(self) -> None:
        """1,000 values in a second to one fader: at most 50 writes, the last one last."""
        d = Driver()
        d.login()
        now = 1.0
        for n in range(1000):
            now = 1.0 + n / 1000
            while (wake := d.session.wakeup()) is not None and wake <= now:
                d.tick(wake)
            d.output(FADER1, n / 999, now)
        while (wake := d.session.wakeup()) is not None and wake < 3.0:
            d.tick(wake)
        writes = d.inputs()
        self.assertLessEqual(len(writes), 51)
        self.assertGreaterEqual(len(writes), 45)
        self.assertEqual(writes[-1]["faderValue"], 1.0)

    def test_pacing_widens_with_many_faders(self) -> None:
        """With several faders moving, each one is written less often."""
        d = Driver()
        d.login()
        faders = [Executor(1, n, "fader") for n in range(1, 11)]
        for step in range(200):
            now = 1.0 + step / 200
            while (wake := d.session.wakeup()) is not None and wake <= now:
                d.tick(wake)
            for fader in faders:
                d.output(fader, step / 199, now)
        per_fader = len(d.inputs()) / len(faders)
        self.assertLess(per_fader, 30)

    def test_same_value_not_resent(self) -> None:
        """Repeating a value the console already has sends nothing."""
        d = Driver()
        d.login()
        d.output(FADER1, 0.5, 1.0)
        d.output(FADER1, 0.5, 2.0)
        self.assertEqual(len(d.inputs()), 1)

    def test_outputs_resent_on_login(self) -> None:
        """A new connection's login re-sends the latest fader values; inputs report changes."""
        state = RemoteState((FADER1,), "remote")
        first = Driver(state=state, timing=Timing(poll_interval=0.0))
        first.login()
        first.feed(answer(1, {0: (0.0, 0)}), 0.01)
        first.output(Executor(1, 2, "fader"), 0.6, 0.5)
        second = Driver(state=state, timing=Timing(poll_interval=0.0))
        second.login(now=10.0, session=2)
        self.assertEqual([(m["execIndex"], m["faderValue"]) for m in second.inputs()], [(1, 0.6)])
        second.feed(answer(1, {0: (0.0, 0)}), 10.1)
        self.assertEqual(second.events, [])

    def test_buttons(self) -> None:
        """Press above 0.9, release below, once per change; button ids per console type."""
        d = Driver()
        d.login()
        for value in (0.5, 1.0, 0.95, 0.2):
            d.output(Executor(1, 3, "upper"), value, 1.0)
        self.assertEqual(
            [(m["buttonId"], m["pressed"], m["released"]) for m in d.inputs()],
            [(2, True, False), (2, False, True)],
        )
        d.output(Executor(1, 3, "lower"), 1.0, 1.0)
        d.output(Executor(1, 3, "flash"), 1.0, 1.0)
        d.output(Executor(1, 103, "button"), 1.0, 1.0)
        self.assertEqual(
            [(m["execIndex"], m["buttonId"]) for m in d.inputs()[2:]], [(2, 1), (2, 0), (102, 0)]
        )
        dot2 = Driver(app_type=DOT2)
        dot2.login()
        dot2.output(Executor(1, 3, "upper"), 1.0, 1.0)
        dot2.output(Executor(1, 3, "lower"), 1.0, 1.0)
        self.assertEqual([m["buttonId"] for m in dot2.inputs()], [0, 1])

    def keys(self, cmdline: str, app_type: str = GMA2, *names: str) -> list[dict[str, Any]]:
        d = Driver(cmdline=cmdline, app_type=app_type)
        d.login()
        before = len(d.sent)
        for name in names:
            d.output(CommandKey(KEYS[name]), 1.0, 1.0)
            d.output(CommandKey(KEYS[name]), 0.0, 1.0)
        return d.sent[before:]

    def test_remote_keys(self) -> None:
        """keyname press and release; MA sends only the release, SET only the press."""
        sent = self.keys("remote", GMA2, "CLEAR", "MA", "SET")
        self.assertEqual(
            [(m["keyname"], m["value"], m.get("autoSubmit")) for m in sent],
            [("CLEAR", 1, None), ("CLEAR", 0, None), ("MA", 0, None), ("SET", 1, True)],
        )

    def test_console_keys(self) -> None:
        """console mode: Lua hardkeys, press and release."""
        sent = self.keys("console", GMA2, "GO_PLUS")
        self.assertEqual(
            [m["command"] for m in sent],
            [
                "LUA 'gma.canbus.hardkey(11, true, false)'",
                "LUA 'gma.canbus.hardkey(11, false, false)'",
            ],
        )

    def test_downgrade(self) -> None:
        """downgrade: Lua where the key has a hardkey, keyname otherwise."""
        sent = self.keys("downgrade", GMA2, "BLACKOUT", "LABEL")
        self.assertEqual(
            [m.get("command", m.get("keyname")) for m in sent],
            [
                "LUA 'gma.canbus.hardkey(65, true, false)'",
                "LUA 'gma.canbus.hardkey(65, false, false)'",
                "LABEL",
                "LABEL",
            ],
        )

    def test_dot2_has_no_lua(self) -> None:
        """dot2 forces remote mode; a console-only key is reported, not sent."""
        d = Driver(cmdline="downgrade", app_type=DOT2)
        d.login()
        before = len(d.sent)
        d.output(CommandKey(KEYS["GO_PLUS"]), 1.0, 1.0)
        reaction = d.output(CommandKey(KEYS["BLACKOUT"]), 1.0, 1.0)
        self.assertEqual([m["keyname"] for m in d.sent[before:]], ["GO_PLUS"])
        self.assertIn("BLACKOUT cannot be sent", reaction.notices[0].text)


class BadInputTests(SynchronousTestCase):
    def test_counted(self) -> None:
        """Malformed frames, unknown response types and typeless messages are counted."""
        d = Driver()
        d.login()
        self.assertEqual(d.feed("{nope", 1.0).bad[0][:8], "not JSON")
        self.assertEqual(d.feed({"responseType": "x"}, 1.0).bad, ["unknown responseType 'x'"])
        self.assertEqual(d.feed({}, 1.0).bad, ["a message with neither responseType nor session"])
        self.assertEqual(d.feed({"responseType": "keyname", "text": ""}, 1.0).bad, [])
        self.assertTrue(d.session.logged_in)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.text(max_size=60)
            | st.sampled_from(
                [
                    '{"session":-1}',
                    '{"session":0}',
                    '{"session":3,"forceLogin":true}',
                    '{"responseType":"login","result":true}',
                    '{"responseType":"playbacks"}',
                    answer(1, {0: (0.5, 1)}),
                    '{"status":"server ready","appType":"dot2"}',
                ]
            ),
            max_size=12,
        )
    )
    def test_fuzz(self, frames: list[str]) -> None:  # fmt: skip
        """Any sequence of frames yields reactions, never an exception."""
        d = Driver(inputs=(FADER1, BUTTON101))
        d.login()
        for n, frame in enumerate(frames):
            d.feed(frame, 1.0 + n)
            d.tick(1.5 + n)


class FailoverTests(SynchronousTestCase):
    def test_one_host(self) -> None:
        """One host: every failure waits longer, up to the maximum; login resets it."""
        failover = Failover(1, Backoff(1.0, 2.0, 5.0))
        self.assertEqual([failover.failed() for _ in range(5)], [1.0, 2.0, 4.0, 5.0, 5.0])
        failover.logged_in()
        self.assertEqual(failover.failed(), 1.0)

    def test_hosts_in_turn(self) -> None:
        """Several hosts: the next one at once; the wait grows per failed round."""
        failover = Failover(3, Backoff(1.0, 2.0, 30.0))
        delays = []
        for _ in range(6):
            delays.append(failover.failed())
        self.assertEqual(delays, [0.0, 0.0, 1.0, 0.0, 0.0, 2.0])
        self.assertEqual(failover.host, 0)
        failover.failed()
        self.assertEqual(failover.host, 1)

    def test_dropped_keeps_host(self) -> None:
        """A working connection that drops retries its own host first."""
        failover = Failover(2, Backoff(0.5, 2.0, 30.0))
        failover.failed()
        failover.logged_in()
        self.assertEqual((failover.dropped(), failover.host), (0.5, 1))
        self.assertEqual((failover.failed(), failover.host), (0.0, 0))
