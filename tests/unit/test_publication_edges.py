"""Publications at their edges (the survivors of a mutation run of
protocol/publications.py, docs/TESTING.md): a log line's optional fields and
limits, the names a file or an image is matched by, and a poll's defaults."""

import pytest

from dfly.errors import BadRequest
from dfly.protocol import publications as rules
from dfly.protocol import topics
from dfly.protocol.preheat import MAX_BLOBS
from dfly.protocol.publications import Publication

DIGEST = "sha256:" + "b" * 64
MANIFEST = "http://reg.example/v2/team/app/manifests/v1"


def record(**fields) -> dict:
    doc = {"seq": 1, "id": "sn:8002/1", "at": 1.0, "kind": "file", "url": "http://o/f"}
    doc.update(fields)
    return doc


def test_a_log_line_without_names_filters_or_blobs_has_none():
    pub = rules.parse(record())
    assert (pub.seq, pub.names, pub.filters, pub.blobs) == (1, (), (), ())


def test_a_file_publication_keeps_its_filters_through_its_log_line():
    pub = Publication(2, "sn:8002/2", 1.0, "file", "http://o/f?t=1", (), ("t",), ())
    assert rules.parse_line(pub.line()).filters == ("t",)


@pytest.mark.parametrize("url, ok", [("u", True), ("", False), ("u" * 8192, True), ("u" * 8193, False)])
def test_a_publication_url_is_1_to_8192_characters(url, ok):
    if ok:
        assert rules.parse(record(url=url)).url == url
    else:
        with pytest.raises(rules.BadRecord, match="^not a publication$"):
            rules.parse(record(url=url))


def test_an_image_of_exactly_max_blobs_and_an_empty_blob_is_a_publication():
    blobs = [[DIGEST, 0]] * MAX_BLOBS
    assert len(rules.parse(record(kind="image", url=MANIFEST, blobs=blobs)).blobs) == MAX_BLOBS
    with pytest.raises(rules.BadRecord):
        rules.parse(record(kind="image", url=MANIFEST, blobs=blobs + [[DIGEST, 0]]))


@pytest.mark.parametrize("names, ok", [
    (["n"] * 64, True), (["n"] * 65, False), (["n" * 1024], True), (["n" * 1025], False),
    ("abc", False), ([5], False),
])
def test_names_are_a_list_of_at_most_64_strings_of_at_most_1024(names, ok):
    if ok:
        assert rules.parse(record(names=names)).names == tuple(names)
    else:
        with pytest.raises(rules.BadRecord):
            rules.parse(record(names=names))


def test_a_log_line_that_is_not_json_says_why():
    with pytest.raises(rules.BadRecord, match="Expecting"):
        rules.parse_line(b"{")


@pytest.mark.parametrize("url, name", [
    ("http://files.example/x?u=ftp://y", "files.example/x"),
    ("http://files.example/a?b?c", "files.example/a"),
    ("http://files.example/a#b#c", "files.example/a"),
])
def test_a_file_is_named_by_its_url_without_scheme_query_or_fragment(url, name):
    assert rules.file_names(url) == (name,)
    assert rules.names_of("file", url) == (name,)


def test_an_image_is_named_by_its_repository_with_and_without_its_tag():
    assert rules.names_of("image", MANIFEST) == ("reg.example/team/app", "reg.example/team/app:v1")


def test_a_publish_field_refused_lists_the_known_ones():
    assert rules.parse_publish({"url": "http://o/f", "filtered_query_params": "t"}).kind == "file"
    with pytest.raises(BadRequest, match="known: type, url, headers, platform, filtered_query_params"):
        rules.parse_publish({"url": "http://o/f", "scope": "x"})


def test_a_poll_without_wait_waits_not_and_names_its_subscriber():
    poll = rules.parse_poll({"subscriber": ["p1"], "topics": ["a/*"]})
    assert (poll.subscriber, poll.after, poll.wait_s) == ("p1", 0, 0.0)


def test_a_poll_skips_the_publication_it_resumes_after_and_matches_by_name():
    log = [Publication(seq, "sn:8002/%d" % seq, 1.0, "image", MANIFEST, rules.names_of("image", MANIFEST),
                       (), ()) for seq in (1, 2)]
    found, resume = rules.matching(log, 1, topics.parse_patterns(["reg.example/team/app:*"]))
    assert [p.seq for p in found] == [2] and resume == 2
