"""mDNS / DNS-SD for AppleMIDI sessions: announce ours, browse theirs, on either reactor kind.

python-zeroconf runs in one of two ways (see the Twisted reference, B1):

* on the default reactor, on its own thread: blocking calls (registration probes take about a
  second and a half) go through ``deferToThread`` and browser callbacks are forwarded with
  ``callFromThread``;
* on the asyncio reactor, on the reactor's own loop: ``AsyncZeroconf`` is created inside a
  coroutine started with ``Deferred.fromFuture(asyncio.ensure_future(...))``, because no loop is
  running yet during ``startService``.

Either way every callback reaches netmidi on the reactor thread. Announcements carry the control
port, an empty TXT record, and A/AAAA records only for the addresses the session really listens
on; name conflicts are resolved by zeroconf's rename (and logged); ``stopService`` sends the
goodbyes before the daemon exits. Discovered sessions that do not resolve to a usable name, port
and address are dropped and counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import ifaddr  # installed with zeroconf
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from netmidi.badinput import BadInput

SERVICE_TYPE = "_apple-midi._udp.local."
EMPTY_TXT = b"\x00"  # one empty string: the DNS-SD form of "no keys" (RFC 6763 6.1)
RESOLVE_TIMEOUT_MS = 3000
MAX_SESSIONS = 256  # sessions kept track of; more announcements are dropped and counted
MAX_RESOLVING = 16  # resolve queries at once

Adapters = Sequence[tuple[str, Sequence[str]]]  # (interface name, its addresses)


@dataclass(frozen=True)
class DiscoveredSession:
    """A session another host announces: its name, where to invite it, and who announces it."""

    name: str
    addresses: tuple[str, ...]  # IPv4 first, then IPv6
    port: int  # the control port
    server: str

    def __str__(self) -> str:
        return f"{self.name!r} at {', '.join(self.addresses)} port {self.port} ({self.server})"


def host_adapters() -> list[tuple[str, list[str]]]:
    """The machine's interfaces and addresses (IPv6 with a ``%index`` scope where link-local)."""
    adapters = []
    for adapter in ifaddr.get_adapters():
        addresses = []
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                address, _, scope = ip.ip
                addresses.append(f"{address}%{scope}" if scope else address)
            else:
                addresses.append(ip.ip)
        adapters.append((adapter.name, addresses))
    return adapters


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def select_addresses(selection: Sequence[str] | None, adapters: Adapters) -> list[str]:
    """The host addresses ``mdns-interface`` allows: named interfaces or literal addresses.

    Without a selection every address but loopback ones is allowed.
    """
    if not selection:
        return [
            a
            for _, addresses in adapters
            for a in addresses
            if not ipaddress.ip_address(a.split("%")[0]).is_loopback
        ]
    chosen: list[str] = []
    for item in selection:
        named = [addresses for name, addresses in adapters if name == item]
        if named:
            chosen.extend(named[0])
        else:
            chosen.extend(
                a for _, addresses in adapters for a in addresses if a.split("%")[0] == item
            )
    return list(dict.fromkeys(chosen))


def announce_addresses(bound: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The addresses to announce for sockets bound to ``bound``: only what really listens.

    A wildcard bind (``0.0.0.0`` / ``::``) listens on every allowed address of its family; a
    specific bind only on itself, and only if it is allowed. IPv4 comes first.
    """
    out: list[str] = []
    for host in bound:
        plain = host.split("%")[0]
        if plain in ("0.0.0.0", ""):
            out.extend(a for a in allowed if _family(a) == 4)
        elif plain == "::":
            out.extend(a for a in allowed if _family(a) == 6)
        elif any(a.split("%")[0] == plain for a in allowed):
            out.append(host)
    unique = list(dict.fromkeys(a.split("%")[0] for a in out))
    return sorted(unique, key=_family)


def zeroconf_interfaces(allowed: Sequence[str], adapters: Adapters) -> list[str | int]:
    """Zeroconf's ``interfaces=``: IPv4 addresses as they are, IPv6 as interface indexes."""
    out: list[str | int] = []
    for address in allowed:
        if _family(address) == 4:
            out.append(address)
            continue
        for name, addresses in adapters:
            if address in addresses:
                try:
                    out.append(socket.if_nametoindex(name))
                except OSError:
                    pass
    return list(dict.fromkeys(out))


def instance_label(session: str, limit: int = 63) -> str:
    """The session name as a DNS label: at most 63 UTF-8 bytes, cut at a character boundary."""
    data = session.encode("utf-8")
    if len(data) <= limit:
        return session
    return data[:limit].decode("utf-8", "ignore").rstrip()


def session_from_info(
    name: str, port: int | None, addresses: Sequence[str], server: str | None
) -> DiscoveredSession:
    """Check a resolved announcement; ValueError says what makes it unusable."""
    if not name.endswith("." + SERVICE_TYPE):
        raise ValueError(f"service name {name!r} is not of type {SERVICE_TYPE}")
    session = name[: -len(SERVICE_TYPE) - 1]
    if not session:
        raise ValueError("empty session name")
    if not port or not 0 < port < 65535:
        raise ValueError(f"session {session!r} announces port {port}")
    usable = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            continue
        if not (ip.is_unspecified or ip.is_multicast):
            usable.append(address)
    if not usable:
        raise ValueError(f"session {session!r} announces no usable address")
    return DiscoveredSession(session, tuple(sorted(usable, key=_family)), port, server or "")


class _Engine(Protocol):
    """What the service needs from zeroconf, the same on both reactor kinds."""

    def register(self, info: ServiceInfo) -> Deferred[None]: ...
    def resolve(self, name: str) -> Deferred[ServiceInfo | None]: ...
    def browse(self, handler: Callable[..., None]) -> None: ...
    def close(self) -> Deferred[None]: ...


class _ThreadEngine:
    """Zeroconf on its own thread; blocking calls in the reactor's thread pool."""

    def __init__(self, reactor: Any, interfaces: list[str | int] | None) -> None:
        self._reactor = reactor
        self._zc = Zeroconf(**_zeroconf_args(interfaces), use_asyncio=False)
        self._browser: Any = None

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        return deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), function, *args, **kwargs
        )

    def register(self, info: ServiceInfo) -> Deferred[None]:
        return self._call(self._zc.register_service, info, allow_name_change=True)

    def resolve(self, name: str) -> Deferred[ServiceInfo | None]:
        return self._call(self._zc.get_service_info, SERVICE_TYPE, name, RESOLVE_TIMEOUT_MS)

    def browse(self, handler: Callable[..., None]) -> None:
        self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[handler])

    def close(self) -> Deferred[None]:
        def shut() -> None:
            if self._browser is not None:
                self._browser.cancel()
            self._zc.unregister_all_services()
            self._zc.close()

        return self._call(shut)


class _AsyncioEngine:
    """AsyncZeroconf on the asyncio reactor's loop (created from inside a running coroutine)."""

    def __init__(self, aiozc: AsyncZeroconf) -> None:
        self._aiozc = aiozc
        self._browser: AsyncServiceBrowser | None = None

    @classmethod
    def create(cls, interfaces: list[str | int] | None) -> Deferred[_AsyncioEngine]:
        async def start() -> _AsyncioEngine:
            return cls(AsyncZeroconf(**_zeroconf_args(interfaces)))

        return Deferred.fromFuture(asyncio.ensure_future(start()))

    def register(self, info: ServiceInfo) -> Deferred[None]:
        async def register() -> None:
            await (await self._aiozc.async_register_service(info, allow_name_change=True))

        return Deferred.fromFuture(asyncio.ensure_future(register()))

    def resolve(self, name: str) -> Deferred[ServiceInfo | None]:
        async def resolve() -> ServiceInfo | None:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            found = await info.async_request(self._aiozc.zeroconf, RESOLVE_TIMEOUT_MS)
            return info if found else None

        return Deferred.fromFuture(asyncio.ensure_future(resolve()))

    def browse(self, handler: Callable[..., None]) -> None:
        self._browser = AsyncServiceBrowser(self._aiozc.zeroconf, SERVICE_TYPE, handlers=[handler])

    def close(self) -> Deferred[None]:
        async def close() -> None:
            if self._browser is not None:
                await self._browser.async_cancel()
            await self._aiozc.async_unregister_all_services()
            await self._aiozc.async_close()

        return Deferred.fromFuture(asyncio.ensure_future(close()))


def _zeroconf_args(interfaces: list[str | int] | None) -> dict[str, Any]:
    if not interfaces:
        return {}
    v4 = any(isinstance(i, str) and _family(i) == 4 for i in interfaces)
    v6 = any(isinstance(i, int) or _family(str(i)) == 6 for i in interfaces)
    version = IPVersion.All if v4 and v6 else IPVersion.V6Only if v6 else IPVersion.V4Only
    return {"interfaces": interfaces, "ip_version": version}


def _is_asyncio_reactor(reactor: Any) -> bool:
    return hasattr(reactor, "_asyncioEventloop")


class MdnsService(Service):
    """Announces our sessions and reports the others' on the reactor thread.

    ``on_added`` is called with a :class:`DiscoveredSession` when a session appears (again, after
    it went away), or when its addresses or port change; ``on_removed`` with its name when it
    says goodbye. Our own announcements are not reported.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        host_name: str | None = None,
        interfaces: Sequence[str] | None = None,
        adapters: Callable[[], Adapters] = host_adapters,
    ) -> None:
        self.reactor = reactor
        self.host_name = (host_name or socket.gethostname().split(".")[0]).rstrip(".")
        self.interfaces = list(interfaces or [])
        self._adapters = adapters
        self.bad = BadInput(self.log, "mdns", reactor.seconds)
        self.discovered: dict[str, DiscoveredSession] = {}
        self.announced: dict[str, str] = {}  # requested session name -> the name in use
        self._own: set[str] = set()  # service names (lower case) we announce or are probing
        self._listeners: list[tuple[Callable[[DiscoveredSession], None], Callable[[str], None]]]
        self._listeners = []
        self._pending: list[tuple[str, int, list[str], Deferred[str]]] = []
        self._engine: _Engine | None = None
        self._ready: Deferred[None] | None = None
        self._allowed: list[str] = []
        self._inflight: set[Deferred[None]] = set()
        self._resolving: set[str] = set()  # names being resolved (bounded: a flood is dropped)

    # -- lifecycle --------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        adapters = self._adapters()
        allowed = select_addresses(self.interfaces, adapters)
        if self.interfaces and not allowed:
            self.log.error(
                "mdns: mdns-interface {names} matches no interface address here; discovery is off",
                names=", ".join(self.interfaces),
            )
            return
        interfaces = zeroconf_interfaces(allowed, adapters) if self.interfaces else None
        self._allowed = allowed
        engine: Deferred[Any]
        if _is_asyncio_reactor(self.reactor):
            engine = _AsyncioEngine.create(interfaces)
        else:
            engine = maybeDeferred(lambda: _ThreadEngine(self.reactor, interfaces))
        self._ready = engine.addCallback(self._started).addErrback(self._failed)

    def _started(self, engine: _Engine) -> None:
        self._engine = engine
        self.log.info(
            "mdns: running as {host}.local on {where}",
            host=self.host_name,
            where=", ".join(self.interfaces) or "all interfaces",
        )
        if self._listeners:
            engine.browse(self._changed_elsewhere)
        pending, self._pending = self._pending, []
        for session, port, bound, done in pending:
            self._register(session, port, bound).chainDeferred(done)

    def _failed(self, failure: Any) -> None:
        self.log.failure("mdns: zeroconf could not start; discovery is off", failure)

    def stopService(self) -> Deferred[Any]:
        """Goodbyes for every announcement (TTL 0), then zeroconf closes."""
        super().stopService()  # type: ignore[no-untyped-call]
        engine, self._engine = self._engine, None
        if engine is None:
            return succeed(None)
        # Registrations still probing finish first, so that they get their goodbye too.
        d = DeferredList(list(self._inflight), consumeErrors=True)
        d.addCallback(lambda _: engine.close())
        d.addCallbacks(
            lambda _: self.log.info(
                "mdns: goodbye sent for {count} announcement(s)", count=len(self.announced)
            ),
            lambda f: self.log.failure("mdns: closing zeroconf failed", f),
        )
        return d

    # -- announcing -------------------------------------------------------------------------

    def announce(self, session: str, port: int, bound: Sequence[str]) -> Deferred[str]:
        """Announce ``session`` with its control ``port``; fires with the name it got."""
        if self._engine is None:
            done: Deferred[str] = Deferred()
            self._pending.append((session, port, list(bound), done))
            return done
        return self._register(session, port, bound)

    def _register(self, session: str, port: int, bound: Sequence[str]) -> Deferred[str]:
        assert self._engine is not None
        addresses = announce_addresses(bound, self._allowed)
        if not addresses:
            self.log.warn(
                "mdns: session {session!r} listens on {bound}, none of it on an announced "
                "interface; not announced",
                session=session,
                bound=", ".join(bound),
            )
            return succeed(session)
        label = instance_label(session)
        if label != session:
            self.log.warn(
                "mdns: session name {session!r} is longer than DNS allows; announced as {label!r}",
                session=session,
                label=label,
            )
        try:
            info = ServiceInfo(
                SERVICE_TYPE,
                f"{label}.{SERVICE_TYPE}",
                port=port,
                properties=EMPTY_TXT,
                server=f"{self.host_name}.local.",
                parsed_addresses=addresses,
            )
        except Exception as error:  # zeroconf's name checks: a bad name must not stop the show
            self.log.error(
                "mdns: cannot announce {session!r}: {error}", session=session, error=error
            )
            return succeed(session)
        full = info.name
        self._own.add(full.lower())

        def registered(_: None) -> str:
            name = info.name[: -len(SERVICE_TYPE) - 1]
            self.announced[session] = info.name
            self._own.add(info.name.lower())
            if info.name != full:
                self.log.warn(
                    "mdns: session name {old!r} is taken on the network; announced as {new!r}",
                    old=session,
                    new=name,
                )
            self.log.info(
                "mdns: announced {name!r} port {port} at {addresses}",
                name=name,
                port=port,
                addresses=", ".join(addresses),
            )
            return name

        inflight = self._engine.register(info)
        self._inflight.add(inflight)

        def done(result: Any) -> Any:
            self._inflight.discard(inflight)
            return result

        def failed(failure: Any) -> str:
            self.log.failure("mdns: announcing {session!r} failed", failure, session=session)
            return session

        return inflight.addBoth(done).addCallbacks(registered, failed)

    # -- browsing ---------------------------------------------------------------------------

    def browse(
        self, on_added: Callable[[DiscoveredSession], None], on_removed: Callable[[str], None]
    ) -> None:
        """Report other sessions to these callbacks (on the reactor thread)."""
        self._listeners.append((on_added, on_removed))
        if self._engine is not None and len(self._listeners) == 1:
            self._engine.browse(self._changed_elsewhere)
        for session in self.discovered.values():
            on_added(session)

    def _changed_elsewhere(self, **kwargs: Any) -> None:
        """Zeroconf's handler: runs on zeroconf's thread or loop; hop to the reactor thread."""
        self.reactor.callFromThread(self._changed, kwargs["name"], kwargs["state_change"])

    def _changed(self, name: str, change: ServiceStateChange) -> None:
        if name.lower() in self._own or self._engine is None:
            return
        if change is ServiceStateChange.Removed:
            session = self.discovered.pop(name, None)
            if session is not None:
                self.log.info("mdns: session {name!r} went away", name=session.name)
                for _, on_removed in self._listeners:
                    on_removed(session.name)
            return
        if name in self._resolving:
            return  # the answer on its way covers this change too
        if name not in self.discovered and len(self.discovered) >= MAX_SESSIONS:
            self.bad.drop(f"more than {MAX_SESSIONS} sessions announced; ignored", source=name)
            return
        if len(self._resolving) >= MAX_RESOLVING:
            self.bad.drop("too many announcements at once; ignored", source=name)
            return
        self._resolving.add(name)
        d = self._engine.resolve(name)
        d.addBoth(self._unresolving, name)
        d.addCallback(self._resolved, name)
        d.addErrback(lambda f: self.bad.drop(f"cannot resolve: {f.getErrorMessage()}", name))

    def _unresolving(self, result: Any, name: str) -> Any:
        self._resolving.discard(name)
        return result

    def _resolved(self, info: ServiceInfo | None, name: str) -> None:
        if name.lower() in self._own:
            return  # became ours while resolving (our rename)
        if info is None:
            self.bad.drop("no answer to the resolve query", source=name)
            return
        try:
            session = session_from_info(
                info.name, info.port, info.parsed_scoped_addresses(), info.server
            )
        except ValueError as error:
            self.bad.drop(str(error), source=name)
            return
        if self.discovered.get(name) == session:
            return
        self.discovered[name] = session
        self.log.info("mdns: discovered session {session}", session=str(session))
        for on_added, _ in self._listeners:
            on_added(session)

    def ready(self) -> Deferred[None]:
        """Fires once zeroconf runs or failed to (for tests and start-up ordering)."""
        d: Deferred[None] = Deferred()
        if self._ready is None:
            d.callback(None)
        else:

            def fire(result: Any) -> Any:
                d.callback(None)
                return result

            self._ready.addBoth(fire)
        return d
