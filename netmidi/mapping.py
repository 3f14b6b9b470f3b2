"""Mapping lines (``a > b``, ``a < b``, ``a <> b``) and multi-channel expressions.

A spec may hold several ``{1..16}`` / ``{16..1}`` / ``{a,b,c}`` groups; they expand like nested
loops with the rightmost group varying fastest, as in MIDIMonster.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
_LINE = re.compile(r"^\s*(\S+)\s*(<>|>|<)\s*(\S+)\s*$")
# Guard against a typo like {1..1000000} eating the machine's memory at start-up.
MAX_EXPANSION = 65536


class MappingError(ValueError):
    """A mapping line or spec that does not parse; the message says what was expected."""


def _group_values(body: str, spec: str) -> list[str]:
    match = _RANGE.match(body)
    if match:
        start, end = int(match.group(1)), int(match.group(2))
        step = 1 if end >= start else -1
        return [str(n) for n in range(start, end + step, step)]
    if "," in body:
        values = [part.strip() for part in body.split(",")]
        if all(values):
            return values
    raise MappingError(f"bad group {{{body}}} in {spec!r}: expected {{first..last}} or {{a,b,c}}")


def expand(spec: str) -> list[str]:
    """All channel specs a spec stands for, in order (rightmost group fastest)."""
    pieces = _GROUP.split(spec)
    literals, groups = pieces[0::2], pieces[1::2]
    if any(c in literal for literal in literals for c in "{}"):
        raise MappingError(f"unbalanced brace in {spec!r}: expected {{first..last}} or {{a,b,c}}")
    choices = [_group_values(body, spec) for body in groups]
    count = 1
    for values in choices:
        count *= len(values)
    if count > MAX_EXPANSION:
        raise MappingError(
            f"{spec!r} expands to {count} channels, expected at most {MAX_EXPANSION}"
        )
    results = []
    for combination in itertools.product(*choices):
        parts = [literals[0]]
        for value, literal in zip(combination, literals[1:], strict=True):
            parts += [value, literal]
        results.append("".join(parts))
    return results


def split_channel(spec: str) -> tuple[str, str]:
    """``instance.rest`` into its two parts."""
    instance, dot, rest = spec.partition(".")
    if not dot or not instance or not rest:
        raise MappingError(f"got {spec!r}, expected instance.channel")
    return instance, rest


@dataclass(frozen=True)
class MappingLine:
    """One parsed map item: the expanded specs of each side and which way events flow."""

    left: list[str]
    right: list[str]
    left_to_right: bool
    right_to_left: bool

    def pairs(self) -> list[tuple[str, str]]:
        """(left spec, right spec) pairs: same counts pair up, a side of one fans out or in."""
        if len(self.left) == len(self.right):
            return list(zip(self.left, self.right, strict=True))
        if len(self.left) == 1:
            return [(self.left[0], right) for right in self.right]
        if len(self.right) == 1:
            return [(left, self.right[0]) for left in self.left]
        raise MappingError(
            f"left side expands to {len(self.left)} channels and right side to"
            f" {len(self.right)}: expected the same count, or one side with exactly one channel"
        )


def parse_mapping(text: str) -> MappingLine:
    match = _LINE.match(text)
    if not match:
        raise MappingError(
            f"got {text!r}, expected 'a > b', 'a < b' or 'a <> b' (one spec on each side)"
        )
    left, operator, right = match.groups()
    line = MappingLine(
        expand(left), expand(right), operator in (">", "<>"), operator in ("<", "<>")
    )
    line.pairs()  # check the counts now, so every error of a line is found while parsing it
    return line
