"""Benchmark the midi backend port to port through the daemon, on a private JACK dummy server.

A peer program's port sends control changes to netmidi's ``a`` instance; the show maps every CC of
all 16 MIDI channels to the same CC on instance ``b``, which writes to the peer's other port. Each
message carries a sequence number in its channel, controller and value, so the peer sees exactly
which messages arrived, how late, and in what order.

It prints, for a ladder of rates: events/s sent and received, lost, reordered, and the latency
p50/p99 port to port through the daemon, next to JACK's own latency measured with a direct
connection between the peer's two ports (the daemon's added latency is the difference), and the
daemon's CPU time per event. Run it from the repository root (no network involved)::

    python bench/midi.py [--period 32] [--seconds 3] [--rates 1000,5000,10000,20000]

Needs jackd (Debian: jackd2) and python-rtmidi.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netmidi.testing.jack import JackDummy  # noqa: E402

SHOW = """\
backends:
  midi:
    api: jack
    rescan: 0.2
instances:
  a:
    backend: midi
    read: bench-tx
  b:
    backend: midi
    write: bench-rx
map:
  - a.ch{0..15}.cc{0..127} > b.ch{0..15}.cc{0..127}
"""

SEQUENCE_SPACE = 16 * 128 * 128


def message(sequence: int) -> list[int]:
    sequence %= SEQUENCE_SPACE
    return [0xB0 | sequence >> 14, (sequence >> 7) & 0x7F, sequence & 0x7F]


def sequence_of(received: list[int]) -> int:
    return (received[0] & 0x0F) << 14 | received[1] << 7 | received[2]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def receive(conn: Any, client: str) -> None:
    """In its own process, so the JACK thread never waits for the sender's GIL."""
    import rtmidi

    port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, client)
    arrived: list[tuple[float, list[int]]] = []
    port.set_callback(lambda event, _data: arrived.append((time.perf_counter(), event[0])))
    port.open_virtual_port("midi")
    conn.send("ready")
    while (command := conn.recv()) != "stop":
        if command == "get":
            conn.send(arrived[:])
        arrived.clear()
    port.close_port()
    port.delete()


class Peer:
    """Another program's two ports: ``<name>-tx:midi`` sends, ``<name>-rx:midi`` receives."""

    def __init__(self, name: str) -> None:
        import rtmidi

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=receive, args=(child, f"{name}-rx"), daemon=True)
        self._process.start()
        self._conn.recv()
        self._out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, f"{name}-tx")
        self._out.open_virtual_port("midi")
        self.send = self._out.send_message

    def clear(self) -> None:
        self._conn.send("clear")

    def received(self) -> list[tuple[float, list[int]]]:
        self._conn.send("get")
        arrived: list[tuple[float, list[int]]] = self._conn.recv()
        return arrived

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join(5)
        self._out.close_port()
        self._out.delete()


def run(peer: Peer, rate: int, seconds: float, settle: float = 0.5) -> dict[str, float]:
    """Send ``rate`` CCs per second for ``seconds``; return what arrived and how late."""
    peer.clear()
    count = int(rate * seconds)
    sent_at = [0.0] * count
    sequence = 0
    start = time.perf_counter()
    while sequence < count:
        # Send what is due, then sleep a little: pacing without a busy loop on a 2-core machine.
        due = min(count, int((time.perf_counter() - start) * rate) + 1)
        while sequence < due:
            sent_at[sequence] = time.perf_counter()
            peer.send(message(sequence))
            sequence += 1
        time.sleep(0.0002)
    elapsed = time.perf_counter() - start
    time.sleep(settle)
    arrivals = peer.received()
    sequences = [sequence_of(m) for _, m in arrivals if len(m) == 3 and m[0] & 0xF0 == 0xB0]
    latencies = sorted(
        (at - sent_at[s]) * 1000
        for (at, _), s in zip(arrivals, sequences, strict=False)
        if s < count
    )
    reordered = sum(1 for a, b in zip(sequences, sequences[1:], strict=False) if b < a)
    unique = len(set(sequences))
    return {
        "sent/s": count / elapsed,
        "received": len(sequences),
        "lost": count - unique,
        "duplicated": len(sequences) - unique,
        "reordered": reordered,
        "p50 ms": statistics.median(latencies) if latencies else float("nan"),
        "p99 ms": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "max ms": latencies[-1] if latencies else float("nan"),
    }


def print_row(label: str, rate: int, result: dict[str, float], cpu: float | None) -> None:
    per_event = f"{cpu / max(result['received'], 1) * 1e6:7.1f}" if cpu is not None else "      -"
    print(
        f"{label:8} {rate:7d} {result['sent/s']:9.0f} {result['received']:9.0f} "
        f"{result['lost']:6.0f} {result['duplicated']:5.0f} {result['reordered']:5.0f} "
        f"{result['p50 ms']:7.3f} {result['p99 ms']:7.3f} {result['max ms']:7.3f} {per_event}",
        flush=True,
    )


HEADER = (
    f"{'path':8} {'rate':>7} {'sent/s':>9} {'received':>9} {'lost':>6} {'dup':>5} "
    f"{'reord':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'µs CPU/ev':>9}"
)


def start_daemon(directory: str, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    show = Path(directory, "show.yaml")
    show.write_text(SHOW)
    log = open(Path(directory, "daemon.log"), "w+b")
    return subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        + ["--pidfile", "", "-n", "netmidi", "-c", str(show)],
        cwd=directory,
        env={**os.environ, **environment, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def wait_for_route(peer: Peer, daemon: subprocess.Popen[bytes], directory: str) -> None:
    """Until a message comes through the daemon (its ports are open and connected)."""
    for _ in range(100):
        if daemon.poll() is not None:
            break
        peer.clear()
        peer.send(message(0))
        time.sleep(0.1)
        if peer.received():
            return
    log = Path(directory, "daemon.log").read_text(errors="replace")
    sys.exit(f"no route through the daemon:\n{log}")


def phase(period: int, rates: list[int], seconds: float) -> dict[str, dict[int, dict[str, float]]]:
    """JACK alone, then through the daemon, at each rate, on a server with this period."""
    print(
        f"\nJACK dummy server, 48 kHz, {period} frames per period ({period / 48:.2f} ms); "
        f"{seconds:g} s per rate; 3-byte CCs"
    )
    print(HEADER)
    results: dict[str, dict[int, dict[str, float]]] = {"jack": {}, "netmidi": {}}
    server = JackDummy(period=period)
    server.start()
    daemon = None
    try:
        # JACK alone: the peer's output port connected straight to its input port.
        peer = Peer("direct")
        subprocess.run(["jack_connect", "direct-tx:midi", "direct-rx:midi"], check=True)
        time.sleep(0.3)
        for rate in rates:
            results["jack"][rate] = run(peer, rate, seconds)
            print_row("jack", rate, results["jack"][rate], None)
        peer.close()

        peer = Peer("bench")
        with tempfile.TemporaryDirectory() as directory:
            daemon = start_daemon(directory, server.environment)
            wait_for_route(peer, daemon, directory)
            for rate in rates:
                before = cpu_seconds(daemon.pid)
                results["netmidi"][rate] = run(peer, rate, seconds)
                cpu = cpu_seconds(daemon.pid) - before
                print_row("netmidi", rate, results["netmidi"][rate], cpu)
            daemon.terminate()
            daemon.wait(10)
            daemon = None
        peer.close()
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per rate")
    parser.add_argument(
        "--latency-period", type=int, default=32, help="JACK frames per period for latency"
    )
    parser.add_argument("--latency-rate", type=int, default=1000)
    parser.add_argument(
        "--throughput-period", type=int, default=1024, help="JACK frames per period for rates"
    )
    parser.add_argument("--rates", default="1000,5000,10000,15000,20000,30000")
    args = parser.parse_args()
    rates = [int(rate) for rate in args.rates.split(",")]

    latency = phase(args.latency_period, [args.latency_rate], args.seconds)
    throughput = phase(args.throughput_period, rates, args.seconds)

    jack, through = latency["jack"][args.latency_rate], latency["netmidi"][args.latency_rate]
    print(
        f"\nlatency at {args.latency_rate} events/s, port to port through netmidi: "
        f"p50 {through['p50 ms']:.3f} ms, p99 {through['p99 ms']:.3f} ms "
        f"(JACK alone p50 {jack['p50 ms']:.3f}, p99 {jack['p99 ms']:.3f}; "
        f"added p50 {through['p50 ms'] - jack['p50 ms']:.3f} ms, "
        f"p99 {through['p99 ms'] - jack['p99 ms']:.3f} ms; target p99 < 2 ms)"
    )
    for path in ("jack", "netmidi"):
        best = 0
        for rate in rates:
            if throughput[path][rate]["lost"]:
                break
            best = rate
        print(f"zero loss up to, {path:7}: {best} events/s (target 10000)")


if __name__ == "__main__":
    main()
