"""Who sends which universes, from universe discovery packets (pure, time passed in).

A source announces its universes every 10 s in sorted pages of 512. A page set counts once all
its pages have arrived; a source that falls silent is forgotten after 20 s (the ETC library's
source-detector expiry). Everything is bounded, because the packets come from the network.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from netmidi.codec.e131 import DiscoveryPacket

EXPIRY: Final = 20.0
MAX_SOURCES: Final = 64
MAX_PAGES: Final = 16
"""8192 universes per source; more is not a rig but a mistake or an attack."""


class Refused(Exception):
    """A discovery page that would overflow the bounds; the message is ``kind: detail``."""


class Announcement(NamedTuple):
    name: str
    universes: frozenset[int]
    seen: float


class SourceList:
    """Complete announcements by source CID, and the pages still being collected."""

    def __init__(self) -> None:
        self.sources: dict[bytes, Announcement] = {}
        self._pending: dict[bytes, tuple[float, dict[int, tuple[int, ...]]]] = {}

    def page(self, packet: DiscoveryPacket, now: float) -> Announcement | None:
        """Take one page; the announcement when it completes one that differs from the last."""
        cid = packet.cid
        if packet.last_page >= MAX_PAGES:
            raise Refused(f"too many discovery pages: {packet.last_page + 1}")
        if cid not in self.sources and cid not in self._pending:
            if len(self.sources) + len(self._pending) >= MAX_SOURCES:
                raise Refused(f"too many sources announcing universes: more than {MAX_SOURCES}")
        started, pages = self._pending.setdefault(cid, (now, {}))
        pages[packet.page] = packet.universes
        if any(p not in pages for p in range(packet.last_page + 1)):
            return None
        del self._pending[cid]
        universes = frozenset(u for p in range(packet.last_page + 1) for u in pages[p])
        previous = self.sources.get(cid)
        self.sources[cid] = Announcement(packet.source_name, universes, now)
        return (
            None if previous is not None and previous.universes == universes else self.sources[cid]
        )

    def expire(self, now: float) -> None:
        for cid, announcement in list(self.sources.items()):
            if now - announcement.seen > EXPIRY:
                del self.sources[cid]
        for cid, (started, _) in list(self._pending.items()):
            if now - started > EXPIRY:
                del self._pending[cid]
