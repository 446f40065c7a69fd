"""The one place HTTP leaves Herald: the private-address guard, a timeout on the whole attempt,
no redirects, a capped response read, and one event-loop thread sending for the process.

Imports nothing of Herald's but the response reader, so the guard has a single place to live.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import select
import socket
import ssl
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from app.http1 import INVALID, ResponseReader, header

__all__ = ["Outcome", "Transport", "is_forbidden", "literal_address"]
log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Never the public internet: refused unless a deployment allows them by CIDR.
BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this" network, unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/128",
        "::1/128",
        "64:ff9b::/96",  # NAT64 embeds IPv4
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "2002::/16",  # 6to4 embeds IPv4
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",
        "ff00::/8",  # multicast
    )
)


class RefusedAddress(OSError):
    """The destination resolves to an address delivery may not reach."""


def _unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address inside IPv4-mapped/compatible IPv6 forms, else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.packed[:12] == bytes(12) and int(address) > 1:
            return ipaddress.IPv4Address(address.packed[12:])  # deprecated ::a.b.c.d
    return address


def is_forbidden(address: IPAddress, allow: Sequence[Network] = ()) -> bool:
    """True when delivery must not connect to ``address`` (allow-listed CIDRs excepted)."""
    for candidate in {address, _unwrap(address)}:
        if any(candidate.version == net.version and candidate in net for net in allow):
            return False
    plain = _unwrap(address)
    return any(plain.version == net.version and plain in net for net in BLOCKED) or (
        not plain.is_global
    )


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, including odd IPv4 spellings (2130706433, 0x7f.1)."""
    # As IDNA would read it: full-width digits and dots are digits and dots; one trailing
    # dot (the DNS root) changes nothing.
    host = unicodedata.normalize("NFKC", host).replace("\u3002", ".").strip()
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))  # what the resolver would do
        except OSError:
            return None
    return None


def resolve_checked(host: str, port: int, allow: Sequence[Network]) -> list[tuple[Any, ...]]:
    """Resolve ``host`` and return its addresses, refusing if any of them is forbidden.

    Every address is checked (not just the first) so a name with one public and one
    private address cannot be used to reach the private one.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if is_forbidden(address, allow):
            raise RefusedAddress(f"refused: private address {address}")
    return infos


@dataclass(frozen=True)
class Outcome:
    """What one HTTP request came to: a response (any status) or an error text."""

    http_status: int | None
    headers: dict[str, str] | None
    body: str | None
    error: str | None
    duration_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300

    @classmethod
    def failure(cls, error: str, duration_ms: int = 0) -> Outcome:
        """No response at all, for ``error``."""
        return cls(None, None, None, error, duration_ms)

    @classmethod
    def internal(cls, exc: BaseException) -> Outcome:
        """A bug of Herald's stopped the attempt: logged as failed, never lost."""
        return cls.failure(f"internal error: {type(exc).__name__}")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if parseable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _describe(exc: BaseException, timeout: float) -> str:
    """A short, stable error text for a connection that could not be made."""
    text = str(exc)
    if isinstance(exc, RefusedAddress):
        return "refused: private address"
    if isinstance(exc, socket.gaierror):
        return "DNS lookup failed"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS error: {text[:200]}"
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionError):
        return "connection reset by peer"
    if isinstance(exc, OSError):
        return f"connection error: {text[:200]}"
    return f"{type(exc).__name__}: {text[:200]}"


@dataclass(frozen=True)
class Target:
    """A webhook URL taken apart once: where to connect and what to put in the request."""

    key: tuple[str, str, int]  # (scheme, host, port): the pool a connection belongs to
    host_header: str
    path: str


def _target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("no host")
    port = parts.port or (443 if scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    default = port == (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in path for c in " \r\n\x00"):
        raise ValueError("a space or control character in the path")
    return Target((scheme, host, port), shown if default else f"{shown}:{port}", path)


# Fields a webhook's custom headers may not set: the framing of the request is Herald's.
FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection", "te"})


def request_bytes(target: Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    """One POST, head and body, ready for a single write."""
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"Content-Length: {len(body)}",
        "Accept-Encoding: identity",  # the body is logged as text: no compression
    ]
    for name, value in headers.items():
        if name.lower() in FRAMING:
            continue
        if any(c in name or c in value for c in "\r\n\x00") or ":" in name:
            raise ValueError(f"invalid header {name[:50]!r}")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode() + body


Done = Callable[[Any, Outcome], None]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; it carries one exchange at a time."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self.close()  # bytes nobody asked for: the connection is out of step
        else:
            self.exchange.received(data)

    def eof_received(self) -> bool:
        self.closed = True
        if self.exchange is not None:
            self.exchange.ended(reset=False)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.exchange.ended(reset=isinstance(exc, ConnectionError))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Exchange:
    """One attempt: its request, the connection carrying it, and the answer so far."""

    def __init__(
        self, owner: Transport, tag: Any, target: Target, request: bytes, done: Done
    ) -> None:
        self.owner = owner
        self.tag = tag
        self.target = target
        self.request = request
        self.done = done
        self.reader = ResponseReader()
        self.conn: _Connection | None = None
        self.started = time.perf_counter()
        self.finished = False
        loop = owner.loop
        self.timer = loop.call_at(loop.time() + owner.timeout, self.expire)

    def send_on(self, conn: _Connection) -> None:
        self.conn = conn
        conn.exchange = self
        assert conn.transport is not None
        conn.transport.write(self.request)

    def received(self, data: bytes) -> None:
        if self.reader.feed(data):
            self.finish()

    def ended(self, reset: bool) -> None:
        self.reader.eof(reset)
        self.finish()

    def expire(self) -> None:
        if self.finished:
            return
        if self.reader.status is not None:
            log.info("cut an answer from %s still arriving after the timeout", _origin(self))
        self.reader.cut()
        self.finish()

    def fail(self, error: str) -> None:
        if not self.finished:
            self.reader.error = error
            self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.timer.cancel()
        conn, self.conn = self.conn, None
        reader = self.reader
        if conn is not None:
            conn.exchange = None
            transport = conn.transport
            if (
                reader.reusable
                and not conn.closed
                and transport
                and not transport.get_write_buffer_size()
            ):
                self.owner.check_in(conn)
            else:
                conn.close()
        error = reader.error
        if error == "timed out":
            error = f"timed out after {self.owner.timeout:g} s"
        if reader.status is None:
            outcome = Outcome.failure(error or INVALID, _ms(self.started))
        else:
            headers = reader.headers
            outcome = Outcome(
                http_status=reader.status,
                headers={name: _text(value) for name, value in headers.items()},
                body=_text(reader.body.decode("utf-8", "replace")),
                error=error,
                duration_ms=_ms(self.started),
                retry_after=_retry_after(header(headers, "retry-after")),
            )
        self.done(self.tag, outcome)


def _origin(exchange: _Exchange) -> str:
    scheme, host, _ = exchange.target.key
    return f"{scheme}://{host}"


class _Loop:
    """The process's one event-loop thread, where every request is sent and read.

    A single thread moving bytes for hundreds of connections costs a fraction of the CPU
    of one blocking thread per request: those spend most of it handing the GIL around.
    """

    _lock = threading.Lock()
    _current: _Loop | None = None

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="herald-send", daemon=True
        )
        self.thread.start()

    @classmethod
    def get(cls) -> _Loop:
        with cls._lock:
            # After a fork the thread is gone: the child starts its own.
            if cls._current is None or cls._current.pid != os.getpid():
                cls._current = _Loop()
            return cls._current


class Transport:
    """Posts signed bodies over kept-alive connections, from the process's event-loop thread.

    ``start`` is for the drain (many at once, answers by callback); ``post`` blocks.
    """

    def __init__(self, timeout: float, pool_size: int = 16, allow: Sequence[Network] = ()) -> None:
        self.timeout = timeout
        self.pool_size = pool_size
        self.allow = tuple(allow)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._targets: dict[str, Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self._runner = _Loop.get()
        self.loop = self._runner.loop

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST once and wait; never raises for network trouble."""
        answer: Future[Outcome] = Future()
        self.start([(None, url, body, headers)], lambda _tag, outcome: answer.set_result(outcome))
        return answer.result()

    def start(self, batch: Sequence[tuple[Any, str, bytes, Mapping[str, str]]], done: Done) -> None:
        """Begin each (tag, url, body, headers) POST; ``done(tag, outcome)`` runs, in the
        event-loop thread, exactly once for each."""
        if self._runner.pid != os.getpid():
            self._runner, self._idle = _Loop.get(), {}
            self.loop = self._runner.loop
        self.loop.call_soon_threadsafe(self._begin_all, batch, done)

    def _begin_all(
        self, batch: Sequence[tuple[Any, str, bytes, Mapping[str, str]]], done: Done
    ) -> None:
        for tag, url, body, headers in batch:
            try:
                target = self._target(url)
            except ValueError as exc:
                done(tag, Outcome.failure(f"invalid URL: {str(exc)[:200]}"))
                continue
            try:
                request = request_bytes(target, body, headers)
            except ValueError as exc:
                done(tag, Outcome.failure(str(exc)))
                continue
            try:
                exchange = _Exchange(self, tag, target, request, done)
                conn = self._check_out(target.key)
                if conn is None:
                    self.connect(exchange)
                else:
                    exchange.send_on(conn)
            except Exception as exc:  # never lose an attempt to a bug: it is logged as failed
                log.exception("sending to %s failed", url)
                done(tag, Outcome.internal(exc))

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 10_000:
                self._targets.clear()
            target = self._targets[url] = _target(url)
        return target

    def _check_out(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and not _dropped(conn):
                return conn
            conn.close()
        return None

    def check_in(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) < self.pool_size:
            idle.append(conn)
        else:
            conn.close()

    def connect(self, exchange: _Exchange) -> None:
        self.loop.create_task(self._connect(exchange))

    async def _connect(self, exchange: _Exchange) -> None:
        try:
            conn = await self._open(exchange.target.key)
        except Exception as exc:
            exchange.fail(_describe(exc, self.timeout))
            return
        if exchange.finished:
            self.check_in(conn)  # the deadline passed while connecting; the next one can use it
        else:
            exchange.send_on(conn)

    async def _open(self, key: tuple[str, str, int]) -> _Connection:
        """A new connection to the very address that was checked, so DNS rebinding between
        the check and the connect cannot reach a private address."""
        scheme, host, port = key
        literal = _ip_literal(host)
        if literal is not None:
            if is_forbidden(literal, self.allow):
                raise RefusedAddress(f"refused: private address {literal}")
            addresses = [str(literal)]
        else:
            infos = await self.loop.run_in_executor(None, resolve_checked, host, port, self.allow)
            addresses = [str(info[4][0]) for info in infos]
        context = self._tls() if scheme == "https" else None
        error: Exception = OSError("no address")
        for address in dict.fromkeys(addresses):
            try:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: _Connection(key),
                        address,
                        port,
                        ssl=context,
                        server_hostname=host if context else None,
                    ),
                    min(self.timeout, 5.0),
                )
                return conn
            except (TimeoutError, ssl.SSLError, ssl.CertificateError):
                raise
            except OSError as exc:
                error = exc
        raise error

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl


def _dropped(conn: _Connection) -> bool:
    """Whether an idle connection has something to read: the receiver closed it (or sent
    bytes nobody asked for) and the loop has not seen it yet. A request is never sent twice,
    so a closed connection must be found before sending, not after."""
    sock = conn.transport.get_extra_info("socket") if conn.transport else None
    if sock is None:
        return True
    readable, _, _ = select.select([sock.fileno()], [], [], 0)
    return bool(readable)


def _ip_literal(host: str) -> IPAddress | None:
    """The address of a host written as a plain IP literal. Not ``literal_address``: odd
    spellings go through the resolver, as they always did, and come out checked."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _text(value: str) -> str:
    """A receiver's text as the database can keep it: PostgreSQL text cannot hold NUL."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
