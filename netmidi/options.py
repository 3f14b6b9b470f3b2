"""Typed option declarations for backends and instances.

Each backend declares its options as a table of :class:`Option`; the show-file loader checks
every value against it and reports what was expected, so backends receive parsed values only.
A parser takes the YAML value and returns the parsed value or raises :class:`OptionError` whose
message says what was expected.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class OptionError(ValueError):
    """A value did not parse; the message says what was expected (no location)."""


@dataclass(frozen=True)
class Option(Generic[T]):
    """One option: how to parse it, its default, and a line of help for the docs."""

    parse: Callable[[Any], T]
    default: T | None = None
    help: str = ""
    required: bool = False


def describe(value: object) -> str:
    """A value as the user wrote it, for error messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, str) else str(value)


def integer(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise OptionError(f"got {describe(value)}, expected a whole number {lo}-{hi}")
        try:
            number = int(value, 0) if isinstance(value, str) else value
        except ValueError:
            raise OptionError(f"got {describe(value)}, expected a whole number {lo}-{hi}") from None
        if not lo <= number <= hi:
            raise OptionError(f"got {number}, expected a whole number {lo}-{hi}")
        return number

    return parse


def number(lo: float, hi: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise OptionError(f"got {describe(value)}, expected a number {lo}-{hi}")
        try:
            result = float(value)
        except ValueError:
            raise OptionError(f"got {describe(value)}, expected a number {lo}-{hi}") from None
        if not lo <= result <= hi:
            raise OptionError(f"got {describe(value)}, expected a number {lo}-{hi}")
        return result

    return parse


_TRUE = {"on", "yes", "true", "1", "enable", "enabled"}
_FALSE = {"off", "no", "false", "0", "disable", "disabled"}


def flag(value: Any) -> bool:
    """on/off in any of the spellings a technician might type."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionError(f"got {describe(value)}, expected on or off")


def choice(*choices: str) -> Callable[[Any], str]:
    """One of a fixed set of words; YAML's on/off booleans count as the words 'on'/'off'."""

    def parse(value: Any) -> str:
        text = ("on" if value else "off") if isinstance(value, bool) else str(value).strip().lower()
        if text not in choices:
            raise OptionError(f"got {describe(value)}, expected one of: {', '.join(choices)}")
        return text

    return parse


def text(max_bytes: int | None = None, allow_empty: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if isinstance(value, (dict, list)) or value is None:
            raise OptionError(f"got {describe(value)}, expected text")
        result = str(value)
        if not result and not allow_empty:
            raise OptionError("got an empty value, expected text")
        if max_bytes is not None and len(result.encode("utf-8")) > max_bytes:
            raise OptionError(f"got {describe(result)}, expected at most {max_bytes} UTF-8 bytes")
        return result

    return parse


def listof(item: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    """A YAML list, or one value standing for a list of one."""

    def parse(value: Any) -> list[T]:
        items = value if isinstance(value, list) else [value]
        return [item(v) for v in items]

    return parse


def uuid_value(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise OptionError(
            f"got {describe(value)}, expected a UUID like 5b9f7ac2-0c4e-4c55-9f3f-2a1e8a1c0d11"
        ) from None


@dataclass(frozen=True)
class HostPort:
    """An address and port, as written ``host port``, ``host:port`` or ``[v6addr]:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def host_port(default_port: int | None = None) -> Callable[[Any], HostPort]:
    """Parse ``host [port]``; the port may be left out when there is a default."""
    expected = "expected 'host port'" if default_port is None else "expected 'host [port]'"

    def parse(value: Any) -> HostPort:
        if not isinstance(value, str) or not value.strip():
            raise OptionError(f"got {describe(value)}, {expected}")
        words = value.split()
        host, port_text = words[0], words[1] if len(words) > 1 else None
        if len(words) > 2:
            raise OptionError(f"got {describe(value)}, {expected}")
        if port_text is None and host.startswith("[") and "]:" in host:
            host, port_text = host[1:].split("]:", 1)
        elif port_text is None and host.count(":") == 1:
            host, port_text = host.split(":")
        host = host.strip("[]")
        if port_text is None:
            if default_port is None:
                raise OptionError(f"got {describe(value)}, {expected}")
            port = default_port
        else:
            port = integer(0, 65535)(port_text)
        return HostPort(host, port)

    return parse


def ip_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise OptionError(f"got {describe(value)}, expected an IPv4 or IPv6 address") from None


def parse_options(
    table: Mapping[str, Option[Any]], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse ``given`` against ``table``: (parsed values with defaults, errors by key)."""
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in given.items():
        option = table.get(key)
        if option is None:
            known = ", ".join(sorted(table)) or "none"
            errors[key] = f"unknown option, expected one of: {known}"
            continue
        try:
            parsed[key] = option.parse(value)
        except OptionError as error:
            errors[key] = str(error)
    for key, option in table.items():
        if key in parsed or key in errors:
            continue
        if option.required:
            errors[key] = "missing, this option is required"
        else:
            parsed[key] = option.default
    return parsed, errors
