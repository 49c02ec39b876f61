"""Source credentials as data: the sources read no environment and no files (only
the wiring's credentials.py does); the S3 provider chain's order and its refresh
near expiry, driven with `now` and hand-written fetchers (no I/O)."""
import ast
import os

import pytest

from dfly.errors import SourceError
from dfly.sources import s3auth
from dfly.sources.config import SourceOptions
from dfly.sources.credentials import gather
from dfly.sources.s3auth import Chain, Credentials, Refreshing, Static, parse_credentials

SOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "dfly", "sources")


def test_the_source_modules_read_no_environment_and_no_credential_files():
    """STYLE: only the wiring reads the environment and files (sources/credentials.py,
    called where each program is wired); the sources get credentials as data."""
    for name in sorted(os.listdir(SOURCES)):
        if not name.endswith(".py") or name == "credentials.py":
            continue
        with open(os.path.join(SOURCES, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("environ", "getenv", "expanduser"), (name, node.attr)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = {a.name for a in node.names} | {getattr(node, "module", None) or ""}
                assert not {"netrc", "configparser"} & names, (name, names)


class Issuer:
    """A fetcher handing out numbered keys that expire `lifetime_s` after `clock[0]`."""

    def __init__(self, clock, lifetime_s=3600.0, fail=False):
        self.clock, self.lifetime_s, self.fail, self.count = clock, lifetime_s, fail, 0

    def __call__(self):
        if self.fail:
            raise OSError("connection refused")
        self.count += 1
        return Credentials("ASIA%d" % self.count, "s", "t", self.clock[0] + self.lifetime_s)


def test_temporary_keys_are_kept_until_five_minutes_before_they_expire_then_fetched_anew():
    clock = [1000.0]
    issuer = Issuer(clock)
    provider = Refreshing(issuer, "test endpoint")
    assert provider.get(1000.0).access_key == "ASIA1"
    assert provider.get(1000.0 + 3600 - s3auth.REFRESH_AHEAD_S - 1).access_key == "ASIA1"
    clock[0] = 1000.0 + 3600 - s3auth.REFRESH_AHEAD_S
    assert provider.get(clock[0]).access_key == "ASIA2"
    assert issuer.count == 2


def test_an_optional_endpoint_that_fails_is_none_and_not_asked_again_for_a_while():
    clock = [0.0]
    issuer = Issuer(clock, fail=True)
    provider = Refreshing(issuer, "instance metadata service", optional=True)
    assert provider.get(0.0) is None and provider.get(s3auth.RETRY_AFTER_S - 1) is None
    assert provider.fetches == 1
    issuer.fail = False
    assert provider.get(s3auth.RETRY_AFTER_S).access_key == "ASIA1"


def test_a_required_endpoint_that_fails_is_a_clear_source_error():
    provider = Refreshing(Issuer([0.0], fail=True), "container credentials endpoint x")
    with pytest.raises(SourceError, match="cannot get S3 credentials from the container "
                                          "credentials endpoint x: connection refused"):
        provider.get(0.0)


def test_the_first_provider_with_keys_signs_and_later_ones_are_not_asked():
    later = Refreshing(Issuer([0.0], fail=True), "never asked")
    chain = Chain([Static(None), Static(Credentials("AK", "SK")), later])
    assert chain.get(0.0).access_key == "AK" and later.fetches == 0


def test_a_credentials_file_that_does_not_parse_is_told_only_when_s3_keys_are_needed(tmp_path):
    (tmp_path / "creds").write_text("not [an ini file\n")
    known = gather(SourceOptions(), {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "creds"),
                                     "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)})
    with pytest.raises(SourceError, match="cannot read the AWS credentials file"):
        known.s3.get(0.0)


def test_the_region_comes_from_the_environment_then_the_profiles_config(tmp_path):
    (tmp_path / "config").write_text("[default]\nregion = eu-north-1\n[profile ci]\nregion = ap-south-1\n")
    env = {"AWS_CONFIG_FILE": str(tmp_path / "config"), "HOME": str(tmp_path),
           "AWS_EC2_METADATA_DISABLED": "true"}
    assert gather(SourceOptions(), env).s3_region == "eu-north-1"
    assert gather(SourceOptions(s3_profile="ci"), env).s3_region == "ap-south-1"
    assert gather(SourceOptions(), dict(env, AWS_DEFAULT_REGION="us-west-2")).s3_region == "us-west-2"
    assert gather(SourceOptions(), dict(env, AWS_REGION="sa-east-1",
                                        AWS_DEFAULT_REGION="us-west-2")).s3_region == "sa-east-1"
    assert gather(SourceOptions(), dict(env, AWS_CONFIG_FILE=str(tmp_path / "none"))).s3_region == ""


def test_the_instance_provider_is_in_the_chain_unless_disabled_and_asks_only_its_endpoint():
    chain = gather(SourceOptions(), {"HOME": "/nonexistent",
                                     "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"}).s3
    assert chain.providers[-1].name == "instance metadata service at http://127.0.0.1:9"
    off = gather(SourceOptions(), {"HOME": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "True"}).s3
    assert all(not isinstance(p, Refreshing) for p in off.providers)


def test_the_endpoints_json_becomes_keys_and_anything_else_is_refused():
    got = parse_credentials(b'{"Code": "Success", "AccessKeyId": "ASIA", "SecretAccessKey": "S", '
                            b'"Token": "T", "Expiration": "2026-12-07T06:00:00Z"}')
    assert got == Credentials("ASIA", "S", "T", 1796623200.0)
    assert parse_credentials(b'{"AccessKeyId": "A", "SecretAccessKey": "S", "Token": "T", '
                             b'"Expiration": "2026-12-07T06:00:00.5+00:00"}').expires_at == 1796623200.0
    for bad in (b"<html>", b'{"Code": "Failure"}', b'{"AccessKeyId": "A"}', b"[1]"):
        with pytest.raises(ValueError):
            parse_credentials(bad)


def test_this_test_session_never_asks_a_real_metadata_service():
    """tests/conftest.py switches the instance provider off for every test and every
    process they start (and points it at a closed loopback port besides)."""
    chain = gather(SourceOptions(), os.environ).s3
    assert not any(isinstance(p, Refreshing) for p in chain.providers)
    assert os.environ["AWS_EC2_METADATA_SERVICE_ENDPOINT"].startswith("http://127.0.0.1:")
    assert not any(name.startswith("AWS_CONTAINER_") for name in os.environ)


@pytest.mark.parametrize("optional", [True, False])
def test_a_refresh_that_fails_keeps_the_keys_in_hand_until_they_expire(optional):
    clock = [0.0]
    issuer = Issuer(clock, lifetime_s=1000.0)
    provider = Refreshing(issuer, "endpoint", optional=optional)
    assert provider.get(0.0).access_key == "ASIA1"
    issuer.fail = True
    window = 1000.0 - s3auth.REFRESH_AHEAD_S
    assert provider.get(window).access_key == "ASIA1"          # refresh failed: still good
    assert provider.get(window + 1).access_key == "ASIA1" and provider.fetches == 2   # resting
    assert provider.get(window + s3auth.RETRY_REFRESH_S).access_key == "ASIA1"
    assert provider.fetches == 3
    if optional:
        assert provider.get(1000.0) is None                     # expired: none, never stale keys
    else:
        with pytest.raises(SourceError, match="cannot get S3 credentials"):
            provider.get(1000.0)
