"""Receive rules and merging of one universe: sequence, terminate, loss, priority, PAP, sync."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec import e131
from netmidi.sacn.merge import LOSS_TIMEOUT, Rejected, UniverseMerger, sequence_step

A = b"A" * 16
B = b"B" * 16
C = b"C" * 16


def packet(
    cid: bytes = A,
    sequence: int = 0,
    slots: bytes | list[int] = b"",
    priority: int = 100,
    options: int = 0,
    start: int = e131.START_LEVELS,
    sync: int = 0,
) -> e131.DataPacket:
    raw = bytes(slots).ljust(512, b"\0") if start == e131.START_LEVELS else bytes(slots)
    return e131.DataPacket(cid, "src", priority, sync, sequence, options, 1, start, raw)


def head(merger: UniverseMerger, n: int = 4) -> list[int]:
    return merger.levels[:n].tolist()  # type: ignore[no-any-return]


class SequenceTests(SynchronousTestCase):
    def test_step(self) -> None:
        self.assertEqual(sequence_step(10, 11), 1)
        self.assertEqual(sequence_step(10, 10), 0)
        self.assertEqual(sequence_step(10, 5), 0)
        self.assertEqual(sequence_step(5, 250), 0)  # -11 across the wrap: discard (ETC accepts)
        self.assertEqual(sequence_step(1, 254), 0)
        self.assertEqual(sequence_step(255, 0), 1)
        self.assertEqual(sequence_step(11, 240), 229)  # -27: accepted, a restart
        self.assertEqual(sequence_step(240, 12), 28)

    @settings(max_examples=300)
    @given(st.integers(0, 255), st.integers(0, 255))
    def test_signed_rule(self, last: int, new: int) -> None:
        signed = (new - last + 128) % 256 - 128
        self.assertEqual(sequence_step(last, new) == 0, -20 < signed <= 0)

    def test_per_source(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 100, [1]), 0.0)
        merger.data(packet(B, 5, [2]), 0.0)  # far behind A, but a different source
        self.assertEqual(head(merger, 1), [2])
        self.assertRaises(Rejected, merger.data, packet(A, 95, [9]), 0.1)
        self.assertEqual(head(merger, 1), [2])

    def test_duplicate_is_dropped_quietly(self) -> None:
        """The IPv6 (or second-interface) copy of a packet is not bad input."""
        merger = UniverseMerger()
        merger.data(packet(A, 100, [1]), 0.0)
        self.assertFalse(merger.data(packet(A, 100, [9]), 0.0))
        self.assertEqual((head(merger, 1), merger.duplicates), ([1], 1))

    def test_wrap(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 254, [1]), 0.0)
        merger.data(packet(A, 255, [2]), 0.0)
        merger.data(packet(A, 0, [3]), 0.0)
        merger.data(packet(A, 1, [4]), 0.0)
        self.assertRaises(Rejected, merger.data, packet(A, 250, [9]), 0.0)
        self.assertEqual(head(merger, 1), [4])

    def test_loss_counted(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 250, [1]), 0.0)
        merger.data(packet(A, 3, [1]), 0.0)
        self.assertEqual(merger.lost_packets, 8)


class SourceLifeTests(SynchronousTestCase):
    def test_terminate_ignores_slots_and_ends_source(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 0, [50]), 0.0)
        merger.data(packet(B, 0, [20]), 0.0)
        self.assertEqual(head(merger, 1), [50])
        changed = merger.data(packet(A, 1, [255], options=e131.OPTION_TERMINATED), 0.1)
        self.assertTrue(changed)
        self.assertEqual(head(merger, 1), [20])
        self.assertNotIn(A, merger.sources)
        # the 2nd and 3rd terminate packets do not bring the source back
        self.assertFalse(merger.data(packet(A, 2, [255], options=e131.OPTION_TERMINATED), 0.1))
        self.assertNotIn(A, merger.sources)

    def test_source_loss(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 0, [50]), 0.0)
        merger.data(packet(B, 0, [20]), 2.0)
        self.assertFalse(merger.expire(2.5))
        self.assertTrue(merger.expire(2.51))
        self.assertEqual(head(merger, 1), [20])
        self.assertTrue(merger.expire(4.6))
        self.assertEqual(head(merger, 1), [0])
        self.assertEqual(merger.sources, {})

    def test_preview(self) -> None:
        merger = UniverseMerger()
        self.assertFalse(merger.data(packet(A, 0, [50], options=e131.OPTION_PREVIEW), 0.0))
        self.assertEqual(head(merger, 1), [0])
        accepting = UniverseMerger(accept_preview=True)
        self.assertTrue(accepting.data(packet(A, 0, [50], options=e131.OPTION_PREVIEW), 0.0))

    def test_other_start_codes_ignored(self) -> None:
        merger = UniverseMerger()
        self.assertFalse(merger.data(packet(A, 0, [50], start=0x17), 0.0))
        self.assertEqual(head(merger, 1), [0])

    def test_cid_filter(self) -> None:
        merger = UniverseMerger(allowed=frozenset({B}))
        self.assertFalse(merger.data(packet(A, 0, [50]), 0.0))
        self.assertTrue(merger.data(packet(B, 0, [20]), 0.0))
        self.assertEqual(head(merger, 1), [20])

    def test_source_limit(self) -> None:
        merger = UniverseMerger()
        for n in range(64):
            merger.data(packet(n.to_bytes(16, "big"), 0, [1]), 0.0)
        self.assertRaises(Rejected, merger.data, packet(b"x" * 16, 0, [1]), 0.0)

    def test_short_packet(self) -> None:
        merger = UniverseMerger()
        merger.data(e131.DataPacket(A, "ola", 100, 0, 0, 0, 1, 0, bytes([1, 2, 3])), 0.0)
        self.assertEqual(head(merger, 5), [1, 2, 3, 0, 0])


class MergeTests(SynchronousTestCase):
    def test_htp(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 0, [100, 0, 50]), 0.0)
        merger.data(packet(B, 0, [0, 200, 60]), 0.0)
        self.assertEqual(head(merger, 3), [100, 200, 60])  # what OLA merges too

    def test_priority_wins(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 0, [100, 100], priority=100), 0.0)
        merger.data(packet(B, 0, [10, 0], priority=150), 0.0)
        self.assertEqual(head(merger, 2), [10, 0])
        merger.data(packet(B, 1, [10, 0], priority=50), 0.1)
        self.assertEqual(head(merger, 2), [100, 100])

    def test_per_address_priority(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 0, [100, 100, 100]), 0.0)
        merger.data(packet(B, 0, [10, 20, 30]), 0.0)
        pap = [150, 0, 100]  # B wins slot 1, does not source slot 2, ties on slot 3
        self.assertTrue(merger.data(packet(B, 1, pap, start=e131.START_PRIORITY), 0.0))
        self.assertEqual(head(merger, 3), [10, 100, 100])
        # 0xDD is never applied as levels
        self.assertNotIn(150, head(merger, 3))
        # per-address priority lost after 2.5 s: back to the universe priority (HTP)
        merger.data(packet(B, 2, [10, 20, 30]), 2.0)
        merger.data(packet(A, 1, [100, 100, 100]), 2.0)
        self.assertTrue(merger.expire(2.0 + LOSS_TIMEOUT - 2.0 + 0.6))
        self.assertEqual(head(merger, 3), [100, 100, 100])

    def test_ltp(self) -> None:
        merger = UniverseMerger("ltp")
        merger.data(packet(A, 0, [100, 5]), 0.0)
        merger.data(packet(B, 0, [10, 5]), 0.1)
        self.assertEqual(head(merger, 2), [10, 5])
        merger.data(packet(A, 1, [90, 5]), 0.2)  # A changed slot 1 last
        self.assertEqual(head(merger, 2), [90, 5])
        merger.data(packet(B, 1, [10, 7]), 0.3)  # B changed slot 2 last
        self.assertEqual(head(merger, 2), [90, 7])

    def test_priority_only(self) -> None:
        merger = UniverseMerger("priority-only")
        merger.data(packet(A, 0, [10, 0]), 0.0)
        merger.data(packet(B, 0, [200, 200]), 0.1)
        self.assertEqual(head(merger, 2), [10, 0])  # the source that was there first
        merger.data(packet(C, 0, [1, 1], priority=101), 0.2)
        self.assertEqual(head(merger, 2), [1, 1])

    def test_priority_zero_still_contributes(self) -> None:
        merger = UniverseMerger()
        merger.data(packet(A, 0, [7], priority=0), 0.0)
        merger.data(packet(B, 0, [3], priority=0), 0.0)
        self.assertEqual(head(merger, 1), [7])

    def test_unchanged_reports_no_change(self) -> None:
        merger = UniverseMerger()
        self.assertTrue(merger.data(packet(A, 0, [1]), 0.0))
        self.assertFalse(merger.data(packet(A, 1, [1]), 0.0))


class SyncTests(SynchronousTestCase):
    def sync(self, merger: UniverseMerger, sequence: int, now: float) -> bool:
        return merger.sync(e131.SyncPacket(A, sequence, 7), now)

    def test_without_sync_packets_data_applies(self) -> None:
        merger = UniverseMerger()
        self.assertTrue(merger.data(packet(A, 0, [5], sync=7), 0.0))

    def test_held_until_sync(self) -> None:
        merger = UniverseMerger()
        self.sync(merger, 0, 0.0)
        self.assertFalse(merger.data(packet(A, 0, [5], sync=7), 0.01))
        self.assertEqual(head(merger, 1), [0])
        self.assertTrue(self.sync(merger, 1, 0.02))
        self.assertEqual(head(merger, 1), [5])
        # a sync packet out of sequence is dropped
        self.assertRaises(Rejected, self.sync, merger, 1, 0.03)

    def test_sync_loss_releases(self) -> None:
        merger = UniverseMerger()
        self.sync(merger, 0, 0.0)
        merger.data(packet(A, 0, [4], sync=7), 0.01)
        self.assertFalse(merger.expire(1.0))
        merger.data(packet(A, 1, [5], sync=7), 2.0)  # still held: sync was seen 2 s ago
        self.assertEqual(head(merger, 1), [0])
        self.assertTrue(merger.expire(2.6))
        self.assertEqual(head(merger, 1), [5])
        self.assertTrue(merger.data(packet(A, 2, [6], sync=7), 2.7))  # unsynchronised now

    def test_force_sync_keeps_holding(self) -> None:
        merger = UniverseMerger()
        self.sync(merger, 0, 0.0)
        merger.data(packet(A, 0, [5], sync=7, options=e131.OPTION_FORCE_SYNC), 0.01)
        merger.data(packet(A, 1, [5], sync=7, options=e131.OPTION_FORCE_SYNC), 2.0)
        self.assertFalse(merger.expire(2.6))
        self.assertEqual(head(merger, 1), [0])
        self.assertTrue(self.sync(merger, 1, 2.7))
        self.assertEqual(head(merger, 1), [5])


def _reference_htp(live: dict[bytes, tuple[int, bytes]]) -> list[int]:
    """HTP among the highest universe priority, slot by slot, written as plainly as possible."""
    merged = []
    for slot in range(512):
        senders = [(max(p, 1), s[slot]) for p, s in live.values() if slot < len(s)]
        top = max((p for p, _ in senders), default=0)
        merged.append(max((v for p, v in senders if p == top), default=0))
    return merged


class MergeModelTests(SynchronousTestCase):
    @settings(max_examples=80, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([A, B, C]),
                st.sampled_from([0, 100, 150]),
                st.sampled_from([512, 512, 3, 0]),
                st.integers(0, 255),
                st.booleans(),
            ),
            min_size=1,
            max_size=25,
        )
    )
    def test_htp_matches_reference(self, steps: list[tuple[bytes, int, int, int, bool]]) -> None:
        merger = UniverseMerger()
        live: dict[bytes, tuple[int, bytes]] = {}
        sequence: dict[bytes, int] = {}
        for cid, priority, count, base, terminate in steps:
            slots = bytes((base + i) & 0xFF for i in range(count))
            sequence[cid] = sequence.get(cid, -1) + 1
            options = e131.OPTION_TERMINATED if terminate else 0
            merger.data(
                e131.DataPacket(cid, "s", priority, 0, sequence[cid] & 0xFF, options, 1, 0, slots),
                0.0,
            )
            if terminate:
                live.pop(cid, None)
            else:
                live[cid] = (priority, slots)
            self.assertEqual(merger.levels.tolist(), _reference_htp(live))
