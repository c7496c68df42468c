"""The gateway's own upstream client, against raw sockets that misbehave the way real servers do."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest

from tests.harness import Gateway, deployment

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
ANSWER = orjson.dumps({"id": "chatcmpl-raw", "object": "chat.completion", "model": "raw",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "raw"},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
KEPT = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(ANSWER), ANSWER)
CHAT = {"model": "raw", "messages": [{"role": "user", "content": "hi"}]}


class RawUpstream:
    """A TCP server that runs `script(reader, writer, connection_number)` for each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return head + await reader.readexactly(length)


Starter = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_for() -> AsyncIterator[Starter]:
    started: list[Gateway] = []

    async def start(upstream: RawUpstream, **gateway_settings: object) -> Gateway:
        gw = Gateway({"model_list": [deployment("raw", upstream.base_url)],
                      "router_settings": {"num_retries": 0}, "gateway_settings": gateway_settings})
        started.append(gw)
        await asyncio.to_thread(gw.start)
        return gw

    yield start
    for gw in started:
        await asyncio.to_thread(gw.stop)


async def chat(http: aiohttp.ClientSession, gw: Gateway, **extra: object) -> tuple[int, dict[str, object]]:
    async with http.post(f"{gw.url}/v1/chat/completions", json={**CHAT, **extra}) as response:
        return response.status, await response.json()


async def test_requests_reuse_one_connection_and_send_it_in_one_piece(gateway_for: Starter,
                                                                      http: aiohttp.ClientSession) -> None:
    requests: list[bytes] = []

    async def answer_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            requests.append(await read_request(reader))
            writer.write(KEPT)
            await writer.drain()

    async with RawUpstream(answer_each) as upstream:
        gw = await gateway_for(upstream)
        for _ in range(5):
            status, body = await chat(http, gw)
            assert status == 200 and body["choices"][0]["message"]["content"] == "raw"  # type: ignore[index]
        assert upstream.connections == 1 and len(requests) == 5
        head, _, sent = requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
        names = {line.split(b":")[0].lower() for line in lines[1:]}
        assert {b"host", b"authorization", b"content-type", b"content-length", b"user-agent"} <= names
        assert orjson.loads(sent) == {**CHAT, "model": "raw-upstream"}


async def test_a_kept_alive_connection_the_upstream_drops_is_retried_on_a_new_one(gateway_for: Starter,
                                                                                  http: aiohttp.ClientSession) -> None:
    """Keep-alive race: the upstream closes an idle connection as the next request goes out on it. The
    request never reached it, so it is sent again on a new connection rather than failed."""

    async def one_answer_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(KEPT)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the second request arrives, and is not answered

    async with RawUpstream(one_answer_then_drop) as upstream:
        gw = await gateway_for(upstream)
        for _ in range(3):
            status, body = await chat(http, gw)
            assert status == 200, body
        assert upstream.connections == 3


async def test_an_upstream_that_closes_without_answering_a_new_connection_is_502(gateway_for: Starter,
                                                                                 http: aiohttp.ClientSession) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with RawUpstream(never_answer) as upstream:
        gw = await gateway_for(upstream)
        status, body = await chat(http, gw)
        assert status == 502, body
        assert body["error"]["type"] == "api_connection_error"  # type: ignore[index]
        assert "closed the connection before answering" in body["error"]["message"]  # type: ignore[index]
        assert upstream.connections == 1  # a fresh connection is not tried twice


async def test_an_answer_that_ends_with_the_connection(gateway_for: Starter, http: aiohttp.ClientSession) -> None:
    async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + ANSWER)
        await writer.drain()

    async with RawUpstream(http10) as upstream:
        gw = await gateway_for(upstream)
        for _ in range(2):
            status, body = await chat(http, gw)
            assert status == 200 and body["id"] == "chatcmpl-raw", body
        assert upstream.connections == 2  # such a connection cannot carry another request


async def test_a_malformed_answer_is_502(gateway_for: Starter, http: aiohttp.ClientSession) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"SPDY/9 what\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with RawUpstream(garbage) as upstream:
        gw = await gateway_for(upstream)
        status, body = await chat(http, gw)
        assert status == 502 and "malformed HTTP answer" in body["error"]["message"], body  # type: ignore[index]


async def test_an_idle_connection_the_upstream_speaks_on_is_not_reused(gateway_for: Starter,
                                                                       http: aiohttp.ClientSession) -> None:
    """Some servers send a 408 before closing an idle keep-alive connection; it answers nothing of ours."""

    async def answer_then_408(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(KEPT)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with RawUpstream(answer_then_408) as upstream:
        gw = await gateway_for(upstream)
        assert (await chat(http, gw))[0] == 200
        await asyncio.sleep(0.4)
        status, body = await chat(http, gw)
        assert status == 200 and body["id"] == "chatcmpl-raw", body
        assert upstream.connections == 2


async def test_a_client_that_stops_reading_stops_the_upstream_and_loses_nothing(gateway_for: Starter,
                                                                                http: aiohttp.ClientSession) -> None:
    """Flow control end to end: while the client reads nothing, the gateway holds a bounded amount and
    the upstream is made to wait; when the client reads again, every byte arrives, in order."""
    event = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 4000}}]}) + b"\n\n"
    events = 16_000  # 64 MB
    sent = 0
    digest = hashlib.sha256()

    async def big_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(events):
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            sent += len(event)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    for _ in range(events):
        digest.update(event)
    async with RawUpstream(big_stream) as upstream:
        gw = await gateway_for(upstream)
        async with http.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            assert response.status == 200
            await asyncio.sleep(1.5)
            held = sent
            assert held < 32 * 1024 * 1024, held  # socket buffers and the gateway's bounded queue, not all 64 MB
            received = hashlib.sha256()
            async for chunk in response.content.iter_any():
                received.update(chunk)
        assert sent == events * len(event)
        assert received.hexdigest() == digest.hexdigest()


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(gateway_for: Starter,
                                                                         http: aiohttp.ClientSession) -> None:
    closed = asyncio.Event()

    async def answer_then_wait_for_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                         n: int) -> None:
        await read_request(reader)
        writer.write(KEPT)
        await writer.drain()
        assert await reader.read() == b""  # the gateway's close
        closed.set()

    async with RawUpstream(answer_then_wait_for_close) as upstream:
        gw = await gateway_for(upstream, upstream_keepalive_timeout=0.3)
        assert (await chat(http, gw))[0] == 200
        await asyncio.wait_for(closed.wait(), 5)
