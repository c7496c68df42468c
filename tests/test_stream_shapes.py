"""Real servers' stream shapes through a real gateway: unbuffered, byte for byte, and charged exactly.

Each shape in tests/stream_corpus.py is what a server this project did not write sends (its framing read
from that server's source). The fake upstream writes it frame by frame and holds the rest back after the
first complete event: the client must have that event while the upstream still holds the others.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, spend_record
from tests.stream_corpus import SHAPES, StreamShape
from tests.stream_corpus import _events as corpus_events
from tests.stream_corpus import _parse as parse_event

MASTER = "sk-shapes-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PRICE_IN, PRICE_OUT = 0.000003, 0.000011
PATIENCE = 10.0
LINE_END = re.compile(rb"\r\n|\r|\n")


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    prices = {"input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT}
    config = {"model_list": [deployment("shaped", upstream.base_url, **prices)],
              "general_settings": {"master_key": MASTER}}
    with Gateway(config) as gw:
        yield gw


def first_event_end(stream: bytes) -> int:
    """Where the first event's blank line ends, found line by line as the WHATWG parser reads."""
    previous_end, seen_line = -1, False
    for found in LINE_END.finditer(stream):
        if found.start() == previous_end and seen_line:
            return found.end()
        seen_line = seen_line or found.start() != previous_end
        previous_end = found.end()
    raise AssertionError("no complete event")


def hold_after_first_event(frames: tuple[bytes, ...]) -> int:
    """The index of the first frame that the upstream holds back: every frame before it together hold
    the first complete event."""
    end, written = first_event_end(b"".join(frames)), 0
    for index, frame in enumerate(frames):
        written += len(frame)
        if written >= end:
            return index + 1
    raise AssertionError("the first event never ends")


async def read_at_least(response: aiohttp.ClientResponse, size: int, got: bytearray) -> None:
    while len(got) < size:
        chunk = await asyncio.wait_for(response.content.readany(), PATIENCE)
        assert chunk, "the stream ended early"
        got += chunk


@pytest.mark.parametrize("client_asked", [False, True], ids=["gateway-asked", "client-asked"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
async def test_a_real_servers_stream_passes_unbuffered_exact_and_priced(
        gateway: Gateway, upstream: FakeUpstream, http: aiohttp.ClientSession, shape: StreamShape,
        client_asked: bool) -> None:
    gate, request_id = uuid.uuid4().hex, uuid.uuid4().hex
    held = hold_after_first_event(shape.frames)
    body: dict[str, Any] = {"model": "shaped", "stream": True, "fake": {"shape": shape.name, "hold": [held, gate]}}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if shape.endpoint == "chat/completions"
                else {"prompt": "hi"})
    if client_asked:
        body["stream_options"] = {"include_usage": True}
    expected = b"".join(shape.frames if client_asked else shape.client_frames)
    got = bytearray()
    async with http.post(f"{gateway.url}/v1/{shape.endpoint}", json=body,
                         headers={**ADMIN, "X-Request-ID": request_id}) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        first = first_event_end(expected)
        # A CR that ends a read may be half of a CRLF: the LF after it can come with the next event.
        await read_at_least(r, first - 1 if expected[first - 2:first] == b"\r\n" else first, got)
        assert upstream.seen[-1].outcome == "pending"
        upstream.open_gate(gate)
        got += await r.read()
    assert bytes(got) == expected
    sent = upstream.seen[-1].body
    assert sent["stream_options"] == {"include_usage": True}
    log = await spend_record(http, gateway, request_id, ADMIN)
    prompt, completion, total = shape.usage
    assert (log["prompt_tokens"], log["completion_tokens"], log["total_tokens"]) == (prompt, completion, total)
    assert log["metadata"]["usage_estimated"] is False
    assert log["spend"] == pytest.approx(prompt * PRICE_IN + completion * PRICE_OUT)
    assert log["status"] == "success"


def words_of(frames: tuple[bytes, ...]) -> str:
    """The answer text in a stream, read with the corpus's own WHATWG splitter."""
    text = []
    for event in corpus_events(b"".join(frames)):
        _, data = parse_event(event)
        for choice in (data or {}).get("choices") or ():  # type: ignore[attr-defined]
            content = (choice.get("delta") or {}).get("content")
            text.append(content if isinstance(content, str) else "")
    return "".join(text)


@st.composite
def reframed(draw: st.DrawFn) -> tuple[list[str], StreamShape]:
    """A corpus shape with every line end replaced by one drawn at random, cut at random bytes; the
    frames travel to the fake upstream as latin-1 text, so a cut may fall inside a UTF-8 sequence."""
    shape = draw(st.sampled_from([s for s in SHAPES if s.endpoint == "chat/completions"]))
    line_end = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    whole = LINE_END.sub(line_end, b"".join(shape.frames))
    cuts = draw(st.lists(st.integers(0, len(whole)), max_size=10))
    points = sorted({*cuts, 0, len(whole)})
    return [whole[a:b].decode("latin-1") for a, b in zip(points, points[1:])], shape


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=reframed())
def test_any_framing_and_any_cut_reaches_an_openai_client_intact(gateway: Gateway,
                                                                case: tuple[list[str], StreamShape]) -> None:
    """The OpenAI SDK reads the stream the gateway asked usage for: no usage chunk leaks to it, and every
    word of the answer arrives."""
    frames, shape = case
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0)
    words = []
    with client.chat.completions.create(model="shaped", messages=[{"role": "user", "content": "hi"}], stream=True,
                                        extra_body={"fake": {"frames": frames, "latin1": True}}) as stream:
        for chunk in stream:
            assert chunk.usage is None
            for choice in chunk.choices:
                words.append(choice.delta.content or "")
    assert "".join(words) == words_of(shape.frames)


async def test_bytes_that_are_not_sse_pass_untouched_and_unbuffered(gateway: Gateway, upstream: FakeUpstream,
                                                                    http: aiohttp.ClientSession) -> None:
    """An upstream that answers a stream request with something else (here JSON, in pieces): each piece
    reaches the client as it comes, and the usage in it is still read."""
    gate, request_id = uuid.uuid4().hex, uuid.uuid4().hex
    pieces = ['{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant",',
              '"content":"hi"},"finish_reason":"stop"}],',
              '"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}']
    body = {"model": "shaped", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "fake": {"frames": pieces, "hold": [1, gate], "content_type": "application/json"}}
    got = bytearray()
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body,
                         headers={**ADMIN, "X-Request-ID": request_id}) as r:
        await read_at_least(r, len(pieces[0]), got)
        upstream.open_gate(gate)
        got += await r.read()
    assert bytes(got) == "".join(pieces).encode()
    log = await spend_record(http, gateway, request_id, ADMIN)
    assert (log["prompt_tokens"], log["completion_tokens"], log["metadata"]["usage_estimated"]) == (7, 2, False)


async def test_a_stream_ended_without_a_byte_is_settled_on_an_estimate(gateway: Gateway,
                                                                      http: aiohttp.ClientSession) -> None:
    """An upstream that opens a stream and ends it before any event: the client gets the empty answer,
    and the request is charged for its prompt, estimated (an empty tail once broke the settlement)."""
    request_id = uuid.uuid4().hex
    body = {"model": "shaped", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "fake": {"frames": []}}
    async with http.post(f"{gateway.url}/v1/chat/completions", json=body,
                         headers={**ADMIN, "X-Request-ID": request_id}) as r:
        assert r.status == 200
        assert await r.read() == b""
    log = await spend_record(http, gateway, request_id, ADMIN)
    assert (log["completion_tokens"], log["metadata"]["usage_estimated"]) == (0, True)
    assert log["prompt_tokens"] > 0
