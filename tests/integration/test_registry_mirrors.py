"""One daemon mirroring two registries at once (real docker-registry processes
on two loopback ports), as containerd's per-registry hosts.toml files route
each registry's pulls to it with ?ns=REGISTRY: each request reaches the
registry it names and no other, with its own credentials."""
import base64
import hashlib

import pytest
from daemons import fetch
from registry import MISSING, PASSWORD, USER, Registry, build_image, push

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")


def _basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}


def _sha(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.fixture
def two_registries(tmp_path):
    private = Registry(str(tmp_path / "private"), auth=True)
    public = Registry(str(tmp_path / "public"))
    yield private, public
    public.stop()
    private.stop()


@pytest.mark.time_limit(90)
def test_one_daemon_mirrors_two_registries_each_request_reaching_only_the_one_it_names(
        tmp_path, two_registries, supernode, daemons):
    private, public = two_registries
    secret_image = build_image(str(tmp_path / "a"), "v1", layer_sizes=(256 << 10,), arches=("amd64",))
    public_image = build_image(str(tmp_path / "b"), "v1", layer_sizes=(384 << 10,), arches=("amd64",))
    push(secret_image, private, "team/app", creds="%s:%s" % (USER, PASSWORD))
    push(public_image, public, "team/app")
    running = daemons.start(supernode=[supernode.address], registry_mirror=private.url,
                            mirror_registry=["%s=%s" % (public.host, public.url)])
    secret_layer = secret_image.layers["amd64"][0]
    public_layer = public_image.layers["amd64"][0]
    creds = _basic(USER, PASSWORD)

    status, _, body = fetch(running.address, "GET", "/v2/team/app/blobs/%s?ns=%s"
                            % (public_layer, public.host))
    assert status == 200 and _sha(body) == public_layer
    status, _, body = fetch(running.address, "GET", "/v2/team/app/blobs/%s?ns=%s"
                            % (secret_layer, private.host), creds)
    assert status == 200 and _sha(body) == secret_layer
    status, _, body = fetch(running.address, "GET", "/v2/team/app/blobs/%s" % secret_layer, creds)
    assert status == 200 and _sha(body) == secret_layer   # no ns: --registry-mirror's

    private.settle()
    private_seen = len(private.accesses)
    # The private registry's credentials, sent for the public one: they go there, not to
    # the private registry, which alone holds the layer (so the answer is the public's 404).
    status, _, _ = fetch(running.address, "GET", "/v2/team/app/blobs/%s?ns=%s"
                         % (secret_layer, public.host), creds)
    assert status == 404
    private.settle()
    public.settle()
    assert len(private.accesses) == private_seen
    assert any(secret_layer in a.path for a in public.accesses)

    seen = (len(private.accesses), len(public.accesses))
    status, _, body = fetch(running.address, "GET", "/v2/team/app/manifests/v1?ns=other.example",
                            creds)
    assert status == 404 and b"no registry named other.example" in body
    private.settle()
    public.settle()
    assert (len(private.accesses), len(public.accesses)) == seen
    assert all("ns=" not in a.path for a in private.accesses + public.accesses)


@pytest.mark.time_limit(90)
def test_each_mirrored_registry_keeps_its_own_tokens_even_from_one_token_server(
        tmp_path, token_server, supernode, daemons):
    first = Registry(str(tmp_path / "first"), token_realm=token_server.realm,
                     token_cert=token_server.cert_path)
    second = Registry(str(tmp_path / "second"), token_realm=token_server.realm,
                      token_cert=token_server.cert_path)
    try:
        images = [build_image(str(tmp_path / name), "v1", layer_sizes=(256 << 10,), arches=("amd64",))
                  for name in ("a", "b")]
        for image, registry in zip(images, (first, second)):
            push(image, registry, "team/app", creds="%s:%s" % (USER, PASSWORD))
        running = daemons.start(supernode=[supernode.address], registry_mirror=first.url,
                                mirror_registry=[second.url])
        creds = _basic(USER, PASSWORD)
        before = len(token_server.requests)
        for _ in range(2):   # the second round: every token from its registry's cache
            for image, registry in zip(images, (first, second)):
                layer = image.layers["amd64"][0]
                status, _, body = fetch(running.address, "GET", "/v2/team/app/blobs/%s?ns=%s"
                                        % (layer, registry.host), creds)
                assert status == 200 and _sha(body) == layer
        asked = token_server.requests[before:]
        # Same realm, service, scope and credentials, but two registries: two tokens, once each.
        assert len(asked) == 2 and all(r.granted for r in asked)
    finally:
        second.stop()
        first.stop()
