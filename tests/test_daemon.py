"""``twistd netmidi`` as a user runs it: start, route, stop on a signal, and show-file errors."""

from __future__ import annotations

import os
import signal
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

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


def daemon_files(directory: str) -> tuple[str, str]:
    """The pidfile and the logfile of :func:`daemonise`."""
    return os.path.join(directory, "netmidi.pid"), os.path.join(directory, "netmidi.log")


def daemonise(directory: str) -> Deferred[tuple[bytes, bytes, int]]:
    """``twistd --pidfile --logfile netmidi -c show.yaml`` (no ``-n``): fires when it detaches."""
    pidfile, logfile = daemon_files(directory)
    return twistd(
        f"--pidfile={pidfile}", f"--logfile={logfile}", "netmidi", "-c", "show.yaml", cwd=directory
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
        pidfile, logfile = daemon_files(self.directory)
        out, err, code = yield daemonise(self.directory)
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


class StartFailureTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_backend_that_cannot_start_gives_one_line_and_status_1(self):  # type: ignore[no-untyped-def]
        """A required MIDI port that is missing: a clear line, no traceback, exit status 1."""
        try:
            import rtmidi  # noqa: F401
        except ImportError:
            raise SkipTest("python-rtmidi is not installed") from None
        directory = os.path.abspath(self.mktemp())
        write_show(
            directory,
            """
            instances:
              keys: {backend: midi, read: "No Such Port", required: true}
            """,
        )
        daemon = start_daemon(reactor, "-c", "show.yaml", cwd=directory)
        self.addCleanup(daemon.ensure_stopped)
        code = yield daemon.exit_code
        self.assertEqual(code, 1, daemon.output)
        self.assertNotIn("Traceback", daemon.output)
        self.assertIn(
            "midi: cannot start: required MIDI ports missing: keys input 'No Such Port';"
            " netmidi exits",
            daemon.output,
        )

    @inlineCallbacks
    def test_daemon_that_cannot_start_tells_the_terminal(self):  # type: ignore[no-untyped-def]
        """Daemonised, twistd's parent waits for the start: it must hear the failure and exit 1.

        192.0.2.1 (TEST-NET-1) is never a local address, so binding it fails and nothing is sent.
        """
        directory = os.path.abspath(self.mktemp())
        write_show(
            directory,
            """
            backends:
              sacn: {bind: "192.0.2.1 5568"}
            instances:
              out: {backend: sacn, universe: 1}
            """,
        )
        pidfile, logfile = daemon_files(directory)
        out, err, code = yield daemonise(directory)
        self.assertEqual(code, 1, err)
        self.assertIn(b"sacn: cannot start:", err)
        self.assertFalse(os.path.exists(pidfile))
        with open(logfile) as stream:
            log = stream.read()
        self.assertIn("sacn: cannot start:", log)
        self.assertNotIn("Traceback", log)
