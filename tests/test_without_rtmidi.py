"""Without python-rtmidi (no wheel for newer Pythons) netmidi runs every other backend."""

from __future__ import annotations

import os

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from netmidi.testing.daemon import TWISTD, daemon_environment
from tests.showfiles import write_show

# Put first on the path, this makes "import rtmidi" fail as on a Python without the wheel.
BLOCKER = "raise ImportError('No module named rtmidi')\n"


class WithoutRtmidiTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        blocker = os.path.join(self.directory, "blocker")
        os.makedirs(blocker)
        with open(os.path.join(blocker, "rtmidi.py"), "w") as stream:
            stream.write(BLOCKER)
        self.env = daemon_environment()
        self.env["PYTHONPATH"] = os.pathsep.join([blocker, self.env["PYTHONPATH"]])

    def check(self, show: str):  # type: ignore[no-untyped-def]
        write_show(self.directory, show)
        return getProcessOutputAndValue(
            TWISTD[0],
            [*TWISTD[1:], "-n", "netmidi", "-c", "show.yaml", "--check"],
            env=self.env,
            path=self.directory,
        )

    @inlineCallbacks
    def test_show_without_midi_instances_runs(self):  # type: ignore[no-untyped-def]
        out, err, code = yield self.check(
            "instances:\n  a: {backend: loopback}\n  b: {backend: loopback}\nmap:\n  - a.x > b.y\n"
        )
        self.assertEqual((code, err), (0, b""))

    @inlineCallbacks
    def test_midi_instance_gives_one_clear_line(self):  # type: ignore[no-untyped-def]
        out, err, code = yield self.check("instances:\n  keys: {backend: midi, read: 0}\n")
        self.assertEqual(code, 1)
        [line] = err.decode().splitlines()
        self.assertTrue(line.startswith("show.yaml:2: backends.midi: backend 'midi' cannot be"))
        self.assertIn("needs python-rtmidi", line)
