"""Golden bytes and fuzzing for the AppleMIDI command codec and the RTP-MIDI packet codec."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec import applemidi, rtpmidi
from netmidi.codec.applemidi import BitrateLimit, Exchange, Feedback, Sync
from netmidi.codec.rtpmidi import RtpHeader, RtpMidiError, SysexAssembler

TOKEN, SSRC_A, SSRC_B = 0x33333333, 0x11111111, 0x22222222


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("|", ""))


# The golden packets of the reference (structure confirmed by tshark 4.0.17).
IN = h("ff ff 49 4e 00 00 00 02 33 33 33 33 11 11 11 11 6e 65 74 6d 69 64 69 2d 74 65 73 74 00")
OK = h("ff ff 4f 4b 00 00 00 02 33 33 33 33 22 22 22 22 70 65 65 72 00")
BY = h("ff ff 42 59 00 00 00 02 33 33 33 33 11 11 11 11")
CK0 = h(
    "ff ff 43 4b 11 11 11 11 00 00 00 00 00 00 00 00 07 5b cd 15"
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
)
RS = h("ff ff 52 53 22 22 22 22 03 e8 00 00")
RTP_JOURNAL = h(
    "80 61 03 e8 00 00 30 39 11 11 11 11 | 43 90 3c 64 | a0 03 e7 | 80 0b 48 | 80 87 7f"
    "| 81 77 bc e4 02"
)


RTP_REASONS = frozenset(re.findall(r'"([a-zA-Z][^"{}]*)"', Path(rtpmidi.__file__).read_text()))


def pairs(packet: rtpmidi.Packet) -> list[tuple[int, bytes]]:
    return list(zip(packet.deltas, packet.messages, strict=True))


HEADER_1000 = RtpHeader(1000, 12345, SSRC_A, False, 97)


class AppleMidiGoldenTests(SynchronousTestCase):
    def test_exchange_packets(self) -> None:
        cases = [
            (IN, Exchange(b"IN", TOKEN, SSRC_A, "netmidi-test")),
            (OK, Exchange(b"OK", TOKEN, SSRC_B, "peer")),
            (BY, Exchange(b"BY", TOKEN, SSRC_A)),
            (
                h("ff ff 4e 4f 00 00 00 02 33 33 33 33 22 22 22 22 42 00"),
                Exchange(b"NO", TOKEN, SSRC_B, "B"),
            ),
        ]
        for wire, command in cases:
            self.assertEqual(applemidi.decode(wire), command)
            self.assertEqual(applemidi.encode(command), wire)

    def test_sync_packets(self) -> None:
        self.assertEqual(applemidi.decode(CK0), Sync(SSRC_A, 0, (123456789, 0, 0)))
        self.assertEqual(applemidi.encode(Sync(SSRC_A, 0, (123456789, 0, 0))), CK0)
        ck2 = Sync(SSRC_A, 2, (1, 0x0102030405060708, (1 << 64) - 1))
        wire = h(
            "ff ff 43 4b 11 11 11 11 02 00 00 00 00 00 00 00 00 00 00 01"
            "01 02 03 04 05 06 07 08 ff ff ff ff ff ff ff ff"
        )
        self.assertEqual(applemidi.encode(ck2), wire)
        self.assertEqual(applemidi.decode(wire), ck2)

    def test_feedback_and_limit(self) -> None:
        self.assertEqual(applemidi.decode(RS), Feedback(SSRC_B, 1000 << 16))
        self.assertEqual(applemidi.encode(Feedback.for_sequence(SSRC_B, 1000)), RS)
        rl = h("ff ff 52 4c 22 22 22 22 00 01 86 a0")
        self.assertEqual(applemidi.decode(rl), BitrateLimit(SSRC_B, 100000))
        self.assertEqual(applemidi.encode(BitrateLimit(SSRC_B, 100000)), rl)

    def test_feedback_candidates(self) -> None:
        self.assertEqual(applemidi.feedback_candidates(1000 << 16), (1000,))
        self.assertEqual(applemidi.feedback_candidates(1000), (1000,))
        self.assertEqual(applemidi.feedback_candidates(0x00050006), (5, 6))

    def test_names(self) -> None:
        """No NUL (node's BY), no name, long UTF-8 names, invalid UTF-8 (replaced, no crash)."""
        self.assertEqual(applemidi.decode(BY + b"peer").name, "peer")
        self.assertIsNone(applemidi.decode(BY).name)
        long = "Regie – Bühne ✓ " * 20
        self.assertEqual(applemidi.decode(applemidi.encode(Exchange(b"IN", 1, 2, long))).name, long)
        self.assertEqual(applemidi.decode(BY + b"\xff\xfe\0").name, "\ufffd\ufffd")

    def test_malformed(self) -> None:
        bad = {
            b"": "not an AppleMIDI packet",
            b"\x80\x61": "not an AppleMIDI packet",
            IN[:15]: "truncated IN",
            IN[:4] + b"\0\0\0\x01" + IN[8:]: "IN with a protocol version other than 2",
            CK0[:35]: "truncated CK",
            CK0[:8] + b"\x03" + CK0[9:]: "CK with a count above 2",
            RS[:11]: "truncated RS",
            b"\xff\xffZZ": "unknown AppleMIDI command",
        }
        for wire, reason in bad.items():
            with self.assertRaises(applemidi.AppleMidiError) as caught:
                applemidi.decode(wire)
            self.assertEqual(str(caught.exception), reason)

    def test_is_applemidi(self) -> None:
        self.assertTrue(applemidi.is_applemidi(IN))
        self.assertFalse(applemidi.is_applemidi(RTP_JOURNAL))

    @settings(max_examples=500)
    @given(st.binary(max_size=64))
    def test_fuzz_decode(self, data: bytes) -> None:
        """Any bytes: a command that encodes back to a prefix-equal packet, or AppleMidiError."""
        for wire in (data, b"\xff\xff" + data):
            try:
                command = applemidi.decode(wire)
            except applemidi.AppleMidiError:
                continue
            self.assertEqual(applemidi.decode(applemidi.encode(command)), command)


class RtpMidiGoldenTests(SynchronousTestCase):
    def test_reference_packet_with_journal(self) -> None:
        """The reference's tshark-checked packet: note on, journal with chapters C and N."""
        packet = rtpmidi.decode(RTP_JOURNAL)
        self.assertEqual(packet.header, HEADER_1000)
        self.assertEqual(pairs(packet), [(0, h("90 3c 64"))])
        self.assertEqual(packet.journal, h("a0 03 e7 80 0b 48 80 87 7f 81 77 bc e4 02"))

    def test_encode_single_note(self) -> None:
        header = rtpmidi.encode_header(1000, 12345, SSRC_A)
        self.assertEqual(
            header + rtpmidi.encode_section([h("90 3c 64")]),
            h("80 61 03 e8 00 00 30 39 11 11 11 11 03 90 3c 64"),
        )
        self.assertEqual(rtpmidi.encode_header(1, 2, 3, marker=True)[1], 0xE1)
        self.assertEqual(
            rtpmidi.encode_header(0x1FFFF, 1 << 33 | 5, 3)[2:8], h("ff ff 00 00 00 05")
        )

    def test_running_status_and_deltas_out(self) -> None:
        """Several commands: delta 0 between them, running status within the list."""
        section = rtpmidi.encode_section(
            [h("b0 07 7f"), h("b0 0a 40"), h("f8"), h("b0 0b 01"), h("90 3c 64")]
        )
        self.assertEqual(section, h("0f b0 07 7f 00 0a 40 00 f8 00 0b 01 00 90 3c 64"))
        # System common cancels running status.
        section = rtpmidi.encode_section([h("b0 07 7f"), h("f3 01"), h("b0 07 00")])
        self.assertEqual(section, h("0a b0 07 7f 00 f3 01 00 b0 07 00"))

    def test_long_header(self) -> None:
        """Lists over 15 bytes use B=1 and a 12-bit length; J sets 0x40."""
        messages = [bytes((0xB0, n, n)) for n in range(10)]
        section = rtpmidi.encode_section(messages, journal=True)
        self.assertEqual(section[:2], h("c0 1e"))
        self.assertEqual(len(section), 2 + 0x1E)
        packet = rtpmidi.decode(rtpmidi.encode_header(1, 1, 1) + section + h("20 00 01 00 03 00"))
        self.assertEqual(packet.messages, messages)
        self.assertEqual(packet.journal, h("20 00 01 00 03 00"))
        with self.assertRaises(ValueError):
            rtpmidi.section_header(0x1000, False)

    def test_decode_forms(self) -> None:
        """Z flag, 1-4 octet MSB-first deltas, running status, realtime, system common."""
        base = h("80 61 00 01 00 00 00 00 11 11 11 11")
        cases = [
            # Z=1: leading delta; running status with a 2-octet delta (0x81 0x00 = 128).
            ("28 | 05 90 3c 64 81 00 3e 00", [(5, "90 3c 64"), (128, "90 3e 00")]),
            # 3- and 4-octet deltas, MSB first (not LEB128 as pymidi reads them).
            (
                "0f 90 3c 64 81 80 00 80 40 00 ff ff ff 7f c0 05",
                [(0, "90 3c 64"), (16384, "80 40 00"), (0x0FFFFFFF, "c0 05")],
            ),
            # Realtime does not cancel running status; system common does.
            (
                "0c b0 07 10 00 f8 00 07 20 00 f6 00 fe",
                [(0, "b0 07 10"), (0, "f8"), (0, "b0 07 20"), (0, "f6"), (0, "fe")],
            ),
            # Program change and channel pressure carry one data byte; pitch bend two.
            ("09 c1 05 00 d1 40 00 e1 00 40", [(0, "c1 05"), (0, "d1 40"), (0, "e1 00 40")]),
            # Song position and MTC quarter frame.
            ("06 f2 01 02 00 f1 33", [(0, "f2 01 02"), (0, "f1 33")]),
            # P flag (phantom running status) only informs; the status byte is present.
            ("13 90 3c 64", [(0, "90 3c 64")]),
            # Empty list (a journal-only packet, J=0 here).
            ("00", []),
        ]
        for section, expected in cases:
            packet = rtpmidi.decode(base + h(section))
            self.assertEqual(pairs(packet), [(d, h(m)) for d, m in expected], section)

    def test_sysex_segments_in(self) -> None:
        """Complete, first, middle, last and cancelled segments, realtime inside a SysEx."""
        base = h("80 61 00 01 00 00 00 00 11 11 11 11")
        packet = rtpmidi.decode(base + h("0e f0 01 02 f7 00 f0 03 f8 04 f0 00 f7 05 f4"))
        self.assertEqual(
            pairs(packet),
            [(0, h("f0 01 02 f7")), (0, h("f8")), (0, h("f0 03 04 f0")), (0, h("f7 05 f4"))],
        )
        packet = rtpmidi.decode(base + h("04 f7 06 07 f0"))
        self.assertEqual(pairs(packet), [(0, h("f7 06 07 f0"))])
        # SysEx cancels running status.
        with self.assertRaises(RtpMidiError):
            rtpmidi.decode(base + h("09 90 3c 64 00 f0 01 f7 00 3c"))

    def test_rtp_header_variants(self) -> None:
        """Marker masked, CSRCs, header extension and padding skipped."""
        body = h("03 90 3c 64")
        marked = h("80 e1 00 01 00 00 00 02 00 00 00 03") + body
        self.assertEqual(rtpmidi.decode(marked).header, RtpHeader(1, 2, 3, True, 97))
        csrc = h("81 61 00 01 00 00 00 02 00 00 00 03 aa aa aa aa") + body
        self.assertEqual(pairs(rtpmidi.decode(csrc)), [(0, h("90 3c 64"))])
        ext = h("90 61 00 01 00 00 00 02 00 00 00 03 be de 00 01 01 02 03 04") + body
        self.assertEqual(pairs(rtpmidi.decode(ext)), [(0, h("90 3c 64"))])
        padded = h("a0 61 00 01 00 00 00 02 00 00 00 03") + body + h("00 00 03")
        self.assertEqual(pairs(rtpmidi.decode(padded)), [(0, h("90 3c 64"))])

    def test_malformed(self) -> None:
        base = h("80 61 00 01 00 00 00 00 11 11 11 11")
        bad = {
            base[:12]: "truncated RTP packet",
            h("40") + base[1:] + h("00"): "RTP version other than 2",
            base + h("0a 90 3c"): "command section longer than the packet",
            base + h("43 90 3c 64 a0 00"): "truncated recovery journal header",
            base + h("02 3c 64"): "running status without a previous status byte",
            base + h("02 90 3c"): "truncated MIDI command",
            base + h("03 90 3c 90"): "status byte inside a MIDI command's data",
            base + h("04 90 3c 64 00"): "delta time without a command",
            base + h("26 ff ff ff ff 90 3c"): "truncated or over-long delta time",
            base + h("03 f0 01 02"): "SysEx segment without an end byte",
            base + h("03 f0 90 f7"): "status byte inside a SysEx segment",
            base + h("80"): "truncated command section header",
            base + h("40 a0 00 01 00 00"): "truncated channel journal header",
            base + h("40 a0 00 01 00 00 03"): "bad channel journal length",
            base + h("40 c0 00 01 00"): "truncated system journal header",
            base + h("40 c0 00 01 00 05"): "bad system journal length",
            h("a0") + base[1:] + h("03 90 3c 64 00"): "bad RTP padding",
        }
        for wire, reason in bad.items():
            with self.assertRaises(RtpMidiError) as caught:
                rtpmidi.decode(wire)
            self.assertEqual(str(caught.exception), reason, wire.hex(" "))

    def test_data_length(self) -> None:
        self.assertEqual(
            [rtpmidi.data_length(s) for s in (0x80, 0xC0, 0xD5, 0xE0, 0xF0, 0xF1, 0xF2, 0xF8)],
            [2, 1, 1, 2, 0, 1, 2, 0],
        )


class SysexTests(SynchronousTestCase):
    def test_segment_at_256(self) -> None:
        message = b"\xf0" + bytes(range(100)) * 6 + b"\xf7"
        segments = rtpmidi.segment_sysex(message)
        self.assertEqual([len(s) for s in segments], [256, 256, 94])
        self.assertEqual(
            [(s[0], s[-1]) for s in segments], [(0xF0, 0xF0), (0xF7, 0xF0), (0xF7, 0xF7)]
        )
        self.assertEqual(rtpmidi.segment_sysex(h("f0 01 f7")), [h("f0 01 f7")])
        assembler = SysexAssembler()
        results = [assembler.feed(s) for s in segments]
        self.assertEqual(results, [(None, None), (None, None), (message, None)])

    def test_reassembly_errors(self) -> None:
        assembler = SysexAssembler(limit=8)
        self.assertEqual(
            assembler.feed(h("f7 01 f7")), (None, "SysEx continuation without a start")
        )
        self.assertEqual(assembler.feed(h("f0 01 f0")), (None, None))
        self.assertEqual(assembler.feed(h("f7 02 f4")), (None, None))  # cancelled
        self.assertEqual(
            assembler.feed(h("f7 03 f7")), (None, "SysEx continuation without a start")
        )
        self.assertEqual(assembler.feed(h("f0 01 f0")), (None, None))
        self.assertEqual(
            assembler.feed(h("f0 02 f7")),
            (h("f0 02 f7"), "SysEx start before the previous SysEx ended"),
        )
        # Over the limit: reported once, the rest of that message discarded quietly.
        self.assertEqual(assembler.feed(h("f0 01 02 03 04 05 f0")), (None, None))
        self.assertEqual(
            assembler.feed(h("f7 06 07 08 09 f0")), (None, "SysEx longer than 8 bytes")
        )
        self.assertEqual(assembler.feed(h("f7 0a f0")), (None, None))
        self.assertEqual(assembler.feed(h("f7 0b f7")), (None, None))
        self.assertEqual(assembler.feed(h("f0 0c f7")), (h("f0 0c f7"), None))

    @settings(max_examples=200)
    @given(st.binary(max_size=2000))
    def test_segment_round_trip(self, payload: bytes) -> None:
        message = b"\xf0" + bytes(b & 0x7F for b in payload) + b"\xf7"
        assembler = SysexAssembler()
        results = [assembler.feed(s) for s in rtpmidi.segment_sysex(message)]
        self.assertTrue(all(len(s) <= 256 for s in rtpmidi.segment_sysex(message)))
        self.assertEqual(results[-1], (message, None))


midi_message = st.one_of(
    st.tuples(
        st.integers(0x80, 0xBF) | st.integers(0xE0, 0xEF), st.integers(0, 127), st.integers(0, 127)
    ).map(bytes),
    st.tuples(st.integers(0xC0, 0xDF), st.integers(0, 127)).map(bytes),
    st.sampled_from(
        [h("f8"), h("fa"), h("fe"), h("f6"), h("f1 10"), h("f2 01 02"), h("f0 01 02 f7")]
    ),
)


class PacketFuzzTests(SynchronousTestCase):
    @settings(max_examples=400)
    @given(st.lists(midi_message, max_size=40), st.integers(0, 0xFFFF), st.booleans())
    def test_round_trip(self, messages: list[bytes], sequence: int, journal: bool) -> None:
        """Whatever we encode decodes to the same messages (running status undone)."""
        for group in rtpmidi.pack_sections(messages, 200):
            wire = rtpmidi.encode_header(sequence, 7, 9) + rtpmidi.encode_section(group, journal)
            if journal:
                wire += h("00 00 01")
            packet = rtpmidi.decode(wire)
            self.assertEqual(packet.messages, group)
            self.assertLessEqual(len(wire), 12 + 2 + 200)

    @settings(max_examples=500)
    @given(st.binary(max_size=80))
    def test_fuzz_decode(self, data: bytes) -> None:
        """Any bytes after a valid header: decoded or RtpMidiError, never another exception."""
        for wire in (data, h("80 61 00 01 00 00 00 00 11 11 11 11") + data):
            try:
                packet = rtpmidi.decode(wire)
            except RtpMidiError as error:
                # Reasons key the drop counters: a fixed set, never values from the packet.
                self.assertIn(str(error), RTP_REASONS)
                continue
            for message in packet.messages:
                self.assertGreaterEqual(message[0], 0x80)
            segments = [m for m in packet.messages if m[0] in (0xF0, 0xF7)]
            self.assertEqual(packet.sysex, bool(segments))
            self.assertEqual(len(packet.deltas), len(packet.messages))

    def test_pack_sections_limits(self) -> None:
        messages = [h("b0 07 7f")] * 1000
        groups = list(rtpmidi.pack_sections(messages, 1386))
        self.assertEqual(sum(len(g) for g in groups), 1000)
        for group in groups:
            self.assertLessEqual(len(rtpmidi.encode_section(group)), 1386 + 2)
        big = [h("b0 07 7f")] * 2000
        self.assertTrue(
            all(
                len(rtpmidi.encode_section(g)) <= 0xFFF + 2
                for g in rtpmidi.pack_sections(big, 60000)
            )
        )
