"""A fast webhook receiver for the benchmark: ``python -m bench.receiver [--port 0]``.

It runs in its own process so it never competes with the measuring code for a GIL, and it
parses HTTP/1.1 by hand on asyncio streams: a threaded ``http.server`` tops out near the
rates being measured, which would make the receiver the thing measured.

Every POST gets ``204`` with ``Content-Length: 0`` on a kept-alive connection and is
recorded as (path, webhook-id) -> first arrival time (``time.time()``, comparable across
processes). Control routes on the same port:

- ``GET /stats``    counts: requests, unique, duplicates, first and last arrival
- ``GET /arrivals`` every ``"<path> <webhook-id>": arrival`` seen
- ``POST /reset``   forget everything
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time

NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.duplicates = 0
        self.first: float | None = None
        self.last: float | None = None
        self.arrivals: dict[str, float] = {}

    def hit(self, path: str, webhook_id: str) -> None:
        now = time.time()
        self.requests += 1
        if self.first is None:
            self.first = now
        self.last = now
        key = f"{path} {webhook_id}"
        if key in self.arrivals:
            self.duplicates += 1  # the same event sent twice to one webhook: a bug to report
        else:
            self.arrivals[key] = now

    def stats(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "unique": len(self.arrivals),
            "duplicates": self.duplicates,
            "first": self.first,
            "last": self.last,
        }


def _json_response(payload: object) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def serve_connection(
    recorder: Recorder, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            lines = head[:-4].split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                writer.write(BAD_REQUEST)
                return
            method, target = parts[0], parts[1].decode("latin-1")
            length = 0
            webhook_id = ""
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"webhook-id":
                    webhook_id = value.strip().decode("latin-1")
            if length:
                await reader.readexactly(length)
            if method == b"POST" and target != "/reset":
                recorder.hit(target, webhook_id)
                writer.write(NO_CONTENT)
            elif target == "/stats":
                writer.write(_json_response(recorder.stats()))
            elif target == "/arrivals":
                writer.write(_json_response(recorder.arrivals))
            elif target == "/reset":
                recorder.reset()
                writer.write(NO_CONTENT)
            else:
                writer.write(NO_CONTENT)
            # Only wait on the socket when its buffer is filling: keeps the hot path lean.
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    except asyncio.CancelledError:
        return  # shutting down with the connection still open: nothing to report
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main(host: str, port: int) -> None:
    recorder = Recorder()
    server = await asyncio.start_server(
        lambda r, w: serve_connection(recorder, r, w), host, port, backlog=1024
    )
    bound = server.sockets[0].getsockname()[1]
    print(f"listening {bound}", flush=True)  # the parent reads the port from this line
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
    sys.exit(0)
