"""``twistd netmidi`` as a user runs it: start, route, stop on a signal, and show-file errors."""

from __future__ import annotations

import os
import signal
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from netmidi.testing.daemon import TWISTD, DaemonProcess, daemon_environment, start_daemon
from tests.showfiles import write_show

ROUTED = """
backends:
  loopback: {detect: on}
instances:
  desk: {backend: loopback, initial: {fader1: 0.25}}
  lights: {backend: loopback}
map:
  - desk.fader1 > lights.dimmer{1..2}
"""


def twistd(*arguments: str, cwd: str) -> Deferred[tuple[bytes, bytes, int]]:
    return getProcessOutputAndValue(
        TWISTD[0], [*TWISTD[1:], *arguments], env=daemon_environment(), path=cwd
    )


class DaemonTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def start(self, *arguments: str) -> DaemonProcess:
        daemon = start_daemon(reactor, *arguments, cwd=self.directory)
        self.addCleanup(daemon.ensure_stopped)
        return daemon

    @inlineCallbacks
    def test_starts_routes_and_stops_on_sigterm(self):  # type: ignore[no-untyped-def]
        write_show(self.directory, ROUTED)
        daemon = self.start("-c", "show.yaml")
        yield daemon.wait_for(
            reactor, "netmidi running show.yaml: 1 backends, 2 instances, 2 routes"
        )
        output = yield daemon.wait_for(reactor, "detect: lights.dimmer2")
        self.assertIn("detect: desk.fader1 = 0.250000 (16384/65535)", output)
        self.assertIn("detect: lights.dimmer1 = 0.250000 (16384/65535)", output)
        code = yield daemon.stop(signal.SIGTERM)
        self.assertEqual(code, 0)
        self.assertIn("netmidi stopping", daemon.output)
        self.assertNotIn("Traceback", daemon.output)

    @inlineCallbacks
    def test_sigint_stops_cleanly(self):  # type: ignore[no-untyped-def]
        write_show(self.directory, ROUTED)
        daemon = self.start("-c", "show.yaml")
        yield daemon.wait_for(reactor, "netmidi running")
        code = yield daemon.stop(signal.SIGINT)
        self.assertEqual(code, 0)

    @inlineCallbacks
    def test_runs_as_daemon_with_pidfile_and_logfile(self):  # type: ignore[no-untyped-def]
        write_show(self.directory, ROUTED)
        pidfile = os.path.join(self.directory, "netmidi.pid")
        logfile = os.path.join(self.directory, "netmidi.log")
        out, err, code = yield twistd(
            f"--pidfile={pidfile}",
            f"--logfile={logfile}",
            "netmidi",
            "-c",
            "show.yaml",
            cwd=self.directory,
        )
        self.assertEqual(code, 0, err)
        for _ in range(100):
            if os.path.exists(pidfile) and "netmidi running" in open(logfile).read():
                break
            yield deferLater(reactor, 0.1, lambda: None)
        with open(pidfile) as stream:
            pid = int(stream.read())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            yield deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(os.path.exists(pidfile))
        with open(logfile) as stream:
            log = stream.read()
        self.assertIn("netmidi stopping", log)
        self.assertIn("Server Shut Down.", log)

    @inlineCallbacks
    def test_check_valid(self):  # type: ignore[no-untyped-def]
        write_show(self.directory, ROUTED)
        out, err, code = yield twistd(
            "-n", "netmidi", "-c", "show.yaml", "--check", cwd=self.directory
        )
        self.assertEqual((out, err, code), (b"show.yaml: OK: 2 instances, 2 routes\n", b"", 0))

    @inlineCallbacks
    def test_broken_show_file_gives_one_line_per_error(self):  # type: ignore[no-untyped-def]
        write_show(
            self.directory,
            "instances:\n  a: {backend: loopback, colour: red}\nmap:\n  - a.x > b.y\n",
        )
        for extra in ([], ["--check"]):
            out, err, code = yield twistd(
                "-n", "netmidi", "-c", "show.yaml", *extra, cwd=self.directory
            )
            self.assertEqual(code, 1)
            self.assertEqual(
                err.decode().splitlines(),
                [
                    "show.yaml:2: instances.a.colour: unknown option, expected one of: initial",
                    "show.yaml:4: map: no instance named 'b' in 'b.y', expected one of: a",
                ],
            )
            self.assertEqual(out, b"")

    @inlineCallbacks
    def test_yaml_syntax_error(self):  # type: ignore[no-untyped-def]
        write_show(self.directory, "instances:\n  a: [\n")
        out, err, code = yield twistd("-n", "netmidi", "-c", "show.yaml", cwd=self.directory)
        self.assertEqual(code, 1)
        [line] = err.decode().splitlines()
        self.assertRegex(line, r"^show\.yaml:\d+: YAML syntax: ")

    @inlineCallbacks
    def test_overrides_on_the_command_line(self):  # type: ignore[no-untyped-def]
        write_show(self.directory, ROUTED)
        out, err, code = yield twistd(
            "-n",
            "netmidi",
            "-c",
            "show.yaml",
            "-b",
            "loopback.detect=maybe",
            "--check",
            cwd=self.directory,
        )
        self.assertEqual(code, 1)
        self.assertEqual(
            err.decode(),
            "command line -b loopback.detect=maybe: backends.loopback.detect: got 'maybe',"
            " expected one of: off, on, verbose\n",
        )

    @inlineCallbacks
    def test_shipped_example_show_is_valid(self):  # type: ignore[no-untyped-def]
        from netmidi.testing.daemon import TREE

        out, err, code = yield twistd(
            "-n",
            "netmidi",
            "-c",
            os.path.join(TREE, "etc", "show.yaml"),
            "--check",
            cwd=self.directory,
        )
        self.assertEqual(code, 0, err)
