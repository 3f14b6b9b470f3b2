"""End to end: ``twistd netmidi`` with a maweb instance against the fake console on 127.0.0.1."""

from __future__ import annotations

import os
import re
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

import netmidi
from netmidi.codec.maweb import password_hash
from netmidi.testing.daemon import DaemonProcess, start_daemon
from netmidi.testing.fakeconsole import FakeConsole

PASSWORD = "d4emon-pw"

SHOW = """\
backends:
  maweb:
    interval: 10
    detect: on
instances:
  ma:
    backend: maweb
    host: "{host}"
    user: netmidi
    password: {password}
  lo:
    backend: loopback
map:
  - ma.page1.fader1 > lo.level
  - lo.level > ma.page1.fader2
  - ma.page1.button101 > lo.go
  - lo.go > ma.page1.flash3
"""


class DaemonTests(TestCase):
    timeout = 60

    def write_show(self, text: str) -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "show.yaml"), "w") as show:
            show.write(text)
        return directory

    def daemon(self, directory: str, *arguments: str) -> DaemonProcess:
        process = start_daemon(reactor, "-c", "show.yaml", *arguments, cwd=directory)

        def stop_if_running() -> Any:
            if not process.exit_code.called:
                return process.stop()
            return None

        self.addCleanup(stop_if_running)
        return process

    @inlineCallbacks
    def test_console_through_daemon_and_back(self) -> Any:
        """Console fader and button changes come out as events; events move console faders."""
        console = FakeConsole(reactor, users={"netmidi": PASSWORD})
        console.listen()
        self.addCleanup(console.stop)
        process = self.daemon(self.write_show(SHOW.format(host=console.url, password=PASSWORD)))
        yield process.wait_for(reactor, "logged in to the gma2 web remote")
        yield process.wait_for(reactor, "detect: ma.page1.fader1 = 0.000000")

        console.executor(1, 1).fader = 0.6
        console.executor(1, 101).running = True
        yield process.wait_for(reactor, "detect: ma.page1.fader1 = 0.600000")
        yield process.wait_for(reactor, "detect: ma.page1.button101 = 1.000000")
        yield console.until(lambda: console.executor(1, 2).fader == 0.6).addTimeout(10, reactor)
        yield console.until(lambda: console.executor(1, 3).running).addTimeout(10, reactor)

        code = yield process.stop()
        self.assertEqual(code, 0)
        self.assertEqual(console.closed_sessions, [1])  # logged out, the slot is free again
        for secret in (PASSWORD, password_hash(PASSWORD)):
            self.assertNotIn(secret, process.output)

    @inlineCallbacks
    def test_bad_channel_in_show(self) -> Any:
        """A maweb channel that does not exist stops the daemon with the file, line and why."""
        show = SHOW.format(host="127.0.0.1:9", password="x").replace(
            "lo.go > ma.page1.flash3", "lo.go > ma.page1.flash93"
        )
        process = self.daemon(self.write_show(show), "--check")
        code = yield process.exit_code
        self.assertEqual(code, 1)
        self.assertIn("show.yaml:", process.output)
        self.assertIn("expected flash on a fader executor 1-90", process.output)

    @inlineCallbacks
    def test_documented_example(self) -> Any:
        """The show file on the backend's documentation page passes the daemon's check."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(netmidi.__file__)))
        with open(os.path.join(root, "docs", "backends", "maweb.rst")) as page:
            block = re.search(r"code-block:: yaml\n\n((?:   .*\n|\n)+)", page.read())
        assert block is not None
        example = "\n".join(line[3:] for line in block.group(1).splitlines())
        process = self.daemon(self.write_show(example), "--check")
        code = yield process.exit_code
        self.assertEqual(code, 0, process.output)
        self.assertIn("OK: 2 instances, 5 routes", process.output)
