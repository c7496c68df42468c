"""The held-streams load generator: N streams open at once, each event's delay measured.

    python -m benchmarks.held_client --url http://127.0.0.1:P --streams N [--api-key K]

One process, one uvloop, raw asyncio protocols parsed by httptools: an open
stream costs a socket, a parser and a few small objects, so a single process
holds thousands. It opens the streams (at most --opening connects in flight),
then prints one JSON line per event on stdout:

- `{"open": n}` once every stream has its response headers;
- on a line `mark` on stdin: `{"events": e, "open": n}` (events so far, streams
  still open); delays are recorded only between the first and second mark;
- at the end: `{"done": ..., "delays_ms": [p50, p99], ...}`.

Each event carries `"sent_at"` (time.monotonic() in the upstream, one clock for
every process on the machine); its delay is arrival minus that.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from array import array
from urllib.parse import urlsplit

import httptools
import orjson

from benchmarks.eventloop import run
from benchmarks.workloads import HELD_CHAT_MODEL, MESSAGES

STAMP = re.compile(rb'"sent_at":(\d+\.\d+)')
EVENT_END = b"\n\n"
QUANTILES = 1000


class Tally:
    """What all streams of this process saw."""

    __slots__ = ("events", "open", "opened", "failed", "first_error", "recording", "delays", "all_open")

    def __init__(self) -> None:
        self.events = 0
        self.open = 0
        self.opened = 0
        self.failed = 0
        self.first_error: str | None = None
        self.recording = False
        self.delays = array("d")
        self.all_open: asyncio.Future[None] | None = None


class HeldStream(asyncio.Protocol):
    __slots__ = ("tally", "parser", "pending", "headers", "finished", "status", "transport")

    def __init__(self, tally: Tally, headers: asyncio.Future[bool], finished: asyncio.Future[None]) -> None:
        self.tally = tally
        self.parser = httptools.HttpResponseParser(self)
        self.pending = b""
        self.headers = headers
        self.finished = finished
        self.status = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(f"bad HTTP: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._end("connection closed before the end of the stream")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status != 200:
            self._end(f"HTTP {self.status}")
            return
        if not self.headers.done():
            self.headers.set_result(True)

    def on_body(self, body: bytes) -> None:
        data = self.pending + body if self.pending else body
        cut = data.rfind(EVENT_END)
        if cut < 0:
            self.pending = data
            return
        self.pending = data[cut + 2:]
        stamps = STAMP.findall(data, 0, cut)
        if not stamps:
            return
        tally = self.tally
        tally.events += len(stamps)
        if tally.recording:
            now = time.monotonic()
            tally.delays.extend((now - float(s)) * 1000 for s in stamps)

    def on_message_complete(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        if self.transport is not None:
            self.transport.close()

    def _end(self, error: str) -> None:
        if not self.headers.done():
            self.headers.set_result(False)
        if not self.finished.done():
            self.tally.failed += 1
            if self.tally.first_error is None:
                self.tally.first_error = error
            self.finished.set_result(None)
        if self.transport is not None:
            self.transport.close()


def _request(url: str, api_key: str) -> bytes:
    parts = urlsplit(url)
    body = orjson.dumps({"model": HELD_CHAT_MODEL, "messages": MESSAGES, "stream": True})
    return (
        f"POST {parts.path.rstrip('/')}/v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _one(host: str, port: int, request: bytes, tally: Tally, opening: asyncio.Semaphore, total: int) -> None:
    loop = asyncio.get_running_loop()
    headers: asyncio.Future[bool] = loop.create_future()
    finished: asyncio.Future[None] = loop.create_future()
    async with opening:
        try:
            transport, _ = await loop.create_connection(lambda: HeldStream(tally, headers, finished), host, port)
        except OSError as exc:
            tally.failed += 1
            tally.first_error = tally.first_error or f"connect: {exc}"
            tally.opened += 1
            _check_open(tally, total)
            return
        transport.write(request)
        ok = await headers
    tally.opened += 1
    if ok:
        tally.open += 1
    _check_open(tally, total)
    await finished
    if ok:
        tally.open -= 1


def _check_open(tally: Tally, total: int) -> None:
    if tally.opened == total and tally.all_open is not None and not tally.all_open.done():
        tally.all_open.set_result(None)


def _say(obj: object) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.flush()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


async def _marks(tally: Tally) -> None:
    """`mark` lines on stdin start and stop recording delays; each is answered with the counts."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    marks = 0
    while line := await reader.readline():
        if line.strip() != b"mark":
            continue
        marks += 1
        tally.recording = marks == 1
        _say({"events": tally.events, "open": tally.open})


async def hold(url: str, streams: int, api_key: str, opening: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tally = Tally()
    tally.all_open = asyncio.get_running_loop().create_future()
    request = _request(url, api_key)
    gate = asyncio.Semaphore(opening)
    started = time.monotonic()
    marks = asyncio.ensure_future(_marks(tally))
    tasks = [asyncio.ensure_future(_one(host, port, request, tally, gate, streams)) for _ in range(streams)]
    await tally.all_open
    _say({"open": tally.open, "ramp_s": round(time.monotonic() - started, 3)})
    await asyncio.gather(*tasks)
    marks.cancel()
    delays = sorted(tally.delays)
    _say({
        "done": True,
        "events": tally.events,
        "failed": tally.failed,
        "first_error": tally.first_error,
        "recorded": len(delays),
        "delays_ms": [_percentile(delays, 0.5), _percentile(delays, 0.99)],
        # for merging with other processes' delays
        "quantiles": [_percentile(delays, i / QUANTILES) for i in range(QUANTILES)] if delays else [],
        "seconds": round(time.monotonic() - started, 3),
    })


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one; the new limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--opening", type=int, default=200, help="connects awaiting their headers at once")
    args = parser.parse_args(argv)
    raise_fd_limit()
    run(hold(args.url, max(1, args.streams), args.api_key, max(1, args.opening)))


if __name__ == "__main__":
    main()
