"""The interface every backend implements: one module per backend, small on purpose.

A backend is a Twisted service (it opens its sockets in ``startService`` and says goodbye in
``stopService``) that parses its global options, creates named instances, and owns their I/O.
An instance parses channel specs into hashable channel keys, sends batches of events, and reports
incoming events to the router through :meth:`Instance.emit`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from twisted.application.service import MultiService
from twisted.logger import Logger

from netmidi.options import Option, choice
from netmidi.values import Value

Channel = Hashable
Event = tuple[Channel, Value]
Sink = Callable[["Instance", Sequence[Event]], None]
# The reactor: typed loosely because Twisted's reactor interfaces are zope interfaces.
Reactor = Any


class Route(NamedTuple):
    """One compiled mapping from a source channel to a target channel."""

    source: Instance
    source_channel: Channel
    target: Instance
    target_channel: Channel


class Instance(ABC):
    """One named endpoint of a backend, e.g. one sACN universe or one AppleMIDI session."""

    log = Logger()

    def __init__(self, backend: Backend, name: str, options: Mapping[str, Any]) -> None:
        self.backend = backend
        self.name = name
        self.options = options
        self.inputs: frozenset[Channel] = frozenset()
        self.outputs: frozenset[Channel] = frozenset()
        self._sink: Sink | None = None

    @abstractmethod
    def parse_channel(self, spec: str) -> Channel:
        """Turn the part of a channel spec after ``instance.`` into a channel key.

        Raise :class:`netmidi.options.OptionError` saying what was expected.
        """

    def channel_spec(self, channel: Channel) -> str:
        """The text that :meth:`parse_channel` turns into ``channel`` (for detect and logs)."""
        return str(channel)

    def mapped(self, inputs: frozenset[Channel], outputs: frozenset[Channel]) -> None:
        """Told once, before start, which channels are routed from and to this instance."""
        self.inputs = inputs
        self.outputs = outputs

    @abstractmethod
    def send(self, events: Sequence[Event]) -> None:
        """Send a batch of events (all produced by one input event or packet)."""

    def attach(self, sink: Sink) -> None:
        self._sink = sink

    def emit(self, events: Sequence[Event]) -> None:
        """Report incoming events to the router (and log them when the backend detects)."""
        if self.backend.detect:
            for channel, value in events:
                self.log.info(
                    "detect: {spec} = {value}",
                    spec=f"{self.name}.{self.channel_spec(channel)}",
                    value=value,
                )
        if self._sink is not None and events:
            self._sink(self, events)


class Backend(MultiService, ABC):
    """A protocol's service; children are added by the backend for its own sockets or clients."""

    log = Logger()
    name: str  # the backend name used in show files (also the service name)
    global_options: ClassVar[Mapping[str, Option[Any]]] = {}
    instance_options: ClassVar[Mapping[str, Option[Any]]] = {}
    # True where everything sent to an instance comes straight back as its input (loopback).
    echoes: ClassVar[bool] = False

    DETECT: ClassVar[Option[str]] = Option(
        choice("off", "on", "verbose"),
        "off",
        "log every incoming event as the channel spec to paste into the show file",
    )

    def __init__(self, reactor: Reactor, options: Mapping[str, Any]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.reactor = reactor
        self.options = options
        self.detect = options.get("detect", "off") != "off"
        self.instances: dict[str, Instance] = {}

    @classmethod
    def all_global_options(cls) -> Mapping[str, Option[Any]]:
        return {"detect": cls.DETECT, **cls.global_options}

    def add_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        instance = self.create_instance(name, options)
        self.instances[name] = instance
        return instance

    @abstractmethod
    def create_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        """Create an instance from its parsed options; open nothing yet."""

    def claim_routes(self, routes: Sequence[Route]) -> Sequence[Route]:
        """Routes (both ends in this backend) that the backend carries itself, bypassing the router.

        A backend returns those it can move faster as a block (sACN copies slot ranges); the
        router leaves them out of its per-event tables and out of ``mapped()``.
        """
        return ()

    def check(self) -> list[str]:
        """Cross-option checks after all instances exist; return error texts (no location)."""
        return []
