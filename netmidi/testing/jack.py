"""A private JACK server on the dummy driver: real MIDI ports without sound hardware.

Tests and ``bench/midi.py`` start one under a unique server name so they never touch a user's
JACK server, and point this process (and any child they start) at it through ``JACK_*``
environment variables. Debian's ``jackd2`` provides ``jackd`` and ``jack_wait``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any


def _die_with_parent() -> None:
    """In the child: end jackd if the test run is killed before it can stop the server."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


class JackUnavailable(Exception):
    """jackd is not installed or did not start; the message says which."""


class JackDummy:
    """``jackd --no-realtime -d dummy`` under a unique name, with its environment."""

    def __init__(self, rate: int = 48000, period: int = 32) -> None:
        self.rate = rate
        self.period = period
        self.name = f"netmidi-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.environment = {
            "JACK_DEFAULT_SERVER": self.name,
            "JACK_NO_AUDIO_RESERVATION": "1",
            "JACK_NO_START_SERVER": "1",
        }
        self._process: subprocess.Popen[bytes] | None = None
        self._saved: dict[str, str | None] = {}
        self._log = tempfile.TemporaryFile()

    def start(self, timeout: float = 10.0) -> None:
        """Start the server, wait until it accepts clients, and point this process at it."""
        jackd, jack_wait = shutil.which("jackd"), shutil.which("jack_wait")
        if jackd is None or jack_wait is None:
            raise JackUnavailable("jackd is not installed (Debian: apt-get install jackd2)")
        env = {**os.environ, **self.environment}
        self._process = subprocess.Popen(
            [jackd, "--no-realtime", "-n", self.name, "-d", "dummy"]
            + ["-r", str(self.rate), "-p", str(self.period)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        waited = subprocess.run(
            [jack_wait, "-s", self.name, "-w", "-t", str(int(timeout))],
            env=env,
            capture_output=True,
            check=False,
        )
        if waited.returncode != 0 or self._process.poll() is not None:
            self.stop()
            raise JackUnavailable(f"jackd did not start: {self.output()[-500:]}")
        for key, value in self.environment.items():
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        """Stop the server (ours, by its process) and restore the environment."""
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class JackPeer:
    """Another program's MIDI ports on JACK: ``<client>-tx:midi`` sends, ``<client>-rx:midi``
    records what arrives with its arrival time (``time.perf_counter``).

    Needs python-rtmidi and a running server (see :class:`JackDummy`).
    """

    def __init__(self, client: str = "peer") -> None:
        import rtmidi

        self.tx_name = f"{client}-tx"
        self.rx_name = f"{client}-rx"
        self.received: list[tuple[float, list[int]]] = []
        self._rtmidi = rtmidi
        self._out: Any = None
        self._in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, self.rx_name)
        self._in.ignore_types(sysex=False, timing=False, active_sense=False)
        self._in.set_callback(self._arrived)
        self._in.open_virtual_port("midi")
        self.replug()

    def _arrived(self, event: tuple[list[int], float], _data: object) -> None:
        self.received.append((time.perf_counter(), event[0]))

    def send(self, message: list[int] | bytes) -> None:
        self._out.send_message(message)

    def unplug(self) -> None:
        """Remove the sending client and its port, as if the device were unplugged."""
        self._out.close_port()
        self._out.delete()
        self._out = None

    def replug(self) -> None:
        # python-rtmidi cannot reopen a closed virtual port: a new client it is.
        self._out = self._rtmidi.MidiOut(self._rtmidi.API_UNIX_JACK, self.tx_name)
        self._out.open_virtual_port("midi")

    def close(self) -> None:
        self._in.cancel_callback()
        for port in (self._out, self._in):
            if port is not None:
                port.close_port()
                port.delete()
