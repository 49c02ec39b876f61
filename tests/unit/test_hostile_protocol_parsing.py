"""Hypothesis over the parsers test_hostile_parsing.py does not reach, each of
which sees network input: the cluster signature header, piece-access tokens,
Harbor's preheat bodies and the registry manifests a preheat walks, the
publish and poll requests and the log lines of publish/subscribe, subscription
patterns, and the supernode's source rules (config, as proxy rules are). Each
only ever returns a value or raises the project's typed error, and a value it
returns is one the caller can use."""
import json
import time

from hypothesis import example, given
from hypothesis import strategies as st
from test_hostile_parsing import FAST, hostile_text, json_values, near, only_typed, urls

from dfly import export
from dfly.errors import BadRequest, Forbidden
from dfly.protocol import ocilayout, piecetoken, preheat, publications, signing, sourcepolicy, topics

DEEP = b"[" * 5000   # json.loads raises RecursionError on it, not ValueError
KEY = b"k" * 32
MEMBERS = ["127.0.0.1:8002", "127.0.0.1:8003"]
NOW = 1.7e9


# the cluster signature (X-Dfly-Cluster) -----------------------------------------------------

def _signed(member, ts, nonce, sig):
    return "v1 member=%s ts=%s nonce=%s sig=%s" % (member, ts, nonce, sig)


signature_headers = st.one_of(
    hostile_text,
    st.builds(_signed, st.one_of(st.sampled_from(MEMBERS), hostile_text),
              st.one_of(st.sampled_from(["%.3f" % NOW, "0", "999999999999.999999", "1e9"]), hostile_text),
              st.one_of(st.text(alphabet="0123456789abcdef", min_size=16, max_size=64), hostile_text),
              st.one_of(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), hostile_text)))


@FAST
@given(st.one_of(st.none(), signature_headers), st.sampled_from(["GET", "POST", "PUT", "ge\u0130"]),
       hostile_text, st.binary(max_size=64), st.floats(allow_nan=True))
@example(_signed("127.0.0.1:8002\u00b2", "%.3f" % NOW, "a" * 16, "b" * 64), "GET", "/", b"", NOW)
def test_a_cluster_signature_is_a_member_or_forbidden(header, method, path, body, now):
    verifier = signing.Verifier(KEY, MEMBERS)
    member = only_typed(lambda: verifier.verify(header, method, path, body, now), Forbidden)
    assert member is None   # nothing but a real signature is taken


@FAST
@given(st.sampled_from(MEMBERS), st.sampled_from(["GET", "POST", "PUT"]), hostile_text,
       st.binary(max_size=64), st.text(alphabet="0123456789abcdef", min_size=16, max_size=64))
def test_a_real_signature_is_taken_once_and_never_for_another_body(member, method, path, body, nonce):
    verifier = signing.Verifier(KEY, MEMBERS)
    header = signing.sign(KEY, member, method, path, body, NOW, nonce)
    assert verifier.verify(header, method, path, body, NOW + 1) == member
    for replay in ((header, method, path, body), (header, method, path, body + b"x")):
        assert only_typed(lambda r=replay: verifier.verify(*r, NOW + 2), Forbidden) is None


# piece-access tokens (X-Dfly-Piece-Token, ?peer=) --------------------------------------------

tokens = st.one_of(st.none(), hostile_text, st.builds(
    lambda expiry, sig: "v1.%s.%s" % (expiry, sig),
    st.one_of(st.integers(min_value=-1, max_value=10 ** 13).map(str), hostile_text),
    st.one_of(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64), hostile_text)))


@FAST
@given(tokens, hostile_text, hostile_text, st.floats(allow_nan=True))
@example("v1.99999999999.%s" % ("a" * 64), "t", "p", NOW)
def test_a_piece_token_that_was_not_minted_is_a_refusal_reason(token, task, requester, now):
    reason = piecetoken.refusal(token, [KEY, b""], task, requester, now)
    assert isinstance(reason, str) and reason


@FAST
@given(hostile_text, hostile_text.filter(bool), hostile_text)
def test_a_minted_token_opens_its_task_for_its_requester_only(task, requester, other):
    token = piecetoken.mint(KEY, task, requester, NOW)
    assert piecetoken.refusal(token, [b"other", KEY], task, requester, NOW + 1) is None
    if other != requester:
        assert piecetoken.refusal(token, [KEY], task, other, NOW + 1)
    assert piecetoken.refusal(token, [KEY], task, requester, NOW + piecetoken.TTL_S + 60)


# Harbor's preheat bodies and the manifests a preheat walks -------------------------------------

MANIFEST_URL = "http://127.0.0.1:5000/v2/team/app/manifests/latest"
VALID_V1 = {"type": "image", "url": MANIFEST_URL, "headers": {"Authorization": "Bearer x"},
            "image": "team/app", "tag": "latest", "scope": "single_peer"}
VALID_ARGS = {"type": "image", "url": MANIFEST_URL, "headers": {"A": "b"}, "platform": "linux/amd64",
              "tag": "latest", "username": "u", "password": "p", "filtered_query_params": "sig",
              "concurrent_count": 3, "timeout": 60, "scope": "all_peers"}


@FAST
@given(st.one_of(near(VALID_V1, st.one_of(json_values, urls)), json_values))
def test_a_dragonfly_1_preheat_body_is_a_request_or_bad_request(body):
    request = only_typed(lambda: preheat.parse_v1(body), BadRequest)
    if request is not None and request.kind == "image":
        preheat.image_ref(request.url)


@FAST
@given(st.one_of(st.fixed_dictionaries({"type": st.sampled_from(["preheat", "x"])}, optional={
    "args": st.one_of(near(VALID_ARGS, st.one_of(json_values, urls)), json_values),
    "scheduler_cluster_ids": json_values}), json_values))
def test_a_dragonfly_2_preheat_job_is_a_request_or_bad_request(body):
    request = only_typed(lambda: preheat.parse_v2(body), BadRequest)
    if request is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in request.headers.items())


DIGEST = "sha256:" + "a" * 64
entries = st.one_of(json_values, near({"digest": DIGEST, "mediaType": "x", "size": 1,
                                       "platform": {"os": "linux", "architecture": "amd64"}}))
manifests = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda doc: json.dumps(doc).encode(), st.one_of(json_values, st.fixed_dictionaries(
        {}, optional={
        "mediaType": st.one_of(st.sampled_from(preheat.INDEX_TYPES + preheat.MANIFEST_TYPES + ("x", "")),
                               json_values),
        "manifests": st.one_of(st.lists(entries, max_size=4), json_values),
        "layers": st.one_of(st.lists(entries, max_size=4), json_values),
        "config": entries}))))


@FAST
@given(manifests, st.sampled_from(["", "application/json", preheat.INDEX_TYPES[0], "x;y"]),
       st.lists(st.sampled_from(["linux/amd64", "linux/arm64/v8", ""]), max_size=2).map(tuple))
@example(DEEP, "", ())
def test_a_registry_manifest_is_walked_or_bad_manifest(body, media_type, platforms):
    walked = only_typed(lambda: preheat.walk(body, media_type, platforms), preheat.BadManifest)
    if walked is not None:
        assert all(isinstance(d, str) for d in walked.manifests)
        assert len(walked.blobs) <= preheat.MAX_BLOBS
    assert isinstance(preheat.manifest_platforms(body), dict)


@FAST
@given(st.one_of(hostile_text, urls))
def test_a_preheat_id_an_image_reference_and_a_target_parse_or_bad_request(text):
    only_typed(lambda: preheat.parse_job_id(text), BadRequest)
    ref = only_typed(lambda: preheat.image_ref(text), BadRequest)
    if ref is not None:
        assert ref.base.startswith(("http://", "https://", "HTTP://", "HTTPS://"))
    found = only_typed(lambda: preheat.target_url(text), BadRequest, ValueError)
    if found is not None:
        assert found[0] in ("image", "file")


# publish/subscribe ---------------------------------------------------------------------------

VALID_PUBLICATION = {"seq": 1, "id": "p-1", "at": NOW, "kind": "image", "url": MANIFEST_URL,
                     "names": ["a"], "filters": [], "blobs": [[DIGEST, 3, ["linux/amd64"]]]}


@FAST
@given(st.one_of(near(VALID_PUBLICATION), json_values))
@example({"seq": True, "id": "p", "at": 1, "kind": "file", "url": "u"})
def test_a_publication_record_is_a_publication_or_bad_record(doc):
    found = only_typed(lambda: publications.parse(doc), publications.BadRecord)
    line = json.dumps(doc, allow_nan=True).encode()
    assert only_typed(lambda: publications.parse_line(line), publications.BadRecord) == found
    if found is not None:
        assert found.seq > 0 and found.url


@FAST
@given(st.one_of(st.binary(max_size=80), hostile_text.map(str.encode)))
@example(DEEP)
def test_a_publication_log_line_is_a_publication_or_bad_record(line):
    only_typed(lambda: publications.parse_line(line), publications.BadRecord)


@FAST
@given(st.one_of(near({"type": "image", "url": MANIFEST_URL, "headers": {"A": "b"},
                       "platform": "linux/amd64", "filtered_query_params": "sig"},
                      st.one_of(json_values, urls)), json_values))
def test_a_publish_body_is_a_request_or_bad_request(body):
    request = only_typed(lambda: publications.parse_publish(body), BadRequest)
    if request is not None:
        assert request.scope == preheat.SCOPE_ALL_PEERS


@FAST
@given(st.dictionaries(st.sampled_from(["subscriber", "after", "topics", "wait", "x"]),
                       st.lists(st.one_of(hostile_text, st.sampled_from(
                           ["d-1", "0", "17", "*", "a/*,https://f/", "1.5", "999.999"])),
                           max_size=2), max_size=5))
def test_a_poll_query_is_a_poll_or_bad_request(query):
    poll = only_typed(lambda: publications.parse_poll(query), BadRequest)
    if poll is not None:
        assert 0 <= poll.wait_s <= publications.MAX_WAIT_S and poll.patterns


@FAST
@given(st.lists(st.one_of(hostile_text, st.just("*" * 17), st.just("a*" * 300)), max_size=40),
       hostile_text, st.lists(hostile_text, max_size=3))
def test_topic_patterns_parse_or_bad_request_and_match_in_linear_time(texts, url, names):
    patterns = only_typed(lambda: topics.parse_patterns(texts), BadRequest)
    for pattern in patterns or []:
        assert len(pattern.text) <= topics.MAX_PATTERN_LEN and pattern.text.count("*") <= topics.MAX_STARS
        began = time.monotonic()
        assert topics.matches(pattern, url * 50, [n * 50 for n in names]) in (True, False)
        assert time.monotonic() - began < 1.0


# the supernode's source rules (--allow-source / --deny-source) --------------------------------

@FAST
@given(st.one_of(hostile_text, st.sampled_from(["https:", "ftp://", "10.0.0.0/8", "[::1]", "fe80::/10",
                                                "*.example.com", "-", "256.1.1.1/33", "a..b"])))
def test_a_source_rule_parses_or_value_error(text):
    rule = only_typed(lambda: sourcepolicy.parse_rule(text), ValueError)
    if rule is not None:
        assert rule[0] in ("scheme", "network", "name")


def test_a_deeply_nested_manifest_is_a_bad_manifest_not_a_recursion_error():
    """Found here: a registry (or an archive) sending `[[[[...` made walk() raise
    RecursionError, a traceback from `dfly export` and a crashed preheat job."""
    try:
        preheat.walk(DEEP, "application/json")
    except preheat.BadManifest as e:
        assert "not JSON" in str(e)
    else:
        raise AssertionError("walked a body that is not a manifest")


def test_a_deeply_nested_archive_index_is_a_bad_archive_and_a_manifest_keeps_the_sent_type():
    """The same nesting in an import archive's index.json or dfly-files.json (a traceback
    from `dfly import`), and in a manifest `dfly export` reads its media type from."""
    for parse in (ocilayout.parse_layout_index, ocilayout.parse_files_index):
        assert only_typed(lambda p=parse: p(DEEP), ocilayout.BadArchive) is None
    assert export._media_type(DEEP, "application/x-sent") == "application/x-sent"
