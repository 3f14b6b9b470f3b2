"""The source list built from universe discovery: pages, changes, expiry and bounds."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec import e131
from netmidi.sacn.sources import EXPIRY, MAX_PAGES, MAX_SOURCES, Refused, SourceList

CID = b"S" * 16


def pages(universes: range, cid: bytes = CID) -> list[e131.DiscoveryPacket]:
    decoded = [e131.decode(p) for p in e131.discovery_pages(cid, "desk", universes)]
    assert all(isinstance(p, e131.DiscoveryPacket) for p in decoded)
    return decoded  # type: ignore[return-value]


class SourceListTests(SynchronousTestCase):
    def test_complete_in_any_order_reported_once(self) -> None:
        sources = SourceList()
        first, second = pages(range(1, 1000))
        self.assertIsNone(sources.page(second, 0.0))
        announcement = sources.page(first, 0.0)
        assert announcement is not None
        self.assertEqual(announcement.universes, frozenset(range(1, 1000)))
        # the same announcement 10 s later: nothing new, but still fresh
        sources.page(first, 10.0)
        self.assertIsNone(sources.page(second, 10.0))
        sources.expire(10.0 + EXPIRY - 1)
        self.assertIn(CID, sources.sources)
        # a change is reported
        [only] = pages(range(1, 3))
        self.assertEqual(sources.page(only, 11.0).universes, frozenset({1, 2}))  # type: ignore[union-attr]

    def test_expiry_of_sources_and_incomplete_pages(self) -> None:
        sources = SourceList()
        sources.page(pages(range(1, 3))[0], 0.0)
        sources.page(pages(range(1, 600), b"P" * 16)[1], 0.0)  # never completed
        sources.expire(EXPIRY + 0.1)
        self.assertEqual(sources.sources, {})
        self.assertEqual(sources._pending, {})

    def test_bounds(self) -> None:
        sources = SourceList()
        for n in range(MAX_SOURCES):
            sources.page(pages(range(1, 2), n.to_bytes(16, "big"))[0], 0.0)
        self.assertRaises(Refused, sources.page, pages(range(1, 2), b"x" * 16)[0], 0.0)
        huge = e131.DiscoveryPacket(b"y" * 16, "big", 0, MAX_PAGES, (1,))
        self.assertRaises(Refused, SourceList().page, huge, 0.0)
