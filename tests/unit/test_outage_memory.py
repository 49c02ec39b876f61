"""What the registry mirror keeps for outage mode: manifests only to the
credentials granted them, a digest reference only when the bytes match, the
total bounded; the base's challenge for clients without credentials."""
import hashlib

from dfly.peer.outage import OutageMemory

ACCEPT = "application/vnd.oci.image.index.v1+json"
BASIC = "Basic dXNlcjpwdw=="


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_a_manifest_goes_only_to_the_credentials_it_was_sent_to_within_the_window():
    clock = Clock()
    memory = OutageMemory(60, clock)
    memory.manifest_answered("team/app", "v1", ACCEPT, BASIC, [("Content-Type", ACCEPT)], b"{}")
    assert memory.manifest("team/app", "v1", ACCEPT, BASIC).body == b"{}"
    assert memory.manifest("team/app", "v1", ACCEPT, "") is None
    assert memory.manifest("team/app", "v2", ACCEPT, BASIC) is None
    clock.now += 61
    assert memory.manifest("team/app", "v1", ACCEPT, BASIC) is None


def test_a_manifest_fetched_by_digest_is_kept_only_when_its_bytes_match():
    memory = OutageMemory(60, Clock())
    body = b'{"schemaVersion": 2}'
    good = "sha256:" + hashlib.sha256(body).hexdigest()
    bad = "sha256:" + "0" * 64
    memory.manifest_answered("a", good, ACCEPT, "", [], body)
    memory.manifest_answered("a", bad, ACCEPT, "", [], body)
    assert memory.manifest("a", good, ACCEPT, "") is not None
    assert memory.manifest("a", bad, ACCEPT, "") is None


def test_remembered_manifests_are_bounded_in_bytes_oldest_first():
    memory = OutageMemory(60, Clock(), max_bytes=250)
    for i in range(3):
        memory.manifest_answered("a", "t%d" % i, ACCEPT, "", [], b"x" * 100)
    assert memory.manifest("a", "t0", ACCEPT, "") is None
    assert memory.manifest("a", "t2", ACCEPT, "") is not None


def test_the_base_answers_a_challenge_without_credentials_and_a_ping_with_some():
    memory = OutageMemory(60, Clock())
    assert memory.base("") is None
    memory.base_answered(401, [("WWW-Authenticate", 'Basic realm="r"')], b"{}")
    assert memory.base("").status == 401 and memory.base(BASIC).status == 200
    off = OutageMemory(0, Clock())
    off.base_answered(401, [], b"")
    assert off.base("") is None and off.base(BASIC) is None
