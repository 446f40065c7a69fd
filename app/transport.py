"""The one place HTTP leaves Herald: timeout, no redirects, a capped response read.

Imports nothing of Herald's so the private-address guard has a single place to live.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection, _ResponseOptions
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    SSLError,
)
from urllib3.util.connection import create_connection

RESPONSE_CAP = 4096
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


class Deadlines:
    """Cuts the socket of a request still running past its deadline.

    Socket timeouts bound each read, not the whole answer: a receiver trickling its headers
    a byte at a time would otherwise hold a sending thread for hours. One watcher thread
    per transport checks a few times a second.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._watched: dict[int, tuple[float, socket.socket]] = {}
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None

    def begin(self, deadline: float) -> None:
        """The calling thread's request must be over by ``deadline`` (time.monotonic())."""
        self._local.deadline = deadline

    def watch(self, sock: socket.socket) -> None:
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is None:
            return
        with self._lock:
            self._watched[threading.get_ident()] = (deadline, sock)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="herald-deadlines", daemon=True
                )
                self._thread.start()

    def cut(self) -> bool:
        """True if the calling thread's request has been cut by its deadline."""
        with self._lock:
            return threading.get_ident() in self._fired

    def end(self) -> bool:
        """Stop watching the calling thread's request; True if its deadline cut it."""
        self._local.deadline = None
        key = threading.get_ident()
        with self._lock:
            self._watched.pop(key, None)
            fired = key in self._fired
            self._fired.discard(key)
        return fired

    def _run(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                late = [(k, s) for k, (d, s) in self._watched.items() if d < now]
                for key, _ in late:
                    del self._watched[key]
                    self._fired.add(key)
            for _, sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _guarded_connection(base: type[HTTPConnection]) -> type[HTTPConnection]:
    class Guarded(base):  # type: ignore[valid-type,misc]
        allow: Sequence[Network] = ()
        deadlines: Deadlines | None = None

        def request(
            self,
            method: str,
            url: str,
            body: Any = None,
            headers: Mapping[str, str] | None = None,
            **options: Any,
        ) -> None:
            if not isinstance(body, bytes) or options.get("chunked"):
                super().request(method, url, body, headers, **options)
                return
            # urllib3 sends the head and the body with two syscalls; one is enough (and on
            # loopback each send also runs the receiving side of the kernel's network stack).
            if self.sock is not None:
                self.sock.settimeout(self.timeout)
            self._response_options = _ResponseOptions(
                request_method=method,
                request_url=url,
                preload_content=options.get("preload_content", True),
                decode_content=options.get("decode_content", True),
                enforce_content_length=options.get("enforce_content_length", True),
            )
            names = {name.lower() for name in headers or {}}
            self.putrequest(
                method,
                url,
                skip_accept_encoding="accept-encoding" in names,
                skip_host="host" in names,
            )
            if "content-length" not in names:
                self.putheader("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.putheader(name, value)
            self.endheaders(message_body=body)

        def _send_output(self, message_body: Any = None, encode_chunked: bool = False) -> None:
            if not isinstance(message_body, bytes) or encode_chunked:
                super()._send_output(message_body, encode_chunked)
                return
            self._buffer.extend((b"", b""))
            head = b"\r\n".join(self._buffer)
            del self._buffer[:]
            self.send(head + message_body)

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            # From here on the receiver controls the pace: watch the whole answer.
            if self.deadlines is not None and self.sock is not None:
                self.deadlines.watch(self.sock)
            response = super().getresponse(*args, **kwargs)
            if self.deadlines is not None and self.deadlines.cut():
                # Cut mid-headers: what was read is not an answer (urllib3 makes this a
                # read timeout).
                raise TimeoutError("the answer did not arrive within the timeout")
            return response

        def _new_conn(self) -> socket.socket:
            # Connect to the very address that was checked, so DNS rebinding between
            # the check and the connect cannot reach a private address.
            try:
                infos = resolve_checked(self._dns_host, self.port, self.allow)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            except RefusedAddress as exc:
                raise NewConnectionError(self, str(exc)) from exc
            error: OSError | None = None
            for info in infos:
                try:
                    return create_connection(
                        (info[4][0], self.port),
                        self.timeout,
                        source_address=self.source_address,
                        socket_options=self.socket_options,
                    )
                except TimeoutError as exc:
                    raise ConnectTimeoutError(self, f"timed out connecting to {self.host}") from exc
                except OSError as exc:
                    error = exc
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

    return Guarded


def guarded_pool_manager(
    allow: Sequence[Network], deadlines: Deadlines | None, maxsize: int
) -> urllib3.PoolManager:
    """A urllib3 pool manager whose connections refuse forbidden addresses at connect time.

    urllib3 directly rather than requests: a third of the CPU per request (DESIGN.md).
    """
    http_conn = _guarded_connection(HTTPConnection)
    https_conn = _guarded_connection(HTTPSConnection)
    http_conn.allow = https_conn.allow = tuple(allow)  # type: ignore[attr-defined]
    http_conn.deadlines = https_conn.deadlines = deadlines  # type: ignore[attr-defined]
    manager = urllib3.PoolManager(num_pools=256, maxsize=maxsize, block=False, retries=False)
    manager.pool_classes_by_scheme = {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }
    return manager


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


def _describe(exc: Exception, timeout: float) -> str:
    """A short, stable error text for an attempt that got no response."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, NewConnectionError):  # before timeouts: urllib3 derives it from them
        if "refused: private address" in lowered:
            return "refused: private address"
        if isinstance(exc, NameResolutionError) or "name or service not known" in lowered:
            return "DNS lookup failed"
        if "refused" in lowered:
            return "connection refused"
        return f"connection error: {text[:200]}"
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, SSLError):
        return f"TLS error: {text[:200]}"
    if isinstance(exc, LocationValueError):
        return f"invalid URL: {text[:200]}"
    if isinstance(exc, HTTPError | OSError):
        # Checked before "reset": these come wrapped in "Connection aborted."
        if any(
            sign in lowered
            for sign in ("badstatusline", "invalid http", "linetoolong", "got more than")
        ):
            return "invalid HTTP response"
        if "remotedisconnected" in lowered:
            return "connection closed without a response"
        if "reset" in lowered or "aborted" in lowered:
            return "connection reset by peer"
        return f"connection error: {text[:200]}"
    return f"{type(exc).__name__}: {text[:200]}"


class Transport:
    """Posts signed bodies over one shared pool of keep-alive connections per host."""

    def __init__(self, timeout: float, pool_size: int = 16, allow: Sequence[Network] = ()) -> None:
        self.timeout = timeout
        self._deadlines = Deadlines()
        self._pool = guarded_pool_manager(tuple(allow), self._deadlines, pool_size)
        self._timeouts = urllib3.Timeout(connect=min(timeout, 5.0), read=timeout)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """POST once; never raises for network trouble, never reads past RESPONSE_CAP."""
        started = time.perf_counter()
        # The whole attempt, answer included, gets the timeout (and a little slack so the
        # socket's own timeout usually speaks first).
        self._deadlines.begin(time.monotonic() + self.timeout + 0.5)
        try:
            return self._post(url, body, headers, started)
        finally:
            if self._deadlines.end():
                log.info("cut an answer from %s still arriving after the timeout", _origin(url))

    def _post(self, url: str, body: bytes, headers: dict[str, str], started: float) -> Outcome:
        try:
            response = self._pool.request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=self._timeouts,
                redirect=False,
                retries=False,
                preload_content=False,
            )
        except (HTTPError, ValueError, OSError) as exc:
            failure = _describe(exc, self.timeout)
            if self._deadlines.end():
                failure = f"timed out after {self.timeout:g} s"
            return Outcome(None, None, None, failure, _ms(started))
        error: str | None = None
        try:
            raw, complete = self._read_capped(response, started + self.timeout)
        except Exception as exc:  # a lying or truncated body still yields its status
            raw, complete = b"", False
            error = f"error reading response body: {type(exc).__name__}"
        finally:
            duration = _ms(started)
        if not complete:
            response.close()  # drop the connection rather than drain a huge body
        response.release_conn()
        return Outcome(
            http_status=response.status,
            headers={name: _text(value) for name, value in response.headers.items()},
            body=_text(raw[:RESPONSE_CAP].decode("utf-8", "replace")),
            error=error,
            duration_ms=duration,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )

    @staticmethod
    def _read_capped(response: urllib3.BaseHTTPResponse, deadline: float) -> tuple[bytes, bool]:
        """Up to RESPONSE_CAP bytes of the body, and whether that was all of it.

        Read in pieces against a deadline, so a receiver that trickles its body a byte at a
        time cannot hold a sending thread much past the timeout.
        """
        raw = b""
        while len(raw) <= RESPONSE_CAP:
            if time.perf_counter() > deadline:
                return raw, False
            piece = response.read1(RESPONSE_CAP + 1 - len(raw), decode_content=True)
            if not piece:
                return raw, True
            raw += piece
        return raw, False


def _text(value: str) -> str:
    """A receiver's text as the database can keep it: PostgreSQL text cannot hold NUL."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}"


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
