"""The daemon's top service: starts the backends and hands incoming events to the router."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any, NoReturn

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from netmidi.backend import Backend, Event, Instance, Reactor
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
        Service.startService(self)
        started: list[Backend] = []
        for backend in self.show.backends.values():
            try:
                backend.startService()  # type: ignore[no-untyped-call]
            except Exception as error:
                self._abandon_start(backend, error, started)
            started.append(backend)
        # The show's objects live until exit: keep them out of the collector's full passes,
        # which otherwise stall a large rig (300 universes: ~200 ms pauses).
        gc.freeze()
        # Said once the reactor runs: from then on SIGTERM/SIGINT give a clean stop.
        self.reactor.callLater(0, self._announce_running)

    def _abandon_start(
        self, backend: Backend, error: Exception, started: list[Backend]
    ) -> NoReturn:
        """A backend that cannot start (port taken, required device missing) ends the daemon.

        One line says why, the backends already started are stopped, and twistd exits with
        status 1, before the reactor runs, so a broken rig is noticed at once.
        """
        self.log.critical(
            "{backend}: cannot start: {error}; netmidi exits",
            backend=backend.name,
            error=str(error) or type(error).__name__,
        )
        for other in reversed(started):
            other.stopService()  # type: ignore[no-untyped-call]
        self.running = False
        raise SystemExit(1)

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
