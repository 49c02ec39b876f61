"""TLS and mutual TLS with real certificates (trustme): a swarm whose every
connection is mTLS, handshakes refused with a clear reason and the listener
unharmed, certificate rotation picked up by new connections, one handshake per
connection (not per piece), and the TLS version floor."""
import os
import shutil
import socket
import ssl
import subprocess

import pytest
from certs import Certs, served_certificate
from helpers import (
    MiB,
    content,
    leftovers,
    peer_secret_of,
    piece_access,
    reserve_ports,
    run_all,
    sha256_file,
    wait_until,
)

from dfly import errors
from dfly.bench import app as bench
from dfly.bench.config import BenchConfig
from dfly.httpd import Listener, Response
from dfly.peer.daemon_client import DaemonClient
from dfly.protocol.handoff import HandoffRequest
from dfly.supernode.client import SupernodeClient
from dfly.tls import TLS, TLSOptions


@pytest.fixture
def certs(tmp_path):
    return Certs(str(tmp_path / "certs"))


def _tls(**settings) -> TLS:
    return TLS(TLSOptions(**settings))


@pytest.mark.time_limit(90)
def test_mtls_swarm_downloads_correctly_from_peers_with_one_handshake_per_connection(
        origin, supernode_factory, client_factory, downloads, certs):
    # No fan-out: its streams run workers beyond --parallel, and the bound below counts workers.
    supernode = supernode_factory(fanout=0, **certs.mtls("supernode"))
    src = origin.add("big.bin", content(40 * MiB, seed=1))   # ten 4 MiB pieces
    clients = [client_factory([supernode.address], **certs.mtls("peer%d" % i)) for i in range(4)]
    targets = [str(downloads / ("copy%d.bin" % i)) for i in range(4)]

    outcomes = run_all([lambda c=c, t=t: c.download(src.url, t, digest=src.digest)
                        for c, t in zip(clients, targets)], timeout=80)

    assert [e for _, e in outcomes if e is not None] == []
    results = [r for r, _ in outcomes]
    for target in targets:
        assert sha256_file(target) == src.sha256
    assert all(r.via == "p2p" for r in results)
    assert sum(r.bytes_from_peers for r in results) > 0
    assert origin.requests("big.bin") == 1
    assert leftovers(str(downloads)) == []
    # Pieces (and calls) went over kept-alive connections: each peer's workers,
    # coordinator and reporter open a few, not one per piece.
    server = supernode.listener.server
    assert server.handshakes > 0 and server.refused_handshakes == 0
    assert server.handshakes <= 4 * 8, server.handshakes
    uploaders = [c._listener.server for c in clients if c._listener is not None]
    assert sum(u.handshakes for u in uploaders) <= 4 * 3 * 4   # peers x other peers x workers


def _refusal(client, src, target) -> errors.TLSRefused:
    with pytest.raises(errors.TLSRefused) as caught:
        client.download(src.url, target)
    assert not os.path.exists(target)
    return caught.value


@pytest.mark.time_limit(60)
def test_clients_without_a_good_certificate_are_refused_at_the_handshake_and_the_listener_lives(
        origin, supernode_factory, client_factory, downloads, certs):
    supernode = supernode_factory(**certs.mtls("supernode"))
    src = origin.add("f.bin", content(MiB, seed=2))
    target = str(downloads / "f.bin")

    no_cert = client_factory([supernode.address], tls_ca=certs.ca)
    assert "requires a client certificate" in str(_refusal(no_cert, src, target))
    expired = client_factory([supernode.address], **certs.mtls("old", expired=True))
    assert "expired" in str(_refusal(expired, src, target))
    stranger = client_factory([supernode.address], **certs.mtls("stranger", other_ca=True))
    assert "another CA" in str(_refusal(stranger, src, target))
    plain = client_factory([supernode.address])
    assert "speaks TLS only" in str(_refusal(plain, src, target))
    assert origin.requests("f.bin") == 0   # refused: not fetched behind the user's back

    server = supernode.listener.server
    wait_until(lambda: server.refused_handshakes >= 4, message="refusals counted")
    good = client_factory([supernode.address], **certs.mtls("good"))
    assert good.download(src.url, target, digest=src.digest).via == "p2p"
    assert sha256_file(target) == src.sha256


@pytest.mark.time_limit(30)
def test_a_client_refuses_a_supernode_whose_certificate_it_does_not_trust(
        origin, supernode_factory, client_factory, downloads, certs):
    impostor = supernode_factory(**certs.host("impostor", other_ca=True))
    src = origin.add("f.bin", content(MiB, seed=3))
    client = client_factory([impostor.address], **certs.mtls("peer"))
    refused = _refusal(client, src, str(downloads / "f.bin"))
    assert "certificate is not accepted" in str(refused)
    wrong_name = supernode_factory(**certs.host("elsewhere", "10.9.9.9"))
    client = client_factory([wrong_name.address], **certs.mtls("peer2"))
    assert "127.0.0.1" in str(_refusal(client, src, str(downloads / "f.bin")))


@pytest.mark.time_limit(30)
def test_a_configured_server_name_is_checked_instead_of_the_address(
        origin, supernode_factory, client_factory, downloads, certs):
    supernode = supernode_factory(**certs.host("named", "dfly.cluster"))
    src = origin.add("f.bin", content(MiB, seed=4))
    client = client_factory([supernode.address], tls_ca=certs.ca, tls_server_name="dfly.cluster",
                            **certs.host("peer", "dfly.cluster"))
    assert client.download(src.url, str(downloads / "f.bin")).via == "p2p"


class _Hello:
    def route(self, request):
        return Response.text("hello\n")


@pytest.fixture
def listener_factory():
    started = []

    def start(tls):
        listener = Listener("tls-test", ("127.0.0.1", 0), _Hello(), tls=tls).start()
        started.append(listener)
        return "127.0.0.1:%d" % listener.address[1]

    yield start
    for listener in started:
        listener.stop()


def test_a_rotated_certificate_is_used_for_new_connections_after_reload(certs, listener_factory):
    files = certs.host("rotating")
    tls = _tls(**files)
    address = listener_factory(tls)
    before = served_certificate(address, certs.ca)
    certs.host("rotating")   # new key and certificate, same files
    assert served_certificate(address, certs.ca) == before or tls.reloads == 1   # not yet checked

    assert tls.reload()   # what SIGHUP does
    after = served_certificate(address, certs.ca)
    assert after != before


def test_a_certificate_file_that_changes_is_picked_up_without_a_signal(certs, listener_factory):
    tls = _tls(**certs.host("watched"))
    address = listener_factory(tls)
    before = served_certificate(address, certs.ca)
    certs.host("watched")
    wait_until(lambda: served_certificate(address, certs.ca) != before, timeout=10,
               message="the new certificate is served")


def test_a_broken_certificate_pair_keeps_the_old_one_in_use(certs, listener_factory, tmp_path):
    files = certs.host("half")
    tls = _tls(**files)
    address = listener_factory(tls)
    before = served_certificate(address, certs.ca)
    with open(files["tls_key"], "wb") as f:   # the key of another certificate
        f.write(open(certs.host("other")["tls_key"], "rb").read())
    assert not tls.reload()
    assert served_certificate(address, certs.ca) == before


def test_a_tls_13_only_listener_refuses_a_client_that_stops_at_tls_12(certs, listener_factory):
    tls = _tls(tls_min_version="1.3", **certs.host("modern"))
    address = listener_factory(tls)
    context = ssl.create_default_context(cafile=certs.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", int(address.split(":")[1])), timeout=10) as raw:
        with pytest.raises(ssl.SSLError) as caught:
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert "VERSION" in caught.value.reason.upper()
    served_certificate(address, certs.ca)   # a TLS 1.3 client still gets in


def test_a_dfly_client_limited_to_tls_13_cannot_reach_a_tls_12_only_server(certs, listener_factory):
    server = _tls(tls_ciphers="ECDHE+AESGCM", **certs.host("old-server"))
    server.server_context().maximum_version = ssl.TLSVersion.TLSv1_2
    address = listener_factory(server)
    client = SupernodeClient(address, timeout_s=5, tls=_tls(tls_ca=certs.ca, tls_min_version="1.3"))
    try:
        with pytest.raises(errors.TLSRefused) as caught:
            client.task("0" * 64)
    finally:
        client.close()
    assert "TLS version" in str(caught.value)


def test_a_client_that_never_finishes_its_handshake_does_not_block_others(certs, listener_factory):
    tls = _tls(**certs.host("patient"))   # each may hold its thread 30 s, not the accept loop
    tls.handshake_timeout_s = 30.0
    address = listener_factory(tls)
    port = int(address.split(":")[1])
    stalled = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        stalled[0].sendall(b"\x16\x03\x01")   # the start of a ClientHello, then nothing
        served_certificate(address, certs.ca)   # gives up after 10 s
    finally:
        for s in stalled:
            s.close()


def test_a_stalled_handshake_is_closed_after_its_timeout(certs, listener_factory):
    tls = _tls(**certs.host("impatient"))
    tls.handshake_timeout_s = 1.0
    address = listener_factory(tls)
    with socket.create_connection(("127.0.0.1", int(address.split(":")[1])), timeout=10) as stalled:
        stalled.sendall(b"\x16\x03\x01")
        assert stalled.recv(100) == b""


def test_bad_tls_settings_are_one_line_errors(certs, tmp_path):
    with pytest.raises(ValueError, match="--tls-cert and --tls-key go together"):
        _tls(tls_cert=certs.host("x")["tls_cert"])
    with pytest.raises(ValueError, match="needs --tls-ca"):
        _tls(tls_client_auth="require", **certs.host("y"))
    with pytest.raises(ValueError, match="cannot load --tls-cert"):
        _tls(tls_cert=str(tmp_path / "missing.crt"), tls_key=str(tmp_path / "missing.key"))
    with pytest.raises(ValueError, match="--tls-min-version"):
        _tls(tls_ca=certs.ca, tls_min_version="1.1")
    with pytest.raises(ValueError, match="--tls-ciphers"):
        _tls(tls_ca=certs.ca, tls_ciphers="NOT-A-CIPHER")


@pytest.mark.time_limit(60)
def test_curl_without_a_client_certificate_cannot_read_a_piece_from_an_uploader(
        origin, supernode_factory, client_factory, downloads, certs, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    supernode = supernode_factory(**certs.mtls("supernode"))
    src = origin.add("f.bin", content(6 * MiB, seed=5))
    seeder = client_factory([supernode.address], seed_for_s=60, **certs.mtls("seeder"))
    result = seeder.download(src.url, str(downloads / "f.bin"))
    url = "https://127.0.0.1:%d/v1/tasks/%s/pieces/0" % (seeder.uploader_address[1], result.task_id)
    piece = str(tmp_path / "piece")

    anonymous = subprocess.run([curl, "-sS", "--cacert", certs.ca, "-o", piece, url],
                               capture_output=True, text=True, timeout=20)
    assert anonymous.returncode != 0
    assert not os.path.exists(piece) or os.path.getsize(piece) == 0
    member = certs.host("member")
    with_cert = [curl, "-sS", "--cacert", certs.ca, "--cert", member["tls_cert"],
                 "--key", member["tls_key"], "-o", piece, "-w", "%{http_code}"]
    untokened = subprocess.run(with_cert + [url], capture_output=True, text=True, timeout=20)
    assert untokened.stdout == "403", untokened.stderr   # a certificate is not a schedule
    query, token = piece_access(peer_secret_of(seeder), result.task_id)
    allowed = subprocess.run(with_cert + ["-H", "%s: %s" % next(iter(token.items())), url + query],
                             capture_output=True, text=True, timeout=20)
    assert allowed.stdout == "200", allowed.stderr
    with open(piece, "rb") as f:
        assert f.read() == src.data[:os.path.getsize(piece)] and os.path.getsize(piece) > 0


@pytest.mark.time_limit(60)
def test_a_daemon_with_a_tls_front_takes_a_hand_off_from_a_get_with_tls(
        origin, supernode_factory, daemons, downloads, certs):
    supernode = supernode_factory(**certs.mtls("supernode"))
    running = daemons.start(supernode=[supernode.address], tls_front=True, **certs.mtls("daemon"))
    src = origin.add("f.bin", content(3 * MiB, seed=6))
    plain = DaemonClient(running.address)
    assert not plain.running()   # a get without TLS finds no daemon here, and downloads itself
    client = DaemonClient(running.address, _tls(**certs.mtls("get")), token=running.handoff_token)
    assert client.running()
    result = client.download(HandoffRequest(src.url, str(downloads / "f.bin")), 30)
    assert result.via == "p2p" and sha256_file(str(downloads / "f.bin")) == src.sha256
    stranger = DaemonClient(running.address, _tls(**certs.mtls("stranger", other_ca=True)))
    assert not stranger.running()


def test_a_tls_front_needs_a_certificate(daemons, certs):
    with pytest.raises(ValueError, match="--tls-front needs --tls-cert"):
        daemons.start(tls_front=True, tls_ca=certs.ca)


@pytest.mark.time_limit(60)
def test_dfly_bench_simulated_peers_speak_mtls(origin, supernode_factory, certs, tmp_path):
    supernode = supernode_factory(**certs.mtls("supernode"))
    src = origin.add("f.bin", content(8 * MiB, seed=7))
    config = BenchConfig(supernode=supernode.address, peers=4, upload_listen="127.0.0.1:0",
                         data_dir=str(tmp_path / "bench"), timeout_s=40, **certs.mtls("bench"))
    summary = bench.run(config, src.url)
    assert summary["failed"] == 0, summary
    assert supernode.listener.server.handshakes > 0
    plain = bench.run(BenchConfig(supernode=supernode.address, peers=1, upload_listen="127.0.0.1:0",
                                  data_dir=str(tmp_path / "bench2"), timeout_s=20), src.url)
    assert plain["failed"] == 1


def test_a_tls_12_server_refusing_a_client_without_a_certificate_says_so(certs, listener_factory):
    server = _tls(**certs.mtls("tls12"))
    server.server_context().maximum_version = ssl.TLSVersion.TLSv1_2
    address = listener_factory(server)
    client = SupernodeClient(address, timeout_s=5, tls=_tls(tls_ca=certs.ca))
    try:
        with pytest.raises(errors.TLSRefused, match="requires a client certificate"):
            client.task("0" * 64)
    finally:
        client.close()


def _alive_members(address, tls):
    client = SupernodeClient(address, timeout_s=2, tls=tls)
    try:
        return sorted(m["member"] for m in client.cluster()["members"] if m["alive"])
    except errors.DflyError:
        return []
    finally:
        client.close()


@pytest.mark.time_limit(60)
def test_cluster_members_talk_mtls_and_refuse_a_member_of_another_ca(
        origin, supernode_factory, client_factory, downloads, certs, tmp_path):
    members = reserve_ports(3)
    settings = dict(cluster=members, cluster_secret="s3cret", member_dead_after_s=1.5)
    for i, (address, other) in enumerate(zip(members, (False, False, True))):
        supernode_factory(data_dir=tmp_path / ("sn%d" % i), listen=address, **settings,
                          **certs.mtls("member%d" % i, other_ca=other))
    me = _tls(**certs.mtls("observer"))
    # Every member counts as alive at start; the stranger's pings are refused at the
    # handshake (and ours by it), so it is dead to both once member_dead_after passed.
    for address in members[:2]:
        wait_until(lambda a=address: _alive_members(a, me) == sorted(members[:2]), timeout=20,
                   message="%s sees the other member of the CA and not the stranger" % address)
    src = origin.add("f.bin", content(4 * MiB, seed=8))
    client = client_factory(members[:2], **certs.mtls("peer"))
    result = client.download(src.url, str(downloads / "f.bin"), digest=src.digest)
    assert result.via == "p2p" and origin.requests("f.bin") == 1


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")
@pytest.mark.time_limit(60)
def test_an_mtls_swarm_on_the_ipv6_loopback_checks_the_ipv6_address(
        origin, supernode_factory, client_factory, downloads, certs):
    supernode = supernode_factory(listen="[::1]:0", **certs.mtls("supernode6"))
    src = origin.add("f.bin", content(6 * MiB, seed=9))
    first = client_factory([supernode.address], upload_listen="[::1]:0", seed_for_s=60,
                           **certs.mtls("first6"))
    first.download(src.url, str(downloads / "first.bin"))
    second = client_factory([supernode.address], upload_listen="[::1]:0", **certs.mtls("second6"))
    assert second.download(src.url, str(downloads / "second.bin")).bytes_from_peers > 0
    v4_only = supernode_factory(listen="[::1]:0", data_dir=str(downloads / "sn4"),
                                **certs.host("v4only", "127.0.0.1"))
    client = client_factory([v4_only.address], **certs.mtls("third6"))
    assert "::1" in str(_refusal(client, src, str(downloads / "third.bin")))


def test_a_daemon_loads_its_rotated_certificate_on_hangup(daemons, certs):
    running = daemons.start(tls_front=True, **certs.mtls("daemon"))
    me = certs.host("checker")
    before = served_certificate(running.address, certs.ca, me)
    certs.rotate_unseen("daemon")   # the files look unchanged: only the reload notices
    running.hangup()   # what SIGHUP runs
    assert served_certificate(running.address, certs.ca, me) != before
