"""``twistd netmidi``: command-line options and the service maker.

The show file is read and fully checked while the options are parsed, so a broken show file
ends twistd with one line per problem and exit status 1 before it daemonises. ``makeService``
only wires services together; sockets open when the reactor starts them.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from netmidi.show import Show, load_show
from netmidi.showfile import ShowErrors


class Options(usage.Options):
    synopsis = "-c SHOWFILE [-b backend.option=value ...] [-i instance.option=value ...] [--check]"
    longdesc = (
        "Route show-control data between RTP-MIDI, sACN, local MIDI ports and the MA web "
        "remote, as the show file says. See README.rst."
    )
    optParameters = [["config", "c", None, "the show file (YAML)"]]
    optFlags = [["check", None, "check the show file, print the result and exit (status 0 or 1)"]]

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.overrides: list[tuple[str, str]] = []
        self.show: Show | None = None

    def opt_backend(self, value: str) -> None:
        """Override a backend option: -b sacn.name=desk (repeatable)."""
        self.overrides.append(("backend", value))

    def opt_instance(self, value: str) -> None:
        """Override an instance option: -i ipad.join=* (repeatable)."""
        self.overrides.append(("instance", value))

    opt_b = opt_backend
    opt_i = opt_instance

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("give the show file with -c FILE")
        from twisted.internet import reactor

        try:
            self.show = load_show(self["config"], reactor, self.overrides)
        except ShowErrors as errors:
            for line in errors.lines:
                sys.stderr.write(line + "\n")
            raise SystemExit(1) from None
        if self["check"]:
            show = self.show
            routes = len(show.router.routes) + len(show.claimed)
            for warning in show.warnings:
                sys.stderr.write(f"{self['config']}: warning: {warning}\n")
            sys.stdout.write(
                f"{self['config']}: OK: {len(show.instances)} instances, {routes} routes\n"
            )
            raise SystemExit(0)


def _exit_zero_after_signal(reactor: Any) -> None:
    """SIGTERM/SIGINT is how a technician or systemd ends the daemon: a clean stop exits 0.

    twistd would otherwise re-raise the signal after shutdown and exit with 128 + signal.
    """
    reactor._exitSignal = None


def makeService(options: dict[str, Any]) -> MultiService:
    """The netmidi service for a show checked in ``Options.postOptions``."""
    from twisted.internet import reactor as installed_reactor

    from netmidi.service import NetmidiService

    reactor: Any = installed_reactor
    show = options.show  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("after", "shutdown", _exit_zero_after_signal, reactor)
    return NetmidiService(show, reactor)
