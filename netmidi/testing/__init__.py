"""Public test doubles for netmidi and for programs that embed it."""
