"""Routing semantics: fan-out, fan-in, batching per target, loops, and a faulty backend."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from netmidi.backend import Event, Instance, Route
from netmidi.backends.loopback import LoopbackBackend
from netmidi.router import Router
from netmidi.service import MAX_CASCADE, MAX_HOPS, STOP_TIMEOUT, NetmidiService
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

    def test_failing_target_logged_once_then_counted(self) -> None:
        show = self.show("")
        broken = Recorder(show.backends["loopback"], "broken", fail=True)
        source = show.instances["a"]
        show.router = Router([Route(source, "x", broken, "1")])
        service = NetmidiService(show, Clock())
        with capturedLogs() as events:
            for _ in range(100):
                source.emit([("x", v(1))])
            service.stopService()
        self.assertEqual(service.send_failures, 100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        [summary] = [e for e in events if "sends failed" in e["log_format"]]
        self.assertEqual((summary["cut"], summary["failed"]), (0, 100))

    def test_fanning_loop_is_cut_by_the_event_budget(self) -> None:
        """Each hop of this loop multiplies the events by 8: 16 hops would be 8**8 events."""
        targets = ",".join(f"b{i}" for i in range(8))
        show = self.show(
            f"  - a.x > a.{{{targets}}}\n" + "".join(f"  - a.b{i} > a.x\n" for i in range(8))
        )
        service = NetmidiService(show, Clock())
        sent: list[int] = []
        instance = show.instances["a"]
        original = instance.send
        instance.send = lambda events: (sent.append(len(events)), original(events))  # type: ignore[method-assign]
        with capturedLogs():
            instance.emit([("x", v(1))])
        self.assertEqual(service.loops_cut, 1)
        self.assertLessEqual(sum(sent), MAX_CASCADE * 8)
        self.assertEqual(service._depth, 0)
        instance.emit([("x", v(1))])  # the next input gets a fresh budget
        self.assertEqual(service.loops_cut, 2)

    def test_instance_without_routes_out_gets_no_sink(self) -> None:
        show = self.show("  - a.x > b.y\n")
        NetmidiService(show, Clock())
        self.assertIsNotNone(show.instances["a"]._sink)
        self.assertIsNone(show.instances["b"]._sink)


class Silent(LoopbackBackend):
    """A backend whose goodbye never completes (a peer that never answers)."""

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred()


class StopTests(SynchronousTestCase):
    def test_a_backend_that_never_finishes_stopping_is_not_waited_for(self) -> None:
        clock = Clock()
        show = load_show(write_show(self.mktemp(), "instances:\n  a: {backend: loopback}\n"), clock)
        service = NetmidiService(show, clock)
        silent = Silent(clock, {})
        silent.name = "silent"
        silent.setServiceParent(service)
        service.startService()
        with capturedLogs() as events:
            stopped = service.stopService()
            clock.advance(STOP_TIMEOUT - 1)
            self.assertNoResult(stopped)
            clock.advance(1)
        self.successResultOf(stopped)
        [warning] = [e for e in events if "still stopping" in e["log_format"]]
        self.assertEqual(warning["backend"], "silent")
        self.assertFalse(show.backends["loopback"].running)
