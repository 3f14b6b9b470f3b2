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


def best_of(runs: int, work: object) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    for controllers, per_packet, packets in (
        (1, 1, 20000),
        (16, 1, 20000),
        (128, 1, 20000),
        (120, 16, 3000),
    ):
        messages = stream(controllers, per_packet, packets)
        size = [0]

        def send() -> None:
            sender = JournalSender(max_bytes=350)
            for seq, group in enumerate(messages):
                size[0] = len(sender.packet(seq & 0xFFFF, group))

        def receive() -> None:
            receiver = JournalReceiver()
            for seq, group in enumerate(messages):
                if seq % 10:  # every tenth packet lost: repair from the next journal
                    receiver.packet(seq & 0xFFFF, group, b"\x80\x00\x00")

        per_send = best_of(3, send) / packets * 1e6
        per_receive = best_of(3, receive) / packets * 1e6
        print(
            f"{per_packet:2d} event(s)/packet over {controllers:3d} controllers:"
            f" send {per_send:6.1f} us/packet (journal {size[0]} bytes),"
            f" receive {per_receive:5.1f} us/packet"
        )


if __name__ == "__main__":
    main()
