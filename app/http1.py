"""An HTTP/1.1 response reader that keeps only what Herald logs: status, headers, 4 KiB of body.

Pure (no sockets), so the event-loop sender (transport.py) can feed it whatever arrives and
every hostile answer can be tested byte by byte. It never buffers more than the head limit
plus one read, whatever the receiver sends.
"""

from __future__ import annotations

RESPONSE_CAP = 4096  # bytes of a response body kept for the attempt log
MAX_HEAD = 64 * 1024  # status line and headers, as http.client allows per line
MAX_HEADERS = 100
INVALID = "invalid HTTP response"

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class ResponseReader:
    """Feed it bytes; once ``done``, read ``status``, ``headers``, ``body`` and ``error``.

    ``complete`` says whether the whole body arrived (else the connection must be dropped
    rather than drained); ``reusable`` whether the connection may carry another request.
    """

    __slots__ = (
        "_body",
        "_buf",
        "_keep_alive",
        "_left",
        "_state",
        "complete",
        "done",
        "error",
        "headers",
        "reusable",
        "status",
    )

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.error: str | None = None
        self.done = False
        self.complete = False
        self.reusable = False
        self._state = _HEAD
        self._buf = bytearray()
        self._body = bytearray()
        self._left = 0
        self._keep_alive = False

    @property
    def body(self) -> bytes:
        return bytes(self._body[:RESPONSE_CAP])

    def feed(self, data: bytes) -> bool:
        """Take the next bytes from the connection; True once the answer is over."""
        if self.done:
            if data:  # bytes after the answer: the connection is out of step
                self.reusable = False
            return True
        self._buf += data
        while not self.done:
            before = len(self._buf), self._state
            if self._state == _HEAD:
                self._read_head()
            elif self._state == _LENGTH:
                self._read_length()
            elif self._state == _UNTIL_CLOSE:
                self._keep(len(self._buf))
            else:
                self._read_chunked()
            if (len(self._buf), self._state) == before:
                break  # waiting for more bytes
        return self.done

    def eof(self, reset: bool = False) -> None:
        """The receiver closed the connection (``reset``: with an RST)."""
        if self.done:
            self.reusable = False
            return
        if self._state == _UNTIL_CLOSE:
            self._finish(complete=True)
        elif self.status is None:
            if reset:
                self._fail("connection reset by peer")
            else:
                self._fail(INVALID if self._buf else "connection closed without a response")
        else:
            reason = "connection reset" if reset else "connection closed early"
            self.error = f"error reading response body: {reason}"
            self._finish(complete=False)

    def cut(self) -> None:
        """The deadline passed: an answer whose status came in time keeps what arrived."""
        if self.done:
            return
        if self.status is None:
            self._fail("timed out")
        else:
            self._finish(complete=False)

    def _fail(self, error: str) -> None:
        self.status, self.headers, self.error = None, {}, error
        self._finish(complete=False)

    def _finish(self, complete: bool) -> None:
        self.done, self.complete = True, complete
        self.reusable = complete and self._keep_alive and not self._buf
        self._buf = bytearray()

    def _read_head(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        size = 4
        bare = self._buf.find(b"\n\n")  # a sloppy server's bare line feeds
        if bare >= 0 and (end < 0 or bare < end):
            end, size = bare, 2
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                self._fail(INVALID)
            return
        if end > MAX_HEAD:
            self._fail(INVALID)
            return
        lines = bytes(self._buf[:end]).split(b"\n")
        del self._buf[: end + size]
        status, version = _status_line(lines[0].rstrip(b"\r"))
        headers = _headers(lines[1:]) if status else None
        if status is None or headers is None:
            self._fail(INVALID)
            return
        if 100 <= status < 200 and status != 101:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status, self.headers = status, headers
        connection = header(headers, "connection").lower()
        self._keep_alive = "keep-alive" in connection if version == 0 else "close" not in connection
        length = header(headers, "content-length")
        if "chunked" in header(headers, "transfer-encoding").lower():
            self._state = _CHUNK_SIZE
        elif status in (101, 204, 304) or (status < 200):
            self._finish(complete=True)
        elif length:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not all(v.isdigit() for v in values):
                self._fail(INVALID)
                return
            self._left = int(values.pop())
            self._state = _LENGTH
            if not self._left:
                self._finish(complete=True)
        else:
            self._keep_alive = False  # the body ends when the connection does
            self._state = _UNTIL_CLOSE

    def _read_length(self) -> None:
        if self._take_left():
            self._finish(complete=True)

    def _take_left(self) -> bool:
        """Keep up to the ``_left`` body bytes still owed; True once all of them came."""
        taken = min(self._left, len(self._buf))
        self._left -= taken
        self._keep(taken)
        return not self._left and not self.done

    def _keep(self, count: int) -> None:
        """Move ``count`` body bytes out of the buffer; past the cap the answer is over."""
        room = RESPONSE_CAP + 1 - len(self._body)
        if room > 0:
            self._body += self._buf[: min(count, room)]
        del self._buf[:count]
        if len(self._body) > RESPONSE_CAP:
            self._finish(complete=False)

    def _read_chunked(self) -> None:
        if self._state == _CHUNK_DATA:
            if self._take_left():
                self._state = _CHUNK_END
            return
        line_end = self._buf.find(b"\n")
        if line_end < 0:
            if len(self._buf) > MAX_HEAD:
                self._bad_body("invalid chunk")
            return
        line = bytes(self._buf[:line_end]).rstrip(b"\r")
        del self._buf[: line_end + 1]
        if self._state == _CHUNK_END:
            if line:
                self._bad_body("invalid chunk")
            else:
                self._state = _CHUNK_SIZE
        elif self._state == _CHUNK_SIZE:
            size = line.split(b";", 1)[0].strip()
            try:
                self._left = int(size, 16)
            except ValueError:
                self._bad_body("invalid chunk")
                return
            self._state = _CHUNK_DATA if self._left else _TRAILER
        elif not line:  # _TRAILER: the empty line ends the trailers and the answer
            self._finish(complete=True)

    def _bad_body(self, reason: str) -> None:
        self.error = f"error reading response body: {reason}"
        self._finish(complete=False)


def _status_line(line: bytes) -> tuple[int | None, int]:
    """(status, minor version) of ``HTTP/1.x NNN reason``; status None if it is not one."""
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None, 0
    code = parts[1]
    if len(code) != 3 or not code.isdigit() or code[:1] == b"0":
        return None, 0
    return int(code), int(parts[0][-1:])


def _headers(lines: list[bytes]) -> dict[str, str] | None:
    """Header fields, repeated ones joined with ", " (as urllib3 and requests show them)."""
    if len(lines) > MAX_HEADERS:
        return None
    fields: dict[str, str] = {}
    lowered: dict[str, str] = {}  # lower-case name -> the name as first seen
    last: str | None = None
    for raw in lines:
        line = raw.rstrip(b"\r").decode("latin-1")
        if line[:1] in (" ", "\t"):  # obsolete line folding continues the last field
            if last is not None:
                fields[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name:
            continue  # not a field; http.client skips these too
        seen = lowered.setdefault(name.lower(), name)
        value = value.strip()
        fields[seen] = f"{fields[seen]}, {value}" if seen in fields else value
        last = seen
    return fields


def header(headers: dict[str, str], name: str) -> str:
    """The value of field ``name`` (lower case), or ""."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""
