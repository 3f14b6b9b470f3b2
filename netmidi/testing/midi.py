"""A fake MIDI API for the ``midi`` backend: ports that appear and vanish, input on a thread.

It has the shape of :class:`netmidi.backends.midi.MidiApi` (structurally, so this module does not
need python-rtmidi). ``FakeMidiApi.factory`` is passed to ``MidiBackend(..., api_factory=...)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

Deliver = Callable[[list[int]], None]


class FakeInputPort:
    def __init__(self, api: FakeMidiApi, device: str, deliver: Deliver) -> None:
        self.api = api
        self.device = device
        self.deliver = deliver
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.api.open_inputs.remove(self)


class FakeOutputPort:
    def __init__(self, api: FakeMidiApi, device: str) -> None:
        self.api = api
        self.device = device
        self.closed = False

    def send(self, message: bytes) -> None:
        if self.closed or (
            self.device not in self.api.outputs and self.device not in self.api.virtual
        ):
            raise OSError(f"{self.device} is gone")
        self.api.sent.setdefault(self.device, []).append(bytes(message))

    def close(self) -> None:
        self.closed = True
        self.api.open_outputs.remove(self)


class FakeMidiApi:
    """Device ports by name; ``play`` sends a device's messages from another thread, in order."""

    def __init__(self, inputs: Iterable[str] = (), outputs: Iterable[str] = ()) -> None:
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.virtual: list[str] = []
        self.open_inputs: list[FakeInputPort] = []
        self.open_outputs: list[FakeOutputPort] = []
        self.sent: dict[str, list[bytes]] = {}
        self.fail: Exception | None = None
        self.opened_with: list[tuple[str, str]] = []
        self.attempts = 0
        self.listings = 0
        self.closed = False

    def factory(self, api: str, client: str) -> FakeMidiApi:
        self.attempts += 1
        if self.fail is not None:
            raise self.fail
        self.opened_with.append((api, client))
        self.closed = False
        return self

    def input_ports(self) -> list[str]:
        self.listings += 1
        if self.fail is not None:
            raise self.fail
        return list(self.inputs)

    def output_ports(self) -> list[str]:
        if self.fail is not None:
            raise self.fail
        return list(self.outputs)

    def open_input(self, index: int | None, name: str, deliver: Deliver) -> FakeInputPort:
        device = name if index is None else self.inputs[index]
        if index is None:
            self.virtual.append(name)
        port = FakeInputPort(self, device, deliver)
        self.open_inputs.append(port)
        return port

    def open_output(self, index: int | None, name: str) -> FakeOutputPort:
        device = name if index is None else self.outputs[index]
        if index is None:
            self.virtual.append(name)
        port = FakeOutputPort(self, device)
        self.open_outputs.append(port)
        return port

    def close(self) -> None:
        self.closed = True

    def unplug(self, device: str) -> None:
        for ports in (self.inputs, self.outputs):
            if device in ports:
                ports.remove(device)

    def reader(self, device: str) -> FakeInputPort:
        """The open input port connected to ``device``."""
        for port in self.open_inputs:
            if port.device == device:
                return port
        raise KeyError(device)

    def play(self, device: str, messages: Iterable[list[int]], thread: bool = True) -> None:
        """Deliver messages from ``device`` as the MIDI API does: on its own thread, in order."""
        port = self.reader(device)

        def run() -> None:
            for message in messages:
                port.deliver(message)

        if not thread:
            run()
            return
        worker = threading.Thread(target=run, name=f"fake MIDI {device}")
        worker.start()
        worker.join()
