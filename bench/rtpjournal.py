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


def timed(messages: list[list[bytes]], runs: int = 3) -> tuple[float, float, int]:
    """Best-of-runs seconds to build every journal, to receive with every tenth packet lost."""
    send = receive = float("inf")
    journals: list[bytes] = []
    for _ in range(runs):
        sender = JournalSender(max_bytes=350)
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


if __name__ == "__main__":
    main()
