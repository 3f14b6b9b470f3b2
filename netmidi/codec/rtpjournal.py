"""The RTP-MIDI recovery journal (RFC 6295 sections 4-5 and appendix A), sans-IO.

Three parts, all pure:

* the wire format: :func:`decode_journal` / :func:`encode_journal` and one frozen dataclass per
  chapter (channel chapters P, C, M, W, N, E, T, A; the system journal is kept as raw bytes, since
  netmidi routes channel messages only);
* :class:`JournalSender`: the sender's history of what went out in which packet; it builds the
  journal for every packet, trimmed to the checkpoint that receivers confirm with RS and bounded in
  packets and bytes;
* :class:`JournalReceiver`: detects lost packets from the RTP sequence numbers and turns the next
  packet's journal into the MIDI messages that repair the receiver's state (missed note-offs, the
  latest controller, program, pitch and pressure values), without repeating what already arrived.

MIDI messages cross this module as complete ``bytes`` (status byte included), the form the
RTP-MIDI command section and the MIDI codec share. Only channel voice messages are journalled.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SEQ_MOD = 1 << 16

# Chapter table-of-contents bits of a channel journal, in the order the chapters appear.
TOC_P, TOC_C, TOC_M, TOC_W, TOC_N, TOC_E, TOC_T, TOC_A = (0x80 >> i for i in range(8))

# Controllers that belong to the (N)RPN parameter system (chapter M), not to chapter C.
PARAMETER_CONTROLLERS = frozenset({6, 38, 96, 97, 98, 99, 100, 101})
# Channel mode controllers after which no note sounds (All Sound Off, All Notes Off, Omni, Mono,
# Poly): the journal reports the notes as off.
NOTES_OFF_CONTROLLERS = frozenset({120, 123, 124, 125, 126, 127})
NULL_PARAMETER = 0x3FFF  # 127/127 deselects the parameter
# Controllers with an effect beyond their own value: bank select, channel mode.
_SIDE_EFFECT_CONTROLLERS = NOTES_OFF_CONTROLLERS | {0, 32}
# Clears bit 7 of every octet: turns chapter C logs (S=1) into their S=0 form at C speed.
_CLEAR_S = bytes(range(128)) * 2


class JournalError(ValueError):
    """A journal that does not parse: the message says what is wrong."""


# ------------------------------------------------------------------------------------------------
# The wire format


@dataclass(frozen=True, slots=True)
class ProgramChapter:
    """Chapter P: the latest Program Change and the bank selected before it."""

    program: int
    bank_msb: int | None = None
    bank_lsb: int | None = None
    reset: bool = False  # X: a Reset All Controllers came between the bank and the program
    s: bool = True


@dataclass(frozen=True, slots=True)
class ControllerLog:
    """One log of chapter C; ``value`` is None for the toggle and count tools (A=1)."""

    number: int
    value: int | None
    alt: int = 0  # the raw second octet for the toggle/count tools
    s: bool = True


@dataclass(frozen=True, slots=True)
class ControllerChapter:
    """Chapter C: the latest value of each controller touched since the checkpoint."""

    logs: tuple[ControllerLog, ...]
    s: bool = True


@dataclass(frozen=True, slots=True)
class ParameterLog:
    """One log of chapter M: the Data Entry value of one RPN (``nrpn`` False) or NRPN."""

    nrpn: bool
    number: int
    entry_msb: int | None = None
    entry_lsb: int | None = None
    s: bool = True


@dataclass(frozen=True, slots=True)
class ParameterChapter:
    """Chapter M: parameter logs; ``selected`` (E) means the last log's parameter is selected.

    ``pending`` is a parameter-number MSB sent without its LSB yet: (nrpn, msb).
    """

    logs: tuple[ParameterLog, ...]
    pending: tuple[bool, int] | None = None
    selected: bool = False
    s: bool = True


@dataclass(frozen=True, slots=True)
class NoteLog:
    """A note whose latest command since the checkpoint is a NoteOn."""

    note: int
    velocity: int
    play: bool = True  # Y: the sender recommends playing the recovered NoteOn
    s: bool = True


@dataclass(frozen=True, slots=True)
class NoteChapter:
    """Chapter N: NoteOn logs, oldest first, and the notes whose latest command was a NoteOff."""

    logs: tuple[NoteLog, ...]
    offs: tuple[int, ...] = ()
    b: bool = True  # the S bit of the NoteOff bitfield


@dataclass(frozen=True, slots=True)
class PressureLog:
    """One log of chapter A (poly aftertouch)."""

    note: int
    pressure: int
    x: bool = False
    s: bool = True


@dataclass(frozen=True, slots=True)
class ChannelJournal:
    """The chapters of one MIDI channel; None means the chapter is absent."""

    channel: int
    program: ProgramChapter | None = None
    controllers: ControllerChapter | None = None
    parameters: ParameterChapter | None = None
    pitch: tuple[bool, int] | None = None  # W: (s, 14-bit value)
    notes: NoteChapter | None = None
    extras: bytes | None = None  # E, kept raw: netmidi does not use it
    pressure: tuple[bool, int] | None = None  # T: (s, value)
    poly: tuple[PressureLog, ...] | None = None  # A (its S bit is the AND of the logs')
    enhanced: bool = False  # H
    s: bool = True


@dataclass(frozen=True, slots=True)
class Journal:
    """A whole recovery journal."""

    checkpoint: int
    channels: tuple[ChannelJournal, ...] = ()
    system: bytes | None = None  # the system journal, raw, header included
    enhanced: bool = False  # H
    s: bool = True


def _flag(bit: bool, mask: int) -> int:
    return mask if bit else 0


# Chapter encoders take plain tuples: the sender calls them straight from its state (they run
# for every packet sent), the dataclass encoder below adapts the decoded form to them.
ParameterTuple = tuple[bool, int, int | None, int | None, bool]  # nrpn, number, msb, lsb, S


def _put_program(
    out: bytearray, s: bool, program: int, msb: int | None, lsb: int | None, reset: bool
) -> None:
    out += bytes(
        (
            _flag(s, 0x80) | program,
            _flag(msb is not None, 0x80) | (msb or 0),
            _flag(reset, 0x80) | (lsb or 0),
        )
    )


def _put_logs(out: bytearray, logs: Sequence[tuple[int, int, bool]]) -> bool:
    """Chapters C and A: ``S LEN`` then two-octet logs; returns the chapter's S bit."""
    s = all(log[2] for log in logs)
    out.append(_flag(s, 0x80) | (len(logs) - 1))
    for first, second, log_s in logs:
        out.append(first | 0x80 if log_s else first)
        out.append(second)
    return s


def _put_parameters(
    out: bytearray,
    logs: Sequence[ParameterTuple],
    pending: tuple[bool, int] | None,
    selected: bool,
    s: bool,
) -> None:
    body = bytearray()
    if pending is not None:
        body.append(_flag(pending[0], 0x80) | pending[1])
    for nrpn, number, msb, lsb, log_s in logs:
        toc = 0x02 | _flag(msb is not None, 0x80) | _flag(lsb is not None, 0x40)  # V + J/K
        body += bytes((_flag(log_s, 0x80) | (number & 0x7F), _flag(nrpn, 0x80) | number >> 7, toc))
        if msb is not None:
            body.append(msb)
        if lsb is not None:
            body.append(lsb)
    head = _flag(s, 0x8000) | _flag(pending is not None, 0x4000) | _flag(selected, 0x2000)
    out += (head | (len(body) + 2)).to_bytes(2, "big")
    out += body


def _put_notes(out: bytearray, b: bool, count: int, logs: bytes, offs: Sequence[int]) -> None:
    """Chapter N from its ``count`` encoded NoteOn logs and the NoteOffs ``offs`` (ascending).

    No NoteOffs: LOW 15 and HIGH 1 (HIGH 0 with 128 logs, which LEN 127 then stands for).
    """
    if offs:
        low, high = offs[0] >> 3, offs[-1] >> 3
        bits = bytearray(high - low + 1)
        for note in offs:
            bits[(note >> 3) - low] |= 0x80 >> (note & 7)
    else:
        low, high, bits = 15, (0 if count == 128 else 1), bytearray()
    out += bytes((_flag(b, 0x80) | (127 if count == 128 else count), low << 4 | high))
    out += logs
    out += bits


def _channel_bytes(channel: int, s: bool, enhanced: bool, toc: int, body: bytes) -> bytes:
    length = len(body) + 3
    if length > 0x3FF:
        raise JournalError(f"channel journal of {length} bytes, the limit is 1023")
    head = _flag(s, 0x80) | channel << 3 | _flag(enhanced, 0x04) | length >> 8
    return bytes((head, length & 0xFF, toc)) + body


def _encode_channel(cj: ChannelJournal) -> bytes:
    toc = 0
    body = bytearray()
    if cj.program is not None:
        p = cj.program
        toc |= TOC_P
        _put_program(body, p.s, p.program, p.bank_msb, p.bank_lsb, p.reset)
    if cj.controllers is not None:
        toc |= TOC_C
        _put_logs(
            body,
            [
                (log.number, log.value if log.value is not None else 0x80 | log.alt, log.s)
                for log in cj.controllers.logs
            ],
        )
    if cj.parameters is not None:
        m = cj.parameters
        toc |= TOC_M
        logs = [(g.nrpn, g.number, g.entry_msb, g.entry_lsb, g.s) for g in m.logs]
        _put_parameters(body, logs, m.pending, m.selected, m.s)
    if cj.pitch is not None:
        toc |= TOC_W
        s, value = cj.pitch
        body += bytes((_flag(s, 0x80) | (value & 0x7F), value >> 7))
    if cj.notes is not None:
        n = cj.notes
        toc |= TOC_N
        note_logs = bytes(
            octet
            for g in n.logs
            for octet in (_flag(g.s, 0x80) | g.note, _flag(g.play, 0x80) | g.velocity)
        )
        _put_notes(body, n.b, len(n.logs), note_logs, n.offs)
    if cj.extras is not None:
        toc |= TOC_E
        body += cj.extras
    if cj.pressure is not None:
        toc |= TOC_T
        s, value = cj.pressure
        body.append(_flag(s, 0x80) | value)
    if cj.poly is not None:
        toc |= TOC_A
        _put_logs(body, [(g.note, _flag(g.x, 0x80) | g.pressure, g.s) for g in cj.poly])
    return _channel_bytes(cj.channel, cj.s, cj.enhanced, toc, bytes(body))


def encode_journal(journal: Journal) -> bytes:
    """The journal as it follows the MIDI command section (the J bit set in that section)."""
    if len(journal.channels) > 16:
        raise JournalError("more than 16 channel journals")
    head = (
        _flag(journal.s, 0x80)
        | _flag(journal.system is not None, 0x40)
        | _flag(bool(journal.channels), 0x20)
        | _flag(journal.enhanced, 0x10)
        | (len(journal.channels) - 1 if journal.channels else 0)
    )
    out = bytearray((head, journal.checkpoint >> 8, journal.checkpoint & 0xFF))
    if journal.system is not None:
        out += journal.system
    for cj in journal.channels:
        out += _encode_channel(cj)
    return bytes(out)


class _Reader:
    """Bounds-checked reading: every overrun is a JournalError saying what was cut short."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > self.end:
            raise JournalError(f"{what} runs past the end")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        if self.pos >= self.end:
            raise JournalError(f"{what} runs past the end")
        value = self.data[self.pos]
        self.pos += 1
        return value


def decode_journal(data: bytes, offset: int = 0) -> tuple[Journal, int]:
    """Parse the journal at ``offset``: (journal, offset after it). Raises JournalError."""
    r = _Reader(data, offset, len(data))
    head = r.take(3, "journal header")
    flags = head[0]
    system = None
    if flags & 0x40:
        sys_head = r.take(2, "system journal header")
        sys_len = (sys_head[0] & 0x03) << 8 | sys_head[1]
        if sys_len < 2:
            raise JournalError(f"system journal LENGTH {sys_len} is shorter than its header")
        system = sys_head + r.take(sys_len - 2, "system journal")
    channels: list[ChannelJournal] = []
    if flags & 0x20:
        seen = 0
        for _ in range((flags & 0x0F) + 1):
            cj = _decode_channel(r)
            if seen & (1 << cj.channel):
                raise JournalError(f"two channel journals for channel {cj.channel}")
            seen |= 1 << cj.channel
            channels.append(cj)
    elif flags & 0x0F:
        raise JournalError("TOTCHAN is set but the A bit says there are no channel journals")
    journal = Journal(
        checkpoint=head[1] << 8 | head[2],
        channels=tuple(channels),
        system=system,
        enhanced=bool(flags & 0x10),
        s=bool(flags & 0x80),
    )
    return journal, r.pos


def _decode_channel(outer: _Reader) -> ChannelJournal:
    head = outer.take(3, "channel journal header")
    length = (head[0] & 0x03) << 8 | head[1]
    channel = (head[0] >> 3) & 0x0F
    if length < 3:
        raise JournalError(f"channel {channel} journal LENGTH {length} is shorter than its header")
    r = _Reader(outer.data, outer.pos, outer.pos + length - 3)
    outer.take(length - 3, f"channel {channel} journal")
    toc = head[2]
    program = controllers = parameters = notes = None
    pitch = pressure = None
    extras = None
    poly = None
    if toc & TOC_P:
        a, b, c = r.take(3, "chapter P")
        program = ProgramChapter(
            program=a & 0x7F,
            bank_msb=b & 0x7F if b & 0x80 else None,
            bank_lsb=c & 0x7F if b & 0x80 else None,
            reset=bool(c & 0x80),
            s=bool(a & 0x80),
        )
    if toc & TOC_C:
        s, pairs = _read_logs(r, "chapter C")
        controllers = ControllerChapter(
            tuple(
                ControllerLog(
                    number=number & 0x7F,
                    value=None if second & 0x80 else second,
                    alt=second & 0x7F if second & 0x80 else 0,
                    s=bool(number & 0x80),
                )
                for number, second in pairs
            ),
            s=s,
        )
    if toc & TOC_M:
        parameters = _decode_parameters(r)
    if toc & TOC_W:
        first, second = r.take(2, "chapter W")
        pitch = (bool(first & 0x80), (second & 0x7F) << 7 | (first & 0x7F))
    if toc & TOC_N:
        notes = _decode_notes(r)
    if toc & TOC_E:
        start = r.pos
        _read_logs(r, "chapter E")
        extras = r.data[start : r.pos]
    if toc & TOC_T:
        value = r.byte("chapter T")
        pressure = (bool(value & 0x80), value & 0x7F)
    if toc & TOC_A:
        poly = tuple(
            PressureLog(note & 0x7F, value & 0x7F, x=bool(value & 0x80), s=bool(note & 0x80))
            for note, value in _read_logs(r, "chapter A")[1]
        )
    if r.pos != r.end:
        raise JournalError(
            f"channel {channel} journal LENGTH {length} disagrees with its chapters"
            f" ({r.pos - r.end + length} bytes)"
        )
    return ChannelJournal(
        channel=channel,
        program=program,
        controllers=controllers,
        parameters=parameters,
        pitch=pitch,
        notes=notes,
        extras=extras,
        pressure=pressure,
        poly=poly,
        enhanced=bool(head[0] & 0x04),
        s=bool(head[0] & 0x80),
    )


def _read_logs(r: _Reader, what: str) -> tuple[bool, list[tuple[int, int]]]:
    """Chapters C, E and A: ``S LEN``, then LEN + 1 two-octet logs."""
    top = r.byte(what)
    data = r.take(2 * ((top & 0x7F) + 1), f"{what} logs")
    return bool(top & 0x80), list(zip(data[::2], data[1::2], strict=True))


def _decode_parameters(outer: _Reader) -> ParameterChapter:
    head = outer.take(2, "chapter M header")
    length = (head[0] & 0x03) << 8 | head[1]
    if length < 2:
        raise JournalError(f"chapter M LENGTH {length} is shorter than its header")
    r = _Reader(outer.data, outer.pos, outer.pos + length - 2)
    outer.take(length - 2, "chapter M")
    flags = head[0]
    pending = None
    if flags & 0x40:
        octet = r.byte("chapter M PENDING")
        pending = (bool(octet & 0x80), octet & 0x7F)
    u, w, z = flags & 0x10, flags & 0x08, flags & 0x04
    short = bool(z and (u or w))
    logs = []
    while r.pos < r.end:
        first = r.byte("chapter M log")
        if short:
            nrpn, msb = bool(w), 0
        else:
            second = r.byte("chapter M log")
            nrpn, msb = bool(second & 0x80), second & 0x7F
        toc = r.byte("chapter M log")
        entry_msb = r.byte("ENTRY-MSB") & 0x7F if toc & 0x80 else None
        entry_lsb = r.byte("ENTRY-LSB") & 0x7F if toc & 0x40 else None
        r.take((2 if toc & 0x20 else 0) + (2 if toc & 0x10 else 0), "A/C-BUTTON")
        r.take(1 if toc & 0x08 else 0, "COUNT")
        logs.append(
            ParameterLog(nrpn, msb << 7 | (first & 0x7F), entry_msb, entry_lsb, bool(first & 0x80))
        )
    return ParameterChapter(tuple(logs), pending, bool(flags & 0x20), bool(flags & 0x80))


def _decode_notes(r: _Reader) -> NoteChapter:
    top, range_octet = r.take(2, "chapter N header")
    count = top & 0x7F
    low, high = range_octet >> 4, range_octet & 0x0F
    if count == 127 and low == 15 and high == 0:
        count = 128
    logs = []
    for _ in range(count):
        note, vel = r.take(2, "chapter N log")
        logs.append(NoteLog(note & 0x7F, vel & 0x7F, play=bool(vel & 0x80), s=bool(note & 0x80)))
    offs: list[int] = []
    if low <= high:
        for index, octet in enumerate(r.take(high - low + 1, "chapter N OFFBITS")):
            base = (low + index) * 8
            offs.extend(base + bit for bit in range(8) if octet & (0x80 >> bit))
    elif low != 15:
        raise JournalError(f"chapter N LOW {low} is above HIGH {high}")
    return NoteChapter(tuple(logs), tuple(offs), b=bool(top & 0x80))


# ------------------------------------------------------------------------------------------------
# Channel state shared by sender and receiver


@dataclass(slots=True)
class _Registers:
    """The (N)RPN parameter-number registers of one channel."""

    msb: dict[bool, int] = field(default_factory=lambda: {False: 127, True: 127})
    lsb: dict[bool, int] = field(default_factory=lambda: {False: 127, True: 127})
    nrpn: bool = False  # which kind was written last
    pending: bool = False  # an MSB was written and its LSB not yet

    def number(self) -> int:
        """The parameter number in the registers of the kind written last (maybe the null)."""
        return self.msb[self.nrpn] << 7 | self.lsb[self.nrpn]

    def selected(self) -> int | None:
        """The parameter Data Entry applies to; None when deselected by 127/127."""
        number = self.number()
        return None if number == NULL_PARAMETER else number


Item = tuple[int, int]  # (packet, value)


def _trailing(items: dict[Any, Any], packet: int) -> int:
    """How many of the last-updated items were updated in ``packet``."""
    count = 0
    for item in reversed(items.values()):
        if item[0] != packet:
            break
        count += 1
    return count


def _record(messages: Sequence[bytes], packet: int, state: Callable[[int], ChannelState]) -> None:
    """Record a packet's channel voice messages in the ``state`` of their channels.

    A packet's messages are nearly always on one channel: then they go to it in one call.
    """
    if len(messages) == 1:
        status = messages[0][0] if messages[0] else 0
        if 0x80 <= status < 0xF0:
            state(status & 0x0F).record(messages, packet)
        return
    statuses = {message[0] if message else 0 for message in messages}
    voice = {status for status in statuses if 0x80 <= status < 0xF0}
    channels = {status & 0x0F for status in voice}
    for channel in channels:
        if len(channels) == 1 and voice == statuses:
            state(channel).record(messages, packet)
        else:
            state(channel).record(
                [m for m in messages if m and 0x80 <= m[0] < 0xF0 and m[0] & 0x0F == channel],
                packet,
            )


def _touch(items: dict[Any, Any], key: Any, value: Any) -> None:
    """Set ``key`` and move it to the end: each dict stays ordered by the packet of update."""
    items.pop(key, None)
    items[key] = value


def _trim(items: dict[Any, Any], oldest: int) -> int:
    """Drop the items updated before packet ``oldest``; how many went."""
    removed = 0
    while items:
        key = next(iter(items))
        if items[key][0] >= oldest:
            break
        del items[key]
        removed += 1
    return removed


class ChannelState:
    """The journalled state of one channel: the latest command per item and its packet.

    The sender tags items with the packet that carried them and builds its channel journal from
    them; the receiver (packet 0 everywhere) compares a journal with them. Dicts are ordered by
    the packet of their latest update, so trimming to a checkpoint stops at the first new item.
    """

    __slots__ = (
        "program",
        "controllers",
        "parameters",
        "pitch",
        "notes",
        "pressure",
        "poly",
        "sounding",
        "registers",
        "selection_packet",
        "bank",
        "updated",
        "version",
        "floor",
        "history",
        "_logs_c",
        "_key",
        "_cached",
        "_chapter_n",
        "_notes_changed",
    )

    def __init__(self, history: bool = True) -> None:
        self.history = history  # False for a receiver: values only, no journal to build
        self.program: tuple[int, int, int | None, int | None] | None = None  # packet, PC, bank
        self.controllers: dict[int, Item] = {}
        self.parameters: dict[tuple[bool, int], tuple[int, int | None, int | None]] = {}
        self.pitch: Item | None = None
        self.notes: dict[int, Item] = {}  # velocity 0: off
        self.pressure: Item | None = None
        self.poly: dict[int, Item] = {}
        self.sounding: set[int] = set()
        self.registers = _Registers()
        self.selection_packet = -1
        self.bank: tuple[int | None, int | None] = (None, None)
        self.updated = -1  # the packet of the latest change
        self.version = 0  # bumped by every change, for the sender's cache
        self.floor = -1  # no item is older than this packet
        # Chapter C's logs with S=1, in the order of ``controllers``, kept up to date as they
        # change: a controller's first octet (S=1) never equals a value octet, so find() is safe.
        self._logs_c = bytearray()
        self._key: tuple[int, ...] | None = None
        self._cached: bytes | None = None
        self._chapter_n: tuple[bytes, bool] | None = None  # the sender's chapter N, and its S
        self._notes_changed = False  # since _chapter_n was encoded

    def apply(self, message: bytes, packet: int) -> None:
        """Record one channel voice message sent or received in ``packet``."""
        self.record((message,), packet)

    def record(self, messages: Iterable[bytes], packet: int) -> None:
        """Record channel voice messages of this channel sent or received in ``packet``.

        This runs for every event routed: plain controllers, the common case, are updated
        inline, with the attributes they need looked up once per packet.
        """
        self.updated = packet
        self.version += 1
        controllers = self.controllers
        logs = self._logs_c if self.history else None  # the sender's chapter C logs
        for message in messages:
            kind = message[0] & 0xF0
            size = len(message)
            if kind == 0xB0 and size >= 3:
                number, value = message[1], message[2]
                if number in PARAMETER_CONTROLLERS:
                    self._parameter(number, value, packet)
                    continue
                if logs is not None:  # drop the controller's old log, append the new one
                    if controllers.pop(number, None) is not None:
                        at = logs.find(number | 0x80)
                        del logs[at : at + 2]
                    logs.append(number | 0x80)
                    logs.append(value)
                controllers[number] = (packet, value)
                if number in _SIDE_EFFECT_CONTROLLERS:
                    self._side_effect(number, value, packet)
            elif kind == 0x90 and size >= 3:
                self._note(message[1], packet, message[2])
            elif kind == 0x80 and size >= 3:
                self._note(message[1], packet, 0)
            elif kind == 0xC0 and size >= 2:
                self.program = (packet, message[1], *self.bank)
            elif kind == 0xE0 and size >= 3:
                self.pitch = (packet, message[2] << 7 | message[1])
            elif kind == 0xD0 and size >= 2:
                self.pressure = (packet, message[1])
            elif kind == 0xA0 and size >= 3:
                _touch(self.poly, message[1], (packet, message[2]))

    def _note(self, note: int, packet: int, velocity: int) -> None:
        _touch(self.notes, note, (packet, velocity))
        self._notes_changed = True
        if velocity:
            self.sounding.add(note)
        else:
            self.sounding.discard(note)

    def _side_effect(self, number: int, value: int, packet: int) -> None:
        """Bank select (remembered for chapter P) and the controllers that end every note."""
        if number == 0:
            self.bank = (value, None)
        elif number == 32:
            self.bank = (self.bank[0], value)
        elif number in NOTES_OFF_CONTROLLERS:
            for note in sorted(self.sounding):
                self._note(note, packet, 0)

    def _parameter(self, number: int, value: int, packet: int) -> None:
        """The (N)RPN controllers: selection registers and Data Entry (chapter M)."""
        regs = self.registers
        if number in (99, 101):
            regs.nrpn = number == 99
            regs.msb[regs.nrpn] = value
            regs.pending = True
            self.selection_packet = packet
        elif number in (98, 100):
            regs.nrpn = number == 98
            regs.lsb[regs.nrpn] = value
            regs.pending = False
            self.selection_packet = packet
        elif number in (6, 38):
            param = regs.selected()
            if param is not None:
                key = (regs.nrpn, param)
                _, msb, lsb = self.parameters.get(key, (0, None, None))
                entry = (packet, value, lsb) if number == 6 else (packet, msb, value)
                _touch(self.parameters, key, entry)
        # 96/97 (Data Increment/Decrement) are not journalled.

    def journal(self, channel: int, oldest: int, previous: int) -> bytes | None:
        """This channel's journal covering packets ``oldest`` on (cached).

        Items older than ``oldest`` are forgotten: no later journal needs them. S=0 marks what
        came in packet ``previous``.
        """
        if oldest > self.floor:
            self._trim(oldest)
        program, pitch, pressure = self.program, self.pitch, self.pressure
        key = (
            self.version,
            self.updated == previous,
            program is not None and program[0] >= oldest,
            pitch is not None and pitch[0] >= oldest,
            pressure is not None and pressure[0] >= oldest,
            self.selection_packet >= oldest,
        )
        if key != self._key:
            self._key, self._cached = key, self._build(channel, oldest, previous)
        return self._cached

    def _trim(self, oldest: int) -> None:
        floor = -1
        dicts: tuple[dict[Any, Any], ...] = (
            self.controllers,
            self.parameters,
            self.notes,
            self.poly,
        )
        for items in dicts:
            if not items:
                continue
            first: int = next(iter(items.values()))[0]
            if first < oldest:
                removed = _trim(items, oldest)
                self.version += 1
                if items is self.controllers:
                    del self._logs_c[: 2 * removed]
                elif items is self.notes:
                    self._notes_changed = True
                if not items:
                    continue
                first = next(iter(items.values()))[0]
            if floor < 0 or first < floor:
                floor = first
        # Later items only come with later packets: nothing is older than this until then.
        self.floor = oldest if floor < 0 else floor

    def _build(self, channel: int, oldest: int, previous: int) -> bytes | None:
        toc = 0
        body = bytearray()
        s_all = True
        program = self.program
        if program is not None and program[0] >= oldest:
            toc |= TOC_P
            s = program[0] != previous
            s_all = s
            msb, lsb = program[2], program[3]
            _put_program(
                body, s, program[1], msb, 0 if msb is not None and lsb is None else lsb, False
            )
        if self.controllers:
            toc |= TOC_C
            logs = self._logs_c
            fresh = _trailing(self.controllers, previous)
            cut = len(logs) - 2 * fresh
            body.append(_flag(not fresh, 0x80) | (len(self.controllers) - 1))
            body += logs[:cut]
            body += logs[cut:].translate(_CLEAR_S)
            s_all = s_all and not fresh
        parameters = self._parameter_logs(oldest, previous)
        if parameters is not None:
            toc |= TOC_M
            param_logs, selected, s = parameters
            _put_parameters(body, param_logs, None, selected, s)
            s_all = s_all and s
        pitch = self.pitch
        if pitch is not None and pitch[0] >= oldest:
            toc |= TOC_W
            s = pitch[0] != previous
            body += bytes((_flag(s, 0x80) | (pitch[1] & 0x7F), pitch[1] >> 7))
            s_all = s_all and s
        if self.notes:
            toc |= TOC_N
            # Chapter N covers every note since the checkpoint (up to 128): encoded again only
            # when a note changed or when it had S=0 parts, which the packets since have aged.
            if self._notes_changed or self._chapter_n is None or not self._chapter_n[1]:
                self._chapter_n = self._notes_chapter(previous)
                self._notes_changed = False
            body += self._chapter_n[0]
            s_all = s_all and self._chapter_n[1]
        pressure = self.pressure
        if pressure is not None and pressure[0] >= oldest:
            toc |= TOC_T
            s = pressure[0] != previous
            body.append(_flag(s, 0x80) | pressure[1])
            s_all = s_all and s
        if self.poly:
            toc |= TOC_A
            s_all = (
                _put_logs(body, [(n, v, p != previous) for n, (p, v) in self.poly.items()])
                and s_all
            )
        if not toc:
            return None
        return _channel_bytes(channel, s_all, False, toc, bytes(body))

    def _notes_chapter(self, previous: int) -> tuple[bytes, bool]:
        """Chapter N and its S bit (False when a note of packet ``previous`` is in it)."""
        ons = bytearray()  # NoteOn logs, Y=1 (play), S=0 for the previous packet's
        offs: list[int] = []
        b = s_on = True
        for note, (p, velocity) in self.notes.items():
            if velocity:
                ons.append(note if p == previous else note | 0x80)
                ons.append(velocity | 0x80)
                s_on = s_on and p != previous
            else:
                offs.append(note)
                b = b and p != previous
        offs.sort()
        chapter = bytearray()
        _put_notes(chapter, b, len(ons) // 2, bytes(ons), offs)
        return bytes(chapter), b and s_on

    def _parameter_logs(
        self, oldest: int, previous: int
    ) -> tuple[list[ParameterTuple], bool, bool] | None:
        """Chapter M: the logs, whether the last is the selected parameter (E), and S.

        The selection made since the checkpoint (the null parameter included) is the last log,
        with E set, so a receiver that lost it selects the same. A half-written parameter
        number (PENDING) is not sent: tshark 4.0 misreads chapter M lengths with it, and the
        next complete selection is journalled anyway.
        """
        selected = self.selection_packet >= oldest
        if not (selected or self.parameters):
            return None
        regs = self.registers
        logs = [
            (k[0], k[1], msb, lsb, p != previous) for k, (p, msb, lsb) in self.parameters.items()
        ]
        selected = selected and not regs.pending
        if selected:
            key = (regs.nrpn, regs.number())
            current = next((log for log in logs if log[:2] == key), None)
            if current is not None:
                logs.remove(current)
            else:
                current = (key[0], key[1], None, None, self.selection_packet != previous)
            logs.append(current)
        if not logs:
            return None
        s = all(log[4] for log in logs) and self.selection_packet != previous
        return logs, selected, s


# ------------------------------------------------------------------------------------------------
# Sender


class JournalSender:
    """The sender's session history: builds the journal for each packet it is told about.

    Packets are numbered internally with an unwrapped counter so that trimming never suffers from
    the 16-bit wrap. ``max_packets`` bounds the history when receivers never confirm (peers that
    send no RS); ``max_bytes`` bounds the journal's size, trimming the oldest history first.
    """

    def __init__(self, max_packets: int = 32, max_bytes: int = 512) -> None:
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.channels: dict[int, ChannelState] = {}  # in channel order
        self._packet = -1  # unwrapped number of the last packet sent
        self._seq = 0  # its RTP sequence number
        self._checkpoint = 0  # unwrapped number of the oldest packet the journal covers
        self._confirmed: dict[Hashable, int] = {}  # receiver -> last packet it confirmed

    def _unwrap(self, seq: int) -> int:
        if self._packet < 0:
            return seq
        return self._packet + ((seq - self._seq) & 0xFFFF)

    def packet(self, seq: int, messages: Sequence[bytes]) -> bytes:
        """The journal for the packet ``seq``, then remember ``messages`` as sent in it."""
        packet = self._unwrap(seq)
        if self._packet < 0:
            self._checkpoint = packet
        self._checkpoint = max(self._checkpoint, packet - self.max_packets)
        journal = self._build(packet)
        while len(journal) > self.max_bytes and self._checkpoint < packet:
            self._checkpoint = (self._checkpoint + packet + 1) // 2
            journal = self._build(packet)
        self._packet, self._seq = packet, seq
        _record(messages, packet, self._state)
        return journal

    def _state(self, channel: int) -> ChannelState:
        state = self.channels.get(channel)
        if state is None:
            state = self.channels[channel] = ChannelState()
            self.channels = dict(sorted(self.channels.items()))
        return state

    def _build(self, packet: int) -> bytes:
        oldest = self._checkpoint
        parts = []
        for channel, state in self.channels.items():
            built = state.journal(channel, oldest, packet - 1)
            if built is not None:
                parts.append(built)
        # The header's S bit stays 0 (always correct: receivers then look at the channels' S
        # bits): pymidi 0.5 reads a system journal whenever it is 1 and drops the packet.
        head = 0x20 | (len(parts) - 1) if parts else 0
        return bytes((head, (oldest >> 8) & 0xFF, oldest & 0xFF)) + b"".join(parts)

    def track(self, receiver: Hashable) -> None:
        """A new receiver: until it confirms, the history it may need stays (within bounds)."""
        self._confirmed[receiver] = max(self._packet, self._checkpoint)

    def forget(self, receiver: Hashable) -> None:
        """A receiver left: its feedback no longer holds the checkpoint back."""
        self._confirmed.pop(receiver, None)

    def confirm(self, seq: int, receiver: Hashable = None) -> bool:
        """Receiver feedback (RS): ``receiver`` has everything up to ``seq``.

        The checkpoint moves to the oldest packet some tracked receiver has not confirmed past
        (that packet stays covered, so a receiver reading the checkpoint as inclusive or
        exclusive is served either way). Values that name no packet of the recent history
        (rtpmidid's low-half RS, stale or forged feedback) are ignored.
        """
        if self._packet < 0:
            return False
        behind = (self._seq - seq) & 0xFFFF
        if behind > self.max_packets and behind > self._packet - self._checkpoint:
            return False
        confirmed = self._packet - behind
        if confirmed < self._confirmed.get(receiver, -1):
            return False
        self._confirmed[receiver] = confirmed
        self._checkpoint = max(self._checkpoint, min(self._confirmed.values()))
        return True


# ------------------------------------------------------------------------------------------------
# Receiver


@dataclass(slots=True)
class Received:
    """What a receiver makes of one packet: the messages to deliver and what happened."""

    messages: list[bytes]
    lost: int = 0  # packets missing just before this one
    repaired: int = 0  # messages of ``messages`` synthesised from the journal
    late: bool = False  # an old or duplicate packet, dropped
    partial: bool = False  # the journal's history starts after the first lost packet
    error: str | None = None  # the journal did not parse (the packet's own messages still count)


class JournalReceiver:
    """Loss detection and journal repair for the stream of one sender (one SSRC)."""

    def __init__(self, reorder_window: int = 64) -> None:
        self.reorder_window = reorder_window
        self.channels: dict[int, ChannelState] = {}
        self._expected: int | None = None
        self.lost = 0
        self.repaired = 0
        self.late = 0

    def _state(self, channel: int) -> ChannelState:
        state = self.channels.get(channel)
        if state is None:
            state = self.channels[channel] = ChannelState(history=False)
        return state

    def packet(self, seq: int, messages: Sequence[bytes], journal: bytes | None) -> Received:
        """Take one packet in arrival order; ``journal`` is its raw journal (None without J)."""
        expected = self._expected
        lost = 0 if expected is None else (seq - expected) & 0xFFFF
        if lost and SEQ_MOD - lost <= self.reorder_window:
            self.late += 1
            return Received([], late=True)
        self._expected = (seq + 1) & 0xFFFF
        repairs: list[bytes] = []
        error = None
        partial = False
        if lost >= SEQ_MOD // 2:
            lost = 0  # a jump backwards beyond the reorder window: a restarted sender, resync
        if lost and expected is not None:
            self.lost += lost
            if journal is not None:
                try:
                    parsed, _ = decode_journal(journal)
                except JournalError as exc:
                    error = str(exc)
                else:
                    partial = (expected - parsed.checkpoint) & 0xFFFF >= SEQ_MOD // 2
                    repairs = self.repair(parsed, single=lost == 1)
                    self.repaired += len(repairs)
        _record(messages, 0, self._state)
        if repairs:
            messages = repairs + list(messages)
        return Received(list(messages), lost, len(repairs), partial=partial, error=error)

    def repair(self, journal: Journal, single: bool) -> list[bytes]:
        """The messages that bring this receiver's state to what ``journal`` describes.

        After a single lost packet only the parts with S=0 are new (the rest arrived already);
        after more, every part counts but is compared with the state so nothing is repeated.
        """
        if single and journal.s:
            return []
        out: list[bytes] = []
        for cj in journal.channels:
            if not (single and cj.s):
                _Repair(cj.channel, self._state(cj.channel), single, out).channel(cj)
        return out


def _value(items: dict[int, Item], key: int) -> int | None:
    item = items.get(key)
    return None if item is None else item[1]


class _Repair:
    """Compares one channel journal with the receiver's state and emits what differs.

    Every emitted message is applied to the state at once, so later chapters see its effect
    (an All Notes Off from chapter C before the note logs of chapter N).
    """

    __slots__ = ("ch", "state", "single", "out", "done")

    def __init__(self, ch: int, state: ChannelState, single: bool, out: list[bytes]) -> None:
        self.ch, self.state, self.single, self.out = ch, state, single, out
        self.done: set[bytes] = set()

    def emit(self, *message: int) -> None:
        data = bytes(message)
        if data[0] & 0xF0 == 0xB0 and data[1] in (0, 32):
            self.done.add(data)  # a bank select from chapter P is not repeated by chapter C
        self.out.append(data)
        self.state.apply(data, 0)

    def fresh(self, s: bool) -> bool:
        """Whether a part is news: after a single loss, only the parts marked S=0 are."""
        return not (self.single and s)

    def channel(self, cj: ChannelJournal) -> None:
        ch, state = self.ch, self.state
        p = cj.program
        if p is not None and self.fresh(p.s):
            if p.bank_msb is not None and _value(state.controllers, 0) != p.bank_msb:
                self.emit(0xB0 | ch, 0, p.bank_msb)
                # BANK-LSB 0 also stands for "no LSB sent": only a known, different LSB is news.
                lsb = _value(state.controllers, 32)
                if p.bank_lsb is not None and lsb != p.bank_lsb and (p.bank_lsb or lsb):
                    self.emit(0xB0 | ch, 32, p.bank_lsb)
            current = state.program
            if self.single or current is None or current[1] != p.program:
                self.emit(0xC0 | ch, p.program)
        if cj.controllers is not None and self.fresh(cj.controllers.s):
            latest: dict[int, int] = {}
            for log in cj.controllers.logs:  # enhanced encoding: the last value log counts
                if log.value is not None and self.fresh(log.s):
                    latest[log.number] = log.value
            for number, value in latest.items():
                if (
                    number in PARAMETER_CONTROLLERS
                    or bytes((0xB0 | ch, number, value)) in self.done
                ):
                    continue
                if self.single or _value(state.controllers, number) != value:
                    self.emit(0xB0 | ch, number, value)
        if cj.parameters is not None and self.fresh(cj.parameters.s):
            self.parameters(cj.parameters)
        if cj.pitch is not None and self.fresh(cj.pitch[0]):
            value = cj.pitch[1]
            if self.single or state.pitch is None or state.pitch[1] != value:
                self.emit(0xE0 | ch, value & 0x7F, value >> 7)
        n = cj.notes
        if n is not None:
            for note in n.offs:
                if _value(state.notes, note):
                    self.emit(0x80 | ch, note, 0)
            for nlog in n.logs:
                if self.fresh(nlog.s) and nlog.play and nlog.velocity:
                    if self.single or _value(state.notes, nlog.note) != nlog.velocity:
                        self.emit(0x90 | ch, nlog.note, nlog.velocity)
        if cj.pressure is not None and self.fresh(cj.pressure[0]):
            value = cj.pressure[1]
            if self.single or state.pressure is None or state.pressure[1] != value:
                self.emit(0xD0 | ch, value)
        for plog in cj.poly or ():
            if self.fresh(plog.s) and (
                self.single or _value(state.poly, plog.note) != plog.pressure
            ):
                self.emit(0xA0 | ch, plog.note, plog.pressure)

    def select(self, nrpn: bool, number: int) -> None:
        msb_cc, lsb_cc = (99, 98) if nrpn else (101, 100)
        self.emit(0xB0 | self.ch, msb_cc, number >> 7)
        self.emit(0xB0 | self.ch, lsb_cc, number & 0x7F)

    def parameters(self, m: ParameterChapter) -> None:
        """Data Entry values of the logged parameters, then the selection the journal says."""
        regs = self.state.registers
        before = (regs.nrpn, regs.number())
        for log in m.logs:
            if not self.fresh(log.s) or (log.entry_msb is None and log.entry_lsb is None):
                continue
            _, msb, lsb = self.state.parameters.get((log.nrpn, log.number), (0, None, None))
            stale_msb = log.entry_msb is not None and msb != log.entry_msb
            stale_lsb = log.entry_lsb is not None and lsb != log.entry_lsb
            if not (self.single or stale_msb or stale_lsb):
                continue
            if (regs.nrpn, regs.number()) != (log.nrpn, log.number) or regs.pending:
                self.select(log.nrpn, log.number)
            if log.entry_msb is not None:
                self.emit(0xB0 | self.ch, 6, log.entry_msb)
            if log.entry_lsb is not None:
                self.emit(0xB0 | self.ch, 38, log.entry_lsb)
        if m.selected and m.logs:
            last = m.logs[-1]
            if (regs.nrpn, regs.number()) != (last.nrpn, last.number):
                self.select(last.nrpn, last.number)
        elif m.pending is not None:
            nrpn, msb = m.pending
            self.emit(0xB0 | self.ch, 99 if nrpn else 101, msb)
        elif (regs.nrpn, regs.number()) != before:
            self.select(*before)
