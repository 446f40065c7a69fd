"""A real HTTP receiver on 127.0.0.1 for the tests, scripted per path.

Each path answers with its behaviours in order, the last one repeating; a path with none
answers 200. Behaviours work on the raw socket, so a receiver can also hang, reset the
connection, answer garbage or stream a huge body.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

Behaviour = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float  # time.time() when the request had been read


def respond(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Behaviour:
    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return run


def hang(seconds: float) -> Behaviour:
    def run(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        respond(200)(handler)

    return run


def reset() -> Behaviour:
    """Close with a TCP RST instead of an answer."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
        handler.close_connection = True

    return run


def garbage() -> Behaviour:
    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(b"this is not HTTP at all\r\n\r\n")
        handler.close_connection = True

    return run


def huge(size: int, chunk: int = 64 * 1024) -> Behaviour:
    """A 200 with a body of ``size`` bytes, streamed until the client hangs up."""

    def run(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        block = b"x" * chunk
        sent = 0
        try:
            while sent < size:
                handler.wfile.write(block[: size - sent])
                sent += chunk
        except OSError:
            pass  # the sender read what it wanted and closed
        handler.close_connection = True

    return run


class Receiver:
    """``with Receiver() as rcv:`` serves on 127.0.0.1 until the block ends."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, list[Behaviour]] = {}
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._record(self.path, self, body)
                receiver._next(self.path)(self)

            do_GET = do_PUT = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            # A worker opens many connections at once; the default backlog of 5 drops SYNs,
            # and a dropped SYN costs a 1 s retransmit: a timed-out attempt in the tests.
            request_queue_size = 128

        self._server = Server(("127.0.0.1", port), Handler)
        if tls is not None:  # HTTPS: the handshake happens as each connection is accepted
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def behave(self, path: str, *behaviours: Behaviour) -> None:
        with self._lock:
            self._scripts[path] = list(behaviours)

    def requests_for(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """The requests so far once ``count`` have come (or the timeout has passed)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return list(self.requests)

    def _record(self, path: str, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(Received(path, headers, body, time.time()))
            self._lock.notify_all()

    def _next(self, path: str) -> Behaviour:
        with self._lock:
            script = self._scripts.get(path)
            if not script:
                return respond(200)
            return script.pop(0) if len(script) > 1 else script[0]

    def __enter__(self) -> Receiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
