"""ANSI E1.31 (streaming ACN) packets: data, universe synchronisation and universe discovery.

Pure codec: :func:`decode` turns a datagram into one of three packet types or raises
:class:`DecodeError` with a precise reason; the encoders produce packets that OLA, the ETC library
and Wireshark accept. Every fixed field is validated on receive, because the surveyed receivers
that skip it apply garbage as levels.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

PORT = 5568
DISCOVERY_UNIVERSE = 64214
UNIVERSE_MIN, UNIVERSE_MAX = 1, 63999
PRIORITY_MAX = 200
SLOTS = 512
NAME_BYTES = 64
DISCOVERY_PAGE = 512

ROOT_DATA = 0x00000004
ROOT_EXTENDED = 0x00000008
FRAMING_DATA = 0x00000002
EXTENDED_SYNC = 0x00000001
EXTENDED_DISCOVERY = 0x00000002
DISCOVERY_LIST = 0x00000001
DMP_SET_PROPERTY = 0x02
DMP_ADDRESS_DATA_TYPE = 0xA1

OPTION_PREVIEW = 0x80
OPTION_TERMINATED = 0x40
OPTION_FORCE_SYNC = 0x20

START_LEVELS = 0x00
START_PRIORITY = 0xDD  # ETC per-address priority

_PREAMBLE = b"\x00\x10\x00\x00ASC-E1.17\x00\x00\x00"
DATA_HEADER = 126  # bytes before the first slot
SEQUENCE_OFFSET = 111
SYNC_LENGTH = 49
DISCOVERY_HEADER = 120

# Everything after the preamble of a data packet, up to and including the START code.
_DATA = struct.Struct(">HI16sHI64sBHBBHHBBHHHB")
_SYNC = struct.Struct(">HI16sHIBHH")
_DISCOVERY = struct.Struct(">HI16sHI64s4xHIBB")
_FRAMING_FIELDS = struct.Struct(">BHBBH")  # priority, sync address, sequence, options, universe


def _fixed_fields(size: int) -> tuple[bytes, bytes, bytes]:
    """The constant parts of a valid data packet of ``size`` bytes (root, framing, DMP)."""
    return (
        _PREAMBLE + struct.pack(">HI", 0x7000 | (size - 16), ROOT_DATA),
        struct.pack(">HI", 0x7000 | (size - 38), FRAMING_DATA),
        struct.pack(
            ">HBBHHH", 0x7000 | (size - 115), DMP_SET_PROPERTY, DMP_ADDRESS_DATA_TYPE, 0, 1,
            size - DATA_HEADER + 1,
        ),
    )  # fmt: skip


# Receiving is the hot path: a valid data packet is recognised by three slice comparisons.
_DATA_FIXED = {size: _fixed_fields(size) for size in range(DATA_HEADER, DATA_HEADER + SLOTS + 1)}


class DecodeError(ValueError):
    """A datagram is not a valid E1.31 packet.

    The message is ``kind: detail``; the kind alone (no numbers) is what drops are counted by.
    """


class DataPacket(NamedTuple):
    """A data packet: levels (start code 0x00), per-address priorities (0xDD) or other data."""

    cid: bytes
    source_name: str
    priority: int
    sync_address: int
    sequence: int
    options: int
    universe: int
    start_code: int
    slots: bytes

    @property
    def preview(self) -> bool:
        return bool(self.options & OPTION_PREVIEW)

    @property
    def terminated(self) -> bool:
        return bool(self.options & OPTION_TERMINATED)

    @property
    def force_sync(self) -> bool:
        return bool(self.options & OPTION_FORCE_SYNC)


class SyncPacket(NamedTuple):
    """Universe synchronisation: release data held for ``sync_address``."""

    cid: bytes
    sequence: int
    sync_address: int


class DiscoveryPacket(NamedTuple):
    """One page of a source's sorted list of the universes it sends."""

    cid: bytes
    source_name: str
    page: int
    last_page: int
    universes: tuple[int, ...]


Packet = DataPacket | SyncPacket | DiscoveryPacket


def _name_field(name: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > NAME_BYTES - 1:
        raise ValueError(f"source name {name!r} is longer than {NAME_BYTES - 1} UTF-8 bytes")
    return raw.ljust(NAME_BYTES, b"\0")


def _check_cid(cid: bytes) -> None:
    if len(cid) != 16:
        raise ValueError(f"a CID has 16 bytes, got {len(cid)}")


def _root(cid: bytes, vector: int, length: int) -> bytes:
    return _PREAMBLE + struct.pack(">HI", 0x7000 | (length - 16), vector) + cid


def data_header(
    cid: bytes,
    source_name: str,
    universe: int,
    slot_count: int = SLOTS,
    priority: int = 100,
    sync_address: int = 0,
    options: int = 0,
    start_code: int = START_LEVELS,
) -> bytes:
    """The 126 bytes before the slots, with sequence 0 (a sender patches SEQUENCE_OFFSET)."""
    _check_cid(cid)
    if not 0 <= slot_count <= SLOTS:
        raise ValueError(f"slot count {slot_count} is outside 0-{SLOTS}")
    length = DATA_HEADER + slot_count
    framing = struct.pack(">HI", 0x7000 | (length - 38), FRAMING_DATA) + _name_field(source_name)
    framing += struct.pack(
        ">BHBBHHBBHHHB",
        priority,
        sync_address,
        0,
        options,
        universe,
        0x7000 | (length - 115),
        DMP_SET_PROPERTY,
        DMP_ADDRESS_DATA_TYPE,
        0,
        1,
        slot_count + 1,
        start_code,
    )
    return _root(cid, ROOT_DATA, length) + framing


def encode_data(
    cid: bytes,
    source_name: str,
    universe: int,
    sequence: int,
    slots: bytes,
    priority: int = 100,
    sync_address: int = 0,
    options: int = 0,
    start_code: int = START_LEVELS,
) -> bytes:
    """A complete data packet."""
    header = data_header(
        cid, source_name, universe, len(slots), priority, sync_address, options, start_code
    )
    return (
        header[:SEQUENCE_OFFSET]
        + bytes((sequence & 0xFF,))
        + header[SEQUENCE_OFFSET + 1 :]
        + bytes(slots)
    )


def encode_sync(cid: bytes, sequence: int, sync_address: int) -> bytes:
    """A 49-byte universe synchronisation packet."""
    _check_cid(cid)
    return _root(cid, ROOT_EXTENDED, SYNC_LENGTH) + struct.pack(
        ">HIBHH", 0x7000 | (SYNC_LENGTH - 38), EXTENDED_SYNC, sequence & 0xFF, sync_address, 0
    )


def encode_discovery(
    cid: bytes, source_name: str, page: int, last_page: int, universes: Iterable[int]
) -> bytes:
    """One discovery page (at most 512 universes, which the caller has sorted)."""
    _check_cid(cid)
    listed = list(universes)
    if len(listed) > DISCOVERY_PAGE:
        raise ValueError(f"a discovery page lists at most {DISCOVERY_PAGE} universes")
    length = DISCOVERY_HEADER + 2 * len(listed)
    return (
        _root(cid, ROOT_EXTENDED, length)
        + struct.pack(">HI", 0x7000 | (length - 38), EXTENDED_DISCOVERY)
        + _name_field(source_name)
        + bytes(4)
        + struct.pack(">HIBB", 0x7000 | (length - 112), DISCOVERY_LIST, page, last_page)
        + struct.pack(f">{len(listed)}H", *listed)
    )


def discovery_pages(cid: bytes, source_name: str, universes: Iterable[int]) -> list[bytes]:
    """The whole discovery announcement: the sorted universes in pages of 512."""
    ordered = sorted(set(universes))
    chunks = [ordered[i : i + DISCOVERY_PAGE] for i in range(0, len(ordered), DISCOVERY_PAGE)]
    chunks = chunks or [[]]
    if len(chunks) > 256:
        raise ValueError("more universes than 256 discovery pages can list")
    last = len(chunks) - 1
    return [encode_discovery(cid, source_name, i, last, chunk) for i, chunk in enumerate(chunks)]


def ipv4_group(universe: int) -> str:
    """The multicast group of a universe: 239.255.hi.lo."""
    return f"239.255.{universe >> 8}.{universe & 0xFF}"


def ipv6_group(universe: int) -> str:
    """The IPv6 multicast group of a universe: ff18::8300:hilo (not ff18::83:0:hi:lo)."""
    return f"ff18::8300:{universe:x}"


def _flags_length(value: int, expected: int, layer: str) -> None:
    if value & 0xF000 != 0x7000:
        raise DecodeError(f"wrong {layer} flags: 0x{value >> 12:x}, expected 0x7")
    if value & 0x0FFF != expected:
        raise DecodeError(f"wrong {layer} length: {value & 0x0FFF}, the packet gives {expected}")


@lru_cache(maxsize=256)
def _name(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode(datagram: bytes) -> Packet:
    """Decode one E1.31 datagram, validating every fixed field."""
    size = len(datagram)
    fixed = _DATA_FIXED.get(size)
    if (
        fixed is not None
        and datagram[:22] == fixed[0]
        and datagram[38:44] == fixed[1]
        and datagram[115:125] == fixed[2]
    ):
        priority, sync_address, sequence, options, universe = _FRAMING_FIELDS.unpack_from(
            datagram, 108
        )
        if priority <= PRIORITY_MAX and UNIVERSE_MIN <= universe <= UNIVERSE_MAX:
            return DataPacket(
                datagram[22:38],
                _name(datagram[44:108]),
                priority,
                sync_address,
                sequence,
                options,
                universe,
                datagram[125],
                datagram[126:],
            )
    # anything else: the general path, which also says precisely what is wrong
    if size < SYNC_LENGTH:
        raise DecodeError(f"truncated packet: {size} bytes")
    if datagram[:16] != _PREAMBLE:
        if datagram[:4] != _PREAMBLE[:4]:
            raise DecodeError("wrong preamble or post-amble size")
        raise DecodeError("wrong ACN packet identifier")
    vector = int.from_bytes(datagram[18:22], "big")
    if vector == ROOT_DATA:
        return _decode_data(datagram, size)
    if vector == ROOT_EXTENDED:
        extended = int.from_bytes(datagram[40:44], "big")
        if extended == EXTENDED_SYNC:
            return _decode_sync(datagram, size)
        if extended == EXTENDED_DISCOVERY:
            return _decode_discovery(datagram, size)
        raise DecodeError(f"unknown extended framing vector: 0x{extended:08x}")
    raise DecodeError(f"unknown root vector: 0x{vector:08x}")


def _decode_data(datagram: bytes, size: int) -> DataPacket:
    if size < DATA_HEADER:
        raise DecodeError(f"truncated data packet: {size} bytes, expected at least 126")
    if size > DATA_HEADER + SLOTS:
        raise DecodeError(f"oversized data packet: {size} bytes, expected at most 638")
    (
        root_fl,
        _vector,
        cid,
        framing_fl,
        framing_vector,
        name,
        priority,
        sync_address,
        sequence,
        options,
        universe,
        dmp_fl,
        dmp_vector,
        address_type,
        first_address,
        increment,
        count,
        start_code,
    ) = _DATA.unpack_from(datagram, 16)
    _flags_length(root_fl, size - 16, "root layer")
    _flags_length(framing_fl, size - 38, "framing layer")
    if framing_vector != FRAMING_DATA:
        raise DecodeError(f"wrong framing vector: 0x{framing_vector:08x}, expected 0x00000002")
    _flags_length(dmp_fl, size - 115, "DMP layer")
    if dmp_vector != DMP_SET_PROPERTY:
        raise DecodeError(f"wrong DMP vector: 0x{dmp_vector:02x}, expected 0x02")
    if address_type != DMP_ADDRESS_DATA_TYPE:
        raise DecodeError(f"wrong address and data type: 0x{address_type:02x}, expected 0xa1")
    if first_address != 0 or increment != 1:
        raise DecodeError(
            f"wrong first address or increment: {first_address} and {increment}, expected 0 and 1"
        )
    if count != size - DATA_HEADER + 1:
        raise DecodeError(f"wrong property value count: {count} for {size - 125} values")
    if priority > PRIORITY_MAX:
        raise DecodeError(f"priority out of range: {priority}, expected at most {PRIORITY_MAX}")
    if not UNIVERSE_MIN <= universe <= UNIVERSE_MAX:
        raise DecodeError(
            f"universe out of range: {universe}, expected {UNIVERSE_MIN}-{UNIVERSE_MAX}"
        )
    return DataPacket(
        cid,
        _name(name),
        priority,
        sync_address,
        sequence,
        options,
        universe,
        start_code,
        datagram[DATA_HEADER:],
    )


def _decode_sync(datagram: bytes, size: int) -> SyncPacket:
    if size != SYNC_LENGTH:
        raise DecodeError(f"wrong sync packet size: {size} bytes, expected 49")
    root_fl, _vector, cid, framing_fl, _extended, sequence, sync_address, _reserved = (
        _SYNC.unpack_from(datagram, 16)
    )
    _flags_length(root_fl, size - 16, "root layer")
    _flags_length(framing_fl, size - 38, "framing layer")
    if not UNIVERSE_MIN <= sync_address <= UNIVERSE_MAX:
        raise DecodeError(
            f"sync address out of range: {sync_address}, expected {UNIVERSE_MIN}-{UNIVERSE_MAX}"
        )
    return SyncPacket(cid, sequence, sync_address)


def _decode_discovery(datagram: bytes, size: int) -> DiscoveryPacket:
    if size < DISCOVERY_HEADER:
        raise DecodeError(f"truncated discovery packet: {size} bytes")
    listed, odd = divmod(size - DISCOVERY_HEADER, 2)
    if odd or listed > DISCOVERY_PAGE:
        raise DecodeError(f"malformed discovery list: {size} bytes is not a list of universes")
    root_fl, _vector, cid, framing_fl, _extended, name, list_fl, list_vector, page, last = (
        _DISCOVERY.unpack_from(datagram, 16)
    )
    _flags_length(root_fl, size - 16, "root layer")
    _flags_length(framing_fl, size - 38, "framing layer")
    _flags_length(list_fl, size - 112, "universe discovery layer")
    if list_vector != DISCOVERY_LIST:
        raise DecodeError(f"wrong universe discovery vector: 0x{list_vector:08x}")
    if page > last:
        raise DecodeError(f"discovery page out of range: {page} after the last page {last}")
    universes = struct.unpack_from(f">{listed}H", datagram, DISCOVERY_HEADER)
    if any(a >= b for a, b in zip(universes, universes[1:], strict=False)):
        raise DecodeError("discovery universe list is not sorted")
    return DiscoveryPacket(cid, _name(name), page, last, universes)
