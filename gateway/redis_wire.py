"""The request path's Redis calls (the scripts that admit and settle requests) on one pipelined
connection of the gateway's own, speaking RESP directly.

Profiled under load, redis-py's asyncio client spent more CPU per call than the rest of a
request's Redis work together: a pool checkout and return, an `asyncio.timeout` and a
`wait_for` task per call, its retry and observability layers, a `readline` per reply element.
Here a call is a few bytes appended to a buffer and a future: the commands of one loop turn go
out in one write, replies come back in order on the same connection and resolve the futures in
turn, and one timer per connection (not one per call) fails every call still unanswered past its
deadline with redis-py's `TimeoutError` and drops the connection, so `SharedLink` and `fail_open`
see exactly the errors they saw from redis-py. A lost connection fails its calls with
redis-py's `ConnectionError`, and the next call opens a new one. Error replies raise redis-py's
own exception classes (`NoScriptError` for an unknown script, `ResponseError`...).

A Redis named by a URL goes this way (`RedisWire.for_pool`), over TLS too (`rediss://`: the same
context, built from the same settings as redis-py's, see gateway/redis_tls.py); unix sockets,
Sentinel and Cluster stay on redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

from redis._parsers.base import BaseParser
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = Any  # bytes, int, None, a list of replies, or a ResponseError
_MORE = object()  # the buffer does not hold a whole reply yet


def _field(arg: Any) -> str:
    if isinstance(arg, bytes):
        raise TypeError("bytes")
    text = str(arg)
    return f"${len(text)}\r\n{text}\r\n"


def pack(command: tuple[Any, ...]) -> bytes:
    """One command in RESP: an array of bulk strings. Formatted as text and encoded once, which costs
    half what formatting each part as bytes does; byte lengths equal text lengths only for ASCII."""
    try:
        text = "".join([f"${len(arg)}\r\n{arg}\r\n" if type(arg) is str else _field(arg) for arg in command])
    except TypeError:
        return _pack_bytes(command)
    if not text.isascii():
        return _pack_bytes(command)
    return f"*{len(command)}\r\n{text}".encode()


def _pack_bytes(command: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


def _error(line: bytes) -> ResponseError:
    error: ResponseError = BaseParser.parse_error(line.decode(errors="replace"))  # type: ignore[no-untyped-call]
    return error


def parse(buf: bytearray, pos: int) -> tuple[Reply, int]:
    """The reply starting at `pos` and where the next one starts; (_MORE, pos) if it is not all here."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _MORE, pos
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        size = int(buf[pos + 1:end])
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            return _MORE, pos
        return bytes(buf[end + 2:stop]), stop + 2
    if kind == 58:  # : integer
        return int(buf[pos + 1:end]), end + 2
    if kind == 42:  # * array
        count = int(buf[pos + 1:end])
        if count < 0:
            return None, end + 2
        items = []
        at = end + 2
        for _ in range(count):
            item, at = parse(buf, at)
            if item is _MORE:
                return _MORE, pos
            items.append(item)
        return items, at
    if kind == 43:  # + simple string
        return bytes(buf[pos + 1:end]), end + 2
    if kind == 45:  # - error
        return _error(bytes(buf[pos + 1:end])), end + 2
    raise RedisConnectionError(f"Protocol error: unexpected reply type {chr(kind)!r}")


class _Waiting:
    """A future for `count` replies in a row (one command, or a pipeline)."""

    __slots__ = ("future", "count", "replies", "deadline")

    def __init__(self, future: asyncio.Future[Any], count: int, deadline: float) -> None:
        self.future = future
        self.count = count
        self.replies: list[Reply] = []
        self.deadline = deadline


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[_Waiting] = deque()
        self.buffer = bytearray()
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def send(self, payload: bytes, count: int, timeout: float) -> asyncio.Future[Any]:
        loop = self.loop
        future = loop.create_future()
        deadline = loop.time() + timeout
        self.waiting.append(_Waiting(future, count, deadline))
        self.outgoing.append(payload)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self._flush)
        if self.timer is None:
            self.timer = loop.call_at(deadline, self._check)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.closed:
            self.transport.write(b"".join(outgoing))

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        waiting = self.waiting
        while waiting and pos < len(buffer):
            try:
                reply, pos_after = parse(buffer, pos)
            except (ValueError, RedisConnectionError) as exc:
                self._fail(RedisConnectionError(f"Protocol error: {exc}"))
                return
            if reply is _MORE:
                break
            pos = pos_after
            head = waiting[0]
            head.replies.append(reply)
            if len(head.replies) == head.count:
                waiting.popleft()
                if not head.future.done():
                    head.future.set_result(head.replies)
        del buffer[:pos]

    def _check(self) -> None:
        self.timer = None
        if not self.waiting:
            return
        now = self.loop.time()
        if any(w.deadline <= now for w in self.waiting):
            self._fail(RedisTimeoutError("Timeout reading from Redis"))
            return
        self.timer = self.loop.call_at(min(w.deadline for w in self.waiting), self._check)

    def _fail(self, exc: Exception) -> None:
        """Every call still waiting fails with `exc`, and the connection is dropped: its replies could no
        longer be matched to their calls."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        waiting, self.waiting = self.waiting, deque()
        for entry in waiting:
            if not entry.future.done():
                entry.future.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Connection closed by Redis: {exc}" if exc else
                                        "Connection closed by Redis"))


class RedisWire:
    """One connection to one Redis, opened on first use and again after it is lost."""

    def __init__(self, host: str, port: int, db: int = 0, username: str | None = None,
                 password: str | None = None, connect_timeout: float = 1.0, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.db = db
        self.username = username
        self.password = password
        self.connect_timeout = connect_timeout
        self.tls = tls
        self._connection: _Connection | None = None
        self._opening: asyncio.Task[_Connection] | None = None

    @classmethod
    def for_pool(cls, pool: Any, tls: ssl.SSLContext | None = None) -> RedisWire | None:
        """The wire to the Redis a redis-py pool connects to, over TLS with `tls` where the pool's is TLS;
        None where redis-py must stay (a unix socket, Sentinel, Cluster)."""
        connection_class = getattr(pool, "connection_class", None)
        if not isinstance(connection_class, type) or issubclass(connection_class, SentinelManagedConnection):
            # Sentinel's TLS class is an SSLConnection too, but its pool holds no master's address.
            return None
        secure = issubclass(connection_class, SSLConnection)
        if not (connection_class is Connection or (secure and tls is not None)):
            return None
        kwargs = pool.connection_kwargs
        return cls(kwargs.get("host", "localhost"), int(kwargs.get("port", 6379)), int(kwargs.get("db") or 0),
                   kwargs.get("username"), kwargs.get("password"), kwargs.get("socket_connect_timeout") or 1.0,
                   tls if secure else None)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(lambda: _Connection(loop), self.host, self.port,
                                                             ssl=self.tls)
                hello: list[tuple[Any, ...]] = []
                if self.password is not None:
                    hello.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
                if self.db:
                    hello.append(("SELECT", self.db))
                if hello:
                    try:
                        replies = await connection.send(b"".join(pack(c) for c in hello), len(hello),
                                                        self.connect_timeout)
                    except BaseException:
                        connection._fail(RedisConnectionError("Connection abandoned while opening"))
                        raise
                    failed = next((r for r in replies if isinstance(r, ResponseError)), None)
                    if failed is not None:
                        connection._fail(RedisConnectionError(str(failed)))
                        raise failed
        except TimeoutError as exc:
            raise RedisTimeoutError("Timeout connecting to Redis") from exc
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to {self.host}:{self.port}: {exc}") from exc
        self._connection = connection
        return connection

    async def _connected(self) -> _Connection:
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._opening)
        finally:
            if self._opening is not None and self._opening.done():
                self._opening = None

    def _send(self, payload: bytes, count: int, timeout: float) -> asyncio.Future[Any] | None:
        connection = self._connection
        if connection is None or connection.closed:
            return None
        return connection.send(payload, count, timeout)

    async def call(self, command: tuple[Any, ...], timeout: float) -> Reply:
        """One command's reply; an error reply is returned, not raised."""
        return (await self.pipeline([command], timeout))[0]

    async def pipeline(self, commands: list[tuple[Any, ...]], timeout: float) -> list[Reply]:
        """Each command's reply, in order, error replies among them; raises only if Redis could not be asked
        or did not answer in time."""
        payload = b"".join([pack(command) for command in commands])
        future = self._send(payload, len(commands), timeout)
        if future is None:
            await self._connected()
            future = self._send(payload, len(commands), timeout)
            if future is None:
                raise RedisConnectionError("Connection closed by Redis")
        replies: list[Reply] = await future
        return replies

    async def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._connection is not None and self._connection.transport is not None:
            self._connection.transport.close()
        self._connection = None
