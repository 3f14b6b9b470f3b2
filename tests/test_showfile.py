"""The show file: what it accepts, and one precise line for every kind of mistake."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netmidi import show
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

    def path(self, name: str = "show.yaml") -> str:
        return os.path.join(self.directory, name)

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
        self.assertIn(":5: map: got a mapping, expected a map line like 'a.ch0.cc7 > b.1'", line)

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
        self.assertEqual(
            line,
            f"{self.path()}:1: include: cannot read {os.path.relpath(self.path('gone.yaml'))}:"
            " No such file or directory, expected a show file",
        )

    def test_error_in_included_file_names_that_file(self) -> None:
        write_show(self.directory, "instances:\n\n  z: {backend: loopbak}\n", "part.yaml")
        [line] = self.errors("include: part.yaml\n")
        self.assertIn("part.yaml:3: instances.z.backend: unknown backend", line)

    def test_missing_show_file(self) -> None:
        with self.assertRaises(ShowErrors) as caught:
            load_show(self.path("none.yaml"), Clock())
        self.assertEqual(
            caught.exception.lines,
            [
                f"{self.path('none.yaml')}: cannot read: No such file or directory,"
                " expected a show file"
            ],
        )

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
        self.assertEqual(
            show.warnings, ["map: feedback loop a.x -> b.y -> a.x; events going round it are cut"]
        )

    def test_many_feedback_loops_warned_in_short(self) -> None:
        show = self.load(BASE + "map:\n  - a.{1..512} <> b.{1..512}\n")
        self.assertEqual(len(show.warnings), 11)
        self.assertEqual(show.warnings[-1], "map: 502 more feedback loops like these")

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


class OddYamlTests(SynchronousTestCase):
    """YAML a technician (or a copy-paste from the web) can produce: each gives its own line."""

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "show.yaml")

    def write(self, name: str, data: str | bytes) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "wb") as stream:
            stream.write(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    def load(self, text: str | bytes, overrides: list[tuple[str, str]] | None = None) -> Show:
        return load_show(self.write("show.yaml", text), Clock(), overrides)

    def errors(
        self, text: str | bytes, overrides: list[tuple[str, str]] | None = None
    ) -> list[str]:
        with self.assertRaises(ShowErrors) as caught:
            self.load(text, overrides)
        for line in caught.exception.lines:
            self.assertNotIn("\n", line)
            self.assertIn("expected", line)
        here = (self.directory + os.sep, os.path.relpath(self.directory) + os.sep)
        return [line.replace(here[0], "").replace(here[1], "") for line in caught.exception.lines]

    def test_anchors_aliases_and_merge_keys(self) -> None:
        show = self.load(
            "instances:\n"
            "  a: &lb {backend: loopback, initial: {x: 0.5}}\n"
            "  b: *lb\n"
            "  c:\n"
            "    <<: *lb\n"
            "    initial: {y: 1}\n"
            "  d: {<<: [{initial: {z: 0}}, *lb]}\n"
        )
        options = {name: i.options["initial"] for name, i in show.instances.items()}
        self.assertEqual(
            options, {"a": {"x": 0.5}, "b": {"x": 0.5}, "c": {"y": 1.0}, "d": {"z": 0.0}}
        )

    def test_merge_of_itself(self) -> None:
        [line] = self.errors("instances:\n  a: &a {backend: loopback, <<: *a}\n")
        self.assertEqual(
            line,
            "show.yaml:2: instances.a: '<<' merges a mapping into itself, expected another one",
        )

    def test_alias_containing_itself(self) -> None:
        lines = self.errors(
            "instances:\n  a: {backend: loopback, initial: &r {x: *r}}\n  b: &i {c: *i}\n"
        )
        self.assertEqual(
            lines,
            [
                "show.yaml:2: instances.a.initial.x: an alias contains itself,"
                " expected a value that ends",
                "show.yaml:3: instances.b.c.c: an alias contains itself,"
                " expected a value that ends",
                "show.yaml:3: instances.b: missing 'backend',"
                " expected one of: loopback, sacn, rtpmidi, midi, maweb",
            ],
        )

    def test_billion_laughs(self) -> None:
        levels = ["l0: &l0 [a, a, a, a, a, a, a, a, a, a]"] + [
            f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)
        ]
        text = "backends:\n  loopback:\n    detect:\n" + "".join(
            f"      {level}\n" for level in levels
        )
        [line] = self.errors(text)
        self.assertRegex(
            line,
            r"^show\.yaml:\d+: backends\.loopback\.detect\.l\d: aliases expand to more than"
            r" 100000 values, expected a smaller show$",
        )

    def test_python_tags_are_refused(self) -> None:
        lines = self.errors(
            "instances:\n"
            "  a: !!python/object:os.system {backend: loopback}\n"
            "  b: {backend: !!python/name:os.system loopback}\n"
            "  c: {backend: loopback, initial: !!python/object/apply:os.system [echo]}\n"
            "  d: {backend: loopback, initial: !!set {x}}\n"
            "  e: {backend: loopback, initial: {x: !!float abc, y: !!binary AAAA}}\n"
        )
        self.assertEqual(
            lines,
            [
                "show.yaml:2: instances.a: got YAML tag !!python/object:os.system,"
                " expected a mapping with at least 'backend'",
                "show.yaml:3: instances.b.backend: got YAML tag !!python/name:os.system,"
                " expected text, a number or on/off",
                "show.yaml:4: instances.c.initial: got YAML tag !!python/object/apply:os.system,"
                " expected a plain list",
                "show.yaml:5: instances.d.initial: got YAML tag !!set, expected a plain mapping",
                "show.yaml:6: instances.e.initial.x: got 'abc', expected a !!float value",
                "show.yaml:6: instances.e.initial.y: got YAML tag !!binary,"
                " expected text, a number or on/off",
            ],
        )

    def test_keys_are_text_as_written(self) -> None:
        show = self.load("instances:\n  1: {backend: loopback, initial: {on: 1, 0x10: 0}}\n")
        self.assertEqual(show.instances["1"].options["initial"], {"on": 1.0, "0x10": 0.0})

    def test_date_like_value_stays_text(self) -> None:
        [line] = self.errors("backends:\n  loopback: {detect: 2024-05-01}\n")
        self.assertIn("backends.loopback.detect: got '2024-05-01', expected one of:", line)

    def test_keys_that_are_not_names(self) -> None:
        lines = self.errors(
            "instances:\n  [a]: {backend: loopback}\n  ? {x: 1}\n  : {backend: loopback}\n"
        )
        self.assertEqual(
            lines,
            [
                "show.yaml:2: instances: got a list as a key, expected a name",
                "show.yaml:3: instances: got a mapping as a key, expected a name",
            ],
        )

    def test_duplicate_key_inside_a_value(self) -> None:
        [line] = self.errors("instances:\n  a: {backend: loopback, initial: {x: 1, x: 0}}\n")
        self.assertEqual(
            line,
            "show.yaml:2: instances.a.initial.x: defined twice (first at line 2),"
            " expected each name once",
        )

    def test_instance_names_stay_clear_of_the_map_syntax(self) -> None:
        lines = self.errors(
            "instances:\n  'a b': {backend: loopback}\n  a.b: {backend: loopback}\n"
            "  'a>b': {backend: loopback}\n  '{a}': {backend: loopback}\n"
            "  bühne-2_x: {backend: loopback}\n"
        )
        self.assertEqual([line.split(":")[1] for line in lines], ["2", "3", "4", "5"])
        self.assertTrue(
            lines[0].endswith(
                "instances.a b: expected a name of letters, digits, '-' and '_' (no dots or spaces)"
            )
        )

    def test_wrong_shapes(self) -> None:
        lines = self.errors("instances:\n  - a\nbackends: [sacn]\nmap: {a: b}\ninclude: {a: b}\n")
        self.assertEqual(
            lines,
            [
                "show.yaml:5: include: got a mapping, expected a file name or a list of file names",
                "show.yaml:3: backends: got a list, expected a mapping of backend names to options",
                "show.yaml:2: instances: got a list,"
                " expected a mapping of instance names to options",
                "show.yaml:4: map: got a mapping, expected a list of map lines like"
                " '- a.ch0.cc7 > b.1'",
            ],
        )
        [line] = self.errors("- a\n- b\n")
        self.assertEqual(
            line,
            "show.yaml:1: got a list,"
            " expected a mapping with keys include, backends, instances, map",
        )

    def test_empty_sections(self) -> None:
        show = self.load("include:\nbackends:\ninstances:\nmap:\n")
        self.assertEqual((show.instances, show.router.routes), ({}, []))
        show = self.load("instances:\n  a: {backend: loopback}\nmap: a.x > a.y\n")
        self.assertEqual(len(show.router.routes), 1)  # one line stands for a list of one

    def test_syntax_error_says_where_it_started(self) -> None:
        [line] = self.errors("instances:\n  a: {backend: loopback\nmap: []\n")
        self.assertEqual(
            line,
            "show.yaml:3: YAML syntax: while parsing a flow mapping at line 2:"
            " expected ',' or '}', but got ':'",
        )
        [line] = self.errors("instances:\n  a: {backend: loopback}\n b: {backend: loopback}\n")
        self.assertTrue(line.startswith("show.yaml:3: YAML syntax:"))
        self.assertTrue(line.endswith("(check the indentation)"))

    def test_two_documents(self) -> None:
        [line] = self.errors("instances: {}\n---\nmap: []\n")
        self.assertEqual(
            line,
            "show.yaml:2: YAML syntax: expected a single document in the stream at line 1:"
            " but found another document",
        )

    def test_nested_too_deeply_for_the_yaml_parser(self) -> None:
        [line] = self.errors("map: " + "[" * 3000 + "]" * 3000 + "\n")
        self.assertEqual(line, "show.yaml: YAML syntax: nested too deeply, expected less nesting")
        [line] = self.errors("backends:\n  loopback: {detect: " + "[" * 40 + "]" * 40 + "}\n")
        self.assertEqual(
            line,
            "show.yaml:2: backends.loopback.detect: nested more than 32 levels deep, expected less",
        )

    def test_not_utf8(self) -> None:
        [line] = self.errors(b"instances:\n  a: {backend: loopback}\nmap:\n  - a.\xe9 > a.y\n")
        self.assertEqual(
            line, "show.yaml:4: byte 0xE9 is not UTF-8, expected a file saved as UTF-8"
        )
        self.write("latin.yaml", b"# caf\xe9\n")
        [line] = self.errors("include: latin.yaml\n")
        self.assertEqual(
            line, "latin.yaml:1: byte 0xE9 is not UTF-8, expected a file saved as UTF-8"
        )

    def test_byte_order_mark_is_fine(self) -> None:
        show = self.load("\ufeffinstances:\n  a: {backend: loopback}\n")
        self.assertEqual(list(show.instances), ["a"])

    def test_control_character(self) -> None:
        [line] = self.errors("map:\n  - a.x > b.y\x00\n")
        self.assertEqual(
            line, "show.yaml:2: YAML syntax: special character U+0000, expected printable text"
        )

    def test_include_of_what_is_not_a_show_file(self) -> None:
        os.mkfifo(os.path.join(self.directory, "fifo"))  # opening it would block for ever
        lines = self.errors("include: [fifo, ., '', ~, 7]\n")
        self.assertEqual(
            [line.split(": ", 1)[1] for line in lines],
            [
                "include: cannot read fifo: not a regular file, expected a show file",
                f"include: cannot read {os.path.relpath(self.directory)}: not a regular file,"
                " expected a show file",
                "include: got '', expected a file name",
                "include: got nothing, expected a file name",
                "include: cannot read 7: No such file or directory, expected a show file",
            ],
        )

    def test_map_without_spaces(self) -> None:
        show = self.load("instances:\n  a: {backend: loopback}\nmap:\n  - a.x<>a.y\n  - a.p>a.q\n")
        self.assertEqual(
            sorted((r.source_channel, r.target_channel) for r in show.router.routes),
            [("p", "q"), ("x", "y"), ("y", "x")],
        )

    def test_override_values_are_plain_yaml_too(self) -> None:
        lines = self.errors(
            BASE,
            [
                ("instance", "a.initial=!!python/object/apply:os.system [echo]"),
                ("instance", "b.initial=&r {x: *r}"),
            ],
        )
        self.assertEqual(
            lines,
            [
                "command line -i a.initial=!!python/object/apply:os.system [echo]:"
                " instances.a.initial: got YAML tag !!python/object/apply:os.system,"
                " expected a plain list",
                "command line -i b.initial=&r {x: *r}: instances.b.initial.x:"
                " an alias contains itself, expected a value that ends",
            ],
        )

    def test_override_edge_cases(self) -> None:
        self.write("part.yaml", "instances:\n  p: {backend: loopback}\n")
        show = self.load(
            "include: part.yaml\n" + BASE,
            [
                ("instance", "p.initial={x: 1}"),  # an instance from an included file
                ("instance", " a.initial = {y: 0} "),  # spaces around
            ],
        )
        self.assertEqual(show.instances["p"].options["initial"], {"x": 1.0})
        self.assertEqual(show.instances["a"].options["initial"], {"y": 0.0})
        for text, shown in (("#on", "'#on'"), ("", "nothing")):
            # YAML would read "#on" as a comment: the text stays
            [line] = self.errors(BASE, [("backend", f"loopback.detect={text}")])
            self.assertEqual(
                line,
                f"command line -b loopback.detect={text}: backends.loopback.detect: got {shown},"
                " expected one of: off, on, verbose",
            )

    def test_value_errors_and_backend_checks_are_reported_together(self) -> None:
        lines = self.errors(
            "instances:\n"
            "  a: {backend: loopback, initial: !!set {x}}\n"
            "  b: {backend: nope}\n"
            "  c: {backend: !!python/name:x loopback}\n"
            "  d: {backend: loopback, initial: {x: 2}}\n"
            "  e: {backend: [loopback]}\n"
            "map:\n"
            "  - a.x > b.y\n"  # a, b and c are reported above: not again here
            "  - c.x > d.y\n"
            "  - d.x > f.y\n",
            [("instance", "d.bogus=1")],
        )
        self.assertEqual(
            [line.split(": ")[0:2] for line in lines],
            [
                ["show.yaml:2", "instances.a.initial"],
                ["show.yaml:4", "instances.c.backend"],
                ["show.yaml:3", "instances.b.backend"],
                ["show.yaml:5", "instances.d.initial"],
                ["command line -i d.bogus=1", "instances.d.bogus"],
                ["show.yaml:6", "instances.e.backend"],
                ["show.yaml:10", "map"],
            ],
        )

    def test_a_broken_section_stops_before_the_checks(self) -> None:
        """With no instances read, every map line would repeat the problem: they are not checked."""
        [line] = self.errors("instances: [a]\nmap:\n  - a.x > a.y\n")
        self.assertIn("show.yaml:1: instances: got a list", line)

    def test_too_many_routes(self) -> None:
        self.patch(show, "MAX_ROUTES", 6)
        lines = self.errors(BASE + "map:\n  - a.{1..3} <> b.{1..3}\n  - a.x > b.{1..3}\n")
        self.assertEqual(
            lines, ["show.yaml:7: map: the map makes more than 6 routes, expected fewer"]
        )

    def test_instance_defined_in_two_files(self) -> None:
        self.write("part.yaml", "instances:\n  a: {backend: loopback}\n")
        [line] = self.errors("include: part.yaml\ninstances:\n  a: {backend: loopback}\n")
        self.assertEqual(
            line,
            "show.yaml:3: instances.a: defined twice (first at part.yaml:2),"
            " expected each name once",
        )

    def test_unknown_backend_in_backends(self) -> None:
        [line] = self.errors("backends:\n  sacm: {name: x}\n")
        self.assertEqual(
            line,
            "show.yaml:2: backends.sacm: unknown backend 'sacm',"
            " expected one of: loopback, sacn, rtpmidi, midi, maweb",
        )

    def test_spec_without_channel(self) -> None:
        [line] = self.errors("instances:\n  a: {backend: loopback}\nmap:\n  - a > a.x\n")
        self.assertEqual(line, "show.yaml:4: map: got 'a', expected instance.channel")

    def test_channel_the_backend_refuses(self) -> None:
        [line] = self.errors(
            "instances:\n  a: {backend: loopback}\n  d: {backend: sacn, universe: 1}\n"
            "map:\n  - a.x > d.{512..513}\n"
        )
        self.assertRegex(line, r"^show\.yaml:5: map: 'd\.513': got .*expected")
