"""The RTP-MIDI recovery journal: golden bytes per chapter, sender history, receiver repair."""

from __future__ import annotations

import random
import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec.rtpjournal import (
    ChannelJournal,
    ControllerChapter,
    ControllerLog,
    Journal,
    JournalError,
    JournalReceiver,
    JournalSender,
    NoteChapter,
    NoteLog,
    ParameterChapter,
    ParameterLog,
    PressureLog,
    ProgramChapter,
    decode_journal,
    encode_journal,
)
from netmidi.testing.pcap import applemidi_capture, tshark_available, tshark_fields, write_pcap

# The journal of the reference packet that tshark decoded (rtpmidi.md 2.13): checkpoint 999,
# channel 0 with chapter C [CC 7 = 127] and chapter N [60 on at 100; 62 off].
REFERENCE = bytes.fromhex("a003e7 800b48 80877f 8177bce402")


def one_channel(**chapters: object) -> Journal:
    return Journal(1, (ChannelJournal(channel=2, **chapters),))  # type: ignore[arg-type]


def chapter_bytes(journal: Journal) -> bytes:
    """The chapter bytes of a one-channel journal (after its 3 + 3 header bytes)."""
    return encode_journal(journal)[6:]


class GoldenTests(SynchronousTestCase):
    """Each chapter against bytes laid out by hand from RFC 6295 appendix A."""

    def test_reference_journal(self) -> None:
        """The journal that tshark decoded in the reference lab decodes to its meaning."""
        journal, end = decode_journal(REFERENCE)
        self.assertEqual(end, len(REFERENCE))
        self.assertEqual(journal.checkpoint, 999)
        (cj,) = journal.channels
        self.assertEqual(cj.channel, 0)
        self.assertEqual(cj.controllers, ControllerChapter((ControllerLog(7, 127),)))
        self.assertEqual(cj.notes, NoteChapter((NoteLog(60, 100),), (62,)))
        self.assertEqual(encode_journal(journal), REFERENCE)

    def test_header_and_channel_header(self) -> None:
        """Header: S Y A H TOTCHAN, checkpoint; channel header: S CHAN H LENGTH, TOC."""
        journal = Journal(0x1234, (ChannelJournal(9, pitch=(False, 0), s=False),), s=False)
        self.assertEqual(encode_journal(journal), bytes.fromhex("201234 4805 10 0000"))

    def test_empty_journal(self) -> None:
        """No history: a header alone, A=0 and TOTCHAN=0."""
        self.assertEqual(encode_journal(Journal(7)), bytes.fromhex("800007"))

    def test_chapter_p(self) -> None:
        """S PROGRAM, B BANK-MSB, X BANK-LSB."""
        self.assertEqual(
            chapter_bytes(one_channel(program=ProgramChapter(5, 1, 2))), bytes.fromhex("858102")
        )
        self.assertEqual(
            chapter_bytes(one_channel(program=ProgramChapter(127, s=False))),
            bytes.fromhex("7f0000"),
        )

    def test_chapter_c(self) -> None:
        """S LEN (logs - 1), then S NUMBER, A VALUE per log."""
        logs = (ControllerLog(7, 100, s=False), ControllerLog(64, 127))
        data = chapter_bytes(one_channel(controllers=ControllerChapter(logs, s=False)))
        self.assertEqual(data, bytes.fromhex("01 0764 c07f"))

    def test_chapter_m(self) -> None:
        """Header S P E U W Z LENGTH; log S PNUM-LSB, Q PNUM-MSB, TOC (J K .. V), fields."""
        logs = (ParameterLog(False, 0x81, 2, 3), ParameterLog(True, 5, 9, None, s=False))
        data = chapter_bytes(one_channel(parameters=ParameterChapter(logs, selected=True)))
        self.assertEqual(data, bytes.fromhex("a00b 8101c20203 0580 8209"))

    def test_chapter_w(self) -> None:
        """S FIRST (low 7 bits), R SECOND (high 7 bits)."""
        self.assertEqual(chapter_bytes(one_channel(pitch=(True, 0x3FFF))), b"\xff\x7f")
        self.assertEqual(chapter_bytes(one_channel(pitch=(False, 0x2000))), b"\x00\x40")

    def test_chapter_n(self) -> None:
        """B LEN, LOW HIGH, logs (S NOTE, Y VELOCITY), OFFBITS from LOW to HIGH."""
        chapter = NoteChapter((NoteLog(60, 100, s=False),), (0, 9, 17), b=False)
        self.assertEqual(
            chapter_bytes(one_channel(notes=chapter)), bytes.fromhex("01 02 3ce4 80 40 40")
        )
        # No NoteOffs: LOW 15 HIGH 1 and no OFFBITS.
        chapter = NoteChapter((NoteLog(1, 1),))
        self.assertEqual(chapter_bytes(one_channel(notes=chapter)), bytes.fromhex("81 f1 8181"))

    def test_chapter_n_128_logs(self) -> None:
        """128 NoteOn logs are LEN 127 with LOW 15 HIGH 0."""
        chapter = NoteChapter(tuple(NoteLog(n, 1) for n in range(128)))
        data = encode_journal(Journal(0, (ChannelJournal(0, notes=chapter),)))
        self.assertEqual(data[6:8], bytes.fromhex("ff f0"))
        self.assertEqual(decode_journal(data)[0].channels[0].notes, chapter)

    def test_chapter_t_and_a(self) -> None:
        """T: S PRESSURE. A: S LEN, then S NOTE, X PRESSURE per log."""
        data = chapter_bytes(
            one_channel(pressure=(True, 34), poly=(PressureLog(60, 16), PressureLog(61, 0, x=True)))
        )
        self.assertEqual(data, bytes.fromhex("a2 81 bc10 bd80"))

    def test_chapter_order_follows_toc(self) -> None:
        """Chapters appear in TOC order P C M W N E T A whatever order they are given in."""
        cj = ChannelJournal(0, program=ProgramChapter(1), pitch=(True, 0), pressure=(True, 3))
        data = encode_journal(Journal(0, (cj,)))
        self.assertEqual(data[5], 0x80 | 0x10 | 0x02)
        self.assertEqual(decode_journal(data)[0].channels[0], cj)

    def test_system_journal_is_skipped_by_length(self) -> None:
        """A system journal is kept raw and the channel journals after it still decode."""
        data = bytes.fromhex("e00001 0004abcd") + REFERENCE[3:]
        journal, end = decode_journal(data)
        self.assertEqual(journal.system, bytes.fromhex("0004abcd"))
        self.assertEqual(end, len(data))
        self.assertEqual(
            journal.channels[0].controllers, ControllerChapter((ControllerLog(7, 127),))
        )

    def test_chapter_m_short_logs_and_pending(self) -> None:
        """Z=1 with W=1: logs without Q/PNUM-MSB, all NRPN; PENDING read when P=1."""
        journal, _ = decode_journal(bytes.fromhex("a00001 800920 4c06 05 85 82 07"))
        m = journal.channels[0].parameters
        assert m is not None
        self.assertEqual(m.pending, (False, 5))
        self.assertEqual(m.logs, (ParameterLog(True, 5, 7, None),))


class BadJournalTests(SynchronousTestCase):
    """A journal that lies is a JournalError, never another exception."""

    def assertBad(self, data: bytes, words: str) -> None:
        with self.assertRaises(JournalError) as caught:
            decode_journal(data)
        self.assertIn(words, str(caught.exception))

    def test_truncated(self) -> None:
        self.assertBad(REFERENCE[:2], "journal header")
        self.assertBad(REFERENCE[:-1], "channel 0 journal runs past the end")

    def test_length_disagrees(self) -> None:
        """A LENGTH longer than the chapters it announces."""
        data = bytearray(REFERENCE + b"\x00")
        data[4] += 1
        self.assertBad(bytes(data), "disagrees with its chapters")

    def test_duplicate_channel(self) -> None:
        data = bytes.fromhex("a10000") + REFERENCE[3:] * 2
        self.assertBad(data, "two channel journals for channel 0")

    def test_chapter_past_channel_length(self) -> None:
        """A chapter that runs past its channel journal's LENGTH, though bytes follow."""
        data = bytes.fromhex("a00000 800410 00") + b"\x40" * 8
        self.assertBad(data, "chapter W runs past the end")

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=64))
    def test_fuzz_random_bytes(self, data: bytes) -> None:
        """Random bytes decode or raise JournalError."""
        try:
            journal, end = decode_journal(data)
        except JournalError:
            return
        self.assertLessEqual(end, len(data))
        self.assertIsInstance(journal, Journal)

    @settings(max_examples=300, deadline=None)
    @given(st.integers(0, 200), st.integers(0, 255), st.data())
    def test_fuzz_mutated_valid_journal(self, index: int, value: int, data: st.DataObject) -> None:
        """A valid journal with one byte changed decodes or raises JournalError."""
        sample = bytearray(data.draw(st.sampled_from(SAMPLES)))
        sample[index % len(sample)] = value
        try:
            decode_journal(bytes(sample))
        except JournalError:
            pass


# ------------------------------------------------------------------------------------------------
# A small MIDI "world" to compare sender and receiver: the rendered value of every channel item.


def render(messages: list[bytes]) -> dict[tuple[int, str, int], int]:
    """What a device that obeys the messages ends up with (independent of the journal code)."""
    state: dict[tuple[int, str, int], int] = {}
    registers: dict[int, list[int]] = {}  # channel -> [kind(0 rpn/1 nrpn), msb, lsb]
    for m in messages:
        kind, ch = m[0] & 0xF0, m[0] & 0x0F
        if kind == 0x90:
            state[(ch, "note", m[1])] = m[2]
        elif kind == 0x80:
            state[(ch, "note", m[1])] = 0
        elif kind == 0xB0:
            regs = registers.setdefault(ch, [0, 127, 127])
            number, value = m[1], m[2]
            if number in (101, 99):
                regs[:] = [number == 99, value, regs[2] if regs[0] == (number == 99) else 127]
            elif number in (100, 98):
                regs[0], regs[2] = number == 98, value
            elif number in (6, 38):
                if (regs[1], regs[2]) != (127, 127):
                    key = (ch, f"{'n' if regs[0] else ''}rpn{number}", regs[1] << 7 | regs[2])
                    state[key] = value
            else:
                state[(ch, "cc", number)] = value
                if number in (120, 123, 124, 125, 126, 127):
                    for key in state:
                        if key[0] == ch and key[1] == "note":
                            state[key] = 0
        elif kind == 0xC0:
            state[(ch, "program", 0)] = m[1]
        elif kind == 0xD0:
            state[(ch, "pressure", 0)] = m[1]
        elif kind == 0xE0:
            state[(ch, "pitch", 0)] = m[2] << 7 | m[1]
        elif kind == 0xA0:
            state[(ch, "poly", m[1])] = m[2]
    return {key: value for key, value in state.items() if value or key[1] != "note"}


def messages_strategy() -> st.SearchStrategy[bytes]:
    ch = st.integers(0, 2)
    small = st.integers(0, 127)
    return st.one_of(
        st.builds(lambda c, n, v: bytes((0x90 | c, n, v)), ch, st.integers(60, 66), small),
        st.builds(lambda c, n: bytes((0x80 | c, n, 0)), ch, st.integers(60, 66)),
        st.builds(
            lambda c, n, v: bytes((0xB0 | c, n, v)), ch, st.sampled_from([1, 7, 0, 32]), small
        ),
        st.builds(lambda c: bytes((0xB0 | c, 123, 0)), ch),
        st.builds(lambda c, p: bytes((0xC0 | c, p)), ch, small),
        st.builds(lambda c, a, b: bytes((0xE0 | c, a, b)), ch, small, small),
        st.builds(lambda c, v: bytes((0xD0 | c, v)), ch, small),
        st.builds(lambda c, n, v: bytes((0xA0 | c, n, v)), ch, st.integers(60, 62), small),
        st.builds(
            lambda c, nrpn, num, v: (
                bytes((0xB0 | c, 99 if nrpn else 101, 0, 0xB0 | c, 98 if nrpn else 100, num))
                + bytes((0xB0 | c, 6, v))
            ),
            ch,
            st.booleans(),
            st.integers(0, 3),
            small,
        ),
    )


def split(blob: bytes) -> list[bytes]:
    """Messages glued together by the strategy above (all 2 or 3 bytes long)."""
    out = []
    pos = 0
    while pos < len(blob):
        size = 2 if blob[pos] & 0xF0 in (0xC0, 0xD0) else 3
        out.append(blob[pos : pos + size])
        pos += size
    return out


def run_stream(
    packets: list[list[bytes]], lost: set[int], journal: bool = True, start: int = 65500
) -> tuple[list[bytes], list[bytes], JournalReceiver]:
    """Send packets through a sender and a receiver, dropping those in ``lost``."""
    sender, receiver = JournalSender(), JournalReceiver()
    sent: list[bytes] = []
    delivered: list[bytes] = []
    for index, messages in enumerate(packets):
        seq = (start + index) & 0xFFFF
        data = sender.packet(seq, messages)
        sent += messages
        if index in lost:
            continue
        result = receiver.packet(seq, messages, data if journal else None)
        delivered += result.messages
    return sent, delivered, receiver


def stream(rng: random.Random, count: int) -> list[list[bytes]]:
    packets = []
    for _ in range(count):
        messages = []
        for _ in range(rng.randint(1, 3)):
            ch = rng.randint(0, 1)
            roll = rng.random()
            if roll < 0.5:
                note = rng.randint(60, 72)
                velocity = rng.choice([0, rng.randint(1, 127)])
                messages.append(bytes((0x90 | ch, note, velocity)))
            else:
                messages.append(bytes((0xB0 | ch, rng.randint(1, 16), rng.randint(0, 127))))
        packets.append(messages)
    return packets


SAMPLES = [REFERENCE]


def _sample_journals() -> None:
    sender = JournalSender()
    blob = [
        [b"\x90\x3c\x64", b"\xb0\x07\x7f"],
        [b"\x80\x3e\x00", b"\xc1\x05", b"\xe1\x00\x40", b"\xb2\x65\x00", b"\xb2\x64\x01"],
        [b"\xb2\x06\x02", b"\xb2\x26\x03", b"\xd3\x22", b"\xa3\x3c\x10", b"\xb4\x63\x01"],
        [b"\xb4\x62\x07", b"\xb4\x06\x11", b"\xb1\x00\x02", b"\xc1\x09"],
        [],
    ]
    for seq, messages in enumerate(blob):
        SAMPLES.append(sender.packet(seq, messages))


_sample_journals()


class SenderTests(SynchronousTestCase):
    """The sender's history: S bits, checkpoint, RS trimming, bounds."""

    def test_first_packets(self) -> None:
        """The first journal is empty; the second covers the first with S=0.

        The header's S bit is always 0 (pymidi misreads 1); the channels' S bits are exact.
        """
        sender = JournalSender()
        self.assertEqual(sender.packet(1000, [b"\x90\x3c\x64"]), bytes.fromhex("0003e8"))
        self.assertEqual(
            sender.packet(1001, [b"\xb0\x07\x7f", b"\x80\x3e\x00"]),
            bytes.fromhex("2003e8 000708 81f1 3ce4"),
        )
        # Packet 1000 is now two back (S=1); 1001 brought CC 7 and NoteOff 62 (S=0, B=0).
        self.assertEqual(sender.packet(1002, []), bytes.fromhex("2003e8 000b48 00077f 0177bce402"))
        # Nothing new in 1002: every S bit is 1 again, and it matches the reference layout.
        self.assertEqual(sender.packet(1003, []), bytes.fromhex("2003e8") + REFERENCE[3:])

    def test_latest_value_only(self) -> None:
        """A controller sent twice appears once, with its latest value."""
        sender = JournalSender()
        sender.packet(0, [b"\xb0\x07\x01"])
        sender.packet(1, [b"\xb0\x07\x02", b"\xb0\x08\x03"])
        journal, _ = decode_journal(sender.packet(2, []))
        controllers = journal.channels[0].controllers
        assert controllers is not None
        self.assertEqual([(c.number, c.value) for c in controllers.logs], [(7, 2), (8, 3)])

    def test_confirm_trims(self) -> None:
        """RS for a packet moves the checkpoint there: older history leaves the journal."""
        sender = JournalSender()
        sender.packet(10, [b"\xb0\x01\x01"])
        sender.packet(11, [b"\xb0\x02\x02"])
        sender.packet(12, [b"\xb0\x03\x03"])
        self.assertTrue(sender.confirm(11))
        journal, _ = decode_journal(sender.packet(13, []))
        self.assertEqual(journal.checkpoint, 11)
        controllers = journal.channels[0].controllers
        assert controllers is not None
        self.assertEqual([c.number for c in controllers.logs], [2, 3])

    def test_confirm_rejects_implausible_values(self) -> None:
        """RS naming no recent packet (rtpmidid's low-half layout reads as 0) is ignored."""
        sender = JournalSender()
        self.assertFalse(sender.confirm(5))
        for seq in range(1000, 1010):
            sender.packet(seq, [b"\xb0\x01\x01"])
        self.assertFalse(sender.confirm(0))
        self.assertFalse(sender.confirm(1010))
        self.assertTrue(sender.confirm(1005))
        self.assertFalse(sender.confirm(1002))  # never moves back
        self.assertEqual(decode_journal(sender.packet(1010, []))[0].checkpoint, 1005)

    def test_slowest_receiver_holds_the_checkpoint(self) -> None:
        """With two receivers the checkpoint follows the one that confirmed least."""
        sender = JournalSender()
        sender.packet(0, [])
        sender.track("a")
        sender.track("b")
        for seq in range(1, 6):
            sender.packet(seq, [bytes((0xB0, seq, 1))])
        self.assertTrue(sender.confirm(4, "a"))
        self.assertEqual(decode_journal(sender.packet(6, []))[0].checkpoint, 0)
        self.assertTrue(sender.confirm(2, "b"))
        self.assertEqual(decode_journal(sender.packet(7, []))[0].checkpoint, 2)
        sender.forget("b")
        self.assertTrue(sender.confirm(6, "a"))
        self.assertEqual(decode_journal(sender.packet(8, []))[0].checkpoint, 6)

    def test_history_bounded_without_feedback(self) -> None:
        """Without RS the journal covers at most max_packets packets."""
        sender = JournalSender(max_packets=8)
        for seq in range(100):
            data = sender.packet(seq, [bytes((0xB0, seq % 80 + 10, 1))])
        journal, _ = decode_journal(data)
        self.assertEqual(journal.checkpoint, 99 - 8)
        controllers = journal.channels[0].controllers
        assert controllers is not None
        self.assertEqual(len(controllers.logs), 8)
        self.assertLessEqual(sum(len(s.controllers) for s in sender.channels.values()), 9)

    def test_size_bounded(self) -> None:
        """A journal never grows past max_bytes: the oldest history goes first."""
        sender = JournalSender(max_packets=1000, max_bytes=100)
        for seq in range(300):
            data = sender.packet(seq, [bytes((0xB0 | seq % 16, seq % 128, 1))])
            self.assertLessEqual(len(data), 100)
        self.assertGreater(len(data), 50)

    def test_wraps_sequence_numbers(self) -> None:
        """History spans the 16-bit wrap of RTP sequence numbers."""
        sender = JournalSender()
        sender.packet(65535, [b"\x90\x3c\x64"])
        journal, _ = decode_journal(sender.packet(0, []))
        self.assertEqual(journal.checkpoint, 65535)
        self.assertEqual(journal.channels[0].notes, NoteChapter((NoteLog(60, 100, s=False),)))

    @given(
        st.lists(
            st.lists(
                st.tuples(
                    st.sampled_from([0x90, 0x80, 0xB0]), st.integers(0, 5), st.integers(0, 3)
                ),
                max_size=4,
            ),
            min_size=1,
            max_size=12,
        ),
        st.integers(1, 8),
    )
    @settings(max_examples=300)
    def test_chapter_n_kept_between_packets(
        self, packets: list[list[tuple[int, int, int]]], max_packets: int
    ) -> None:
        """Chapter N, encoded again only when notes change, always says what a fresh one would.

        The model: each note's latest command since the checkpoint (``max_packets`` back),
        NoteOn logs in the order of their latest update, S=0 for the previous packet's.
        """
        sender = JournalSender(max_packets=max_packets, max_bytes=10000)
        notes: dict[int, tuple[int, int]] = {}  # note -> (packet, velocity)
        for seq, commands in enumerate([*packets, []]):
            journal, _ = decode_journal(sender.packet(seq, [bytes(c) for c in commands]))
            notes = {n: item for n, item in notes.items() if item[0] >= seq - max_packets}
            previous = seq - 1
            on = [(n, v, p != previous) for n, (p, v) in notes.items() if v]
            offs = sorted(n for n, (_, v) in notes.items() if not v)
            expected = None
            if notes:
                expected = NoteChapter(
                    tuple(NoteLog(n, v, s=s) for n, v, s in on),
                    tuple(offs),
                    b=all(p != previous for p, v in notes.values() if not v),
                )
            found = [c.notes for c in journal.channels]
            self.assertEqual(found[0] if found else None, expected)
            for status, note, velocity in commands:
                if status != 0xB0:
                    notes.pop(note, None)
                    notes[note] = (seq, velocity if status == 0x90 else 0)

    def test_all_notes_off_reports_notes_off(self) -> None:
        """After All Notes Off the sounding notes are reported as off, not as on."""
        sender = JournalSender()
        sender.packet(0, [b"\x90\x3c\x64", b"\x90\x40\x64"])
        sender.packet(1, [b"\xb0\x7b\x00"])
        journal, _ = decode_journal(sender.packet(2, []))
        self.assertEqual(journal.channels[0].notes, NoteChapter((), (60, 64), b=False))

    def test_parameter_selection(self) -> None:
        """An RPN transaction is chapter M (not C); the selected parameter comes last with E."""
        sender = JournalSender()
        sender.packet(0, [b"\xb0\x65\x00", b"\xb0\x64\x02", b"\xb0\x06\x40", b"\xb0\x26\x01"])
        sender.packet(1, [b"\xb0\x63\x01", b"\xb0\x62\x03", b"\xb0\x06\x05"])
        sender.packet(2, [b"\xb0\x65\x00", b"\xb0\x64\x02"])
        cj = decode_journal(sender.packet(3, []))[0].channels[0]
        self.assertIsNone(cj.controllers)
        self.assertEqual(
            cj.parameters,
            ParameterChapter(
                (ParameterLog(True, 131, 5, None), ParameterLog(False, 2, 64, 1)),
                selected=True,
                s=False,
            ),
        )


class ReceiverTests(SynchronousTestCase):
    """Loss detection and repair."""

    def test_in_order_passes_through(self) -> None:
        receiver = JournalReceiver()
        for seq in range(5):
            result = receiver.packet(seq, [b"\x90\x3c\x64"], b"\x80\x00\x00")
            self.assertEqual(result.messages, [b"\x90\x3c\x64"])
            self.assertEqual(result.lost, 0)
        self.assertEqual(receiver.lost, 0)

    def test_mixed_packet_recorded_per_channel(self) -> None:
        """A packet with several channels and system messages: each channel's state is kept."""
        messages = [b"\xb0\x07\x10", b"\xf8", b"\x91\x3c\x64", b"\xb0\x07\x20", b"\xb1\x0a\x05"]
        receiver = JournalReceiver()
        receiver.packet(1, messages, None)
        self.assertEqual(receiver.channels[0].controllers, {7: (0, 0x20)})
        self.assertEqual(receiver.channels[1].controllers, {10: (0, 5)})
        self.assertEqual(receiver.channels[1].notes, {60: (0, 100)})
        sender = JournalSender()
        sender.packet(1, messages)
        cj = decode_journal(sender.packet(2, []))[0].channels
        self.assertEqual([c.channel for c in cj], [0, 1])
        self.assertEqual(
            cj[0].controllers, ControllerChapter((ControllerLog(7, 0x20, s=False),), s=False)
        )
        self.assertEqual(cj[1].notes, NoteChapter((NoteLog(60, 100, s=False),)))

    def test_single_loss_uses_s_bits(self) -> None:
        """After one lost packet only the S=0 parts are played (the rest arrived already)."""
        receiver = JournalReceiver()
        receiver.packet(1000, [b"\x90\x3c\x64"], bytes.fromhex("8003e8"))
        journal = bytes.fromhex("2003e8 000b48 00077f 0177bce402")
        # 1001 (CC 7 = 127, NoteOff 62) is lost; note 60 (S=1) arrived in 1000.
        result = receiver.packet(1002, [b"\xb0\x01\x05"], journal)
        self.assertEqual(result.lost, 1)
        self.assertEqual(result.messages, [b"\xb0\x07\x7f", b"\xb0\x01\x05"])
        self.assertEqual(result.repaired, 1)

    def test_single_loss_note_off(self) -> None:
        """A lost NoteOff of a sounding note is played from the OFFBITS."""
        receiver = JournalReceiver()
        receiver.packet(1, [b"\x90\x3e\x64"], None)
        journal = encode_journal(
            Journal(
                1, (ChannelJournal(0, notes=NoteChapter((), (62,), b=False), s=False),), s=False
            )
        )
        result = receiver.packet(3, [], journal)
        self.assertEqual(result.messages, [b"\x80\x3e\x00"])

    def test_multiple_loss_compares_with_state(self) -> None:
        """After several lost packets everything counts, but what is already so is not repeated."""
        receiver = JournalReceiver()
        receiver.packet(0, [b"\x90\x3c\x64", b"\xb0\x07\x7f"], None)
        journal = encode_journal(
            Journal(
                0,
                (
                    ChannelJournal(
                        0,
                        controllers=ControllerChapter(
                            (ControllerLog(7, 127), ControllerLog(8, 3, s=False)), s=False
                        ),
                        notes=NoteChapter((NoteLog(60, 100), NoteLog(61, 90)), (62,)),
                        s=False,
                    ),
                ),
                s=False,
            )
        )
        result = receiver.packet(3, [], journal)
        self.assertEqual(result.lost, 2)
        self.assertEqual(result.messages, [b"\xb0\x08\x03", b"\x90\x3d\x5a"])

    def test_odd_messages_pass_through(self) -> None:
        """System messages, SysEx and even empty or short messages never upset either side."""
        odd = [b"", b"\xf0\x01\xf7", b"\xf8", b"\x90", b"\xb0\x07", b"\xc0"]
        sender, receiver = JournalSender(), JournalReceiver()
        for seq in range(3):
            data = sender.packet(seq, odd)
            self.assertEqual(receiver.packet(seq, odd, data).messages, odd)
        decode_journal(data)

    def test_late_packet_dropped(self) -> None:
        """A packet older than the last one (reordered or duplicated) is dropped."""
        receiver = JournalReceiver()
        receiver.packet(10, [b"\x90\x3c\x64"], None)
        receiver.packet(12, [b"\x90\x3c\x00"], None)
        result = receiver.packet(11, [b"\x90\x3c\x7f"], None)
        self.assertTrue(result.late)
        self.assertEqual(result.messages, [])
        self.assertEqual(receiver.packet(12, [b"\x90\x3c\x7f"], None).late, True)

    def test_restarted_sender_resyncs(self) -> None:
        """A jump far back (a restarted sender) is taken as a new start, not as late."""
        receiver = JournalReceiver()
        receiver.packet(40000, [], None)
        result = receiver.packet(30000, [b"\x90\x3c\x64"], None)
        self.assertEqual((result.late, result.lost), (False, 0))
        self.assertEqual(result.messages, [b"\x90\x3c\x64"])

    def test_broken_journal_keeps_the_packet(self) -> None:
        """A journal that lies is reported; the packet's own messages are still delivered."""
        receiver = JournalReceiver()
        receiver.packet(1, [], None)
        result = receiver.packet(3, [b"\x90\x3c\x64"], bytes.fromhex("a00001 80ff48"))
        self.assertEqual(result.messages, [b"\x90\x3c\x64"])
        self.assertIn("runs past the end", result.error or "")

    def test_partial_coverage_is_flagged(self) -> None:
        """A checkpoint after the first lost packet: repaired as far as it goes, flagged."""
        receiver = JournalReceiver()
        receiver.packet(1, [], None)
        result = receiver.packet(10, [], encode_journal(Journal(5)))
        self.assertTrue(result.partial)
        result = receiver.packet(12, [], encode_journal(Journal(11)))
        self.assertFalse(result.partial)

    def test_parameter_repair(self) -> None:
        """A lost Data Entry is replayed with its selection, and the selection is restored."""
        sender, receiver = JournalSender(), JournalReceiver()
        packets = [
            [b"\xb0\x65\x00", b"\xb0\x64\x00", b"\xb0\x06\x02"],
            [b"\xb0\x06\x0c", b"\xb0\x26\x01"],
            [b"\xb0\x65\x7f", b"\xb0\x64\x7f"],
            [],
        ]
        sent: list[bytes] = []
        got: list[bytes] = []
        for seq, messages in enumerate(packets):
            data = sender.packet(seq, messages)
            sent += messages
            if seq not in (1, 2):
                got += receiver.packet(seq, messages, data).messages
        self.assertEqual(render(got), render(sent))
        self.assertEqual(got[-2:], [b"\xb0\x65\x7f", b"\xb0\x64\x7f"])


class LossTests(SynchronousTestCase):
    """Sender to receiver with packets dropped: equal final state with the journal."""

    def test_ten_percent_loss(self) -> None:
        """10 % random loss of a note and CC stream: equal with the journal, unequal without."""
        rng = random.Random(5)
        packets = stream(rng, 2000) + [[]]
        lost = {i for i in range(1, len(packets) - 1) if rng.random() < 0.1}
        sent, delivered, receiver = run_stream(packets, lost)
        self.assertEqual(render(delivered), render(sent))
        self.assertEqual(receiver.lost, len(lost))
        _, bare, _ = run_stream(packets, lost, journal=False)
        self.assertNotEqual(render(bare), render(sent))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.lists(messages_strategy(), max_size=3), min_size=2, max_size=40),
        st.sets(st.integers(1, 38)),
        st.integers(0, 65535),
    )
    def test_any_stream_any_loss(
        self, blobs: list[list[bytes]], lost: set[int], start: int
    ) -> None:
        """Whatever is sent and whatever is lost (short of the last packet), the states agree."""
        packets = [split(b"".join(blob)) for blob in blobs] + [[]]
        lost = {i for i in lost if i < len(packets) - 1}
        sent, delivered, _ = run_stream(packets, lost, start=start)
        self.assertEqual(render(delivered), render(sent))


class TsharkTests(SynchronousTestCase):
    """Journals from the sender decode in tshark's rtpmidi dissector without a Malformed mark."""

    def setUp(self) -> None:
        if not tshark_available():
            self.skipTest("tshark is not installed (.ci/peers/journal.sh installs it)")

    def test_journals_decode(self) -> None:
        sender = JournalSender()
        payloads = []
        for seq, messages in enumerate(
            [
                [b"\x90\x3c\x64", b"\xb0\x07\x7f"],
                [b"\x80\x3e\x00", b"\xc1\x05", b"\xe1\x00\x40", b"\xb2\x65\x00", b"\xb2\x64\x01"],
                [b"\xb2\x06\x02", b"\xb2\x26\x03", b"\xd3\x22", b"\xa3\x3c\x10"],
                [b"\xb4\x63\x01", b"\xb4\x62\x07", b"\xb4\x06\x11", b"\xb1\x00\x02"],
                [b"\xc1\x09", b"\xb0\x7b\x00"],
                [],
            ],
            start=1000,
        ):
            journal = sender.packet(seq, messages)
            body = b"".join((b"\x00" if i else b"") + m for i, m in enumerate(messages))
            section = struct.pack("!H", 0xC000 | len(body)) + body
            header = struct.pack("!BBHII", 0x80, 0x61, seq, 10 * seq, 0x11111111)
            payloads.append(header + section + journal)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "journal.pcap"
            write_pcap(path, applemidi_capture(payloads))
            fields = [
                "frame.number",
                "_ws.malformed",
                "_ws.expert.message",
                "rtpmidi.cj_chapter_c_value",
                "rtpmidi.cj_chapter_n_log_note",
                "rtpmidi.cj_chapter_p_program",
                "rtpmidi.cj_chapter_w_second",
                "rtpmidi.cj_chapter_t_pressure",
                "rtpmidi.cj_chapter_a_log_pressure",
                "rtpmidi.cj_chapter_m_log_msb",
            ]
            lines = tshark_fields(path, fields).splitlines()
        self.assertEqual(len(lines), 2 + len(payloads))
        for line in lines:
            self.assertNotIn("alformed", line)
        last = lines[-1].split("|")
        self.assertEqual(last[3], "0x7f,0x00,0x02")  # CC 7 and 123 (channel 0), bank 2 (1)
        self.assertEqual(last[5], "9")  # the latest program of channel 1
        self.assertEqual(last[6], "0x40")
        self.assertEqual(last[7], "34")
        self.assertEqual(last[8], "16")
        self.assertEqual(last[9], "0x02,0x11")
