"""The fast receiver: Debian's nginx answering 204 on 127.0.0.1, plus a black hole that hangs.

nginx runs in the foreground (``daemon off``) as a child of the benchmark, from a config
file written into the run's temp dir, on a free port. Every request is written to an access
log as ``<msec> <uri> <webhook-id>``; this module reads that log (from the offset where the
current measurement started) for arrival times and duplicates, so the receiver costs a C
server's CPU, not Python's.

``/fail/...`` answers 500, ``/big/...`` 200 with an 8 MiB body (a file written into the
temp dir, served through an internal redirect: nginx's static files answer POST with 405).
The black hole is a listening socket that never accepts: the kernel completes the handshake
and buffers the request, and no answer ever comes, so each request costs the sender its
full timeout.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from bench.api import Watchdog, wait_for_unique

NGINX = "/usr/sbin/nginx"
BIG_BODY_BYTES = 8 * 2**20  # what /big/ answers

CONFIG = """
worker_processes 1;
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    log_format arrivals '$msec $request_uri $http_webhook_id';
    access_log {tmp}/arrivals.log arrivals buffer=64k flush=100ms;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /fail/ {{ return 500; }}
        location /big/ {{ error_page 405 =200 /big.bin; return 405; }}
        location = /big.bin {{ internal; root {tmp}/www; default_type application/octet-stream; }}
        location / {{ return 204; }}
    }}
}}
"""


def write_config(tmp: Path, port: int) -> Path:
    # nginx's worker runs as nobody: it must be able to reach the file (not list the dir).
    tmp.chmod(0o711)
    www = tmp / "www"
    www.mkdir(mode=0o755, exist_ok=True)
    (www / "big.bin").write_bytes(b"x" * BIG_BODY_BYTES)
    (www / "big.bin").chmod(0o644)
    path = tmp / "nginx.conf"
    path.write_text(CONFIG.format(tmp=tmp, port=port))
    return path


class ArrivalLog:
    """Reads nginx's access log: arrivals per (uri, webhook-id) since the last ``reset``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._arrivals: dict[str, float] = {}
        self._requests = 0
        self._duplicates = 0
        self._first: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        time.sleep(0.25)  # let nginx flush its buffer (flush=100ms) before the cut
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        self._arrivals = {}
        self._requests = self._duplicates = 0
        self._first = self._last = None

    def _read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next read
        self._offset += end
        for line in chunk[:end].decode("latin-1").splitlines():
            parts = line.split(" ")
            if len(parts) < 3:
                continue
            at = float(parts[0])
            key = f"{parts[1]} {parts[2]}"
            self._requests += 1
            self._first = at if self._first is None else min(self._first, at)
            self._last = at if self._last is None else max(self._last, at)
            if key in self._arrivals:
                self._duplicates += 1
            else:
                self._arrivals[key] = at

    def stats(self) -> dict[str, Any]:
        self._read()
        return {
            "requests": self._requests,
            "unique": len(self._arrivals),
            "duplicates": self._duplicates,
            "first": self._first,
            "last": self._last,
        }

    def arrivals(self) -> dict[str, float]:
        self._read()
        return dict(self._arrivals)

    def wait_for(self, unique: int, watchdog: Watchdog, on_poll: Any = None) -> dict[str, Any]:
        return wait_for_unique(self.stats, unique, watchdog, on_poll)


class BlackHole:
    """A listening socket on 127.0.0.1 that never accepts: every request hangs to timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()
