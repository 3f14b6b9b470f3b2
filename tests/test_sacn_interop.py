"""Interop with real peers inside the network lab: OLA (olad), PyPI ``sacn``, and tshark.

Each peer test skips, saying why, when the peer is not installed (``.ci/peers/sacn.sh`` installs
them) or when it runs outside the lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from netmidi.backends.sacn import SacnBackend
from netmidi.codec import e131
from netmidi.values import Value
from tests.test_sacn import LAB, listen, make_backend, sacn, sleep

try:
    import sacn as pypi_sacn
except ImportError:  # pragma: no cover - installed by .ci/peers/sacn.sh
    pypi_sacn = None

NOT_IN_LAB = "needs the network lab (run inside ../shared/netlab)"


def _wait_for(check: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.1)
    return False


class PypiSacnTests(TestCase):
    """PyPI ``sacn`` 1.11 (Hundemeier) in threads, over multicast on the lab's lo."""

    if not LAB:
        skip = NOT_IN_LAB
    elif pypi_sacn is None:
        skip = "PyPI sacn is not installed (pip install sacn; .ci/peers/sacn.sh does)"

    @inlineCallbacks
    def test_receive_from_pypi_sacn(self) -> Any:
        backend = make_backend({"in": {"universe": 21}})
        instance, sink = listen(backend, "in", 1, 2, 3, 4)
        backend.startService()
        self.addCleanup(backend.stopService)
        sender = pypi_sacn.sACNsender(
            bind_address="127.0.0.1", bind_port=0, source_name="pypi peer", fps=40,
            universeDiscovery=False,
        )  # fmt: skip
        sender.start()
        self.addCleanup(sender.stop)
        sender.activate_output(21)
        sender[21].multicast = True
        sender[21].ttl = 1
        sender[21].dmx_data = (1, 2, 3, 4)
        yield sleep(0.5)
        self.assertEqual(instance.merger.levels[:5].tolist(), [1, 2, 3, 4, 0])
        [source] = instance.merger.sources.values()
        self.assertEqual(source.name, "pypi peer")
        sender.deactivate_output(21)  # 3 Stream_Terminated packets
        yield sleep(0.5)
        self.assertEqual(instance.merger.sources, {})
        self.assertEqual(instance.merger.levels[:4].tolist(), [0, 0, 0, 0])
        self.assertEqual(sink.events[-1][1][0], (1, Value.from_raw(0, 8)))

    @inlineCallbacks
    def test_send_to_pypi_sacn(self) -> Any:
        receiver = pypi_sacn.sACNreceiver(bind_address="127.0.0.1")
        received: list[Any] = []
        lock = threading.Lock()

        def on_packet(packet: Any) -> None:
            with lock:
                received.append(packet)

        receiver.register_listener("universe", on_packet, universe=22)
        receiver.start()
        self.addCleanup(receiver.stop)
        receiver.join_multicast(22)
        yield sleep(0.3)
        backend = make_backend({"out": {"universe": 22, "priority": 120}})
        backend.startService()
        sacn(backend, "out").send(
            [(3, Value.from_raw(200, 8)), ((10, 11), Value.from_raw(258, 16))]
        )
        yield sleep(0.5)
        yield backend.stopService()
        yield sleep(0.3)
        with lock:
            packets = list(received)
        self.assertTrue(packets)
        last = [p for p in packets if tuple(p.dmxData[:3]) == (0, 0, 200)][-1]
        self.assertEqual(tuple(last.dmxData[9:11]), (1, 2))
        self.assertEqual(last.priority, 120)
        self.assertEqual(last.dmxStartCode, 0)
        self.assertEqual(len(packets[-1].dmxData), 512)


class TsharkTests(TestCase):
    """What netmidi sends decodes in Wireshark's ACN dissector without a Malformed mark."""

    if not LAB:
        skip = NOT_IN_LAB
    elif shutil.which("tshark") is None:
        skip = "tshark is not installed (apt-get install tshark; .ci/peers/sacn.sh does)"

    @inlineCallbacks
    def test_capture_decodes(self) -> Any:
        work = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, work, True)
        capture = work / "out.pcapng"
        tshark = subprocess.Popen(
            ["tshark", "-q", "-i", "lo", "-f", "udp port 5568", "-w", str(capture)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: tshark.poll() is None and tshark.kill())
        # tshark says "Capturing on 'Loopback'" once it listens
        assert tshark.stderr is not None
        for _ in range(5):
            if "Capturing" in tshark.stderr.readline().decode():
                break
        else:
            self.fail("tshark did not start capturing")
        yield sleep(1.0)  # it says so a little before it really captures
        backend = make_backend(
            {"a": {"universe": 5, "priority": 90}, "b": {"universe": 300, "sync": 400}},
            name="netmidi ünïcode",
        )
        wide = sacn(backend, "b").parse_channel("1+2")
        sacn(backend, "b").mapped(frozenset(), frozenset({wide}))  # output without priority
        backend.startService()
        sacn(backend, "a").send([(1, Value.from_raw(255, 8))])
        sacn(backend, "b").send([(wide, Value.from_raw(0x1234, 16))])
        yield sleep(0.3)
        yield backend.stopService()
        yield sleep(0.3)
        tshark.terminate()
        tshark.wait(10)
        decoded = subprocess.run(
            [
                "tshark", "-r", str(capture), "--enable-heuristic", "acn",
                "-o", "acn.dmx_enable:TRUE", "-T", "fields", "-E", "separator=|",
                "-e", "acn.dmx.source_name", "-e", "acn.dmx.priority", "-e", "acn.dmx.universe",
                "-e", "acn.dmx.seq_number", "-e", "acn.dmx.options", "-e", "acn.dmx.count",
                "-e", "_ws.malformed", "-e", "udp.length",
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = [line.split("|") for line in decoded.stdout.splitlines()]
        data = [r for r in rows if r[0]]
        self.assertTrue(data)
        self.assertFalse([r for r in rows if r[6]], "a packet was marked malformed")
        self.assertEqual({r[0] for r in data}, {"netmidi ünïcode"})
        self.assertEqual({r[2] for r in data}, {"5", "300"})
        self.assertIn("90", {r[1] for r in data})
        self.assertEqual({r[5] for r in data}, {"513"})  # start code + 512 slots
        # sync (49 bytes) and discovery packets are plain UDP to this tshark: check sizes
        others = {r[7] for r in rows if not r[0]}
        self.assertIn(str(8 + e131.SYNC_LENGTH), others)
        self.assertIn(str(8 + 120 + 2 * 2), others)  # discovery listing universes 5 and 300


OLA_IP = "10.77.0.1"  # OLA on lab0; netmidi on lab1


class OlaTests(TestCase):
    """OLA's olad with only its E1.31 plugin, on the lab's veth pair (recipe in sacn.md §7.2)."""

    if not LAB:
        skip = NOT_IN_LAB
    elif shutil.which("olad") is None:
        skip = "OLA is not installed (apt-get install ola; .ci/peers/sacn.sh does)"
    elif os.geteuid() != 0 or shutil.which("setpriv") is None:
        skip = "olad refuses to run as root, and switching to its user needs root and setpriv"

    timeout = 60

    def setUp(self) -> None:
        self.conf = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.conf, True)
        shutil.chown(self.conf, "olad")
        first = self.olad("first.log")
        _wait_for(lambda: (self.conf / "ola-e131.conf").exists(), 10)
        time.sleep(0.5)
        first.terminate()
        first.wait(10)
        for conf in self.conf.glob("ola-*.conf"):
            if conf.name in ("ola-e131.conf", "ola-server.conf"):
                continue
            text = conf.read_text()
            conf.write_text(text.replace("enabled = true", "enabled = false"))
        e131_conf = self.conf / "ola-e131.conf"
        lines = [
            f"ip = {OLA_IP}" if line.startswith("ip =") else line
            for line in e131_conf.read_text().splitlines()
        ]
        e131_conf.write_text("\n".join(lines) + "\n")
        self.server = self.olad("olad.log")
        self.addCleanup(self.stop_server)
        if not _wait_for(lambda: b"E1.31" in self.ola("ola_dev_info").stdout, 15):
            self.fail("olad did not come up: " + (self.conf / "olad.log").read_text()[-2000:])
        self.ola("ola_patch", "-d", "1", "-p", "0", "-u", "1")  # OLA sends universe 1
        self.ola("ola_patch", "-d", "1", "-p", "0", "-i", "-u", "2")  # OLA receives universe 2

    def olad(self, log: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                "setpriv", "--reuid=olad", "--regid=nogroup", "--clear-groups",
                "olad", "-c", str(self.conf), "-l", "3", "--no-register-with-dns-sd",
            ],
            stdout=(self.conf / log).open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop_server(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()

    def ola(self, *command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, capture_output=True, timeout=10)

    def get_dmx(self, universe: int) -> list[int]:
        url = f"http://127.0.0.1:9090/get_dmx?u={universe}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            levels: list[int] = json.load(reply)["dmx"]
        return levels

    def backend(self) -> SacnBackend:
        return make_backend(
            {"from_ola": {"universe": 1}, "to_ola": {"universe": 2, "priority": 100}},
            interface="lab1",
        )

    @inlineCallbacks
    def test_both_directions(self) -> Any:
        backend = self.backend()
        inp, sink = listen(backend, "from_ola", 1, 2, 3, 4)
        backend.startService()
        self.addCleanup(backend.stopService)
        yield sleep(0.3)
        self.ola("ola_set_dmx", "-u", "1", "-d", "10,20,30,40")
        yield sleep(0.5)
        self.assertEqual(inp.merger.levels[:5].tolist(), [10, 20, 30, 40, 0])
        self.assertEqual(
            sink.events[-1][1],
            [(n + 1, Value.from_raw(v, 8)) for n, v in enumerate([10, 20, 30, 40])],
        )
        sacn(backend, "to_ola").send(
            [(1, Value.from_raw(7, 8)), ((2, 3), Value.from_raw(0x0809, 16))]
        )
        yield sleep(0.5)
        self.assertEqual(self.get_dmx(2)[:4], [7, 8, 9, 0])
        # OLA's unpatch sends 3 Stream_Terminated packets with no slots: the source ends at once
        self.ola("ola_patch", "-r", "-d", "1", "-p", "0", "-u", "1")
        yield sleep(0.5)
        self.assertEqual(inp.merger.sources, {})
        self.assertEqual(inp.merger.levels[:4].tolist(), [0, 0, 0, 0])
        self.assertEqual(backend.bad.total, 0)
        yield backend.stopService()
        yield sleep(0.5)
        log = (self.conf / "olad.log").read_text()
        self.assertIn("termination", log)
