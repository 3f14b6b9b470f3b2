"""The show file: what it accepts, and one precise line for every kind of mistake."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netmidi.show import Show, load_show
from netmidi.showfile import ShowErrors
from netmidi.values import Value
from tests.showfiles import write_show

BASE = """
instances:
  a: {backend: loopback}
  b: {backend: loopback}
"""


class ShowFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()

    def load(self, text: str, overrides: list[tuple[str, str]] | None = None) -> Show:
        return load_show(write_show(self.directory, text), Clock(), overrides)

    def errors(self, text: str, overrides: list[tuple[str, str]] | None = None) -> list[str]:
        with self.assertRaises(ShowErrors) as caught:
            self.load(text, overrides)
        lines = caught.exception.lines
        for line in lines:
            self.assertNotIn("\n", line)
            self.assertNotIn("Traceback", line)
        return lines

    def test_valid_show(self) -> None:
        show = self.load(BASE + "map:\n  - a.x{1..3} > b.y{1..3}\n  - a.z <> b.z\n")
        self.assertEqual(sorted(show.instances), ["a", "b"])
        self.assertEqual(len(show.router.routes), 5)
        self.assertEqual(show.instances["a"].inputs, frozenset({"x1", "x2", "x3", "z"}))
        self.assertEqual(show.instances["b"].outputs, frozenset({"y1", "y2", "y3", "z"}))

    def test_empty_file(self) -> None:
        show = self.load("# nothing yet\n")
        self.assertEqual(show.instances, {})

    def test_yaml_syntax_error_names_file_and_line(self) -> None:
        [line] = self.errors("instances:\n  a: {backend: loopback\nmap: []\n")
        self.assertRegex(line, r"show\.yaml:\d+: YAML syntax: ")

    def test_unknown_section(self) -> None:
        [line] = self.errors("instance:\n  a: {backend: loopback}\n")
        self.assertEqual(
            line,
            f"{self.path()}:1: instance: unknown section, expected one of:"
            " include, backends, instances, map",
        )

    def path(self) -> str:
        return os.path.join(self.directory, "show.yaml")

    def test_unknown_backend(self) -> None:
        [line] = self.errors("instances:\n  a: {backend: sacm}\n")
        self.assertEqual(
            line,
            f"{self.path()}:2: instances.a.backend: unknown backend 'sacm',"
            " expected one of: loopback, sacn, rtpmidi, midi, maweb",
        )

    def test_missing_backend(self) -> None:
        [line] = self.errors("instances:\n  a: {initial: {x: 1}}\n")
        self.assertIn(":2: instances.a: missing 'backend'", line)

    def test_unknown_option(self) -> None:
        [line] = self.errors("instances:\n  a:\n    backend: loopback\n    univers: 3\n")
        self.assertEqual(
            line, f"{self.path()}:4: instances.a.univers: unknown option, expected one of: initial"
        )

    def test_unknown_backend_option(self) -> None:
        [line] = self.errors("backends:\n  loopback: {detekt: on}\n")
        self.assertIn(":2: backends.loopback.detekt: unknown option, expected one of: detect", line)

    def test_bad_value(self) -> None:
        [line] = self.errors("backends:\n  loopback:\n    detect: loud\n")
        self.assertEqual(
            line,
            f"{self.path()}:3: backends.loopback.detect: got 'loud',"
            " expected one of: off, on, verbose",
        )

    def test_unknown_instance_in_map(self) -> None:
        [line] = self.errors(BASE + "map:\n  - a.x > c.y\n")
        self.assertEqual(
            line, f"{self.path()}:5: map: no instance named 'c' in 'c.y', expected one of: a, b"
        )

    def test_count_mismatch_in_map(self) -> None:
        [line] = self.errors(BASE + "map:\n  - a.x{1..3} > b.{1..2}\n")
        self.assertIn(":5: map: left side expands to 3 channels and right side to 2", line)

    def test_bad_channel_spec(self) -> None:
        [line] = self.errors(BASE + "map:\n  - 'a.x y > b.z'\n")
        self.assertIn(":5: map: got 'a.x y > b.z', expected 'a > b'", line)

    def test_map_item_not_text(self) -> None:
        [line] = self.errors(BASE + "map:\n  - {a: b}\n")
        self.assertIn(":5: map: expected a mapping like", line)

    def test_all_errors_reported(self) -> None:
        lines = self.errors(
            "instances:\n  a: {backend: nope}\n  b: {backend: loopback, x: 1}\n"
            "map:\n  - b.1 > q.2\n  - b.{1..2} > b.{1..3}\n"
        )
        self.assertEqual([line.split(":")[1] for line in lines], ["2", "3", "5", "6"])

    def test_duplicate_instance(self) -> None:
        [line] = self.errors("instances:\n  a: {backend: loopback}\n  a: {backend: loopback}\n")
        self.assertIn(":3: instances.a: defined twice (first at line 2)", line)

    def test_include_relative_and_merged(self) -> None:
        os.makedirs(os.path.join(self.directory, "parts"))
        write_show(
            os.path.join(self.directory, "parts"),
            "instances:\n  b: {backend: loopback}\n",
            "b.yaml",
        )
        show = self.load(
            "include: [parts/b.yaml]\n"
            + "instances:\n  a: {backend: loopback}\nmap:\n  - a.x > b.x\n"
        )
        self.assertEqual(sorted(show.instances), ["a", "b"])
        self.assertEqual(len(show.files), 2)

    def test_include_cycle(self) -> None:
        write_show(self.directory, "include: show.yaml\n", "other.yaml")
        [line] = self.errors("include: [other.yaml]\n")
        self.assertIn("other.yaml:1: include: include cycle:", line)

    def test_missing_include(self) -> None:
        [line] = self.errors("include: gone.yaml\n")
        self.assertIn(":1: include: cannot read show file", line)

    def test_error_in_included_file_names_that_file(self) -> None:
        write_show(self.directory, "instances:\n\n  z: {backend: loopbak}\n", "part.yaml")
        [line] = self.errors("include: part.yaml\n")
        self.assertIn("part.yaml:3: instances.z.backend: unknown backend", line)

    def test_missing_show_file(self) -> None:
        with self.assertRaises(ShowErrors) as caught:
            load_show(os.path.join(self.directory, "none.yaml"), Clock())
        self.assertIn("cannot read show file", caught.exception.lines[0])

    def test_overrides(self) -> None:
        show = self.load(
            BASE, [("backend", "loopback.detect=on"), ("instance", "a.initial={x: 0.5}")]
        )
        self.assertTrue(show.backends["loopback"].detect)
        self.assertEqual(show.instances["a"].options["initial"], {"x": 0.5})

    def test_override_errors(self) -> None:
        lines = self.errors(BASE, [("instance", "c.initial={}"), ("backend", "loopback")])
        self.assertEqual(
            lines,
            [
                "command line -i c.initial={}: no instance named 'c', expected one of: a, b",
                "command line -b loopback: expected -b backend.option=value",
            ],
        )

    def test_override_value_error_names_command_line(self) -> None:
        [line] = self.errors(BASE, [("backend", "loopback.detect=*")])
        self.assertEqual(
            line,
            "command line -b loopback.detect=*: backends.loopback.detect:"
            " got '*', expected one of: off, on, verbose",
        )

    def test_feedback_loop_warned(self) -> None:
        show = self.load(BASE + "map:\n  - a.x <> b.y\n")
        self.assertEqual(len(show.warnings), 1)
        self.assertIn("feedback loop", show.warnings[0])

    def test_loopback_initial_values(self) -> None:
        clock = Clock()
        show = load_show(
            write_show(
                self.directory,
                BASE.replace(
                    "a: {backend: loopback}", "a: {backend: loopback, initial: {x: 0.25}}"
                ),
            ),
            clock,
        )
        received = []
        show.instances["a"].attach(lambda source, events: received.extend(events))
        show.backends["loopback"].startService()
        clock.advance(0)
        self.assertEqual(received, [("x", Value.from_normalised(0.25))])
