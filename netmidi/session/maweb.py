"""The MA web-remote client session as a sans-IO state machine that is told the time.

One :class:`ClientSession` lives for one websocket connection: it asks for a session id, logs
in, keeps the session alive, polls exactly the mapped executors one request at a time and turns
changes into events, and writes executors, pacing fader writes per executor so that a fast
source never floods the console while the latest value always arrives. What must outlive a
connection (the latest output values, the last input values, which buttons are held) is kept in
:class:`RemoteState`, so a new connection re-sends the outputs and reports only real changes.

Every method takes ``now`` and returns a :class:`Reaction`: text frames to send, input events,
log notices, bad input to count, and possibly a reason to drop the connection. The caller
calls :meth:`ClientSession.tick` at :meth:`ClientSession.wakeup`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from netmidi.codec import maweb
from netmidi.codec.maweb import DOT2, GMA2, KeyInfo, MawebDecodeError

FADER, UPPER, LOWER, FLASH, BUTTON = "fader", "upper", "lower", "flash", "button"
CONTROLS = (FADER, UPPER, LOWER, FLASH, BUTTON)
PRESSED_ABOVE = 0.9
# the console reports fader values with 3 decimals
READ_RESOLUTION = 0.0005


class Executor(NamedTuple):
    """An executor control as the show file names it: ``page1.fader5``, ``page2.button103``.

    A named tuple: it is hashed several times per routed event.
    """

    page: int
    number: int
    control: str

    @property
    def page_index(self) -> int:
        return self.page - 1

    @property
    def exec_index(self) -> int:
        return self.number - 1

    @property
    def readable(self) -> bool:
        """Faders report ``fader.v`` and buttons ``isRun``; upper/lower report nothing."""
        return self.control in (FADER, FLASH, BUTTON)

    def button_id(self, app_type: str) -> int:
        """0 bottom (flash/go), 1 lower, 2 upper on gma2; dot2 has ids 0 (upper) and 1 only."""
        if self.control == LOWER:
            return 1
        if self.control == UPPER:
            return 0 if app_type == DOT2 else 2
        return 0

    def __str__(self) -> str:
        return f"page{self.page}.{self.control}{self.number}"


class CommandKey(NamedTuple):
    """A command line key by name, pressed above 0.9 and released below."""

    key: KeyInfo

    def __str__(self) -> str:
        return self.key.name


Control = Executor | CommandKey


@dataclass(frozen=True)
class Credentials:
    """The login; kept out of reprs so that it cannot end up in a log line by accident."""

    user: str = field(repr=False)
    hashed_password: str = field(repr=False)


@dataclass(frozen=True)
class Timing:
    """Intervals in seconds; the defaults follow MA's own client where it has one."""

    poll_interval: float = 0.05
    keepalive: float = 10.0
    answer_timeout: float = 5.0
    fader_interval: float = 0.02
    fader_interval_per_active: float = 0.0025


@dataclass(frozen=True)
class Notice:
    """A line for the log. ``expert`` lines are the warnings that the ``quiet`` option hides."""

    level: str
    text: str
    expert: bool = False


@dataclass
class Reaction:
    send: list[str] = field(default_factory=list)
    events: list[tuple[Executor, float]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    drop: str | None = None
    logged_in: bool = False


class RemoteState:
    """What one instance keeps across connections."""

    def __init__(self, inputs: Iterable[Control], cmdline: str) -> None:
        self.cmdline = cmdline
        self.inputs = frozenset(c for c in inputs if isinstance(c, Executor) and c.readable)
        self.faders: dict[Executor, float] = {}
        self.held: dict[Control, bool] = {}
        self.known: dict[Executor, float] = {}
        self.fader_sent_at: dict[Executor, float] = {}

    def record(self, control: Control, value: float) -> bool:
        """Remember an output; True when the console must hear about it now (or on login).

        Faders always count (the latest value is what gets sent); buttons and keys only when
        they cross the press threshold, so a held button is pressed once.
        """
        if isinstance(control, Executor) and control.control == FADER:
            self.faders[control] = value
            return True
        pressed = value > PRESSED_ABOVE
        if self.held.get(control, False) == pressed:
            return False
        self.held[control] = pressed
        return True

    def fader_interval(self, timing: Timing, now: float) -> float:
        """Per-executor spacing, widened as more faders move at once (the console lags)."""
        active = sum(1 for at in self.fader_sent_at.values() if now - at < 1.0)
        return timing.fader_interval + timing.fader_interval_per_active * max(active - 1, 0)


_WAIT_READY, _WAIT_SESSION, _WAIT_LOGIN, _READY = "server ready", "session", "login", "ready"


class ClientSession:
    """One connection's session with the console."""

    def __init__(
        self, state: RemoteState, credentials: Credentials, timing: Timing, now: float
    ) -> None:
        self.state = state
        self._credentials = credentials
        self.timing = timing
        self.phase = _WAIT_READY
        self.session = 0
        self.app_type = GMA2
        self._r = Reaction()
        # what the console owes us an answer for, and since when
        self._awaiting: dict[str, float] = {_WAIT_READY: now}
        self._keepalive_at: float | None = None
        self._plan: list[maweb.PlaybacksRequest] = []
        self._readers: dict[tuple[int, int], list[Executor]] = {}
        self._poll_next = 0
        self._poll_seq = 0
        self._poll_at: float | None = None
        self._cycle_started = now
        self._written_seq: dict[Executor, int] = {}
        self._sent: dict[Executor, float] = {}
        self._pending: dict[Executor, float] = {}
        self._pending_at: dict[Executor, float] = {}

    # -- results

    def _done(self) -> Reaction:
        reaction, self._r = self._r, Reaction()
        return reaction

    def _notice(self, level: str, text: str, expert: bool = False) -> None:
        self._r.notices.append(Notice(level, text, expert))

    @property
    def logged_in(self) -> bool:
        return self.phase == _READY

    def wakeup(self) -> float | None:
        """When :meth:`tick` must run next, or None when nothing is scheduled."""
        times = [since + self.timing.answer_timeout for since in self._awaiting.values()]
        times.extend(t for t in (self._keepalive_at, self._poll_at) if t is not None)
        times.extend(self._pending_at.values())
        return min(times) if times else None

    # -- console messages

    def received(self, text: str | bytes, now: float) -> Reaction:
        try:
            message = maweb.decode(text)
        except MawebDecodeError as error:
            self._r.bad.append(str(error))
            return self._done()
        if message.session is not None and not isinstance(message, maweb.ServerReady):
            self._session_id(message.session, now)
        if self._r.drop is not None:
            return self._done()
        if isinstance(message, maweb.ServerReady):
            self._server_ready(message.app_type, now)
        elif isinstance(message, maweb.SessionInfo):
            if message.force_login and message.session is not None and message.session > 0:
                self._login(now)
        elif isinstance(message, maweb.LoginResult):
            self._login_result(message.ok, now)
        elif isinstance(message, maweb.Playbacks):
            self._playbacks(message, now)
        elif isinstance(message, maweb.Response):
            if message.response_type not in maweb.RESPONSE_TYPES:
                self._r.bad.append(f"unknown responseType {message.response_type[:40]!r}")
        elif message.session is None:
            self._r.bad.append("a message with neither responseType nor session")
        return self._done()

    def _server_ready(self, app_type: str, now: float) -> None:
        if self.phase != _WAIT_READY:
            return
        if app_type not in (GMA2, DOT2):
            self._r.drop = f"the console reports appType {app_type!r}; only gma2 and dot2 work"
            return
        self.app_type = app_type
        self._awaiting.pop(_WAIT_READY, None)
        self._awaiting[_WAIT_SESSION] = now
        self.phase = _WAIT_SESSION
        self._r.send.append(maweb.session_request())
        missing = sorted(
            str(c) for c in self.state.inputs if not maweb.exists(app_type, c.exec_index)
        )
        if missing:
            self._notice("warn", f"a {app_type} console has no {', '.join(missing)}", True)
        readable = {(c.page_index, c.exec_index) for c in self.state.inputs}
        self._plan = maweb.plan_polls(app_type, readable)
        self._readers = {}
        for control in self.state.inputs:
            self._readers.setdefault((control.page_index, control.exec_index), []).append(control)

    def _session_id(self, session: int, now: float) -> None:
        if session == -1:
            self._r.drop = "the console refused the session: web remote disabled (session -1)"
        elif session < 0:
            self._r.drop = (
                f"the console refused the session: connection limit reached (session {session})"
            )
        elif session == 0:
            if self.session > 0:
                self._notice("warn", f"the console dropped session {self.session}; asking again")
                self._restart_session(now)
        elif session != self.session:
            if self.session > 0:
                self._notice("info", f"session id changed from {self.session} to {session}")
            self.session = session
            self._awaiting.pop(_WAIT_SESSION, None)
            if self._keepalive_at is None:
                self._keepalive_at = now + self.timing.keepalive
            if "playbacks" in self._awaiting:
                # the console may ignore a request made under the old id: ask again
                self._poll(now)

    def _restart_session(self, now: float) -> None:
        self.session = 0
        self.phase = _WAIT_SESSION
        self._awaiting = {_WAIT_SESSION: now}
        self._halt()
        self._r.send.append(maweb.session_request())

    def _halt(self) -> None:
        """Stop polling and writing until the next login answer."""
        self._poll_at = None
        self._pending.clear()
        self._pending_at.clear()

    def _login(self, now: float) -> None:
        user = "remote" if self.app_type == DOT2 else self._credentials.user
        self.phase = _WAIT_LOGIN
        self._awaiting.pop(_WAIT_SESSION, None)
        self._awaiting.pop("playbacks", None)
        self._awaiting[_WAIT_LOGIN] = now
        self._halt()
        self._r.send.append(maweb.login(user, self._credentials.hashed_password, self.session))

    def _login_result(self, ok: bool, now: float) -> None:
        if self.phase != _WAIT_LOGIN:
            return
        self._awaiting.pop(_WAIT_LOGIN, None)
        if not ok:
            self._r.drop = "login refused: wrong user or password"
            return
        self.phase = _READY
        self._r.logged_in = True
        self._notice("info", f"logged in to the {self.app_type} web remote")
        # the console may have restarted: it gets the latest fader values again
        self._sent.clear()
        for control, value in self.state.faders.items():
            self._fader(control, value, now)
        self._poll_next = 0
        if self._plan:
            self._poll(now)

    # -- input polling

    def _poll(self, now: float) -> None:
        if self._poll_next == 0:
            self._cycle_started = now
        self._poll_at = None
        self._poll_seq += 1
        self._awaiting["playbacks"] = now
        self._r.send.append(self._plan[self._poll_next].encode(self.session))

    def _playbacks(self, answer: maweb.Playbacks, now: float) -> None:
        if "playbacks" not in self._awaiting:
            return  # a late answer to a request that was asked again
        del self._awaiting["playbacks"]
        page_index = answer.page - 1
        for exec_index, seen in answer.executors.items():
            for control in self._readers.get((page_index, exec_index), ()):
                value = seen.fader if control.control == FADER else seen.running
                if value is None or self._written_seq.get(control, 0) > self._poll_seq:
                    continue
                if control in self._pending:
                    continue
                number = float(value)
                known = self.state.known.get(control)
                if known is None or abs(number - known) >= READ_RESOLUTION:
                    self.state.known[control] = number
                    self._r.events.append((control, number))
        self._poll_next = (self._poll_next + 1) % len(self._plan)
        if self._poll_next:
            self._poll(now)
        else:
            self._poll_at = max(now, self._cycle_started + self.timing.poll_interval)
            if self._poll_at <= now:
                self._poll(now)

    # -- output

    def output(self, control: Control, value: float, now: float) -> Reaction:
        """Send an output that :meth:`RemoteState.record` said the console must hear about."""
        if isinstance(control, Executor) and control.control == FADER:
            self._fader(control, value, now)
        elif isinstance(control, Executor):
            self._r.send.append(
                maweb.button_input(
                    control.page_index,
                    control.exec_index,
                    control.button_id(self.app_type),
                    value > PRESSED_ABOVE,
                    self.session,
                )
            )
        else:
            self._key(control.key, value > PRESSED_ABOVE)
        return self._done()

    def _key(self, key: KeyInfo, pressed: bool) -> None:
        mode = "remote" if self.app_type == DOT2 else self.state.cmdline
        if mode != "remote" and key.lua:
            self._r.send.append(maweb.hardkey(key, pressed, self.session))
        elif mode != "console" and key.remote:
            if (key.press and pressed) or (key.release and not pressed):
                self._r.send.append(maweb.keyname(key, pressed, self.session))
        elif pressed:
            self._notice(
                "warn", f"key {key.name} cannot be sent to a {self.app_type} in {mode} mode", True
            )

    def _fader(self, control: Executor, value: float, now: float) -> None:
        if self._sent.get(control) == value:
            # the console has it already; a value still waiting is outdated
            if control in self._pending:
                del self._pending[control]
                del self._pending_at[control]
            return
        if control in self._pending:
            self._pending[control] = value  # the latest value wins
            return
        due = self.state.fader_sent_at.get(control, -1e9) + self.state.fader_interval(
            self.timing, now
        )
        if now >= due:
            self._send_fader(control, value, now)
        else:
            self._pending[control] = value
            self._pending_at[control] = due

    def _send_fader(self, control: Executor, value: float, now: float) -> None:
        self._sent[control] = value
        self.state.fader_sent_at[control] = now
        # the next answers may still show the old value: ignore them until a poll sent later
        self._written_seq[control] = self._poll_seq + 1
        self.state.known[control] = round(value, 3)
        self._r.send.append(
            maweb.fader_input(control.page_index, control.exec_index, value, self.session)
        )

    # -- time

    def tick(self, now: float) -> Reaction:
        for what, since in self._awaiting.items():
            if now >= since + self.timing.answer_timeout:
                self._r.drop = (
                    f"the console did not answer ({what}) within {self.timing.answer_timeout:g} s"
                )
                return self._done()
        if self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = now + self.timing.keepalive
            if self.session > 0:
                self._r.send.append(maweb.keepalive(self.session))
        if self._poll_at is not None and now >= self._poll_at and self.logged_in:
            self._poll(now)
        for control, due in list(self._pending_at.items()):
            if now >= due:
                del self._pending_at[control]
                self._send_fader(control, self._pending.pop(control), now)
        return self._done()

    def goodbye(self) -> list[str]:
        """What to send before closing so that the console frees the remote slot."""
        return [maweb.close(self.session)] if self.session > 0 else []


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait after the n-th round of failed attempts: initial * factor**(n-1)."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 30.0


class Failover:
    """Which host to try next and after how long.

    A failed attempt (no connection, or refused before login) moves to the next host at once;
    only when every host failed in a row does the wait grow. A connection that was logged in
    and then dropped retries the same host first, after the initial wait.
    """

    def __init__(self, hosts: int, backoff: Backoff) -> None:
        self.hosts = hosts
        self.backoff = backoff
        self.host = 0
        self._tried = 0
        self._rounds = 0

    def logged_in(self) -> None:
        self._tried = 0
        self._rounds = 0

    def dropped(self) -> float:
        self._tried = 0
        return self.backoff.initial

    def failed(self) -> float:
        self.host = (self.host + 1) % self.hosts
        self._tried += 1
        if self._tried < self.hosts:
            return 0.0
        self._tried = 0
        self._rounds += 1
        wait = self.backoff.initial * self.backoff.factor ** (self._rounds - 1)
        return float(min(wait, self.backoff.maximum))
