"""URLs inside log lines and error texts lose their secrets; the rest of the line stays."""
from dfly.protocol.redact import redact_urls_in


def test_a_signed_url_in_a_line_keeps_its_path_and_loses_its_query_values():
    line = "origin answered 403 for https://b.s3.example/k/f.iso?X-Amz-Signature=abc&token=t: denied"
    assert redact_urls_in(line) == ("origin answered 403 for https://b.s3.example/k/f.iso"
                                    "?X-Amz-Signature=***&token=***: denied")


def test_userinfo_and_several_urls_in_one_line():
    line = "from 'http://u:pw@h/a?sig=1' to http://h/b?x=2."
    assert redact_urls_in(line) == "from 'http://***@h/a?sig=***' to http://h/b?x=***."


def test_a_line_without_secrets_is_unchanged():
    for line in ("plain http://h:8002/v1/tasks and more", "no url here", ""):
        assert redact_urls_in(line) == line


def test_a_json_log_line_hides_secrets_in_its_extra_fields_too():
    import json
    import logging

    from dfly.lifecycle import JsonLines, RedactUrls
    record = logging.LogRecord("dfly", logging.INFO, __file__, 1, "fetching %s", ("http://u:pw@h/m?sig=1",),
                               None)
    record.source = "https://b.s3.example/k?X-Amz-Signature=abc"   # as `extra=` sets it
    record.bytes = 7
    RedactUrls().filter(record)
    entry = json.loads(JsonLines().format(record))
    assert entry["message"] == "fetching http://***@h/m?sig=***"
    assert entry["source"] == "https://b.s3.example/k?X-Amz-Signature=***"
    assert entry["bytes"] == 7
