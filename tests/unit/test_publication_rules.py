"""Publications as rules: the publish body, the log line, polls, retention."""
import pytest

from dfly.errors import BadRequest
from dfly.protocol import publications as rules
from dfly.protocol import topics
from dfly.protocol.publications import Publication, Retention

DIGEST = "sha256:" + "b" * 64


def _pub(seq, url="http://o/a/f", at=100.0, names=(), kind="file"):
    return Publication(seq, "sn:8002/%d" % seq, at, kind, url, names, (), ())


def test_a_publish_body_is_a_preheat_for_all_peers_and_its_type_may_be_left_out():
    req = rules.parse_publish({"url": "http://127.0.0.1:5000/v2/a/b/manifests/v1",
                               "headers": {"Authorization": "Bearer x"}, "platform": "linux/amd64"})
    assert (req.kind, req.scope, req.platforms) == ("image", "all_peers", ("linux/amd64",))
    assert rules.parse_publish({"url": "http://o/f.bin"}).kind == "file"


@pytest.mark.parametrize("body, field", [
    ([], "JSON object"), ({}, "'url'"), ({"url": 5}, "'url'"), ({"url": "http://o/f", "type": "x"}, "'type'"),
    ({"url": "http://o/f", "headers": "h"}, "'headers'"), ({"url": "http://o/f", "scope": "x"}, "'scope'"),
    ({"url": "http://o/f", "filtered_query_params": 3}, "'filtered_query_params'"),
    ({"type": "image", "url": "http://o/f"}, "'url'"),
])
def test_a_bad_publish_body_names_its_field(body, field):
    with pytest.raises(BadRequest) as e:
        rules.parse_publish(body)
    assert field in str(e.value)
    assert "args." not in str(e.value)


def test_a_publication_goes_through_its_log_line_unchanged():
    pub = Publication(3, "[::1]:8002/3", 1.5, "image", "http://r/v2/a/manifests/v1", ("r/a", "r/a:v1"),
                      (), ((DIGEST, 10, ()), ("sha256:" + "c" * 64, 5, ("linux/amd64", "linux/arm64"))))
    assert rules.parse_line(pub.line()) == pub
    assert b'["%s",10]' % DIGEST.encode() in pub.line(), "a blob of no platform is written as before"
    assert pub.size() == 15
    assert pub.blob_url(DIGEST) == "http://r/v2/a/blobs/" + DIGEST
    assert pub.renumbered(9).seq == 9 and pub.renumbered(9).id == pub.id


@pytest.mark.parametrize("line", [
    b"", b"{", b"[]", b'{"seq": 0, "id": "a/1", "at": 1, "kind": "file", "url": "u"}',
    b'{"seq": 1, "id": "no-seq", "at": 1, "kind": "file", "url": "u"}',
    b'{"seq": 1, "id": "a/1", "at": 1, "kind": "file", "url": "u", "blobs": [["md5:x", 1]]}',
    b'{"seq": true, "id": "a/1", "at": 1, "kind": "file", "url": "u"}',
])
def test_a_bad_log_line_is_not_a_publication(line):
    with pytest.raises(rules.BadRecord):
        rules.parse_line(line)


def test_a_poll_answers_matching_publications_and_resumes_past_the_others():
    log = [_pub(1, "http://o/a/1"), _pub(2, "http://o/b/2"), _pub(3, "http://o/a/3"), _pub(4, "http://o/b/4")]
    a = topics.parse_patterns(["http://o/a/"])
    found, resume = rules.matching(log, 0, a)
    assert [p.seq for p in found] == [1, 3] and resume == 4
    found, resume = rules.matching(log, 0, a, limit=1)   # 3 waits for the next poll
    assert [p.seq for p in found] == [1] and resume == 2
    found, resume = rules.matching(log, 2, a, limit=1)
    assert [p.seq for p in found] == [3] and resume == 4
    found, resume = rules.matching(log, 4, a)
    assert found == [] and resume == 4


def test_poll_parameters_are_checked_and_named():
    poll = rules.parse_poll({"subscriber": ["p1"], "after": ["7"], "topics": ["a/*,b/*"], "wait": ["99"]})
    assert poll.after == 7 and [p.text for p in poll.patterns] == ["a/*", "b/*"]
    assert poll.wait_s == rules.MAX_WAIT_S
    for query, name in [({"topics": ["a"]}, "'subscriber'"),
                        ({"subscriber": ["p/1"], "topics": ["a"]}, "'subscriber'"),
                        ({"subscriber": ["p"], "topics": ["a"], "after": ["-1"]}, "'after'"),
                        ({"subscriber": ["p"]}, "'topics'"),
                        ({"subscriber": ["p"], "topics": [","]}, "'topics'"),
                        ({"subscriber": ["p"], "topics": ["a"], "wait": ["1e9"]}, "'wait'"),
                        ({"subscriber": ["p", "q"], "topics": ["a"]}, "'subscriber'")]:
        with pytest.raises(BadRequest) as e:
            rules.parse_poll(query)
        assert name in str(e.value), query


def test_retention_drops_the_oldest_by_age_and_by_count():
    log = [_pub(i, at=float(i)) for i in range(1, 11)]
    assert rules.expired(log, now=10.0, retention=Retention(keep_s=100.0, keep_count=20)) == 0
    assert rules.expired(log, now=10.0, retention=Retention(keep_s=100.0, keep_count=4)) == 6
    assert rules.expired(log, now=10.0, retention=Retention(keep_s=5.0, keep_count=20)) == 4
    assert rules.expired(log, now=1000.0, retention=Retention(keep_s=5.0, keep_count=20)) == 10


@pytest.mark.parametrize("platforms, wanted, expected", [
    ((), ("linux/amd64",), True), (("linux/amd64",), (), True),
    (("linux/amd64",), ("linux/amd64",), True), (("linux/arm64/v8",), ("linux/arm64",), True),
    (("linux/amd64", "linux/arm64"), ("linux/arm64",), True), (("linux/amd64",), ("linux/arm64",), False),
    (("linux/arm64",), ("linux/arm64/v8",), False), (("linux/arm",), ("linux/arm64",), False),
])
def test_a_daemon_fetches_the_blobs_of_its_platforms(platforms, wanted, expected):
    assert rules.platform_wanted(platforms, wanted) is expected


def test_a_bad_subscribe_platform_is_named():
    assert rules.parse_platforms(["linux/amd64", "linux/arm/v7"]) == ("linux/amd64", "linux/arm/v7")
    with pytest.raises(ValueError, match="'amd64'"):
        rules.parse_platforms(["amd64"])
