"""Translation through the running gateway: the `anthropic` SDK on /v1/messages served by an OpenAI-compatible
deployment (a fake vLLM with reasoning and tool calls, tests/fakes.py VllmUpstream), and the `openai` SDK on
/v1/chat/completions served by a native `anthropic/` deployment (the fake Anthropic of tests/anthropic_fake.py,
which checks every request as Anthropic's API does).

Both fakes refuse what their real counterparts refuse (a tool result answering no call, a thinking block
with a signature they never gave), so a round trip holds only if the translation is right both ways. Every
answer is charged exactly what the fake reported in it; retries, fallbacks and mixed groups cross the APIs.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from gateway.anthropic.requests import prompt_tokens
from tests.anthropic_fake import KEY, FakeAnthropic, steer
from tests.fakes import THOUGHT, VllmUpstream
from tests.harness import Gateway, free_port, spend_record

MASTER = "sk-translation-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 0.000002, 0.000010
PRICES = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE}
HELLO = [{"role": "user", "content": "hello"}]
# Anthropic's ratios to the input price: a cache read 0.1x, a five-minute write 1.25x, an hour's write 2x.
READ_PRICE, WRITE_PRICE, WRITE_HOUR_PRICE = IN_PRICE * 0.1, IN_PRICE * 1.25, IN_PRICE * 2
CACHE_PRICES = {"cache_read_input_token_cost": READ_PRICE, "cache_creation_input_token_cost": WRITE_PRICE,
                "cache_creation_input_token_cost_above_1hr": WRITE_HOUR_PRICE}
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                            "required": ["location"]}}
WEATHER_FUNCTION = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                                     "parameters": WEATHER["input_schema"]}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24).decode()
PDF = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()


def vllm_deployment(name: str, fake: VllmUpstream | str, **params: Any) -> dict[str, Any]:
    base = fake if isinstance(fake, str) else fake.base_url
    return {"model_name": name, "litellm_params": {"model": "hosted_vllm/Qwen/Qwen3-8B", "api_base": base,
                                                   "api_key": "sk-vllm-secret", **PRICES, **params}}


def native(name: str, fake: FakeAnthropic, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": fake.api_base,
                                                   "api_key": KEY, **PRICES, **params}}


@pytest.fixture(scope="module")
def vllm() -> Iterator[VllmUpstream]:
    fake = VllmUpstream("qwen")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic("claude").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def overloaded() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic("overloaded", always_status=529).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(vllm: VllmUpstream, claude: FakeAnthropic, overloaded: FakeAnthropic) -> Iterator[Gateway]:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    config = {
        "model_list": [
            vllm_deployment("qwen", vllm),
            native("claude", claude),
            native("mixed", claude), vllm_deployment("mixed", vllm),
            native("claude-busy", overloaded, num_retries=0),
            native("pair", overloaded), vllm_deployment("pair", vllm),
            vllm_deployment("qwen-gone", nowhere, num_retries=0),
            {"model_name": "mocked", "litellm_params": {"model": "mock/mocked", **PRICES}},
            native("claude-cache-priced", claude, **CACHE_PRICES),
        ],
        "router_settings": {"num_retries": 1, "retry_after": 0,
                            "fallbacks": [{"claude-busy": ["qwen"]}, {"qwen-gone": ["claude"]}]},
        "general_settings": {"master_key": MASTER},
    }
    gw = Gateway(config)
    try:
        yield gw.start()
    finally:
        gw.stop()
    assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
def chat(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
async def admin() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def rid() -> dict[str, str]:
    return {"X-Request-ID": uuid.uuid4().hex}


def chat_usage(sent: bytes) -> tuple[int, int, int]:
    """(prompt, completion, cached) as the fake vLLM reported them, in its answer or its stream's usage chunk."""
    usage: dict[str, Any] = {}
    if sent.startswith(b"{"):
        usage = orjson.loads(sent)["usage"]
    else:
        for line in sent.split(b"\n"):
            event = orjson.loads(line[6:]) if line.startswith(b"data: {") else {}
            usage = event.get("usage") or usage
    return usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def anthropic_usage_sent(sent: bytes) -> dict[str, Any]:
    """The fake Anthropic's usage as it sent it, message_start's and message_delta's merged for a stream."""
    if sent.startswith(b"{"):
        return dict(orjson.loads(sent)["usage"])
    usage: dict[str, Any] = {}
    for line in sent.split(b"\n"):
        event = orjson.loads(line[6:]) if line.startswith(b"data: {") else {}
        if event.get("type") == "message_start":
            usage.update(event["message"]["usage"])
        elif event.get("type") == "message_delta":
            usage.update(event["usage"])
    return usage


def messages_usage(sent: bytes) -> tuple[int, int, int]:
    """(prompt as OpenAI counts it, output, cache read) as the fake Anthropic reported them."""
    usage = anthropic_usage_sent(sent)
    read = usage.get("cache_read_input_tokens") or 0
    prompt = usage["input_tokens"] + read + (usage.get("cache_creation_input_tokens") or 0)
    return prompt, usage["output_tokens"], read


async def charged(http: aiohttp.ClientSession, gw: Gateway, request_id: str, prompt: int, completion: int,
                  call_type: str) -> dict[str, Any]:
    """The spend record is the upstream's own usage at the deployment's prices, to the token."""
    record = await spend_record(http, gw, request_id, ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (prompt, completion)
    assert record["metadata"]["usage_estimated"] is False and record["status"] == "success"
    assert record["spend"] == pytest.approx(prompt * IN_PRICE + completion * OUT_PRICE)
    assert record["call_type"] == call_type
    return record


# ---- the anthropic SDK, an OpenAI-compatible deployment ------------------------------------------------

async def test_a_message_is_answered_by_an_openai_compatible_deployment_and_charged(
        client: anthropic.Anthropic, vllm: VllmUpstream, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    headers = rid()
    raw = client.messages.with_raw_response.create(model="qwen", max_tokens=64, system="Be brief.",
                                                   messages=HELLO, stop_sequences=["END"],
                                                   extra_body={"temperature": 0.5}, extra_headers=headers)
    message = raw.parse()
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "qwen says hi")]
    assert (message.model, message.stop_reason, message.role) == ("Qwen/Qwen3-8B", "end_turn", "assistant")
    assert message.id.startswith("msg_")
    seen = vllm.seen[-1]
    assert seen.path == "/v1/chat/completions" and seen.headers["Authorization"] == "Bearer sk-vllm-secret"
    assert seen.body == {"model": "Qwen/Qwen3-8B", "messages": [{"role": "system", "content": "Be brief."}, *HELLO],
                         "max_tokens": 64, "temperature": 0.5, "stop": ["END"]}
    prompt, completion, _ = chat_usage(seen.sent)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (prompt, completion)
    assert raw.headers["x-litellm-model-group"] == "qwen"
    assert message._request_id == headers["X-Request-ID"]  # the SDK's request id: the gateway's, as no Anthropic's
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "messages")


async def test_a_message_stream_is_translated_as_it_arrives_and_charged(
        client: anthropic.Anthropic, vllm: VllmUpstream, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    headers = rid()
    with client.messages.stream(model="qwen", max_tokens=64, messages=HELLO, extra_headers=headers) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
        assert stream.response.headers["request-id"] == headers["X-Request-ID"]
    assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]
    assert "".join(b.text for b in final.content if b.type == "text") == "qwen says hi"
    seen = vllm.seen[-1]
    assert seen.body["stream"] is True and seen.body["stream_options"] == {"include_usage": True}
    prompt, completion, _ = chat_usage(seen.sent)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (prompt, completion)
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "messages")


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_a_tool_round_trip_through_an_openai_compatible_deployment(
        client: anthropic.Anthropic, vllm: VllmUpstream, gateway: Gateway, admin: aiohttp.ClientSession,
        streamed: bool) -> None:
    """The fake vLLM refuses a tool message that answers no tool call of the message before it."""
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    if streamed:
        with client.messages.stream(model="qwen", max_tokens=256, messages=asked, tools=[WEATHER]) as stream:
            kinds = [event.type for event in stream]
            first = stream.get_final_message()
        assert "input_json" in kinds  # the arguments arrived in pieces
    else:
        first = client.messages.create(model="qwen", max_tokens=256, messages=asked, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"location": "Paris"}
    assert vllm.seen[-1].body["tools"] == [WEATHER_FUNCTION]
    headers = rid()
    answer = client.messages.create(model="qwen", max_tokens=256, tools=[WEATHER], extra_headers=headers, messages=[
        *asked, {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 degrees"}]}])
    seen = vllm.seen[-1]
    assert seen.body["messages"][1:] == [
        {"role": "assistant", "content": "I'll ask get_weather.", "tool_calls": [
            {"id": call.id, "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
             "type": "function"}]},
        {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"}]
    assert answer.content[0].type == "text" and answer.content[0].text == "The tool said: 21 degrees"
    prompt, completion, _ = chat_usage(seen.sent)
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "messages")


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_thinking_reaches_vllm_as_its_switch_and_comes_back_as_a_thinking_block(
        client: anthropic.Anthropic, vllm: VllmUpstream, streamed: bool) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    if streamed:
        with client.messages.stream(model="qwen", max_tokens=2048, messages=HELLO, thinking=thinking) as stream:
            kinds = [event.type for event in stream]
            first = stream.get_final_message()
        assert "thinking" in kinds
    else:
        first = client.messages.create(model="qwen", max_tokens=2048, messages=HELLO, thinking=thinking)
    sent = vllm.seen[-1].body
    assert sent["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}
    assert sent["reasoning_effort"] == "low"
    assert [block.type for block in first.content] == ["thinking", "text"]
    assert first.content[0].thinking == THOUGHT  # type: ignore[union-attr]
    client.messages.create(model="qwen", max_tokens=2048, thinking=thinking, messages=[
        *HELLO, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "and again"}])
    # vLLM's chat templates read earlier reasoning from the assistant message.
    assert vllm.seen[-1].body["messages"][1] == {"role": "assistant", "content": "qwen says hi",
                                                 "reasoning_content": THOUGHT}


async def test_vllms_prefix_cache_is_the_clients_cache_read(
        client: anthropic.Anthropic, vllm: VllmUpstream, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    system = [{"type": "text", "text": f"You know {uuid.uuid4().hex} by heart. " * 40,
               "cache_control": {"type": "ephemeral"}}]
    found = []
    for _ in range(2):
        headers = rid()
        with client.messages.stream(model="qwen", max_tokens=64, system=system, messages=HELLO,
                                    extra_headers=headers) as stream:
            usage = stream.get_final_message().usage
        prompt, completion, cached = chat_usage(vllm.seen[-1].sent)
        await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "messages")
        found.append((usage, prompt, cached))
    (first, _, none), (second, prompt, cached) = found
    assert none == 0 and first.cache_read_input_tokens == 0
    assert cached > 0 and second.cache_read_input_tokens == cached and second.input_tokens == prompt - cached
    assert "cache_control" not in orjson.dumps(vllm.seen[-1].body).decode()


async def test_count_tokens_for_an_openai_compatible_model_is_the_gateways_estimate(
        client: anthropic.Anthropic, vllm: VllmUpstream, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    before = len(vllm.seen)
    body: dict[str, Any] = {"model": "qwen", "messages": HELLO, "system": "be brief", "tools": [WEATHER]}
    headers = rid()
    assert client.messages.count_tokens(**body, extra_headers=headers).input_tokens == prompt_tokens(body)
    assert len(vllm.seen) == before
    record = await spend_record(admin, gateway, headers["X-Request-ID"], ADMIN)
    assert (record["spend"], record["total_tokens"]) == (0, 0)


async def test_upstream_and_translation_errors_raise_the_anthropic_sdks_own(
        client: anthropic.Anthropic, vllm: VllmUpstream, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="qwen", max_tokens=16, messages=HELLO,
                               metadata=steer(status=400, body={"object": "error", "type": "BadRequestError",
                                                                "message": "This model's maximum context length is 8",
                                                                "param": None, "code": 400}))
    assert refused.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "This model's maximum context length is 8"},
        "request_id": refused.value.response.headers["x-request-id"]}
    before = len(vllm.seen)
    with pytest.raises(anthropic.InternalServerError) as broken:
        client.messages.create(model="qwen", max_tokens=16, messages=HELLO,
                               metadata=steer(status=500, body={"message": "engine down"}))
    assert broken.value.body["error"] == {"type": "api_error", "message": "engine down"}  # type: ignore[index]
    assert len(vllm.seen) - before == 2  # the group's one retry
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        client.messages.create(model="qwen", max_tokens=16, messages=HELLO,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "tools[0]" in server_tool.value.message and "OpenAI-compatible upstream cannot run it" in \
        server_tool.value.message
    assert server_tool.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model="qwen", max_tokens=16, messages=HELLO, extra_body={"temprature": 1})
    assert "temprature" in unknown.value.message
    before = len(vllm.seen)
    with pytest.raises(anthropic.BadRequestError) as edits:
        client.messages.create(model="qwen", max_tokens=16, messages=HELLO, extra_body={"context_management": {
            "edits": [{"type": "clear_tool_uses_20250919"}]}})
    assert "context_management" in edits.value.message and len(vllm.seen) == before


async def test_a_stream_that_fails_ends_with_anthropics_error_event_and_fails_the_request(
        client: anthropic.Anthropic, gateway: Gateway, vllm: VllmUpstream, admin: aiohttp.ClientSession) -> None:
    for steering, words in ((steer(error_after=3), "The engine died while generating."),
                            (steer(drop_after=3), "broke off the stream")):
        headers = rid()
        with pytest.raises(anthropic.APIStatusError) as raised:
            with client.messages.stream(model="qwen", max_tokens=64, messages=HELLO, metadata=steering,
                                        extra_headers=headers) as stream:
                stream.get_final_message()
        assert words in str(raised.value)
        record = await spend_record(admin, gateway, headers["X-Request-ID"], ADMIN)
        assert record["status"] == "failure" and words in record["metadata"]["error"]
    body = {"model": "qwen", "max_tokens": 64, "messages": HELLO, "stream": True, "metadata": steer(error_after=3)}
    async with admin.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": MASTER}) as r:
        got = await r.read()
    assert got.count(b"event: error\n") == 1 and got.endswith(b"\n\n") and b"message_stop" not in got


# ---- the openai SDK, a native anthropic/ deployment ----------------------------------------------------

async def test_chat_is_answered_by_an_anthropic_deployment_and_charged(
        chat: openai.OpenAI, claude: FakeAnthropic, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    headers = rid()
    raw = chat.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}, *HELLO], max_tokens=100,
        extra_headers=headers)
    completion = raw.parse()
    assert completion.choices[0].message.content == "claude says hi"
    assert (completion.choices[0].finish_reason, completion.model) == ("stop", "claude-sonnet-4-5")
    seen = claude.seen[-1]
    assert seen.path == "/v1/messages" and seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in seen.headers
    assert seen.body == {"model": "claude-sonnet-4-5", "max_tokens": 100,
                         "system": [{"type": "text", "text": "Be brief."}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    prompt, completion_tokens, _ = messages_usage(seen.sent)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, completion_tokens)
    assert raw.headers["llm_provider-request-id"].startswith("req_claude")
    assert "request-id" not in raw.headers  # unprefixed only to Anthropic's own clients
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion_tokens, "chat/completions")
    chat.chat.completions.create(model="claude", messages=HELLO,
                                 extra_headers={"anthropic-beta": "prompt-caching-scope-2026-01-05"})
    assert claude.seen[-1].headers["anthropic-beta"] == "prompt-caching-scope-2026-01-05"
    assert claude.seen[-1].body["max_tokens"] == 4096  # LiteLLM's default: Anthropic requires one


@pytest.mark.parametrize("include_usage", [True, False], ids=["include_usage", "no_usage_asked"])
async def test_a_chat_stream_from_an_anthropic_deployment_is_charged_either_way(
        chat: openai.OpenAI, claude: FakeAnthropic, gateway: Gateway, admin: aiohttp.ClientSession,
        include_usage: bool) -> None:
    headers = rid()
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(chat.chat.completions.create(model="claude", messages=HELLO, stream=True, extra_headers=headers,
                                               **options))  # type: ignore[call-overload]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "claude says hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    prompt, completion, _ = messages_usage(claude.seen[-1].sent)
    with_usage = [c.usage for c in chunks if c.usage is not None]
    if include_usage:
        assert [(u.prompt_tokens, u.completion_tokens) for u in with_usage] == [(prompt, completion)]
    else:
        assert with_usage == []
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "chat/completions")


async def test_a_client_that_leaves_at_the_translated_done_had_the_whole_answer(
        chat: openai.OpenAI, claude: FakeAnthropic, gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    """The translation writes `[DONE]` at Anthropic's message_stop, before Anthropic ends its body; a client
    that closes on `[DONE]` (as the SDKs do) is settled as answered, not as gone mid-answer."""
    headers = rid()
    gate = uuid.uuid4().hex
    chunks = list(chat.chat.completions.create(model="claude", messages=HELLO, stream=True,
                                               stream_options={"include_usage": True}, extra_headers=headers,
                                               user=steer(end_gate=gate)["user_id"]))
    assert chunks[-1].usage is not None
    claude.open_gate(gate)
    prompt, completion, _ = messages_usage(claude.seen[-1].sent)
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "chat/completions")


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_tool_calls_from_an_anthropic_deployment_and_the_results_back(
        chat: openai.OpenAI, claude: FakeAnthropic, gateway: Gateway, admin: aiohttp.ClientSession,
        streamed: bool) -> None:
    """The fake Anthropic refuses a tool_result that answers no tool_use of the turn before."""
    asked: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    if streamed:
        chunks = list(chat.chat.completions.create(model="claude", messages=asked, tools=[WEATHER_FUNCTION],
                                                   stream=True))
        pieces = [call.function.arguments for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()
                  if call.function and call.function.arguments]
        assert len(pieces) > 1  # the arguments streamed in pieces, as Anthropic's input_json_delta
        starts = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or () if call.id]
        call_id, name, arguments = starts[0].id, starts[0].function.name, "".join(pieces)  # type: ignore[union-attr]
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    else:
        message = chat.chat.completions.create(model="claude", messages=asked, tools=[WEATHER_FUNCTION])
        call = message.choices[0].message.tool_calls[0]  # type: ignore[index]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments  # type: ignore[union-attr]
        content, finish = message.choices[0].message.content or "", message.choices[0].finish_reason
    assert (name, orjson.loads(arguments), finish) == ("get_weather", {"location": "Paris"}, "tool_calls")
    assert claude.seen[-1].body["tools"] == [WEATHER]
    headers = rid()
    answer = chat.chat.completions.create(model="claude", tools=[WEATHER_FUNCTION], extra_headers=headers, messages=[
        *asked, {"role": "assistant", "content": content, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "21 degrees"}])
    seen = claude.seen[-1]
    assert seen.status == 200 and seen.body["messages"][-1] == {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "21 degrees"}]}
    assert answer.choices[0].message.content == "The tool said: 21 degrees"
    prompt, completion, _ = messages_usage(seen.sent)
    await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "chat/completions")


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_prompt_caching_through_cache_control_reaches_openai_clients_as_cached_tokens(
        chat: openai.OpenAI, claude: FakeAnthropic, gateway: Gateway, admin: aiohttp.ClientSession,
        streamed: bool) -> None:
    system = {"role": "system", "content": [{"type": "text", "text": f"You know {uuid.uuid4().hex}. " * 40,
                                             "cache_control": {"type": "ephemeral"}}]}
    found = []
    for _ in range(2):
        headers = rid()
        if streamed:
            chunks = list(chat.chat.completions.create(model="claude", messages=[system, *HELLO], stream=True,
                                                       stream_options={"include_usage": True},
                                                       extra_headers=headers))
            usage = chunks[-1].usage
        else:
            usage = chat.chat.completions.create(model="claude", messages=[system, *HELLO],
                                                 extra_headers=headers).usage
        assert usage is not None and usage.prompt_tokens_details is not None
        prompt, completion, read = messages_usage(claude.seen[-1].sent)
        assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (prompt, read)
        await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "chat/completions")
        found.append(read)
    assert claude.seen[-1].body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert found[0] == 0 and found[1] > 0


@pytest.mark.parametrize("route", ["chat", "messages"])
@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("ttl", ["5m", "1h"])
async def test_cache_writes_and_reads_are_charged_at_their_own_prices(
        chat: openai.OpenAI, client: anthropic.Anthropic, claude: FakeAnthropic, gateway: Gateway,
        admin: aiohttp.ClientSession, route: str, streamed: bool, ttl: str) -> None:
    """A prompt cached for five minutes or an hour: written at its own price the first time, read at the
    read price the second, whether an OpenAI client reaches Anthropic through translation or an Anthropic
    client through the byte-for-byte relay."""
    marker = {"type": "ephemeral", **({"ttl": "1h"} if ttl == "1h" else {})}
    text = f"You know {uuid.uuid4().hex}. " * 40
    seen = []
    for _ in range(2):
        headers = rid()
        if route == "chat":
            system = {"role": "system", "content": [{"type": "text", "text": text, "cache_control": marker}]}
            if streamed:
                list(chat.chat.completions.create(model="claude-cache-priced", messages=[system, *HELLO],
                                                  stream=True, extra_headers=headers))
            else:
                chat.chat.completions.create(model="claude-cache-priced", messages=[system, *HELLO],
                                             extra_headers=headers)
            call_type = "chat/completions"
        else:
            blocks: Any = [{"type": "text", "text": text, "cache_control": marker}]
            if streamed:
                with client.messages.stream(model="claude-cache-priced", max_tokens=64, system=blocks,
                                            messages=HELLO, extra_headers=headers) as stream:
                    stream.until_done()
            else:
                client.messages.create(model="claude-cache-priced", max_tokens=64, system=blocks, messages=HELLO,
                                       extra_headers=headers)
            call_type = "messages"
        usage = anthropic_usage_sent(claude.seen[-1].sent)
        record = await spend_record(admin, gateway, headers["X-Request-ID"], ADMIN)
        seen.append((usage, record))
    (written, first), (read, second) = seen
    hour_written = written["cache_creation"]["ephemeral_1h_input_tokens"]
    assert written["cache_creation_input_tokens"] > 0 and written["cache_read_input_tokens"] == 0
    assert hour_written == (written["cache_creation_input_tokens"] if ttl == "1h" else 0)
    assert read["cache_read_input_tokens"] == written["cache_creation_input_tokens"]
    write_price = WRITE_HOUR_PRICE if ttl == "1h" else WRITE_PRICE
    assert first["spend"] == pytest.approx(written["input_tokens"] * IN_PRICE + written["output_tokens"] * OUT_PRICE
                                           + written["cache_creation_input_tokens"] * write_price)
    assert second["spend"] == pytest.approx(read["input_tokens"] * IN_PRICE + read["output_tokens"] * OUT_PRICE
                                            + read["cache_read_input_tokens"] * READ_PRICE)
    assert first["call_type"] == second["call_type"] == call_type


def test_reasoning_effort_is_a_thinking_budget_and_signed_thinking_goes_back(
        chat: openai.OpenAI, claude: FakeAnthropic) -> None:
    first = chat.chat.completions.create(model="claude", messages=HELLO, reasoning_effort="low")
    assert claude.seen[-1].body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    message = first.choices[0].message
    extra = message.model_extra or {}
    assert extra["reasoning_content"] and extra["thinking_blocks"][0]["signature"].startswith("sig_")
    assert first.usage is not None and first.usage.completion_tokens_details is not None
    assert first.usage.completion_tokens_details.reasoning_tokens == len(THOUGHT) // 4
    chat.chat.completions.create(model="claude", reasoning_effort="low", messages=[
        *HELLO, {"role": "assistant", "content": message.content, "thinking_blocks": extra["thinking_blocks"]},
        {"role": "user", "content": "and again"}])  # type: ignore[misc]
    seen = claude.seen[-1]
    assert seen.status == 200 and seen.body["messages"][1]["content"][0]["type"] == "thinking"


async def test_anthropic_errors_raise_the_openai_sdks_own(chat: openai.OpenAI, claude: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        chat.chat.completions.create(model="claude", messages=HELLO,
                                     user=steer(status=400, message="prompt is not allowed")["user_id"])
    assert refused.value.body == {"message": "prompt is not allowed", "type": "invalid_request_error",
                                  "param": None, "code": "400"}
    before = len(claude.seen)
    with pytest.raises(openai.BadRequestError) as not_said:
        chat.chat.completions.create(model="claude", messages=HELLO, n=2)
    assert not_said.value.body["param"] == "n"  # type: ignore[index]
    assert not_said.value.response.headers["x-should-retry"] == "false"
    assert len(claude.seen) == before
    with pytest.raises(openai.APIError) as in_stream:
        list(chat.chat.completions.create(model="claude", messages=HELLO, stream=True,
                                          user=steer(error_after=4)["user_id"]))
    assert in_stream.value.message == "Overloaded"


# ---- every content type, both ways ---------------------------------------------------------------------

def test_every_content_type_reaches_an_openai_compatible_deployment(
        client: anthropic.Anthropic, vllm: VllmUpstream) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    first = client.messages.create(model="qwen", max_tokens=256, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"}])
    call = next(block for block in first.content if block.type == "tool_use")
    answer = client.messages.create(model="qwen", max_tokens=256, tools=[WEATHER], messages=[
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"}, image,
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
             "title": "a.pdf"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}]},
        {"role": "system", "content": "Answer in French."},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "21 degrees"},
                                                                         image], "is_error": False},
            {"type": "text", "text": "and?"}]}])
    assert answer.content[0].text == "The tool said: 21 degrees"  # type: ignore[union-attr]
    assert vllm.seen[-1].body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
            {"type": "text", "text": "plain words"}]},
        {"role": "system", "content": "Answer in French."},
        {"role": "assistant", "content": "I'll ask get_weather.", "tool_calls": [
            {"id": call.id, "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
             "type": "function"}]},
        {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                     {"type": "text", "text": "and?"}]}]


def test_every_content_type_reaches_an_anthropic_deployment(chat: openai.OpenAI, claude: FakeAnthropic) -> None:
    text_file = base64.b64encode(b"plain words").decode()
    first = chat.chat.completions.create(model="claude", tools=[WEATHER_FUNCTION], messages=[
        {"role": "user", "content": "Weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    answer = chat.chat.completions.create(model="claude", tools=[WEATHER_FUNCTION], messages=[
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_data": f"data:text/plain;base64,{text_file}", "filename": "a.txt"}}]},
        {"role": "assistant", "content": first.choices[0].message.content, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.function.name,  # type: ignore[union-attr]
                                                               "arguments": call.function.arguments}}]},  # type: ignore[union-attr]
        {"role": "tool", "tool_call_id": call.id, "content": [{"type": "text", "text": "21 degrees"}]},
        {"role": "user", "content": "and?"}])  # type: ignore[list-item]
    assert answer.choices[0].message.content == "The tool said: 21 degrees"
    seen = claude.seen[-1]
    assert seen.status == 200
    assert seen.body["system"] == [{"type": "text", "text": "Answer in French."}]
    assert seen.body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
             "title": "a.pdf"},
            {"type": "document", "source": {"type": "text", "data": "plain words", "media_type": "text/plain"},
             "title": "a.txt"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "I'll ask get_weather."},
            {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"location": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "21 degrees"}]},
            {"type": "text", "text": "and?"}]}]


# ---- groups, retries and fallbacks across the two APIs -------------------------------------------------

async def test_a_mixed_group_serves_both_apis_from_either_deployment(
        client: anthropic.Anthropic, chat: openai.OpenAI, vllm: VllmUpstream, claude: FakeAnthropic,
        gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    """Deployments are picked at random: requests go on until each deployment has answered each API (the chance
    that 40 of one API all land on one deployment is 2 in 2^40), every answer whole and charged exactly."""
    served: set[tuple[str, str]] = set()
    for attempt in range(40):
        if len(served) == 4:
            break
        headers = rid()
        before = (len(vllm.seen), len(claude.seen))
        if attempt % 2:
            text = client.messages.create(model="mixed", max_tokens=32, messages=HELLO,
                                          extra_headers=headers).content[0].text  # type: ignore[union-attr]
            api, call_type = "messages", "messages"
        else:
            text = chat.chat.completions.create(model="mixed", messages=HELLO,
                                                extra_headers=headers).choices[0].message.content or ""
            api, call_type = "chat", "chat/completions"
        if len(vllm.seen) > before[0]:
            served.add((api, "vllm"))
            assert text == "qwen says hi"
            prompt, completion, _ = chat_usage(vllm.seen[-1].sent)
        else:
            assert len(claude.seen) > before[1]
            served.add((api, "anthropic"))
            assert text == "claude says hi"
            prompt, completion, _ = messages_usage(claude.seen[-1].sent)
        await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, call_type)
    assert served == {("messages", "vllm"), ("messages", "anthropic"), ("chat", "vllm"), ("chat", "anthropic")}


async def test_in_a_mixed_group_what_only_one_api_can_say_goes_to_the_deployment_that_speaks_it(
        client: anthropic.Anthropic, chat: openai.OpenAI, vllm: VllmUpstream, claude: FakeAnthropic,
        gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    """A server tool only Anthropic runs, and audio only OpenAI-style servers take: each lands on the one
    deployment that can take it, whichever was picked first, charged once; the other is not cooled down."""
    web_search = [{"type": "web_search_20250305", "name": "web_search"}]
    for _ in range(12):
        headers = rid()
        before = (len(vllm.seen), len(claude.seen))
        raw = client.messages.with_raw_response.create(model="mixed", max_tokens=32, messages=HELLO,
                                                       tools=web_search, extra_headers=headers)
        assert raw.parse().content[0].type == "text" and f":{claude.port}" in raw.headers["x-litellm-model-api-base"]
        assert (len(vllm.seen), len(claude.seen)) == (before[0], before[1] + 1)
        assert claude.seen[-1].body["tools"] == web_search
        assert raw.headers["x-litellm-attempted-retries"] == "0"
        prompt, completion, _ = messages_usage(claude.seen[-1].sent)
        await charged(admin, gateway, headers["X-Request-ID"], prompt, completion, "messages")
    audio = [{"role": "user", "content": [{"type": "text", "text": "What is said?"}, {
        "type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}}]}]
    for _ in range(12):
        before = (len(vllm.seen), len(claude.seen))
        answer = chat.chat.completions.create(model="mixed", messages=audio)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "qwen says hi"
        assert (len(vllm.seen), len(claude.seen)) == (before[0] + 1, before[1])
    served = set()
    for _ in range(40):  # neither deployment was cooled down by the requests it could not take
        before = len(vllm.seen)
        client.messages.create(model="mixed", max_tokens=32, messages=HELLO)
        served.add("vllm" if len(vllm.seen) > before else "anthropic")
        if len(served) == 2:
            break
    assert served == {"vllm", "anthropic"}
    with pytest.raises(anthropic.BadRequestError) as alone:  # a group with no deployment that can take it
        client.messages.create(model="qwen", max_tokens=16, messages=HELLO, tools=web_search)
    assert "tools[0]" in alone.value.message


def test_an_overloaded_native_deployment_falls_back_to_an_openai_compatible_one(
        client: anthropic.Anthropic, chat: openai.OpenAI, overloaded: FakeAnthropic, vllm: VllmUpstream,
        claude: FakeAnthropic) -> None:
    before = len(overloaded.seen)
    raw = client.messages.with_raw_response.create(model="claude-busy", max_tokens=32, messages=HELLO)
    assert raw.parse().content[0].text == "qwen says hi"  # type: ignore[union-attr]
    assert raw.headers["x-litellm-attempted-fallbacks"] == "1"
    assert len(overloaded.seen) == before + 1 and vllm.seen[-1].path == "/v1/chat/completions"
    with client.messages.stream(model="claude-busy", max_tokens=32, messages=HELLO) as stream:
        assert "".join(stream.text_stream) == "qwen says hi"
    # Within a group: the native one answers 529, the retry goes to the other API's.
    for _ in range(6):
        assert client.messages.create(model="pair", max_tokens=16, messages=HELLO).content[0].text \
            == "qwen says hi"  # type: ignore[union-attr]
    # And the other way: chat to a vLLM that is gone falls back to Anthropic's Messages API.
    raw_chat = chat.chat.completions.with_raw_response.create(model="qwen-gone", messages=HELLO)
    assert raw_chat.parse().choices[0].message.content == "claude says hi"
    assert claude.seen[-1].path == "/v1/messages" and raw_chat.headers["x-litellm-attempted-fallbacks"] == "1"


# ---- the mock, and mock_response -----------------------------------------------------------------------

@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_the_mock_answers_the_messages_api_through_the_translation(
        client: anthropic.Anthropic, claude: FakeAnthropic, gateway: Gateway, admin: aiohttp.ClientSession,
        streamed: bool) -> None:
    before = len(claude.seen)
    for model, extra in (("mocked", {}), ("claude", {"mock_response": "canned"}), ("qwen", {"mock_response": "x y"})):
        headers = rid()
        if streamed:
            with client.messages.stream(model=model, max_tokens=32, messages=HELLO, extra_body=extra,
                                        extra_headers=headers) as stream:
                message = stream.get_final_message()
        else:
            message = client.messages.create(model=model, max_tokens=32, messages=HELLO, extra_body=extra,
                                             extra_headers=headers)
        assert message.content[0].text == extra.get("mock_response", "hello")  # type: ignore[union-attr]
        assert message.usage.output_tokens > 0 and message.stop_reason == "end_turn"
        record = await spend_record(admin, gateway, headers["X-Request-ID"], ADMIN)
        assert record["completion_tokens"] == message.usage.output_tokens and record["status"] == "success"
    assert len(claude.seen) == before  # nothing was sent


# ---- the gateway's own refusals ------------------------------------------------------------------------

async def test_refusals_a_retry_cannot_fix_say_so_and_the_sdks_do_not_retry(
        gateway: Gateway, admin: aiohttp.ClientSession) -> None:
    wrong = {"x-api-key": "sk-no-such-key"}
    body = {"model": "claude", "max_tokens": 16, "messages": HELLO}
    async with admin.post(f"{gateway.url}/v1/messages", json=body, headers=wrong) as r:
        assert (r.status, r.headers.get("x-should-retry")) == (401, "false")
    async with admin.post(f"{gateway.url}/v1/chat/completions", json={"model": "nope", "messages": HELLO},
                          headers=ADMIN) as r:
        assert (r.status, r.headers.get("x-should-retry")) == (404, "false")
    async with admin.post(f"{gateway.url}/key/generate", json={"rpm_limit": 1}, headers=ADMIN) as r:
        limited = (await r.json())["key"]
    for expected in (200, 429):
        async with admin.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": limited}) as r:
            assert r.status == expected
    assert "x-should-retry" not in r.headers and r.headers["retry-after"]  # a rate limit passes: retry later
    async with admin.post(f"{gateway.url}/key/generate", json={"max_budget": 0}, headers=ADMIN) as r:
        broke = (await r.json())["key"]
    # The SDKs read it: with retries allowed, one request is made (the access log counts them).
    with anthropic.Anthropic(base_url=gateway.url, api_key=broke, max_retries=3) as sdk, \
            pytest.raises(anthropic.RateLimitError) as over_budget:
        sdk.messages.create(model="claude", max_tokens=16, messages=HELLO, extra_headers=rid())
    assert over_budget.value.response.headers["x-should-retry"] == "false"
    request_id = over_budget.value.response.headers["x-request-id"]
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-no-such-key", max_retries=3) as sdk, \
            pytest.raises(openai.AuthenticationError) as refused:
        sdk.chat.completions.create(model="claude", messages=HELLO, extra_headers=rid())
    for seen in (request_id, refused.value.response.headers["x-request-id"]):
        await _logged(gateway, seen)
        assert gateway.log().count(f": {seen} POST") == 1


async def _logged(gw: Gateway, request_id: str, patience: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while f": {request_id} POST" not in gw.log():
        assert loop.time() < deadline, f"{request_id} not in the access log"
        await asyncio.sleep(0.05)


# ---- Claude Code's metadata.user_id --------------------------------------------------------------------

async def test_claude_codes_sessions_are_one_end_user(gateway: Gateway, client: anthropic.Anthropic,
                                                       claude: FakeAnthropic, admin: aiohttp.ClientSession) -> None:
    device = uuid.uuid4().hex * 2
    account = str(uuid.uuid4())
    spent = 0.0
    for user_id in (orjson.dumps({"device_id": device, "account_uuid": "", "session_id": str(uuid.uuid4())}),
                    orjson.dumps({"device_id": device, "account_uuid": "", "session_id": str(uuid.uuid4())}),
                    f"user_{device}_account__session_{uuid.uuid4()}".encode()):
        raw = client.messages.with_raw_response.create(model="claude", max_tokens=16, messages=HELLO,
                                                       metadata={"user_id": user_id.decode()})
        spent += float(raw.headers["x-litellm-response-cost"])
        assert claude.seen[-1].body["metadata"] == {"user_id": user_id.decode()}  # sent on untouched
    raw = client.messages.with_raw_response.create(model="claude", max_tokens=16, messages=HELLO, metadata={
        "user_id": orjson.dumps({"device_id": device, "account_uuid": account, "session_id": "s"}).decode()})
    for end_user, expected in ((device, spent), (account, float(raw.headers["x-litellm-response-cost"]))):
        assert await _end_user_spend(admin, gateway, end_user, expected) == pytest.approx(expected)


async def _end_user_spend(http: aiohttp.ClientSession, gw: Gateway, end_user: str, expected: float) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    spend = 0.0
    while loop.time() < deadline:
        async with http.get(f"{gw.url}/end_user/info", params={"end_user_id": end_user}, headers=ADMIN) as r:
            found = await r.json()
        spend = float(found.get("info", found).get("spend") or 0.0) if r.status == 200 else 0.0
        if spend == pytest.approx(expected):
            break
        await asyncio.sleep(0.1)
    return spend
