"""The daemon's top service: starts the backends and hands incoming events to the router."""

from __future__ import annotations

import gc
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from netmidi.backend import Backend, Event, Instance, Reactor
from netmidi.show import Show

# How many times an event may pass through echoing instances (loopback) before it is cut:
# deep enough for any sensible chain, shallow enough that a feedback loop cannot hang the daemon.
MAX_HOPS = 16
# How many events one input may send through echoing instances in all. A loop that fans out
# (lb.a > lb.{b,c}; lb.b > lb.a; lb.c > lb.a) multiplies its events at every hop and would
# take seconds per input long before 16 hops; a real show sends a few hundred this way.
MAX_CASCADE = 16384
# How long a backend may take over its goodbyes when netmidi stops (a console that never answers
# a logout, a socket that never drains) before netmidi exits without waiting for it.
STOP_TIMEOUT = 10.0


class CannotStart(Exception):
    """A backend could not start (raised only when daemonised, see ``_abandon_start``)."""


class NetmidiService(MultiService):
    log = Logger()

    def __init__(self, show: Show, reactor: Reactor, daemon: bool = False) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.show = show
        self.reactor = reactor
        self.daemon = daemon
        self.router = show.router
        self.loops_cut = 0
        self.send_failures = 0
        self._depth = 0
        self._budget = MAX_CASCADE
        self._loop_logged = False
        self._failed: set[Instance] = set()
        for backend in show.backends.values():
            backend.setServiceParent(self)  # type: ignore[no-untyped-call]
        for instance in show.instances.values():
            if self.router.inputs(instance):  # an instance nothing is routed from needs no sink
                instance.attach(self.deliver)

    def deliver(self, source: Instance, events: Sequence[Event]) -> None:
        """Route a batch of incoming events and send each target its share.

        A target that echoes (loopback) calls back in here from its ``send``: the depth and the
        events so far in this cascade bound a feedback loop.
        """
        depth = self._depth
        if depth:
            budget = self._budget - len(events)
            if depth >= MAX_HOPS or budget < 0:
                self._cut(source)
                return
            self._budget = budget
        else:
            self._budget = MAX_CASCADE - len(events)
        self._depth = depth + 1
        try:
            for target, batch in self.router.route(source, events).items():
                try:
                    target.send(batch)
                except Exception:
                    # A fault in one backend must not stop the events bound for the others.
                    self._send_failed(target)
        finally:
            self._depth = depth

    def _cut(self, source: Instance) -> None:
        self.loops_cut += 1
        if not self._loop_logged:
            self._loop_logged = True
            self.log.warn(
                "feedback loop through {instance}: events cut after {hops} hops or {events}"
                " events (logged once; check the map for routes that lead back to themselves)",
                instance=source.name,
                hops=MAX_HOPS,
                events=MAX_CASCADE,
            )

    def _send_failed(self, target: Instance) -> None:
        """A bug in a backend's send: its traceback once per instance, then only counted."""
        self.send_failures += 1
        if target not in self._failed:
            self._failed.add(target)
            self.log.failure(
                "sending to {instance} failed (a bug: later failures are only counted and"
                " reported when netmidi stops)",
                instance=target.name,
            )

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
        reason = f"{backend.name}: cannot start: {str(error) or type(error).__name__}"
        self.log.critical("{reason}; netmidi exits", reason=reason)
        for other in reversed(started):
            other.stopService()  # type: ignore[no-untyped-call]
        self.running = False
        if self.daemon:
            # Only an Exception makes a daemonising twistd tell its waiting parent (which prints
            # the reason and exits 1) and remove the pidfile: after SystemExit the parent would
            # wait for ever and the pidfile would stay. The reason is logged above: the exiting
            # daemon need not add its traceback to the log.
            sys.excepthook = lambda *exc_info: None
            raise CannotStart(reason) from None
        raise SystemExit(1)  # in the foreground: status 1 and no traceback

    def _announce_running(self) -> None:
        self.log.info(
            "netmidi running {files}: {backends} backends, {instances} instances, {routes} routes",
            files=", ".join(self.show.files),
            backends=len(self.show.backends),
            instances=len(self.show.instances),
            routes=len(self.router.routes) + len(self.show.claimed),
        )

    def stopService(self) -> Deferred[Any]:
        if self.loops_cut or self.send_failures:
            self.log.warn(
                "{cut} events cut in feedback loops, {failed} sends failed",
                cut=self.loops_cut,
                failed=self.send_failures,
            )
        self.log.info("netmidi stopping")
        Service.stopService(self)
        return DeferredList([self._stop(backend) for backend in reversed(list(self))])

    def _stop(self, backend: Service) -> Deferred[Any]:
        """A backend's stop, bounded: a peer that never answers must not keep netmidi running."""
        stopping: Deferred[Any] = maybeDeferred(backend.stopService)
        stopping.addTimeout(STOP_TIMEOUT, self.reactor)
        stopping.addErrback(self._stop_failed, backend)
        return stopping

    def _stop_failed(self, failure: Failure, backend: Service) -> None:
        if failure.check(defer.TimeoutError):
            self.log.warn(
                "{backend}: still stopping after {seconds} s; netmidi exits without waiting",
                backend=backend.name,
                seconds=STOP_TIMEOUT,
            )
        else:
            self.log.failure("{backend}: stopping failed", failure, backend=backend.name)
