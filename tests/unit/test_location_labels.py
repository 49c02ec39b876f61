"""--location on get and daemon: checked when parsed (exit 2 with the rule), sent in
the registration only when given (older supernodes never see the field)."""
import pytest

from dfly import cli
from dfly.errors import BadRequest
from dfly.protocol.messages import RegisterRequest

BODY = {"url": "http://127.0.0.1:1/f", "peer": {"id": "p1", "port": 9000}}


@pytest.mark.parametrize("command", ["get", "daemon"])
def test_a_bad_location_flag_exits_2_with_the_rule(command, capsys, tmp_path):
    argv = [command, "--location", "zone a/rack", "--supernode", "127.0.0.1:9"]
    if command == "get":
        argv += ["http://127.0.0.1:9/x", "-o", str(tmp_path / "unused")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--location" in err and "[A-Za-z0-9._-]" in err and "Traceback" not in err
    assert not (tmp_path / "unused").exists()


def test_a_registration_carries_its_location_only_when_given():
    with_location = RegisterRequest(url=BODY["url"], peer_id="p1", peer_port=9000, location="eu/a/r1")
    assert with_location.to_json()["peer"]["location"] == "eu/a/r1"
    assert RegisterRequest.parse(with_location.to_json()).location == "eu/a/r1"
    without = RegisterRequest(url=BODY["url"], peer_id="p1", peer_port=9000)
    assert "location" not in without.to_json()["peer"]
    assert RegisterRequest.parse(BODY).location == ""


@pytest.mark.parametrize("location", ["a//b", "x" * 300, 7, "../etc"])
def test_a_registration_with_a_bad_location_is_a_bad_request(location):
    body = dict(BODY, peer=dict(BODY["peer"], location=location))
    with pytest.raises(BadRequest, match="location"):
        RegisterRequest.parse(body)
