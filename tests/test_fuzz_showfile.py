"""Whatever a show file holds, the reader reports problems as lines, never as a traceback."""

from __future__ import annotations

import os
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from netmidi.mapping import MappingError, expand, parse_mapping
from netmidi.show import load_show
from netmidi.showfile import ShowErrors

WORDS = st.sampled_from(
    [
        "include",
        "backends",
        "instances",
        "map",
        "loopback",
        "backend",
        "a",
        "b",
        "detect",
        "initial",
        "x",
        ">",
        "<>",
        "{1..3}",
        "{a,b}",
        ".",
        ":",
        "-",
        "[",
        "]",
        "{",
        "}",
        "\n",
        "  ",
        " ",
        "on",
        "0.5",
        "'",
        '"',
        "*",
        "&a",
        "*a",
        "<<",
        "!!python/object",
        "!!set",
        "\t",
        "---",
        "~",
        "#",
    ]
)
TEXTS = st.one_of(st.text(max_size=200), st.lists(WORDS, max_size=60).map("".join))


class ShowFileFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "show.yaml")

    @settings(max_examples=300, deadline=None)
    @given(TEXTS)
    def test_any_text(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as stream:
            stream.write(text)
        try:
            load_show(self.path, Clock())
        except ShowErrors as errors:
            self.assertTrue(errors.lines)
            for line in errors.lines:
                self.assertNotIn("\n", line)
                self.assertRegex(line, rf"^{re.escape(self.path)}(:\d+)?: \S")

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="ab.{}1..3,<>- x", max_size=30))
    def test_any_mapping_line(self, text: str) -> None:
        try:
            parse_mapping(text)
            expand(text)
        except MappingError as error:
            self.assertIn("expected", str(error))
