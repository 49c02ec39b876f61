"""A private registry behind the mirror, with htpasswd basic auth and with
bearer tokens from a token server (`auth: token`): the client's own
credentials go upstream with every request and with the P2P task, a client
sending Basic credentials to a token-auth registry gets a token fetched for it,
and a blob already in a daemon's cache is never served to a client the
registry refuses."""
import base64
import os

import pytest
from daemons import fetch, stats
from registry import MISSING, PASSWORD, USER, Registry, build_image, dir_layers, mirror_conf, pull, push

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")
CREDS = "%s:%s" % (USER, PASSWORD)


@pytest.fixture
def private(tmp_path):
    running = Registry(str(tmp_path / "registry"), auth=True)
    yield running
    running.stop()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def _pulled_through_two_mirrors(tmp_path, registry, supernode, daemons):
    """A private image pushed to `registry`, pulled with credentials through two
    daemons' mirrors, each layer fetched from the registry once (P2P, not skopeo's
    fallback); (image, first daemon, second daemon, first daemon's mirror conf)."""
    image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(2 << 20, 512 << 10),
                        arches=("amd64",))
    push(image, registry, "secret/app", creds=CREDS)
    first = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    second = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
    conf_first = mirror_conf(str(tmp_path / "first.conf"), registry, first.address)
    conf_second = mirror_conf(str(tmp_path / "second.conf"), registry, second.address)

    pull(conf_first, registry, "secret/app", "v1", str(tmp_path / "a"), creds=CREDS)
    pull(conf_second, registry, "secret/app", "v1", str(tmp_path / "b"), creds=CREDS)
    assert dir_layers(str(tmp_path / "a")) == dir_layers(str(tmp_path / "b")) == image.layers["amd64"]
    registry.settle()
    for digest in image.layers["amd64"]:
        assert len(registry.blob_gets(digest)) == 1
    assert stats(second)["bytes_from_peers"] >= image.size_of("amd64")
    return image, first, second, conf_first


def _refused_without_credentials(tmp_path, registry, image, conf) -> bytes:
    """A pull without credentials fails and leaves no layer; the first layer's bytes."""
    refused = pull(conf, registry, "secret/app", "v1", str(tmp_path / "c"), check=False)
    assert refused.returncode != 0
    assert not os.path.exists(os.path.join(str(tmp_path / "c"), image.layers["amd64"][0][7:]))
    with open(os.path.join(image.layout, "blobs", "sha256", image.layers["amd64"][0][7:]), "rb") as f:
        return f.read()


@pytest.mark.time_limit(60)
def test_private_pulls_with_credentials_go_p2p_and_cached_blobs_are_refused_without_them(
        tmp_path, private, supernode, daemons):
    image, first, _, conf_first = _pulled_through_two_mirrors(tmp_path, private, supernode, daemons)
    assert stats(first)["bytes_from_supernode"] >= image.size_of("amd64")

    secret = _refused_without_credentials(tmp_path, private, image, conf_first)
    layer = image.layers["amd64"][0]
    for headers in ({}, {"Authorization": _basic(USER, "wrong")}, {"Authorization": "Bearer forged"}):
        status, reply_headers, body = fetch(first.address, "GET", "/v2/secret/app/blobs/" + layer, headers)
        assert status == 401, headers
        assert "www-authenticate" in reply_headers
        assert secret[:4096] not in body
    status, _, body = fetch(first.address, "GET", "/v2/secret/app/blobs/" + layer,
                            {"Authorization": _basic(USER, PASSWORD)})
    assert status == 200 and body == secret


@pytest.mark.time_limit(60)
def test_a_token_auth_registry_is_pulled_p2p_with_credentials_and_refused_without(
        tmp_path, token_registry, token_server, supernode, daemons):
    image, first, _, conf_first = _pulled_through_two_mirrors(tmp_path, token_registry, supernode, daemons)

    secret = _refused_without_credentials(tmp_path, token_registry, image, conf_first)
    layer = image.layers["amd64"][0]
    elsewhere = token_server.token("repository:other/app:pull", USER)   # valid, for another repo
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": "Bearer " + elsewhere},
                    {"Authorization": _basic(USER, "wrong")}):
        status, reply_headers, body = fetch(first.address, "GET", "/v2/secret/app/blobs/" + layer, headers)
        assert status == 401, headers
        assert reply_headers["www-authenticate"].startswith("Bearer realm=")
        assert secret[:4096] not in body
    token_registry.settle()
    assert len(token_registry.blob_gets(layer)) == 1


@pytest.mark.time_limit(60)
def test_a_client_sending_basic_credentials_gets_a_token_fetched_for_it_scoped_to_the_repository(
        tmp_path, token_registry, token_server, supernode, daemons):
    image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(1 << 20,), arches=("amd64",))
    push(image, token_registry, "secret/app", creds=CREDS)
    running = daemons.start(supernode=[supernode.address], registry_mirror=token_registry.url)
    layer = image.layers["amd64"][0]
    with open(os.path.join(image.layout, "blobs", "sha256", layer[7:]), "rb") as f:
        secret = f.read()
    pushed = len(token_server.requests)

    basic = {"Authorization": _basic(USER, PASSWORD)}
    status, headers, body = fetch(running.address, "GET", "/v2/secret/app/blobs/" + layer, basic)
    assert status == 200 and body == secret and headers["docker-content-digest"] == layer
    status, _, body = fetch(running.address, "GET", "/v2/secret/app/manifests/v1",
                            dict(basic, Accept="application/vnd.oci.image.index.v1+json"))
    assert status == 200 and b"manifests" in body
    asked = token_server.requests[pushed:]
    assert asked and all(r.granted and r.user == USER for r in asked)
    assert {r.scope for r in asked} == {"repository:secret/app:pull"}
    token_registry.settle()
    assert len(token_registry.blob_gets(layer)) == 1   # fetched P2P, with the token
    assert stats(running)["bytes_from_supernode"] == len(secret)

    status, _, body = fetch(running.address, "GET", "/v2/secret/app/blobs/" + layer,
                            {"Authorization": _basic(USER, "wrong")})
    assert status == 401 and secret[:4096] not in body
