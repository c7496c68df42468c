"""SSE relay: byte for byte, event by event as it arrives, and cancelled when the client leaves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
# Bounds on waits for events the test itself causes; never a measure of speed.
PATIENCE = 10.0


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [
        deployment("chat", upstream.base_url),
        deployment("stalling", upstream.base_url, stream_timeout=0.5),
        deployment("instruct", upstream.base_url, model_info={"mode": "completion"}),
    ]}
    with Gateway(config) as gw:
        yield gw


async def read_event(response: aiohttp.ClientResponse) -> bytes:
    """One SSE event, up to and including its blank line."""
    return await asyncio.wait_for(response.content.readuntil(b"\n\n"), PATIENCE)


def stream_request(model: str, fake: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"model": model, **CHAT, "stream": True, "fake": fake, **extra})


async def test_stream_is_byte_identical_to_the_upstream_stream(gateway: Gateway, upstream: FakeUpstream,
                                                               http: aiohttp.ClientSession) -> None:
    fake = {"chunks": 6}
    direct_body = orjson.dumps({"model": "chat-upstream", **CHAT, "stream": True, "fake": fake})
    async with http.post(f"{upstream.base_url}/chat/completions", data=direct_body) as direct:
        expected = await direct.read()
    async with http.post(f"{gateway.url}/v1/chat/completions", data=stream_request("chat", fake)) as r:
        assert r.status == 200
        assert r.content_type == "text/event-stream"
        assert r.headers["x-litellm-model-group"] == "chat"
        assert await r.read() == expected
    assert expected.count(b"data: ") == 7 and expected.endswith(b"data: [DONE]\n\n")


async def test_usage_event_passes_when_the_client_asks(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    body = stream_request("chat", {"chunks": 2}, stream_options={"include_usage": True})
    async with http.post(f"{gateway.url}/v1/chat/completions", data=body) as r:
        events = (await r.read()).split(b"\n\n")
    usage = orjson.loads(events[-3].removeprefix(b"data: "))
    assert usage["usage"]["completion_tokens"] == 2


async def test_first_event_arrives_before_the_upstream_finishes(gateway: Gateway, upstream: FakeUpstream,
                                                                http: aiohttp.ClientSession) -> None:
    gate = uuid.uuid4().hex
    async with http.post(f"{gateway.url}/v1/chat/completions",
                         data=stream_request("chat", {"chunks": 3, "gate": gate})) as r:
        first = await read_event(r)  # the upstream holds every later event until the gate opens
        assert b"alpha says hi 0" in first
        assert upstream.seen[-1].outcome == "pending"
        upstream.open_gate(gate)
        rest = await r.read()
    assert rest.endswith(b"data: [DONE]\n\n") and b"alpha says hi 2" in rest


async def test_each_event_is_relayed_as_it_arrives(gateway: Gateway, upstream: FakeUpstream,
                                                   http: aiohttp.ClientSession) -> None:
    """With a slow upstream the client reads every event separately, not one buffered lump."""
    async with http.post(f"{gateway.url}/v1/chat/completions",
                         data=stream_request("chat", {"chunks": 4, "delay": 0.15})) as r:
        events = [await read_event(r) for _ in range(4)]
        pending = [upstream.seen[-1].outcome for _ in events]
        await r.read()
    assert [b"alpha says hi %d" % i in e for i, e in enumerate(events)] == [True] * 4
    assert pending[0] == "pending"


async def test_client_disconnect_cancels_the_upstream_request(gateway: Gateway, upstream: FakeUpstream,
                                                              http: aiohttp.ClientSession) -> None:
    # Left alone, this upstream stream would run for 60 s.
    response = await http.post(f"{gateway.url}/v1/chat/completions",
                                data=stream_request("chat", {"chunks": 300, "delay": 0.2}))
    await read_event(response)
    seen = upstream.seen[-1]
    response.close()  # drop the connection mid-stream
    await upstream.until(lambda: seen.outcome == "cancelled", PATIENCE)
    async with http.get(f"{gateway.url}/health/liveliness") as r:
        assert r.status == 200


async def test_upstream_dropping_mid_stream_ends_with_an_error_event(gateway: Gateway,
                                                                     http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/v1/chat/completions",
                         data=stream_request("chat", {"chunks": 5, "drop_after": 2})) as r:
        assert r.status == 200
        body = await r.read()
    events = [e for e in body.split(b"\n\n") if e]
    assert len(events) == 3
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["type"] == "api_connection_error"
    assert b"[DONE]" not in body and b'"finish_reason":"stop"' not in body


async def test_a_stalled_stream_times_out_and_is_cancelled(gateway: Gateway, upstream: FakeUpstream,
                                                           http: aiohttp.ClientSession) -> None:
    gate = uuid.uuid4().hex  # never opened: the upstream stalls after its first event
    async with http.post(f"{gateway.url}/v1/chat/completions",
                         data=stream_request("stalling", {"chunks": 3, "gate": gate})) as r:
        body = await asyncio.wait_for(r.read(), PATIENCE)
    events = [e for e in body.split(b"\n\n") if e]
    assert b"alpha says hi 0" in events[0]
    error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["type"] == "timeout_error" and "stalled" in error["message"]
    assert b"[DONE]" not in body
    seen = upstream.seen[-1]
    await upstream.until(lambda: seen.outcome == "cancelled", PATIENCE)
    upstream.open_gate(gate)


async def test_streamed_upstream_error_before_the_first_byte_keeps_its_status(
        gateway: Gateway, http: aiohttp.ClientSession) -> None:
    body = stream_request("chat", {"status": 429, "body": {"error": {"message": "slow down", "type": "rate"}}})
    async with http.post(f"{gateway.url}/v1/chat/completions", data=body) as r:
        assert r.status == 429
        assert (await r.json())["error"]["message"] == "slow down"
