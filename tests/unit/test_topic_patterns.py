"""Subscription topics: a bounded glob (`*` only), image names and URL prefixes."""
import time

import pytest

from dfly.errors import BadRequest
from dfly.protocol import topics
from dfly.protocol.publications import file_names, image_names


# Only `*` is special: `?`, `[...]` and regex characters are literal (fnmatch and a
# regex would read them otherwise).
@pytest.mark.parametrize("pattern, text, expected", [
    ("abc", "abc", True), ("abc", "abcd", False), ("*", "", True), ("*", "anything/at/all", True),
    ("a*", "a", True), ("*a", "ba", True), ("*a", "ab", False), ("a*c", "abbbc", True),
    ("a*c", "ac", True), ("a*c", "acb", False), ("ab*ba", "aba", False), ("ab*ba", "abba", True),
    ("*a*b*", "xxaxxbxx", True), ("*a*b*", "xxbxxaxx", False), ("a**b", "ab", True),
    ("registry:5000/library/*", "registry:5000/library/debian", True),
    ("registry:5000/library/*", "registry:5000/team/app", False),
    ("*/debian", "registry:5000/library/debian", True),
    ("*a*a*a*b", "aaab", True), ("*a*a*a*b", "aab", False),
    ("a?c", "abc", False), ("a?c", "a?c", True), ("r/[ab]", "r/a", False), ("r/[ab]", "r/[ab]", True),
    ("a.c", "abc", False), ("*.io/x", "docker.io/x", True),
    ("a*bc*c", "abc", False),     # a middle piece may not overlap the last one
    ("a**b*c", "axc", False),     # an empty piece is skipped, the ones after it still count
])
def test_a_glob_matches_the_whole_text(pattern, text, expected):
    assert topics.glob_match(pattern, text) is expected


def test_a_pathological_pattern_is_answered_in_linear_time():
    pattern = "*a" * topics.MAX_STARS + "b"   # what backtracking matchers take exponential time on
    text = "a" * 100_000
    started = time.perf_counter()
    assert topics.glob_match(pattern[:-1] + "b", text) is False
    assert topics.glob_match("*a" * topics.MAX_STARS, text) is True
    # a generous bound: a backtracking matcher would not finish in a lifetime
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize("text, why", [
    ("", "non-empty"), ("a b", "no spaces"), ("a,b", "commas"), ("a\x00", "control"),
    ("x" * (topics.MAX_PATTERN_LEN + 1), "over"), ("*a" * (topics.MAX_STARS + 1), "at most"),
])
def test_a_bad_pattern_is_refused_saying_why(text, why):
    with pytest.raises(BadRequest) as e:
        topics.parse_pattern(text)
    assert why in str(e.value)


def test_too_many_patterns_are_refused_and_repeats_are_one():
    with pytest.raises(BadRequest, match="at most"):
        topics.parse_patterns(["p%d" % i for i in range(topics.MAX_PATTERNS + 1)])
    assert len(topics.parse_patterns(["a/*", "a/*"])) == 1


def test_a_url_pattern_is_a_prefix_and_an_image_pattern_a_name():
    url = "http://127.0.0.1:5000/v2/library/debian/manifests/12"
    names = image_names(url)
    assert names == ("127.0.0.1:5000/library/debian", "127.0.0.1:5000/library/debian:12")
    take = [topics.parse_pattern(p) for p in ("127.0.0.1:5000/library/*", "*:12", "http://127.0.0.1:5000/v2/")]
    assert all(topics.matches(p, url, names) for p in take)
    leave = [topics.parse_pattern(p) for p in ("127.0.0.1:5000/team/*", "http://127.0.0.1:5001/",
                                               "127.0.0.1:5000/library")]
    assert not any(topics.matches(p, url, names) for p in leave)
    model = topics.parse_pattern("https://files/*/model.bin")
    assert topics.matches(model, "https://files/a/model.bin?x=1", ())
    assert not topics.matches(topics.parse_pattern("127.0.0.1:5000/*"), "http://o/f", ())


def test_an_image_by_digest_is_named_with_an_at():
    digest = "sha256:" + "a" * 64
    assert image_names("https://r.example/v2/x/y/manifests/" + digest)[1] == "r.example/x/y@" + digest


def test_a_file_is_named_by_its_url_without_scheme_and_query_so_star_takes_everything():
    url = "https://files.example:8443/models/a.bin?sig=x#frag"
    assert file_names(url) == ("files.example:8443/models/a.bin",)
    for text in ("*", "files.example:8443/models/*", "*/a.bin"):
        assert topics.matches(topics.parse_pattern(text), url, file_names(url)), text
    assert not topics.matches(topics.parse_pattern("files.example:8443/other/*"), url, file_names(url))


def test_each_limit_is_inclusive():
    assert topics.parse_pattern("x" * topics.MAX_PATTERN_LEN).text == "x" * topics.MAX_PATTERN_LEN
    assert topics.parse_pattern("*a" * topics.MAX_STARS).text.count("*") == topics.MAX_STARS
    assert len(topics.parse_patterns(["p%d" % i for i in range(topics.MAX_PATTERNS)])) == topics.MAX_PATTERNS


def test_any_matches_judges_image_patterns_by_the_names():
    url = "http://127.0.0.1:5000/v2/library/debian/manifests/12"
    patterns = topics.parse_patterns(["files.example/*", "127.0.0.1:5000/library/*"])
    assert topics.any_matches(patterns, url, image_names(url))
    assert not topics.any_matches(patterns[:1], url, image_names(url))
