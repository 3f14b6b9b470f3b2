"""What one universe looks like after merging every source that sends it (pure, time passed in).

Receive rules (E1.31-2018, as the ETC library reads them, plus the parts nobody implements):

* sequence check per (source CID, universe) in signed 8-bit arithmetic (clause 6.7.2): a packet
  whose sequence is 0 to 19 behind the last one is discarded, also across the 255 -> 0 wrap;
* Stream_Terminated ends the source at once and its slot values are ignored; 2.5 s of silence is
  source loss; preview data is ignored unless asked for; start codes other than 0x00 (levels) and
  0xDD (per-address priority) are ignored, and 0xDD is never applied as levels;
* merging (documented in docs/backends/sacn.rst): each slot is decided among the sources with the
  highest priority for that slot -- the 0xDD per-address priority where the source sends one
  (0 = "not sourced"), else the universe priority (0 counts as 1 so it still contributes).
  ``htp`` takes the highest level, ``ltp`` the level that changed last, ``priority-only`` the
  source that has been sending longest. Slots a source does not send are not sourced by it;
* universe synchronisation: data carrying a sync address is held until a sync packet for that
  address arrives, as long as sync packets for it keep coming; after 2.5 s without one the held
  data is applied at once (unless the source set Force_Synchronization, which keeps holding).

Levels are numpy arrays: one source is passed through untouched, several are merged slot-wise in
one vectorised step per packet instead of a Python call per slot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from netmidi.codec.e131 import SLOTS, START_LEVELS, START_PRIORITY, DataPacket, SyncPacket

LOSS_TIMEOUT: Final = 2.5
"""E131_NETWORK_DATA_LOSS_TIMEOUT, also used for per-address priority and sync loss."""
MAX_SOURCES: Final = 64
"""More sources on one universe than this are refused, so that a flood of CIDs stays bounded."""
MERGES: Final = ("htp", "ltp", "priority-only")

Levels = npt.NDArray[np.uint8]
ZERO: Final[Levels] = np.zeros(SLOTS, np.uint8)
ZERO.flags.writeable = False
ZERO_TIMES: Final = np.zeros(SLOTS)
ZERO_TIMES.flags.writeable = False


class Rejected(Exception):
    """A data or sync packet dropped by the receive rules; the message is ``kind: detail``."""


def sequence_step(last: int, new: int) -> int:
    """How far ``new`` is ahead of ``last`` (mod 256); 0 if clause 6.7.2 discards it.

    Discard if, in signed 8-bit arithmetic, -20 < new - last <= 0.
    """
    step = (new - last) & 0xFF
    return 0 if step == 0 or step > 0xEC else step


def as_levels(slots: bytes) -> Levels:
    """Slots of a packet as 512 levels (a short packet leaves the rest at 0)."""
    if len(slots) == SLOTS:
        return np.frombuffer(slots, np.uint8)
    levels = np.zeros(SLOTS, np.uint8)
    levels[: len(slots)] = np.frombuffer(slots, np.uint8)
    return levels


class Source:
    """One sender of a universe, as last heard."""

    __slots__ = (
        "changed_at",
        "cid",
        "held",
        "held_force",
        "last_seen",
        "levels",
        "name",
        "pap",
        "pap_seen",
        "priority",
        "raw",
        "sequence",
        "slot_count",
        "slot_priority",
    )

    def __init__(self, cid: bytes, name: str, now: float) -> None:
        self.cid = cid
        self.name = name
        self.sequence = -1
        self.priority = 100
        self.slot_count = 0
        self.levels: Levels | None = None
        self.raw = b""  # the slots of the last levels packet, when it took the hot path
        self.pap: Levels | None = None
        self.pap_seen = 0.0
        self.slot_priority: Levels = ZERO
        self.last_seen = now
        self.changed_at = ZERO_TIMES  # per slot, only kept for LTP
        # (sync address, levels, slot count, priority) of data waiting for its sync packet
        self.held: tuple[int, Levels, int, int] | None = None
        self.held_force = False

    def update_priority(self) -> None:
        if self.pap is not None:
            self.slot_priority = self.pap
        else:
            priority = np.zeros(SLOTS, np.uint8)
            priority[: self.slot_count] = max(self.priority, 1)
            self.slot_priority = priority


class UniverseMerger:
    """The merged levels of one universe, updated per packet; ``levels`` is never mutated."""

    def __init__(
        self,
        merge: str = "htp",
        accept_preview: bool = False,
        allowed: frozenset[bytes] = frozenset(),
    ) -> None:
        if merge not in MERGES:
            raise ValueError(f"unknown merge {merge!r}")
        self.merge = merge
        self.accept_preview = accept_preview
        self.allowed = allowed
        self.sources: dict[bytes, Source] = {}
        self.levels: Levels = ZERO
        self.lost_packets = 0
        self.duplicates = 0
        self._sync_seen: dict[int, float] = {}
        self._sync_sequence: dict[tuple[bytes, int], int] = {}

    def data(self, packet: DataPacket, now: float) -> bool:
        """Apply a data packet of this universe; True if the merged levels changed."""
        cid = packet.cid
        if self.allowed and cid not in self.allowed:
            return False
        source = self.sources.get(cid)
        if source is None:
            if packet.terminated:
                return False
            if len(self.sources) >= MAX_SOURCES:
                raise Rejected(f"too many sources: more than {MAX_SOURCES} on one universe")
            source = self.sources[cid] = Source(cid, packet.source_name, now)
        elif packet.sequence == source.sequence:
            self.duplicates += 1  # the same packet again: over IPv6 too, or on a 2nd interface
            return False
        else:
            step = sequence_step(source.sequence, packet.sequence)
            if not step:
                raise Rejected(f"out of sequence: {packet.sequence} after {source.sequence}")
            if step < 0x80:  # a jump further back is a restarted source, not loss
                self.lost_packets += step - 1
        source.sequence = packet.sequence
        source.last_seen = now
        if packet.terminated:
            del self.sources[cid]
            return self._remerge()
        if packet.preview and not self.accept_preview:
            return False
        start = packet.start_code
        if start == START_LEVELS:
            if (
                len(packet.slots) == SLOTS
                and not packet.sync_address
                and len(self.sources) == 1
                and source.pap is None
                and self.merge != "ltp"
                and packet.priority == source.priority
                and source.slot_count == SLOTS
            ):  # the hot path: one source sending whole frames, passed through untouched
                if source.levels is not None and packet.slots == source.raw:
                    return False
                source.raw = packet.slots
                source.levels = self.levels = np.frombuffer(packet.slots, np.uint8)
                return True
            levels = as_levels(packet.slots)
            if packet.sync_address and self._holds(packet, now):
                source.held = (packet.sync_address, levels, len(packet.slots), packet.priority)
                source.held_force = packet.force_sync
                return False
            changed = self._set_levels(source, packet.priority, levels, len(packet.slots), now)
            source.raw = packet.slots
            return changed
        if start == START_PRIORITY:
            source.pap = as_levels(packet.slots)
            source.pap_seen = now
            source.update_priority()
            return self._remerge()
        return False

    def sync(self, packet: SyncPacket, now: float) -> bool:
        """A sync packet: release what was held for its address; True if the levels changed."""
        key = (packet.cid, packet.sync_address)
        last = self._sync_sequence.get(key)
        if last is not None and not sequence_step(last, packet.sequence):
            raise Rejected(f"sync out of sequence: {packet.sequence} after {last}")
        self._sync_sequence[key] = packet.sequence
        self._sync_seen[packet.sync_address] = now
        return self._release(lambda address: address == packet.sync_address, now)

    def expire(self, now: float) -> bool:
        """Source, per-address priority and sync loss; True if the merged levels changed."""
        changed = False
        for cid, source in list(self.sources.items()):
            if now - source.last_seen > LOSS_TIMEOUT:
                del self.sources[cid]
                changed = True
            elif source.pap is not None and now - source.pap_seen > LOSS_TIMEOUT:
                source.pap = None
                source.update_priority()
                changed = True
        for address, seen in list(self._sync_seen.items()):
            if now - seen > LOSS_TIMEOUT:
                del self._sync_seen[address]
                self._sync_sequence = {
                    k: v for k, v in self._sync_sequence.items() if k[1] != address
                }
        released = self._release(lambda address: address not in self._sync_seen, now, False)
        return (self._remerge() if changed else False) or released

    def _holds(self, packet: DataPacket, now: float) -> bool:
        seen = self._sync_seen.get(packet.sync_address)
        return seen is not None and now - seen <= LOSS_TIMEOUT

    def _release(self, matches: Callable[[int], bool], now: float, forced: bool = True) -> bool:
        changed = False
        for source in self.sources.values():
            held = source.held
            if held is None or not matches(held[0]) or (source.held_force and not forced):
                continue
            source.held = None
            address, levels, count, priority = held
            changed = self._set_levels(source, priority, levels, count, now) or changed
        return changed

    def _set_levels(
        self, source: Source, priority: int, levels: Levels, count: int, now: float
    ) -> bool:
        if self.merge == "ltp":
            if source.levels is None:
                source.changed_at = np.full(SLOTS, now)  # a new source takes every slot
            else:
                source.changed_at[levels != source.levels] = now
        source.levels = levels
        source.raw = b""
        if priority != source.priority or count != source.slot_count:
            source.priority = priority
            source.slot_count = count
            source.update_priority()
        return self._remerge()

    def _remerge(self) -> bool:
        live = [s for s in self.sources.values() if s.levels is not None]
        merged: Levels
        if not live:
            merged = ZERO
        elif len(live) == 1 and live[0].pap is None and live[0].slot_count == SLOTS:
            merged = live[0].levels  # type: ignore[assignment]
        else:
            merged = self._merge(live)
        if merged is self.levels or merged.tobytes() == self.levels.tobytes():
            return False
        self.levels = merged
        return True

    def _merge(self, live: list[Source]) -> Levels:
        priorities = np.stack([s.slot_priority for s in live])
        levels = np.stack([s.levels for s in live])  # type: ignore[misc]
        top = priorities.max(axis=0)
        contributing = (priorities == top) & (top > 0)
        if self.merge == "htp":
            merged: Levels = np.where(contributing, levels, 0).max(axis=0).astype(np.uint8)
            return merged
        if self.merge == "ltp":
            times = np.stack([s.changed_at for s in live])
            winner = np.where(contributing, times, -np.inf).argmax(axis=0)
        else:  # priority-only: the longest-sending source among the top priority
            winner = contributing.argmax(axis=0)  # ``live`` is in arrival order
        merged = levels[winner, np.arange(SLOTS)]
        merged[top == 0] = 0
        return merged
