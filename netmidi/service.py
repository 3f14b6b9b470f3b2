"""The daemon's top service: starts the backends and hands incoming events to the router."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from netmidi.backend import Event, Instance, Reactor
from netmidi.show import Show

# How many times an event may pass through echoing instances (loopback) before it is cut:
# deep enough for any sensible chain, shallow enough that a feedback loop cannot hang the daemon.
MAX_HOPS = 16


class NetmidiService(MultiService):
    log = Logger()

    def __init__(self, show: Show, reactor: Reactor) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.show = show
        self.reactor = reactor
        self.router = show.router
        self.loops_cut = 0
        self.send_failures = 0
        self._depth = 0
        self._loop_logged = False
        for backend in show.backends.values():
            backend.setServiceParent(self)  # type: ignore[no-untyped-call]
        for instance in show.instances.values():
            instance.attach(self.deliver)

    def deliver(self, source: Instance, events: Sequence[Event]) -> None:
        """Route a batch of incoming events and send each target its share."""
        if self._depth >= MAX_HOPS:
            self.loops_cut += 1
            if not self._loop_logged:
                self._loop_logged = True
                self.log.warn(
                    "feedback loop through {instance}: events cut after {hops} hops"
                    " (logged once; check the map for routes that lead back to themselves)",
                    instance=source.name,
                    hops=MAX_HOPS,
                )
            return
        self._depth += 1
        try:
            for target, batch in self.router.route(source, events).items():
                try:
                    target.send(batch)
                except Exception:
                    # A fault in one backend must not stop the events bound for the others.
                    self.send_failures += 1
                    self.log.failure("sending to {instance} failed", instance=target.name)
        finally:
            self._depth -= 1

    def startService(self) -> None:
        for warning in self.show.warnings:
            self.log.warn("{warning}", warning=warning)
        super().startService()  # type: ignore[no-untyped-call]
        # Said once the reactor runs: from then on SIGTERM/SIGINT give a clean stop.
        self.reactor.callLater(0, self._announce_running)

    def _announce_running(self) -> None:
        self.log.info(
            "netmidi running {files}: {backends} backends, {instances} instances, {routes} routes",
            files=", ".join(self.show.files),
            backends=len(self.show.backends),
            instances=len(self.show.instances),
            routes=len(self.router.routes) + len(self.show.claimed),
        )

    def stopService(self) -> Deferred[Any]:
        self.log.info("netmidi stopping")
        d: Deferred[Any] = super().stopService()  # type: ignore[no-untyped-call]
        return d
