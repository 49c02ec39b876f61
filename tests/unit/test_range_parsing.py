"""Range headers on a body of known length: the three single-range forms, and
what is ignored (whole body) versus unsatisfiable (416)."""
import pytest

from dfly.protocol.ranges import RangeNotSatisfiable, content_range, parse_range


@pytest.mark.parametrize("header,length,expected", [
    ("bytes=0-99", 1000, (0, 99)),
    ("bytes=100-", 1000, (100, 999)),
    ("bytes=-100", 1000, (900, 999)),
    ("bytes=-5000", 1000, (0, 999)),
    ("bytes=990-5000", 1000, (990, 999)),
    ("bytes=999-999", 1000, (999, 999)),
    ("  BYTES = 1 - 2 ", 1000, (1, 2)),
])
def test_single_ranges_give_inclusive_offsets_clamped_to_the_body(header, length, expected):
    assert parse_range(header, length) == expected


@pytest.mark.parametrize("header", [None, "", "bytes=", "bytes=-", "items=0-1", "bytes=5-3",
                                    "bytes=0-1,5-9", "bytes=a-b", "bytes=1-2-3",
                                    "bytes=" + "9" * 40 + "-"])
def test_malformed_other_unit_or_multiple_ranges_are_ignored(header):
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_a_range_starting_past_the_end_is_unsatisfiable(header):
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, 1000)
    assert caught.value.length == 1000


def test_an_empty_body_ignores_a_suffix_and_refuses_an_offset():
    assert parse_range("bytes=-10", 0) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def test_content_range_names_the_inclusive_span_and_total():
    assert content_range(900, 999, 1000) == "bytes 900-999/1000"
