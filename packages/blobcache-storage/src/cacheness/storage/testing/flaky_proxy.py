"""A tiny HTTP proxy on loopback that injects faults in front of a real server.

Point a client (``endpoint_url=proxy.url``) at :class:`FlakyProxy` instead of the
server and choose, at any moment, what the next requests meet:

* ``"drop"``: the connection is closed without an answer (the client sees a reset or
  a "remote end closed connection" error, as with a crashed load balancer);
* ``"error"``: an HTTP error status (503 by default) with an S3-style XML error body;
* nothing: the request is forwarded unchanged and the answer streamed back.

Faults apply to the next *n* requests (:meth:`FlakyProxy.fail_next`), for a while
(:meth:`FlakyProxy.fail_for`) or until :meth:`FlakyProxy.heal`, optionally only to some
HTTP methods. :meth:`FlakyProxy.stop` makes the endpoint refuse connections ("server
down"); :meth:`FlakyProxy.start` brings it back on the same port. Counters
(:meth:`FlakyProxy.stats`) tell exactly which requests reached the proxy, so a test can
prove that a client stopped calling (an open circuit breaker) without timing anything.

Only the standard library is used; requests are relayed one at a time per client
connection, with bodies streamed in both directions.

Example:
    >>> import http.server, threading, urllib.request, urllib.error
    >>> class Hello(http.server.BaseHTTPRequestHandler):
    ...     def do_GET(self):
    ...         self.send_response(200); self.send_header("Content-Length", "2")
    ...         self.end_headers(); self.wfile.write(b"hi")
    ...     def log_message(self, *args): pass
    >>> server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    >>> _ = threading.Thread(target=server.serve_forever, daemon=True).start()
    >>> with FlakyProxy(f"http://127.0.0.1:{server.server_port}") as proxy:
    ...     proxy.fail_next(1, "error", status=503)
    ...     try:
    ...         urllib.request.urlopen(proxy.url)
    ...     except urllib.error.HTTPError as exc:
    ...         print("first:", exc.code); exc.close()
    ...     with urllib.request.urlopen(proxy.url) as response:
    ...         print("second:", response.read())
    ...     print(proxy.stats().errors, proxy.stats().forwarded)
    first: 503
    second: b'hi'
    1 1
    >>> server.shutdown(); server.server_close()
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self
from urllib.parse import urlsplit

__all__ = ["Fault", "FlakyProxy", "ProxyStats", "RequestRecord"]

log = logging.getLogger(__name__)

Fault = Literal["drop", "error"]
"""What a faulty request meets: a dropped connection or an HTTP error status."""

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}
_ERROR_CODES = {500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ProxyStats:
    """Counters of a :class:`FlakyProxy` since it was made (or :meth:`~FlakyProxy.reset_stats`).

    Attributes:
        requests: requests received (faulty or not).
        forwarded: requests relayed to the upstream server.
        dropped: requests answered by closing the connection.
        errors: requests answered with an injected error status.
        connections: client connections accepted.
        upstream_failures: relayed requests the upstream did not answer (502 sent back).
        by_method: requests received per HTTP method.
    """

    requests: int = 0
    forwarded: int = 0
    dropped: int = 0
    errors: int = 0
    connections: int = 0
    upstream_failures: int = 0
    by_method: dict[str, int] = field(default_factory=dict)

    @property
    def faults(self) -> int:
        """Requests that met a fault (dropped or answered with an error)."""
        return self.dropped + self.errors


@dataclass(frozen=True)
class RequestRecord:
    """One request as the proxy received it (see :attr:`FlakyProxy.history`).

    Attributes:
        method: the HTTP method.
        path: the request target (path and query string).
        headers: the request headers (last value wins for repeated names).
        fault: ``"drop"`` or ``"error"`` when a fault was injected, else None.
    """

    method: str
    path: str
    headers: dict[str, str]
    fault: Fault | None


Predicate = Callable[[RequestRecord], bool]
"""Chooses which requests a fault applies to (it sees ``fault=None`` records)."""


@dataclass
class _Rule:
    fault: Fault
    status: int
    methods: frozenset[str] | None
    when: Predicate | None
    remaining: int | None  # requests still to fail; None: no count limit
    until: float | None  # clock time the rule ends; None: no time limit

    def applies(self, request: RequestRecord, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.methods is not None and request.method not in self.methods:
            return False
        return self.when is None or bool(self.when(request))


class FlakyProxy:
    """An HTTP reverse proxy on 127.0.0.1 that can drop or fail requests on demand.

    Args:
        upstream: base URL of the real server, e.g. ``"http://127.0.0.1:5000"``.
        host: interface to listen on (loopback by default).
        port: port to listen on (0: a free one, kept across :meth:`stop`/:meth:`start`).
        clock: monotonic clock used by :meth:`fail_for` (injectable for tests).
        timeout: seconds to wait for the upstream server.
        history_size: how many recent requests :attr:`history` keeps.

    Raises:
        ValueError: ``upstream`` is not an ``http://host:port`` URL.
    """

    def __init__(
        self,
        upstream: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 60.0,
        history_size: int = 1000,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http://host:port URL, got {upstream!r}")
        self.upstream = upstream
        self._upstream_host = parts.hostname
        self._upstream_port = parts.port or 80
        self._host = host
        self._port = port
        self._clock = clock
        self.timeout = timeout
        self.latency = 0.0
        """Seconds to wait before relaying each request (0: none)."""
        self._lock = threading.Lock()
        self._rule: _Rule | None = None
        self._counts: Counter[str] = Counter()
        self._methods: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._history: deque[RequestRecord] = deque(maxlen=history_size)

    # -- life cycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy (valid once started)."""
        if not self._port:
            raise RuntimeError("the proxy has no port yet: call start() first")
        return f"http://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        """True while the proxy accepts connections."""
        return self._server is not None

    def start(self) -> Self:
        """Start listening (again, on the same port after :meth:`stop`)."""
        if self._server is not None:
            return self
        server = _Server((self._host, self._port), _Handler)
        server.proxy = self
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() returns quickly
            name=f"flaky-proxy-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: clients now get "connection refused"."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError as exc:  # already closed by its handler
                log.debug("closing a proxied connection: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- fault control ------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        fault: Fault = "drop",
        *,
        status: int = 503,
        methods: Iterable[str] | None = None,
        when: Predicate | None = None,
    ) -> None:
        """Make the next ``count`` matching requests meet ``fault``; later ones pass.

        Args:
            count: how many requests fail.
            fault: ``"drop"`` (close the connection) or ``"error"`` (answer ``status``).
            status: the HTTP status of ``"error"`` faults.
            methods: only requests with these HTTP methods fail (default: all).
            when: only requests this predicate accepts fail (default: all).
        """
        self._set_rule(fault, status, methods, when, remaining=count, until=None)

    def fail_for(
        self,
        seconds: float,
        fault: Fault = "drop",
        *,
        status: int = 503,
        methods: Iterable[str] | None = None,
        when: Predicate | None = None,
    ) -> None:
        """Make every matching request meet ``fault`` for ``seconds`` (by the clock)."""
        self._set_rule(fault, status, methods, when, remaining=None, until=self._clock() + seconds)

    def fail_always(
        self,
        fault: Fault = "drop",
        *,
        status: int = 503,
        methods: Iterable[str] | None = None,
        when: Predicate | None = None,
    ) -> None:
        """Make every matching request meet ``fault`` until :meth:`heal`."""
        self._set_rule(fault, status, methods, when, remaining=None, until=None)

    def heal(self) -> None:
        """Forward every request again."""
        with self._lock:
            self._rule = None

    def _set_rule(
        self,
        fault: Fault,
        status: int,
        methods: Iterable[str] | None,
        when: Predicate | None,
        *,
        remaining: int | None,
        until: float | None,
    ) -> None:
        if fault not in ("drop", "error"):
            raise ValueError(f"fault must be 'drop' or 'error', got {fault!r}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status, got {status}")
        if remaining is not None and remaining < 0:
            raise ValueError(f"count must not be negative, got {remaining}")
        wanted = frozenset(method.upper() for method in methods) if methods is not None else None
        with self._lock:
            self._rule = _Rule(fault, status, wanted, when, remaining, until)

    def _decide(self, method: str, path: str, headers: dict[str, str]) -> tuple[Fault, int] | None:
        """Count and record a request; return the fault it meets, if any."""
        request = RequestRecord(method, path, headers, None)
        with self._lock:
            self._counts["requests"] += 1
            self._methods[method] += 1
            rule = self._rule
            if rule is None or not rule.applies(request, self._clock()):
                self._history.append(request)
                return None
            if rule.remaining is not None:
                rule.remaining -= 1
            self._counts["dropped" if rule.fault == "drop" else "errors"] += 1
            self._history.append(RequestRecord(method, path, headers, rule.fault))
            return rule.fault, rule.status

    @property
    def history(self) -> list[RequestRecord]:
        """The most recent requests received, oldest first."""
        with self._lock:
            return list(self._history)

    # -- counters -----------------------------------------------------------------------

    def stats(self) -> ProxyStats:
        """Return a snapshot of the counters."""
        with self._lock:
            counts = dict(self._counts)
            methods = dict(self._methods)
        return ProxyStats(
            requests=counts.get("requests", 0),
            forwarded=counts.get("forwarded", 0),
            dropped=counts.get("dropped", 0),
            errors=counts.get("errors", 0),
            connections=counts.get("connections", 0),
            upstream_failures=counts.get("upstream_failures", 0),
            by_method=methods,
        )

    def reset_stats(self) -> None:
        """Set every counter back to zero and forget the request history."""
        with self._lock:
            self._counts.clear()
            self._methods.clear()
            self._history.clear()

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._sockets.add(sock)
                self._counts["connections"] += 1
            else:
                self._sockets.discard(sock)

    def __repr__(self) -> str:
        where = self.url if self._port else "not started"
        return f"<FlakyProxy {where} -> {self.upstream}>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FlakyProxy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.proxy._track(self.connection, add=True)
        self._fault: tuple[Fault, int] | None = None
        self._decided = False

    def finish(self) -> None:
        self.server.proxy._track(self.connection, add=False)
        try:
            super().finish()
        except OSError as exc:  # the client went away first
            log.debug("finishing a proxied connection: %s", exc)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("flaky proxy: " + format, *args)

    def handle_one_request(self) -> None:
        self._decided = False
        self._fault = None
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        # Decide before the client sends its body, as a real server would.
        if self._decide_once() is not None:
            self._inject(body_pending=False)
            return False
        return super().handle_expect_100()

    def _decide_once(self) -> tuple[Fault, int] | None:
        if not self._decided:
            self._decided = True
            headers = dict(self.headers.items())
            self._fault = self.server.proxy._decide(self.command, self.path, headers)
        return self._fault

    def _relay(self) -> None:
        if self._decide_once() is not None:
            self._inject(body_pending=True)
            return
        proxy = self.server.proxy
        if proxy.latency:
            time.sleep(proxy.latency)
        try:
            body = self._request_body()
            upstream = http.client.HTTPConnection(
                proxy._upstream_host, proxy._upstream_port, timeout=proxy.timeout
            )
            try:
                self._forward(upstream, body)
            finally:
                upstream.close()
        except (OSError, http.client.HTTPException) as exc:
            proxy._count("upstream_failures")
            log.debug("flaky proxy: upstream failed for %s %s: %s", self.command, self.path, exc)
            self.close_connection = True
            try:
                self._reply(502, b"")
            except OSError:
                return

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _relay  # noqa: N815

    def _request_body(self) -> bytes | int:
        """Return the chunked body as bytes, or the Content-Length still to stream."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        continue  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return int(self.headers.get("Content-Length", 0) or 0)

    def _forward(self, upstream: http.client.HTTPConnection, body: bytes | int) -> None:
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                upstream.putheader(name, value)
        length = len(body) if isinstance(body, bytes) else body
        if length or self.command in ("PUT", "POST", "PATCH"):
            upstream.putheader("Content-Length", str(length))
        upstream.endheaders()
        if isinstance(body, bytes):
            upstream.send(body)
        else:
            remaining = body
            while remaining:
                chunk = self.rfile.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ConnectionError("client closed the connection mid-body")
                upstream.send(chunk)
                remaining -= len(chunk)
        response = upstream.getresponse()
        self.server.proxy._count("forwarded")
        self.send_response_only(response.status, response.reason)
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        declared = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304)
        buffered = b""
        if declared is None and not no_body:
            buffered = response.read()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(buffered))))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if no_body:
            return
        if declared is None:
            self.wfile.write(buffered)
            return
        while chunk := response.read(_CHUNK):
            self.wfile.write(chunk)

    def _inject(self, *, body_pending: bool) -> None:
        assert self._fault is not None
        fault, status = self._fault
        self.close_connection = True
        if fault == "drop":
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("dropping a connection: %s", exc)
            return
        if body_pending:
            try:
                self._discard_body()
            except (OSError, ValueError) as exc:
                log.debug("discarding a request body: %s", exc)
        code = _ERROR_CODES.get(status, "InjectedFault")
        payload = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>fault injected by FlakyProxy</Message>"
            "<RequestId>flaky-proxy</RequestId></Error>"
        ).encode()
        try:
            self._reply(status, payload)
        except OSError as exc:
            log.debug("the client left before the injected error: %s", exc)

    def _discard_body(self) -> None:
        body = self._request_body()
        remaining = body if isinstance(body, int) else 0
        while remaining:
            chunk = self.rfile.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload) if self.command != "HEAD" else 0))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
