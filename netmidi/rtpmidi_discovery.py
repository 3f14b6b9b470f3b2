"""Discovery for the rtpmidi backend: its apple-mode sessions on mDNS, and the sessions it finds.

Every apple-mode instance is announced under its session title with its control port. Sessions
found on the network are offered to every instance, which invites those its ``invite`` option
names (``*`` for all); a session that goes away and comes back (a restarted iPad) is offered, and
so invited, again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from twisted.application.service import MultiService
from twisted.logger import Logger

from netmidi.mdns import DiscoveredSession, MdnsService
from netmidi.options import Option, flag, listof, text

Address = tuple[str, int]

GLOBAL_OPTIONS: Mapping[str, Option[Any]] = {
    "mdns": Option(
        flag, True, "announce apple-mode sessions and browse for others (mDNS / DNS-SD)"
    ),
    "mdns-name": Option(
        text(), None, "host name to announce (<name>.local); default: this machine's name"
    ),
    "mdns-interface": Option(
        listof(text()),
        [],
        "interfaces (names or addresses) that mDNS uses and announces; default: all but loopback",
    ),
}


class Discoverable(Protocol):
    """What discovery needs from an apple-mode instance."""

    name: str
    title: str
    options: Mapping[str, Any]

    @property
    def control_port(self) -> int: ...

    def discovered(self, name: str, control: Address) -> None: ...
    def vanished(self, control: Address) -> None: ...


def reachable(session: DiscoveredSession, bind_host: str) -> str | None:
    """The address of ``session`` a socket bound to ``bind_host`` reaches (IPv4 preferred)."""
    wildcard_v6 = bind_host == "::"
    v6 = ":" in bind_host
    for address in session.addresses:
        is_v6 = ":" in address
        if is_v6 == v6 or (wildcard_v6 and not is_v6):
            return address
    return None


class Discovery:
    """Connects one rtpmidi backend's apple-mode instances to an :class:`MdnsService`."""

    log = Logger()

    def __init__(
        self, parent: MultiService, reactor: Any, options: Mapping[str, Any], detect: bool = False
    ) -> None:
        self.detect = detect  # also browse, and list every session found with how to invite it
        self.mdns = MdnsService(reactor, options.get("mdns-name"), options.get("mdns-interface"))
        self.mdns.setServiceParent(parent)  # type: ignore[no-untyped-call]
        self.instances: list[Discoverable] = []
        self._controls: dict[str, dict[str, Address]] = {}  # session -> instance -> control

    def start(self, instances: Sequence[Discoverable]) -> None:
        """Announce the (started) instances; browse if any of them invites, or to detect."""
        self.instances = list(instances)
        for instance in self.instances:
            self.mdns.announce(
                instance.title, instance.control_port, [instance.options["bind"].host]
            )
        if self.detect or any(instance.options["invite"] for instance in self.instances):
            self.mdns.browse(self._added, self._removed)

    def _added(self, session: DiscoveredSession) -> None:
        if self.detect:
            self.log.info(
                "detect: session {name!r} at {addresses} port {port}; invite it with"
                " 'invite: {name}'",
                name=session.name,
                addresses=", ".join(session.addresses),
                port=session.port,
            )
        controls = self._controls.setdefault(session.name, {})
        for instance in self.instances:
            address = reachable(session, instance.options["bind"].host)
            if address is None:
                continue
            control = (address, session.port)
            old = controls.get(instance.name)
            if old is not None and old != control:
                instance.vanished(old)  # moved: the old address is gone
            controls[instance.name] = control
            instance.discovered(session.name, control)

    def _removed(self, name: str) -> None:
        controls = self._controls.pop(name, {})
        for instance in self.instances:
            control = controls.get(instance.name)
            if control is not None:
                instance.vanished(control)
