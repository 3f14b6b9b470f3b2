"""E1.31 codec: golden bytes for every packet type, precise rejection reasons, fuzzing."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec import e131

CID = bytes(range(16))
NAME_FIELD = b"netmidi".ljust(64, b"\0")
ROOT = "001000004153432d45312e3137000000"  # preamble, post-amble, "ASC-E1.17\0\0\0"

# Built with the reference builder in the project's sACN notes (independent of the codec):
# universe 258, sequence 7, priority 150, 3 slots 10 20 30.
GOLDEN_DATA = bytes.fromhex(
    ROOT + "7071"
    "00000004" + CID.hex() + "705b"
    "00000002" + NAME_FIELD.hex() + "96"
    "0000"
    "07"
    "00"
    "0102"  # priority, sync address, sequence, options, universe
     + "700e"
    "02"
    "a1"
    "0000"
    "0001"
    "0004"
    "00"
    "0a141e"  # DMP layer, start code, slots
)
GOLDEN_SYNC = bytes.fromhex(ROOT + "702100000008" + CID.hex() + "700b000000012a00070000")
GOLDEN_DISCOVERY = bytes.fromhex(
    ROOT + "706a"
    "00000008" + CID.hex() + "7054"
    "00000002" + NAME_FIELD.hex() + "00000000" + "700a"
    "00000001"
    "00"
    "00"
    "0001"
)


def data(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "cid": CID,
        "source_name": "netmidi",
        "universe": 1,
        "sequence": 0,
        "slots": bytes(512),
    }
    fields.update(overrides)
    return e131.encode_data(**fields)  # type: ignore[arg-type]


class GoldenTests(SynchronousTestCase):
    def test_data_encode(self) -> None:
        packet = e131.encode_data(CID, "netmidi", 258, 7, bytes([10, 20, 30]), priority=150)
        self.assertEqual(packet, GOLDEN_DATA)

    def test_data_decode(self) -> None:
        packet = e131.decode(GOLDEN_DATA)
        self.assertEqual(
            packet,
            e131.DataPacket(CID, "netmidi", 150, 0, 7, 0, 258, 0, bytes([10, 20, 30])),
        )

    def test_full_data_packet_layers(self) -> None:
        packet = data()
        self.assertEqual(len(packet), 638)
        self.assertEqual(packet[16:18], b"\x72\x6e")
        self.assertEqual(packet[38:40], b"\x72\x58")
        self.assertEqual(packet[115:117], b"\x72\x0b")

    def test_sync(self) -> None:
        self.assertEqual(e131.encode_sync(CID, 42, 7), GOLDEN_SYNC)
        self.assertEqual(e131.decode(GOLDEN_SYNC), e131.SyncPacket(CID, 42, 7))

    def test_discovery(self) -> None:
        self.assertEqual(e131.encode_discovery(CID, "netmidi", 0, 0, [1]), GOLDEN_DISCOVERY)
        self.assertEqual(
            e131.decode(GOLDEN_DISCOVERY), e131.DiscoveryPacket(CID, "netmidi", 0, 0, (1,))
        )

    def test_discovery_paging(self) -> None:
        universes = list(range(1300, 0, -1))  # unsorted on purpose
        pages = e131.discovery_pages(CID, "netmidi", universes)
        self.assertEqual(len(pages), 3)
        decoded = [e131.decode(p) for p in pages]
        assert all(isinstance(p, e131.DiscoveryPacket) for p in decoded)
        self.assertEqual([(p.page, p.last_page) for p in decoded], [(0, 2), (1, 2), (2, 2)])  # type: ignore[union-attr]
        self.assertEqual([len(p.universes) for p in decoded], [512, 512, 276])  # type: ignore[union-attr]
        self.assertEqual(decoded[0].universes[:2], (1, 2))  # type: ignore[union-attr]
        self.assertEqual(pages[0][120:124], b"\x00\x01\x00\x02")  # big-endian, 1 is not 256
        self.assertEqual(len(pages[0]), 120 + 2 * 512)

    def test_groups(self) -> None:
        self.assertEqual(e131.ipv4_group(1), "239.255.0.1")
        self.assertEqual(e131.ipv4_group(63999), "239.255.249.255")
        self.assertEqual(e131.ipv4_group(e131.DISCOVERY_UNIVERSE), "239.255.250.214")
        self.assertEqual(e131.ipv6_group(1), "ff18::8300:1")
        self.assertEqual(e131.ipv6_group(e131.DISCOVERY_UNIVERSE), "ff18::8300:fad6")

    def test_zero_slot_terminate(self) -> None:
        """OLA ends its streams with 126-byte packets that carry no slots."""
        packet = e131.decode(data(slots=b"", options=e131.OPTION_TERMINATED))
        assert isinstance(packet, e131.DataPacket)
        self.assertTrue(packet.terminated)
        self.assertEqual(packet.slots, b"")

    def test_name_too_long(self) -> None:
        self.assertRaises(ValueError, e131.encode_data, CID, "x" * 64, 1, 0, b"")


class RejectTests(SynchronousTestCase):
    def reason(self, datagram: bytes) -> str:
        with self.assertRaises(e131.DecodeError) as caught:
            e131.decode(datagram)
        return str(caught.exception)

    def test_truncated(self) -> None:
        self.assertIn("truncated", self.reason(GOLDEN_DATA[:40]))
        self.assertIn("truncated data packet", self.reason(GOLDEN_DATA[:125]))

    def test_oversized(self) -> None:
        self.assertIn("oversized", self.reason(data(slots=bytes(512)) + b"\0"))

    def test_identifier(self) -> None:
        self.assertIn("identifier", self.reason(GOLDEN_DATA[:4] + b"ASC-E1.18" + GOLDEN_DATA[13:]))
        self.assertIn("preamble", self.reason(b"\0\x11" + GOLDEN_DATA[2:]))

    def test_wrong_fields(self) -> None:
        cases = [
            ("root vector", GOLDEN_DATA, 18, b"\0\0\0\5"),
            ("framing vector", GOLDEN_DATA, 40, b"\0\0\0\3"),
            ("DMP vector", GOLDEN_DATA, 117, b"\3"),
            ("address and data type", GOLDEN_DATA, 118, b"\xa2"),
            ("extended framing", GOLDEN_SYNC, 40, b"\0\0\0\x09"),
            ("discovery vector", GOLDEN_DISCOVERY, 117, b"\2"),
            ("root layer length", GOLDEN_DATA, 17, b"\x72"),
            ("root layer flags", GOLDEN_DATA, 16, b"\x60"),
            ("DMP layer length", GOLDEN_DATA, 116, b"\x0f"),
            ("property value count", GOLDEN_DATA, 124, b"\x05"),
            ("first address or increment", GOLDEN_DATA, 120, b"\x01"),
            ("priority out of range: 201", GOLDEN_DATA, 108, b"\xc9"),
        ]
        for expected, packet, offset, patch in cases:
            broken = packet[:offset] + patch + packet[offset + len(patch) :]
            self.assertIn(expected, self.reason(broken))

    def test_out_of_range(self) -> None:
        self.assertIn("universe out of range: 0", self.reason(data(universe=0)))
        self.assertIn("universe out of range: 64214", self.reason(data(universe=64214)))
        self.assertIn("sync packet size: 50", self.reason(GOLDEN_SYNC + b"\0"))
        self.assertIn("not sorted", self.reason(e131.encode_discovery(CID, "n", 0, 0, [3, 2])))
        self.assertIn("after the last page", self.reason(e131.encode_discovery(CID, "n", 2, 1, [])))


def _mutations() -> st.SearchStrategy[bytes]:
    base = st.sampled_from([GOLDEN_DATA, GOLDEN_SYNC, GOLDEN_DISCOVERY, data()])

    def mutate(args: tuple[bytes, list[tuple[int, int]], int]) -> bytes:
        packet, flips, cut = args
        raw = bytearray(packet)
        for position, value in flips:
            raw[position % len(raw)] = value
        return bytes(raw[: max(cut, 0)] if cut < len(raw) else raw)

    return st.tuples(
        base,
        st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4),
        st.integers(0, 2000),
    ).map(mutate)


class FuzzTests(SynchronousTestCase):
    def check(self, datagram: bytes) -> None:
        try:
            packet = e131.decode(datagram)
        except e131.DecodeError as error:
            kind, _, detail = str(error).partition(": ")
            self.assertFalse(any(c.isdigit() for c in kind), kind)  # drops are counted by kind
            return
        if isinstance(packet, e131.DataPacket):
            again = e131.encode_data(
                packet.cid, packet.source_name, packet.universe, packet.sequence, packet.slots,
                packet.priority, packet.sync_address, packet.options, packet.start_code,
            )  # fmt: skip
            self.assertEqual(e131.decode(again), packet)

    @settings(max_examples=300)
    @given(st.binary(max_size=700))
    def test_arbitrary(self, datagram: bytes) -> None:
        self.check(datagram)

    @settings(max_examples=400)
    @given(_mutations())
    def test_mutated(self, datagram: bytes) -> None:
        self.check(datagram)

    @settings(max_examples=200)
    @given(
        st.integers(1, 63999),
        st.integers(0, 255),
        st.binary(max_size=512),
        st.integers(0, 200),
        st.integers(0, 63999),
        st.sampled_from([0, 0x80, 0x40, 0x20]),
        st.integers(0, 255),
    )
    def test_roundtrip(
        self, universe: int, sequence: int, slots: bytes, priority: int, sync: int, options: int,
        start: int,
    ) -> None:  # fmt: skip
        packet = e131.encode_data(
            CID, "ñame", universe, sequence, slots, priority, sync, options, start
        )
        self.assertEqual(len(packet), 126 + len(slots))
        self.assertEqual(
            e131.decode(packet),
            e131.DataPacket(CID, "ñame", priority, sync, sequence, options, universe, start, slots),
        )
        header = e131.data_header(CID, "ñame", universe, len(slots), priority, sync, options, start)
        self.assertEqual(packet[:111] + packet[112:126], header[:111] + header[112:])
        self.assertEqual(struct.unpack_from(">H", packet, 113)[0], universe)
