"""AppleMIDI session commands (IN/OK/NO/BY, CK, RS, RL): bytes in, commands out.

Every AppleMIDI packet starts with ``FF FF`` and a two-letter ASCII command; RTP packets never
do (their first byte is ``0x80``), so one check tells the two apart on a shared port. All
integers are big-endian. Names are UTF-8, NUL-terminated or (node-rtpmidi's BY) not, and kept
whole whatever their length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

SIGNATURE: Final = b"\xff\xff"
VERSION: Final = 2

INVITE: Final = b"IN"
ACCEPT: Final = b"OK"
REJECT: Final = b"NO"
BYE: Final = b"BY"
EXCHANGE_COMMANDS: Final = frozenset((INVITE, ACCEPT, REJECT, BYE))

_EXCHANGE = struct.Struct(">2s2sIII")
_SYNC = struct.Struct(">2s2sIB3xQQQ")
_WORD = struct.Struct(">2s2sII")
_U64 = (1 << 64) - 1


class AppleMidiError(ValueError):
    """A packet that is not a valid AppleMIDI command.

    The message says why, from a small fixed set (it keys the drop counters, so it never
    carries values from the packet).
    """


@dataclass(frozen=True, slots=True)
class Exchange:
    """IN, OK, NO or BY: the session handshake. ``name`` is None when the packet carries none."""

    command: bytes
    token: int
    ssrc: int
    name: str | None = None
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Sync:
    """CK: one step (count 0, 1 or 2) of the three-way clock exchange, 100 µs timestamps."""

    ssrc: int
    count: int
    timestamps: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Feedback:
    """RS: the receiver has the sender's packets up to a sequence number (raw 32-bit field).

    Apple and Windows put the 16-bit RTP sequence number in the upper half; rtpmidid puts it
    in the lower half, so the raw field is kept and :func:`feedback_candidates` reads both.
    """

    ssrc: int
    field: int

    @classmethod
    def for_sequence(cls, ssrc: int, sequence: int) -> Feedback:
        """RS in the Apple layout (sequence number in the upper 16 bits)."""
        return cls(ssrc, (sequence & 0xFFFF) << 16)


@dataclass(frozen=True, slots=True)
class BitrateLimit:
    """RL: the receiver asks for at most ``limit`` bits per second."""

    ssrc: int
    limit: int


Command = Exchange | Sync | Feedback | BitrateLimit


def is_applemidi(data: bytes) -> bool:
    """True for anything that claims to be an AppleMIDI command (RTP starts with 0x80)."""
    return data[:2] == SIGNATURE


def feedback_candidates(field: int) -> tuple[int, ...]:
    """The sequence numbers an RS field may mean: the upper half first, then the lower half."""
    high, low = field >> 16, field & 0xFFFF
    if low == 0:
        return (high,)
    if high == 0:
        return (low,)
    return (high, low)


def decode(data: bytes) -> Command:
    """Decode one AppleMIDI packet; raise :class:`AppleMidiError` saying what is wrong."""
    if len(data) < 4 or data[:2] != SIGNATURE:
        raise AppleMidiError("not an AppleMIDI packet")
    command = data[2:4]
    if command in EXCHANGE_COMMANDS:
        if len(data) < _EXCHANGE.size:
            raise AppleMidiError(f"truncated {command.decode()}")
        _, _, version, token, ssrc = _EXCHANGE.unpack_from(data)
        if version != VERSION:
            raise AppleMidiError(f"{command.decode()} with a protocol version other than 2")
        raw_name = data[_EXCHANGE.size :]
        name = raw_name.split(b"\0", 1)[0].decode("utf-8", "replace") if raw_name else None
        return Exchange(command, token, ssrc, name, version)
    if command == b"CK":
        if len(data) < _SYNC.size:
            raise AppleMidiError("truncated CK")
        _, _, ssrc, count, ts1, ts2, ts3 = _SYNC.unpack_from(data)
        if count > 2:
            raise AppleMidiError("CK with a count above 2")
        return Sync(ssrc, count, (ts1, ts2, ts3))
    if command in (b"RS", b"RL"):
        if len(data) < _WORD.size:
            raise AppleMidiError(f"truncated {command.decode()}")
        _, _, ssrc, word = _WORD.unpack_from(data)
        return Feedback(ssrc, word) if command == b"RS" else BitrateLimit(ssrc, word)
    raise AppleMidiError("unknown AppleMIDI command")


def encode(command: Command) -> bytes:
    """The wire form of a command (names NUL-terminated, BY without a name when it has none)."""
    if isinstance(command, Exchange):
        head = _EXCHANGE.pack(
            SIGNATURE, command.command, command.version, command.token, command.ssrc
        )
        if command.name is None:
            return head
        return head + command.name.encode("utf-8") + b"\0"
    if isinstance(command, Sync):
        ts1, ts2, ts3 = (t & _U64 for t in command.timestamps)
        return _SYNC.pack(SIGNATURE, b"CK", command.ssrc, command.count, ts1, ts2, ts3)
    if isinstance(command, Feedback):
        return _WORD.pack(SIGNATURE, b"RS", command.ssrc, command.field)
    return _WORD.pack(SIGNATURE, b"RL", command.ssrc, command.limit)
