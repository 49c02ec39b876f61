"""The test origin's own promise, which many tests read right after a download:
a request is in served() before any of its answer reaches the client, and the
bytes a client holds are counted (not recorded once the handler has finished,
which a test could read too early)."""
import http.client

from tests.helpers import MiB, content


def test_a_request_is_recorded_before_its_answer_reaches_the_client(origin):
    src = origin.add("big", content(16 * MiB, seed=40))   # more than the socket buffers hold
    conn = http.client.HTTPConnection(*origin.address, timeout=10)
    try:
        conn.request("GET", "/big", headers={"Authorization": "Bearer t"})
        response = conn.getresponse()   # the head only: most of the body is still to send
        assert response.status == 200
        [served] = origin.served("big")
        assert served.status == 200 and served.headers["Authorization"] == "Bearer t"
        first = response.read(MiB)
        assert origin.body_bytes("big") >= len(first)
        rest = response.read()
        assert first + rest == src.data and origin.body_bytes("big") == len(src.data)
    finally:
        conn.close()
