"""Reading show files: YAML with the file and line of every key kept, includes, and overrides.

This module only reads. It turns one show file and the files it includes into a
:class:`ShowDocument` whose every value knows where it was written, so that later checks can
report ``file:line: key: what was expected``. Checking values against backends is
:mod:`netmidi.show`'s job.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from netmidi.options import describe


@dataclass(frozen=True)
class Where:
    """A place in a show file (line is 1-based), or on the command line (line 0)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Located:
    """A value and where it was written."""

    value: Any
    where: Where


class ShowErrors(Exception):
    """Every problem found in a show file, each one line: ``file:line: key: expected ...``."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def error_line(where: Where, key: str, message: str) -> str:
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"


@dataclass
class ShowDocument:
    """The merged content of a show file and its includes, with locations."""

    # backend name -> option -> located value
    backends: dict[str, dict[str, Located]] = field(default_factory=dict)
    backend_where: dict[str, Where] = field(default_factory=dict)
    # instance name -> option -> located value ("backend" among them)
    instances: dict[str, dict[str, Located]] = field(default_factory=dict)
    instance_where: dict[str, Where] = field(default_factory=dict)
    mappings: list[Located] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    # Problems found in option values (each such value is INVALID), reported with the later ones.
    errors: list[str] = field(default_factory=list)


class _Invalid:
    """The value of an option whose problem is already reported: later checks skip it."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


TOP_LEVEL_KEYS = ("include", "backends", "instances", "map")
# Instance names stay clear of the map syntax: dots, braces, arrows, commas, spaces.
INSTANCE_NAME = re.compile(r"\w[\w-]*")

_TAG = "tag:yaml.org,2002:"
# Scalars are typed as YAML 1.1 types them; a date-like value stays the text it was written as.
_SCALAR_TYPES = {f"{_TAG}{name}" for name in ("str", "null", "bool", "int", "float")}
_TEXT_TYPES = {f"{_TAG}str", f"{_TAG}timestamp"}
_PLAIN_TAGS = _SCALAR_TYPES | _TEXT_TYPES | {f"{_TAG}seq", f"{_TAG}map"}
# Aliases let a few lines stand for millions of values, and nesting can be arbitrarily deep:
# no hand-written show comes near these limits, so reaching one is a mistake worth reporting.
MAX_VALUES = 100_000
MAX_DEPTH = 32

_constructor = yaml.SafeLoader("")


def _shape(node: Node) -> str:
    """What a node holds, for messages: a YAML tag, 'a list', 'a mapping' or the text."""
    if node.tag not in _PLAIN_TAGS:
        return f"YAML tag {_tag_name(node.tag)}"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "nothing" if node.tag == f"{_TAG}null" else describe(node.value)


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


class _NodeReader:
    """Turns YAML nodes into plain values; every problem becomes one line naming its key.

    Only plain YAML is accepted: no tags beyond the standard scalar types (so no
    ``!!python/...``), no alias that contains itself, and a bounded number of values.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        self.values_left = MAX_VALUES
        self.value_errors = 0  # how many of the errors are in option values
        self._merging: set[int] = set()  # mappings being merged with '<<', against self-merges

    def where(self, node: Node) -> Where:
        raise NotImplementedError

    def error(self, node: Node, key: str, message: str) -> None:
        self.errors.append(error_line(self.where(node), key, message))

    def spend(self, node: Node, key: str) -> bool:
        """Count one value against :data:`MAX_VALUES`; False (reported once) when over."""
        self.values_left -= 1
        if self.values_left == -1:
            self.error(
                node,
                key,
                f"aliases expand to more than {MAX_VALUES} values, expected a smaller show",
            )
        return self.values_left >= 0

    def mapping_items(self, node: Node, key: str, what: str) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) of a mapping, with '<<' merges resolved.

        Nothing (an empty section) is an empty mapping. Keys are the text as written, so
        ``on:`` or ``1:`` name 'on' and '1'. A key given twice is an error; a merged key is
        overridden by the mapping's own.
        """
        if isinstance(node, ScalarNode) and node.tag == f"{_TAG}null":
            return []
        if not isinstance(node, MappingNode) or node.tag != f"{_TAG}map":
            self.error(node, key, f"got {_shape(node)}, expected {what}")
            return []
        items: list[tuple[str, Node, Node]] = []
        seen: dict[str, Node] = {}
        merged: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not self.spend(key_node, key):
                return items
            if key_node.tag == f"{_TAG}merge":
                merged += self.merged_items(value_node, key, what)
                continue
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, key, f"got {_shape(key_node)} as a key, expected a name")
                continue
            name = str(key_node.value)
            if name in seen:
                first = seen[name].start_mark.line + 1
                self.error(
                    key_node,
                    f"{key}.{name}" if key else name,
                    f"defined twice (first at line {first}), expected each name once",
                )
                continue
            seen[name] = key_node
            items.append((name, key_node, value_node))
        for name, key_node, value_node in merged:
            if name not in seen:  # the mapping's own keys, then earlier merges, take precedence
                seen[name] = key_node
                items.append((name, key_node, value_node))
        return items

    def merged_items(self, node: Node, key: str, what: str) -> list[tuple[str, Node, Node]]:
        """The items that ``<<: *anchor`` or ``<<: [*a, *b]`` bring into a mapping."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        items: list[tuple[str, Node, Node]] = []
        for source in sources:
            if id(source) in self._merging:
                self.error(source, key, "'<<' merges a mapping into itself, expected another one")
                continue
            self._merging.add(id(source))
            try:
                items += self.mapping_items(source, key, what)
            finally:
                self._merging.discard(id(source))
        return items

    def value_or_invalid(self, node: Node, key: str) -> Any:
        """An option's value, or :data:`INVALID` once its problems are reported."""
        before = len(self.errors)
        value = self.value(node, key)
        if len(self.errors) == before:
            return value
        self.value_errors += len(self.errors) - before
        return INVALID

    def value(self, node: Node, key: str, inside: tuple[int, ...] = ()) -> Any:
        """A node as plain Python data for an option value (None where it is reported bad)."""
        if not self.spend(node, key):
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, key)
        if id(node) in inside:
            self.error(node, key, "an alias contains itself, expected a value that ends")
            return None
        if len(inside) >= MAX_DEPTH:
            self.error(node, key, f"nested more than {MAX_DEPTH} levels deep, expected less")
            return None
        inside += (id(node),)
        if isinstance(node, SequenceNode) and node.tag == f"{_TAG}seq":
            return [self.value(item, key, inside) for item in node.value]
        if isinstance(node, MappingNode):
            return {
                name: self.value(value_node, f"{key}.{name}", inside)
                for name, _, value_node in self.mapping_items(node, key, "a plain mapping")
            }
        self.error(node, key, f"got {_shape(node)}, expected a plain list")
        return None

    def scalar(self, node: ScalarNode, key: str) -> Any:
        if node.tag in _TEXT_TYPES:
            return str(node.value)
        if node.tag not in _SCALAR_TYPES:
            self.error(node, key, f"got {_shape(node)}, expected text, a number or on/off")
            return None
        try:
            return _constructor.yaml_constructors[node.tag](_constructor, node)
        except (yaml.YAMLError, ValueError, KeyError):  # e.g. '!!int x': int() fails
            self.error(node, key, f"got {_shape(node)}, expected a {_tag_name(node.tag)} value")
            return None


class _FileReader(_NodeReader):
    """Reads one file's nodes into the document, recursing into includes."""

    def __init__(self, document: ShowDocument, errors: list[str]) -> None:
        super().__init__(errors)
        self.document = document
        self.stack: list[str] = []  # file names as shown to the user
        self.real_stack: list[str] = []  # the same files as real paths, for cycle detection
        self.done: set[str] = set()

    def where(self, node: Node) -> Where:
        return Where(self.stack[-1], node.start_mark.line + 1)

    def read(self, path: str, display: str, included_from: Node | None) -> None:
        real = os.path.realpath(path)
        if real in self.real_stack:
            if included_from is not None:
                chain = " -> ".join([*self.stack, display])
                self.error(
                    included_from,
                    "include",
                    f"include cycle: {chain}, expected no file to include itself",
                )
            return
        if real in self.done:
            return
        text = self.text(path, display, included_from)
        if text is None:
            return
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as error:
            self.errors.append(_syntax_error(display, text, error))
            return
        except RecursionError:
            self.errors.append(f"{display}: YAML syntax: nested too deeply, expected less nesting")
            return
        self.stack.append(display)
        self.document.files.append(display)
        self.real_stack.append(real)
        try:
            if root is not None:
                self.read_root(root, os.path.dirname(path))
        finally:
            self.stack.pop()
            self.real_stack.pop()
            self.done.add(real)

    def text(self, path: str, display: str, included_from: Node | None) -> str | None:
        """A show file's text, or None with the problem reported."""
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a directory, or /dev/zero: never read
                raise IsADirectoryError(errno.EISDIR, "not a regular file")
            with open(path, "rb") as stream:
                data = stream.read()
        except OSError as error:
            problem = f"{error.strerror}, expected a show file"
            if included_from is None:
                self.errors.append(f"{display}: cannot read: {problem}")
            else:
                self.error(included_from, "include", f"cannot read {display}: {problem}")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            byte = data[error.start]
            self.errors.append(
                f"{display}:{line}: byte 0x{byte:02X} is not UTF-8, expected a file saved as UTF-8"
            )
            return None

    def read_root(self, root: Node, directory: str) -> None:
        items = self.mapping_items(root, "", "a mapping with keys " + ", ".join(TOP_LEVEL_KEYS))
        by_key = {name: (key_node, value) for name, key_node, value in items}
        for name, key_node, _ in items:
            if name not in TOP_LEVEL_KEYS:
                self.error(
                    key_node, name, "unknown section, expected one of: " + ", ".join(TOP_LEVEL_KEYS)
                )
        if "include" in by_key:
            self.read_includes(by_key["include"][1], directory)
        if "backends" in by_key:
            self.read_backends(by_key["backends"][1])
        if "instances" in by_key:
            self.read_instances(by_key["instances"][1])
        if "map" in by_key:
            self.read_map(by_key["map"][1])

    def read_includes(self, node: Node, directory: str) -> None:
        for entry in self.items(node, "include", "a file name or a list of file names"):
            if not isinstance(entry, ScalarNode) or entry.tag == f"{_TAG}null" or not entry.value:
                self.error(entry, "include", f"got {_shape(entry)}, expected a file name")
                continue
            target = os.path.join(directory, os.path.expanduser(entry.value))
            display = target if os.path.isabs(entry.value) else os.path.relpath(target)
            self.read(target, display, entry)

    def items(self, node: Node, key: str, what: str) -> list[Node]:
        """The items of a list (one value stands for a list of one; nothing for none)."""
        if isinstance(node, ScalarNode) and node.tag == f"{_TAG}null":
            return []
        if isinstance(node, SequenceNode) and node.tag == f"{_TAG}seq":
            return list(node.value)
        if isinstance(node, ScalarNode):
            return [node]
        self.error(node, key, f"got {_shape(node)}, expected {what}")
        return []

    def options(self, node: Node, key: str, what: str) -> dict[str, Located]:
        options: dict[str, Located] = {}
        for name, key_node, value_node in self.mapping_items(node, key, what):
            value = self.value_or_invalid(value_node, f"{key}.{name}")
            options[name] = Located(value, self.where(key_node))
        return options

    def read_backends(self, node: Node) -> None:
        for name, key_node, value_node in self.mapping_items(
            node, "backends", "a mapping of backend names to options"
        ):
            options = self.options(
                value_node, f"backends.{name}", "a mapping of option names to values"
            )
            # An including file is read after its includes, so its values override theirs.
            self.document.backends.setdefault(name, {}).update(options)
            self.document.backend_where.setdefault(name, self.where(key_node))

    def read_instances(self, node: Node) -> None:
        for name, key_node, value_node in self.mapping_items(
            node, "instances", "a mapping of instance names to options"
        ):
            key = f"instances.{name}"
            if name in self.document.instances:
                first = self.document.instance_where[name]
                self.error(
                    key_node, key, f"defined twice (first at {first}), expected each name once"
                )
                continue
            if not INSTANCE_NAME.fullmatch(name):
                self.error(
                    key_node,
                    key,
                    "expected a name of letters, digits, '-' and '_' (no dots or spaces)",
                )
                continue
            self.document.instances[name] = self.options(
                value_node, key, "a mapping with at least 'backend'"
            )
            self.document.instance_where[name] = self.where(key_node)

    def read_map(self, node: Node) -> None:
        for item in self.items(node, "map", "a list of map lines like '- a.ch0.cc7 > b.1'"):
            if (
                not isinstance(item, ScalarNode)
                or item.tag not in _TEXT_TYPES
                or not item.value.strip()
            ):
                self.error(
                    item,
                    "map",
                    f"got {_shape(item)}, expected a map line like 'a.ch0.cc7 > b.1'"
                    " (quote it if it has ':' or '#')",
                )
                continue
            self.document.mappings.append(Located(item.value, self.where(item)))


def _syntax_error(display: str, text: str, error: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where it was found, and what PyYAML expected."""
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        problem = f"special character U+{error.character:04X}, expected printable text"
        return error_line(Where(display, line), "", f"YAML syntax: {problem}")
    if not isinstance(error, yaml.MarkedYAMLError):
        return f"{display}: YAML syntax: {str(error).splitlines()[0]}"
    mark = error.problem_mark or error.context_mark
    problem = error.problem or "invalid YAML"
    context = error.context
    if context and error.context_mark is not None and error.context_mark is not mark:
        if error.context_mark.line != (mark.line if mark else -1):
            context += f" at line {error.context_mark.line + 1}"
    if context:
        problem = f"{context}: {problem}"
    if "<block end>" in problem or "mapping values are not allowed" in problem:
        problem += " (check the indentation)"
    return error_line(Where(display, mark.line + 1 if mark else 0), "", f"YAML syntax: {problem}")


class _CommandLineReader(_NodeReader):
    """Reads an override's value; its problems are located on the command line."""

    def __init__(self, errors: list[str], where: Where) -> None:
        super().__init__(errors)
        self.place = where

    def where(self, node: Node) -> Where:
        return self.place


def _override_value(text: str, key: str, where: Where, errors: list[str]) -> Any:
    """A command-line value, typed as YAML would type it ('100' is a number, '*' stays text)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return text
    value = None if node is None else _CommandLineReader(errors, where).value_or_invalid(node, key)
    return text if value is None and text.strip() else value


def apply_overrides(
    document: ShowDocument, overrides: list[tuple[str, str]], errors: list[str]
) -> None:
    """Apply ``-b backend.option=value`` and ``-i instance.option=value`` from the command line."""
    for kind, text in overrides:
        flag = "-b" if kind == "backend" else "-i"
        where = Where(f"command line {flag} {text}", 0)
        target, sep, value = text.partition("=")
        name, dot, option = target.strip().partition(".")
        if not sep or not dot or not name or not option:
            errors.append(f"{where}: expected {flag} {kind}.option=value")
            continue
        if kind == "instance" and name not in document.instances:
            known = ", ".join(sorted(document.instances)) or "none"
            errors.append(f"{where}: no instance named {name!r}, expected one of: {known}")
            continue
        key = f"{kind}s.{name}.{option}"
        located = Located(_override_value(value.strip(), key, where, errors), where)
        if kind == "backend":
            document.backends.setdefault(name, {})[option] = located
            document.backend_where.setdefault(name, where)
        else:
            document.instances[name][option] = located


def read_show(path: str, overrides: list[tuple[str, str]] | None = None) -> ShowDocument:
    """Read a show file and its includes, then apply the command-line overrides.

    A problem in an option's value is kept in ``document.errors`` (the value is INVALID), so that
    the checks against the backends still report theirs. Any other problem (an unreadable file,
    YAML syntax, a section of the wrong shape) raises :class:`ShowErrors` at once: what follows
    from it (instances missing, say) would only repeat it in confusing ways.
    """
    document = ShowDocument()
    reader = _FileReader(document, document.errors)
    reader.read(path, path, None)
    if len(document.errors) > reader.value_errors:
        raise ShowErrors(document.errors)
    apply_overrides(document, overrides or [], document.errors)
    return document
