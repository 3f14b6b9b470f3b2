"""Logical channels inside the daemon: every event written to an instance comes back as input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netmidi.backend import Backend, Channel, Event, Instance
from netmidi.options import OptionError


class LoopbackInstance(Instance):
    def parse_channel(self, spec: str) -> Channel:
        if not spec or any(c.isspace() for c in spec):
            raise OptionError(f"got {spec!r}, expected a channel name without spaces")
        return spec

    def send(self, events: Sequence[Event]) -> None:
        self.emit(events)


class LoopbackBackend(Backend):
    name = "loopback"
    echoes = True

    def create_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        return LoopbackInstance(self, name, options)


BACKEND = LoopbackBackend
