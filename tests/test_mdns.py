"""mDNS / DNS-SD: address selection, record checks, and real zeroconf inside the network lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zeroconf import ServiceInfo, ServiceStateChange

from netmidi.mdns import (
    EMPTY_TXT,
    MAX_RESOLVING,
    SERVICE_TYPE,
    DiscoveredSession,
    MdnsService,
    _zeroconf_args,
    announce_addresses,
    instance_label,
    select_addresses,
    session_from_info,
)

ADAPTERS = [
    ("lo", ["127.0.0.1", "::1"]),
    ("eth0", ["192.0.2.2", "fd00::2", "fe80::1%4"]),
    ("wlan0", ["198.51.100.7"]),
]
IN_LAB = os.environ.get("NETMIDI_NETLAB") == "1"
ROOT = Path(__file__).resolve().parent.parent


class AddressTests(SynchronousTestCase):
    """Which addresses are announced and which interfaces zeroconf uses."""

    def test_default_skips_loopback(self) -> None:
        self.assertEqual(
            select_addresses(None, ADAPTERS),
            ["192.0.2.2", "fd00::2", "fe80::1%4", "198.51.100.7"],
        )

    def test_interface_names_and_addresses(self) -> None:
        self.assertEqual(select_addresses(["wlan0"], ADAPTERS), ["198.51.100.7"])
        self.assertEqual(select_addresses(["127.0.0.1"], ADAPTERS), ["127.0.0.1"])
        self.assertEqual(select_addresses(["eth1"], ADAPTERS), [])

    def test_only_what_listens(self) -> None:
        """A wildcard bind announces its family only; a specific bind only itself."""
        allowed = select_addresses(["eth0", "wlan0"], ADAPTERS)
        self.assertEqual(announce_addresses(["0.0.0.0"], allowed), ["192.0.2.2", "198.51.100.7"])
        self.assertEqual(announce_addresses(["::"], allowed), ["fd00::2", "fe80::1"])
        self.assertEqual(announce_addresses(["192.0.2.2"], allowed), ["192.0.2.2"])
        self.assertEqual(announce_addresses(["127.0.0.1"], allowed), [])
        self.assertEqual(
            announce_addresses(["::", "0.0.0.0"], allowed),
            ["192.0.2.2", "198.51.100.7", "fd00::2", "fe80::1"],
        )

    def test_zeroconf_arguments(self) -> None:
        self.assertEqual(_zeroconf_args(None), {})
        args = _zeroconf_args(["127.0.0.1"])
        self.assertEqual(args["interfaces"], ["127.0.0.1"])
        self.assertEqual(args["ip_version"].name, "V4Only")
        self.assertEqual(_zeroconf_args(["10.0.0.1", 3])["ip_version"].name, "All")


class RecordTests(SynchronousTestCase):
    """Resolved announcements that are unusable are refused with a reason."""

    def test_good(self) -> None:
        session = session_from_info(
            f"Studio iPad.{SERVICE_TYPE}", 5004, ["fe80::2%3", "10.0.0.5"], "ipad.local."
        )
        self.assertEqual(
            session,
            DiscoveredSession("Studio iPad", ("10.0.0.5", "fe80::2%3"), 5004, "ipad.local."),
        )

    def test_bad(self) -> None:
        cases = [
            (f"x.{SERVICE_TYPE}", None, ["10.0.0.5"], "port None"),
            (f"x.{SERVICE_TYPE}", 5004, ["0.0.0.0", "224.0.0.251", "junk"], "no usable address"),
            ("x._http._tcp.local.", 80, ["10.0.0.5"], "not of type"),
            (f".{SERVICE_TYPE}", 5004, ["10.0.0.5"], "empty session name"),
        ]
        for name, port, addresses, words in cases:
            with self.assertRaises(ValueError) as caught:
                session_from_info(name, port, addresses, None)
            self.assertIn(words, str(caught.exception))

    @settings(max_examples=300, deadline=None)
    @given(
        st.text(max_size=40),
        st.one_of(st.none(), st.integers(-5, 70000)),
        st.lists(st.one_of(st.ip_addresses().map(str), st.text(max_size=20)), max_size=4),
        st.one_of(st.none(), st.text(max_size=20)),
    )
    def test_fuzz(
        self, label: str, port: int | None, addresses: list[str], server: str | None
    ) -> None:
        """Whatever a record says: a usable session or a ValueError, nothing else."""
        for name in (label, f"{label}.{SERVICE_TYPE}"):
            try:
                session = session_from_info(name, port, addresses, server)
            except ValueError:
                continue
            self.assertTrue(session.addresses)
            self.assertTrue(0 < session.port < 65535)


class FakeEngine:
    """Stands in for zeroconf: resolves from a table, records registrations."""

    def __init__(self) -> None:
        self.infos: dict[str, ServiceInfo | None] = {}
        self.registered: list[ServiceInfo] = []
        self.browsing = False

    def register(self, info: ServiceInfo) -> Deferred[None]:
        self.registered.append(info)
        return succeed(None)

    def resolve(self, name: str) -> Deferred[ServiceInfo | None]:
        return succeed(self.infos.get(name))

    def browse(self, handler: Any) -> None:
        self.browsing = True

    def close(self) -> Deferred[None]:
        return succeed(None)


def info(session: str, port: int | None, addresses: list[str]) -> ServiceInfo:
    return ServiceInfo(
        SERVICE_TYPE,
        f"{session}.{SERVICE_TYPE}",
        port=port,
        server="peer.local.",
        parsed_addresses=addresses,
    )


class BrowseLogicTests(SynchronousTestCase):
    """Add, remove, reappear, our own names and bad records, with a fake engine."""

    def setUp(self) -> None:
        self.service = MdnsService(Clock(), host_name="show", adapters=lambda: ADAPTERS)
        self.engine = FakeEngine()
        self.service._started(self.engine)
        self.service._allowed = select_addresses(None, ADAPTERS)
        self.events: list[object] = []
        self.service.browse(self.events.append, lambda name: self.events.append(("gone", name)))

    def test_add_remove_reappear(self) -> None:
        name = f"iPad.{SERVICE_TYPE}"
        self.engine.infos[name] = info("iPad", 5004, ["10.0.0.5"])
        self.service._changed(name, ServiceStateChange.Added)
        self.service._changed(name, ServiceStateChange.Updated)  # same data: not reported again
        self.service._changed(name, ServiceStateChange.Removed)
        self.engine.infos[name] = info("iPad", 5006, ["10.0.0.5"])
        self.service._changed(name, ServiceStateChange.Added)
        session = DiscoveredSession("iPad", ("10.0.0.5",), 5004, "peer.local.")
        self.assertEqual(
            self.events,
            [
                session,
                ("gone", "iPad"),
                DiscoveredSession("iPad", ("10.0.0.5",), 5006, "peer.local."),
            ],
        )
        self.assertTrue(self.engine.browsing)

    def test_bad_records_are_counted(self) -> None:
        self.engine.infos[f"a.{SERVICE_TYPE}"] = info("a", 0, ["10.0.0.5"])
        self.engine.infos[f"b.{SERVICE_TYPE}"] = None
        self.service._changed(f"a.{SERVICE_TYPE}", ServiceStateChange.Added)
        self.service._changed(f"b.{SERVICE_TYPE}", ServiceStateChange.Added)
        self.assertEqual(self.events, [])
        self.assertEqual(self.service.bad.total, 2)

    def test_flood_is_bounded(self) -> None:
        """Announcements beyond the limits are dropped and counted, not resolved or kept."""
        pending: list[Deferred[ServiceInfo | None]] = []
        self.engine.resolve = lambda name: pending.append(Deferred()) or pending[-1]  # type: ignore[method-assign]
        for index in range(MAX_RESOLVING + 5):
            self.service._changed(f"s{index}.{SERVICE_TYPE}", ServiceStateChange.Added)
        self.service._changed(f"s0.{SERVICE_TYPE}", ServiceStateChange.Updated)
        self.assertEqual(len(pending), MAX_RESOLVING)
        self.assertEqual(self.service.bad.total, 5)
        for index, d in enumerate(pending):
            d.callback(info(f"s{index}", 5004, ["10.0.0.5"]))
        self.assertEqual(len(self.events), MAX_RESOLVING)
        self.assertEqual(self.service._resolving, set())

    def test_announce_and_ignore_own(self) -> None:
        """Our announcement: control port, empty TXT, allowed addresses; never reported back."""
        names: list[str] = []
        self.service.announce("show A", 5004, ["0.0.0.0"]).addCallback(names.append)
        (registered,) = self.engine.registered
        self.assertEqual(names, ["show A"])
        self.assertEqual(registered.port, 5004)
        self.assertEqual(registered.text, EMPTY_TXT)
        self.assertEqual(registered.server, "show.local.")
        self.assertEqual(registered.parsed_addresses(), ["192.0.2.2", "198.51.100.7"])
        self.engine.infos[registered.name] = registered
        self.service._changed(registered.name, ServiceStateChange.Added)
        self.assertEqual(self.events, [])

    def test_long_names_fit_a_dns_label(self) -> None:
        """A session name over 63 UTF-8 bytes is announced cut at a character boundary."""
        self.assertEqual(instance_label("short"), "short")
        label = instance_label("Bühne " * 12)
        self.assertLessEqual(len(label.encode()), 63)
        self.assertTrue(("Bühne " * 12).startswith(label))
        names: list[str] = []
        self.service.announce("ü" * 40, 5004, ["0.0.0.0"]).addCallback(names.append)
        self.assertEqual(names, ["ü" * 31])

    def test_failed_registration_is_logged_not_raised(self) -> None:
        """zeroconf giving up (say, no unique name) is logged; the show goes on."""
        self.engine.register = lambda info: fail(RuntimeError("no unique name"))  # type: ignore[method-assign]
        names: list[str] = []
        self.service.announce("x", 5004, ["0.0.0.0"]).addCallback(names.append)
        self.assertEqual(names, ["x"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_announce_before_start_waits(self) -> None:
        service = MdnsService(Clock(), host_name="show", adapters=lambda: ADAPTERS)
        names: list[str] = []
        service.announce("early", 5008, ["0.0.0.0"]).addCallback(names.append)
        self.assertEqual(names, [])
        engine = FakeEngine()
        service._allowed = select_addresses(None, ADAPTERS)
        service._started(engine)
        self.assertEqual(names, ["early"])
        self.assertEqual(engine.registered[0].port, 5008)


def wait_for(condition: Any, timeout: float = 8.0, step: float = 0.1) -> Deferred[None]:
    """Poll ``condition`` on the real reactor until it holds; fail after ``timeout``."""

    @inlineCallbacks
    def poll() -> Any:
        waited = 0.0
        while not condition():
            if waited > timeout:
                raise AssertionError(f"condition not met after {timeout} s")
            yield deferLater(reactor, step, lambda: None)
            waited += step

    return poll()  # type: ignore[no-any-return]


class LabTests(TestCase):
    """Real zeroconf on lo inside the network lab, on whichever reactor runs the tests."""

    timeout = 40

    def setUp(self) -> None:
        if not IN_LAB:
            raise self.skipTest("needs the network lab (run inside ../shared/netlab)")

    def start(self, host: str, interfaces: tuple[str, ...] = ("127.0.0.1",)) -> MdnsService:
        service = MdnsService(reactor, host_name=host, interfaces=interfaces)
        service.startService()
        self.addCleanup(lambda: service.stopService() if service.running else None)
        return service

    @inlineCallbacks
    def test_discover_goodbye_reappear(self) -> Any:
        """B discovers A's session, sees A's goodbye, and sees A again after a restart."""
        a, b = self.start("host-a"), self.start("host-b")
        seen: list[object] = []
        b.browse(seen.append, lambda name: seen.append(("gone", name)))
        yield a.ready()
        name = yield a.announce("netmidi A", 5004, ["127.0.0.1"])
        self.assertEqual(name, "netmidi A")
        yield wait_for(lambda: seen)
        self.assertEqual(
            seen, [DiscoveredSession("netmidi A", ("127.0.0.1",), 5004, "host-a.local.")]
        )
        yield a.stopService()
        yield wait_for(lambda: len(seen) == 2)
        self.assertEqual(seen[1], ("gone", "netmidi A"))
        again = self.start("host-a")
        yield again.announce("netmidi A", 5004, ["127.0.0.1"])
        yield wait_for(lambda: len(seen) == 3)
        self.assertEqual(seen[2], seen[0])

    @inlineCallbacks
    def test_across_the_veth_pair_by_interface_name(self) -> Any:
        """A on lab0, B on lab1 (interfaces by name): IPv4 and link-local IPv6 both announced."""
        a, b = self.start("host-a", ("lab0",)), self.start("host-b", ("lab1",))
        seen: list[DiscoveredSession] = []
        b.browse(seen.append, lambda name: None)
        yield a.announce("veth A", 5004, ["0.0.0.0", "::"])
        yield wait_for(lambda: seen)
        (session,) = seen
        self.assertEqual(session.addresses[0], "10.77.0.1")
        self.assertTrue(session.addresses[1].startswith("fe80::"))
        self.assertIn("%", session.addresses[1])  # scoped to the interface it came in on

    @inlineCallbacks
    def test_name_conflict_renames(self) -> Any:
        """Two hosts announcing one session name: the second is renamed, and says so."""
        a, b = self.start("host-a"), self.start("host-b")
        first = yield a.announce("clash", 5004, ["127.0.0.1"])
        second = yield b.announce("clash", 5006, ["127.0.0.1"])
        self.assertEqual(first, "clash")
        self.assertNotEqual(second, "clash")
        self.assertTrue(second.startswith("clash"))


class AsyncioReactorTests(SynchronousTestCase):
    """The lab tests and the backend's discovery tests again, on the asyncio reactor."""

    def test_lab_tests_on_asyncio_reactor(self) -> None:
        if not IN_LAB:
            raise self.skipTest("needs the network lab (run inside ../shared/netlab)")
        if "asyncio" in type(reactor).__module__:
            raise self.skipTest("already running on the asyncio reactor")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "twisted.trial",
                "--reactor=asyncio",
                "tests.test_mdns.LabTests",
                "tests.test_rtpmidi_recovery.DiscoveryLabTests",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-2000:])
        self.assertIn("PASSED (successes=6)", result.stdout)
