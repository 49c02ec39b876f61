"""Where s3:// keys and regions come from, against a real S3-compatible server
(moto, signatures and session tokens checked) and loopback stand-ins for the
cloud's endpoints: EC2's instance metadata service (IMDSv2) and ECS's container
endpoint hand out real temporary keys of a role (STS AssumeRole on moto), and a
regional front refuses requests signed for the wrong region as AWS does. Every
environment here is passed explicitly and names only loopback addresses."""
import hashlib
import os

import pytest
from helpers import MiB, content, sha256_file
from metadataserver import MetadataServer
from s3server import REGION, RegionalFront, S3Origin

from dfly.errors import SourceError
from dfly.sources import open_source
from dfly.sources.config import SourceAccess, SourceCredentials, SourceOptions
from dfly.sources.credentials import gather
from dfly.sources.s3auth import Chain, Credentials, Static

URL = "s3://dfly-bucket/"


@pytest.fixture(scope="module")
def s3():
    server = S3Origin()   # one moto process for the module: it takes seconds to start
    yield server
    server.stop()


@pytest.fixture
def metadata(s3):
    server = MetadataServer(s3.temporary_credentials)
    yield server
    server.stop()


def access(endpoint: str, environ: dict, **settings) -> SourceAccess:
    """What a program wired with `environ` (and a HOME without AWS files) opens sources with."""
    options = SourceOptions(s3_endpoint=endpoint, **settings)
    environ = dict({"HOME": os.path.join(os.sep, "nonexistent-home")}, **environ)
    return SourceAccess(credentials=gather(options, environ), s3_endpoint=endpoint, **settings)


def read(url: str, options) -> bytes:
    with open_source(url, {}, 10, None, options) as r:
        return r.read()


def imds_env(metadata) -> dict:
    return {"AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url}


@pytest.mark.time_limit(60)
def test_an_instance_role_signs_s3_reads_through_imdsv2_and_is_fetched_again_near_expiry(s3, metadata):
    s3.put("role.bin", b"read with the instance's role")
    options = access(s3.endpoint, imds_env(metadata))
    assert read(URL + "role.bin", options) == b"read with the instance's role"
    assert metadata.requests == ["PUT /latest/api/token",
                                 "GET /latest/meta-data/iam/security-credentials/",
                                 "GET /latest/meta-data/iam/security-credentials/dfly-s3-reader"]
    read(URL + "role.bin", options)
    assert len(metadata.issued) == 1   # valid for 15 minutes: kept
    metadata.expires_in_s = 60         # keys that expire within the refresh margin...
    options = access(s3.endpoint, imds_env(metadata))
    read(URL + "role.bin", options)
    read(URL + "role.bin", options)    # ...are fetched anew before the next signature
    assert len(metadata.issued) == 3 and len(set(metadata.issued)) == 3


@pytest.mark.time_limit(60)
def test_the_container_endpoint_gives_keys_for_its_authorization_token_and_comes_before_the_instance(
        s3, metadata):
    s3.put("task.bin", b"read with the task's role")
    env = dict(imds_env(metadata), AWS_CONTAINER_CREDENTIALS_FULL_URI=metadata.container_url,
               AWS_CONTAINER_AUTHORIZATION_TOKEN=metadata.container_token)
    assert read(URL + "task.bin", access(s3.endpoint, env)) == b"read with the task's role"
    assert metadata.requests == ["GET /v2/credentials/5e6f"]
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "not-the-token"
    with pytest.raises(SourceError) as refused:
        read(URL + "task.bin", access(s3.endpoint, env))
    assert "cannot get S3 credentials from the container credentials endpoint" in str(refused.value)
    assert "HTTP 401" in str(refused.value) and "not-the-token" not in str(refused.value)


def test_a_container_endpoint_over_plain_http_elsewhere_than_loopback_is_refused_unasked(s3):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://example.invalid/creds",
           "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.raises(SourceError, match="must be https, or http to a loopback"):
        read(URL + "x.bin", access(s3.endpoint, env))


@pytest.mark.time_limit(60)
def test_environment_keys_come_first_and_a_disabled_instance_service_is_never_asked(s3, metadata):
    s3.put("env.bin", b"read with the environment's keys")
    env = dict(imds_env(metadata), AWS_ACCESS_KEY_ID=s3.access_key,
               AWS_SECRET_ACCESS_KEY=s3.secret_key)
    assert read(URL + "env.bin", access(s3.endpoint, env)) == b"read with the environment's keys"
    disabled = dict(imds_env(metadata), AWS_EC2_METADATA_DISABLED="true")
    with pytest.raises(SourceError, match="S3 denied access"):   # unsigned: no keys at all
        read(URL + "env.bin", access(s3.endpoint, disabled))
    assert metadata.requests == []


@pytest.mark.time_limit(60)
def test_an_instance_service_that_does_not_answer_means_unsigned_and_is_not_asked_again(s3, metadata):
    s3.put("private.bin", b"not for the unsigned")
    env = {"AWS_EC2_METADATA_SERVICE_ENDPOINT": metadata.url + "/not-here"}
    options = access(s3.endpoint, env)
    for _ in range(2):
        with pytest.raises(SourceError, match="S3 denied access"):
            read(URL + "private.bin", options)
    assert metadata.requests == ["PUT /not-here/latest/api/token"]   # once, then remembered


@pytest.mark.time_limit(90)
def test_two_gets_through_a_supernode_read_s3_with_the_instance_role_of_its_host(
        s3, metadata, supernode_factory, client_factory, downloads, monkeypatch):
    data = content(3 * MiB, seed=58)
    s3.put("images/role-layer.bin", data)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                 "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(downloads))   # no ~/.aws files
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.url)
    supernode = supernode_factory(s3_endpoint=s3.endpoint)   # the wiring reads the environment
    for name in ("one.bin", "two.bin"):
        client_factory([supernode.address]).download(URL + "images/role-layer.bin",
                                                      str(downloads / name))
        assert sha256_file(str(downloads / name)) == hashlib.sha256(data).hexdigest()
    assert len(metadata.issued) == 1


@pytest.fixture(scope="module")
def eu_bucket(s3):
    s3.add_bucket("dfly-eu", "eu-west-1")
    s3.put("far.bin", b"kept in Ireland", bucket="dfly-eu")
    return "s3://dfly-eu/far.bin"


@pytest.mark.parametrize("mode", ["400", "301", "301-bare"])
@pytest.mark.time_limit(60)
def test_a_bucket_in_another_region_is_found_from_s3s_reply_and_signed_for_again(
        s3, eu_bucket, mode):
    front = RegionalFront(s3.endpoint, {"dfly-eu": "eu-west-1"}, mode)
    try:
        env = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
               "AWS_EC2_METADATA_DISABLED": "true"}
        options = access(front.endpoint, env)
        assert read(eu_bucket, options) == b"kept in Ireland"
        assert front.signed_for == [REGION, "eu-west-1"]
        read(eu_bucket, options)   # learnt: signed for the bucket's region at once
        assert front.signed_for[2:] == ["eu-west-1"]
        configured = access(front.endpoint, dict(env, AWS_REGION="eu-west-1"))
        read(eu_bucket, configured)
        assert front.signed_for[3:] == ["eu-west-1"]
        wrong = access(front.endpoint, env, s3_region="ap-south-1")   # a setting S3 overrules
        read(eu_bucket, wrong)
        read(eu_bucket, wrong)
        assert front.signed_for[4:] == ["ap-south-1", "eu-west-1", "eu-west-1"]
    finally:
        front.stop()


@pytest.mark.time_limit(30)
def test_a_source_given_credentials_reads_with_an_empty_environment(s3, monkeypatch):
    s3.put("bare.bin", b"no environment needed")
    for name in list(os.environ):
        monkeypatch.delenv(name)
    given = SourceCredentials(s3=Chain([Static(Credentials(s3.access_key, s3.secret_key))]),
                              s3_region=REGION)
    options = SourceAccess(s3_endpoint=s3.endpoint, credentials=given)
    assert read(URL + "bare.bin", options) == b"no environment needed"
