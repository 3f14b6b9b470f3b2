"""The MIDI 1.0 byte stream and its channel events, shared by the ``midi`` and ``rtpmidi`` backends.

Pure and sans-IO: bytes in, messages and values out. Channel specs follow MIDIMonster's syntax so
show files carry over: ``ch0.note60``, ``channel15.cc7``, ``ch1.pressure60`` (polyphonic key
pressure), ``ch1.aftertouch`` (channel pressure), ``ch1.pitch``, ``ch2.program``, ``ch0.rpn1``,
``ch0.nrpn900``; MIDI channels 0-15.

API summary (stable; other modules build on these names):

- :class:`MidiChannel` -- frozen, hashable channel key; ``str()`` gives the spec back.
  :func:`parse_midi_channel` turns a spec into one, raising :class:`~netmidi.options.OptionError`.
- A message is ``bytes``: one complete MIDI message with its status byte (``90 3c 7f``, a SysEx
  ``f0 ... f7``, a realtime ``f8``). :func:`message_length` gives the length a status byte
  implies (0 for SysEx, whose length is open).
- :class:`MidiStreamParser` -- ``feed(data) -> list[bytes]``: splits a byte stream into messages,
  with running status, system common, realtime interleaved anywhere (even inside a SysEx or a
  half-received message), and SysEx reassembly capped at ``max_sysex`` bytes. Malformed input is
  dropped and reported through ``on_drop(reason)``; it never raises.
- :class:`RunningStatusWriter` -- ``write(message) -> bytes``: the message with its status byte
  left out when running status allows it (realtime keeps it, system common and SysEx cancel it).
- :class:`MidiEventDecoder` -- ``decode(messages) -> list[(MidiChannel, Value)]``: the channel
  events of a batch of messages from one source (one decoder per source, it keeps the (N)RPN
  state). SysEx, system common and realtime messages are never channel events.
- :class:`MidiEventEncoder` -- ``MidiEventEncoder(epn_tx).encode(channel, value) -> list[bytes]``:
  the messages that set a channel to a value.

Values carry their wire resolution: 7 bits for notes, CCs, pressure and program, 14 bits for
pitch bend and (N)RPN. A note off, or a note on with velocity 0, is the value 0.

(N)RPN input: CC 101/100 (RPN) or 99/98 (NRPN) select a parameter, CC 6 sets the value's upper 7
bits (the lower 7 become 0, as the MIDI specification says) and CC 38 the lower 7 bits; both emit
the 14-bit value, and a CC 6 directly followed by its CC 38 in the same batch gives one event, not
two. RPN 127/127 deselects the parameter. The CCs themselves are still reported as CC events.
(N)RPN output: parameter number, CC 6 and CC 38, and with ``epn_tx="full"`` RPN 127/127 after it so
a later stray CC 6 cannot change the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import NamedTuple

from netmidi.options import OptionError
from netmidi.values import Value


class MidiKind(StrEnum):
    """What a channel addresses inside one MIDI channel; the value is the spec keyword."""

    NOTE = "note"
    CC = "cc"
    PRESSURE = "pressure"
    AFTERTOUCH = "aftertouch"
    PITCH = "pitch"
    PROGRAM = "program"
    RPN = "rpn"
    NRPN = "nrpn"


_INDEX_LIMIT = {
    MidiKind.NOTE: 127,
    MidiKind.CC: 127,
    MidiKind.PRESSURE: 127,
    MidiKind.RPN: 16383,
    MidiKind.NRPN: 16383,
}
"""The kinds that take a number after the keyword, with its largest value."""


class MidiChannel(NamedTuple):
    """One mappable MIDI control: a MIDI channel (0-15), a kind, and an index (0 if none).

    A named tuple rather than a frozen dataclass: the router looks every event's channel up in a
    dict, and a tuple hashes and compares in C (about 0.12 µs against 0.65 µs a lookup).
    """

    channel: int
    kind: MidiKind
    index: int = 0  # type: ignore[assignment]  # shadows tuple.index, which keys never use

    def __str__(self) -> str:
        if self.kind in _INDEX_LIMIT:
            return f"ch{self.channel}.{self.kind.value}{self.index}"
        return f"ch{self.channel}.{self.kind.value}"

    @property
    def bits(self) -> int:
        """The resolution of this control on the wire."""
        return 14 if self.kind in _WIDE else 7


_WIDE = frozenset({MidiKind.PITCH, MidiKind.RPN, MidiKind.NRPN})
_SPEC = re.compile(r"(?:channel|ch)(\d+)\.([a-z]+)(\d*)", re.IGNORECASE)
_EXPECTED = (
    "expected chN.TYPE or channelN.TYPE with N 0-15 and TYPE one of note0-127, cc0-127, "
    "pressure0-127, aftertouch, pitch, program, rpn0-16383, nrpn0-16383"
)


def parse_midi_channel(spec: str) -> MidiChannel:
    """Parse a MIDIMonster channel spec such as ``ch0.note60`` or ``channel1.pitch``."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise OptionError(f"got {spec!r}, {_EXPECTED}")
    number, keyword, index_text = match.groups()
    channel = int(number)
    if channel > 15:
        raise OptionError(f"got MIDI channel {channel} in {spec!r}, expected a channel 0-15")
    try:
        kind = MidiKind(keyword.lower())
    except ValueError:
        raise OptionError(f"got {spec!r}, {_EXPECTED}") from None
    limit = _INDEX_LIMIT.get(kind)
    if limit is None:
        if index_text:
            raise OptionError(
                f"got {spec!r}, expected ch{channel}.{kind.value} without a number "
                "(it covers the whole MIDI channel)"
            )
        return MidiChannel(channel, kind)
    if not index_text:
        raise OptionError(f"got {spec!r}, expected a number 0-{limit} after {kind.value!r}")
    index = int(index_text)
    if index > limit:
        raise OptionError(f"got {kind.value} {index} in {spec!r}, expected 0-{limit}")
    return MidiChannel(channel, kind, index)


# --- the byte stream -----------------------------------------------------------------------------

NOTE_OFF = 0x80
NOTE_ON = 0x90
POLY_PRESSURE = 0xA0
CONTROL_CHANGE = 0xB0
PROGRAM_CHANGE = 0xC0
CHANNEL_PRESSURE = 0xD0
PITCH_BEND = 0xE0
SYSEX_START = 0xF0
SYSEX_END = 0xF7

_LENGTHS = [0] * 256
for _status in range(0x80, 0xF0):
    _LENGTHS[_status] = 2 if _status & 0xF0 in (PROGRAM_CHANGE, CHANNEL_PRESSURE) else 3
_LENGTHS[0xF1] = 2  # MIDI time code quarter frame
_LENGTHS[0xF2] = 3  # song position pointer
_LENGTHS[0xF3] = 2  # song select
_LENGTHS[0xF6] = 1  # tune request
for _status in (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF):
    _LENGTHS[_status] = 1  # clock, start, continue, stop, active sensing, reset
_UNDEFINED = frozenset({0xF4, 0xF5, 0xF9, 0xFD})
_SINGLE = [bytes((status,)) for status in range(256)]


def message_length(status: int) -> int:
    """The length of a message with this status byte; 0 for SysEx, undefined or data bytes."""
    return _LENGTHS[status]


def is_realtime(status: int) -> bool:
    """System realtime messages may appear anywhere, even inside another message."""
    return status >= 0xF8


Drop = Callable[[str], None]


def _ignore(reason: str) -> None:
    """The default drop report: nothing (callers that care pass their own)."""


class MidiStreamParser:
    """Splits a MIDI byte stream, fed in pieces of any size, into complete messages."""

    __slots__ = ("_need", "_on_drop", "_overflow", "_pending", "_running", "_sysex", "max_sysex")

    def __init__(self, max_sysex: int = 65536, on_drop: Drop = _ignore) -> None:
        self.max_sysex = max_sysex
        self._on_drop = on_drop
        self._running = 0  # the channel status byte that running status repeats, or 0
        self._pending = bytearray()  # a channel or system common message being received
        self._need = 0
        self._sysex: bytearray | None = None
        self._overflow = False

    def feed(self, data: bytes | bytearray | Sequence[int]) -> list[bytes]:
        """Parse more bytes; return the messages completed by them, in stream order."""
        size = len(data)
        if size and not self._pending and self._sysex is None:
            status = data[0]
            # Fast path: one whole channel message, as MIDI APIs deliver them.
            if 0x80 <= status < 0xF0 and size == _LENGTHS[status] and max(data[1:]) < 0x80:
                self._running = status
                return [bytes(data)]
        out: list[bytes] = []
        for byte in data:
            if byte >= 0xF8:
                if byte in _UNDEFINED:
                    self._on_drop(f"undefined status byte 0x{byte:02X}")
                else:
                    out.append(_SINGLE[byte])
            elif self._sysex is not None:
                self._sysex_byte(byte, out)
            elif byte >= 0x80:
                self._status_byte(byte, out)
            elif self._pending:
                self._pending.append(byte)
                if len(self._pending) == self._need:
                    out.append(bytes(self._pending))
                    self._pending.clear()
            elif self._running:
                self._need = _LENGTHS[self._running]
                self._pending.append(self._running)
                self._pending.append(byte)
                if self._need == 2:
                    out.append(bytes(self._pending))
                    self._pending.clear()
            else:
                self._on_drop("data byte without a status byte")
        return out

    def reset(self) -> None:
        """Forget running status and drop any partial message.

        For a reconnect, and after each unit of input whose messages are known to be whole (a
        MIDI API's callback), so a truncated message is dropped rather than completed by the next.
        """
        if self._pending or self._sysex is not None:
            self._on_drop("incomplete message")
        self._running = 0
        self._pending.clear()
        self._sysex = None
        self._overflow = False

    def _status_byte(self, byte: int, out: list[bytes]) -> None:
        if self._pending:
            self._on_drop(f"incomplete message 0x{self._pending[0]:02X} cut by a status byte")
            self._pending.clear()
        if byte < 0xF0:
            self._running = byte
            self._need = _LENGTHS[byte]
            self._pending.append(byte)
            return
        # System common messages and SysEx cancel running status.
        self._running = 0
        if byte == SYSEX_START:
            self._sysex = bytearray(b"\xf0")
            self._overflow = False
        elif byte == SYSEX_END:
            self._on_drop("end of SysEx without a start")
        elif byte in _UNDEFINED:
            self._on_drop(f"undefined status byte 0x{byte:02X}")
        elif _LENGTHS[byte] == 1:
            out.append(_SINGLE[byte])
        else:
            self._need = _LENGTHS[byte]
            self._pending.append(byte)

    def _sysex_byte(self, byte: int, out: list[bytes]) -> None:
        sysex = self._sysex
        assert sysex is not None
        if byte < 0x80:
            if len(sysex) < self.max_sysex - 1:
                sysex.append(byte)
            elif not self._overflow:
                self._overflow = True
                self._on_drop(f"SysEx longer than {self.max_sysex} bytes")
            return
        # F7 ends a SysEx; any other status byte ends it too (MIDI 1.0) and then counts itself.
        self._sysex = None
        if not self._overflow:
            sysex.append(SYSEX_END)
            out.append(bytes(sysex))
        if byte != SYSEX_END:
            self._status_byte(byte, out)


class RunningStatusWriter:
    """Leaves out repeated channel status bytes when writing a stream of messages."""

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running = 0

    def write(self, message: bytes) -> bytes:
        """The bytes to send for ``message``, without its status if running status covers it."""
        status = message[0]
        if status < 0xF0:
            if status == self._running:
                return message[1:]
            self._running = status
        elif status < 0xF8:
            self._running = 0
        return message

    def reset(self) -> None:
        """The next channel message carries its status (e.g. at the start of a packet)."""
        self._running = 0


# --- channel events ------------------------------------------------------------------------------

MidiEvent = tuple[MidiChannel, Value]

_VALUES7 = [Value.from_raw(raw, 7) for raw in range(128)]
_ZERO7 = _VALUES7[0]
_KEYS: dict[tuple[MidiKind, int, int], MidiChannel] = {
    (kind, channel, index): MidiChannel(channel, kind, index)
    for kind in (MidiKind.NOTE, MidiKind.CC, MidiKind.PRESSURE)
    for channel in range(16)
    for index in range(128)
}
_KEYS.update(
    {
        (kind, channel, 0): MidiChannel(channel, kind)
        for kind in (MidiKind.AFTERTOUCH, MidiKind.PITCH, MidiKind.PROGRAM)
        for channel in range(16)
    }
)
"""Channel keys built once, so decoding a message does not build a new key."""

_RPN_MSB, _RPN_LSB, _NRPN_MSB, _NRPN_LSB = 101, 100, 99, 98
_DATA_MSB, _DATA_LSB = 6, 38
_EPN_CONTROLS = frozenset({_RPN_MSB, _RPN_LSB, _NRPN_MSB, _NRPN_LSB, _DATA_MSB, _DATA_LSB})


class _EpnState:
    """The (N)RPN selection of one MIDI channel of one source."""

    __slots__ = ("kind", "lsb", "msb", "value_msb")

    def __init__(self) -> None:
        self.kind: MidiKind | None = None
        self.msb = -1
        self.lsb = -1
        self.value_msb = -1

    def select(self, kind: MidiKind, control: int, value: int) -> None:
        if kind is not self.kind:
            self.kind, self.msb, self.lsb = kind, -1, -1
        if control in (_RPN_MSB, _NRPN_MSB):
            self.msb = value
        else:
            self.lsb = value
        self.value_msb = -1

    def parameter(self, channel: int) -> MidiChannel | None:
        """The channel key of the selected parameter, if one is selected."""
        if self.kind is None or self.msb < 0 or self.lsb < 0:
            return None
        if self.kind is MidiKind.RPN and self.msb == 127 and self.lsb == 127:
            return None  # the RPN null parameter: nothing selected
        return MidiChannel(channel, self.kind, self.msb << 7 | self.lsb)


class MidiEventDecoder:
    """Turns the messages of one source into channel events, keeping its (N)RPN state."""

    __slots__ = ("_epn",)

    def __init__(self) -> None:
        self._epn = [_EpnState() for _ in range(16)]

    def decode(self, messages: Iterable[bytes]) -> list[MidiEvent]:
        """The channel events of a batch of complete messages (non-channel ones are skipped)."""
        events: list[MidiEvent] = []
        msb_only: dict[int, int] = {}  # MIDI channel -> index in events of a CC 6-only value
        for message in messages:
            status = message[0]
            if status >= 0xF0 or len(message) != _LENGTHS[status]:
                continue
            kind = status & 0xF0
            channel = status & 0x0F
            if kind == NOTE_ON:
                events.append((_KEYS[MidiKind.NOTE, channel, message[1]], _VALUES7[message[2]]))
            elif kind == CONTROL_CHANGE:
                control, raw = message[1], message[2]
                events.append((_KEYS[MidiKind.CC, channel, control], _VALUES7[raw]))
                if control in _EPN_CONTROLS:
                    self._epn_control(channel, control, raw, events, msb_only)
            elif kind == NOTE_OFF:
                events.append((_KEYS[MidiKind.NOTE, channel, message[1]], _ZERO7))
            elif kind == PITCH_BEND:
                raw = message[2] << 7 | message[1]
                events.append((_KEYS[MidiKind.PITCH, channel, 0], Value.from_raw(raw, 14)))
            elif kind == POLY_PRESSURE:
                events.append((_KEYS[MidiKind.PRESSURE, channel, message[1]], _VALUES7[message[2]]))
            elif kind == CHANNEL_PRESSURE:
                events.append((_KEYS[MidiKind.AFTERTOUCH, channel, 0], _VALUES7[message[1]]))
            else:
                events.append((_KEYS[MidiKind.PROGRAM, channel, 0], _VALUES7[message[1]]))
        return events

    def _epn_control(
        self,
        channel: int,
        control: int,
        raw: int,
        events: list[MidiEvent],
        msb_only: dict[int, int],
    ) -> None:
        state = self._epn[channel]
        if control == _DATA_MSB or control == _DATA_LSB:
            key = state.parameter(channel)
            if key is None:
                return
            if control == _DATA_MSB:
                state.value_msb = raw
                msb_only[channel] = len(events)
                events.append((key, Value.from_raw(raw << 7, 14)))
                return
            if state.value_msb < 0:
                return  # a fine value without its coarse part: nothing to complete
            event = (key, Value.from_raw(state.value_msb << 7 | raw, 14))
            at = msb_only.pop(channel, None)
            if at is not None and events[at][0] == key:
                events[at] = event  # CC 6 and CC 38 of one update: report it once
            else:
                events.append(event)
            return
        msb_only.pop(channel, None)
        kind = MidiKind.RPN if control in (_RPN_MSB, _RPN_LSB) else MidiKind.NRPN
        state.select(kind, control, raw)


EPN_TX = ("full", "short")
_PREFIXED = {MidiKind.NOTE: NOTE_ON, MidiKind.CC: CONTROL_CHANGE, MidiKind.PRESSURE: POLY_PRESSURE}
_PREFIXES: dict[MidiChannel, bytes] = {}
"""Status and index octets of the channels of :data:`_PREFIXED` kinds met so far (at most 6144)."""
_OCTETS = [bytes((octet,)) for octet in range(128)]


class MidiEventEncoder:
    """Turns (channel, value) into MIDI messages; ``epn_tx`` as MIDIMonster's option."""

    __slots__ = ("_full",)

    def __init__(self, epn_tx: str = "full") -> None:
        if epn_tx not in EPN_TX:
            raise OptionError(f"got {epn_tx!r}, expected one of: {', '.join(EPN_TX)}")
        self._full = epn_tx == "full"

    def encode(self, channel: MidiChannel, value: Value) -> list[bytes]:
        """The messages that set ``channel`` to ``value`` (a value 0 on a note is a note off)."""
        return self.encode_batch(((channel, value),))

    def encode_batch(self, events: Iterable[MidiEvent]) -> list[bytes]:
        """The messages of a batch of events, in order (one call per batch on the send path).

        Notes, controllers and poly pressure, the common events, are a cached two-octet prefix
        and the value octet.
        """
        out: list[bytes] = []
        prefixes = _PREFIXES
        for channel, value in events:
            prefix = prefixes.get(channel)
            if prefix is None:
                out += self._encode(channel, value)
            else:
                out.append(prefix + _OCTETS[value.scaled(7)])
        return out

    def _encode(self, channel: MidiChannel, value: Value) -> list[bytes]:
        kind = channel.kind
        ch = channel.channel
        status = _PREFIXED.get(kind)
        if status is not None:
            # Note on with velocity 0 means note off and keeps running status going.
            prefix = _PREFIXES[channel] = bytes((status | ch, channel.index))
            return [prefix + _OCTETS[value.scaled(7)]]
        if kind is MidiKind.PITCH:
            raw = value.scaled(14)
            return [bytes((PITCH_BEND | ch, raw & 0x7F, raw >> 7))]
        if kind is MidiKind.AFTERTOUCH:
            return [bytes((CHANNEL_PRESSURE | ch, value.scaled(7)))]
        if kind is MidiKind.PROGRAM:
            return [bytes((PROGRAM_CHANGE | ch, value.scaled(7)))]
        status = CONTROL_CHANGE | ch
        msb, lsb = (_RPN_MSB, _RPN_LSB) if kind is MidiKind.RPN else (_NRPN_MSB, _NRPN_LSB)
        raw = value.scaled(14)
        messages = [
            bytes((status, msb, channel.index >> 7)),
            bytes((status, lsb, channel.index & 0x7F)),
            bytes((status, _DATA_MSB, raw >> 7)),
            bytes((status, _DATA_LSB, raw & 0x7F)),
        ]
        if self._full:
            messages.append(bytes((status, _RPN_MSB, 127)))
            messages.append(bytes((status, _RPN_LSB, 127)))
        return messages
