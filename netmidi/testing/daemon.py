"""Run ``twistd netmidi`` as a child process in integration tests and talk to it.

The child runs from this source tree (``PYTHONPATH``), so the tests exercise the plugin,
``netmidi.tap`` and the show-file errors exactly as a user meets them.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import netmidi

TREE = os.path.dirname(os.path.dirname(os.path.abspath(netmidi.__file__)))
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def daemon_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TREE, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DaemonProcess(ProcessProtocol):
    """A twistd child whose output is collected; ``wait_for`` fires when a text appears."""

    def __init__(self) -> None:
        self.output = ""
        self.exit_code: Deferred[int | None] = Deferred()
        self._waiting: list[tuple[str, Deferred[str]]] = []

    def _received(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        for entry in list(self._waiting):
            if entry[0] in self.output:
                self._waiting.remove(entry)
                entry[1].callback(self.output)

    outReceived = _received
    errReceived = _received

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code = value.exitCode if isinstance(value, (ProcessDone, ProcessTerminated)) else None
        for text, waiting in self._waiting:
            waiting.errback(AssertionError(f"daemon ended before {text!r}:\n{self.output}"))
        self._waiting.clear()
        self.exit_code.callback(code)

    def wait_for(self, reactor: Any, text: str, timeout: float = 20.0) -> Deferred[str]:
        """Fires with the output so far once ``text`` has been printed (fails after timeout)."""
        waiting: Deferred[str] = Deferred()
        if text in self.output:
            waiting.callback(self.output)
            return waiting
        self._waiting.append((text, waiting))
        waiting.addTimeout(timeout, reactor)
        return waiting

    def ensure_stopped(self) -> Deferred[int | None]:
        """For test clean-up: kill the daemon if it still runs, fire when it has gone."""
        if not self.exit_code.called:
            return self.stop(signal.SIGKILL)
        return self.exit_code

    def stop(self, sig: int = signal.SIGTERM) -> Deferred[int | None]:
        """Signal the daemon (SIGTERM by default); fires with its exit status."""
        transport: Any = self.transport  # IProcessTransport; zope interfaces confuse mypy
        if transport is not None and transport.pid is not None:
            transport.signalProcess(sig)
        return self.exit_code


def start_daemon(
    reactor: Any, *arguments: str, cwd: str, twistd: tuple[str, ...] = ("-n",)
) -> DaemonProcess:
    """Spawn ``twistd [twistd options] netmidi ARGUMENTS`` in ``cwd`` (no pidfile)."""
    process = DaemonProcess()
    argv = [*TWISTD, *twistd, "--pidfile=", "netmidi", *arguments]
    reactor.spawnProcess(process, sys.executable, argv, env=daemon_environment(), path=cwd)
    return process
