"""Backend names to modules, imported only when a show file uses them.

Lazy imports keep the daemon starting on machines without a backend's library (python-rtmidi
has no wheel for every Python) as long as no instance needs it.
"""

from __future__ import annotations

import importlib

from netmidi.backend import Backend

BACKEND_MODULES = {
    "loopback": "netmidi.backends.loopback",
    "sacn": "netmidi.backends.sacn",
    "rtpmidi": "netmidi.backends.rtpmidi",
    "midi": "netmidi.backends.midi",
    "maweb": "netmidi.backends.maweb",
}


class BackendUnavailable(Exception):
    """A known backend whose module (or the library it needs) cannot be imported here."""


def load_backend(name: str) -> type[Backend]:
    """The backend class for ``name``; the module names it ``BACKEND``."""
    module_name = BACKEND_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendUnavailable(f"backend {name!r} cannot be loaded here: {error}") from None
    backend: type[Backend] = module.BACKEND
    return backend
