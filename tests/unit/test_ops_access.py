"""The one gate of the operations pages (dfly/auth.py): open without a token,
a bearer token when --ops-token-file is given."""
from email.message import Message

import pytest

from dfly.auth import Unauthorized, check_ops_access, read_ops_token


def headers(**fields) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name] = value
    return message


def test_without_a_token_the_pages_are_open():
    check_ops_access(headers(), "")


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic c2VjcmV0", "Bearer ",
                                           "secret", "Bearer secretsecret"])
def test_with_a_token_a_request_without_it_is_refused(authorization):
    given = headers(Authorization=authorization) if authorization is not None else headers()
    with pytest.raises(Unauthorized) as refused:
        check_ops_access(given, "secret")
    assert refused.value.http_status == 401
    assert "secret" not in str(refused.value)


def test_with_a_token_the_right_bearer_passes():
    check_ops_access(headers(Authorization="Bearer secret"), "secret")
    check_ops_access(headers(Authorization="bearer  secret "), "secret")


def test_the_token_file_gives_its_first_line(tmp_path):
    path = tmp_path / "ops.token"
    path.write_text("  s3cret \nignored\n")
    assert read_ops_token(str(path)) == "s3cret"
    assert read_ops_token("") == ""


def test_a_missing_or_empty_token_file_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        read_ops_token(str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="holds no token"):
        read_ops_token(str(tmp_path / "empty"))
