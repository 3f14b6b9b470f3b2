"""maweb benchmark against the fake console on 127.0.0.1 (run inside the network lab).

    ../../shared/netlab -- /work/venv/bin/python bench/maweb.py

Measures, with client and fake console in one process on one reactor:
  * input-to-console latency of fader moves (instance.send -> console applies the write),
  * the console-side write rate under a 1,000 events/s flood to one fader (and to ten),
    and whether the last value arrives,
  * the client's CPU time per routed event during the flood.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater

from netmidi.backends.maweb import MawebBackend, MawebInstance
from netmidi.options import parse_options
from netmidi.testing.fakeconsole import FakeConsole
from netmidi.values import Value


class TimedConsole(FakeConsole):
    """Notes when each fader write is applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.applied: list[tuple[float, int, float]] = []

    def _user_input(self, connection: Any, message: dict[str, Any]) -> None:
        super()._user_input(connection, message)
        if message.get("type") == 1:
            self.applied.append((time.perf_counter(), message["execIndex"], message["faderValue"]))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@inlineCallbacks
def main() -> Any:
    console = TimedConsole(reactor, users={"bench": "pw"})
    port = console.listen()
    options, _ = parse_options(MawebBackend.all_global_options(), {"interval": 50})
    backend = MawebBackend(reactor, options)
    parsed, errors = parse_options(
        MawebBackend.instance_options,
        {"host": f"127.0.0.1:{port}", "user": "bench", "password": "pw"},
    )
    assert not errors, errors
    instance = backend.add_instance("ma", parsed)
    assert isinstance(instance, MawebInstance)
    faders = [instance.parse_channel(f"page1.fader{n}") for n in range(1, 11)]
    instance.mapped(frozenset(), frozenset(faders))
    backend.startService()
    while (
        instance.client is None
        or instance.client.session is None
        or not (instance.client.session.logged_in)
    ):
        yield deferLater(reactor, 0.01)

    # 1. latency: 400 moves, 25 ms apart (slower than the pacing interval)
    latencies = []
    for n in range(400):
        target = round((n % 100) / 100 + 0.001, 6)
        before = len(console.applied)
        sent = time.perf_counter()
        instance.send([(faders[0], Value.from_normalised(target))])
        while len(console.applied) == before:
            yield deferLater(reactor, 0)
        latencies.append((console.applied[-1][0] - sent) * 1000)
        yield deferLater(reactor, 0.025)
    print(
        f"latency send->console applied (ms): p50 {statistics.median(latencies):.3f}"
        f"  p99 {percentile(latencies, 99):.3f}  max {max(latencies):.3f}  (n={len(latencies)})"
    )

    # 2. flood: 1,000 events/s for 5 s, to one fader and then to ten
    for count in (1, 10):
        yield deferLater(reactor, 0.5)
        console.applied.clear()
        seconds, per_tick = 5.0, 10  # 100 ticks/s x 10 events = 1,000 events/s per fader
        start = time.perf_counter()
        cpu = 0.0
        events = 0
        ticks = int(seconds * 100)
        for tick in range(ticks):
            for k in range(per_tick):
                x = (tick * per_tick + k) / (ticks * per_tick - 1)
                batch = [(f, Value.from_normalised(x)) for f in faders[:count]]
                before = time.process_time()
                instance.send(batch)
                cpu += time.process_time() - before
                events += len(batch)
            delay = start + (tick + 1) / 100 - time.perf_counter()
            yield deferLater(reactor, max(0.0, delay))
        sent_end = time.perf_counter()
        while not all(
            any(e == i and v == 1.0 for _, e, v in console.applied[-count:]) for i in range(count)
        ):
            yield deferLater(reactor, 0.005)
            if time.perf_counter() - sent_end > 2:
                break
        elapsed = sent_end - start
        last = {i: v for _, i, v in console.applied}
        per_exec = len(console.applied) / count / elapsed
        windows = [0] * (int(elapsed) + 1)
        for at, index, _ in console.applied:
            if index == 0 and at - start < len(windows):
                windows[int(at - start)] += 1
        arrived = all(last.get(i) == 1.0 for i in range(count))
        print(
            f"flood {count} fader(s) x {events / count / elapsed:.0f} events/s for {elapsed:.2f} s:"
            f" console writes {per_exec:.1f}/s per executor (busiest 1 s window for exec 1:"
            f" {max(windows)}), last value arrived: {arrived},"
            f" client CPU {cpu / events * 1e6:.1f} us/event"
        )
    yield backend.stopService()
    yield console.stop()
    reactor.stop()


if __name__ == "__main__":
    reactor.callWhenRunning(main)
    reactor.run()
