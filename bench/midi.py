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
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netmidi.testing.jack import JackDummy, JackPeer  # noqa: E402

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


def run(peer: JackPeer, rate: int, seconds: float, settle: float = 0.5) -> dict[str, float]:
    """Send ``rate`` CCs per second for ``seconds``; return what arrived and how late."""
    peer.received.clear()
    count = int(rate * seconds)
    sent_at: list[float] = []
    start = time.perf_counter()
    for sequence in range(count):
        due = start + sequence / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay - 0.0003)
        while time.perf_counter() < due:
            pass
        sent_at.append(time.perf_counter())
        peer.send(message(sequence))
    elapsed = time.perf_counter() - start
    time.sleep(settle)
    arrivals = list(peer.received)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--period", type=int, default=32, help="JACK frames per period (48 kHz)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per rate")
    parser.add_argument("--rates", default="1000,2000,5000,10000,15000,20000")
    args = parser.parse_args()
    rates = [int(rate) for rate in args.rates.split(",")]

    server = JackDummy(period=args.period)
    server.start()
    daemon = None
    try:
        print(
            f"JACK dummy server, 48 kHz, {args.period} frames per period "
            f"({args.period / 48:.2f} ms); {args.seconds:g} s per rate; 3-byte CCs"
        )
        header = (
            f"{'path':8} {'rate':>7} {'sent/s':>9} {'received':>9} {'lost':>6} {'dup':>5} "
            f"{'reord':>5} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'µs CPU/ev':>9}"
        )

        # JACK alone: the peer's output port connected straight to its input port.
        peer = JackPeer("direct")
        subprocess.run(["jack_connect", "direct-tx:midi", "direct-rx:midi"], check=True)
        time.sleep(0.3)
        print(header)
        for rate in rates:
            print_row("jack", rate, run(peer, rate, args.seconds), None)
        peer.close()

        peer = JackPeer("bench")
        with tempfile.TemporaryDirectory() as directory:
            show = Path(directory, "show.yaml")
            show.write_text(SHOW)
            env = {**os.environ, **server.environment, "PYTHONPATH": str(ROOT)}
            log = open(Path(directory, "daemon.log"), "w+b")  # noqa: SIM115
            daemon = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
                + ["--pidfile", "", "-n", "netmidi", "-c", str(show)],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            time.sleep(3)
            if daemon.poll() is not None:
                log.seek(0)
                sys.exit("the daemon did not start:\n" + log.read().decode(errors="replace"))
            # Wait until both ports are connected: a few messages must come through.
            for _ in range(50):
                peer.received.clear()
                peer.send(message(0))
                time.sleep(0.1)
                if peer.received:
                    break
            else:
                log.seek(0)
                sys.exit("no route through the daemon:\n" + log.read().decode(errors="replace"))
            for rate in rates:
                before = cpu_seconds(daemon.pid)
                result = run(peer, rate, args.seconds)
                print_row("netmidi", rate, result, cpu_seconds(daemon.pid) - before)
        peer.close()
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        server.stop()


if __name__ == "__main__":
    main()
