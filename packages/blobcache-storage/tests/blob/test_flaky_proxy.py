"""The flaky proxy itself: forwarding, faults on schedule, counters, start/stop."""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from cacheness.storage.testing.flaky_proxy import FlakyProxy


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Method", self.command)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(f"GET {self.path}".encode())

    do_HEAD = do_GET  # noqa: N815 - the stdlib's handler naming

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(b"PUT " + body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_forwards_bodies_both_ways(upstream: str):
    with FlakyProxy(upstream) as proxy:
        assert get(proxy.url + "/a?b=1") == (200, b"GET /a?b=1")
        connection = http.client.HTTPConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]))
        payload = b"x" * 3_000_000
        connection.request("PUT", "/big", body=payload)
        response = connection.getresponse()
        assert response.read() == b"PUT " + payload
        connection.putrequest("PUT", "/chunked")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for part in (b"hello ", b"chunked ", b"world"):
            connection.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        connection.send(b"0\r\n\r\n")
        assert connection.getresponse().read() == b"PUT hello chunked world"
        connection.request("HEAD", "/head")
        head = connection.getresponse()
        assert (head.status, head.getheader("X-Method"), head.read()) == (200, "HEAD", b"")
        connection.close()
        stats = proxy.stats()
        assert (stats.requests, stats.forwarded, stats.faults) == (4, 4, 0)
        assert stats.by_method == {"GET": 1, "PUT": 2, "HEAD": 1}


def test_fail_next_then_heal(upstream: str):
    with FlakyProxy(upstream) as proxy:
        proxy.fail_next(2, "error", status=500)
        status, body = get(proxy.url + "/x")
        assert status == 500
        assert b"<Code>InternalError</Code>" in body
        assert get(proxy.url + "/x")[0] == 500
        assert get(proxy.url + "/x") == (200, b"GET /x")
        proxy.fail_next(1, "drop")
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(proxy.url + "/dropped", timeout=10)
        assert get(proxy.url + "/ok")[0] == 200
        stats = proxy.stats()
        assert (stats.errors, stats.dropped, stats.forwarded) == (2, 1, 2)
        assert [record.fault for record in proxy.history] == ["error", "error", None, "drop", None]


def test_method_and_predicate_filters(upstream: str):
    with FlakyProxy(upstream) as proxy:
        proxy.fail_always("error", status=503, methods={"put"})
        assert get(proxy.url + "/read")[0] == 200
        request = urllib.request.Request(proxy.url + "/write", data=b"x", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)
        raised.value.close()
        assert raised.value.code == 503
        proxy.fail_always("error", status=502, when=lambda r: r.path.startswith("/special"))
        assert get(proxy.url + "/special/x")[0] == 502
        assert get(proxy.url + "/plain")[0] == 200
        proxy.heal()
        assert get(proxy.url + "/special/x")[0] == 200


def test_fail_for_a_while(upstream: str, clock):
    with FlakyProxy(upstream, clock=clock) as proxy:
        proxy.fail_for(10, "error")
        assert get(proxy.url)[0] == 503
        clock.now = 9.9
        assert get(proxy.url)[0] == 503
        clock.now = 10
        assert get(proxy.url)[0] == 200


def test_stop_refuses_and_start_comes_back_on_the_same_port(upstream: str):
    proxy = FlakyProxy(upstream).start()
    url = proxy.url
    assert get(url)[0] == 200
    proxy.stop()
    assert not proxy.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)
    proxy.start()
    assert proxy.url == url
    assert get(url)[0] == 200
    proxy.stop()


def test_upstream_down_is_a_502(upstream: str):
    from cacheness.storage.testing.services import free_port

    with FlakyProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        assert get(proxy.url)[0] == 502
        assert proxy.stats().upstream_failures == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="http://host:port"):
        FlakyProxy("https://example.com")
    proxy = FlakyProxy("http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="start"):
        _ = proxy.url
    with pytest.raises(ValueError, match="fault"):
        proxy.fail_next(1, "explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="status"):
        proxy.fail_next(1, "error", status=200)
