"""Anthropic's event streams in every framing the SSE grammar allows, through a real gateway: the client gets the
upstream's bytes exactly, and the request is charged with the usage its message_start and last message_delta
report, however the events were cut across TCP writes."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.anthropic.usage import MessagesMeter
from gateway.usage import Usage
from tests.anthropic_fake import KEY, FakeAnthropic, steer
from tests.harness import Gateway, spend_record

MASTER = "sk-anthropic-streams"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HELLO = [{"role": "user", "content": "hello"}]
LINE_END = re.compile(rb"\r\n|\r|\n")
PRICE_IN, PRICE_OUT = 0.000003, 0.000015

# A stream as Anthropic writes it (the anthropic-sdk-python fixture message_delta_fields_response.txt's
# shape): message_start with cache figures, a thinking block, a text block, a tool call, and a message_delta
# whose usage updates the input figures as well as the output.
DOCUMENTED = (
    b'event: message_start\n'
    b'data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",'
    b'"model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
    b'"cache_creation_input_tokens":10,"cache_read_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":10,'
    b'"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard"}}}\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n'
    b'event: ping\n'
    b'data: {"type": "ping"}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Weather: ask."}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta",'
    b'"signature":"EqQBCgIYAhIM1gbcDa9G"}}\n\n'
    b'event: content_block_stop\n'
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta",'
    b'"text":"Let me check \xc3\xa0 Paris."}}\n\n'
    b'event: content_block_stop\n'
    b'data: {"type":"content_block_stop","index":1}\n\n'
    b'event: content_block_start\n'
    b'data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
    b'"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6",'
    b'"name":"get_weather","input":{}}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
    b'"partial_json":"{\\"location\\":"}}\n\n'
    b'event: content_block_delta\n'
    b'data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta",'
    b'"partial_json":" \\"Paris\\"}"}}\n\n'
    b'event: content_block_stop\n'
    b'data: {"type":"content_block_stop","index":2}\n\n'
    b'event: message_delta\n'
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":40,'
    b'"cache_creation_input_tokens":12,"cache_read_input_tokens":7,"output_tokens":89,'
    b'"output_tokens_details":{"thinking_tokens":3}}}\n\n'
    b'event: message_stop\n'
    b'data: {"type":"message_stop"}\n\n'
)
# input 40 + cache written 12 + cache read 7 (the message_delta's figures win), output 89.
DOCUMENTED_USAGE = Usage(59, 89, 148, cache_read_tokens=7, cache_creation_tokens=12, reasoning_tokens=3)


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic("framed").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(claude: FakeAnthropic) -> Iterator[Gateway]:
    config = {"model_list": [{"model_name": "claude", "litellm_params": {
        "model": "anthropic/claude-sonnet-4-5", "api_base": claude.api_base, "api_key": KEY,
        "input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT,
        "cache_read_input_token_cost": PRICE_IN, "cache_creation_input_token_cost": PRICE_IN}}],
        "general_settings": {"master_key": MASTER}}
    with Gateway(config) as gw:
        yield gw


async def send(http: aiohttp.ClientSession, gw: Gateway, metadata: dict[str, str]) -> tuple[bytes, dict[str, Any]]:
    request_id = uuid.uuid4().hex
    body = {"model": "claude", "max_tokens": 128, "stream": True, "messages": HELLO, "metadata": metadata}
    headers = {"x-api-key": MASTER, "X-Request-ID": request_id}
    async with http.post(f"{gw.url}/v1/messages", json=body, headers=headers) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        got = await r.read()
    return got, await spend_record(http, gw, request_id, ADMIN)


def charged(record: dict[str, Any]) -> tuple[int, int, bool]:
    return record["prompt_tokens"], record["completion_tokens"], record["metadata"]["usage_estimated"]


@pytest.mark.parametrize("writes", ["event", "split", "batched"])
@pytest.mark.parametrize("space", [True, False], ids=["space", "no-space"])
@pytest.mark.parametrize("line_end", ["lf", "crlf"])
async def test_every_framing_arrives_exact_and_is_charged(gateway: Gateway, claude: FakeAnthropic,
                                                         http: aiohttp.ClientSession, line_end: str, space: bool,
                                                         writes: str) -> None:
    got, record = await send(http, gateway, steer(line_end=line_end, space=space, writes=writes, text="x" * 61))
    sent = claude.seen[-1].sent
    assert got == sent
    assert (b"\r\n" in got) is (line_end == "crlf") and (b"event: " in got) is space
    start = orjson.loads(re.search(rb"data: ?(\{\"type\":\"message_start\".*?)\r?\n", got).group(1))  # type: ignore[union-attr]
    final = orjson.loads(re.findall(rb"data: ?(\{\"type\":\"message_delta\".*?)\r?\n", got)[-1])
    usage = start["message"]["usage"] | final["usage"]
    assert charged(record) == (usage["input_tokens"], usage["output_tokens"], False)


@st.composite
def reframed(draw: st.DrawFn) -> list[str]:
    """The documented stream with every line end replaced by one drawn at random and cut at random bytes (a cut
    may fall inside a UTF-8 sequence: the frames travel to the fake as latin-1)."""
    line_end = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    whole = LINE_END.sub(line_end, DOCUMENTED)
    cuts = draw(st.lists(st.integers(0, len(whole)), max_size=12))
    points = sorted({*cuts, 0, len(whole)})
    return [whole[a:b].decode("latin-1") for a, b in zip(points, points[1:])]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=reframed())
def test_any_line_end_and_any_cut_reaches_the_sdk_and_is_charged(gateway: Gateway, claude: FakeAnthropic,
                                                                 frames: list[str]) -> None:
    request_id = uuid.uuid4().hex
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0) as sdk:
        with sdk.messages.stream(model="claude", max_tokens=128, messages=HELLO, metadata=steer(frames=frames),
                                 extra_headers={"X-Request-ID": request_id}) as stream:
            final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[1].text == "Let me check \u00e0 Paris."  # type: ignore[union-attr]
    assert final.content[2].input == {"location": "Paris"}  # type: ignore[union-attr]
    assert claude.seen[-1].sent == "".join(frames).encode("latin-1")
    record = spend_record_now(gateway, request_id)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (59, 89)
    assert record["metadata"]["usage_estimated"] is False


def spend_record_now(gw: Gateway, request_id: str) -> dict[str, Any]:
    """tests.harness.spend_record, blocking: a hypothesis test is not a coroutine."""
    deadline = time.monotonic() + 10
    while True:
        request = urllib.request.Request(f"{gw.url}/spend/logs?request_id={request_id}", headers=ADMIN)
        with urllib.request.urlopen(request, timeout=10) as response:
            found = orjson.loads(response.read())
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, f"no spend record for {request_id}"
        time.sleep(0.05)


@settings(max_examples=300, deadline=None)
@given(line_end=st.sampled_from([b"\n", b"\r\n", b"\r"]), cuts=st.lists(st.integers(0, len(DOCUMENTED)), max_size=20))
def test_the_meter_reads_the_same_usage_however_the_stream_is_cut(line_end: bytes, cuts: list[int]) -> None:
    whole = LINE_END.sub(line_end, DOCUMENTED)
    meter = MessagesMeter(True, 0)
    points = sorted({*cuts, 0, len(whole)})
    for a, b in zip(points, points[1:]):
        meter.delivered(whole[a:b])
    assert meter.usage({}) == DOCUMENTED_USAGE


async def test_a_stream_cut_before_its_end_is_charged_its_input_and_an_estimate(
        gateway: Gateway, claude: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    """No message_delta: the input is message_start's own figure; the output is estimated from the text sent."""
    got, record = await send(http, gateway, steer(drop_after=6, text="y" * 400))
    start = orjson.loads(got.split(b"data: ", 1)[1].split(b"\n", 1)[0])["message"]["usage"]
    prompt = start["input_tokens"] + start["cache_creation_input_tokens"] + start["cache_read_input_tokens"]
    assert got.rstrip().endswith(b"}") and b"event: error" in got
    assert record["prompt_tokens"] == prompt and record["metadata"]["usage_estimated"] is True
    assert record["completion_tokens"] > 0
    assert record["status"] == "failure"
