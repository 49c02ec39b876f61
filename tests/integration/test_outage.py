"""Outage mode: what the cluster holds is served while its origin or registry
cannot be reached at all (nothing listens on its port), and only then; a source
that answers is believed. For registry blobs, only to credentials the registry
let read that blob recently."""
import base64
import hashlib
import os

import pytest
from daemons import fetch
from helpers import MiB, content, sha256_file
from registry import MISSING, PASSWORD, USER, Registry, build_image, dir_layers, mirror_conf, pull, push

from dfly.errors import DflyError

PIECE_FILE = 3 * MiB


@pytest.mark.time_limit(30)
def test_a_finished_task_is_served_while_its_origin_is_unreachable(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(revalidate_after_s=0)   # every later get revalidates
    src = origin.add("kept.bin", content(PIECE_FILE, seed=301))
    client_factory([supernode.address]).download(src.url, str(downloads / "one.bin"))
    origin.stop()   # nothing listens on its port now

    result = client_factory([supernode.address]).download(src.url, str(downloads / "two.bin"))
    assert sha256_file(str(downloads / "two.bin")) == src.sha256
    assert result.via == "p2p" and result.bytes_from_supernode == src.size


@pytest.mark.time_limit(30)
def test_a_finished_task_whose_origin_answers_gone_is_not_served(
        origin, supernode_factory, client_factory, downloads):
    supernode = supernode_factory(revalidate_after_s=0)
    src = origin.add("gone.bin", content(PIECE_FILE, seed=302))
    client_factory([supernode.address]).download(src.url, str(downloads / "one.bin"))
    origin.fault("gone.bin", status=404)

    with pytest.raises(DflyError, match="404"):
        client_factory([supernode.address]).download(
            src.url, str(downloads / "two.bin"))
    assert not os.path.exists(str(downloads / "two.bin"))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")
@pytest.mark.time_limit(60)
def test_a_cached_blob_is_served_in_an_outage_only_to_credentials_granted_it(
        tmp_path, supernode, daemons):
    registry = Registry(str(tmp_path / "registry"), auth=True)
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(512 << 10,), arches=("amd64",))
        push(image, registry, "secret/app", creds="%s:%s" % (USER, PASSWORD))
        running = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
        layer = image.layers["amd64"][0]
        path = "/v2/secret/app/blobs/" + layer
        allowed = {"Authorization": _basic(USER, PASSWORD)}
        status, _, body = fetch(running.address, "GET", path, allowed)
        assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == layer
    finally:
        registry.stop()   # nothing listens on its port now

    status, _, body = fetch(running.address, "GET", path, allowed)
    assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == layer
    for stranger in ({}, {"Authorization": _basic(USER, "guess")}):
        status, _, body = fetch(running.address, "GET", path, stranger)
        assert status == 502 and b"unreachable" in body
    other_repo = "/v2/other/app/blobs/" + layer   # granted in secret/app, not there
    assert fetch(running.address, "GET", other_repo, allowed)[0] == 502


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "ok")
@pytest.mark.time_limit(90)
def test_a_client_pulls_again_through_the_mirror_while_the_registry_is_down_and_a_stranger_cannot(
        tmp_path, supernode, daemons):
    registry = Registry(str(tmp_path / "registry"), auth=True)
    creds = "%s:%s" % (USER, PASSWORD)
    try:
        image = build_image(str(tmp_path / "layout"), "v1", layer_sizes=(512 << 10, 128 << 10),
                            arches=("amd64",))
        push(image, registry, "secret/app", creds=creds)
        running = daemons.start(supernode=[supernode.address], registry_mirror=registry.url)
        conf = mirror_conf(str(tmp_path / "r.conf"), registry, running.address)
        pull(conf, registry, "secret/app", "v1", str(tmp_path / "before"), creds=creds)
    finally:
        registry.stop()   # nothing listens on its port now

    pull(conf, registry, "secret/app", "v1", str(tmp_path / "during"), creds=creds)
    assert dir_layers(str(tmp_path / "during")) == image.layers["amd64"]
    stranger = pull(conf, registry, "secret/app", "v1", str(tmp_path / "stranger"),
                    creds=USER + ":guess", check=False)
    assert stranger.returncode != 0
    assert not os.path.exists(str(tmp_path / "stranger" / "manifest.json"))
