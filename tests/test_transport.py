"""The event-loop transport against real sockets: kept-alive connections, a receiver that drops
one, many requests at once, and requests it must refuse to send."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from app.transport import Outcome, Transport
from tests.certs import self_signed
from tests.receiver import Receiver

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class RawServer:
    """A keep-alive HTTP/1.1 server on a socket: ``answer(n)`` gives the bytes for request n
    and whether to close the connection after them. Counts connections and requests."""

    def __init__(self, answer: Callable[[int], tuple[bytes, bool]]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests = 0
        self.hung_up = threading.Event()  # set once a connection was closed by this side
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    buffered += piece
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                buffered = buffered[length:]
                with self._lock:
                    self.requests += 1
                    number = self.requests
                reply, close = self.answer(number)
                conn.sendall(reply)
                if close:
                    break
        if close:
            self.hung_up.set()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[int], tuple[bytes, bool]]], RawServer]]:
    servers: list[RawServer] = []

    def make(answer: Callable[[int], tuple[bytes, bool]]) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_it_keeps_one_connection_alive_for_requests_in_a_row(raw: Callable[..., RawServer]) -> None:
    server = raw(lambda n: (NO_CONTENT, False))
    transport = Transport(2, allow=LOOPBACK)
    statuses = [transport.post(server.url, b"{}", {}).http_status for _ in range(5)]
    assert statuses == [204] * 5
    assert (server.connections, server.requests) == (1, 5)


def test_it_finds_a_kept_connection_closed_before_sending_on_it(
    raw: Callable[..., RawServer],
) -> None:
    # The first answer says nothing of closing, then the server hangs up: the second request
    # must go out on a new connection, not be lost on the dead one.
    server = raw(lambda n: (NO_CONTENT, n == 1))
    transport = Transport(2, allow=LOOPBACK)
    assert transport.post(server.url, b"{}", {}).http_status == 204
    # Before the second request: a hang-up that comes as the request is written is the race
    # every keep-alive client has, and a request is never sent twice (see the next test).
    assert server.hung_up.wait(5)
    second = transport.post(server.url, b"{}", {})
    assert (second.http_status, second.error) == (204, None)
    assert (server.connections, server.requests) == (2, 2)


def test_a_request_the_receiver_reset_is_not_sent_again(raw: Callable[..., RawServer]) -> None:
    # Every attempt in the log is one request the receiver saw: a reset on a kept connection
    # is a failed attempt, never a hidden second request.
    def answer(n: int) -> tuple[bytes, bool]:
        return (NO_CONTENT if n == 1 else b"", n > 1)

    server = raw(answer)
    transport = Transport(2, allow=LOOPBACK)
    assert transport.post(server.url, b"{}", {}).http_status == 204
    second = transport.post(server.url, b"{}", {})
    assert (second.http_status, second.error) == (None, "connection closed without a response")
    assert (server.connections, server.requests) == (1, 2)


def test_it_does_not_keep_a_connection_the_receiver_closes(raw: Callable[..., RawServer]) -> None:
    server = raw(
        lambda n: (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True)
    )
    transport = Transport(2, allow=LOOPBACK)
    outcomes = [transport.post(server.url, b"{}", {}) for _ in range(3)]
    assert [(o.http_status, o.body) for o in outcomes] == [(200, "ok")] * 3
    assert server.connections == 3


def test_each_of_many_requests_at_once_is_answered_exactly_once() -> None:
    transport = Transport(5, pool_size=8, allow=LOOPBACK)
    answers: dict[int, list[Outcome]] = {}
    all_in: Future[None] = Future()
    lock = threading.Lock()

    def done(tag: int, outcome: Outcome) -> None:
        with lock:
            answers.setdefault(tag, []).append(outcome)
            if sum(map(len, answers.values())) == 200:
                all_in.set_result(None)

    with Receiver() as receiver:
        url = receiver.url_for("/many")
        transport.start([(i, url, b'{"n": %d}' % i, {"x-n": str(i)}) for i in range(200)], done)
        all_in.result(timeout=30)
        assert sorted(answers) == list(range(200))
        assert all(len(o) == 1 and o[0].http_status == 200 for o in answers.values())
        bodies = sorted(r.body for r in receiver.requests_for("/many"))
        assert bodies == sorted(b'{"n": %d}' % i for i in range(200))


@pytest.mark.parametrize(
    ("url", "headers", "error"),
    [
        ("ftp://example.com/", {}, "invalid URL: unsupported scheme 'ftp'"),
        ("http:///path", {}, "invalid URL: no host"),
        ("http://127.0.0.1:99999/", {}, "invalid URL: Port out of range 0-65535"),
        ("http://127.0.0.1:9/", {"X-Evil": "a\r\nHost: other"}, "invalid header 'X-Evil'"),
    ],
)
def test_it_refuses_to_send_a_malformed_request(
    url: str, headers: dict[str, str], error: str
) -> None:
    outcome = Transport(1, allow=LOOPBACK).post(url, b"{}", headers)
    assert (outcome.http_status, outcome.error) == (None, error)


def test_custom_headers_cannot_change_the_framing() -> None:
    with Receiver() as receiver:
        url = receiver.url_for("/frame")
        outcome = Transport(2, allow=LOOPBACK).post(
            url, b"{}", {"Content-Length": "999", "Transfer-Encoding": "chunked", "X-Ok": "1"}
        )
        assert outcome.http_status == 200
        [request] = receiver.requests_for("/frame")
    assert request.body == b"{}"
    assert request.headers["content-length"] == "2"
    assert "transfer-encoding" not in request.headers
    assert request.headers["x-ok"] == "1"


def test_a_refused_connection_is_named() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    outcome = Transport(1, allow=LOOPBACK).post(f"http://127.0.0.1:{port}/", b"{}", {})
    assert (outcome.http_status, outcome.error) == (None, "connection refused")


def test_it_speaks_tls_and_refuses_a_certificate_it_cannot_trust(tmp_path: Path) -> None:
    cert_file, key_file = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    with Receiver(tls=server_tls) as receiver:
        url = f"https://127.0.0.1:{receiver.port}/tls"

        untrusted = Transport(2, allow=LOOPBACK).post(url, b"{}", {})
        assert untrusted.http_status is None
        assert untrusted.error is not None
        assert untrusted.error.startswith("TLS error: [SSL: CERTIFICATE_VERIFY_FAILED]")
        assert not receiver.requests_for("/tls")

        trusting = Transport(2, allow=LOOPBACK)
        trusting._ssl = ssl.create_default_context(cafile=str(cert_file))
        outcomes = [trusting.post(url, b'{"tls": 1}', {}) for _ in range(3)]
        assert [o.http_status for o in outcomes] == [200] * 3
        assert [r.body for r in receiver.requests_for("/tls")] == [b'{"tls": 1}'] * 3
