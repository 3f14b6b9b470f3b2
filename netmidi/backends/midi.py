"""Local MIDI ports through python-rtmidi (ALSA, JACK, CoreMIDI, Windows MM).

The MIDI API is reached through a small port factory (:class:`MidiApi`), python-rtmidi's in
:class:`RtMidiApi` and a fake one in :mod:`netmidi.testing.midi`, so everything above it is tested
without sound hardware. python-rtmidi calls back on its own thread: the callback only appends to a
queue and wakes the reactor once, and the reactor drains the queue in one batch per turn, so no
message is lost or reordered and the router sees one batch per turn. Output is written at once.
Ports are found by index or name prefix; a port that is missing or unplugged is looked for again
every ``rescan`` seconds and reopened when it comes back.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

try:
    import rtmidi
    from rtmidi.midiutil import get_api_from_environment
except ImportError as error:  # pragma: no cover - depends on the machine
    raise ImportError(
        "the midi backend needs python-rtmidi (pip install python-rtmidi, or the 'midi' extra "
        f"of netmidi): {error}"
    ) from None

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from netmidi.backend import Backend, Channel, Event, Instance, Reactor
from netmidi.badinput import BadInput
from netmidi.codec.midi import (
    EPN_TX,
    MidiEventDecoder,
    MidiEventEncoder,
    MidiStreamParser,
    parse_midi_channel,
)
from netmidi.options import Option, choice, flag, number, text

APIS = {
    "default": rtmidi.API_UNSPECIFIED,
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "windows": rtmidi.API_WINDOWS_MM,
}

# Messages held between rtmidi's thread and the reactor; beyond this the reactor is stalled and
# input is dropped (and counted) rather than growing memory without bound.
MAX_QUEUE = 100_000

Deliver = Callable[[list[int]], None]


class MidiInputPort(Protocol):
    def close(self) -> None: ...


class MidiOutputPort(Protocol):
    def send(self, message: bytes) -> None: ...

    def close(self) -> None: ...


class MidiApi(Protocol):
    """What the backend needs from a MIDI API: port lists and ports; index None means virtual."""

    def input_ports(self) -> list[str]: ...

    def output_ports(self) -> list[str]: ...

    def open_input(self, index: int | None, name: str, deliver: Deliver) -> MidiInputPort: ...

    def open_output(self, index: int | None, name: str) -> MidiOutputPort: ...

    def close(self) -> None: ...


ApiFactory = Callable[[str, str], MidiApi]
"""Opens a MIDI API by option name (``alsa``, ``jack``, ...) for a client name."""


JACK_POLL = (0.0005, 0.002, 1.0)
"""Seconds between reads of JACK input ports: while input flows, when idle, and the idle time.

JACK runs port callbacks on its realtime process thread. A Python callback there waits for the
GIL, and a cycle that finishes late makes JACK drop or repeat MIDI events (an xrun). So for JACK,
rtmidi queues input in C++ (no GIL) and a thread of ours takes it from the queue: every 0.5 ms
while input flows, every 2 ms after a second without input (so an idle daemon wakes 500 rather
than 2,000 times a second; the first event after a pause waits at most 2 ms).
"""

JACK_QUEUE = 16384
"""rtmidi's input queue per JACK port, in messages: many polls' worth even at 30,000 events/s."""


class _Poller:
    """Takes queued input from rtmidi ports on one thread of ours and passes it on in order."""

    def __init__(self, intervals: tuple[float, float, float]) -> None:
        self._fast, self._slow, self._idle = intervals
        self._ports: dict[Any, Deliver] = {}
        self._lock = threading.Lock()  # held while reading, so a port is never read as it closes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, port: Any, deliver: Deliver) -> None:
        with self._lock:
            self._ports[port] = deliver
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="netmidi JACK input", daemon=True
            )
            self._thread.start()

    def remove(self, port: Any) -> None:
        with self._lock:
            self._ports.pop(port, None)

    def _run(self) -> None:
        interval = self._fast
        last_input = time.monotonic()
        while not self._stop.wait(interval):
            got = False
            with self._lock:
                for port, deliver in self._ports.items():
                    event = port.get_message()
                    while event is not None:
                        got = True
                        deliver(event[0])
                        event = port.get_message()
            if got:
                last_input, interval = time.monotonic(), self._fast
            elif interval is self._fast and time.monotonic() - last_input > self._idle:
                interval = self._slow

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class _RtInput:
    """An open rtmidi port; closing it also takes it off its API's list of open ports."""

    def __init__(self, port: Any, open_ports: list[Any], poller: _Poller | None = None) -> None:
        self._port = port
        self._open_ports = open_ports
        self._poller = poller
        open_ports.append(port)

    def close(self) -> None:
        self._open_ports.remove(self._port)
        if self._poller is not None:
            self._poller.remove(self._port)
        elif isinstance(self._port, rtmidi.MidiIn):
            self._port.cancel_callback()
        self._port.close_port()
        self._port.delete()


class _RtOutput(_RtInput):
    def __init__(self, port: Any, open_ports: list[Any]) -> None:
        super().__init__(port, open_ports)
        self.send = port.send_message


class RtMidiApi:
    """python-rtmidi behind :class:`MidiApi`; one rtmidi client per open port, as rtmidi wants.

    Port lists come from an open port of the same direction when there is one: with JACK every
    rtmidi object is a client woken every period, so a separate scanning client would cost CPU
    for as long as the daemon runs. A scanner exists only while no port of its direction is open.
    """

    def __init__(self, api: str, client: str) -> None:
        compiled = rtmidi.get_compiled_api()
        self._api = get_api_from_environment(APIS[api]) if api == "default" else APIS[api]
        if self._api != rtmidi.API_UNSPECIFIED and self._api not in compiled:
            names = ", ".join(rtmidi.get_api_name(a) for a in compiled)
            raise RuntimeError(f"API {api!r} is not built into python-rtmidi here ({names})")
        self._client = client
        self._open: dict[type, list[Any]] = {rtmidi.MidiIn: [], rtmidi.MidiOut: []}
        self._scanners: dict[type, Any] = {}
        self.input_ports()  # an unusable API (no ALSA sequencer, no JACK server) fails here
        self._api = self._scanners[rtmidi.MidiIn].get_current_api()
        self._poller = _Poller(JACK_POLL) if self._api == rtmidi.API_UNIX_JACK else None

    def _ports(self, kind: type) -> list[str]:
        open_ports = self._open[kind]
        if open_ports:
            lister = open_ports[0]
        else:
            lister = self._scanners.get(kind)
            if lister is None:
                lister = self._scanners[kind] = kind(self._api, self._client)
        names: list[str] = lister.get_ports()
        return names

    def input_ports(self) -> list[str]:
        return self._ports(rtmidi.MidiIn)

    def output_ports(self) -> list[str]:
        return self._ports(rtmidi.MidiOut)

    def open_input(self, index: int | None, name: str, deliver: Deliver) -> MidiInputPort:
        queue = JACK_QUEUE if self._poller is not None else 1024
        port = rtmidi.MidiIn(self._api, self._client, queue_size_limit=queue)
        try:
            port.ignore_types(sysex=False, timing=False, active_sense=False)
            if self._poller is None:
                port.set_callback(lambda event, _data: deliver(event[0]))
            self._open_port(port, index, name)
        except BaseException:
            port.delete()
            raise
        if self._poller is not None:
            self._poller.add(port, deliver)
        self._drop_scanner(rtmidi.MidiIn)
        return _RtInput(port, self._open[rtmidi.MidiIn], self._poller)

    def open_output(self, index: int | None, name: str) -> MidiOutputPort:
        port = rtmidi.MidiOut(self._api, self._client)
        try:
            self._open_port(port, index, name)
        except BaseException:
            port.delete()
            raise
        self._drop_scanner(rtmidi.MidiOut)
        return _RtOutput(port, self._open[rtmidi.MidiOut])

    @staticmethod
    def _open_port(port: Any, index: int | None, name: str) -> None:
        if index is None:
            port.open_virtual_port(name)
        else:
            port.open_port(index, name)

    def _drop_scanner(self, kind: type) -> None:
        scanner = self._scanners.pop(kind, None)
        if scanner is not None:
            scanner.delete()

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        for scanner in self._scanners.values():
            scanner.delete()
        self._scanners.clear()


def match_port(spec: str, names: Sequence[str]) -> int | None:
    """The port a ``read``/``write`` value names: an index, else the first name with that prefix."""
    if spec.isdigit():
        index = int(spec)
        return index if index < len(names) else None
    for index, name in enumerate(names):
        if name.startswith(spec):
            return index
    return None


def port_list(names: Sequence[str]) -> str:
    return ", ".join(f"{index}: {name}" for index, name in enumerate(names)) or "none"


class _Endpoint:
    """One port of an instance: found by index or name prefix, or a virtual port we create."""

    def __init__(
        self, direction: str, spec: str, virtual: bool, port_name: str, bad: BadInput
    ) -> None:
        self.direction = direction  # "input" or "output"
        self.spec = spec
        self.virtual = virtual
        self.port_name = port_name  # the name of our own port
        self.port: Any = None  # MidiInputPort | MidiOutputPort while open
        self.name = spec if virtual else ""  # the device port's name while open
        self.waiting_logged = False
        self.failure_logged = False
        self.bad = bad
        self.parser = MidiStreamParser(on_drop=self._dropped)
        self.decoder = MidiEventDecoder()

    def _dropped(self, reason: str) -> None:
        self.bad.drop(reason, source=str(self))

    def __str__(self) -> str:
        return f"virtual {self.direction} {self.spec!r}" if self.virtual else self.name


class MidiInstance(Instance):
    backend: MidiBackend

    def __init__(self, backend: MidiBackend, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(backend, name, options)
        self._encoder = MidiEventEncoder(options["epn-tx"])
        self.required: bool = options["required"]
        self.bad = BadInput(self.log, f"midi {name}", backend.reactor.seconds)
        self.endpoints: list[_Endpoint] = []
        read = options.get("read") or options.get("source")
        write = options.get("write") or options.get("target")
        virtual = options.get("virtual")
        if read is not None:
            self.endpoints.append(_Endpoint("input", read, False, f"{name} in", self.bad))
        if write is not None:
            self.endpoints.append(_Endpoint("output", write, False, f"{name} out", self.bad))
        if virtual is not None:
            self.endpoints.append(_Endpoint("input", virtual, True, virtual, self.bad))
            self.endpoints.append(_Endpoint("output", virtual, True, virtual, self.bad))
        self._outputs: list[_Endpoint] = []
        self._queue: deque[tuple[_Endpoint, list[int]]] = deque()
        self._scheduled = False
        self._overflow = 0
        self.running = False

    def parse_channel(self, spec: str) -> Channel:
        return parse_midi_channel(spec)

    def send(self, events: Sequence[Event]) -> None:
        if not self._outputs:
            return
        encode = self._encoder.encode
        messages = [
            message
            for channel, value in events
            for message in encode(channel, value)  # type: ignore[arg-type]
        ]
        for endpoint in list(self._outputs):
            send = endpoint.port.send
            try:
                for message in messages:
                    send(message)
            except Exception as error:
                self.lost(endpoint, f"writing failed ({error})")

    # rtmidi's thread ----------------------------------------------------------------------------

    def receive(self, endpoint: _Endpoint, message: list[int]) -> None:
        """Called on the MIDI API's thread: queue the message and wake the reactor once."""
        queue = self._queue
        if len(queue) >= MAX_QUEUE:
            self._overflow += 1
            return
        # Append before testing the flag: the reactor clears the flag before it drains.
        queue.append((endpoint, message))
        if not self._scheduled:
            self._scheduled = True
            self.backend.reactor.callFromThread(self.drain)

    # the reactor thread --------------------------------------------------------------------------

    def drain(self) -> None:
        """Parse and emit everything queued so far as one batch, in arrival order."""
        self._scheduled = False
        queue = self._queue
        if self._overflow:
            overflow, self._overflow = self._overflow, 0
            for _ in range(overflow):
                self.bad.drop("input queue full (the daemon fell behind)")
        events: list[Event] = []
        source: _Endpoint | None = None
        messages: list[bytes] = []
        for _ in range(len(queue)):
            endpoint, data = queue.popleft()
            if endpoint is not source:
                if source is not None and messages:
                    events.extend(source.decoder.decode(messages))
                source, messages = endpoint, []
            parser = endpoint.parser
            messages.extend(parser.feed(data))
            parser.reset()  # the API delivers whole messages: a cut one is not completed later
        if source is not None and messages:
            events.extend(source.decoder.decode(messages))
        if events and self.running:
            self.emit(events)

    def opened(self, endpoint: _Endpoint, port: Any, name: str) -> None:
        endpoint.port, endpoint.name = port, name
        endpoint.waiting_logged = endpoint.failure_logged = False
        if endpoint.direction == "output":
            self._outputs.append(endpoint)

    def lost(self, endpoint: _Endpoint, why: str) -> None:
        """A port went away (unplugged or failing): close it and look for it again later."""
        self.log.warn(
            "midi {instance}: {direction} port {port} {why}; reopening it when it comes back",
            instance=self.name,
            direction=endpoint.direction,
            port=str(endpoint),
            why=why,
        )
        self.close(endpoint)

    def close(self, endpoint: _Endpoint) -> None:
        port, endpoint.port = endpoint.port, None
        if endpoint in self._outputs:
            self._outputs.remove(endpoint)
        endpoint.parser.reset()
        if port is not None:
            try:
                port.close()
            except Exception as error:
                self.log.warn(
                    "midi {instance}: closing {port} failed: {error}",
                    instance=self.name,
                    port=str(endpoint),
                    error=error,
                )


class MidiPortMissing(Exception):
    """A port marked ``required`` does not exist at start."""


class MidiBackend(Backend):
    name = "midi"
    global_options = {
        "list": Option(
            flag, False, "log every MIDI input and output port (index and name) at start"
        ),
        "api": Option(
            choice(*APIS),
            "default",
            "the MIDI API: alsa, jack, coremidi or windows (default: the platform's, or the "
            "RTMIDI_API environment variable)",
        ),
        "name": Option(text(), "netmidi", "the client name other programs see"),
        "rescan": Option(
            number(0.1, 60.0), 1.0, "seconds between looks for missing or unplugged ports"
        ),
    }
    instance_options = {
        "read": Option(text(), None, "input port to read: an index or a name prefix"),
        "source": Option(text(), None, "another name for read"),
        "write": Option(text(), None, "output port to write: an index or a name prefix"),
        "target": Option(text(), None, "another name for write"),
        "virtual": Option(text(), None, "create an input and output port of this name"),
        "epn-tx": Option(
            choice(*EPN_TX),
            "full",
            "short: (N)RPN output leaves the parameter selected; full: resets it after each value",
        ),
        "required": Option(flag, False, "refuse to start when a port is missing"),
    }

    def __init__(
        self, reactor: Reactor, options: Mapping[str, Any], api_factory: ApiFactory = RtMidiApi
    ) -> None:
        super().__init__(reactor, options)
        self._api_factory = api_factory
        self._api: MidiApi | None = None
        self._api_failure_logged = False
        self._scan_failure_logged = False
        self._poll: LoopingCall | None = None
        self.instances: dict[str, MidiInstance] = {}  # type: ignore[assignment]

    def create_instance(self, name: str, options: Mapping[str, Any]) -> MidiInstance:
        return MidiInstance(self, name, options)

    def check(self) -> list[str]:
        errors = []
        for name, instance in self.instances.items():
            options = instance.options
            for option, alias in (("read", "source"), ("write", "target")):
                if options.get(option) is not None and options.get(alias) is not None:
                    errors.append(f"instance {name}: give {option} or {alias}, not both")
            if not instance.endpoints:
                errors.append(f"instance {name}: expected read, write or virtual")
        return errors

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._rescan(starting=True)
        missing = [
            f"{instance.name} {endpoint.direction} {endpoint.spec!r}"
            for instance in self.instances.values()
            if instance.required
            for endpoint in instance.endpoints
            if endpoint.port is None
        ]
        if missing:
            self.log.critical("midi: required ports missing: {missing}", missing=", ".join(missing))
            raise MidiPortMissing("required MIDI ports missing: " + ", ".join(missing))
        for instance in self.instances.values():
            instance.running = True
        self._poll = LoopingCall(self._rescan)
        self._poll.clock = self.reactor
        self._poll.start(self.options["rescan"], now=False)

    def stopService(self) -> Deferred[None]:
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        for instance in self.instances.values():
            instance.running = False
            for endpoint in instance.endpoints:
                instance.close(endpoint)
        if self._api is not None:
            api, self._api = self._api, None
            try:
                api.close()
            except Exception as error:
                self.log.warn("midi: closing the MIDI API failed: {error}", error=error)
        d: Deferred[None] = super().stopService()  # type: ignore[no-untyped-call]
        return d

    def _open_api(self) -> MidiApi | None:
        api_name = self.options["api"]
        try:
            self._api = self._api_factory(api_name, self.options["name"])
        except Exception as error:
            if not self._api_failure_logged:
                self._api_failure_logged = True
                self.log.error(
                    "midi: cannot use the MIDI API {api}: {error}; trying again every {rescan} s",
                    api=api_name,
                    error=error,
                    rescan=self.options["rescan"],
                )
            return None
        if self._api_failure_logged:
            self.log.info("midi: the MIDI API {api} works now", api=api_name)
            self._api_failure_logged = False
        return self._api

    def _rescan(self, starting: bool = False) -> None:
        """Open what is missing, close what disappeared; run at start and every ``rescan`` s."""
        api = self._api or self._open_api()
        if api is None:
            return
        try:
            ports = {"input": api.input_ports(), "output": api.output_ports()}
        except Exception as error:
            if not self._scan_failure_logged:
                self._scan_failure_logged = True
                self.log.error("midi: listing the MIDI ports failed: {error}", error=error)
            return
        self._scan_failure_logged = False
        if starting and self.options["list"]:
            for direction, names in ports.items():
                for index, name in enumerate(names):
                    self.log.info(
                        "midi {direction} port {index}: {name}",
                        direction=direction,
                        index=index,
                        name=name,
                    )
        for instance in self.instances.values():
            for endpoint in instance.endpoints:
                names = ports[endpoint.direction]
                if endpoint.port is not None:
                    if not endpoint.virtual and endpoint.name not in names:
                        instance.lost(endpoint, "disappeared")
                    continue
                if endpoint.virtual:
                    self._open(api, instance, endpoint, None, endpoint.spec)
                    continue
                found = match_port(endpoint.spec, names)
                if found is not None:
                    self._open(api, instance, endpoint, found, names[found])
                elif not endpoint.waiting_logged:
                    endpoint.waiting_logged = True
                    self.log.warn(
                        "midi {instance}: no {direction} port matches {spec!r}; waiting for it"
                        " ({direction} ports: {ports})",
                        instance=instance.name,
                        direction=endpoint.direction,
                        spec=endpoint.spec,
                        ports=port_list(names),
                    )

    def _open(
        self,
        api: MidiApi,
        instance: MidiInstance,
        endpoint: _Endpoint,
        index: int | None,
        name: str,
    ) -> None:
        try:
            if endpoint.direction == "input":
                deliver = partial(instance.receive, endpoint)
                port: Any = api.open_input(index, endpoint.port_name, deliver)
            else:
                port = api.open_output(index, endpoint.port_name)
        except Exception as error:
            if not endpoint.failure_logged:
                endpoint.failure_logged = True
                self.log.error(
                    "midi {instance}: cannot open {direction} port {name}: {error}",
                    instance=instance.name,
                    direction=endpoint.direction,
                    name=name,
                    error=error,
                )
            return
        instance.opened(endpoint, port, name)
        self.log.info(
            "midi {instance}: {direction} port {port} open",
            instance=instance.name,
            direction=endpoint.direction,
            port=str(endpoint),
        )


BACKEND = MidiBackend
