"""Reading show files: YAML with the file and line of every key kept, includes, and overrides.

This module only reads. It turns one show file and the files it includes into a
:class:`ShowDocument` whose every value knows where it was written, so that later checks can
report ``file:line: key: what was expected``. Checking values against backends is
:mod:`netmidi.show`'s job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


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


TOP_LEVEL_KEYS = ("include", "backends", "instances", "map")

_scalar_constructor = yaml.SafeLoader(b"")


def _plain(node: Node, name: str, errors: list[str]) -> Any:
    """A YAML node as plain Python data, for option values (locations of the parts are lost)."""
    if isinstance(node, ScalarNode):
        try:
            return _scalar_constructor.construct_object(node, deep=True)
        except ConstructorError as error:
            where = Where(name, node.start_mark.line + 1)
            errors.append(error_line(where, "", f"bad value: {error.problem}"))
            return None
    if isinstance(node, SequenceNode):
        return [_plain(item, name, errors) for item in node.value]
    if isinstance(node, MappingNode):
        return {_plain(key, name, errors): _plain(value, name, errors) for key, value in node.value}
    return None


class _FileReader:
    """Reads one file's nodes into the document, recursing into includes."""

    def __init__(self, document: ShowDocument, errors: list[str]) -> None:
        self.document = document
        self.errors = errors
        self.stack: list[str] = []  # file names as shown to the user
        self.real_stack: list[str] = []  # the same files as real paths, for cycle detection
        self.done: set[str] = set()

    def where(self, node: Node) -> Where:
        return Where(self.stack[-1], node.start_mark.line + 1)

    def error(self, node: Node, key: str, message: str) -> None:
        self.errors.append(error_line(self.where(node), key, message))

    def mapping_items(self, node: Node, key: str, what: str) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) of a mapping; errors for duplicates and non-text keys."""
        if isinstance(node, ScalarNode) and node.value in ("", "~", "null"):
            return []
        if not isinstance(node, MappingNode):
            self.error(node, key, f"expected {what}")
            return []
        items: list[tuple[str, Node, Node]] = []
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(key_node, key, "expected a name as key")
                continue
            name = str(key_node.value)
            if name in seen:
                first = seen[name].start_mark.line + 1
                self.error(
                    key_node,
                    f"{key}.{name}" if key else name,
                    f"defined twice (first at line {first})",
                )
                continue
            seen[name] = key_node
            items.append((name, key_node, value_node))
        return items

    def read(self, path: str, display: str, included_from: tuple[Node, str] | None) -> None:
        real = os.path.realpath(path)
        if real in self.real_stack:
            chain = " -> ".join([*self.stack, display])
            if included_from is not None:
                self.error(included_from[0], "include", f"include cycle: {chain}")
            return
        if real in self.done:
            return
        try:
            with open(path, encoding="utf-8") as stream:
                text = stream.read()
        except OSError as error:
            message = f"cannot read show file {display}: {error.strerror}"
            if included_from is None:
                self.errors.append(f"{display}: {message}")
            else:
                self.error(included_from[0], "include", message)
            return
        except UnicodeDecodeError as error:
            self.errors.append(f"{display}: not UTF-8 text ({error.reason} at byte {error.start})")
            return
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line = mark.line + 1 if mark is not None else 0
            problem = error.problem or error.context or "invalid YAML"
            self.errors.append(error_line(Where(display, line), "", f"YAML syntax: {problem}"))
            return
        except yaml.reader.ReaderError as error:
            line = text.count("\n", 0, error.position) + 1
            problem = f"special character U+{error.character:04X} is not allowed"
            self.errors.append(error_line(Where(display, line), "", f"YAML syntax: {problem}"))
            return
        except yaml.YAMLError as error:
            self.errors.append(f"{display}: YAML syntax: {str(error).splitlines()[0]}")
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
        entries = node.value if isinstance(node, SequenceNode) else [node]
        for entry in entries:
            if not isinstance(entry, ScalarNode) or not entry.value:
                self.error(entry, "include", "expected a file name or a list of file names")
                continue
            target = os.path.join(directory, os.path.expanduser(entry.value))
            self.read(
                target,
                os.path.relpath(target) if not os.path.isabs(entry.value) else target,
                (entry, entry.value),
            )

    def options(self, node: Node, key: str, what: str) -> dict[str, Located]:
        options: dict[str, Located] = {}
        for name, key_node, value_node in self.mapping_items(node, key, what):
            value = _plain(value_node, self.stack[-1], self.errors)
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
            if name in self.document.instances:
                first = self.document.instance_where[name]
                self.error(key_node, f"instances.{name}", f"defined twice (first at {first})")
                continue
            if "." in name or not name or any(c.isspace() for c in name):
                self.error(
                    key_node,
                    f"instances.{name}",
                    "expected an instance name without dots or spaces",
                )
                continue
            options = self.options(
                value_node, f"instances.{name}", "a mapping with at least 'backend'"
            )
            self.document.instances[name] = options
            self.document.instance_where[name] = self.where(key_node)

    def read_map(self, node: Node) -> None:
        if isinstance(node, ScalarNode) and node.value in ("", "~", "null"):
            return
        if not isinstance(node, SequenceNode):
            self.error(node, "map", "expected a list of mappings like '- a.ch0.cc7 > b.1'")
            return
        for item in node.value:
            if (
                not isinstance(item, ScalarNode)
                or not isinstance(item.value, str)
                or not item.value.strip()
            ):
                self.error(
                    item,
                    "map",
                    "expected a mapping like 'a.ch0.cc7 > b.1' (quote it if it has ':' or '#')",
                )
                continue
            self.document.mappings.append(Located(item.value, self.where(item)))


def _override_value(text: str) -> Any:
    """A command-line value, typed as YAML would type it ('100' is a number, '*' stays text)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
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
        located = Located(_override_value(value.strip()), where)
        if kind == "backend":
            document.backends.setdefault(name, {})[option] = located
            document.backend_where.setdefault(name, where)
        elif name in document.instances:
            document.instances[name][option] = located
        else:
            known = ", ".join(sorted(document.instances)) or "none"
            errors.append(f"{where}: no instance named {name!r}, expected one of: {known}")


def read_show(path: str, overrides: list[tuple[str, str]] | None = None) -> ShowDocument:
    """Read a show file and its includes; raise :class:`ShowErrors` listing every problem."""
    document = ShowDocument()
    errors: list[str] = []
    _FileReader(document, errors).read(path, path, None)
    apply_overrides(document, overrides or [], errors)
    if errors:
        raise ShowErrors(errors)
    return document
