"""grandMA2 / dot2 web remote messages: JSON text builders and parsers, and the command key table.

The web remote speaks JSON objects in websocket text frames (see docs/backends/maweb.rst). This
module turns requests into text and console text into small frozen message objects; it knows
nothing about sockets, time or sessions. Anything a console sends that does not have the expected
shape raises :class:`MawebDecodeError`, so the caller can count it and carry on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GMA2 = "gma2"
DOT2 = "dot2"

# playbacks itemsType / view values (MA's PlaybacksViewMode)
FADER_VIEW = 2
BUTTON_VIEW = 3
# execButtonViewMode: MA's fader window asks "short", its button window "extended"
SHORT = 1
EXTENDED = 2

_COMPACT = (",", ":")


# MA's request types: a response of one of these types is expected traffic
RESPONSE_TYPES = frozenset(
    "command keyname login encoder commandConfirmation commandConfirmationResult"
    " presetCommandConfirmation presetCommandConfirmationResult getdata presetTypes"
    " presetTypeList fixtureSheet channelSheet fixtureLayout executorSheet commandHistory pool"
    " pool_itemSelected playbacks playbacks_userInput close".split()
)


class MawebDecodeError(ValueError):
    """A console message that is not JSON or lacks the shape its type promises."""


# ---------------------------------------------------------------------------------------------
# Command keys


@dataclass(frozen=True)
class KeyInfo:
    """A command line key: its ``keyname`` id, Lua hardkey code (0 = none) and keyname flags.

    ``press``/``release`` say whether the web remote sends ``value:1`` on press and ``value:0``
    on release; a key with neither exists only as a console hardkey (reachable through Lua).
    """

    name: str
    lua: int = 0
    press: bool = False
    release: bool = False
    auto_submit: bool = False

    @property
    def remote(self) -> bool:
        return self.press or self.release


def _keys(*entries: tuple[str, int, int, int, int]) -> dict[str, KeyInfo]:
    return {
        name: KeyInfo(name, lua, bool(press), bool(release), bool(auto))
        for name, lua, press, release, auto in entries
    }


# MA's BasicCommandType (the web remote's own keys) with the gma2 hardkey codes of the
# gma.canbus.hardkey table; then the keys that exist only on the console.
KEYS: Mapping[str, KeyInfo] = _keys(
    ("PREV", 109, 0, 1, 0), ("SET", 108, 1, 0, 1), ("NEXT", 110, 0, 1, 0),
    ("TIME", 58, 1, 1, 0), ("EDIT", 55, 1, 1, 0), ("UPDATE", 57, 1, 1, 0),
    ("OOPS", 53, 1, 1, 0), ("ESC", 54, 1, 1, 0), ("CLEAR", 105, 1, 1, 0),
    ("0", 86, 1, 1, 0), ("1", 87, 1, 1, 0), ("2", 88, 1, 1, 0), ("3", 89, 1, 1, 0),
    ("4", 90, 1, 1, 0), ("5", 91, 1, 1, 0), ("6", 92, 1, 1, 0), ("7", 93, 1, 1, 0),
    ("8", 94, 1, 1, 0), ("9", 95, 1, 1, 0),
    ("PUNKT", 98, 1, 1, 0), ("ENTER", 106, 1, 1, 0), ("PLUS", 96, 1, 1, 0),
    ("MINUS", 97, 1, 1, 0), ("THRU", 102, 1, 1, 0), ("IF", 103, 1, 1, 0),
    ("AT", 104, 1, 1, 0), ("FULL", 99, 1, 1, 0), ("MA", 68, 0, 1, 0),
    ("HIGH", 100, 1, 1, 1), ("SOLO", 101, 1, 1, 1), ("SELECT", 42, 1, 1, 0),
    ("OFF", 43, 1, 1, 0), ("ON", 46, 1, 1, 0), ("ASSIGN", 63, 1, 1, 0),
    ("LABEL", 0, 1, 1, 0), ("COPY", 73, 1, 1, 0), ("DELETE", 69, 1, 1, 0),
    ("STORE", 59, 1, 1, 0), ("GOTO", 56, 1, 1, 0), ("PAGE", 70, 1, 1, 0),
    ("MACRO", 71, 1, 1, 0), ("PRESET", 72, 1, 1, 0), ("SEQU", 74, 1, 1, 0),
    ("CUE", 75, 1, 1, 0), ("EXEC", 76, 1, 1, 0), ("FIXTURE", 83, 1, 1, 0),
    ("GROUP", 84, 1, 1, 0), ("GO_MINUS", 10, 1, 1, 0), ("PAUSE", 9, 1, 1, 0),
    ("GO_PLUS", 11, 1, 1, 0),
    ("FIXTURE_CHANNEL", 0, 1, 1, 0), ("FIXTURE_GROUP_PRESET", 0, 1, 1, 0),
    ("EXEC_CUE", 0, 1, 1, 0), ("STORE_UPDATE", 0, 1, 1, 0), ("PROG_ONLY", 0, 1, 1, 1),
    ("SPECIAL_DIALOGUE", 0, 1, 1, 0), ("ODD", 0, 1, 1, 0), ("EVEN", 0, 1, 1, 0),
    ("WINGS", 0, 1, 1, 0), ("RESET", 0, 1, 1, 0),
    # the web remote's view toggles
    ("layerMode", 0, 1, 1, 0), ("featureSort", 0, 1, 1, 0), ("fixtureSort", 0, 1, 1, 0),
    ("channelSort", 0, 1, 1, 0), ("hideName", 0, 1, 1, 0),
    # console hardkeys only (Lua, gma2)
    ("CHPGPLUS", 3, 0, 0, 0), ("CHPGMINUS", 4, 0, 0, 0), ("FDPGPLUS", 5, 0, 0, 0),
    ("FDPGMINUS", 6, 0, 0, 0), ("BTPGPLUS", 7, 0, 0, 0), ("BTPGMINUS", 8, 0, 0, 0),
    *((f"X{n}", 11 + n, 0, 0, 0) for n in range(1, 21)),
    *((f"V{n}", 119 + n, 0, 0, 0) for n in range(1, 11)),
    ("NIPPLE", 40, 0, 0, 0), ("TOOLS", 119, 0, 0, 0), ("SETUP", 118, 0, 0, 0),
    ("BACKUP", 117, 0, 0, 0), ("BLIND", 60, 0, 0, 0), ("FREEZE", 61, 0, 0, 0),
    ("PREVIEW", 62, 0, 0, 0), ("FIX", 41, 0, 0, 0), ("TEMP", 44, 0, 0, 0),
    ("TOP", 45, 0, 0, 0), ("VIEW", 66, 0, 0, 0), ("EFFECT", 67, 0, 0, 0),
    ("CHANNEL", 82, 0, 0, 0), ("MOVE", 85, 0, 0, 0), ("BLACKOUT", 65, 0, 0, 0),
    ("PLEASE", 106, 0, 0, 0), ("LIST", 32, 0, 0, 0), ("USER1", 33, 0, 0, 0),
    ("USER2", 34, 0, 0, 0), ("ALIGN", 64, 0, 0, 0), ("HELP", 116, 0, 0, 0),
    ("UP", 107, 0, 0, 0), ("DOWN", 111, 0, 0, 0), ("FASTREVERSE", 47, 0, 0, 0),
    ("LEARN", 48, 0, 0, 0), ("FASTFORWARD", 49, 0, 0, 0), ("GO_MINUS_SMALL", 50, 0, 0, 0),
    ("PAUSE_SMALL", 51, 0, 0, 0), ("GO_PLUS_SMALL", 52, 0, 0, 0),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Requests (client -> console)


def password_hash(password: str) -> str:
    """What the console expects instead of the password: lower-case hex MD5 of its UTF-8."""
    return hashlib.md5(password.encode("utf-8")).hexdigest()


def _dump(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=_COMPACT)


def session_request() -> str:
    """Ask for a session id (sent after ``server ready``)."""
    return '{"session":0}'


def keepalive(session: int) -> str:
    """The bare session message the console needs at least every 10 s."""
    return _dump({"session": session})


def login(username: str, hashed_password: str, session: int) -> str:
    return _dump(
        {
            "requestType": "login",
            "username": username,
            "password": hashed_password,
            "session": session,
            "maxRequests": 10,
        }
    )


def close(session: int) -> str:
    """Log out, freeing one of the console's few remote slots."""
    return _dump({"requestType": "close", "session": session, "maxRequests": 0})


@dataclass(frozen=True)
class PlaybacksRequest:
    """One ``playbacks`` poll: one page, one view, item groups given by 0-based start/count."""

    page_index: int
    view: int
    starts: tuple[int, ...]
    counts: tuple[int, ...]
    types: tuple[int, ...]

    def encode(self, session: int) -> str:
        return _dump(
            {
                "requestType": "playbacks",
                "startIndex": list(self.starts),
                "itemsCount": list(self.counts),
                "pageIndex": self.page_index,
                "itemsType": list(self.types),
                "view": self.view,
                "execButtonViewMode": EXTENDED if self.view == BUTTON_VIEW else SHORT,
                "buttonsViewMode": 0,
                "session": session,
                "maxRequests": 1,
            }
        )


def fader_input(page_index: int, exec_index: int, value: float, session: int) -> str:
    return _dump(
        {
            "requestType": "playbacks_userInput",
            "execIndex": exec_index,
            "pageIndex": page_index,
            "faderValue": round(value, 6),
            "type": 1,
            "session": session,
            "maxRequests": 0,
        }
    )


def button_input(
    page_index: int, exec_index: int, button_id: int, pressed: bool, session: int
) -> str:
    return _dump(
        {
            "requestType": "playbacks_userInput",
            "cmdline": "",
            "execIndex": exec_index,
            "pageIndex": page_index,
            "buttonId": button_id,
            "pressed": pressed,
            "released": not pressed,
            "type": 0,
            "session": session,
            "maxRequests": 0,
        }
    )


def keyname(key: KeyInfo, pressed: bool, session: int) -> str:
    """A key of the remote's own command line (``autoSubmit`` only when the key has it)."""
    message: dict[str, Any] = {"keyname": key.name, "value": 1 if pressed else 0}
    if key.auto_submit:
        message["autoSubmit"] = True
    message.update(requestType="keyname", session=session, maxRequests=0)
    return _dump(message)


def hardkey(key: KeyInfo, pressed: bool, session: int) -> str:
    """A console hardkey through Lua (gma2 only; the user needs the rights for Lua)."""
    state = "true" if pressed else "false"
    command = f"LUA 'gma.canbus.hardkey({key.lua}, {state}, false)'"
    return _dump({"command": command, "session": session, "requestType": "command"})


# ---------------------------------------------------------------------------------------------
# Console messages (console -> client)


@dataclass(frozen=True, kw_only=True)
class Message:
    """Any console message; ``session`` is set when it carries a numeric session id."""

    session: int | None = None


@dataclass(frozen=True, kw_only=True)
class ServerReady(Message):
    app_type: str


@dataclass(frozen=True, kw_only=True)
class SessionInfo(Message):
    """A session message: a new id (``force_login``), a keepalive answer, or an error id < 0."""

    force_login: bool = False
    limit_reached: bool = False


@dataclass(frozen=True, kw_only=True)
class LoginResult(Message):
    ok: bool


@dataclass(frozen=True)
class ExecState:
    """What one poll says about one executor; None where the answer does not show it."""

    fader: float | None
    running: bool | None


@dataclass(frozen=True, kw_only=True)
class Playbacks(Message):
    """A ``playbacks`` answer: 1-based page and the state by 0-based executor index."""

    page: int
    executors: Mapping[int, ExecState]


@dataclass(frozen=True, kw_only=True)
class Response(Message):
    """Any other typed response (command line echo, userInput acknowledgements, ...)."""

    response_type: str


ConsoleMessage = ServerReady | SessionInfo | LoginResult | Playbacks | Response | Message


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MawebDecodeError(f"{what} is {type(value).__name__}, expected a number")
    return float(value)


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MawebDecodeError(f"{what} is {type(value).__name__}, expected a whole number")
    return value


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MawebDecodeError(f"{what} is {type(value).__name__}, expected an object")
    return value


def _array(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MawebDecodeError(f"{what} is {type(value).__name__}, expected an array")
    return value


def _fader_of(block: object) -> float | None:
    fader = _object(block, "executor block").get("fader")
    if fader is None:
        return None
    return _number(_object(fader, "fader").get("v"), "fader.v")


def _executor(item: object, into: dict[int, ExecState]) -> None:
    """One executor object; a wide executor (combinedItems > 1) fills one index per block."""
    executor = _object(item, "executor")
    first = _integer(executor.get("iExec"), "iExec")
    run = executor.get("isRun")
    running = None if run is None else bool(_integer(run, "isRun"))
    if "executorBlocks" in executor:
        blocks = _array(executor["executorBlocks"], "executorBlocks")
    elif "bottomButtons" in executor:
        buttons = _object(executor["bottomButtons"], "bottomButtons")
        blocks = _array(buttons.get("items", []), "bottomButtons.items")
    else:
        blocks = [{}]  # an unassigned button executor
    for offset, block in enumerate(blocks or [{}]):
        into[first + offset] = ExecState(_fader_of(block), running)


def _playbacks(message: dict[str, Any], session: int | None) -> Playbacks:
    page = _integer(message.get("iPage"), "iPage")
    executors: dict[int, ExecState] = {}
    for group in _array(message.get("itemGroups"), "itemGroups"):
        for block in _array(_object(group, "item group").get("items"), "items"):
            for item in _array(block, "item block"):
                _executor(item, executors)
    return Playbacks(session=session, page=page, executors=executors)


def decode(text: str | bytes) -> ConsoleMessage:
    """Parse one console text frame; raise :class:`MawebDecodeError` for anything malformed."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise MawebDecodeError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise MawebDecodeError(f"a JSON {type(message).__name__}, expected an object")
    session = message.get("session")
    if session is not None:
        session = _integer(session, "session")
    response_type = message.get("responseType")
    if response_type == "playbacks":
        return _playbacks(message, session)
    if response_type == "login":
        return LoginResult(session=session, ok=message.get("result") is True)
    if isinstance(response_type, str):
        return Response(session=session, response_type=response_type)
    if response_type is not None:
        raise MawebDecodeError("responseType is not text")
    if "status" in message and "appType" in message:
        app_type = message["appType"]
        if not isinstance(app_type, str):
            raise MawebDecodeError("appType is not text")
        return ServerReady(session=session, app_type=app_type)
    if session is not None:
        return SessionInfo(
            session=session,
            force_login=message.get("forceLogin") is True,
            limit_reached="connections_limit_reached" in message,
        )
    return Message()


# ---------------------------------------------------------------------------------------------
# Executor addressing and poll planning

FADER_EXECUTORS = {GMA2: range(0, 90), DOT2: range(0, 22)}
BUTTON_EXECUTORS = {
    GMA2: (range(100, 190),),
    DOT2: (range(100, 122), range(200, 222), *(range(h, h + 16) for h in range(300, 900, 100))),
}


def exists(app_type: str, exec_index: int) -> bool:
    """Whether a console of this type has the executor (0-based index, buttons from 100)."""
    if exec_index in FADER_EXECUTORS[app_type]:
        return True
    return any(exec_index in row for row in BUTTON_EXECUTORS[app_type])


def plan_polls(app_type: str, executors: set[tuple[int, int]]) -> list[PlaybacksRequest]:
    """The ``playbacks`` requests that cover exactly the (page index, exec index) pairs given.

    gma2 answers in blocks of 5 executors, one view per request (faders, or buttons from 101).
    dot2 answers executor by executor; its fader view also carries the two button rows
    101-122 and 201-222, but only when a fader group is part of the request, so one is added.
    """
    by_page: dict[int, list[int]] = {}
    for page_index, exec_index in sorted(executors):
        by_page.setdefault(page_index, []).append(exec_index)
    requests = []
    for page_index, indices in by_page.items():
        if app_type == GMA2:
            for view, chosen in (
                (FADER_VIEW, [i for i in indices if i < 100]),
                (BUTTON_VIEW, [i for i in indices if i >= 100]),
            ):
                if chosen:
                    start = chosen[0] // 5 * 5
                    count = ((chosen[-1] - start) // 5 + 1) * 5
                    requests.append(PlaybacksRequest(page_index, view, (start,), (count,), (view,)))
            continue
        for view, chosen in (
            (FADER_VIEW, [i for i in indices if i < 300]),
            (BUTTON_VIEW, [i for i in indices if i >= 300]),
        ):
            if not chosen:
                continue
            rows: dict[int, list[int]] = {}
            for index in chosen:
                rows.setdefault(index // 100, []).append(index)
            if view == FADER_VIEW and 0 not in rows:
                rows[0] = [0]
            groups = [
                (row[0], row[-1] - row[0] + 1, hundred) for hundred, row in sorted(rows.items())
            ]
            requests.append(
                PlaybacksRequest(
                    page_index,
                    view,
                    tuple(start for start, _, _ in groups),
                    tuple(count for _, count, _ in groups),
                    tuple(FADER_VIEW if h == 0 else BUTTON_VIEW for _, _, h in groups),
                )
            )
    return requests
