"""Publish/subscribe of an image with the real parts: Debian's docker-registry
(token auth, as Harbor runs it), an image pushed by skopeo, daemons subscribed
to the repository's name pattern. One publish puts every blob of every
platform in every subscribed daemon's cache, through P2P, without the daemons
holding any registry credential; a skopeo pull through one of them then
takes no blob byte from the registry. A daemon subscribed for one platform
fetches only that platform's blobs."""
import pytest
from helpers import wait_until
from registry import MISSING, PASSWORD, USER, build_image, dir_layers, mirror_conf, pull, push

from dfly.peer.registry import blob_key
from dfly.supernode.client import SupernodeClient

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")

CREDS = "%s:%s" % (USER, PASSWORD)
TOKEN = "publish-token-for-image-tests"
REPO = "team/app"


@pytest.mark.time_limit(120)
def test_one_image_publish_fills_every_subscribed_daemon_and_a_pull_then_takes_no_blob_byte(
        tmp_path, token_registry, token_server, supernode_factory, daemons):
    registry = token_registry
    image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(1 << 20, 256 << 10))
    push(image, registry, REPO, creds=CREDS)
    path = tmp_path / "preheat.token"
    path.write_text(TOKEN + "\n")
    supernode = supernode_factory(preheat_token_file=str(path), source_timeout_s=5.0)
    client = SupernodeClient(supernode.address, timeout_s=10)
    topic = "%s/team/*" % registry.host
    started = [daemons.start(supernode=[supernode.address], registry_mirror=registry.url,
                             subscribe=[topic], subscribe_poll_s=1.0, subscribe_jitter_s=0.5)
               for _ in range(3)]
    arm_only = daemons.start(supernode=[supernode.address], registry_mirror=registry.url,
                             subscribe=[topic], subscribe_platform=["linux/arm64"], subscribe_poll_s=1.0,
                             subscribe_jitter_s=0.0)
    bystander = daemons.start(supernode=[supernode.address], registry_mirror=registry.url,
                              subscribe=["%s/other/*" % registry.host], subscribe_poll_s=1.0,
                              subscribe_jitter_s=0.0)
    try:
        pull_token = token_server.token("repository:%s:pull" % REPO, USER)
        job = client.publish({"url": "%s/v2/%s/manifests/v1" % (registry.url, REPO),
                              "headers": {"Authorization": "Bearer " + pull_token}}, TOKEN)
        done = {}

        def over():
            done.update(client.preheat_job(job["id"], TOKEN))
            return done["state"] != "PENDING"
        wait_until(over, timeout=60)
        assert done["state"] == "SUCCESS", done
        blobs = [d for d in image.blob_sizes if d not in image.manifests.values() and d != image.index_digest]
        assert len(blobs) == 6   # 2 platforms x (2 layers + a config)

        def all_cached():
            return all(d.cache.lookup(blob_key(b)) for d in started for b in blobs)
        wait_until(all_cached, timeout=60)
        wait_until(lambda: arm_only.subscriber.view()["delivered"] == 1, timeout=30)
        assert all(arm_only.cache.lookup(blob_key(b)) for b in image.layers["arm64"])
        assert not any(arm_only.cache.lookup(blob_key(b)) for b in image.layers["amd64"])
        assert not any(bystander.cache.lookup(blob_key(b)) for b in blobs)
        registry.settle()
        sent = registry.blob_bytes()
        assert sent == sum(image.blob_sizes[b] for b in blobs), "the registry sent a blob twice"
        conf = mirror_conf(str(tmp_path / "r.conf"), registry, started[0].address)
        pull(conf, registry, REPO, "v1", str(tmp_path / "out"), arch="arm64", creds=CREDS)
        assert dir_layers(str(tmp_path / "out")) == image.layers["arm64"]
        registry.settle()
        assert registry.blob_bytes() == sent, "the pull fetched blob bytes from the registry"
        rows = client.subscriptions()["subscriptions"]
        assert sorted(r["topics"][0] for r in rows) == sorted([topic] * 4 + ["%s/other/*" % registry.host])
    finally:
        client.close()
