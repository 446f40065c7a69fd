"""The response reader byte by byte: framing, limits, and every way an answer can go wrong."""

from __future__ import annotations

import pytest

from app.http1 import MAX_HEAD, RESPONSE_CAP, ResponseReader


def read(*pieces: bytes, eof: bool = False) -> ResponseReader:
    reader = ResponseReader()
    for piece in pieces:
        reader.feed(piece)
    if eof:
        reader.eof()
    return reader


def one_byte_at_a_time(data: bytes) -> ResponseReader:
    return read(*(data[i : i + 1] for i in range(len(data))))


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"


@pytest.mark.parametrize("feed", [read, one_byte_at_a_time])
def test_it_reads_a_length_framed_answer_and_keeps_the_connection(feed: object) -> None:
    reader = feed(OK)  # type: ignore[operator]
    assert (reader.done, reader.complete, reader.reusable) == (True, True, True)
    assert (reader.status, reader.body, reader.error) == (200, b"hello", None)
    assert reader.headers == {"Content-Length": "5", "X-A": "1"}


def test_it_decodes_chunks_with_extensions_and_trailers() -> None:
    data = (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    for reader in (read(data), one_byte_at_a_time(data)):
        assert (reader.status, reader.body, reader.complete, reader.reusable) == (
            202,
            b"hello world",
            True,
            True,
        )


def test_it_stops_at_the_cap_and_drops_the_connection() -> None:
    reader = read(b"HTTP/1.1 500 x\r\nContent-Length: 100000\r\n\r\n", b"y" * 10_000)
    assert reader.done
    assert not reader.complete
    assert not reader.reusable
    assert reader.body == b"y" * RESPONSE_CAP


def test_a_chunked_body_past_the_cap_also_stops() -> None:
    chunk = b"1000\r\n" + b"z" * 4096 + b"\r\n"
    reader = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk, chunk)
    assert reader.done
    assert not reader.complete
    assert len(reader.body) == RESPONSE_CAP


def test_an_answer_without_length_ends_with_the_connection() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\n\r\npart one, ", b"part two")
    assert not reader.done
    reader.eof()
    assert (reader.done, reader.complete, reader.reusable) == (True, True, False)
    assert reader.body == b"part one, part two"


@pytest.mark.parametrize(
    ("head", "reusable"),
    [
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n", True),
    ],
)
def test_it_keeps_only_connections_the_receiver_keeps(head: bytes, reusable: bool) -> None:
    reader = read(head)
    assert reader.done
    assert reader.complete
    assert reader.reusable is reusable


def test_it_skips_interim_answers() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\nLink: x\r\n\r\n" + OK)
    assert (reader.status, reader.body) == (200, b"hello")
    assert "Link" not in reader.headers


def test_it_accepts_bare_line_feeds_folded_and_repeated_fields() -> None:
    reader = read(b"HTTP/1.1 200 OK\nSet-Cookie: a\nset-cookie: b\nX-Long: one\n two\n\n", eof=True)
    assert reader.status == 200
    assert reader.headers == {"Set-Cookie": "a, b", "X-Long": "one two"}


@pytest.mark.parametrize(
    "data",
    [
        b"this is not HTTP at all\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",
    ],
)
def test_it_calls_a_malformed_head_invalid(data: bytes) -> None:
    reader = read(data)
    assert (reader.done, reader.status, reader.error) == (True, None, "invalid HTTP response")


def test_an_endless_status_line_is_invalid_after_the_head_limit_not_later() -> None:
    reader = ResponseReader()
    fed = 0
    while not reader.feed(b"x" * 65536):
        fed += 65536
    assert fed <= MAX_HEAD + 65536
    assert reader.error == "invalid HTTP response"


@pytest.mark.parametrize(
    ("pieces", "reset", "error"),
    [
        ((), False, "connection closed without a response"),
        ((), True, "connection reset by peer"),
        ((b"HTTP/1.1 20",), False, "invalid HTTP response"),
    ],
)
def test_it_names_an_answer_that_never_came(
    pieces: tuple[bytes, ...], reset: bool, error: str
) -> None:
    reader = read(*pieces)
    reader.eof(reset=reset)
    assert (reader.status, reader.error) == (None, error)


def test_a_body_cut_short_keeps_its_status_and_says_so() -> None:
    reader = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    reader.eof()
    assert (reader.status, reader.body, reader.complete) == (200, b"half", False)
    assert reader.error == "error reading response body: connection closed early"


def test_a_deadline_keeps_a_status_that_came_in_time() -> None:
    slow_body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
    slow_body.cut()
    assert (slow_body.status, slow_body.body, slow_body.error) == (200, b"ab", None)
    slow_head = read(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    slow_head.cut()
    assert (slow_head.status, slow_head.error) == (None, "timed out")


def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    reader = read(OK + b"HTTP/1.1 200 OK\r\n")
    assert reader.done
    assert not reader.reusable
