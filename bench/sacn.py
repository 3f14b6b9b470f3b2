"""Benchmark the sACN backend over loopback multicast (run inside ../shared/netlab).

U input universes at 44 Hz, every one of the 512 slots changing every frame, each mapped slot
for slot to one of U output universes. Three processes: a paced sender, the daemon
(``twistd -n netmidi`` on a generated show file, from this tree) and a receiver.

Prints packets per second in and out; packets lost on the way in (sequence gaps the daemon saw)
and out (gaps the receiver saw); frames the 44 Hz cap merged into a newer one (superseded: only
when frames of a universe arrive bunched); the daemon's CPU time per input packet, its peak RSS;
and the added latency p50/p99 (input packet sent -> output packet received). ``--flood`` sends as
fast as possible for 5 s instead, then one last frame (repeated as E1.31 sources do), and checks
that this last frame comes out.

Latency is taken from the sender's clock just before ``sendto`` to the kernel's receive timestamp
of the output packet (SO_TIMESTAMPNS, the same CLOCK_REALTIME), so that the receiver's own wake-up
delay, which on a busy 2-core host reaches several milliseconds, is not counted as the daemon's; it
is printed apart as ``receiver_lag_p99_ms``.

``--fifo`` runs the daemon under SCHED_FIFO (needs root, as inside the lab), as a show machine
would run it: on a host whose cores are busy with other work, the tail of the latency is the
daemon waiting for a core (scheduler wake-up and time-slice delays of several milliseconds), not
its own work; this separates the two.

Run it from the test install (``pip install -e '.[test]'``), inside the lab::

    ../shared/netlab -- python bench/sacn.py 64 200 400
    ../shared/netlab -- python bench/sacn.py --flood 64
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netmidi.codec import e131
from netmidi.testing.daemon import TWISTD, daemon_environment

FPS = 44
KEEPALIVE = 0.9
OUT_BASE = 1000
PEER = bytes(range(16))
TICK = os.sysconf("SC_CLK_TCK")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")


def show_file(universes: int, directory: str) -> str:
    """U input universes, each mapped slot for slot to its own output universe."""
    lines = ["backends:", "  sacn:", "    name: bench", "    interface: 127.0.0.1", "instances:"]
    for u in range(1, universes + 1):
        lines += [f"  in{u}: {{backend: sacn, universe: {u}}}"]
        lines += [f"  out{u}: {{backend: sacn, universe: {OUT_BASE + u}}}"]
    lines.append("map:")
    lines += [f"  - in{u}.{{1..512}} > out{u}.{{1..512}}" for u in range(1, universes + 1)]
    path = os.path.join(directory, "bench.yaml")
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def start_daemon(universes: int, directory: str, fifo: bool) -> subprocess.Popen[str]:
    """``twistd -n netmidi`` on the bench's show file, from this tree; returns once it runs."""
    daemon = subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "netmidi", "-c", show_file(universes, directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=directory,
        env=daemon_environment(),
    )  # fmt: skip
    assert daemon.stdout is not None
    if fifo:
        os.sched_setscheduler(daemon.pid, os.SCHED_FIFO, os.sched_param(10))
    for line in daemon.stdout:
        if "netmidi running" in line:
            return daemon
    sys.exit("the daemon did not start")


STATS = re.compile(r"sacn: (\d+) packets received, (\d+) lost .*?(\d+) dropped as bad input")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def frame_slots(frame: int) -> bytes:
    return struct.pack(">I", frame) + bytes((frame * 7 + i) & 0xFF for i in range(508))


def send(universes: int, seconds: float, flood: bool, result: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    gc.disable()  # its bookkeeping must not pause it: a paused sender looks like daemon latency
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    headers = [e131.data_header(PEER, "bench", u) for u in range(1, universes + 1)]
    groups = [(e131.ipv4_group(u), e131.PORT) for u in range(1, universes + 1)]
    sent: dict[tuple[int, int], float] = {}  # (universe, frame) -> time it was sent
    start = time.monotonic()
    frame = 0
    count = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if not flood:
            target = start + frame / FPS
            if now < target:
                time.sleep(target - now)
            elif now > target + 1 / FPS:  # a console keeps its rate; it does not catch up
                start += now - target
        slots = frame_slots(frame)
        sequence = bytes((frame & 0xFF,))
        for universe, (header, group) in enumerate(zip(headers, groups, strict=True), 1):
            packet = header[:111] + sequence + header[112:] + slots
            at = time.time()  # the clock of the receiver's kernel timestamps
            try:
                sock.sendto(packet, group)
            except BlockingIOError:
                continue
            sent[universe, frame] = at
            count += 1
        frame += 1
    elapsed = time.monotonic() - start  # the flood's rate, not diluted by the quiet tail below
    if flood:
        # The flood ends: one last frame, a little later, must be what comes out. It is sent as
        # an E1.31 source sends an unchanged frame (3 repeats, then keep-alives), because a
        # receiver still behind the flood finds its socket buffers full and the kernel drops
        # the first copies before the daemon can see them.
        slots = frame_slots(frame)
        for repeat, pause in enumerate((0.05, 1 / FPS, 1 / FPS, 1 / FPS, KEEPALIVE, KEEPALIVE)):
            time.sleep(pause)
            sequence = bytes(((frame + repeat) & 0xFF,))
            for universe, (header, group) in enumerate(zip(headers, groups, strict=True), 1):
                sock.sendto(header[:111] + sequence + header[112:] + slots, group)
                sent.setdefault((universe, frame), time.time())
                count += 1
        frame += 1
    result.put((count, frame, elapsed, sent))


def receive(
    universes: int, seconds: float, ready: multiprocessing.Event, result: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    gc.disable()  # likewise: a collection over its arrival records would add to the latency
    socks = []
    for first in range(1, universes + 1, 20):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("", e131.PORT))
        sock.setsockopt(socket.IPPROTO_IP, 49, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, 32 * 1024 * 1024)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024 * 1024)
        for u in range(first, min(first + 20, universes + 1)):
            group = socket.inet_aton(e131.ipv4_group(OUT_BASE + u)) + socket.inet_aton("127.0.0.1")
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        socks.append(sock)
    ready.set()
    arrived: dict[tuple[int, int], float] = {}
    last: dict[int, int] = {}
    sequence: dict[int, int] = {}
    lags: list[float] = []  # kernel receive -> seen here
    gaps = 0
    packets = 0
    space = socket.CMSG_SPACE(TIMESPEC.size)
    end = time.monotonic() + seconds
    poller = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    while time.monotonic() < end:
        for fd, _ in poller.poll(0.1):
            sock = by_fd[fd]
            while True:
                try:
                    data, ancillary, _, _ = sock.recvmsg(1000, space)
                except BlockingIOError:
                    break
                seconds, nanoseconds = TIMESPEC.unpack(ancillary[0][2])
                now = seconds + nanoseconds * 1e-9
                lags.append(time.time() - now)
                packets += 1
                universe = int.from_bytes(data[113:115], "big") - OUT_BASE
                frame = int.from_bytes(data[126:130], "big")
                arrived.setdefault((universe, frame), now)
                last[universe] = frame
                if universe in sequence:
                    gaps += (data[111] - sequence[universe] - 1) & 0xFF
                sequence[universe] = data[111]
    result.put((packets, arrived, last, gaps, sorted(lags)))


def run(universes: int, seconds: float, flood: bool, fifo: bool) -> dict[str, object]:
    directory = tempfile.mkdtemp()
    daemon = start_daemon(universes, directory, fifo)
    time.sleep(0.5)
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    ready = multiprocessing.Event()
    listen = seconds + (2 * KEEPALIVE if flood else 0) + 2.5
    rx = multiprocessing.Process(target=receive, args=(universes, listen, ready, results))
    rx.start()
    ready.wait()
    time.sleep(0.3)
    cpu_before = cpu_seconds(daemon.pid)
    tx = multiprocessing.Process(target=send, args=(universes, seconds, flood, results))
    tx.start()
    first = results.get()
    second = results.get()
    sent_info, received = (first, second) if len(first) == 4 else (second, first)
    tx.join()
    rx.join()
    user, system = (a - b for a, b in zip(cpu_seconds(daemon.pid), cpu_before, strict=True))
    cpu = user + system
    rss = peak_rss_mb(daemon.pid)
    daemon.send_signal(signal.SIGTERM)
    match = STATS.search(daemon.communicate(timeout=20)[0])
    shutil.rmtree(directory)
    assert match, "the daemon did not log its statistics"
    in_lost, bad = int(match.group(2)), int(match.group(3))
    count, frames, elapsed, sent_at = sent_info
    packets, arrived, last, out_lost, lags = received
    expected = sent_at.keys()
    delivered = expected & arrived.keys()
    latencies = sorted(arrived[k] - sent_at[k] for k in delivered)

    def pct(p: float, values: list[float] = latencies) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")

    report: dict[str, object] = {
        "universes": universes,
        "mode": ("flood" if flood else "44 Hz") + (", SCHED_FIFO" if fifo else ""),
        "in_pps": round(count / elapsed),
        "out_pps": round(packets / elapsed),
        "in_lost": in_lost,  # input packets the daemon never got (sequence gaps)
        "out_lost": out_lost,  # output packets the receiver never got
        "frames_superseded": len(expected) - len(delivered),  # merged into a newer one (44 Hz cap)
        "daemon_bad": bad,
        "cpu_us_per_in_packet": round(cpu / count * 1e6, 1),
        "of_which_kernel_us": round(system / count * 1e6, 1),
        "daemon_cpu_share": round(cpu / elapsed, 2),
        "peak_rss_mb": round(rss, 1),
        "latency_p50_ms": round(pct(0.5), 2),
        "latency_p99_ms": round(pct(0.99), 2),
        "receiver_lag_p99_ms": round(pct(0.99, lags), 2),  # not in the latency figures
    }
    if flood:
        # The output is capped at 44 Hz, so most flood frames are superseded before they go
        # out; what matters is how far behind the daemon runs and that the last state comes out.
        final = [(u, frames - 1) for u in range(1, universes + 1)]
        report["last_frame_out"] = sum(1 for u, f in final if last.get(u) == f)
        settle = [arrived[k] - sent_at[k] for k in final if k in arrived]
        report["last_frame_after_ms"] = round(max(settle) * 1000, 1) if settle else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("universes", type=int, nargs="*", default=[64, 200])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--flood", action="store_true")
    parser.add_argument("--fifo", action="store_true", help="run the daemon under SCHED_FIFO")
    args = parser.parse_args()
    if os.environ.get("NETMIDI_NETLAB") != "1":
        sys.exit("run inside the network lab: ../shared/netlab -- python bench/sacn.py")
    for universes in args.universes:
        seconds = 5.0 if args.flood else args.seconds
        print(json.dumps(run(universes, seconds, args.flood, args.fifo)), flush=True)


if __name__ == "__main__":
    main()
