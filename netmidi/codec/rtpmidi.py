"""RTP-MIDI packets (RFC 6295): the RTP header, the MIDI command section and journal framing.

The command section is ``B J Z P LEN`` (one octet, or two with B=1 and a 12-bit length), then
a list ``[delta] command (delta command)*`` where deltas are 1-4 octets, MSB first. Commands
may use running status; System Common and SysEx cancel it, System Realtime does not (and may sit
inside a SysEx). SysEx travels in segments (F0..F7 complete, F0..F0 first, F7..F0 middle,
F7..F7 last, ..F4 cancelled). A recovery journal may follow the list: its structure is checked
and its bytes handed on whole, so that a journal decoder can work on them and a packet with a
broken journal is still recognised as broken.

Decoded commands always carry their status byte, so later stages never see running status.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from netmidi.codec.midi import RunningStatusWriter

PAYLOAD_TYPE: Final = 97
MAX_SECTION: Final = 0xFFF
SYSEX_SEGMENT: Final = 256

_HEADER = struct.Struct(">BBHII")
_FLAG_B, _FLAG_J, _FLAG_Z, _FLAG_P = 0x80, 0x40, 0x20, 0x10

# Data bytes that follow each status byte 0x80-0xFF (SysEx and undefined statuses: 0).
_DATA_LENGTH: Final = bytes(
    ([2] * 0x40 + [1] * 0x20 + [2] * 0x10)  # 8x-Bx, Cx-Dx, Ex
    + [0, 1, 2, 1, 0, 0, 0, 0]  # F0 F1 F2 F3 F4 F5 F6 F7
    + [0] * 8  # realtime
)


_STATUS: Final = [bytes((status,)) for status in range(256)]


class RtpMidiError(ValueError):
    """A malformed RTP-MIDI packet; the message says why, never quoting packet values."""


class RtpHeader(NamedTuple):
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    payload_type: int


class Packet(NamedTuple):
    """One decoded packet: MIDI messages (status bytes explicit) and their delta times.

    ``sysex`` says whether any message is a SysEx segment (most packets carry none, so the
    receiver skips reassembly); ``journal`` holds the recovery journal (structure checked).
    """

    header: RtpHeader
    messages: list[bytes]
    deltas: list[int]
    journal: bytes | None
    sysex: bool = False


def data_length(status: int) -> int:
    """How many data bytes follow a status byte (0 for SysEx, realtime and undefined ones)."""
    return _DATA_LENGTH[status - 0x80]


def decode(data: bytes) -> Packet:
    """Decode an RTP-MIDI packet; raise :class:`RtpMidiError` for anything malformed."""
    size = len(data)
    if size < 13:
        raise RtpMidiError("truncated RTP packet")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise RtpMidiError("RTP version other than 2")
    offset = 12 + 4 * (first & 0x0F)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if size < offset + 4:
            raise RtpMidiError("truncated RTP header extension")
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    if first & 0x20:  # padding: the last octet counts the padding octets
        pad = data[-1]
        if pad == 0 or pad > size - offset:
            raise RtpMidiError("bad RTP padding")
        size -= pad
    header = RtpHeader(sequence, timestamp, ssrc, bool(second & 0x80), second & 0x7F)
    if offset >= size:
        raise RtpMidiError("RTP packet without a MIDI command section")
    flags = data[offset]
    if flags & _FLAG_B:
        if offset + 2 > size:
            raise RtpMidiError("truncated command section header")
        length = (flags & 0x0F) << 8 | data[offset + 1]
        start = offset + 2
    else:
        length = flags & 0x0F
        start = offset + 1
    end = start + length
    if end > size:
        raise RtpMidiError("command section longer than the packet")
    # Fast path: one complete channel message with status and no journal (the common packet).
    if length == 3 and not flags & (_FLAG_Z | _FLAG_J) and 0x80 <= data[start] < 0xF0:
        if _DATA_LENGTH[data[start] - 0x80] == 2 and (data[start + 1] | data[start + 2]) < 0x80:
            return Packet(header, [data[start:end]], [0], None)
    messages: list[bytes] = []
    deltas: list[int] = []
    sysex = bool(length) and _command_list(data, start, end, flags & _FLAG_Z, messages, deltas)
    journal = data[end : _journal_end(data, end, size)] if flags & _FLAG_J else None
    return Packet(header, messages, deltas, journal, sysex)


def _delta(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    for i in range(pos, min(pos + 4, end)):
        octet = data[i]
        value = value << 7 | (octet & 0x7F)
        if not octet & 0x80:
            return value, i + 1
    raise RtpMidiError("truncated or over-long delta time")


def _command_list(
    data: bytes, pos: int, end: int, first_delta: int, messages: list[bytes], deltas: list[int]
) -> bool:
    """Decode a command list into ``messages``/``deltas``; True if it held SysEx."""
    running = 0
    delta = 0
    sysex = False
    if first_delta:
        delta, pos = _delta(data, pos, end)
    while True:
        if pos >= end:
            raise RtpMidiError("delta time without a command")
        octet = data[pos]
        if octet >= 0xF8:
            messages.append(data[pos : pos + 1])
            deltas.append(delta)
            pos += 1
        elif octet == 0xF0 or octet == 0xF7:
            pos = _sysex_segment(data, pos, end, delta, messages, deltas)
            running = 0
            sysex = True
        else:
            if octet >= 0x80:
                status, head, pos = octet, pos, pos + 1
                running = status if octet < 0xF0 else 0
            elif running:
                status, head = running, -1
            else:
                raise RtpMidiError("running status without a previous status byte")
            count = _DATA_LENGTH[status - 0x80]
            stop = pos + count
            if stop > end:
                raise RtpMidiError("truncated MIDI command")
            if count and (data[pos] | data[stop - 1]) & 0x80:
                raise RtpMidiError("status byte inside a MIDI command's data")
            messages.append(data[head:stop] if head >= 0 else _STATUS[status] + data[pos:stop])
            deltas.append(delta)
            pos = stop
        if pos == end:
            return sysex
        octet = data[pos]
        if octet < 0x80:  # the usual one-octet delta, inline
            delta, pos = octet, pos + 1
        else:
            delta, pos = _delta(data, pos, end)


def _sysex_segment(
    data: bytes, pos: int, end: int, delta: int, messages: list[bytes], deltas: list[int]
) -> int:
    """Append one SysEx segment (realtime bytes inside it become their own messages)."""
    segment = bytearray(data[pos : pos + 1])
    for i in range(pos + 1, end):
        octet = data[i]
        if octet < 0x80:
            segment.append(octet)
        elif octet in (0xF0, 0xF7, 0xF4):
            segment.append(octet)
            messages.append(bytes(segment))
            deltas.append(delta)
            return i + 1
        elif octet >= 0xF8:
            messages.append(bytes((octet,)))
            deltas.append(delta)
        else:
            raise RtpMidiError("status byte inside a SysEx segment")
    raise RtpMidiError("SysEx segment without an end byte")


def _journal_end(data: bytes, pos: int, size: int) -> int:
    """Walk the recovery journal's structure (RFC 6295 §5); return where it ends.

    The system journal (Y) and each of the TOTCHAN + 1 channel journals (A) start with a
    10-bit length that counts their own 2- or 3-byte header.
    """
    if pos + 3 > size:
        raise RtpMidiError("truncated recovery journal header")
    flags = data[pos]
    pos += 3
    parts = [_SYSTEM_JOURNAL] if flags & 0x40 else []
    if flags & 0x20:
        parts += [_CHANNEL_JOURNAL] * ((flags & 0x0F) + 1)
    for header, truncated, bad in parts:
        if pos + header > size:
            raise RtpMidiError(truncated)
        length = (data[pos] & 0x03) << 8 | data[pos + 1]
        if length < header or pos + length > size:
            raise RtpMidiError(bad)
        pos += length
    return pos


_SYSTEM_JOURNAL = (2, "truncated system journal header", "bad system journal length")
_CHANNEL_JOURNAL = (3, "truncated channel journal header", "bad channel journal length")


def encode_header(
    sequence: int, timestamp: int, ssrc: int, marker: bool = False, payload_type: int = 97
) -> bytes:
    """The 12-byte RTP header (V=2, no padding, extension or CSRCs)."""
    second = payload_type | (0x80 if marker else 0)
    return _HEADER.pack(0x80, second, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)


def encode_section(messages: Sequence[bytes], journal: bool = False) -> bytes:
    """A command section: messages with delta 0 between them, running status applied.

    The messages are complete (status byte first); the caller keeps the list under
    :data:`MAX_SECTION` bytes (see :func:`pack_sections`).
    """
    if len(messages) == 1:
        return section_header(len(messages[0]), journal) + messages[0]
    write = RunningStatusWriter().write
    # a one-octet delta time of 0 between commands
    body = b"\0".join([write(message) for message in messages])
    return section_header(len(body), journal) + body


def section_header(length: int, journal: bool) -> bytes:
    """The one- or two-octet command section header for ``length`` bytes of list (Z=P=0)."""
    j = _FLAG_J if journal else 0
    if length <= 0x0F:
        return bytes((j | length,))
    if length > MAX_SECTION:
        raise ValueError(f"command list of {length} bytes exceeds {MAX_SECTION}")
    return bytes((_FLAG_B | j | length >> 8, length & 0xFF))


def pack_sections(messages: Sequence[bytes], limit: int) -> Iterator[list[bytes]]:
    """Group messages into lists whose encoded size stays within ``limit`` bytes.

    Counts each message at full length plus one delta octet, so running status only ever makes
    a list shorter than estimated. A message longer than the limit goes alone.
    """
    limit = min(limit, MAX_SECTION)
    group: list[bytes] = []
    used = 0
    for message in messages:
        cost = len(message) + (1 if group else 0)
        if group and used + cost > limit:
            yield group
            group, used, cost = [], 0, len(message)
        group.append(message)
        used += cost
    if group:
        yield group


def segment_sysex(message: bytes, size: int = SYSEX_SEGMENT) -> list[bytes]:
    """Cut a complete ``F0 .. F7`` SysEx into segments of at most ``size`` bytes.

    Segments are F0..F0 (first), F7..F0 (middle), F7..F7 (last), as Windows rtpMIDI and
    rtpmidid cut them; a message that fits stays whole.
    """
    if len(message) <= size:
        return [message]
    payload = message[1:-1]
    chunk = size - 2
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
    last = len(pieces) - 1
    return [
        (b"\xf0" if i == 0 else b"\xf7") + piece + (b"\xf7" if i == last else b"\xf0")
        for i, piece in enumerate(pieces)
    ]


@dataclass
class SysexAssembler:
    """Rebuilds a SysEx message from segments, discarding one that grows past ``limit`` bytes."""

    limit: int = 65536
    _parts: bytearray | None = None
    _discarding: bool = False

    def feed(self, segment: bytes) -> tuple[bytes | None, str | None]:
        """Take one segment: (the complete ``F0 .. F7`` message if it ended, a problem or None).

        A problem names what was dropped: an unfinished message cut off by a new start, a
        continuation without a start, or a message over the limit (its later segments are then
        discarded quietly up to its end).
        """
        first, last = segment[0], segment[-1]
        problem = None
        if last == 0xF4:
            self._parts, self._discarding = None, False
            return None, None
        if first == 0xF0:
            if self._parts is not None:
                problem = "SysEx start before the previous SysEx ended"
            self._parts, self._discarding = bytearray(segment[:-1]), False
        elif self._parts is None:
            if self._discarding:
                self._discarding = last != 0xF7
                return None, None
            return None, "SysEx continuation without a start"
        else:
            self._parts += segment[1:-1]
        if len(self._parts) > self.limit:
            self._parts, self._discarding = None, last != 0xF7
            return None, f"SysEx longer than {self.limit} bytes"
        if last == 0xF7:
            message = bytes(self._parts) + b"\xf7"
            self._parts = None
            return message, problem
        return None, problem
