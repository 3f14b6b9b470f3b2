"""sACN (ANSI E1.31) backend: universes as instances, slots as channels.

This module only translates between sockets and the pure parts: :mod:`netmidi.codec.e131`
(packets), :mod:`netmidi.sacn.merge` (what a universe looks like after merging its sources) and
:mod:`netmidi.sacn.schedule` (when a universe sends). sACN-to-sACN routes are claimed from the
router and copied as slot vectors, so a whole changing universe costs a few numpy operations per
packet instead of 512 events; routes to and from other protocols use the per-event path.

Socket rules (the Linux traps): receive sockets are bound to the wildcard address (a socket bound
to an interface address gets no multicast), join per chosen interface, switch IP_MULTICAST_ALL
off (else they get every group any socket on the host joined), hold at most 20 joins each, and
ask for a large receive buffer, because a rig's universes arrive back to back each frame.
"""

from __future__ import annotations

import errno
import heapq
import re
import socket
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from twisted.internet import defer, task
from twisted.internet.base import DelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.udp import MulticastPort

from netmidi.backend import Backend, Channel, Event, Instance, Route
from netmidi.badinput import BadInput
from netmidi.codec import e131
from netmidi.options import (
    HostPort,
    Option,
    OptionError,
    choice,
    describe,
    flag,
    host_port,
    integer,
    ip_address,
    listof,
    text,
    uuid_value,
)
from netmidi.sacn.merge import MERGES, Levels, Rejected, UniverseMerger
from netmidi.sacn.schedule import PERIOD, SendSchedule
from netmidi.sacn.sources import Refused, SourceList
from netmidi.values import Value

IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = getattr(socket, "IPV6_MULTICAST_ALL", 29)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MAX_JOINS = 20
"""Linux's default net.ipv4.igmp_max_memberships, which applies per socket."""
RECEIVE_BUFFER = 1024 * 1024
"""Per socket (20 groups): ~700 full packets, 35 frames of its universes; a bigger one only adds
lag under a flood, because the backlog is stale by the time it is read."""
DISCOVERY_INTERVAL = 10.0
EXPIRY_INTERVAL = 0.25
TERMINATE_COUNT = 3
LOSS_REPORT_INTERVAL = 10.0

_BYTE = tuple(bytes((n,)) for n in range(256))
_CHANNEL = re.compile(r"(\d+)(?:\+(\d+))?")
_NAMESPACE = uuid.UUID("8b0a1cbe-6c5f-4d8e-9a43-2f5c0e4b7d21")


@dataclass(frozen=True)
class Bind:
    """A ``bind`` descriptor: where to receive, and which interface to send on."""

    host: str
    port: int
    local: bool

    @property
    def wildcard(self) -> bool:
        return self.host == "0.0.0.0"


def bind_descriptor(value: Any) -> Bind:
    """``address [port] [local]``; ``local`` turns multicast loopback on for local receivers."""
    words = str(value).split() if isinstance(value, (str, int)) else []
    expected = "expected 'address [port] [local]'"
    if not 1 <= len(words) <= 3 or (len(words) == 3 and words[2] != "local"):
        raise OptionError(f"got {describe(value)}, {expected}")
    local = words[-1] == "local"
    if local:
        words = words[:-1]
    port = integer(1, 65535)(words[1]) if len(words) > 1 else e131.PORT
    host = ip_address(words[0])
    if ":" in host:
        raise OptionError(f"got {describe(value)}, expected an IPv4 address (ipv6: on adds IPv6)")
    return Bind(host, port, local)


def _host_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path) as file:
                machine = file.read().strip()
        except OSError:
            continue
        if machine:
            return machine
    return f"{socket.gethostname()}-{uuid.getnode():012x}"


def default_cid(source_name: str) -> uuid.UUID:
    """Stable for this host and source name, different on every other host."""
    return uuid.uuid5(_NAMESPACE, f"{_host_id()}/{source_name}")


def _default_name() -> str:
    name = f"netmidi {socket.gethostname()}"
    return name.encode("utf-8")[:63].decode("utf-8", "ignore")


@dataclass(frozen=True)
class Interface:
    """Where to join and send: an IPv4 address, or an interface index (0 = kernel's choice)."""

    address: str
    index: int

    def mreqn(self, group: str) -> bytes:
        return (
            socket.inet_aton(group) + socket.inet_aton(self.address) + struct.pack("@i", self.index)
        )


def resolve_interface(spec: str) -> Interface:
    """An interface name or an IPv4 address; raises OptionError if neither exists here."""
    try:
        return Interface(str(ip_address(spec)), 0) if "." in spec else _named(spec)
    except OSError:
        raise OptionError(
            f"got {describe(spec)}, expected an interface name or IPv4 address"
        ) from None


def _named(name: str) -> Interface:
    return Interface("0.0.0.0", socket.if_nametoindex(name))


Destination = tuple[socket.socket, tuple[str, int]]


class _Copy:
    """A claimed block of sACN-to-sACN routes from one universe into another, as index vectors."""

    __slots__ = ("source_slots", "target", "target_slots")

    def __init__(self, target: SacnInstance, pairs: list[tuple[int, int]]) -> None:
        self.target = target
        pairs.sort()
        sources = [s for s, _ in pairs]
        targets = [t for _, t in pairs]
        self.source_slots: slice | npt.NDArray[np.intp] = np.array(sources, np.intp)
        self.target_slots: slice | npt.NDArray[np.intp] = np.array(targets, np.intp)
        first_s, first_t, count = sources[0], targets[0], len(pairs)
        if sources == list(range(first_s, first_s + count)) and targets == list(
            range(first_t, first_t + count)
        ):
            self.source_slots = slice(first_s, first_s + count)
            self.target_slots = slice(first_t, first_t + count)


class SacnInstance(Instance):
    """One universe: input (merged from every source) and/or output (our stream)."""

    backend: SacnBackend

    def __init__(self, backend: SacnBackend, name: str, options: Mapping[str, Any]) -> None:
        super().__init__(backend, name, options)
        self.universe: int = options["universe"]
        self.sync_address: int = options["sync"] or 0
        self._singles: set[int] = set()
        self._wide: dict[int, tuple[int, int]] = {}
        # receive side
        self.merger = UniverseMerger(
            options["merge"],
            options["preview"],
            frozenset(cid.bytes for cid in options["from"]),
        )
        self.copies: list[_Copy] = []
        self.watch: npt.NDArray[np.bool_] | None = None
        self.slot_channels: dict[int, tuple[Channel, ...]] = {}
        self.claimed_input = False
        # send side
        self.claimed_output = False
        self.levels: Levels = np.zeros(e131.SLOTS, np.uint8)
        self.last_frame = b""
        self.schedule = SendSchedule(options["realtime"])
        self.sequence = 0
        # the data packet header around the sequence byte (offset 111); options come first after it
        self.header: tuple[bytes, bytes] = (b"", b"")
        self.destinations: list[Destination] = []
        self.unicast_targets: list[Destination] = []
        self.due = float("inf")  # when its valid entry in the backend's send heap is due

    def parse_channel(self, spec: str) -> Channel:
        match = _CHANNEL.fullmatch(spec.strip())
        slots = [int(g) for g in match.groups() if g is not None] if match else []
        if not slots or not all(1 <= s <= e131.SLOTS for s in slots):
            raise OptionError(f"got {spec!r}, expected a slot 1-512 or a wide 16-bit pair like 1+2")
        if len(slots) == 1:
            slot = slots[0]
            if slot in self._wide:
                raise OptionError(
                    f"got {spec!r}, but slot {slot} is part of the wide channel "
                    f"{self.channel_spec(self._wide[slot])}"
                )
            self._singles.add(slot)
            return slot
        pair = (slots[0], slots[1])
        if pair[0] == pair[1]:
            raise OptionError(f"got {spec!r}, expected two different slots")
        for slot in pair:
            if slot in self._singles:
                raise OptionError(f"got {spec!r}, but slot {slot} is also mapped alone")
            if self._wide.get(slot, pair) != pair:
                raise OptionError(
                    f"got {spec!r}, but slot {slot} is part of the wide channel "
                    f"{self.channel_spec(self._wide[slot])}"
                )
        self._wide.update(dict.fromkeys(pair, pair))
        return pair

    def channel_spec(self, channel: Channel) -> str:
        if isinstance(channel, tuple):
            return f"{channel[0]}+{channel[1]}"
        return str(channel)

    @property
    def sends(self) -> bool:
        return self.options["priority"] is not None or bool(self.outputs) or self.claimed_output

    @property
    def receives(self) -> bool:
        return bool(self.inputs) or self.claimed_input or self.backend.detect

    def watch_inputs(self) -> None:
        """Which slots produce events for the router (all of them when detecting)."""
        channels: set[Channel] = set(self.inputs)
        if self.backend.detect:
            channels.update(s for s in range(1, e131.SLOTS + 1) if s not in self._wide)
        if not channels:
            self.watch = None
            return
        by_slot: dict[int, list[Channel]] = {}
        for channel in channels:
            slots = channel if isinstance(channel, tuple) else (channel,)
            for slot in slots:
                by_slot.setdefault(int(slot) - 1, []).append(channel)
        self.slot_channels = {slot: tuple(chs) for slot, chs in by_slot.items()}
        watch = np.zeros(e131.SLOTS, np.bool_)
        watch[list(by_slot)] = True
        self.watch = watch

    def events(self, old: Levels, new: Levels) -> list[Event]:
        """One event per changed watched channel (a wide channel once for either byte)."""
        assert self.watch is not None
        changed = np.flatnonzero((new != old) & self.watch)
        if not len(changed):
            return []
        values = new.tolist()
        seen: set[Channel] = set()
        events: list[Event] = []
        for slot in changed.tolist():
            for channel in self.slot_channels[slot]:
                if channel in seen:
                    continue
                seen.add(channel)
                if isinstance(channel, tuple):
                    raw = values[channel[0] - 1] << 8 | values[channel[1] - 1]
                    events.append((channel, Value.from_raw(raw, 16)))
                else:
                    events.append((channel, Value.from_raw(values[slot], 8)))
        return events

    def send(self, events: Sequence[Event]) -> None:
        levels = self.levels
        for channel, value in events:
            if isinstance(channel, tuple):
                raw = value.scaled(16)
                levels[channel[0] - 1] = raw >> 8
                levels[channel[1] - 1] = raw & 0xFF
            else:
                levels[channel - 1] = value.scaled(8)  # type: ignore[operator]
        self.backend.touched(self, self.backend.reactor.seconds())


class _Receiver(DatagramProtocol):
    def __init__(self, backend: SacnBackend) -> None:
        self.backend = backend

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.backend.received(datagram, addr)


class SacnBackend(Backend):
    """Every sACN universe of the show, its sockets and its timers."""

    name = "sacn"
    global_options = {
        "name": Option(text(63), _default_name(), "source name sent in every packet"),
        "cid": Option(uuid_value, None, "source CID (default: stable per host and name)"),
        "bind": Option(
            listof(bind_descriptor),
            [Bind("0.0.0.0", e131.PORT, False)],
            "address [port] [local] to receive on; instances pick one by index with interface",
        ),
        "interface": Option(
            listof(text()), [], "interface names or IPv4 addresses to join and send on"
        ),
        "ttl": Option(integer(1, 255), 1, "multicast TTL of sent packets"),
    }
    instance_options = {
        "universe": Option(integer(e131.UNIVERSE_MIN, e131.UNIVERSE_MAX), None, "", True),
        "interface": Option(integer(0, 255), 0, "index of the bind descriptor to use"),
        "priority": Option(integer(0, e131.PRIORITY_MAX), None, "send priority; enables output"),
        "destination": Option(listof(host_port(e131.PORT)), [], "unicast destinations"),
        "from": Option(listof(uuid_value), [], "accept only these source CIDs"),
        "unicast": Option(flag, False, "no multicast: neither join nor send to the group"),
        "realtime": Option(flag, False, "send every change, without the 44 Hz cap"),
        "merge": Option(choice(*MERGES), "htp", "how several sources merge"),
        "preview": Option(flag, False, "send as preview data; accept preview data on input"),
        "sync": Option(integer(e131.UNIVERSE_MIN, e131.UNIVERSE_MAX), None, "sync address"),
        "ipv6": Option(flag, False, "also send and receive on IPv6 (ff18::8300:hilo)"),
    }

    def __init__(self, reactor: Any, options: Mapping[str, Any]) -> None:
        super().__init__(reactor, options)
        self.source_name: str = options.get("name") or _default_name()
        cid = options.get("cid") or default_cid(self.source_name)
        self.cid = cid.bytes
        self.binds: list[Bind] = list(options.get("bind") or [Bind("0.0.0.0", e131.PORT, False)])
        self.interface_specs: list[str] = list(options.get("interface") or [])
        self.ttl: int = options.get("ttl") or 1
        self.bad = BadInput(self.log, "sacn", reactor.seconds)
        self.send_errors = 0
        self.packets_received = 0
        self._loss_logged = 0
        self._loss_logged_at = float("-inf")
        self.packets_sent = 0
        self._last_send_error = float("-inf")
        self._inputs: dict[int, list[SacnInstance]] = {}
        self._ports: list[MulticastPort] = []
        self._send_sockets: list[socket.socket] = []
        self._loops: list[task.LoopingCall] = []
        self._sync_sequence: dict[int, int] = {}
        self._sync_due: set[int] = set()
        self._sync_call: DelayedCall | None = None
        self._due: list[tuple[float, int, SacnInstance]] = []
        self._timer: DelayedCall | None = None
        self.source_list = SourceList()
        # per bind descriptor: IPv4 and IPv6 send sockets, one per interface
        self._senders: list[tuple[list[socket.socket], list[socket.socket]]] = []

    def create_instance(self, name: str, options: Mapping[str, Any]) -> Instance:
        return SacnInstance(self, name, options)

    def check(self) -> list[str]:
        errors = []
        for spec in self.interface_specs:
            try:
                resolve_interface(spec)
            except OptionError as error:
                errors.append(f"sacn interface: {error}")
        for instance in self._instances():
            if instance.options["interface"] >= len(self.binds):
                errors.append(
                    f"{instance.name}: interface {instance.options['interface']} has no "
                    f"bind descriptor (there are {len(self.binds)})"
                )
        return errors

    def _instances(self) -> Iterator[SacnInstance]:
        for instance in self.instances.values():
            assert isinstance(instance, SacnInstance)
            yield instance

    def claim_routes(self, routes: Sequence[Route]) -> Sequence[Route]:
        """Carry slot-to-slot and wide-to-wide routes as vector copies (same resolution only)."""
        claimed: list[Route] = []
        blocks: dict[tuple[SacnInstance, SacnInstance], list[tuple[int, int]]] = {}
        for route in routes:
            source, target = route.source, route.target
            a, b = route.source_channel, route.target_channel
            if not isinstance(source, SacnInstance) or not isinstance(target, SacnInstance):
                continue
            if isinstance(a, tuple) != isinstance(b, tuple):
                continue  # 8 <-> 16 bit scaling stays on the per-event path
            sources: tuple[int, ...] = a if isinstance(a, tuple) else (int(a),)  # type: ignore[call-overload]
            targets: tuple[int, ...] = b if isinstance(b, tuple) else (int(b),)  # type: ignore[call-overload]
            block = blocks.setdefault((source, target), [])
            block.extend((s - 1, t - 1) for s, t in zip(sources, targets, strict=True))
            claimed.append(route)
        for (source, target), block in blocks.items():
            source.copies.append(_Copy(target, block))
            source.claimed_input = True
            target.claimed_output = True
        return claimed

    # -- receiving ------------------------------------------------------------------------

    def received(self, datagram: bytes, addr: Any) -> None:
        """One datagram from any receive socket."""
        self.packets_received += 1
        try:
            packet = e131.decode(datagram)
        except e131.DecodeError as error:
            self._drop(error, addr)
            return
        if packet.cid == self.cid:
            return  # our own stream, looped back
        now = self.reactor.seconds()
        if type(packet) is e131.DataPacket:
            receivers = self._inputs.get(packet.universe)
            if receivers is None:
                self.bad.drop("data for a universe no instance receives", source=addr[0])
                return
            for instance in receivers:
                merger = instance.merger
                if self.detect and packet.cid not in merger.sources:
                    self._log_source(instance, packet, addr)
                old = merger.levels
                try:
                    changed = merger.data(packet, now)
                except Rejected as error:
                    self._drop(error, addr)
                    continue
                if changed:
                    self._deliver(instance, old, now)
        elif type(packet) is e131.SyncPacket:
            for receivers in self._inputs.values():
                for instance in receivers:
                    old = instance.merger.levels
                    try:
                        changed = instance.merger.sync(packet, now)
                    except Rejected as error:
                        self._drop(error, addr)
                        return
                    if changed:
                        self._deliver(instance, old, now)
        else:
            assert isinstance(packet, e131.DiscoveryPacket)
            self._discovered(packet, now, addr)

    def _drop(self, error: Exception, addr: Any) -> None:
        """Count by the kind of problem only, so that the counters stay bounded under attack."""
        kind, _, detail = str(error).partition(": ")
        self.bad.drop(kind, source=f"{addr[0]} ({detail})" if detail else addr[0])

    def _deliver(self, instance: SacnInstance, old: Levels, now: float) -> None:
        new = instance.merger.levels
        for copy in instance.copies:
            target = copy.target
            target.levels[copy.target_slots] = new[copy.source_slots]
            self.touched(target, now)
        if instance.watch is not None:
            events = instance.events(old, new)
            if events:
                instance.emit(events)

    def _log_source(self, instance: SacnInstance, packet: e131.DataPacket, addr: Any) -> None:
        self.log.info(
            "{instance}: new source {name!r} ({cid}) from {address}, priority {priority}",
            instance=instance.name,
            name=packet.source_name,
            cid=uuid.UUID(bytes=packet.cid),
            address=addr[0],
            priority=packet.priority,
        )

    def _discovered(self, packet: e131.DiscoveryPacket, now: float, addr: Any) -> None:
        try:
            announcement = self.source_list.page(packet, now)
        except Refused as error:
            self._drop(error, addr)
            return
        if announcement is not None and self.detect:
            self.log.info(
                "detect: source {name!r} ({cid}) sends universes {universes}",
                name=announcement.name,
                cid=uuid.UUID(bytes=packet.cid),
                universes=", ".join(map(str, sorted(announcement.universes))) or "none",
            )

    def _expire(self) -> None:
        now = self.reactor.seconds()
        for receivers in self._inputs.values():
            for instance in receivers:
                old = instance.merger.levels
                if instance.merger.expire(now):
                    self._deliver(instance, old, now)
        self.source_list.expire(now)
        if now - self._loss_logged_at >= LOSS_REPORT_INTERVAL:
            self._report_loss(now)

    def _report_loss(self, now: float) -> None:
        """Packets that never arrived (sequence gaps): a warning at most every 10 s."""
        lost = sum(i.merger.lost_packets for i in self._instances())
        if lost > self._loss_logged:
            self.log.warn(
                "sacn: {new} packets lost on the way in since the last report ({total} in all): "
                "the network or this host does not keep up",
                new=lost - self._loss_logged,
                total=lost,
            )
        self._loss_logged = lost
        self._loss_logged_at = now

    # -- sending --------------------------------------------------------------------------

    def touched(self, instance: SacnInstance, now: float) -> None:
        """An output universe's levels were written; send if the frame changed."""
        if not self.running or not instance.destinations:
            return
        if instance.levels.tobytes() != instance.last_frame:
            instance.schedule.change()
            self._kick(instance, now)

    def _kick(self, instance: SacnInstance, now: float) -> None:
        """Send now if due, and keep one heap entry for the next time this universe is due."""
        due = instance.schedule.next_time()
        if due <= now:
            self._transmit(instance, now)
            due = instance.schedule.next_time()
        if due != instance.due:
            instance.due = due
            heapq.heappush(self._due, (due, id(instance), instance))
            timer = self._timer
            if timer is None:
                self._timer = self.reactor.callLater(max(due - now, 0.0), self._run_due)
            elif due < timer.getTime():
                timer.reset(max(due - now, 0.0))

    def _run_due(self) -> None:
        """One timer for all universes: repeats, keep-alives and frames held by the 44 Hz cap.

        A heap with lazily dropped stale entries instead of a DelayedCall per universe, whose
        rescheduling costs a scan of the reactor's whole timer list.
        """
        self._timer = None
        now = self.reactor.seconds()
        heap = self._due
        while heap and heap[0][0] <= now:
            due, _, instance = heapq.heappop(heap)
            if due == instance.due and instance.destinations:
                instance.due = float("inf")
                self._kick(instance, now)
        if heap and self._timer is None:
            self._timer = self.reactor.callLater(max(heap[0][0] - now, 0.0), self._run_due)

    def _transmit(self, instance: SacnInstance, now: float, options: int = 0) -> None:
        frame = instance.levels.tobytes()
        instance.last_frame = frame
        before, after = instance.header
        sequence = instance.sequence
        instance.sequence = (sequence + 1) & 0xFF
        if options:
            after = _BYTE[after[0] | options] + after[1:]
        packet = b"".join((before, _BYTE[sequence], after, frame))
        for sock, address in instance.destinations:
            self._sendto(sock, packet, address)
        instance.schedule.sent(now)
        if instance.sync_address:
            self._sync_due.add(instance.sync_address)
            if self._sync_call is None:
                self._sync_call = self.reactor.callLater(0, self._send_syncs)

    def _sendto(self, sock: socket.socket, packet: bytes, address: tuple[str, int]) -> None:
        try:
            sock.sendto(packet, address)
            self.packets_sent += 1
        except OSError as error:
            self.send_errors += 1
            now = self.reactor.seconds()
            if now - self._last_send_error >= 10.0:
                self._last_send_error = now
                self.log.warn(
                    "sacn: sending to {address} failed: {error} ({count} failed so far)",
                    address=address[0],
                    error=error.strerror or error,
                    count=self.send_errors,
                )

    def _send_syncs(self) -> None:
        self._sync_call = None
        due, self._sync_due = self._sync_due, set()
        for address in sorted(due):
            sequence = self._sync_sequence.get(address, 0)
            self._sync_sequence[address] = (sequence + 1) & 0xFF
            packet = e131.encode_sync(self.cid, sequence, address)
            users = [i for i in self._instances() if i.sync_address == address and i.destinations]
            targets = self._group_destinations(address, users)
            targets += [t for i in users for t in i.unicast_targets if t not in targets]
            for sock, target in targets:
                self._sendto(sock, packet, target)

    def _send_discovery(self) -> None:
        universes = sorted({i.universe for i in self._instances() if i.destinations})
        if not universes:
            return
        pages = e131.discovery_pages(self.cid, self.source_name, universes)
        senders = [i for i in self._instances() if i.destinations and not i.options["unicast"]]
        for sock, target in self._group_destinations(e131.DISCOVERY_UNIVERSE, senders):
            for page in pages:
                self._sendto(sock, page, target)

    # -- sockets and lifecycle ------------------------------------------------------------

    def _interfaces(self, bind: Bind) -> list[Interface]:
        if not bind.wildcard:
            return [Interface(bind.host, 0)]
        return [resolve_interface(spec) for spec in self.interface_specs] or [
            Interface("0.0.0.0", 0)
        ]

    def _v6_indexes(self, bind: Bind) -> list[int]:
        return sorted({i.index for i in self._interfaces(bind)} or {0})

    def _send_socket(self, family: int, bind: Bind, interface: Interface | int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        if family == socket.AF_INET:
            assert isinstance(interface, Interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface.mreqn("0.0.0.0"))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(bind.local))
        else:
            assert isinstance(interface, int)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, interface)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, self.ttl)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(bind.local))
        self._send_sockets.append(sock)
        return sock

    def _receive_port(self, family: int, port: int) -> MulticastPort:
        wildcard = "::" if family == socket.AF_INET6 else ""
        listening: MulticastPort = self.reactor.listenMulticast(
            port, _Receiver(self), interface=wildcard, listenMultiple=True
        )
        sock = listening.socket
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._ports.append(listening)
        return listening

    def _join_all(self, family: int, port: int, joins: list[tuple[str, Interface | int]]) -> None:
        """Open receive sockets for ``port`` holding at most 20 joins each."""
        starts = range(0, max(len(joins), 1), MAX_JOINS)
        for start in starts:
            sock = self._receive_port(family, port).socket
            for group, interface in joins[start : start + MAX_JOINS]:
                try:
                    if isinstance(interface, Interface):
                        sock.setsockopt(
                            socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, interface.mreqn(group)
                        )
                    else:
                        membership = socket.inet_pton(socket.AF_INET6, group) + struct.pack(
                            "@I", interface
                        )
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
                except OSError as error:
                    hint = (
                        " (raise the sysctl net.ipv4.igmp_max_memberships)"
                        if error.errno == errno.ENOBUFS
                        else ""
                    )
                    self.log.error(
                        "sacn: cannot join {group}: {error}{hint}",
                        group=group,
                        error=error.strerror or error,
                        hint=hint,
                    )
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports double
        self.log.info(
            "sacn: {sockets} receive socket(s) on port {port} for {joins} group joins, "
            "receive buffer {size} bytes each",
            sockets=len(starts),
            port=port,
            joins=len(joins),
            size=size,
        )
        if size < RECEIVE_BUFFER:
            self.log.warn(
                "sacn: receive buffer is {size} bytes, not {wanted}: raise net.core.rmem_max "
                "or run with CAP_NET_ADMIN, or large rigs will lose packets",
                size=size,
                wanted=RECEIVE_BUFFER,
            )

    def _group_destinations(
        self, universe: int, instances: Iterable[SacnInstance]
    ) -> list[Destination]:
        """Where a packet for ``universe`` goes, over the instances' bind descriptors."""
        result: list[Destination] = []
        for instance in instances:
            for entry in self._instance_destinations(instance, universe):
                if entry not in result:
                    result.append(entry)
        return result

    def _instance_destinations(self, instance: SacnInstance, universe: int) -> list[Destination]:
        index = instance.options["interface"]
        v4, v6 = self._senders[index]
        result: list[Destination] = []
        if not instance.options["unicast"]:
            result += [(sock, (e131.ipv4_group(universe), e131.PORT)) for sock in v4]
            if instance.options["ipv6"]:
                result += [(sock, (e131.ipv6_group(universe), e131.PORT)) for sock in v6]
        return result

    def _unicast_destinations(self, instance: SacnInstance) -> list[Destination]:
        index = instance.options["interface"]
        v4, v6 = self._senders[index]
        result = []
        destination: HostPort
        for destination in instance.options["destination"]:
            pool = v6 if ":" in destination.host else v4
            if not pool:
                pool = [self._send_socket(socket.AF_INET6, self.binds[index], 0)]
                self._senders[index] = (v4, pool)
            result.append((pool[0], (destination.host, destination.port)))
        return result

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        instances = list(self._instances())
        for index, bind in enumerate(self.binds):
            mine = [i for i in instances if i.options["interface"] == index]
            v4 = [self._send_socket(socket.AF_INET, bind, f) for f in self._interfaces(bind)]
            v6 = []
            if any(i.options["ipv6"] for i in mine):
                v6 = [self._send_socket(socket.AF_INET6, bind, f) for f in self._v6_indexes(bind)]
            self._senders.append((v4, v6))
            receivers = [i for i in mine if i.receives]
            if receivers:
                self._open_receivers(bind, receivers)
        for instance in instances:
            if instance.receives:
                instance.watch_inputs()
                self._inputs.setdefault(instance.universe, []).append(instance)
            if instance.sends:
                self._start_output(instance)
        self._loops = [
            task.LoopingCall(self._expire),
            task.LoopingCall(self._send_discovery),
        ]
        for loop, interval in zip(self._loops, (EXPIRY_INTERVAL, DISCOVERY_INTERVAL), strict=True):
            loop.clock = self.reactor
            loop.start(interval, now=interval == DISCOVERY_INTERVAL)

    def _open_receivers(self, bind: Bind, receivers: list[SacnInstance]) -> None:
        universes = {e131.DISCOVERY_UNIVERSE}
        v6_universes: set[int] = set()
        for instance in receivers:
            if instance.options["unicast"]:
                continue
            extra = {instance.sync_address} - {0}
            universes |= {instance.universe} | extra
            if instance.options["ipv6"]:
                v6_universes |= {instance.universe} | extra
        joins: list[tuple[str, Interface | int]] = [
            (e131.ipv4_group(u), f) for u in sorted(universes) for f in self._interfaces(bind)
        ]
        self._join_all(socket.AF_INET, bind.port, joins)
        if v6_universes:
            v6_joins: list[tuple[str, Interface | int]] = [
                (e131.ipv6_group(u), f)
                for u in sorted(v6_universes | {e131.DISCOVERY_UNIVERSE})
                for f in self._v6_indexes(bind)
            ]
            self._join_all(socket.AF_INET6, bind.port, v6_joins)

    def _start_output(self, instance: SacnInstance) -> None:
        options = instance.options
        priority = options["priority"]
        header = e131.data_header(
            self.cid,
            self.source_name,
            instance.universe,
            priority=100 if priority is None else priority,
            sync_address=instance.sync_address,
            options=e131.OPTION_PREVIEW if options["preview"] else 0,
        )
        instance.header = (header[: e131.SEQUENCE_OFFSET], header[e131.SEQUENCE_OFFSET + 1 :])
        instance.unicast_targets = self._unicast_destinations(instance)
        instance.destinations = (
            self._instance_destinations(instance, instance.universe) + instance.unicast_targets
        )
        if instance.destinations:
            instance.schedule.change()
            self._kick(instance, self.reactor.seconds())

    def stopService(self) -> defer.Deferred[None]:
        """Say goodbye: 3 Stream_Terminated packets per output, then close the sockets."""
        super().stopService()  # type: ignore[no-untyped-call]  # no child services
        self.log.info(
            "sacn: {received} packets received, {lost} lost on the way (sequence gaps), "
            "{bad} dropped as bad input; {sent} packets sent, {failed} failed",
            received=self.packets_received,
            lost=sum(i.merger.lost_packets for i in self._instances()),
            bad=self.bad.total,
            sent=self.packets_sent,
            failed=self.send_errors,
        )
        for loop in self._loops:
            if loop.running:
                loop.stop()
        senders = [i for i in self._instances() if i.destinations]
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._due = []
        if self._sync_call is not None and self._sync_call.active():
            self._sync_call.cancel()
        self._sync_call = None
        done: defer.Deferred[None] = defer.Deferred()

        def terminate(left: int) -> None:
            now = self.reactor.seconds()
            for instance in senders:
                self._transmit(instance, now, e131.OPTION_TERMINATED)
            if left > 1:
                self.reactor.callLater(PERIOD, terminate, left - 1)
            else:
                self._close()
                done.callback(None)

        terminate(TERMINATE_COUNT)
        return done

    def _close(self) -> None:
        for instance in self._instances():
            instance.destinations = []
        for port in self._ports:
            port.stopListening()
        for sock in self._send_sockets:
            sock.close()
        self._ports, self._send_sockets, self._inputs = [], [], {}


BACKEND = SacnBackend
