"""The upstream half of the hot path: a small HTTP/1.1 client on asyncio, parsed by httptools.

aiohttp's ClientSession does much per request that a proxy talking to a few known upstreams
does not need (URL objects, cookies, tracing, a timer per read, a payload registry). Measured
in a bare pass-through, it cost as much CPU as the whole server side. Here a request is one
write of bytes mostly built at start, and the answer is parsed in C (llhttp, via httptools).

Connections are kept alive per Pool, newest first, and dropped once idle for `keepalive`
seconds; a pool with a `limit` never has more than that many in use. Timeouts are one watchdog
per answer rather than a timer per read: a deadline for the whole answer, and for streams a
longest wait between bytes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httptools
from aiohttp import ClientTimeout

from gateway import __version__

CONTENT_LENGTH = b"Content-Length: "
MAX_STARTS = 256
PAUSE_AT = 1 << 20  # bytes of a stream buffered for a slow client before reading from upstream stops


class UpstreamUnreachable(Exception):
    """No connection, or it broke before the answer was whole."""


class CertificateUnverified(UpstreamUnreachable):
    def __init__(self, certificate_error: str) -> None:
        super().__init__(f"TLS certificate not verified: {certificate_error}")
        self.certificate_error = certificate_error


class Endpoint:
    """Where one deployment's requests go, and the bytes that are the same in each of them."""

    __slots__ = ("host", "port", "tls", "server_hostname", "key", "_path", "_head", "_starts", "_untyped")

    def __init__(self, base_url: str, headers: dict[str, str], verify: bool | str) -> None:
        parts = urlsplit(base_url)
        secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if secure else 80)
        self.tls: ssl.SSLContext | None = _tls_context(verify) if secure else None
        self.server_hostname = self.host if secure else None
        self.key = (self.host, self.port, self.tls)
        self._path = parts.path.rstrip("/")
        host = parts.netloc.rpartition("@")[2]
        fixed = {"Host": host, "User-Agent": f"llm-gateway/{__version__}", "Accept": "*/*", **headers}
        self._head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()).encode("latin-1")
        self._untyped = "".join(f"{name}: {value}\r\n" for name, value in fixed.items()
                                if name.lower() != "content-type").encode("latin-1")
        self._starts: dict[str, bytes] = {}

    def streamed_head(self, endpoint: str, content_type: str, length: int | None, headers: bytes = b"") -> bytes:
        """The head of a request whose body follows as it arrives: the caller's Content-Type (a multipart
        boundary), its length when known, else chunked; `headers` as for `request`."""
        framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        return (f"POST {self._path}/{endpoint} HTTP/1.1\r\n".encode("latin-1") + self._untyped + headers
                + f"Content-Type: {content_type}\r\n{framing}\r\n\r\n".encode("latin-1"))

    def request(self, endpoint: str, body: bytes, headers: bytes = b"") -> bytes:
        """The request's bytes; `headers`: header lines of this request's own (each ending in CRLF)."""
        start = self._starts.get(endpoint)
        if start is None:
            start = (f"POST {self._path}/{endpoint} HTTP/1.1\r\n".encode("latin-1") + self._head
                     + CONTENT_LENGTH)
            if len(self._starts) < MAX_STARTS:  # a wildcard's paths name any model a client asks for
                self._starts[endpoint] = start
        if headers:
            return b"%b%b%b%d\r\n\r\n%b" % (start[:-len(CONTENT_LENGTH)], headers, CONTENT_LENGTH, len(body), body)
        return b"%b%d\r\n\r\n%b" % (start, len(body), body)

    def bodiless(self, method: str, path: str, headers: bytes = b"") -> bytes:
        """A request without a body (GET, DELETE) to `path` (with its query) under the base URL; not cached,
        as the path names one object. `headers` as for `request`."""
        return (f"{method} {self._path}/{path} HTTP/1.1\r\n".encode("latin-1") + self._head + headers
                + CONTENT_LENGTH + b"0\r\n\r\n")


_TLS_CONTEXTS: dict[bool | str, ssl.SSLContext] = {}


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    """One per setting, so that deployments on one host with the same setting share connections."""
    context = _TLS_CONTEXTS.get(verify)
    if context is None:
        if isinstance(verify, str):
            context = ssl.create_default_context(cafile=verify)
        else:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        context = _TLS_CONTEXTS[verify] = context
    return context


class Pool:
    """Kept-alive connections to the endpoints of one or more deployments."""

    __slots__ = ("keepalive", "_idle", "_slots", "_open", "_closed", "_sweep")

    def __init__(self, limit: int | None, keepalive: float) -> None:
        self.keepalive = keepalive
        self._idle: dict[tuple[Any, ...], list[Connection]] = {}
        self._slots = asyncio.Semaphore(limit) if limit else None
        self._open: set[Connection] = set()
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None

    def post(self, endpoint: Endpoint, path: str, body: bytes, timeout: ClientTimeout,
             headers: bytes = b"") -> Coroutine[Any, Any, Response]:
        """Send one POST; the answer once its headers are in. Raises UpstreamUnreachable or TimeoutError.
        Not a coroutine itself: the hot path awaits `send`'s frame only."""
        return self.send(endpoint, endpoint.request(path, body, headers), timeout)

    async def send(self, endpoint: Endpoint, data: bytes, timeout: ClientTimeout) -> Response:
        """Send one request's bytes (Endpoint.request's, or Endpoint.bodiless's)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = now + timeout.total if timeout.total else None
        waiting = timeout.connect or timeout.total
        await self._slot(waiting)
        connection = self._take(endpoint.key, now)
        if connection is not None:
            try:
                return await self._exchange(connection, data, deadline, timeout.sock_read)
            except UpstreamUnreachable:
                if connection.answered:
                    raise
            # The upstream closed a kept-alive connection as this request went out: it never saw
            # the request, so it goes again on a new connection. The failed try gave its slot back.
            await self._slot(waiting)
        try:
            connection = await self._connect(endpoint, min(timeout.sock_connect or 30.0, waiting or 30.0))
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        return await self._exchange(connection, data, deadline, timeout.sock_read)

    async def post_streamed(self, endpoint: Endpoint, path: str, content_type: str, body: AsyncGenerator[bytes, None],
                            length: int | None, timeout: ClientTimeout, headers: bytes = b"") -> Response:
        """Send a request whose body is relayed as `body` yields it (an upload: never buffered whole),
        on a new connection (a kept-alive one found closed could not be sent again). Stops sending
        when the upstream answers first (a 4xx as it reads the head, say). Whatever stops it (the body
        raising, the caller cancelled), the connection is closed and the slot given back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total if timeout.total else None
        waiting = timeout.connect or timeout.total
        await self._slot(waiting)
        try:
            connection = await self._connect(endpoint, min(timeout.sock_connect or 30.0, waiting or 30.0))
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        response = connection.send(endpoint.streamed_head(path, content_type, length, headers), deadline, None)
        chunked = length is None
        connection.unfinished = True  # until the body is sent whole: an answer that comes first ends the connection
        try:
            async for chunk in body:
                if response.status or response._error is not None or connection.closed:
                    break  # answered, failed or hung up before the body was whole: the rest is not wanted
                if chunk:
                    connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    await connection.drain()
            else:
                if chunked:
                    connection.write(b"0\r\n\r\n")
                connection.unfinished = False
            await response.headers_in()
        except BaseException:
            response.release()
            connection.close()
            raise
        finally:
            await body.aclose()
        return response

    async def _slot(self, waiting: float | None) -> None:
        slots = self._slots
        if slots is None:
            return
        if slots.locked():
            async with asyncio.timeout(waiting):
                await slots.acquire()
        else:
            await slots.acquire()  # returns at once

    @staticmethod
    async def _exchange(connection: Connection, data: bytes, deadline: float | None,
                        between: float | None) -> Response:
        response = connection.send(data, deadline, between)  # the connection holds the slot from here
        try:
            await response.headers_in()
        except BaseException:
            response.release()
            raise
        return response

    def _take(self, key: tuple[Any, ...], now: float) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if (not connection.closed and now - connection.idle_since < self.keepalive
                    and connection.transport is not None and not connection.transport.is_closing()):
                return connection
            connection.close()
        return None

    async def _connect(self, endpoint: Endpoint, seconds: float) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: Connection(self, endpoint.key), endpoint.host, endpoint.port, ssl=endpoint.tls,
                    server_hostname=endpoint.server_hostname)
        except ssl.SSLCertVerificationError as exc:
            raise CertificateUnverified(exc.verify_message or str(exc)) from None
        except TimeoutError:
            raise
        except OSError as exc:
            raise UpstreamUnreachable(f"cannot connect to {endpoint.host}:{endpoint.port}: "
                                      f"{exc.strerror or type(exc).__name__}") from None
        self._open.add(connection)
        return connection

    def _done_with(self, connection: Connection, reusable: bool) -> None:
        """A connection's answer is whole (or abandoned): keep it for the next request, or close it."""
        if connection.holds_slot:
            connection.holds_slot = False
            if self._slots is not None:
                self._slots.release()
        if reusable and not self._closed and not connection.closed:
            loop = asyncio.get_running_loop()
            connection.idle_since = loop.time()
            self._idle.setdefault(connection.key, []).append(connection)
            if self._sweep is None:
                self._sweep = loop.call_later(self.keepalive, self._close_expired)
        else:
            connection.close()

    def _close_expired(self) -> None:
        """Idle connections past `keepalive` are closed, not left open until the upstream gives up."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        left = 0
        for idle in self._idle.values():
            fresh = [c for c in idle if not c.closed and now - c.idle_since < self.keepalive]
            for connection in idle:
                if connection not in fresh:
                    connection.close()
            idle[:] = fresh
            left += len(fresh)
        if left and not self._closed:
            self._sweep = asyncio.get_running_loop().call_later(self.keepalive, self._close_expired)

    def retire(self) -> None:
        """No new connection is kept: idle ones close now, those in use once their answer ends."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def _lost(self, connection: Connection) -> None:
        self._open.discard(connection)

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for connection in list(self._open):
            connection.close()
        self._idle.clear()
        await asyncio.sleep(0)


class Connection(asyncio.Protocol):
    """One kept-alive connection; it carries one request and its answer at a time."""

    __slots__ = ("pool", "key", "transport", "parser", "response", "closed", "idle_since", "holds_slot",
                 "answered", "_framed", "_timer", "_deadline", "_between", "_last", "_loop", "_drained",
                 "unfinished")

    def __init__(self, pool: Pool, key: tuple[Any, ...]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.holds_slot = False
        self.answered = False
        self._framed = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._between: float | None = None
        self._last = 0.0
        self._loop = asyncio.get_running_loop()
        self._drained: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self.unfinished = False  # its request's body was cut short: not kept for another request

    def write(self, data: bytes) -> None:
        """A request's body, after send(); nothing once the upstream has closed (its answer, or the lack
        of one, says why)."""
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is above its high-water mark (the upstream reads slower)."""
        if self._drained is not None:
            await self._drained

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def send(self, data: bytes, deadline: float | None, between: float | None) -> Response:
        response = self.response = Response(self)
        self.holds_slot = self.pool._slots is not None
        self.answered = False
        self._framed = False
        self._deadline, self._between = deadline, between
        if deadline is not None or between is not None:
            self._last = self._loop.time()
            self._arm()
        assert self.transport is not None
        self.transport.write(data)
        return response

    def _arm(self) -> None:
        due = self._deadline
        if self._between is not None:
            idle_due = self._last + self._between
            due = idle_due if due is None or idle_due < due else due
        self._timer = self._loop.call_at(due, self._check)  # type: ignore[arg-type]

    def _check(self) -> None:
        self._timer = None
        now = self._loop.time()
        if (self._deadline is not None and now >= self._deadline) or (
                self._between is not None and now - self._last >= self._between):
            self._fail(TimeoutError())  # which closes the connection
        elif self.response is not None:
            self._arm()

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # an idle connection is not spoken to (a 408 as it closes, say)
            self.close()
            return
        self.answered = True
        if self._between is not None:
            self._last = self._loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamUnreachable(f"malformed HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._lost(self)
        self.resume_writing()
        response = self.response
        if response is None:
            return
        if response.status and not self._framed:
            self.on_message_complete()  # no length and not chunked: the answer ends with the connection
        else:
            self._fail(UpstreamUnreachable("the upstream closed the connection"
                                           + (" before answering" if not response.status else " mid-answer")))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.raw_headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        response.status = self.parser.get_status_code()
        response._wake()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        response = self.response
        if response is None:
            return
        self._disarm()
        self.response = None
        reusable = self.parser.should_keep_alive() and self._framed and not self.unfinished
        response._finish()
        self.pool._done_with(self, reusable)

    def _fail(self, error: BaseException) -> None:
        response = self.response
        if response is None:
            return
        self._disarm()
        self.response = None
        response._fail(error)
        self.pool._done_with(self, False)

    def abandon(self) -> None:
        """The caller stopped reading: the upstream is told at once, by closing."""
        if self.response is not None:
            self._fail(UpstreamUnreachable("abandoned"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An upstream's answer: status and headers first, then the body whole or chunk by chunk."""

    __slots__ = ("status", "raw_headers", "_connection", "_chunks", "_buffered", "_complete",
                 "_error", "_waiter", "_paused", "_whole")

    def __init__(self, connection: Connection) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self._connection = connection
        self._chunks: list[bytes] = []  # not a deque: every open stream holds one, and an empty deque is 600 B
        self._buffered = 0
        self._complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._whole = False

    def header(self, lower_name: bytes) -> str | None:
        """The first value of one header, by its name in lower case."""
        for name, value in self.raw_headers:
            if name.lower() == lower_name:
                return value.decode("latin-1")
        return None

    @property
    def content_type(self) -> str:
        value = self.header(b"content-type")
        return value.partition(";")[0].strip().lower() if value else "application/octet-stream"

    async def headers_in(self) -> None:
        while not self.status:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        self._whole = True
        if self._paused:
            self._resume()
        while not self._complete:
            if self._error is not None:
                raise self._error
            await self._wait()
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        """What has arrived, as soon as it has: pieces that came in together are passed on together,
        so that a burst of events costs the client's socket one write."""
        chunks = self._chunks
        while True:
            if chunks:
                chunk = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused:
                    self._resume()
                yield chunk
                continue
            if self._complete:
                return
            if self._error is not None:
                raise self._error
            await self._wait()

    def release(self) -> None:
        """Done with it: an answer not read to the end closes its connection."""
        if not self._complete and self._error is None:
            self._connection.abandon()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > PAUSE_AT and not self._paused and not self._whole:
            self._paused = True
            transport = self._connection.transport
            if transport is not None:
                transport.pause_reading()
        self._wake()

    def _resume(self) -> None:
        self._paused = False
        transport = self._connection.transport
        if transport is not None and not transport.is_closing():
            transport.resume_reading()

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()
