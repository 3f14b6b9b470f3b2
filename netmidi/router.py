"""The router: compiled once from the show file, then one dict lookup per event. Pure: no I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from netmidi.backend import Channel, Event, Instance, Route

Target = tuple[Instance, Channel]
# The channels of one target instance that a source channel feeds.
Group = tuple[Instance, tuple[Channel, ...]]


class Router:
    """Maps (source instance, channel) to the channels an event is copied to."""

    def __init__(self, routes: Iterable[Route]) -> None:
        tables: dict[Instance, dict[Channel, dict[Instance, list[Channel]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.routes: list[Route] = []
        seen: set[Route] = set()
        for route in routes:
            if route in seen:
                continue
            seen.add(route)
            self.routes.append(route)
            groups = tables[route.source][route.source_channel]
            groups.setdefault(route.target, []).append(route.target_channel)
        # Per source channel, its targets grouped by instance: one batch lookup per instance.
        self._tables: dict[Instance, dict[Channel, tuple[Group, ...]]] = {
            source: {
                channel: tuple((target, tuple(channels)) for target, channels in groups.items())
                for channel, groups in table.items()
            }
            for source, table in tables.items()
        }

    def route(self, source: Instance, events: Sequence[Event]) -> dict[Instance, list[Event]]:
        """The events for each target instance, in input order (latest value last)."""
        table = self._tables.get(source)
        batches: dict[Instance, list[Event]] = {}
        if table is None:
            return batches
        for channel, value in events:
            groups = table.get(channel)
            if groups is None:
                continue
            for target, channels in groups:
                batch = batches.get(target)
                if batch is None:
                    batches[target] = batch = []
                for target_channel in channels:
                    batch.append((target_channel, value))
        return batches

    def inputs(self, instance: Instance) -> frozenset[Channel]:
        return frozenset(self._tables.get(instance, ()))

    def outputs(self, instance: Instance) -> frozenset[Channel]:
        return frozenset(r.target_channel for r in self.routes if r.target is instance)


def find_loops(routes: Sequence[Route]) -> list[list[str]]:
    """Feedback loops: chains of routes through echoing instances that come back to their start.

    An event sent to an echoing instance (loopback) comes back as that instance's input, so a
    route into it continues along the routes out of the same channel.
    """
    edges: dict[tuple[Instance, Channel], list[tuple[Instance, Channel]]] = defaultdict(list)
    for route in routes:
        if route.target.backend.echoes:
            edges[(route.source, route.source_channel)].append((route.target, route.target_channel))
    loops: list[list[str]] = []
    state: dict[tuple[Instance, Channel], int] = {}  # 1: on the current path, 2: finished
    for start in list(edges):
        if start in state:
            continue
        path: list[tuple[Instance, Channel]] = []
        stack: list[tuple[tuple[Instance, Channel], int]] = [(start, 0)]
        while stack:
            node, index = stack.pop()
            if index == 0:
                state[node] = 1
                path.append(node)
            successors = edges.get(node, [])
            if index < len(successors):
                stack.append((node, index + 1))
                successor = successors[index]
                if state.get(successor) == 1:
                    cycle = path[path.index(successor) :] + [successor]
                    loops.append([f"{i.name}.{i.channel_spec(c)}" for i, c in cycle])
                elif successor not in state:
                    stack.append((successor, 0))
            else:
                state[node] = 2
                path.pop()
    return loops
