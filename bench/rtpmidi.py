"""Benchmark the rtpmidi backend through the daemon. Run inside the network lab:

    ../../shared/netlab -- /work/venv/bin/python bench/rtpmidi.py [--quick]

A sender peer sends RTP-MIDI control changes on MIDI channel 0 to a direct-mode instance; the
show maps every CC of channel 0 to channel 1 of another direct-mode instance, which sends to a
sink peer. The sender paces packets from one thread and the sink drains between sends, so the
figures include this script's own cost on a shared machine. Printed:

* the highest rate sustained with zero loss and no backlog (the daemon finished within 0.2 s of
  the sender), at 1 and at 16 events per packet (events/s and packets/s), and the daemon's CPU
  time per packet (from /proc) at those rates;
* added latency p50/p99 (sender to sink, through the daemon) at 1,000 events/s;
* flood: 5 s as fast as the sender can go; delivered share, the daemon's memory before and after,
  and the latency of probe packets sent to another instance meanwhile (is it still responsive?).

``--in-process`` measures instead the CPU time per packet of the same show's path (RTP-MIDI
decode, journal receiver, router, encoder, journal sender, RTP-MIDI encode) with no sockets and
no reactor, in this process: the least load-dependent figure on a shared machine (no network
either, so it needs no lab).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TREE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TREE))

from netmidi.codec import rtpmidi  # noqa: E402
from netmidi.service import NetmidiService  # noqa: E402
from netmidi.show import load_show  # noqa: E402

LOCAL = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")

SHOW = """\
instances:
  inp: {{backend: rtpmidi, mode: direct, bind: "{local} {inp}"}}
  out:
    backend: rtpmidi
    mode: direct
    bind: "{local} 0"
    peer: "{local} {sink}"
    journal: {journal}
  probe: {{backend: rtpmidi, mode: direct, bind: "{local} {probe}"}}
  probeout: {{backend: rtpmidi, mode: direct, bind: "{local} 0", peer: "{local} {probesink}"}}
map:
  - inp.ch0.cc{{0..127}} > out.ch1.cc{{0..127}}
  - probe.ch0.cc{{0..127}} > probeout.ch1.cc{{0..127}}
"""


@dataclass
class Result:
    sent: int
    received: int
    rate: float
    packet_rate: float
    cpu_per_packet: float
    cpu_share: float
    latencies: list[float]
    probes: int
    probe_latencies: list[float]
    backlog: float
    """Seconds the daemon went on sending after the sender stopped (it was behind)."""
    daemon_drops: int
    """Input packets the kernel dropped at the daemon's port (it did not read them in time)."""
    sink_drops: int
    """Output packets dropped at this script's sink (the script, not the daemon, fell behind)."""


def udp(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((LOCAL, port))
    sock.setblocking(False)
    return sock


def packet(sequence: int, ccs: list[tuple[int, int]]) -> bytes:
    messages = [bytes((0xB0, number, value)) for number, value in ccs]
    return rtpmidi.encode_header(sequence, 0, 0x5EED) + rtpmidi.encode_section(messages)


class Daemon:
    """netmidi under twistd, with its CPU time and memory read from /proc."""

    def __init__(self, show: Path, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(TREE)}
        twistd = "from twisted.scripts.twistd import run; run()"
        command = [sys.executable, "-c", twistd, "-n", "--pidfile=", "netmidi"]
        self.process = subprocess.Popen(
            [*command, "-c", str(show)],
            env=env,
            cwd=show.parent,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Bench:
    def __init__(self, journal: str) -> None:
        self.sink, self.probesink = udp(), udp()
        self.sender = udp()
        ports = [udp() for _ in range(2)]
        self.inp, self.probe = (p.getsockname()[1] for p in ports)
        for p in ports:
            p.close()
        self.sequence = 0
        self.probe_sequence = 0  # RTP sequence numbers count per stream: receivers drop repeats
        self.directory = tempfile.TemporaryDirectory()
        show = Path(self.directory.name) / "bench.yaml"
        show.write_text(
            SHOW.format(
                local=LOCAL,
                inp=self.inp,
                probe=self.probe,
                sink=self.sink.getsockname()[1],
                probesink=self.probesink.getsockname()[1],
                journal=journal,
            )
        )
        self.daemon = Daemon(show, Path(self.directory.name) / "daemon.log")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.sender.sendto(packet(self.next_probe(), [(0, 1)]), (LOCAL, self.probe))
            if select.select([self.probesink], [], [], 0.2)[0]:
                self.drain(self.probesink)
                return
        log = (Path(self.directory.name) / "daemon.log").read_text()
        raise SystemExit(f"the daemon did not answer:\n{log}")

    def next_probe(self) -> int:
        self.probe_sequence += 1
        return self.probe_sequence

    @staticmethod
    def drain(sock: socket.socket) -> list[tuple[float, bytes]]:
        out: list[tuple[float, bytes]] = []
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return out
            out.append((time.perf_counter(), data))

    def run(
        self, events_per_second: float, per_packet: int, seconds: float, probe_every: float = 0
    ) -> Result:
        """Send at a rate (0: as fast as possible); count what arrives; time tagged packets."""
        rate = events_per_second / per_packet if events_per_second else 0.0
        sent_at: dict[int, float] = {}
        probe_at: dict[int, float] = {}
        latencies: list[float] = []
        probe_latencies: list[float] = []
        received = sent = 0
        target = (LOCAL, self.inp)
        drops0, cpu0, start = socket_drops(), self.daemon.cpu(), time.perf_counter()
        next_send, next_probe, end = start, start, start + seconds
        tag = 0

        def take(data: bytes, at: float, table: dict[int, float], into: list[float]) -> int:
            """Count a packet's events; time the tagged ones (several may share a packet)."""
            messages = rtpmidi.decode(data).messages
            for message in messages:
                sent = table.pop(message[2] << 7 | message[1], None)
                if sent is not None:
                    into.append(at - sent)
            return len(messages)

        while True:
            now = time.perf_counter()
            if now >= end:
                break
            burst = 0
            while (not rate or now >= next_send) and burst < 64:
                tag = (tag + 1) & 0x3FFF
                ccs = [(tag & 0x7F, tag >> 7)] + [(k, k) for k in range(1, per_packet)]
                try:
                    self.sender.sendto(packet(self.sequence + 1, ccs), target)
                except BlockingIOError:
                    break
                self.sequence += 1
                sent_at[tag] = time.perf_counter()
                sent += per_packet
                next_send += 1 / rate if rate else 0
                burst += 1
            if probe_every and now >= next_probe:
                probe_tag = tag ^ 0x2000
                self.sender.sendto(
                    packet(self.next_probe(), [(probe_tag & 0x7F, probe_tag >> 7)]),
                    (LOCAL, self.probe),
                )
                probe_at[probe_tag] = time.perf_counter()
                next_probe += probe_every
            for at, data in self.drain(self.sink):
                received += take(data, at, sent_at, latencies)
            for at, data in self.drain(self.probesink):
                take(data, at, probe_at, probe_latencies)
            if rate:
                wait = next_send - time.perf_counter()
                if wait > 0:
                    select.select([self.sink, self.probesink], [], [], min(wait, 0.01))
        elapsed = time.perf_counter() - start
        # Let the daemon work through its queue: until nothing arrives for 0.3 s (at most 5 s).
        stopped = last = time.perf_counter()
        quiet, settle = last + 0.3, last + 5.0
        while time.perf_counter() < min(quiet, settle):
            if select.select([self.sink, self.probesink], [], [], 0.05)[0]:
                last = time.perf_counter()
                quiet = last + 0.3
            for at, data in self.drain(self.sink):
                received += take(data, at, sent_at, latencies)
            for at, data in self.drain(self.probesink):
                take(data, at, probe_at, probe_latencies)
        cpu = self.daemon.cpu() - cpu0
        drops1 = socket_drops()
        sink = self.sink.getsockname()[1]
        daemon_drops = drops1.get(self.inp, 0) - drops0.get(self.inp, 0)
        sink_drops = drops1.get(sink, 0) - drops0.get(sink, 0)
        packets = sent / per_packet
        return Result(
            sent=sent,
            received=received,
            rate=sent / elapsed,
            packet_rate=packets / elapsed,
            cpu_per_packet=cpu / packets if packets else 0.0,
            cpu_share=cpu / elapsed,
            latencies=latencies,
            probes=len(probe_latencies) + len(probe_at),
            probe_latencies=probe_latencies,
            backlog=last - stopped,
            daemon_drops=daemon_drops,
            sink_drops=sink_drops,
        )


class _Port:
    """A UDP port that sends nowhere (the in-process mode)."""

    def __init__(self, port: int) -> None:
        self.port, self.socket, self.maxThroughput = port, self, 0

    def getHost(self) -> _Port:
        return self

    def sendto(self, data: bytes, address: object) -> None:
        pass

    write = sendto

    def setsockopt(self, *option: object) -> None:
        pass

    def stopListening(self) -> None:
        pass


class _Reactor:
    """Just what the show needs: ports that record their protocol, and calls run on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self.protocols: dict[int, Any] = {}
        self.next_port = 20000

    def seconds(self) -> float:
        return time.monotonic()

    def callLater(self, delay: float, call: Callable[..., object], *args: object) -> None:
        self.calls.append((call, args))

    def listenUDP(self, port: int, protocol: Any, **options: object) -> _Port:
        if not port:
            port, self.next_port = self.next_port, self.next_port + 1
        self.protocols[port] = protocol
        return _Port(port)

    def run_calls(self) -> None:
        calls, self.calls = self.calls, []
        for call, args in calls:
            call(*args)


def in_process(journal: str, per_packet: int, rounds: int = 20, packets: int = 200) -> float:
    """CPU seconds per packet through the bench show's path, the best of ``rounds`` rounds."""
    reactor = _Reactor()
    with tempfile.TemporaryDirectory() as directory:
        show = Path(directory) / "bench.yaml"
        show.write_text(
            SHOW.format(
                local=LOCAL, inp=5004, probe=5006, sink=5008, probesink=5010, journal=journal
            )
        )
        service = NetmidiService(load_show(str(show), reactor), reactor)
    service.startService()
    receive = reactor.protocols[5004].datagramReceived
    source = (LOCAL, 5012)
    stream: list[bytes] = []
    for number in range(1, 16384):  # the same traffic as the sustained runs, numbered on
        ccs = [(number & 0x7F, number >> 7)] + [(k, k) for k in range(1, per_packet)]
        stream.append(packet(number, ccs))
    best = float("inf")
    for round_ in range(rounds + 1):
        batch = stream[round_ * packets % len(stream) :][:packets]
        start = time.process_time()
        for datagram in batch:
            receive(datagram, source)
            reactor.run_calls()
        if round_:  # the first round warms up (the journal reaches its steady size)
            best = min(best, (time.process_time() - start) / len(batch))
    return best


def socket_drops() -> dict[int, int]:
    """Datagrams the kernel dropped at each local UDP port (full receive buffer), from /proc."""
    drops: dict[int, int] = {}
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].split(":")[1], 16)
        drops[port] = drops.get(port, 0) + int(fields[-1])
    return drops


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def ladder(quick: bool, rates: list[int]) -> Iterator[int]:
    yield from rates[::2] if quick else rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each sustained run")
    parser.add_argument(
        "--journal", choices=("on", "off"), default="on", help="the output instance's journal"
    )
    parser.add_argument(
        "--pin", action="store_true", help="run the daemon on CPU 1 and this script on CPU 0"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="CPU time per packet of the daemon's path, in this process, no sockets",
    )
    arguments = parser.parse_args()
    if arguments.in_process:
        for journal in ("off", "on"):
            for per_packet in (1, 16):
                cost = in_process(journal, per_packet)
                print(
                    f"in-process, journal {journal:3s}, {per_packet:2d} ev/packet:"
                    f" {cost * 1e6:6.1f} µs CPU/packet (best of 20 rounds of 200 packets;"
                    f" load average {os.getloadavg()[0]:.2f})"
                )
        return
    if os.environ.get("NETMIDI_NETLAB") != "1":
        raise SystemExit(
            "run me inside the network lab: ../../shared/netlab -- python bench/rtpmidi.py"
        )
    bench = Bench(arguments.journal)
    if arguments.pin:
        os.sched_setaffinity(bench.daemon.process.pid, {1})
        os.sched_setaffinity(0, {0})
    try:
        bench.wait_ready()
        seconds = 1.5 if arguments.quick else arguments.seconds
        print(
            f"rtpmidi bench: daemon pid {bench.daemon.process.pid}, {seconds:.1f} s per run,"
            f" recovery journal {arguments.journal} on the output"
            + (", daemon pinned to CPU 1" if arguments.pin else "")
        )
        for per_packet, rates, target in (
            (1, [5000, 10000, 15000, 20000, 25000, 30000, 40000], 20000),
            (16, [40000, 80000, 100000, 120000, 160000, 200000], 100000),
        ):
            best = None
            for rate in ladder(arguments.quick, rates):
                result = bench.run(rate, per_packet, seconds)
                lost = result.sent - result.received
                print(
                    f"  {per_packet:2d} ev/packet, asked {rate:6d} ev/s:"
                    f" sent {result.rate:8.0f} ev/s"
                    f" ({result.packet_rate:7.0f} packets/s), lost {lost:6d}"
                    f" (socket drops: {result.daemon_drops} daemon in, {result.sink_drops} sink),"
                    f" backlog {result.backlog:4.2f} s, daemon"
                    f" {result.cpu_per_packet * 1e6:6.1f} µs CPU/packet"
                    f" ({result.cpu_share * 100:3.0f} % of a core)"
                )
                if lost == 0 and result.backlog < 0.2:
                    best = result
                elif best is not None:
                    break
            if best is None:
                print(f"  -> {per_packet} ev/packet: loss at every rate tried (target {target})")
            else:
                print(
                    f"  -> {per_packet} ev/packet: {best.rate:.0f} ev/s sustained with zero loss"
                    f" (target {target}), {best.packet_rate:.0f} packets/s,"
                    f" {best.cpu_per_packet * 1e6:.1f} µs daemon CPU per packet"
                    f" (one free core: about {per_packet / best.cpu_per_packet:.0f} ev/s)"
                )
        result = bench.run(1000, 1, 2.0 if arguments.quick else 5.0)
        latencies = result.latencies
        print(
            f"latency at 1000 ev/s ({len(latencies)} samples):"
            f" p50 {percentile(latencies, 0.5) * 1e3:.3f} ms,"
            f" p99 {percentile(latencies, 0.99) * 1e3:.3f} ms (target p99 < 2 ms;"
            " includes both loopback hops and this script's own scheduling)"
        )
        rss0 = bench.daemon.rss_kib()
        result = bench.run(0, 1, 5.0, probe_every=0.05)
        rss1 = bench.daemon.rss_kib()
        probes = result.probe_latencies
        delivered = result.received / result.sent if result.sent else 0.0
        print(
            f"flood 5 s: sent {result.rate:.0f} ev/s, delivered {delivered * 100:.1f} %,"
            f" daemon {result.cpu_share * 100:.0f} % of a core, RSS {rss0} -> {rss1} KiB;"
            f" probes answered {len(probes)}/{result.probes},"
            f" p50 {percentile(probes, 0.5) * 1e3:.2f} ms,"
            f" max {max(probes, default=float('nan')) * 1e3:.2f} ms"
        )
        bench.wait_ready()
        print("daemon still answering after the flood")
        log = (Path(bench.directory.name) / "daemon.log").read_text()
        for line in log.splitlines():
            if "dropped" in line or "Traceback" in line:
                print("daemon log:", line.split("] ", 1)[-1])
    finally:
        bench.daemon.stop()


if __name__ == "__main__":
    main()
