"""Logical channels inside the daemon: every event written to an instance comes back as input.

An instance's ``initial`` values are sent once when the daemon starts, so a show can set fixed
levels (work lights, a house preset) through the same map as live data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from netmidi.backend import Backend, Channel, Event, Instance
from netmidi.options import Option, OptionError, describe, number
from netmidi.values import Value

_level = number(0.0, 1.0)


_SPACE = re.compile(r"\s")


def _channel_name(spec: str) -> str:
    if not spec or _SPACE.search(spec):
        raise OptionError(f"got {spec!r}, expected a channel name without spaces")
    return spec


def initial_values(value: Any) -> dict[str, float]:
    """``{channel: level}`` with levels from 0 to 1."""
    if not isinstance(value, dict):
        raise OptionError(f"got {describe(value)}, expected a mapping of channel names to 0..1")
    return {_channel_name(str(name)): _level(level) for name, level in value.items()}


class LoopbackInstance(Instance):
    def parse_channel(self, spec: str) -> Channel:
        return _channel_name(spec)

    def send(self, events: Sequence[Event]) -> None:
        self.emit(events)

    def send_initial(self) -> None:
        initial: dict[str, float] = self.options.get("initial") or {}
        self.emit([(name, Value.from_normalised(level)) for name, level in initial.items()])


class LoopbackBackend(Backend):
    name = "loopback"
    echoes = True
    instance_options = {
        "initial": Option(initial_values, None, "channel levels (0..1) sent once at start"),
    }

    def create_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        return LoopbackInstance(self, name, options)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        # After every backend has started, so the initial values reach open outputs.
        self.reactor.callLater(0, self._send_initial)

    def _send_initial(self) -> None:
        for instance in self.instances.values():
            assert isinstance(instance, LoopbackInstance)
            instance.send_initial()


BACKEND = LoopbackBackend
