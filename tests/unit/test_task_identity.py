"""Task identity: the URL minus the --filter query parameters, plus digest and identifier."""
import pytest

from dfly.protocol.task import PEER_ID, TASK_ID, filtered_url, split_filters, task_id

URL = "https://cdn.example/files/big.iso?token=abc&expires=1700000000&part=2"


def test_task_id_is_64_hex_digits_and_stable():
    tid = task_id(URL)
    assert TASK_ID.match(tid)
    assert task_id(URL) == tid
    # pinned: supernodes and peers of different versions must agree on ids
    assert task_id("http://origin.example/f.bin") == \
        "5f2e9be70031e9ee70149ad7802335faca1d37a42f45d0ebed5f6a2ed89f2b55"


def test_urls_differing_only_in_filtered_parameters_are_one_task():
    a = "https://cdn.example/f?token=AAA&part=2&expires=1"
    b = "https://cdn.example/f?token=BBB&part=2&expires=2"
    assert task_id(a, ["token", "expires"]) == task_id(b, ["token", "expires"])
    assert task_id(a) != task_id(b)


def test_urls_differing_in_unfiltered_parameters_are_different_tasks():
    a = "https://cdn.example/f?token=AAA&part=1"
    b = "https://cdn.example/f?token=AAA&part=2"
    assert task_id(a, ["token"]) != task_id(b, ["token"])


def test_digest_and_identifier_each_make_a_different_task():
    digest = "sha256:" + "0" * 64
    ids = {task_id(URL), task_id(URL, digest=digest), task_id(URL, identifier="v1"),
           task_id(URL, digest=digest, identifier="v1"), task_id(URL, identifier="v2")}
    assert len(ids) == 5


def test_an_empty_digest_or_identifier_is_the_same_as_none():
    assert task_id(URL, digest="", identifier="") == task_id(URL)


def test_the_identifier_cannot_be_confused_with_the_digest():
    assert task_id(URL, digest="x") != task_id(URL, identifier="x")


def test_filter_removes_only_the_named_query_parameters():
    assert filtered_url(URL, ["token", "expires"]) == "https://cdn.example/files/big.iso?part=2"


def test_filter_removes_every_occurrence_of_a_named_parameter():
    assert filtered_url("http://h/f?sig=1&a=2&sig=3", ["sig"]) == "http://h/f?a=2"


def test_filter_matches_whole_parameter_names_only():
    url = "http://h/f?sig=1&signature=2&xsig=3&a=sig"
    assert filtered_url(url, ["sig"]) == "http://h/f?signature=2&xsig=3&a=sig"


def test_filter_keeps_parameters_with_empty_values():
    assert filtered_url("http://h/f?flag=&sig=1&a=2", ["sig"]) == "http://h/f?flag=&a=2"

def test_filter_names_are_case_sensitive():
    assert filtered_url("http://h/f?Sig=1&sig=2", ["sig"]) == "http://h/f?Sig=1"


def test_filter_keeps_scheme_host_path_and_fragment():
    assert filtered_url("https://u@h:8443/a/b?sig=1&k=v#frag", ["sig"]) == "https://u@h:8443/a/b?k=v#frag"


def test_filtering_every_parameter_leaves_no_question_mark():
    assert filtered_url("http://h/f?sig=1", ["sig"]) == "http://h/f"


def test_no_filters_leave_the_url_untouched():
    url = "http://h/f?b=2&a=%20&c"
    assert filtered_url(url) == url
    assert filtered_url(url, []) == url
    assert filtered_url(url, [""]) == url


def test_split_filters_accepts_repeated_and_separated_names():
    assert split_filters(["token&expires", "sig,part", "x"]) == ["token", "expires", "sig", "part", "x"]


def test_split_filters_drops_empty_names():
    assert split_filters(["", "&&a,,b&", ","]) == ["a", "b"]
    assert split_filters([]) == []


@pytest.mark.parametrize("peer_id", ["a", "peer-1", "0f3c9a7b2d1e4f60", "A.b_c-9", "x" * 64])
def test_peer_id_pattern_accepts_short_safe_names(peer_id):
    assert PEER_ID.match(peer_id)


@pytest.mark.parametrize("peer_id", ["", "x" * 65, "a b", "a/b", "a:b", "é", "a\r\nb"])
def test_peer_id_pattern_refuses_everything_else(peer_id):
    assert not PEER_ID.match(peer_id)


@pytest.mark.parametrize("pattern, good", [(PEER_ID, "peer-1"), (TASK_ID, "a" * 64)],
                         ids=["PEER_ID", "TASK_ID"])
def test_id_patterns_refuse_a_trailing_newline(pattern, good):
    # `$` also matches just before a final "\n", so "peer-1\n" passes a re.match check
    assert pattern.match(good)
    assert not pattern.match(good + "\n")


@pytest.mark.parametrize("tid", ["A" * 64, "a" * 63, "a" * 65, "g" * 64, "", "../" + "a" * 61])
def test_task_id_pattern_refuses_anything_but_64_lower_hex_digits(tid):
    assert not TASK_ID.match(tid)


def test_a_digest_given_as_identifier_makes_the_content_the_task_whatever_the_url():
    digest = "sha256:" + "ab" * 32
    a = task_id("http://reg-a/v2/team/one/blobs/" + digest, digest=digest, identifier=digest)
    b = task_id("https://reg-b:5000/v2/other/two/blobs/" + digest, digest=digest,
                identifier=digest.upper().replace("SHA256", "sha256"))
    assert a == b and TASK_ID.match(a)
    assert a != task_id("http://reg-a/v2/team/one/blobs/" + digest, digest=digest)
    assert a != task_id("http://x/", digest="sha256:" + "cd" * 32, identifier="sha256:" + "cd" * 32)
