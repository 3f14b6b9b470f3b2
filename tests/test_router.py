"""Routing semantics: fan-out, fan-in, batching per target, loops, and a faulty backend."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from netmidi.backend import Event, Instance, Route
from netmidi.router import Router
from netmidi.service import MAX_HOPS, NetmidiService
from netmidi.show import Show, load_show
from netmidi.values import Value
from tests.showfiles import write_show


def v(x: float) -> Value:
    return Value.from_normalised(x, 8)


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        show = load_show(
            write_show(
                self.mktemp(),
                """
                instances:
                  a: {backend: loopback}
                  b: {backend: loopback}
                  c: {backend: loopback}
                """,
            ),
            Clock(),
        )
        self.a, self.b, self.c = (show.instances[n] for n in "abc")

    def test_one_to_many_and_batching(self) -> None:
        router = Router(
            [
                Route(self.a, "x", self.b, "1"),
                Route(self.a, "x", self.c, "2"),
                Route(self.a, "y", self.b, "3"),
            ]
        )
        self.assertEqual(
            router.route(self.a, [("x", v(0.5)), ("y", v(1)), ("unmapped", v(0))]),
            {self.b: [("1", v(0.5)), ("3", v(1))], self.c: [("2", v(0.5))]},
        )

    def test_many_to_one_latest_wins(self) -> None:
        router = Router([Route(self.a, "x", self.c, "1"), Route(self.b, "y", self.c, "1")])
        out = (
            router.route(self.a, [("x", v(0.2))])[self.c]
            + router.route(self.b, [("y", v(0.9))])[self.c]
        )
        self.assertEqual(out[-1], ("1", v(0.9)))

    def test_duplicates_removed(self) -> None:
        router = Router([Route(self.a, "x", self.b, "1")] * 2)
        self.assertEqual(router.route(self.a, [("x", v(1))]), {self.b: [("1", v(1))]})

    def test_unknown_source(self) -> None:
        self.assertEqual(Router([]).route(self.a, [("x", v(1))]), {})


class Recorder(Instance):
    """A target that records what it is sent, or fails on demand."""

    def __init__(self, backend: Any, name: str, fail: bool = False) -> None:
        super().__init__(backend, name, {})
        self.sent: list[Event] = []
        self.fail = fail

    def parse_channel(self, spec: str) -> str:
        return spec

    def send(self, events: Any) -> None:
        if self.fail:
            raise RuntimeError("backend bug")
        self.sent.extend(events)


class ServiceTests(SynchronousTestCase):
    def show(self, mapping: str) -> Show:
        return load_show(
            write_show(
                self.mktemp(),
                "instances:\n  a: {backend: loopback}\n  b: {backend: loopback}\nmap:\n" + mapping,
            ),
            Clock(),
        )

    def test_events_reach_loopback_chain(self) -> None:
        show = self.show("  - a.in > b.mid\n  - b.mid > a.out\n")
        service = NetmidiService(show, Clock())
        seen: list[Event] = []
        original = show.instances["a"].send
        show.instances["a"].send = lambda events: (seen.extend(events), original(events))  # type: ignore[method-assign]
        show.instances["a"].emit([("in", v(0.5))])
        self.assertEqual(seen, [("out", v(0.5))])
        self.assertEqual(service.loops_cut, 0)

    def test_feedback_loop_is_cut_and_logged_once(self) -> None:
        show = self.show("  - a.x <> b.x\n")
        service = NetmidiService(show, Clock())
        with capturedLogs() as events:
            show.instances["a"].emit([("x", v(1))])
            show.instances["a"].emit([("x", v(0))])
        self.assertEqual(service.loops_cut, 2)
        warnings = [e for e in events if "feedback loop" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(MAX_HOPS, 16)

    def test_failing_target_does_not_stop_others(self) -> None:
        show = self.show("")
        backend = show.backends["loopback"]
        broken, good = Recorder(backend, "broken", fail=True), Recorder(backend, "good")
        source = show.instances["a"]
        show.router = Router([Route(source, "x", broken, "1"), Route(source, "x", good, "2")])
        service = NetmidiService(show, Clock())
        with capturedLogs():
            source.emit([("x", v(1))])
        self.assertEqual(good.sent, [("2", v(1))])
        self.assertEqual(service.send_failures, 1)
        self.flushLoggedErrors(RuntimeError)
