"""netmidi: show-control networking between RTP-MIDI, sACN, local MIDI and MA web remotes."""

__version__ = "0.1.0"
