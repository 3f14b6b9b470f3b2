"""Router throughput: routed channel events per second through loopback endpoints.

Run inside the lab like every benchmark: ../shared/netlab -- python bench/router.py
It builds real show files (loopback instances), starts the service on a task.Clock and feeds
events through the same path a backend uses (Instance.emit -> router -> target.send), in batches
of one event (the worst case: a MIDI note) and of 64 (a busy packet).
"""

from __future__ import annotations

import os
import tempfile
import time

from twisted.internet.task import Clock

from netmidi.service import NetmidiService
from netmidi.show import load_show
from netmidi.values import Value

SHOW = """
instances:
  source: {backend: loopback}
  target: {backend: loopback}
map:
  - %s
"""


def measure(fan_out: int, batch: int, seconds: float = 1.5) -> tuple[float, float]:
    """(input events/s, routed channel events/s) for a fan-out and input batch size."""
    mapping = "source.ch{1..64} > target.out{1..64}"
    if fan_out > 1:
        mapping = f"source.ch1 > target.out{{1..{fan_out}}}"
    text = SHOW % mapping
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "show.yaml")
        with open(path, "w") as stream:
            stream.write(text)
        show = load_show(path, Clock())
    NetmidiService(show, Clock())
    source = show.instances["source"]
    channels = [f"ch{i % 64 + 1}" for i in range(batch)] if fan_out == 1 else ["ch1"] * batch
    batches = [
        [(c, Value.from_raw((n + i) % 128, 7)) for i, c in enumerate(channels)] for n in range(128)
    ]
    emit = source.emit
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for events in batches:
            emit(events)
        sent += len(batches) * batch
    elapsed = time.perf_counter() - start
    return sent / elapsed, sent * fan_out / elapsed


def main() -> None:
    print("netmidi router benchmark (loopback endpoints, one process, no I/O)")
    print(
        f"{'route':>6} {'batch':>6} {'input ev/s':>12} {'routed ev/s':>12} {'vs 300k target':>15}"
    )
    for fan_out in (1, 16):
        for batch in (1, 64):
            inputs, routed = measure(fan_out, batch)
            print(
                f"{'1->' + str(fan_out):>6} {batch:>6} {inputs:>12,.0f} {routed:>12,.0f}"
                f" {routed / 300_000:>14.2f}x"
            )


if __name__ == "__main__":
    main()
