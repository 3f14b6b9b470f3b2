"""One module per backend; see :mod:`netmidi.backend` for the interface they implement."""
