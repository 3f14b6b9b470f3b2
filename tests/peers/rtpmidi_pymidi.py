"""pymidi 0.5.0 as an AppleMIDI participant for tests/test_rtpmidi_interop.py.

usage: python rtpmidi_pymidi.py PORT [HOST]. Prints ``@@ {json}`` lines: ready, connected, midi.
(``pymidi.client`` is never imported: in 0.5.0 it binds 0.0.0.0 at import time.)
"""

import json
import sys

from pymidi import server


def out(**event):
    print("@@", json.dumps(event), flush=True)


class Handler(server.Handler):
    def on_peer_connected(self, peer):
        out(event="connected", name=str(peer.name))

    def on_peer_disconnected(self, peer):
        out(event="disconnected")

    def on_midi_commands(self, peer, commands):
        for c in commands:
            params = {k: int(v) for k, v in c.params.items() if not k.startswith("_")}
            out(event="midi", command=str(c.command), channel=c.channel, params=params)


s = server.Server([(sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1", int(sys.argv[1]))])
s.add_handler(Handler())
out(event="ready")
s.serve_forever()
