"""Addresses: one parser and one formatter for every flag, key and wire field (pure),
and every settings table refuses a malformed address the same way."""
import dataclasses

import pytest

from dfly import options
from dfly.bench.config import BenchConfig
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.protocol import address as addr
from dfly.protocol.proxyrules import split_authority, split_target
from dfly.supernode.config import SupernodeConfig


@pytest.mark.parametrize("text, default, expected", [
    ("10.0.0.1:8002", None, ("10.0.0.1", 8002)),
    ("supernode.example:80", None, ("supernode.example", 80)),
    ("supernode", 8002, ("supernode", 8002)),
    (":8002", None, ("", 8002)),
    ("[::1]:8002", None, ("::1", 8002)),
    ("[::]:0", None, ("::", 0)),
    ("[::1]", 8002, ("::1", 8002)),
    ("[2001:DB8:0:0::1]:443", None, ("2001:db8::1", 443)),
    (" [::1]:8002 ", None, ("::1", 8002)),
    ("[::ffff:10.0.0.1]:1", None, ("::ffff:a00:1", 1)),
    ("my_host.internal:65535", None, ("my_host.internal", 65535)),
])
def test_addresses_parse_to_an_unbracketed_host_and_a_port(text, default, expected):
    assert addr.parse_address(text, default) == expected


@pytest.mark.parametrize("text, says", [
    ("[::1", "missing ']'"),
    ("[::1:8002", "missing ']'"),
    ("::1:8002", r"needs brackets, as in \[::1\]:8002"),
    ("::1", "needs brackets"),
    ("2001:db8::1", r"\[2001:db8::1\]:PORT"),
    ("fe80::1%eth0", r"zone ids \(%eth0\)"),
    ("[fe80::1%eth0]:8002", r"zone ids \(%eth0\)"),
    ("[fe80::1%25eth0]:8002", "zone ids"),
    ("host%eth0:1", "zone ids"),
    ("[1.2.3.4]:80", "not an IPv6 address"),
    ("[example.com]:80", "not an IPv6 address"),
    ("[::1]8002", "expected ':PORT'"),
    ("[::1]:", "bad port"),
    ("host:", "bad port"),
    ("host:http", "bad port"),
    ("host:-1", "bad port"),
    ("host:+80", "bad port"),
    ("host:٣", "bad port"),
    ("host:65536", "out of range"),
    ("host:000080000", "bad port"),
    ("a b:80", "not a host name"),
    ("user@host:80", "not a host name"),
    ("host/path:80", "not a host name"),
    ("", "empty"),
    ("   ", "empty"),
])
def test_malformed_addresses_are_refused_saying_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=says):
        addr.parse_address(text, 8002)


def test_an_address_without_a_port_needs_a_default():
    with pytest.raises(ValueError, match="no port"):
        addr.parse_address("host")
    with pytest.raises(ValueError, match="must be text"):
        addr.parse_address(8002)


@pytest.mark.parametrize("text, host", [
    ("10.0.0.2", "10.0.0.2"), ("::1", "::1"), ("[::1]", "::1"), ("2001:db8::2", "2001:db8::2"),
    ("peer.example", "peer.example"),
])
def test_a_host_alone_takes_ipv6_with_or_without_brackets(text, host):
    assert addr.parse_host(text) == host


@pytest.mark.parametrize("text", ["fe80::1%eth0", "[fe80::1%eth0]", "10.0.0.2:80", "[::1]:80",
                                  "", "[::1", "a b", "[nope]"])
def test_a_host_alone_refuses_ports_zones_and_junk(text):
    with pytest.raises(ValueError):
        addr.parse_host(text)


def test_ipv6_is_written_in_brackets_everywhere_an_address_is_written():
    assert addr.format_address("::1", 8002) == "[::1]:8002"
    assert addr.format_address("10.0.0.1", 8002) == "10.0.0.1:8002"
    assert addr.format_host("2001:db8::1") == "[2001:db8::1]"
    assert addr.format_host("host") == "host"
    assert addr.canonical_address("[2001:0DB8::0001]:80") == "[2001:db8::1]:80"
    assert addr.canonical_address("[::1]") == "[::1]"
    assert addr.canonical_address("host") == "host"


@pytest.mark.parametrize("text", ["[::1]:8002", "10.0.0.1:1", "h:0", "[2001:db8::7]:65535"])
def test_formatting_a_parsed_address_gives_it_back(text):
    assert addr.format_address(*addr.parse_address(text)) == text


def test_a_wildcard_listener_is_reached_on_the_loopback_of_its_family():
    assert addr.loopback_for("0.0.0.0") == "127.0.0.1"
    assert addr.loopback_for("") == "127.0.0.1"
    assert addr.loopback_for("::") == "::1"
    assert addr.loopback_for("10.0.0.1") == "10.0.0.1"


def test_an_ipv4_client_of_a_dual_stack_listener_is_its_plain_ipv4_address():
    assert addr.plain_ip("::ffff:10.0.0.7") == "10.0.0.7"
    assert addr.plain_ip("::ffff:127.0.0.1") == "127.0.0.1"
    assert addr.plain_ip("::1") == "::1"
    assert addr.plain_ip("10.0.0.7") == "10.0.0.7"
    assert addr.plain_ip("::ffff:nonsense.") == "::ffff:nonsense."


def test_the_uploader_listens_on_the_family_it_advertises():
    assert addr.upload_address("0.0.0.0:0", "2001:db8::2") == ("::", 0)
    assert addr.upload_address("0.0.0.0:0", "10.0.0.2") == ("0.0.0.0", 0)
    assert addr.upload_address(":7000", "::1") == ("::", 7000)
    assert addr.upload_address("0.0.0.0:0", "peer.example") == ("0.0.0.0", 0)
    assert addr.upload_address("127.0.0.1:0", "::1") == ("127.0.0.1", 0)   # asked for: kept
    assert addr.upload_address("[::]:0", "10.0.0.2") == ("::", 0)


@pytest.mark.parametrize("url", ["http://[::1]:8080/file", "https://[2001:db8::1]/x",
                                 "http://user:pw@[::1]:80/x", "http://10.0.0.1/", "http://h/x",
                                 "file:///tmp/x"])
def test_urls_with_plain_hosts_pass(url):
    addr.check_url(url)


@pytest.mark.parametrize("url, says", [
    ("http://[fe80::1%25eth0]:8080/file", "zone ids"),
    ("http://[fe80::1%eth0]/file", "zone ids"),
    ("http://[::1/file", "bad URL"),
    ("http://::1:8080/file", "needs brackets"),
    ("http://[1.2.3.4]/", "IPv4 address cannot|not an IPv6 address"),   # urlsplit says it on 3.11.4+
    ("http://host:port/", "bad port"),
])
def test_urls_with_scoped_or_broken_hosts_are_refused(url, says):
    with pytest.raises(ValueError, match=says):
        addr.check_url(url)


def test_the_proxy_reads_ipv6_targets_with_the_same_parser():
    assert split_target("http://[::1]:8080/x?y") == ("http", "::1", 8080, "/x?y")
    assert split_authority("[2001:db8::1]:443") == ("2001:db8::1", 443)
    for bad in ("[fe80::1%25eth0]:443", "::1:443", "[::1:443"):
        with pytest.raises(ValueError):
            split_authority(bad)
    with pytest.raises(ValueError):
        split_target("http://[fe80::1%25lo]/x")


# every settings table ------------------------------------------------------------------

def _address_fields():
    for cls in (SupernodeConfig, PeerConfig, DaemonConfig, BenchConfig):
        for f in dataclasses.fields(cls):
            if f.metadata.get("kind") in ("address", "host", "url"):
                yield cls, f


ADDRESS_FIELDS = list(_address_fields())
BAD = {"address": ["[::1", "::1:8002", "[fe80::1%eth0]:8002", "fe80::1%eth0"],
       "host": ["[::1", "fe80::1%eth0", "[fe80::1%eth0]", "10.0.0.1:80"],
       "url": ["http://[::1/", "http://[fe80::1%25eth0]:5000", "http://::1:5000/"]}


def test_every_address_setting_is_declared_as_one():
    names = {(cls.__name__, f.name) for cls, f in ADDRESS_FIELDS}
    assert names == {("SupernodeConfig", "listen"), ("SupernodeConfig", "advertise"),
                     ("SupernodeConfig", "cluster"), ("PeerConfig", "supernode"),
                     ("PeerConfig", "advertise"), ("PeerConfig", "upload_listen"),
                     ("DaemonConfig", "supernode"), ("DaemonConfig", "listen"),
                     ("DaemonConfig", "advertise"), ("DaemonConfig", "upload_listen"),
                     ("DaemonConfig", "registry_mirror"), ("BenchConfig", "supernode"),
                     ("BenchConfig", "advertise"), ("BenchConfig", "upload_listen"),
                     ("SupernodeConfig", "join"), ("SupernodeConfig", "gossip_listen"),
                     ("DaemonConfig", "join"), ("DaemonConfig", "gossip_listen"),
                     ("SupernodeConfig", "upstream_supernode"),
                     ("SupernodeConfig", "upstream_upload_listen"),
                     ("SupernodeConfig", "s3_endpoint"), ("PeerConfig", "s3_endpoint")}


@pytest.mark.parametrize("cls, f", ADDRESS_FIELDS,
                         ids=lambda v: getattr(v, "name", getattr(v, "__name__", "")))
def test_every_address_flag_and_key_refuses_bad_input_naming_itself(cls, f):
    flag = options._flag(f)
    for bad in BAD[f.metadata["kind"]]:
        value = [bad] if f.default is dataclasses.MISSING else bad
        with pytest.raises(ValueError, match="bad value for %s: " % flag):
            options.build(cls, {f.name.replace("_", "-"): value})
        with pytest.raises(ValueError, match="bad value for %s: " % flag):
            options.build(cls, None, None, **{f.name: value})


def test_address_settings_are_kept_in_one_written_form():
    config = options.build(SupernodeConfig, {"listen": "[0:0::1]:8002"},
                           cluster=["[::1]:8002,[::2]:8002", " 10.0.0.1:8002 "])
    assert config.listen == "[::1]:8002"
    assert config.cluster == ["[::1]:8002", "[::2]:8002", "10.0.0.1:8002"]
    peer = options.build(PeerConfig, {"advertise": "[2001:db8::2]"}, supernode=["[::1]:8002"])
    assert peer.advertise == "2001:db8::2"
    assert peer.supernode == ["[::1]:8002"]
    assert options.build(PeerConfig, advertise="").advertise == ""


@pytest.mark.parametrize("call, text, says", [
    (addr.parse_address, "[::1", "'[::1': missing ']' after the IPv6 address"),
    (addr.parse_address, "::1:8002", "'::1:8002': an IPv6 address needs brackets, as in [::1]:8002"),
    (addr.parse_address, "::1:65535", "as in [::1]:65535"),
    (addr.parse_address, "2001:db8::1", "as in [2001:db8::1]:PORT"),
    (addr.parse_address, "a:b:c", "as in [ADDR]:PORT"),
    (addr.parse_address, "host", "'host': no port (write HOST:PORT)"),
    (addr.parse_address, "[zz]:80", "'[zz]:80': 'zz' is not an IPv6 address"),
    (addr.parse_address, "a b:80", "'a b:80': 'a b' is not a host name or address"),
    (addr.parse_address, "h:99999", "'h:99999': port out of range"),
    (addr.parse_address, "h:000080", "'h:000080': bad port"),
    (addr.parse_host, "[zz]", "'[zz]': 'zz' is not an IPv6 address"),
    (addr.parse_host, "h:80", "'h:80': a host without a port is wanted here"),
    (addr.parse_host, "fe80::1%eth0", "'fe80::1%eth0': zone ids (%eth0) are not supported"),
    (addr.parse_address, "127..1:80", "'127..1:80': '127..1' is not a host name or address"),
    (addr.parse_address, "::1:65536", "as in [ADDR]:PORT"),
    (addr.check_url, "http://a b/x", "bad host in URL 'http://a b/x'"),
    (addr.parse_host, "a b", "'a b': 'a b' is not a host name"),
    (addr.parse_host, 5, "a host must be text, got 5"),
    (addr.parse_host, "", "empty host"),
])
def test_each_refusal_quotes_what_was_typed_and_says_what_is_wrong(call, text, says):
    """README quotes these words; a flag's error repeats them after its name."""
    with pytest.raises(ValueError) as refused:
        call(text)
    assert says in str(refused.value)


def test_a_port_of_zero_is_kept_when_written():
    assert addr.canonical_address("h:0") == "h:0"
    assert addr.canonical_address("[::1]:0") == "[::1]:0"


def test_an_upload_address_without_a_port_picks_a_free_one():
    assert addr.upload_address("0.0.0.0", "") == ("0.0.0.0", 0)
    assert addr.upload_address("127.0.0.1", "::1") == ("127.0.0.1", 0)


def test_only_an_ipv6_address_without_a_zone_is_ipv6():
    assert addr.is_ipv6("::1") and addr.is_ipv6("2001:db8::1")
    assert not addr.is_ipv6("127.0.0.1") and not addr.is_ipv6("host")
    assert not addr.is_ipv6("fe80::1%eth0")


@pytest.mark.parametrize("cls, needed", [(PeerConfig, {"supernode": ["[::1]:1"]}),
                                         (SupernodeConfig, {})])
def test_the_s3_endpoint_takes_an_ipv6_url_and_refuses_a_malformed_one(cls, needed):
    config = options.build(cls, None, None, s3_endpoint="http://[::1]:9000", **needed)
    assert config.s3_endpoint == "http://[::1]:9000"
    for bad in ("http://::1:9000", "http://[fe80::1%25eth0]:9000", "http://[::1:9000"):
        with pytest.raises(ValueError, match="bad value for --s3-endpoint: "):
            options.build(cls, None, None, s3_endpoint=bad, **needed)
