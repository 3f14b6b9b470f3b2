"""The sACN backend: channels and options, then real multicast inside the network lab."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from netmidi.backend import Event, Instance, Route
from netmidi.backends.sacn import SacnBackend, SacnInstance, bind_descriptor
from netmidi.codec import e131
from netmidi.options import OptionError, parse_options
from netmidi.values import Value

LAB = os.environ.get("NETMIDI_NETLAB") == "1"
PEER = bytes(range(16))


def make_backend(
    instances: Mapping[str, Mapping[str, Any]], clock: Any = reactor, **options: Any
) -> SacnBackend:
    given = {"interface": "127.0.0.1", "name": "test", **options}
    parsed, errors = parse_options(SacnBackend.all_global_options(), given)
    assert not errors, errors
    backend = SacnBackend(clock, parsed)
    for name, raw in instances.items():
        parsed, errors = parse_options(SacnBackend.instance_options, raw)
        assert not errors, errors
        backend.add_instance(name, parsed)
    return backend


def sacn(backend: SacnBackend, name: str) -> SacnInstance:
    instance = backend.instances[name]
    assert isinstance(instance, SacnInstance)
    return instance


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Sequence[Event]]] = []

    def __call__(self, instance: Instance, events: Sequence[Event]) -> None:
        self.events.append((instance.name, list(events)))


def listen(backend: SacnBackend, name: str, *channels: Any) -> tuple[SacnInstance, Sink]:
    """Map ``channels`` of an instance as inputs and collect what it emits."""
    instance = sacn(backend, name)
    instance.mapped(frozenset(channels), frozenset())
    sink = Sink()
    instance.attach(sink)
    return instance, sink


class ChannelTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.backend = make_backend({"u": {"universe": 1}}, clock=task.Clock())
        self.instance = sacn(self.backend, "u")

    def test_specs(self) -> None:
        self.assertEqual(self.instance.parse_channel("1"), 1)
        self.assertEqual(self.instance.parse_channel("512"), 512)
        self.assertEqual(self.instance.parse_channel("10+11"), (10, 11))
        self.assertEqual(self.instance.channel_spec((10, 11)), "10+11")
        for bad in ("0", "513", "x", "1+", "5+5", "-1", "1+2+3"):
            self.assertRaises(OptionError, self.instance.parse_channel, bad)

    def test_wide_and_single_conflict(self) -> None:
        self.instance.parse_channel("10+11")
        self.instance.parse_channel("10+11")  # the same wide channel again is fine
        error = self.assertRaises(OptionError, self.instance.parse_channel, "11")
        self.assertIn("part of the wide channel 10+11", str(error))
        self.assertRaises(OptionError, self.instance.parse_channel, "11+12")
        self.instance.parse_channel("20")
        self.assertRaises(OptionError, self.instance.parse_channel, "19+20")

    def test_events_for_changed_watched_channels(self) -> None:
        import numpy as np

        self.instance.inputs = frozenset({1, (10, 11)})
        self.instance.watch_inputs()
        old = np.zeros(512, np.uint8)
        new = old.copy()
        new[9] = 0x12  # coarse byte of the wide channel
        new[10] = 0x34  # and its fine byte: one event
        new[2] = 99  # not mapped: no event
        self.assertEqual(self.instance.events(old, new), [((10, 11), Value.from_raw(0x1234, 16))])
        new2 = new.copy()
        new2[0] = 255
        self.assertEqual(self.instance.events(new, new2), [(1, Value.from_raw(255, 8))])

    def test_send_scales(self) -> None:
        self.instance.send([(5, Value.from_raw(127, 7)), ((1, 2), Value.from_raw(0xABCD, 16))])
        self.assertEqual(self.instance.levels[:5].tolist(), [0xAB, 0xCD, 0, 0, 255])


class OptionTests(SynchronousTestCase):
    def test_bind(self) -> None:
        self.assertEqual(bind_descriptor("0.0.0.0"), bind_descriptor("0.0.0.0 5568"))
        self.assertTrue(bind_descriptor("127.0.0.1 6000 local").local)
        for bad in ("nowhere", "1.2.3.4 5568 remote", "::1", "1.2.3.4 70000"):
            self.assertRaises(OptionError, bind_descriptor, bad)

    def test_instance_options(self) -> None:
        table = SacnBackend.instance_options
        _, errors = parse_options(table, {"universe": 64000})
        self.assertIn("1-63999", errors["universe"])
        _, errors = parse_options(table, {"universe": 1, "priority": 201, "merge": "avg"})
        self.assertEqual(set(errors), {"priority", "merge"})
        _, errors = parse_options(table, {})
        self.assertIn("required", errors["universe"])

    def test_check(self) -> None:
        backend = make_backend({"u": {"universe": 1, "interface": 1}}, clock=task.Clock())
        self.assertEqual(len(backend.check()), 1)
        bad = make_backend({}, clock=task.Clock(), interface="no-such-nic0")
        self.assertIn("interface name", bad.check()[0])

    def test_cid_stable_and_named(self) -> None:
        one = make_backend({}, clock=task.Clock(), name="a")
        self.assertEqual(one.cid, make_backend({}, clock=task.Clock(), name="a").cid)
        self.assertNotEqual(one.cid, make_backend({}, clock=task.Clock(), name="b").cid)


class ClaimTests(SynchronousTestCase):
    def test_claims_same_width_only(self) -> None:
        backend = make_backend({"a": {"universe": 1}, "b": {"universe": 2}}, clock=task.Clock())
        a, b = sacn(backend, "a"), sacn(backend, "b")
        routes = [Route(a, n, b, n + 10) for n in range(1, 101)]
        routes.append(Route(a, (200, 201), b, (300, 301)))
        mixed = Route(a, 400, b, (402, 403))
        claimed = backend.claim_routes([*routes, mixed])
        self.assertEqual(list(claimed), routes)
        self.assertTrue(a.claimed_input and b.claimed_output)
        [copy] = a.copies
        self.assertIs(copy.target, b)


class FakePort:
    """What listenMulticast returns, with a real but idle socket so that setsockopt works."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def stopListening(self) -> None:
        self.socket.close()


class ClockReactor(task.Clock):
    """task.Clock plus listenMulticast: the backend's timing without a network."""

    def listenMulticast(self, *args: Any, **kwargs: Any) -> FakePort:
        return FakePort()


class ClockTests(SynchronousTestCase):
    """Timers and state with task.Clock; what would be sent is captured, nothing goes out."""

    def setUp(self) -> None:
        self.clock = ClockReactor()
        self.sent: list[tuple[float, str, e131.Packet]] = []

    def backend(self, instances: Mapping[str, Mapping[str, Any]], **options: Any) -> SacnBackend:
        backend = make_backend(instances, clock=self.clock, **options)

        def capture(sock: socket.socket, packet: bytes, address: tuple[str, int]) -> None:
            self.sent.append((self.clock.seconds(), address[0], e131.decode(packet)))

        backend._sendto = capture  # type: ignore[method-assign]
        return backend

    def data_sent(self, group: str) -> list[tuple[float, e131.DataPacket]]:
        return [(t, p) for t, a, p in self.sent if a == group and isinstance(p, e131.DataPacket)]

    def test_source_loss_after_2_5_s(self) -> None:
        backend = self.backend({"in": {"universe": 1}})
        instance, sink = listen(backend, "in", 1)
        backend.startService()
        backend.received(e131.encode_data(PEER, "p", 1, 0, b"\x80"), ("10.0.0.9", 5568))
        self.assertEqual(sink.events, [("in", [(1, Value.from_raw(128, 8))])])
        self.clock.advance(2.4)
        self.assertEqual(len(sink.events), 1)
        self.clock.pump([0.25] * 2)
        self.assertEqual(sink.events[-1], ("in", [(1, Value.from_raw(0, 8))]))
        self.assertEqual(instance.merger.sources, {})

    def test_send_timing_change_repeats_keepalive(self) -> None:
        backend = self.backend({"out": {"universe": 9, "priority": 100}})
        out = sacn(backend, "out")
        backend.startService()
        self.clock.advance(0.5)
        out.send([(1, Value.from_raw(10, 8))])
        self.clock.pump([0.001] * 3000)
        times = [round(t, 3) for t, p in self.data_sent("239.255.0.9") if p.slots[0] == 10]
        gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
        self.assertEqual(times[0], 0.5)
        self.assertEqual(gaps[:3], [0.046, 0.046, 0.046])  # 3 repeats, two periods apart
        self.assertTrue(all(0.8 <= g <= 1.0 for g in gaps[3:]), gaps)
        self.assertEqual(len(gaps[3:]), 3)

    def test_rate_cap_sends_latest(self) -> None:
        backend = self.backend({"out": {"universe": 9, "priority": 100}})
        out = sacn(backend, "out")
        backend.startService()
        self.clock.advance(1.0)
        del self.sent[:]
        for n in range(100):  # 100 changes in 100 ms
            out.send([(1, Value.from_raw(n, 8))])
            self.clock.advance(0.001)
        self.clock.pump([0.001] * 100)
        values = [p.slots[0] for t, p in self.data_sent("239.255.0.9")]
        in_first_100ms = [t for t, p in self.data_sent("239.255.0.9") if t < 1.1]
        self.assertLessEqual(len(in_first_100ms), 9)  # 44 Hz: 4.4 per 100 ms, plus a burst of 4
        self.assertEqual(values[-1], 99)

    def test_terminate_discovery_and_sync(self) -> None:
        backend = self.backend({"a": {"universe": 3, "priority": 100, "sync": 77}})
        backend.startService()
        self.clock.advance(0.1)
        discovery = [p for t, a, p in self.sent if a == "239.255.250.214"]
        self.assertEqual(discovery, [e131.DiscoveryPacket(backend.cid, "test", 0, 0, (3,))])
        self.clock.advance(10.0)
        self.assertEqual(len([a for t, a, p in self.sent if a == "239.255.250.214"]), 2)
        syncs = [p for t, a, p in self.sent if a == "239.255.0.77"]
        self.assertTrue(syncs)
        self.assertEqual([p.sequence for p in syncs], list(range(len(syncs))))  # type: ignore[union-attr]
        done = backend.stopService()
        self.clock.pump([0.023] * 4)
        self.assertTrue(done.called)
        ends = [p for t, p in self.data_sent("239.255.0.3") if p.terminated]
        self.assertEqual(len(ends), 3)

    def test_discovery_received_builds_source_list(self) -> None:
        backend = self.backend({"in": {"universe": 1}}, detect="on")
        backend.startService()
        pages = e131.discovery_pages(PEER, "console", range(1, 700))
        with capturedLogs() as events:
            backend.received(pages[1], ("10.0.0.9", 5568))
            self.assertEqual(backend.source_list.sources, {})  # not complete yet
            backend.received(pages[0], ("10.0.0.9", 5568))
        name, universes, _ = backend.source_list.sources[PEER]
        self.assertEqual((name, universes), ("console", frozenset(range(1, 700))))
        self.assertIn("sends universes 1, 2, 3,", "".join(formatEvent(e) for e in events))
        self.clock.advance(21.0)
        self.assertEqual(backend.source_list.sources, {})  # forgotten after 20 s of silence

    def test_unicast_preview_realtime(self) -> None:
        backend = self.backend(
            {
                "u": {"universe": 4, "unicast": True, "destination": ["127.0.0.1 6000"]},
                "p": {"universe": 5, "preview": True, "realtime": True, "priority": 0},
            }
        )
        unicast, preview = sacn(backend, "u"), sacn(backend, "p")
        unicast.mapped(frozenset(), frozenset({1}))
        backend.startService()
        self.assertEqual([a for _, a in unicast.destinations], [("127.0.0.1", 6000)])
        del self.sent[:]
        for n in range(1, 21):  # 20 changes in 20 ms: realtime sends them all
            preview.send([(1, Value.from_raw(n, 8))])
            unicast.send([(1, Value.from_raw(n, 8))])
            self.clock.advance(0.001)
        to_preview = self.data_sent("239.255.0.5")
        self.assertEqual([p.slots[0] for _, p in to_preview], list(range(1, 21)))
        self.assertTrue(all(p.preview and p.priority == 0 for _, p in to_preview))
        to_unicast = self.data_sent("127.0.0.1")
        self.assertLessEqual(len(to_unicast), 3)  # capped at 44 Hz
        self.assertEqual(self.data_sent("239.255.0.4"), [])

    def test_loss_is_reported(self) -> None:
        backend = self.backend({"in": {"universe": 1}})
        listen(backend, "in", 1)
        backend.startService()
        with capturedLogs() as events:
            backend.received(e131.encode_data(PEER, "p", 1, 0, b"\x01"), ("h", 5568))
            backend.received(e131.encode_data(PEER, "p", 1, 5, b"\x02"), ("h", 5568))
            self.clock.advance(10.0)
        lines = [formatEvent(e) for e in events]
        self.assertIn("sacn: 4 packets lost on the way in", "\n".join(lines))

    def test_detect_watches_every_slot(self) -> None:
        backend = self.backend({"in": {"universe": 1}}, detect="on")
        instance, sink = listen(backend, "in")
        backend.startService()
        backend.received(e131.encode_data(PEER, "p", 1, 0, bytes(300) + b"\x07"), ("h", 5568))
        self.assertEqual(sink.events, [("in", [(301, Value.from_raw(7, 8))])])

    def test_receive_sockets(self) -> None:
        """At most 20 joins per socket, IP_MULTICAST_ALL off, a large receive buffer."""
        backend = self.backend({f"u{n}": {"universe": n} for n in range(1, 46)}, detect="on")
        backend.startService()
        self.assertEqual(len(backend._ports), 3)  # 45 universes + discovery = 46 joins
        for port in backend._ports:
            sock = port.socket
            self.assertEqual(sock.getsockopt(socket.IPPROTO_IP, 49), 0)
            if os.geteuid() == 0:  # SO_RCVBUFFORCE; others are capped by net.core.rmem_max
                self.assertGreaterEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 2**20)

    @settings(max_examples=120, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.builds(
                    e131.encode_data,
                    st.sampled_from([PEER, b"Q" * 16, bytes(16)]),
                    st.just("fuzz"),
                    st.sampled_from([1, 2, 3]),
                    st.integers(0, 255),
                    st.binary(max_size=512),
                    st.integers(0, 200),
                    st.sampled_from([0, 0, 7]),
                    st.sampled_from([0, 0x80, 0x40, 0x20, 0xE0]),
                    st.sampled_from([0, 0, 0xDD, 0x17]),
                ),
                st.builds(e131.encode_sync, st.just(PEER), st.integers(0, 255), st.just(7)),
                st.binary(max_size=700),
            ),
            max_size=30,
        ),
        st.lists(st.floats(0, 3.0), min_size=30, max_size=30),
    )
    def test_fuzzed_traffic_never_raises(self, datagrams: list[bytes], gaps: list[float]) -> None:
        self.clock = ClockReactor()
        backend = self.backend(
            {"a": {"universe": 1, "merge": "ltp"}, "b": {"universe": 2}, "c": {"universe": 3}},
            detect="on",
        )
        listen(backend, "b", (1, 2))
        backend.startService()
        for datagram, gap in zip(datagrams, gaps, strict=False):
            backend.received(datagram, ("10.0.0.9", 5568))
            self.clock.advance(gap)
        backend.stopService()
        self.clock.advance(1.0)

    def test_bad_input_counted_by_kind(self) -> None:
        backend = self.backend({"in": {"universe": 1}})
        backend.startService()
        for size in range(10, 40):
            backend.received(bytes(size), ("10.0.0.9", 5568))
        backend.received(e131.encode_data(PEER, "p", 2, 0, b"x"), ("10.0.0.9", 5568))
        self.assertEqual(
            dict(backend.bad.counts),
            {"truncated packet": 30, "data for a universe no instance receives": 1},
        )


def datagrams(sock: socket.socket) -> list[e131.Packet]:
    found: list[e131.Packet] = []
    while True:
        try:
            found.append(e131.decode(sock.recv(2000)))
        except BlockingIOError:
            return found


def listener(*universes: int) -> socket.socket:
    """A plain receiver on 5568 joined on 127.0.0.1, as a third-party receiver would be."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("", e131.PORT))
    sock.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off
    for universe in universes:
        mreq = socket.inet_aton(e131.ipv4_group(universe)) + socket.inet_aton("127.0.0.1")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    return sock


def sleep(seconds: float) -> Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


class LabTests(TestCase):
    """Real multicast on the lab's loopback (IPv4 multicast is routed over lo there)."""

    if not LAB:
        skip = "needs the network lab (run inside ../shared/netlab)"

    def start(self, backend: SacnBackend) -> None:
        backend.startService()
        self.addCleanup(backend.stopService)

    @inlineCallbacks
    def test_receive_events_and_bad_input(self) -> Any:
        backend = make_backend({"in": {"universe": 3}})
        instance, sink = listen(backend, "in", 1, sacn(backend, "in").parse_channel("5+6"))
        self.start(backend)
        out = sender()
        group = (e131.ipv4_group(3), e131.PORT)
        out.sendto(b"garbage", group)
        out.sendto(e131.encode_data(PEER, "peer", 3, 0, bytes([200, 0, 0, 0, 1, 2]))[:-1], group)
        out.sendto(e131.encode_data(PEER, "peer", 3, 1, bytes([200, 0, 0, 0, 1, 2])), group)
        out.sendto(e131.encode_data(PEER, "peer", 3, 2, bytes([200, 9, 0, 0, 1, 3])), group)
        out.sendto(e131.encode_data(PEER, "peer", 3, 1, bytes([0, 0, 0, 0, 0, 0])), group)  # stale
        yield sleep(0.2)
        self.assertEqual(
            sink.events,
            [
                ("in", [(1, Value.from_raw(200, 8)), ((5, 6), Value.from_raw(0x0102, 16))]),
                ("in", [((5, 6), Value.from_raw(0x0103, 16))]),
            ],
        )
        self.assertEqual(backend.bad.total, 3)  # garbage, truncated, out of sequence

    @inlineCallbacks
    def test_bind_descriptors(self) -> Any:
        """An interface address in bind still gets multicast; a second port takes unicast."""
        backend = make_backend(
            {
                "multi": {"universe": 31},
                "uni": {"universe": 32, "interface": 1, "unicast": True},
            },
            bind=["127.0.0.1 5568", "127.0.0.1 6001"],
            interface=[],
        )
        multi, multi_sink = listen(backend, "multi", 1)
        uni, uni_sink = listen(backend, "uni", 1)
        self.start(backend)
        out = sender()
        out.sendto(e131.encode_data(PEER, "p", 31, 0, b"\x05"), (e131.ipv4_group(31), 5568))
        out.sendto(e131.encode_data(PEER, "p", 32, 0, b"\x06"), ("127.0.0.1", 6001))
        out.sendto(e131.encode_data(PEER, "p", 32, 1, b"\x07"), (e131.ipv4_group(32), 5568))
        yield sleep(0.2)
        self.assertEqual(multi_sink.events, [("multi", [(1, Value.from_raw(5, 8))])])
        self.assertEqual(uni_sink.events, [("uni", [(1, Value.from_raw(6, 8))])])  # not 7

    @inlineCallbacks
    def test_vector_route_repeat_keepalive_terminate(self) -> Any:
        backend = make_backend({"in": {"universe": 1}, "out": {"universe": 2}})
        source, target = sacn(backend, "in"), sacn(backend, "out")
        routes = [Route(source, n, target, 513 - n) for n in range(1, 513)]  # reversed
        self.assertEqual(len(backend.claim_routes(routes)), 512)
        rx = listener(2)
        self.addCleanup(rx.close)
        self.start(backend)
        yield sleep(0.1)
        datagrams(rx)  # the initial frame of zeros
        sender().sendto(
            e131.encode_data(PEER, "peer", 1, 0, bytes(range(256)) * 2), (e131.ipv4_group(1), 5568)
        )
        yield sleep(1.2)
        got = datagrams(rx)
        data = [p for p in got if isinstance(p, e131.DataPacket)]
        self.assertEqual(data[0].slots, bytes(reversed(bytes(range(256)) * 2)))
        self.assertEqual(data[0].universe, 2)
        self.assertEqual(data[0].priority, 100)
        # the change, 3 repeats, then one keep-alive within the 1.2 s
        self.assertEqual(len(data), 5)
        self.assertEqual(len({p.slots for p in data}), 1)
        self.assertEqual([(p.sequence - data[0].sequence) % 256 for p in data], [0, 1, 2, 3, 4])
        yield backend.stopService()
        yield sleep(0.05)
        ends = [p for p in datagrams(rx) if isinstance(p, e131.DataPacket)]
        self.assertEqual([p.terminated for p in ends], [True, True, True])

    @inlineCallbacks
    def test_generic_send_discovery_and_sync(self) -> Any:
        backend = make_backend(
            {
                "a": {"universe": 10, "priority": 150, "sync": 900},
                "b": {"universe": 600, "sync": 900},
            }
        )
        a = sacn(backend, "a")
        b = sacn(backend, "b")
        b.mapped(frozenset(), frozenset({b.parse_channel("1+2")}))
        rx = listener(10, 900, e131.DISCOVERY_UNIVERSE)
        self.addCleanup(rx.close)
        self.start(backend)
        yield sleep(0.05)
        a.send([(a.parse_channel("3"), Value.from_raw(1, 1))])
        yield sleep(0.1)
        got = datagrams(rx)
        [discovery] = [p for p in got if isinstance(p, e131.DiscoveryPacket)]
        self.assertEqual(discovery.universes, (10, 600))
        syncs = [p for p in got if isinstance(p, e131.SyncPacket)]
        self.assertTrue(syncs)
        self.assertEqual({p.sync_address for p in syncs}, {900})
        data = [p for p in got if isinstance(p, e131.DataPacket)]
        self.assertEqual(data[-1].slots[:3], b"\0\0\xff")
        self.assertEqual(data[-1].priority, 150)
        self.assertEqual(data[-1].sync_address, 900)

    @inlineCallbacks
    def test_sacn_to_sacn_between_daemons_with_merge(self) -> Any:
        """Two netmidi sources on one universe, merged HTP by a third."""
        one = make_backend({"o": {"universe": 7, "priority": 100}}, name="one")
        two = make_backend({"o": {"universe": 7, "priority": 100}}, name="two")
        rx = make_backend({"i": {"universe": 7}}, name="rx")
        inp, sink = listen(rx, "i", 1, 2)
        for backend in (rx, one, two):
            self.start(backend)
        sacn(one, "o").send([(1, Value.from_raw(100, 8)), (2, Value.from_raw(0, 8))])
        sacn(two, "o").send([(1, Value.from_raw(50, 8)), (2, Value.from_raw(60, 8))])
        yield sleep(0.2)
        self.assertEqual(inp.merger.levels[:2].tolist(), [100, 60])
        self.assertEqual(len(inp.merger.sources), 2)
        yield one.stopService()
        yield sleep(0.1)
        self.assertEqual(inp.merger.levels[:2].tolist(), [50, 60])  # terminated at once
        self.assertEqual(sink.events[-1], ("i", [(1, Value.from_raw(50, 8))]))


def _join_v6(sock: socket.socket, group: str, interface: str) -> None:
    membership = socket.inet_pton(socket.AF_INET6, group)
    membership += struct.pack("@I", socket.if_nametoindex(interface))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)


class LabIPv6Tests(TestCase):
    """IPv6 multicast does not work on lo: the lab's veth pair lab0/lab1 carries it."""

    if not LAB:
        skip = "needs the network lab (run inside ../shared/netlab)"

    @inlineCallbacks
    def test_identical_packets_on_ipv4_and_ipv6(self) -> Any:
        backend = make_backend(
            {"o": {"universe": 1, "priority": 100, "ipv6": True}}, interface="lab0"
        )
        rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(rx.close)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        rx.bind(("::", e131.PORT))
        _join_v6(rx, e131.ipv6_group(1), "lab1")
        rx.setblocking(False)
        rx4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(rx4.close)
        rx4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        rx4.bind(("", e131.PORT))
        rx4.setsockopt(socket.IPPROTO_IP, 49, 0)
        rx4.setsockopt(
            socket.IPPROTO_IP,
            socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton("239.255.0.1") + socket.inet_aton("10.77.0.2"),
        )
        rx4.setblocking(False)
        backend.startService()
        sacn(backend, "o").send([(1, Value.from_raw(42, 8))])
        yield sleep(0.15)
        yield backend.stopService()
        v6 = [p for p in datagrams(rx) if isinstance(p, e131.DataPacket)]
        v4 = [p for p in datagrams(rx4) if isinstance(p, e131.DataPacket)]
        self.assertTrue(v6)
        self.assertEqual(v6, v4)
        self.assertIn(42, v6[-1].slots[:1])

    @inlineCallbacks
    def test_receive_ipv6(self) -> Any:
        backend = make_backend({"in": {"universe": 1, "ipv6": True}}, interface="lab1")
        instance, sink = listen(backend, "in", 2)
        backend.startService()
        self.addCleanup(backend.stopService)
        tx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.addCleanup(tx.close)
        tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("lab0"))
        packet = e131.encode_data(PEER, "v6 peer", 1, 0, bytes([0, 99]))
        yield sleep(0.1)
        tx.sendto(packet, (e131.ipv6_group(1), e131.PORT))
        yield sleep(0.2)
        self.assertEqual(sink.events, [("in", [(2, Value.from_raw(99, 8))])])
