from twisted.trial.unittest import SynchronousTestCase

from netmidi.mapping import MappingError, expand, parse_mapping


class ExpandTests(SynchronousTestCase):
    def test_plain(self) -> None:
        self.assertEqual(expand("a.ch0.cc7"), ["a.ch0.cc7"])

    def test_ranges_up_and_down(self) -> None:
        self.assertEqual(expand("d.{1..3}"), ["d.1", "d.2", "d.3"])
        self.assertEqual(expand("d.{3..1}"), ["d.3", "d.2", "d.1"])

    def test_list(self) -> None:
        self.assertEqual(expand("d.{a, b,c}"), ["d.a", "d.b", "d.c"])

    def test_rightmost_varies_fastest(self) -> None:
        self.assertEqual(
            expand("m.ch{0..1}.note{60..61}"),
            ["m.ch0.note60", "m.ch0.note61", "m.ch1.note60", "m.ch1.note61"],
        )

    def test_wide_channel_with_groups(self) -> None:
        self.assertEqual(expand("d.{1,3}+{2,4}")[:2], ["d.1+2", "d.1+4"])

    def test_errors_say_what_was_expected(self) -> None:
        for bad in ("d.{1..}", "d.{x}", "d.{1..3", "d.1..3}", "d.{,}"):
            with self.assertRaises(MappingError) as caught:
                expand(bad)
            self.assertIn("expected", str(caught.exception))

    def test_huge_expansion_refused(self) -> None:
        with self.assertRaises(MappingError):
            expand("d.{1..1000}.{1..1000}")


class ParseMappingTests(SynchronousTestCase):
    def test_directions(self) -> None:
        right = parse_mapping("a.1 > b.2")
        self.assertEqual((right.left_to_right, right.right_to_left), (True, False))
        left = parse_mapping("a.1<b.2")
        self.assertEqual((left.left_to_right, left.right_to_left), (False, True))
        both = parse_mapping("  a.1 <> b.2 ")
        self.assertEqual((both.left_to_right, both.right_to_left), (True, True))

    def test_pairs(self) -> None:
        self.assertEqual(
            parse_mapping("a.{1..2} > b.{4..3}").pairs(), [("a.1", "b.4"), ("a.2", "b.3")]
        )
        self.assertEqual(parse_mapping("a.1 > b.{1..2}").pairs(), [("a.1", "b.1"), ("a.1", "b.2")])
        self.assertEqual(parse_mapping("a.{1..2} > b.1").pairs(), [("a.1", "b.1"), ("a.2", "b.1")])

    def test_count_mismatch(self) -> None:
        with self.assertRaises(MappingError) as caught:
            parse_mapping("a.{1..3} > b.{1..2}")
        self.assertIn("left side expands to 3 channels and right side to 2", str(caught.exception))

    def test_bad_lines(self) -> None:
        for bad in ("a.1", "a.1 = b.1", "a.1 > b.1 c.1", "> b.1", "a.1 >> b.1"):
            with self.assertRaises(MappingError):
                parse_mapping(bad)
