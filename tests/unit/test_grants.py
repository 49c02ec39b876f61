"""The outage-mode grant table: keyed by repository, digest and credentials,
forgotten after its window, bounded in size, holding no credential."""
import hashlib
import hmac

from dfly.protocol.grants import Grants

D = "sha256:" + "a" * 64


def test_only_the_same_credentials_for_the_same_blob_and_repository_are_allowed():
    grants = Grants(ttl_s=60)
    grants.granted("team/app", D, "Basic dXNlcjpwdw==", 100.0)
    assert grants.allowed("team/app", D, "Basic dXNlcjpwdw==", 150.0)
    assert not grants.allowed("team/app", D, "Basic b3RoZXI6cHc=", 150.0)
    assert not grants.allowed("team/app", D, "", 150.0)
    assert not grants.allowed("other/app", D, "Basic dXNlcjpwdw==", 150.0)
    assert not grants.allowed("team/app", "sha256:" + "b" * 64, "Basic dXNlcjpwdw==", 150.0)


def test_a_grant_is_forgotten_after_its_window_and_renewed_by_a_new_yes():
    grants = Grants(ttl_s=60)
    grants.granted("r", D, "", 0.0)
    assert not grants.allowed("r", D, "", 61.0) and len(grants) == 0
    grants.granted("r", D, "", 100.0)
    grants.granted("r", D, "", 150.0)
    assert grants.allowed("r", D, "", 200.0)


def test_the_table_is_bounded_oldest_first():
    grants = Grants(ttl_s=3600, max_entries=3)
    for i in range(5):
        grants.granted("r%d" % i, D, "", float(i))
    assert len(grants) == 3
    assert not grants.allowed("r0", D, "", 5.0) and grants.allowed("r4", D, "", 5.0)


def test_no_credential_is_kept_and_a_zero_window_keeps_nothing():
    grants = Grants(ttl_s=60)
    grants.granted("r", D, "Bearer very-secret-token", 0.0)
    assert b"very-secret-token" not in b"".join(grants._granted)
    off = Grants(ttl_s=0)
    off.granted("r", D, "", 0.0)
    assert len(off) == 0 and not off.allowed("r", D, "", 0.0)


def test_only_a_connection_never_made_counts_as_unreachable():
    import errno
    import http.client
    import socket

    from dfly.errors import unreachable
    assert unreachable(ConnectionRefusedError()) and unreachable(socket.timeout())
    assert unreachable(socket.gaierror()) and unreachable(OSError(errno.EHOSTUNREACH, "no route"))
    assert not unreachable(ConnectionResetError()) and not unreachable(http.client.RemoteDisconnected())
    assert not unreachable(OSError(errno.ENOSPC, "full")) and not unreachable(ValueError())


def test_a_grant_holds_up_to_ttl_s_itself_and_a_renewed_one_is_not_dropped_as_old():
    grants = Grants(ttl_s=60.0, max_entries=2)
    grants.granted("team/app", "sha256:a", "Bearer t", now=0.0)
    assert grants.allowed("team/app", "sha256:a", "Bearer t", now=60.0)       # the edge: still
    assert not grants.allowed("team/app", "sha256:a", "Bearer t", now=60.5)
    grants.granted("team/app", "sha256:a", "Bearer t", now=100.0)
    grants.granted("team/app", "sha256:b", "Bearer t", now=101.0)
    grants.granted("team/app", "sha256:a", "Bearer t", now=102.0)   # renewed: now the newest
    grants.granted("team/app", "sha256:c", "Bearer t", now=103.0)   # the bound drops b, not a
    assert grants.allowed("team/app", "sha256:a", "Bearer t", now=103.0)
    assert not grants.allowed("team/app", "sha256:b", "Bearer t", now=103.0)
    assert len(grants) == 2


def test_one_grant_fits_in_a_table_of_one_and_a_window_of_a_second_keeps_it():
    grants = Grants(ttl_s=1.0, max_entries=1)
    grants.granted("r", "sha256:a", "", now=0.0)
    assert grants.allowed("r", "sha256:a", "", now=1.0) and len(grants) == 1


def test_expired_grants_are_dropped_past_a_fresh_one():
    grants = Grants(ttl_s=10.0)
    grants.granted("r", "sha256:old", "", now=0.0)
    grants.granted("r", "sha256:new", "", now=9.0)
    grants.granted("r", "sha256:newer", "", now=15.0)   # old expires here; new does not
    assert len(grants) == 2


def test_by_default_a_grant_lasts_an_hour_and_not_a_moment_longer():
    grants = Grants()
    grants.granted("r", D, "a", 0.0)
    assert grants.allowed("r", D, "a", 3600.0)
    assert not grants.allowed("r", D, "a", 3600.001)


def test_by_default_the_table_keeps_the_newest_65536_grants():
    grants = Grants()
    for n in range(65537):
        grants.granted("r", D, str(n), 0.0)
    assert len(grants) == 65536
    assert not grants.allowed("r", D, "0", 0.0)
    assert grants.allowed("r", D, "1", 0.0)


def test_the_table_keeps_an_hmac_of_repository_digest_and_credentials_one_per_line():
    # what one who reads the process's memory finds: a MAC under the table's key, no credential
    grants = Grants(key=b"k" * 32)
    grants.granted("team/app", D, "Basic dXNlcjpwdw==", 0.0)
    text = ("team/app\n%s\nBasic dXNlcjpwdw==" % D).encode()
    assert list(grants._granted) == [hmac.new(b"k" * 32, text, hashlib.sha256).digest()]


def test_tables_made_without_a_key_each_draw_their_own():
    # a fixed or empty key would let anyone holding a dump test guesses of the credentials
    one, two = Grants(), Grants()
    one.granted("r", D, "Basic dXNlcjpwdw==", 0.0)
    two.granted("r", D, "Basic dXNlcjpwdw==", 0.0)
    kept = list(one._granted) + list(two._granted)
    assert kept[0] != kept[1]
    unkeyed = hmac.new(b"", ("r\n%s\nBasic dXNlcjpwdw==" % D).encode(), hashlib.sha256).digest()
    assert unkeyed not in kept
