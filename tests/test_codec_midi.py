"""The shared MIDI codec: channel specs, the byte-stream parser, event decoding and encoding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netmidi.codec.midi import (
    MidiChannel,
    MidiEventDecoder,
    MidiEventEncoder,
    MidiKind,
    MidiStreamParser,
    RunningStatusWriter,
    is_realtime,
    message_length,
    parse_midi_channel,
)
from netmidi.options import OptionError
from netmidi.values import Value


def ch(spec: str) -> MidiChannel:
    return parse_midi_channel(spec)


class ChannelSpecTests(SynchronousTestCase):
    def test_midimonster_examples(self) -> None:
        cases = {
            "ch0.note60": (0, MidiKind.NOTE, 60),
            "channel15.cc7": (15, MidiKind.CC, 7),
            "ch1.pressure60": (1, MidiKind.PRESSURE, 60),
            "ch1.aftertouch": (1, MidiKind.AFTERTOUCH, 0),
            "ch1.pitch": (1, MidiKind.PITCH, 0),
            "ch2.program": (2, MidiKind.PROGRAM, 0),
            "ch0.rpn1": (0, MidiKind.RPN, 1),
            "ch0.nrpn900": (0, MidiKind.NRPN, 900),
            "ch15.nrpn16383": (15, MidiKind.NRPN, 16383),
        }
        for spec, (channel, kind, index) in cases.items():
            parsed = ch(spec)
            self.assertEqual(parsed, MidiChannel(channel, kind, index), spec)
            self.assertEqual(parse_midi_channel(str(parsed)), parsed)

    def test_canonical_text(self) -> None:
        self.assertEqual(str(ch("channel15.cc7")), "ch15.cc7")
        self.assertEqual(str(ch("CH01.Note060")), "ch1.note60")
        self.assertEqual(str(ch("ch1.aftertouch")), "ch1.aftertouch")
        self.assertEqual(str(ch("ch3.pitch")), "ch3.pitch")

    def test_hashable_and_frozen(self) -> None:
        self.assertEqual({ch("ch0.note60"): 1}[MidiChannel(0, MidiKind.NOTE, 60)], 1)
        self.assertNotEqual(ch("ch0.note60"), ch("ch0.cc60"))
        with self.assertRaises(AttributeError):
            ch("ch0.note60").index = 1  # type: ignore[misc]

    def test_bits(self) -> None:
        self.assertEqual(ch("ch0.note1").bits, 7)
        self.assertEqual(ch("ch0.pitch").bits, 14)
        self.assertEqual(ch("ch0.nrpn1").bits, 14)

    def test_errors_say_what_was_expected(self) -> None:
        bad = {
            "ch16.note1": "0-15",
            "ch0.note128": "0-127",
            "ch0.rpn16384": "0-16383",
            "ch0.note": "expected a number",
            "ch0.pitch3": "without a number",
            "ch0.program1": "without a number",
            "ch0.volume1": "expected chN.TYPE",
            "note0.60": "expected chN.TYPE",
            "ch0note60": "expected chN.TYPE",
            "ch0.note60x": "expected chN.TYPE",
            "": "expected chN.TYPE",
            "ch-1.note1": "expected chN.TYPE",
        }
        for spec, expected in bad.items():
            with self.assertRaises(OptionError, msg=spec) as caught:
                parse_midi_channel(spec)
            self.assertIn(expected, str(caught.exception), spec)
            self.assertTrue(str(caught.exception).startswith("got "), spec)

    @given(st.text(max_size=20))
    @settings(max_examples=300)
    def test_fuzz_spec(self, spec: str) -> None:
        try:
            parsed = parse_midi_channel(spec)
        except OptionError:
            return
        self.assertEqual(parse_midi_channel(str(parsed)), parsed)


class StreamParserTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.drops: list[str] = []
        self.parser = MidiStreamParser(max_sysex=16, on_drop=self.drops.append)

    def feed(self, hex_text: str) -> list[str]:
        return [m.hex(" ") for m in self.parser.feed(bytes.fromhex(hex_text))]

    def test_lengths(self) -> None:
        self.assertEqual(message_length(0x90), 3)
        self.assertEqual(message_length(0xC5), 2)
        self.assertEqual(message_length(0xD0), 2)
        self.assertEqual(message_length(0xF1), 2)
        self.assertEqual(message_length(0xF2), 3)
        self.assertEqual(message_length(0xF6), 1)
        self.assertEqual(message_length(0xF8), 1)
        self.assertEqual(message_length(0xF0), 0)
        self.assertEqual(message_length(0x40), 0)
        self.assertTrue(is_realtime(0xF8))
        self.assertFalse(is_realtime(0xF7))

    def test_whole_messages(self) -> None:
        self.assertEqual(self.feed("90 3c 7f"), ["90 3c 7f"])
        self.assertEqual(self.feed("c1 05"), ["c1 05"])
        self.assertEqual(self.feed("e0 00 40 d2 11"), ["e0 00 40", "d2 11"])
        self.assertEqual(self.drops, [])

    def test_running_status_in(self) -> None:
        self.assertEqual(self.feed("90 3c 7f 3e 40 40 00"), ["90 3c 7f", "90 3e 40", "90 40 00"])
        self.assertEqual(self.feed("c0 01 02 03"), ["c0 01", "c0 02", "c0 03"])

    def test_split_anywhere(self) -> None:
        self.assertEqual(self.feed("b0"), [])
        self.assertEqual(self.feed("07"), [])
        self.assertEqual(self.feed("64 08"), ["b0 07 64"])
        self.assertEqual(self.feed("7f"), ["b0 08 7f"])

    def test_realtime_interleaves(self) -> None:
        self.assertEqual(self.feed("90 f8 3c fa 7f"), ["f8", "fa", "90 3c 7f"])
        # Realtime does not cancel running status.
        self.assertEqual(self.feed("fe 3d 10"), ["fe", "90 3d 10"])
        self.assertEqual(self.feed("f0 01 f8 02 f7"), ["f8", "f0 01 02 f7"])

    def test_system_common_cancels_running_status(self) -> None:
        self.assertEqual(self.feed("90 3c 7f f1 23 3c 00"), ["90 3c 7f", "f1 23"])
        self.assertEqual(self.drops, ["data byte without a status byte"] * 2)
        self.assertEqual(self.feed("f2 01 02 f3 05 f6"), ["f2 01 02", "f3 05", "f6"])

    def test_sysex(self) -> None:
        self.assertEqual(self.feed("f0 7e 7f 06 01 f7"), ["f0 7e 7f 06 01 f7"])
        self.assertEqual(self.feed("f0 43"), [])
        self.assertEqual(self.feed("10 01"), [])
        self.assertEqual(self.feed("f7 90 01 02"), ["f0 43 10 01 f7", "90 01 02"])

    def test_sysex_cancels_running_status(self) -> None:
        self.assertEqual(self.feed("90 3c 7f f0 01 f7 3c 00"), ["90 3c 7f", "f0 01 f7"])
        self.assertEqual(self.drops, ["data byte without a status byte"] * 2)

    def test_sysex_is_ended_by_any_status(self) -> None:
        self.assertEqual(self.feed("f0 01 02 90 3c 7f"), ["f0 01 02 f7", "90 3c 7f"])

    def test_sysex_cap(self) -> None:
        self.assertEqual(self.feed("f0" + " 01" * 14 + " f7"), ["f0" + " 01" * 14 + " f7"])
        self.assertEqual(self.feed("f0" + " 01" * 15 + " f7 c0 05"), ["c0 05"])
        self.assertEqual(self.drops, ["SysEx longer than 16 bytes"])

    def test_bad_input_is_dropped_and_reported(self) -> None:
        self.assertEqual(self.feed("3c 7f"), [])
        self.assertEqual(self.feed("f7"), [])
        self.assertEqual(self.feed("f4 f5 f9 fd"), [])
        self.assertEqual(self.feed("90 3c b0 07 10"), ["b0 07 10"])
        self.assertEqual(
            self.drops,
            [
                "data byte without a status byte",
                "data byte without a status byte",
                "end of SysEx without a start",
                "undefined status byte 0xF4",
                "undefined status byte 0xF5",
                "undefined status byte 0xF9",
                "undefined status byte 0xFD",
                "incomplete message 0x90 cut by a status byte",
            ],
        )

    def test_reset(self) -> None:
        self.feed("90 3c")
        self.parser.reset()
        self.assertEqual(self.drops, ["incomplete message"])
        self.assertEqual(self.feed("7f"), [])

    def test_list_of_ints(self) -> None:
        self.assertEqual(self.parser.feed([0x90, 60, 127]), [b"\x90\x3c\x7f"])
        self.assertEqual(self.parser.feed([0x90, 60, 200]), [])
        self.assertEqual(self.drops, ["incomplete message 0x90 cut by a status byte"])


def message_strategy() -> st.SearchStrategy[bytes]:
    data = st.integers(0, 127)
    channel_message = st.builds(
        lambda status, a, b: bytes((status, a, b)[: message_length(status)]),
        st.integers(0x80, 0xEF),
        data,
        data,
    )
    common = st.sampled_from([b"\xf1\x10", b"\xf2\x01\x02", b"\xf3\x05", b"\xf6"])
    sysex = st.binary(max_size=12).map(lambda b: b"\xf0" + bytes(x & 0x7F for x in b) + b"\xf7")
    realtime = st.sampled_from([bytes((s,)) for s in (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF)])
    return st.one_of(channel_message, common, sysex, realtime)


class StreamParserFuzzTests(SynchronousTestCase):
    @given(st.lists(st.binary(max_size=40), max_size=8))
    @settings(max_examples=400)
    def test_garbage_never_raises_and_output_is_well_formed(self, chunks: list[bytes]) -> None:
        drops: list[str] = []
        parser = MidiStreamParser(max_sysex=32, on_drop=drops.append)
        for chunk in chunks:
            for message in parser.feed(chunk):
                status = message[0]
                self.assertGreaterEqual(status, 0x80)
                if status == 0xF0:
                    self.assertEqual(message[-1], 0xF7)
                    self.assertLessEqual(len(message), 32)
                    self.assertTrue(all(b < 0x80 for b in message[1:-1]))
                else:
                    self.assertEqual(len(message), message_length(status))
                    self.assertTrue(all(b < 0x80 for b in message[1:]))

    @given(
        st.lists(message_strategy(), max_size=30),
        st.lists(st.integers(1, 7), min_size=1, max_size=10),
        st.booleans(),
    )
    @settings(max_examples=300)
    def test_round_trip_in_any_chunks(
        self, messages: list[bytes], cuts: list[int], running: bool
    ) -> None:
        writer = RunningStatusWriter()
        stream = b"".join(writer.write(m) if running else m for m in messages)
        drops: list[str] = []
        parser = MidiStreamParser(on_drop=drops.append)
        out: list[bytes] = []
        position, turn = 0, 0
        while position < len(stream):
            size = cuts[turn % len(cuts)]
            out.extend(parser.feed(stream[position : position + size]))
            position += size
            turn += 1
        self.assertEqual(out, messages)
        self.assertEqual(drops, [])
        if running:
            self.assertLessEqual(len(stream), sum(len(m) for m in messages))


class RunningStatusWriterTests(SynchronousTestCase):
    def test_golden(self) -> None:
        writer = RunningStatusWriter()
        written = [
            writer.write(bytes.fromhex(h))
            for h in ("90 3c 7f", "90 3e 7f", "f8", "90 40 00", "f1 10", "90 41 01", "b0 07 7f")
        ]
        self.assertEqual(
            [w.hex(" ") for w in written],
            ["90 3c 7f", "3e 7f", "f8", "40 00", "f1 10", "90 41 01", "b0 07 7f"],
        )
        writer.reset()
        self.assertEqual(writer.write(b"\xb0\x07\x00"), b"\xb0\x07\x00")


def decode(decoder: MidiEventDecoder, *hex_messages: str) -> list[tuple[str, int, int]]:
    return [
        (str(channel), value.raw, value.bits)
        for channel, value in decoder.decode([bytes.fromhex(h) for h in hex_messages])
    ]


class DecoderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.decoder = MidiEventDecoder()

    def test_channel_messages(self) -> None:
        self.assertEqual(
            decode(
                self.decoder,
                "90 3c 7f",
                "80 3c 40",
                "91 3c 00",
                "a1 3c 22",
                "b2 07 64",
                "c3 05",
                "d4 33",
                "e5 00 40",
                "ef 7f 7f",
                "e0 00 00",
            ),
            [
                ("ch0.note60", 127, 7),
                ("ch0.note60", 0, 7),
                ("ch1.note60", 0, 7),
                ("ch1.pressure60", 0x22, 7),
                ("ch2.cc7", 100, 7),
                ("ch3.program", 5, 7),
                ("ch4.aftertouch", 0x33, 7),
                ("ch5.pitch", 8192, 14),
                ("ch15.pitch", 16383, 14),
                ("ch0.pitch", 0, 14),
            ],
        )

    def test_values_are_normalised(self) -> None:
        events = self.decoder.decode([b"\x90\x3c\x7f", b"\xe0\x7f\x7f", b"\xb0\x01\x00"])
        self.assertEqual([value.normalised for _, value in events], [1.0, 1.0, 0.0])

    def test_non_channel_messages_are_no_events(self) -> None:
        self.assertEqual(
            decode(self.decoder, "f0 b0 07 7f f7", "f8", "f1 10", "f2 00 01", "f6", "90 3c"), []
        )

    def test_rpn_14_bit(self) -> None:
        events = decode(self.decoder, "b0 65 00", "b0 64 01", "b0 06 40", "b0 26 01")
        self.assertEqual(
            events,
            [
                ("ch0.cc101", 0, 7),
                ("ch0.cc100", 1, 7),
                ("ch0.cc6", 64, 7),
                ("ch0.rpn1", 64 << 7 | 1, 14),
                ("ch0.cc38", 1, 7),
            ],
        )

    def test_nrpn_coarse_only_and_fine_later(self) -> None:
        self.assertEqual(
            decode(self.decoder, "b3 63 07", "b3 62 04", "b3 06 10")[-1],
            ("ch3.nrpn900", 0x10 << 7, 14),
        )
        # The fine part in a later batch completes the value: a second event.
        self.assertEqual(decode(self.decoder, "b3 26 05")[-1], ("ch3.nrpn900", 0x10 << 7 | 5, 14))
        # Fine updates alone keep working while the parameter stays selected.
        self.assertEqual(decode(self.decoder, "b3 26 06")[-1], ("ch3.nrpn900", 0x10 << 7 | 6, 14))

    def test_rpn_null_deselects(self) -> None:
        decode(self.decoder, "b0 65 00", "b0 64 00", "b0 65 7f", "b0 64 7f")
        self.assertEqual(
            decode(self.decoder, "b0 06 10", "b0 26 00"),
            [
                ("ch0.cc6", 16, 7),
                ("ch0.cc38", 0, 7),
            ],
        )

    def test_switching_rpn_nrpn_clears_selection(self) -> None:
        decode(self.decoder, "b0 65 00", "b0 64 02")
        # Only half an NRPN number: nothing selected.
        self.assertEqual(
            decode(self.decoder, "b0 62 05", "b0 06 01"),
            [
                ("ch0.cc98", 5, 7),
                ("ch0.cc6", 1, 7),
            ],
        )

    def test_value_without_selection_or_coarse(self) -> None:
        self.assertEqual(len(decode(self.decoder, "b0 26 01")), 1)
        decode(self.decoder, "b0 65 00", "b0 64 00")
        # The selection dropped any coarse value, so a fine value alone means nothing.
        self.assertEqual(decode(self.decoder, "b0 26 01"), [("ch0.cc38", 1, 7)])

    def test_state_is_per_midi_channel(self) -> None:
        decode(self.decoder, "b0 65 00", "b0 64 00", "b1 63 00", "b1 62 01")
        self.assertEqual(
            [e for e in decode(self.decoder, "b1 06 02", "b0 06 03") if "rpn" in e[0]],
            [("ch1.nrpn1", 2 << 7, 14), ("ch0.rpn0", 3 << 7, 14)],
        )

    @given(st.lists(message_strategy(), max_size=40))
    @settings(max_examples=300)
    def test_fuzz_never_raises(self, messages: list[bytes]) -> None:
        for _channel, value in self.decoder.decode(messages):
            self.assertTrue(0.0 <= value.normalised <= 1.0)
            self.assertIn(value.bits, (7, 14))


KINDS = ["note60", "cc7", "pressure9", "aftertouch", "pitch", "program", "rpn300", "nrpn16000"]


class EncoderTests(SynchronousTestCase):
    def encode(self, spec: str, value: Value, epn_tx: str = "full") -> list[str]:
        return [m.hex(" ") for m in MidiEventEncoder(epn_tx).encode(ch(spec), value)]

    def test_golden(self) -> None:
        full = Value.from_raw(127, 7)
        self.assertEqual(self.encode("ch0.note60", full), ["90 3c 7f"])
        self.assertEqual(self.encode("ch1.note60", Value.from_raw(0, 7)), ["91 3c 00"])
        self.assertEqual(self.encode("ch2.cc7", Value.from_raw(100, 7)), ["b2 07 64"])
        self.assertEqual(self.encode("ch3.pressure9", Value.from_raw(5, 7)), ["a3 09 05"])
        self.assertEqual(self.encode("ch4.aftertouch", Value.from_raw(6, 7)), ["d4 06"])
        self.assertEqual(self.encode("ch5.program", Value.from_raw(7, 7)), ["c5 07"])
        self.assertEqual(self.encode("ch6.pitch", Value.from_raw(8192, 14)), ["e6 00 40"])
        self.assertEqual(self.encode("ch6.pitch", Value.from_raw(1, 7)), ["e6 01 01"])
        self.assertEqual(
            self.encode("ch0.nrpn900", Value.from_raw(0x2001, 14)),
            ["b0 63 07", "b0 62 04", "b0 06 40", "b0 26 01", "b0 65 7f", "b0 64 7f"],
        )
        self.assertEqual(
            self.encode("ch15.rpn1", Value.from_raw(0x2001, 14), "short"),
            ["bf 65 00", "bf 64 01", "bf 06 40", "bf 26 01"],
        )

    def test_scaling(self) -> None:
        self.assertEqual(self.encode("ch0.cc1", Value.from_normalised(1.0)), ["b0 01 7f"])
        self.assertEqual(self.encode("ch0.cc1", Value.from_normalised(0.5)), ["b0 01 40"])
        self.assertEqual(self.encode("ch0.pitch", Value.from_normalised(1.0)), ["e0 7f 7f"])
        self.assertEqual(self.encode("ch0.cc1", Value.from_raw(16383, 14)), ["b0 01 7f"])

    def test_epn_tx_checked(self) -> None:
        with self.assertRaises(OptionError):
            MidiEventEncoder("long")

    @given(
        st.lists(
            st.tuples(st.sampled_from(KINDS), st.integers(0, 15), st.floats(0.0, 1.0)),
            max_size=12,
        ),
        st.sampled_from(["full", "short"]),
    )
    @settings(max_examples=200)
    def test_batch_is_events_in_order(
        self, events: list[tuple[str, int, float]], epn_tx: str
    ) -> None:
        """encode_batch (the send path, with its cached prefixes) equals encode per event."""
        encoder = MidiEventEncoder(epn_tx)
        batch = []
        for kind, channel, normalised in events:
            key = ch(f"ch{channel}.{kind}")
            batch.append((key, Value.from_normalised(normalised, key.bits)))
        expected = [message for key, value in batch for message in encoder.encode(key, value)]
        self.assertEqual(encoder.encode_batch(batch), expected)
        self.assertEqual(encoder.encode_batch(batch), expected)  # the prefixes cached now

    def test_batch_golden(self) -> None:
        batch = [
            (ch("ch0.note60"), Value.from_raw(127, 7)),
            (ch("ch9.pitch"), Value.from_raw(8192, 14)),
            (ch("ch2.cc7"), Value.from_raw(16383, 14)),
            (ch("ch3.pressure9"), Value.from_raw(5, 7)),
        ]
        for _ in range(2):  # building the prefixes, then from the cache
            messages = MidiEventEncoder().encode_batch(batch)
            self.assertEqual(
                [m.hex(" ") for m in messages], ["90 3c 7f", "e9 00 40", "b2 07 7f", "a3 09 05"]
            )

    @given(
        st.sampled_from(KINDS),
        st.integers(0, 15),
        st.floats(0.0, 1.0),
        st.sampled_from(["full", "short"]),
    )
    @settings(max_examples=300)
    def test_round_trip(self, kind: str, channel: int, normalised: float, epn_tx: str) -> None:
        key = ch(f"ch{channel}.{kind}")
        value = Value.from_normalised(normalised, key.bits)
        messages = MidiEventEncoder(epn_tx).encode(key, value)
        stream = b"".join(messages)
        parsed = MidiStreamParser().feed(stream)
        self.assertEqual(parsed, messages)
        events = dict(MidiEventDecoder().decode(parsed))
        self.assertEqual((events[key].raw, events[key].bits), (value.raw, value.bits))
