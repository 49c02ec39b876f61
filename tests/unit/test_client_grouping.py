"""Who a per-client limit counts as one client (protocol/address.client_key): an
IPv4 address by itself, an IPv6 address by itself by default and by its /64 with
--client-ipv6-prefix 64 (a host can take any address in its /64), an IPv4-mapped
IPv6 address as its IPv4 address. Addresses are from the
documentation ranges (RFC 3849, RFC 5737): strings only, never dialled."""
import pytest

from dfly import options
from dfly.cli import build_parser
from dfly.peer.config import PeerConfig
from dfly.peer.daemon_config import DaemonConfig
from dfly.protocol import preheat
from dfly.protocol.address import client_key
from dfly.protocol.preheat import Jobs, Limits, PreheatRequest
from dfly.supernode.config import SupernodeConfig

URL = "https://files.example/data-"


def test_every_address_of_one_ipv6_slash_64_is_one_client():
    rotated = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2:a:b:c:d",
               "2001:0db8:0001:0002:0000:0000:0000:0009"]
    assert {client_key(a, 64) for a in rotated} == {"2001:db8:1:2::/64"}


def test_neighbouring_ipv6_slash_64s_are_different_clients():
    assert client_key("2001:db8:1:2::1", 64) != client_key("2001:db8:1:3::1", 64)
    assert client_key("2001:db8:1:2::1", 64) != client_key("2001:db8:2:2::1", 64)


def test_ipv4_clients_stay_one_per_address():
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") != client_key("192.0.2.2")


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address():
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") != client_key("::ffff:192.0.2.2")


def test_by_default_each_ipv6_address_is_a_client_and_the_prefix_is_a_setting():
    # the hosts of one cluster often share a /64: grouping them is opted into
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::1"
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:2::2")
    assert client_key("2001:db8:1:2::1", 128) != client_key("2001:db8:1:2::2", 128)
    assert client_key("2001:db8:1:2::1", 48) == client_key("2001:db8:1:9::2", 48) == "2001:db8:1::/48"
    assert client_key("192.0.2.1", 48) == "192.0.2.1"


def test_loopback_and_link_local_count_by_address_and_what_is_no_ip_is_itself():
    assert client_key("::1", 64) == "::1"
    assert client_key("fe80::1", 64) != client_key("fe80::2", 64)   # fe80::/64 is every neighbour's
    assert client_key("fe80::1%eth0") == "fe80::1"
    for text in ("", "host.example", "not:an:address:at:all:x:y:z:w"):
        assert client_key(text) == text


def _request(url: str) -> PreheatRequest:
    return PreheatRequest("file", url, {})


def test_preheats_of_one_ipv6_host_share_its_per_client_bound_whatever_address_it_takes():
    jobs = Jobs(Limits(max_per_client=2, max_waiting=10, client_ipv6_prefix=64))
    jobs.submit(_request(URL + "a"), "2001:db8:1:2::a", 0.0)
    jobs.submit(_request(URL + "b"), "2001:db8:1:2::b", 0.0)
    with pytest.raises(preheat.TooMany, match="2001:db8:1:2::/64"):
        jobs.submit(_request(URL + "c"), "2001:db8:1:2::c", 0.0)
    jobs.submit(_request(URL + "c"), "2001:db8:1:3::a", 0.0)   # another /64: its own bound
    jobs.submit(_request(URL + "d"), "192.0.2.1", 0.0)
    jobs.submit(_request(URL + "e"), "192.0.2.2", 0.0)


def test_preheats_count_each_ipv6_address_apart_by_default():
    jobs = Jobs(Limits(max_per_client=1, max_waiting=10))
    jobs.submit(_request(URL + "a"), "2001:db8:1:2::a", 0.0)
    jobs.submit(_request(URL + "b"), "2001:db8:1:2::b", 0.0)


@pytest.mark.parametrize("command", ["supernode", "daemon", "get"])
def test_every_program_with_per_client_limits_takes_the_prefix_flag(command, capsys):
    with pytest.raises(SystemExit):
        build_parser(only=command).parse_args([command, "--help"])
    assert "--client-ipv6-prefix" in capsys.readouterr().out


@pytest.mark.parametrize("cls", [SupernodeConfig, DaemonConfig, PeerConfig])
def test_the_prefix_is_a_config_key_from_1_to_128(cls):
    assert options.build(cls, {"client_ipv6_prefix": 64}).client_ipv6_prefix == 64
    assert cls().client_ipv6_prefix == 128
    for bad in (0, 129):
        with pytest.raises(ValueError, match="--client-ipv6-prefix"):
            options.build(cls, {"client_ipv6_prefix": bad})
