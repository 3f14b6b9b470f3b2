"""Turning a read show file into configured backends, instances and a compiled router.

Every value is checked against the backend's option tables and every channel spec against its
instance, and all problems are reported together, one line each, before anything starts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netmidi.backend import Backend, Instance, Reactor, Route
from netmidi.mapping import MappingError, parse_mapping, split_channel
from netmidi.options import Option, OptionError, describe, parse_options
from netmidi.registry import BACKEND_MODULES, BackendUnavailable, load_backend
from netmidi.router import Router, find_loops
from netmidi.showfile import (
    INVALID,
    Located,
    ShowDocument,
    ShowErrors,
    Where,
    error_line,
    read_show,
)

# A whole rig (300 sACN universes patched slot for slot) is about 150,000 routes; far more is a
# typo in a range, which would otherwise take minutes and gigabytes to compile.
MAX_ROUTES = 1_000_000
MAX_LOOP_WARNINGS = 10


@dataclass
class Show:
    """A checked show: backends with their instances, and the router between them."""

    backends: dict[str, Backend]
    instances: dict[str, Instance]
    router: Router
    claimed: list[Route]
    warnings: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self, document: ShowDocument, reactor: Reactor) -> None:
        self.document = document
        self.reactor = reactor
        self.errors: list[str] = list(document.errors)  # those found while reading come first
        self.backends: dict[str, Backend] = {}
        self.instances: dict[str, Instance] = {}
        self.broken_backends: set[str] = set()  # reported once, not again for each instance

    def error(self, where: Where, key: str, message: str) -> None:
        self.errors.append(error_line(where, key, message))

    def parse(
        self, table: Mapping[str, Option[Any]], given: dict[str, Located], key: str, where: Where
    ) -> dict[str, Any] | None:
        """Options parsed against their table, or None with the problems reported.

        A value already reported while reading (INVALID) is not reported again, not even as
        missing; it still means there is nothing to build.
        """
        invalid = {name for name, located in given.items() if located.value is INVALID}
        parsed, errors = parse_options(
            table, {name: v.value for name, v in given.items() if name not in invalid}
        )
        for name, message in errors.items():
            if name not in invalid:
                self.error(given[name].where if name in given else where, f"{key}.{name}", message)
        return None if errors or invalid else parsed

    def backend_class(self, name: str, where: Where, key: str) -> type[Backend] | None:
        if name not in BACKEND_MODULES:
            self.error(
                where,
                key,
                f"unknown backend {describe(name)}, expected one of: {', '.join(BACKEND_MODULES)}",
            )
            return None
        try:
            return load_backend(name)
        except BackendUnavailable as error:
            self.error(where, key, str(error))
            return None

    def make_backend(self, name: str, used_at: Where | None = None) -> Backend | None:
        if name in self.backends or name in self.broken_backends:
            return self.backends.get(name)
        where = self.document.backend_where.get(name) or used_at or Where(self.document.files[0], 0)
        cls = self.backend_class(name, where, f"backends.{name}")
        if cls is None:
            self.broken_backends.add(name)
            return None
        given = self.document.backends.get(name, {})
        parsed = self.parse(cls.all_global_options(), given, f"backends.{name}", where)
        if parsed is None:
            self.broken_backends.add(name)
            return None
        backend = cls(self.reactor, parsed)
        self.backends[name] = backend
        return backend

    def build_instances(self) -> None:
        used = {str(o["backend"].value) for o in self.document.instances.values() if "backend" in o}
        for name in self.document.backends:
            if name not in used:
                self.make_backend(name)  # a backend with only global options (midi 'list')
        for name, options in self.document.instances.items():
            where = self.document.instance_where[name]
            key = f"instances.{name}"
            if "backend" not in options:
                self.error(
                    where, key, "missing 'backend', expected one of: " + ", ".join(BACKEND_MODULES)
                )
                continue
            backend_name = options["backend"].value
            if backend_name is INVALID:
                continue
            if not isinstance(backend_name, str) or backend_name not in BACKEND_MODULES:
                self.error(
                    options["backend"].where,
                    f"{key}.backend",
                    f"unknown backend {describe(backend_name)},"
                    f" expected one of: {', '.join(BACKEND_MODULES)}",
                )
                continue
            backend = self.make_backend(backend_name, options["backend"].where)
            if backend is None:
                continue
            given = {k: v for k, v in options.items() if k != "backend"}
            parsed = self.parse(backend.instance_options, given, key, where)
            if parsed is None:
                continue
            try:
                self.instances[name] = backend.add_instance(name, parsed)
            except (OptionError, ValueError) as error:
                self.error(where, key, str(error))
        for name, backend in self.backends.items():
            for message in backend.check():
                where = self.document.backend_where.get(name) or next(
                    (self.document.instance_where[i] for i in backend.instances),
                    Where(self.document.files[0], 0),
                )
                self.error(where, f"backends.{name}", message)

    def channel(self, spec: str, where: Where) -> tuple[Instance, Any] | None:
        try:
            instance_name, rest = split_channel(spec)
        except MappingError as error:
            self.error(where, "map", str(error))
            return None
        instance = self.instances.get(instance_name)
        if instance is None:
            if instance_name not in self.document.instances:  # else its own error is reported
                known = ", ".join(sorted(self.document.instances)) or "none"
                self.error(
                    where,
                    "map",
                    f"no instance named {instance_name!r} in {spec!r}, expected one of: {known}",
                )
            return None
        try:
            return instance, instance.parse_channel(rest)
        except (OptionError, ValueError) as error:
            self.error(where, "map", f"{spec!r}: {error}")
            return None

    def build_routes(self) -> list[Route]:
        routes: list[Route] = []
        count = 0
        for item in self.document.mappings:
            try:
                line = parse_mapping(item.value)
                pairs = line.pairs()
            except MappingError as error:
                self.error(item.where, "map", str(error))
                continue
            count += len(pairs) * (line.left_to_right + line.right_to_left)
            if count > MAX_ROUTES:
                self.error(
                    item.where,
                    "map",
                    f"the map makes more than {MAX_ROUTES} routes, expected fewer",
                )
                break
            resolved: dict[str, tuple[Instance, Any]] = {}
            failed: set[str] = set()  # one error per instance and line, not one per channel
            for spec in dict.fromkeys([*line.left, *line.right]):
                if spec.partition(".")[0] in failed:
                    continue
                channel = self.channel(spec, item.where)
                if channel is None:
                    failed.add(spec.partition(".")[0])
                else:
                    resolved[spec] = channel
            if not failed:
                for left, right in pairs:
                    (li, lc), (ri, rc) = resolved[left], resolved[right]
                    if line.left_to_right:
                        routes.append(Route(li, lc, ri, rc))
                    if line.right_to_left:
                        routes.append(Route(ri, rc, li, lc))
        return routes


def build_show(document: ShowDocument, reactor: Reactor) -> Show:
    """Check a read show file against the backends and compile its routes; raise ShowErrors."""
    builder = _Builder(document, reactor)
    builder.build_instances()
    routes = builder.build_routes()
    if builder.errors:
        raise ShowErrors(builder.errors)
    by_backend: dict[Backend, list[Route]] = defaultdict(list)
    for route in routes:
        if route.source.backend is route.target.backend:
            by_backend[route.source.backend].append(route)
    claimed: set[Route] = set()
    for backend, own in by_backend.items():
        claimed.update(backend.claim_routes(own))
    router = Router(r for r in routes if r not in claimed)
    for instance in builder.instances.values():
        instance.mapped(router.inputs(instance), router.outputs(instance))
    loops = find_loops(routes)
    warnings = [
        "map: feedback loop " + " -> ".join(loop) + "; events going round it are cut"
        for loop in loops[:MAX_LOOP_WARNINGS]
    ]
    if len(loops) > MAX_LOOP_WARNINGS:  # 'lb.{1..512} <> lb2.{1..512}' is 512 loops
        warnings.append(f"map: {len(loops) - MAX_LOOP_WARNINGS} more feedback loops like these")
    return Show(
        builder.backends, builder.instances, router, list(claimed), warnings, document.files
    )


def load_show(path: str, reactor: Reactor, overrides: list[tuple[str, str]] | None = None) -> Show:
    """Read, check and compile a show file; raise :class:`ShowErrors` with every problem."""
    return build_show(read_show(path, overrides), reactor)
