"""Write UDP datagrams to a pcap file and ask tshark what it makes of them (a structural check).

tshark decodes RTP-MIDI only on a UDP endpoint that has sent an AppleMIDI IN or OK first, so
:func:`applemidi_capture` puts an invitation exchange in front of the RTP packets.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

Datagram = tuple[tuple[str, int], tuple[str, int], bytes]  # (source, destination, payload)


def _ipv4(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))


def write_pcap(path: Path, datagrams: Sequence[Datagram]) -> None:
    """A classic pcap of bare IPv4 packets (link type 101), one second apart."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    for index, ((src, sport), (dst, dport), payload) in enumerate(datagrams):
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        total = 20 + len(udp)
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, total, index, 0, 64, 17, 0, _ipv4(src), _ipv4(dst)
        )
        checksum = sum(struct.unpack("!10H", ip))
        checksum = (checksum & 0xFFFF) + (checksum >> 16)
        checksum = ~((checksum & 0xFFFF) + (checksum >> 16)) & 0xFFFF
        ip = ip[:10] + struct.pack("!H", checksum) + ip[12:]
        packet = ip + udp
        out += struct.pack("<IIII", index + 1, 0, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))


def applemidi_capture(rtp_payloads: Sequence[bytes]) -> list[Datagram]:
    """An IN/OK exchange between two data ports, then the RTP payloads from the inviter."""
    a, b = ("127.0.0.1", 5004), ("127.0.0.1", 5006)
    token, ssrc_a, ssrc_b = b"\x33\x33\x33\x33", b"\x11\x11\x11\x11", b"\x22\x22\x22\x22"
    invite = b"\xff\xffIN\x00\x00\x00\x02" + token + ssrc_a + b"netmidi\x00"
    accept = b"\xff\xffOK\x00\x00\x00\x02" + token + ssrc_b + b"peer\x00"
    return [(a, b, invite), (b, a, accept), *((a, b, payload) for payload in rtp_payloads)]


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def tshark_fields(path: Path, fields: Sequence[str], verbose: bool = False) -> str:
    """tshark's reading of the file: one line per frame with the fields, or the -V tree."""
    command = ["tshark", "-r", str(path)]
    if verbose:
        command.append("-V")
    else:
        command += ["-T", "fields", "-E", "separator=|"]
        for name in fields:
            command += ["-e", name]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"tshark failed: {result.stderr.strip()}")
    return result.stdout
