"""Cost of the recovery journal per RTP-MIDI packet: the sender's build, the receiver's check.

Run: python bench/rtpjournal.py (no network). Prints microseconds per packet for a few traffic
shapes; the best of three runs, since the machine is shared.
"""

from __future__ import annotations

import random
import time

from netmidi.codec.rtpjournal import JournalReceiver, JournalSender


def stream(controllers: int, per_packet: int, packets: int) -> list[list[bytes]]:
    rng = random.Random(1)
    return [
        [bytes((0xB0, rng.randrange(controllers), rng.randrange(128))) for _ in range(per_packet)]
        for _ in range(packets)
    ]


def held_notes(notes: int, packets: int) -> list[list[bytes]]:
    """A chord held (``notes`` NoteOns in the first packet), then one CC per packet."""
    chord = [bytes((0x90, note, 100)) for note in range(notes)]
    return [chord] + [[bytes((0xB0, 7, seq & 0x7F))] for seq in range(1, packets)]


def timed(
    messages: list[list[bytes]], runs: int = 3, max_packets: int = 32
) -> tuple[float, float, int]:
    """Best-of-runs seconds to build every journal, to receive with every tenth packet lost."""
    send = receive = float("inf")
    journals: list[bytes] = []
    for _ in range(runs):
        sender = JournalSender(max_packets=max_packets, max_bytes=350)
        start = time.perf_counter()
        journals = [sender.packet(seq & 0xFFFF, group) for seq, group in enumerate(messages)]
        send = min(send, time.perf_counter() - start)
        receiver = JournalReceiver()
        start = time.perf_counter()
        for seq, group in enumerate(messages):
            if seq % 10:
                receiver.packet(seq & 0xFFFF, group, journals[seq])
        receive = min(receive, time.perf_counter() - start)
    return send, receive, len(journals[-1])


def main() -> None:
    shapes = ((1, 1, 20000), (16, 1, 20000), (128, 1, 20000), (120, 16, 3000))
    for controllers, per_packet, packets in shapes:
        send, receive, size = timed(stream(controllers, per_packet, packets))
        print(
            f"{per_packet:2d} event(s)/packet over {controllers:3d} controllers:"
            f" send {send / packets * 1e6:6.1f} us/packet (journal {size} bytes),"
            f" receive with 10 % loss {receive / packets * 1e6:5.1f} us/packet"
        )
    # An AppleMIDI peer whose RS feedback is slow: the history (and chapter N) covers the chord.
    send, receive, size = timed(held_notes(100, 20000), max_packets=1 << 20)
    print(
        f"100 held notes, then 1 CC/packet:             send {send / 20000 * 1e6:6.1f} us/packet"
        f" (journal {size} bytes), receive with 10 % loss {receive / 20000 * 1e6:5.1f} us/packet"
    )


if __name__ == "__main__":
    main()
