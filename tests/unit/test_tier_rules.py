"""The pure rules of supernode tiers (protocol/tiers.py) and of a daemon
mirroring several registries (peer/mirrors.py)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfly.httpd import Request
from dfly.peer.front import FrontRequest
from dfly.peer.mirrors import Mirrors, parse_mirror_registry, registry_name
from dfly.protocol.tiers import (
    MAX_VIA,
    NODE_ID,
    UpstreamLoop,
    check_upstreams,
    check_via,
    format_via,
    parse_via,
    take_via,
)


def test_the_chain_is_taken_out_of_the_source_headers_whatever_its_case():
    headers = {"Authorization": "Bearer x", "x-dfly-via": "aa, bb"}
    assert take_via(headers) == ("aa", "bb")
    assert headers == {"Authorization": "Bearer x"}


def test_a_chain_sent_twice_under_two_spellings_is_read_whole():
    headers = {"X-Dfly-Via": "aa", "x-dfly-via": "bb"}
    assert take_via(headers) == ("aa", "bb") and headers == {}


def test_a_chain_goes_on_the_wire_as_ids_joined_by_commas_and_reads_back():
    assert format_via(("aa", "b.b", "c-c")) == "aa,b.b,c-c"
    assert parse_via(format_via(("aa", "b.b"))) == ("aa", "b.b")


def test_a_chain_may_carry_max_via_ids_and_no_more():
    assert len(parse_via(",".join("n%d" % i for i in range(MAX_VIA)))) == MAX_VIA
    with pytest.raises(UpstreamLoop, match="at most %d supernode ids" % MAX_VIA):
        parse_via(",".join("n%d" % i for i in range(MAX_VIA + 1)))


def test_a_chain_that_is_not_one_is_refused():
    with pytest.raises(UpstreamLoop, match="bad X-Dfly-Via"):
        take_via({"X-Dfly-Via": "a b"})
    with pytest.raises(UpstreamLoop):
        take_via({"X-Dfly-Via": ",".join("n%d" % i for i in range(40))})


def test_a_supernode_finding_itself_in_the_chain_refuses_it():
    check_via(("a", "b"), "c", 4)
    with pytest.raises(UpstreamLoop, match="upstream loop"):
        check_via(("a", "c"), "c", 4)


def test_a_chain_longer_than_the_hop_limit_is_refused():
    check_via(("a", "b", "c", "e"), "d", 4)
    with pytest.raises(UpstreamLoop, match="too many supernode tiers"):
        check_via(("a", "b", "c", "e", "f"), "d", 4)


@pytest.mark.parametrize("upstream, own", [
    ("127.0.0.1:8002", ["127.0.0.1:8002"]),
    ("127.0.0.1:8002", ["0.0.0.0:8002"]),
    ("localhost:9000", [":9000"]),
    ("[::1]:8002", ["[::]:8002"]),
    ("10.0.0.2:8002", ["10.0.0.1:8002", "10.0.0.2:8002"]),   # a member of its own cluster
])
def test_a_supernode_cannot_be_its_own_upstream(upstream, own):
    with pytest.raises(ValueError, match="its own upstream"):
        check_upstreams([upstream], own)


def test_another_host_or_port_is_an_upstream():
    check_upstreams(["10.0.0.9:8002", "127.0.0.1:8003"], ["0.0.0.0:8002", "10.0.0.1:8002"])
    check_upstreams(["upstream.example:8002"], ["0.0.0.0:8002"])   # a name is not this host


@pytest.mark.parametrize("upstream, own", [("127.0.0.1", ["127.0.0.1:8002"]),
                                           ("127.0.0.1:8002", ["127.0.0.1"]),
                                           ("localhost:8002", ["LOCALHOST:8002"])])
def test_an_address_without_a_port_is_on_8002_and_names_compare_in_any_case(upstream, own):
    with pytest.raises(ValueError, match="its own upstream"):
        check_upstreams([upstream], own)


def test_a_mirrored_registry_is_named_as_image_references_name_it():
    assert parse_mirror_registry("http://127.0.0.1:5000") == ("127.0.0.1:5000", "http://127.0.0.1:5000")
    assert parse_mirror_registry("Quay.io=https://quay.io") == ("quay.io", "https://quay.io")
    assert registry_name("https://registry-1.docker.io") == "docker.io"
    assert parse_mirror_registry("http://[::1]:5000") == ("[::1]:5000", "http://[::1]:5000")
    for bad in ("ftp://x", "name=", "a/b=https://x", "http://[::1", "http://h:99999",
                "x=http://[fe80::1%25eth0]:5000", "x=http://::1:5000"):
        with pytest.raises(ValueError, match="--mirror-registry"):
            parse_mirror_registry(bad)


def _request(target: str) -> FrontRequest:
    path, _, query = target.partition("?")
    from urllib.parse import parse_qs
    return FrontRequest("GET", path, parse_qs(query), {}, b"", ("127.0.0.1", 1), target=target)


def test_requests_go_to_the_registry_their_ns_names_and_lose_the_ns():
    mirrors = Mirrors("hub", "https://registry-1.docker.io", {"quay.io": "quay"})
    mirror, request, _ = mirrors.pick(_request("/v2/a/manifests/v1?ns=quay.io&n=1"))
    assert mirror == "quay" and request.target == "/v2/a/manifests/v1?n=1"
    assert "ns" not in request.query
    assert mirrors.pick(_request("/v2/a/manifests/v1?ns=docker.io"))[0] == "hub"
    assert mirrors.pick(_request("/v2/a/manifests/v1"))[0] == "hub"
    assert mirrors.pick(_request("/v2/?ns=ghcr.io"))[:3:2] == (None, "ghcr.io")


def test_with_one_registry_ns_is_ignored_as_before():
    mirrors = Mirrors("only", "http://127.0.0.1:5000", {})
    mirror, request, _ = mirrors.pick(_request("/v2/a/blobs/x?ns=docker.io"))
    assert mirror == "only" and request.target == "/v2/a/blobs/x"
    assert isinstance(request, Request)


def test_localhost_is_this_host_whichever_loopback_the_supernode_listens_on():
    with pytest.raises(ValueError, match="its own upstream"):
        check_upstreams(["localhost:8002"], ["127.0.0.1:8002"])
    check_upstreams(["localhost:8002"], ["10.0.0.1:8002"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_via_header_gives_a_chain_or_a_refusal_never_a_crash(value):
    headers = {"X-Dfly-Via": value}
    try:
        chain = take_via(headers)
    except UpstreamLoop:
        return
    assert headers == {} and all(NODE_ID.match(i) for i in chain)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_mirror_registry_value_parses_or_is_a_value_error(text):
    try:
        name, url = parse_mirror_registry(text)
    except ValueError as e:
        assert "--mirror-registry" in str(e)
        return
    assert name and url.startswith(("http://", "https://"))


def test_validate_names_the_line_of_an_upstream_that_is_this_supernode_and_of_a_bad_mirror():
    from dfly import configcheck
    from dfly.peer.daemon_config import DaemonConfig
    from dfly.supernode.config import SupernodeConfig
    text = b'{\n "listen": "0.0.0.0:8002",\n "upstream_supernode": ["127.0.0.1:8002"]\n}\n'
    found = configcheck.check(SupernodeConfig, configcheck.parse(text))
    assert [(f.line, f.level) for f in found if "own upstream" in f.message] == [(3, "error")]
    text = b'{\n "mirror_registry": [\n  "quay.io=https://quay.io",\n  "ftp://x"\n ]\n}\n'
    found = configcheck.check(DaemonConfig, configcheck.parse(text))
    assert [(f.line, f.level) for f in found if "--mirror-registry" in f.message] == [(4, "error")]
    for bad in (b'{"upstream_supernode": "x"}', b'{"mirror_registry": [1]}'):
        configcheck.check(SupernodeConfig if b"upstream" in bad else DaemonConfig,
                          configcheck.parse(bad))   # a type error, reported, not a crash
