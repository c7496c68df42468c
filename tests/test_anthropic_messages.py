"""Anthropic's Messages API through the gateway, with the official `anthropic` SDK as the client and a fake
Anthropic upstream that checks every request as Anthropic does (tests/anthropic_fake.py).

The answer reaches the client as the upstream wrote it, byte for byte; keys, model access, limits and
budgets apply as for chat; every error is in Anthropic's shape and raises the SDK's own type.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.anthropic.requests import prompt_tokens
from tests.anthropic_fake import KEY, FakeAnthropic, steer
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, spend_record

MASTER = "sk-messages-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
IN_PRICE, OUT_PRICE = 0.000003, 0.000015
HELLO = [{"role": "user", "content": "hello"}]
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                            "required": ["location"]}}


def native(name: str, fake: FakeAnthropic, **params: Any) -> dict[str, Any]:
    # Cache reads and writes priced as input, so the cost is the same whichever way they are priced.
    prices = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE,
              "cache_read_input_token_cost": IN_PRICE, "cache_creation_input_token_cost": IN_PRICE}
    return {"model_name": name, "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": fake.api_base,
                                                   "api_key": KEY, **prices, **params}}


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
def gateway(claude: FakeAnthropic, overloaded: FakeAnthropic, upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "model_list": [
            native("claude", claude),
            native("claude-metered", claude),
            native("claude-pair", claude), native("claude-pair", overloaded),
            native("claude-down", overloaded, num_retries=0),
            native("claude-overloaded", overloaded, num_retries=0),
            # LiteLLM's other way to write it: the Messages API's full URL, and the key from ANTHROPIC_API_KEY.
            {"model_name": "claude-env", "litellm_params": {"model": "anthropic/claude-haiku-4-5",
                                                            "api_base": f"{claude.api_base}/v1/messages"}},
            deployment("gpt", upstream.base_url),
            {"model_name": "claude-compat", "litellm_params": {
                "model": "anthropic_openai/claude-sonnet-4-5", "api_base": upstream.base_url, "api_key": "sk-ant-x"}},
        ],
        "router_settings": {"num_retries": 3, "fallbacks": [{"claude-down": ["claude"]}],
                            "model_group_alias": {"sonnet": "claude"}},
        "litellm_settings": {"callbacks": ["prometheus"]},
        "general_settings": {"master_key": MASTER, "max_request_size_mb": 1},
        "gateway_settings": {"path_prefixes": [PREFIX]},
    }
    gw = Gateway(config, env={"ANTHROPIC_API_KEY": KEY})
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    # No retries: a failure must surface as the gateway answered it, once.
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
async def admin_http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def usage_in(sent: bytes) -> tuple[int, int, int, int]:
    """(prompt tokens as OpenAI counts them, output, cache read, cache written) from what the fake sent."""
    found: dict[str, Any] = {}
    if sent.startswith(b"{"):
        found = orjson.loads(sent)["usage"]
    else:
        for line in sent.replace(b"\r\n", b"\n").split(b"\n"):
            data = line[5:].strip() if line.startswith(b"data:") else b""
            event = orjson.loads(data) if data else {}
            if event.get("type") == "message_start":
                found.update(event["message"]["usage"])
            elif event.get("type") == "message_delta":
                found.update({k: v for k, v in event["usage"].items() if v is not None})
    read, written = found.get("cache_read_input_tokens") or 0, found.get("cache_creation_input_tokens") or 0
    return found["input_tokens"] + read + written, found["output_tokens"], read, written


async def assert_charged(http: aiohttp.ClientSession, gw: Gateway, request_id: str, sent: bytes,
                         call_type: str = "messages") -> dict[str, Any]:
    record = await spend_record(http, gw, request_id, ADMIN)
    prompt, output, _, _ = usage_in(sent)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (prompt, output)
    assert record["metadata"]["usage_estimated"] is False
    assert record["spend"] == pytest.approx(prompt * IN_PRICE + output * OUT_PRICE)
    assert record["call_type"] == call_type and record["status"] == "success"
    return record


async def test_create_relays_the_message_byte_for_byte_and_charges_it(
        client: anthropic.Anthropic, claude: FakeAnthropic, gateway: Gateway,
        admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    raw = client.messages.with_raw_response.create(model="claude", max_tokens=64, messages=HELLO,
                                                   extra_headers={"X-Request-ID": request_id})
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text == "claude says hi"
    assert message.model == "claude-sonnet-4-5" and message.stop_reason == "end_turn"
    seen = claude.seen[-1]
    assert raw.http_response.content == seen.sent
    assert seen.body == {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": HELLO}
    assert seen.headers["x-api-key"] == KEY and "Authorization" not in seen.headers
    assert raw.headers["x-litellm-model-group"] == "claude"
    # Anthropic's own headers under their own names, as the SDK reads them (and under llm_provider-, as LiteLLM's).
    assert message._request_id == raw.headers["llm_provider-request-id"] == f"req_claude_{len(claude.seen)}"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "3999"
    await assert_charged(admin_http, gateway, request_id, seen.sent)


async def test_a_stream_reaches_the_sdk_byte_for_byte_and_is_charged_from_its_events(
        client: anthropic.Anthropic, claude: FakeAnthropic, gateway: Gateway,
        admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    with client.messages.stream(model="claude", max_tokens=64, messages=HELLO,
                                extra_headers={"X-Request-ID": request_id}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "claude says hi"
    assert final.usage.output_tokens > 0
    with client.messages.with_streaming_response.create(model="claude", max_tokens=64, messages=HELLO,
                                                        stream=True) as response:
        got = b"".join(response.iter_bytes())
        assert response.request_id == "req_claude"
    assert got == claude.seen[-1].sent
    events = [event.type for event in client.messages.create(model="claude", max_tokens=64, messages=HELLO,
                                                             stream=True)]
    assert events[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    await assert_charged(admin_http, gateway, request_id, claude.seen[-3].sent)


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_a_tool_round_trip(client: anthropic.Anthropic, claude: FakeAnthropic, streamed: bool) -> None:
    """The fake refuses a tool_result that answers no tool_use of the turn before: the round trip holds only if
    the gateway relays the tool call and the client's answer to it untouched."""
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    if streamed:
        with client.messages.stream(model="claude", max_tokens=256, messages=asked, tools=[WEATHER]) as stream:
            first = stream.get_final_message()
    else:
        first = client.messages.create(model="claude", max_tokens=256, messages=asked, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"location": "Paris"}
    answer = client.messages.create(model="claude", max_tokens=256, tools=[WEATHER], messages=[
        *asked, {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "21 degrees"}]}])
    assert claude.seen[-1].status == 200
    assert answer.content[0].type == "text" and answer.content[0].text == "The tool said: 21 degrees"


def test_a_mid_conversation_system_message_reaches_anthropic_as_sent(client: anthropic.Anthropic,
                                                                      claude: FakeAnthropic) -> None:
    """Claude Code's `role: "system"` message after a user turn; the fake refuses one anywhere else, as Anthropic
    does, and that refusal reaches the client as written."""
    messages: list[Any] = [*HELLO, {"role": "system", "content": "Answer in French."}]
    assert client.messages.create(model="claude", max_tokens=16, messages=messages).content[0].type == "text"
    assert claude.seen[-1].body["messages"] == messages and claude.seen[-1].status == 200
    with pytest.raises(anthropic.BadRequestError) as first:
        client.messages.create(model="claude", max_tokens=16, messages=[{"role": "system", "content": "x"}, *HELLO])
    assert "immediately after a user message" in shape_of(first.value)[1]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_thinking_blocks_pass_through_and_back(client: anthropic.Anthropic, claude: FakeAnthropic,
                                                streamed: bool) -> None:
    """The fake accepts a thinking block back only with the signature it gave: it must arrive unchanged."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    if streamed:
        with client.messages.stream(model="claude", max_tokens=2048, messages=HELLO, thinking=thinking) as stream:
            kinds = [event.type for event in stream]
            first = stream.get_final_message()
        assert "thinking" in kinds and "signature" in kinds
    else:
        first = client.messages.create(model="claude", max_tokens=2048, messages=HELLO, thinking=thinking)
    block = first.content[0]
    assert block.type == "thinking" and block.thinking and block.signature.startswith("sig_")
    again = client.messages.create(model="claude", max_tokens=2048, thinking=thinking, messages=[
        *HELLO, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "and again"}])
    assert claude.seen[-1].status == 200 and again.content[0].type == "thinking"


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
async def test_prompt_caching_reaches_the_client_and_the_spend_record(
        client: anthropic.Anthropic, claude: FakeAnthropic, gateway: Gateway, admin_http: aiohttp.ClientSession,
        streamed: bool) -> None:
    system = [{"type": "text", "text": f"You know {uuid.uuid4().hex} by heart. " * 40,
               "cache_control": {"type": "ephemeral"}}]
    found = []
    for _ in range(2):
        request_id = uuid.uuid4().hex
        if streamed:
            with client.messages.stream(model="claude", max_tokens=64, system=system, messages=HELLO,
                                        extra_headers={"X-Request-ID": request_id}) as stream:
                usage = stream.get_final_message().usage
        else:
            usage = client.messages.create(model="claude", max_tokens=64, system=system, messages=HELLO,
                                           extra_headers={"X-Request-ID": request_id}).usage
        record = await assert_charged(admin_http, gateway, request_id, claude.seen[-1].sent)
        found.append((usage, record))
    (written, first), (read, second) = found
    assert written.cache_creation_input_tokens and not written.cache_read_input_tokens
    assert read.cache_read_input_tokens == written.cache_creation_input_tokens and not read.cache_creation_input_tokens
    # OpenAI's accounting: the prompt counts the cached tokens, read or written.
    assert first["prompt_tokens"] == written.input_tokens + written.cache_creation_input_tokens
    assert second["prompt_tokens"] == read.input_tokens + read.cache_read_input_tokens


async def test_count_tokens_is_forwarded_to_a_native_deployment_and_never_charged(
        client: anthropic.Anthropic, claude: FakeAnthropic, gateway: Gateway,
        admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    raw = client.messages.with_raw_response.count_tokens(model="claude", messages=HELLO, system="be brief",
                                                         extra_headers={"X-Request-ID": request_id})
    seen = claude.seen[-1]
    assert seen.path == "/v1/messages/count_tokens"
    assert seen.body == {"model": "claude-sonnet-4-5", "messages": HELLO, "system": "be brief"}
    assert raw.http_response.content == seen.sent
    assert raw.parse().input_tokens == orjson.loads(seen.sent)["input_tokens"]
    record = await spend_record(admin_http, gateway, request_id, ADMIN)
    assert (record["call_type"], record["spend"], record["total_tokens"]) == ("messages/count_tokens", 0, 0)


async def test_count_tokens_elsewhere_is_the_gateways_estimate(
        client: anthropic.Anthropic, upstream: FakeUpstream) -> None:
    before = len(upstream.seen)
    body: dict[str, Any] = {"model": "gpt", "messages": HELLO, "system": "be brief " * 20, "tools": [WEATHER]}
    counted = client.messages.count_tokens(**body)
    assert counted.input_tokens == prompt_tokens(body)
    assert len(upstream.seen) == before  # no upstream was asked
    shorter = client.messages.count_tokens(model="gpt", messages=HELLO)
    assert shorter.input_tokens < counted.input_tokens  # the system prompt and the tools count


async def test_anthropic_headers_go_upstream_and_the_clients_key_does_not(
        gateway: Gateway, claude: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    body = {"model": "claude", "max_tokens": 16, "messages": HELLO}
    headers = {"x-api-key": MASTER, "anthropic-version": "2023-06-01",
               "anthropic-beta": "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19"}
    async with http.post(f"{gateway.url}/v1/messages?beta=true", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
    seen = claude.seen[-1]
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == headers["anthropic-beta"]
    assert seen.headers["x-api-key"] == KEY and seen.query == ""
    async with http.post(f"{gateway.url}/v1/messages", json=body, headers={"Authorization": f"Bearer {MASTER}"}) as r:
        assert r.status == 200
    assert claude.seen[-1].headers["anthropic-version"] == "2023-06-01"  # the gateway's default
    assert "anthropic-beta" not in claude.seen[-1].headers


def test_the_key_from_the_environment_and_the_full_url_of_the_messages_api(client: anthropic.Anthropic,
                                                                         claude: FakeAnthropic) -> None:
    assert client.messages.create(model="claude-env", max_tokens=16, messages=HELLO).model == "claude-haiku-4-5"
    seen = claude.seen[-1]
    assert (seen.path, seen.headers["x-api-key"], seen.status) == ("/v1/messages", KEY, 200)


def test_a_bearer_token_carries_the_key_as_x_api_key_does(gateway: Gateway) -> None:
    """Claude Code sends ANTHROPIC_AUTH_TOKEN as `Authorization: Bearer`; the SDK's api_key goes as x-api-key."""
    with anthropic.Anthropic(base_url=gateway.url, auth_token=MASTER, max_retries=0) as sdk:
        assert sdk.messages.create(model="claude", max_tokens=16, messages=HELLO).content[0].type == "text"
    with anthropic.Anthropic(base_url=gateway.url, auth_token="sk-wrong-key", max_retries=0) as sdk, \
            pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model="claude", max_tokens=16, messages=HELLO)


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


def shape_of(error: anthropic.APIStatusError) -> tuple[str, str]:
    body = error.body
    assert isinstance(body, dict) and body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]["type"], body["error"]["message"]


async def test_the_gateways_refusals_raise_the_sdks_own_errors(
        gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    def create(key: str, model: str = "claude") -> None:
        with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0) as sdk:
            sdk.messages.create(model=model, max_tokens=16, messages=HELLO)

    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        create("sk-no-such-key")
    assert shape_of(bad_key.value)[0] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as unknown:
        create(MASTER, "claude-nonexistent")
    kind, message = shape_of(unknown.value)
    assert kind == "not_found_error" and "claude-nonexistent" in message
    narrow = await new_key(admin_http, gateway, models=["gpt"])
    with pytest.raises(anthropic.AuthenticationError) as denied:
        create(narrow)
    assert "not allowed to access model" in shape_of(denied.value)[1]
    limited = await new_key(admin_http, gateway, rpm_limit=1)
    create(limited)
    with pytest.raises(anthropic.RateLimitError) as limited_error:
        create(limited)
    assert shape_of(limited_error.value)[0] == "rate_limit_error"
    assert limited_error.value.response.headers["retry-after"]
    broke = await new_key(admin_http, gateway, max_budget=0.000001)
    with pytest.raises(anthropic.RateLimitError) as over_budget:
        create(broke)
    kind, message = shape_of(over_budget.value)
    assert kind == "rate_limit_error" and message.startswith("Budget has been exceeded!")


async def test_bad_bodies_and_paths_are_answered_in_anthropics_shape(gateway: Gateway,
                                                                    http: aiohttp.ClientSession) -> None:
    headers = {"x-api-key": MASTER}
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "Invalid JSON"),
        (orjson.dumps({"model": "claude", "messages": HELLO}), "max_tokens: Field required"),
        (orjson.dumps({"model": "claude", "max_tokens": 0, "messages": HELLO}), "max_tokens"),
        (orjson.dumps({"max_tokens": 5, "messages": HELLO}), "model: Field required"),
        (orjson.dumps({"model": "claude", "max_tokens": 5, "messages": []}), "messages"),
        (orjson.dumps({"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": [7]}]}),
         "content block"),
    ]
    for raw, words in cases:
        async with http.post(f"{gateway.url}/v1/messages", data=raw, headers=headers) as r:
            body = await r.json()
            assert r.status == 400, body
            assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            assert words in body["error"]["message"]
    async with http.get(f"{gateway.url}{PREFIX}/v1/messages", headers=headers) as r:
        assert r.status == 405
        assert (await r.json())["error"]["type"] == "invalid_request_error"
    async with http.post(f"{gateway.url}/v1/messages/batches", json={}, headers=headers) as r:
        assert r.status == 404
        assert (await r.json())["error"]["type"] == "not_found_error"
    async with http.post(f"{gateway.url}/v1/messages", data=io.BytesIO(b"x" * (1024 * 1024 + 1)), headers=headers) as r:
        assert r.status == 413
        assert (await r.json())["error"]["type"] == "request_too_large"
    assert "Traceback" not in gateway.log()


def test_a_body_over_the_size_limit_raises_content_too_large(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.ContentTooLargeError) as too_large:
        client.messages.create(model="claude", max_tokens=16, messages=[{"role": "user", "content": "x" * 1_100_000}])
    assert shape_of(too_large.value)[0] == "request_too_large"


def test_an_upstream_error_reaches_the_client_as_anthropic_wrote_it(client: anthropic.Anthropic,
                                                                   claude: FakeAnthropic,
                                                                   overloaded: FakeAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="claude", max_tokens=16, messages=HELLO,
                               metadata=steer(status=400, message="prompt is not allowed"))
    assert refused.value.response.content == claude.seen[-1].sent
    assert shape_of(refused.value) == ("invalid_request_error", "prompt is not allowed")
    with pytest.raises(anthropic.OverloadedError) as busy:
        client.messages.create(model="claude-overloaded", max_tokens=16, messages=HELLO)
    assert busy.value.response.content == overloaded.seen[-1].sent
    assert shape_of(busy.value)[0] == "overloaded_error"


def test_overloaded_deployments_are_retried_cooled_down_and_fallen_back_from(
        client: anthropic.Anthropic, overloaded: FakeAnthropic) -> None:
    before = len(overloaded.seen)
    for _ in range(20):
        assert client.messages.create(model="claude-pair", max_tokens=16, messages=HELLO).content[0].text \
            == "claude says hi"
    # Some went to the overloaded one first and were retried on the other; past allowed_fails it rests.
    assert 1 <= len(overloaded.seen) - before <= 4
    raw = client.messages.with_raw_response.create(model="claude-down", max_tokens=16, messages=HELLO)
    assert raw.parse().content[0].text == "claude says hi"
    assert raw.headers["x-litellm-attempted-fallbacks"] == "1"


async def test_a_stream_that_breaks_off_ends_with_anthropics_error_event(
        gateway: Gateway, claude: FakeAnthropic, http: aiohttp.ClientSession, client: anthropic.Anthropic) -> None:
    body = {"model": "claude", "max_tokens": 64, "messages": HELLO, "stream": True, "metadata": steer(drop_after=4)}
    async with http.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": MASTER}) as r:
        got = await r.read()
    sent = claude.seen[-1].sent
    assert got.startswith(sent) and claude.seen[-1].outcome == "dropped"
    rest = got[len(sent):]
    assert rest.startswith(b"event: error\ndata: ") and rest.endswith(b"\n\n")
    error = orjson.loads(rest.split(b"data: ", 1)[1])
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    assert "broke off the stream" in error["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model="claude", max_tokens=64, messages=HELLO,
                                    metadata=steer(drop_after=4)) as stream:
            stream.get_final_message()
    assert "broke off the stream" in str(raised.value)


async def test_an_upstreams_error_event_passes_through_and_fails_the_request(
        gateway: Gateway, claude: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    body = {"model": "claude", "max_tokens": 64, "messages": HELLO, "stream": True, "metadata": steer(error_after=3)}
    async with http.post(f"{gateway.url}/v1/messages", json=body,
                         headers={"x-api-key": MASTER, "X-Request-ID": request_id}) as r:
        got = await r.read()
    assert got == claude.seen[-1].sent and got.endswith(b'"message":"Overloaded"},"request_id":"req_fake_error"}\n\n')
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert (record["status"], record["metadata"]["status_code"], record["metadata"]["error"]) == \
        ("failure", 200, "Overloaded")


async def test_routes_with_no_counterpart_in_the_deployments_api_are_refused_in_the_callers_shape(
        gateway: Gateway, upstream: FakeUpstream, claude: FakeAnthropic) -> None:
    """Chat and the Messages API are translated (tests/test_translation_routes.py); Anthropic's API has no
    embeddings or legacy completions."""
    before = (len(upstream.seen), len(claude.seen))
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as embeddings:
            sdk.embeddings.create(model="claude", input="hi")
        with pytest.raises(openai.BadRequestError) as completions:
            sdk.completions.create(model="claude", prompt="hi")
    for refused in (embeddings.value, completions.value):
        assert "anthropic/claude-sonnet-4-5" in str(refused) and "only chat completions and the Messages API" in \
            str(refused)
        assert refused.response.headers["x-should-retry"] == "false"
    assert (len(upstream.seen), len(claude.seen)) == before  # nothing was sent


def test_anthropics_openai_compatible_api_is_a_provider_of_its_own(gateway: Gateway, upstream: FakeUpstream) -> None:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0) as chat:
        answer = chat.chat.completions.create(model="claude-compat", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "alpha says hi"
    seen = upstream.seen[-1]
    assert seen.path == "/v1/chat/completions" and seen.headers["Authorization"] == "Bearer sk-ant-x"
    assert seen.body["model"] == "claude-sonnet-4-5"


async def test_a_budget_admits_exactly_as_many_concurrent_messages_as_it_holds(
        gateway: Gateway, claude: FakeAnthropic, admin_http: aiohttp.ClientSession) -> None:
    """Each request reserves its prompt and max_tokens at the priciest price; the upstream holds every admitted
    stream open until all have been decided, so only the reservations decide: exactly 3 of 12 pass, and the
    spend is what those 3 used."""
    gate = uuid.uuid4().hex
    metadata = steer(gate=gate)
    body = {"model": "claude", "max_tokens": 200, "stream": True, "messages": HELLO, "metadata": metadata}
    reserve = prompt_tokens(body) * IN_PRICE + 200 * OUT_PRICE
    key = await new_key(admin_http, gateway, max_budget=3.5 * reserve)
    refused = 0
    ids = [uuid.uuid4().hex for _ in range(12)]
    retry_words = set()

    async def send(request_id: str) -> tuple[int, bytes]:
        nonlocal refused
        async with admin_http.post(f"{gateway.url}/v1/messages", json=body,
                                   headers={"x-api-key": key, "X-Request-ID": request_id}) as r:
            if r.status != 200:
                refused += 1
                retry_words.add(r.headers.get("x-should-retry"))
                return r.status, await r.read()
            return r.status, await r.read()

    def held() -> list[Any]:
        return [s for s in claude.seen if s.body.get("metadata") == metadata]

    sending = asyncio.gather(*(send(request_id) for request_id in ids))
    await claude.until(lambda: refused + len(held()) == 12)
    claude.open_gate(gate)
    results = await sending
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 3 and statuses.count(429) == 9
    assert retry_words == {"true"}  # held by the requests in flight: a retry may fit once they settle
    refusal = orjson.loads(next(raw for status, raw in results if status == 429))
    assert refusal["type"] == "error" and refusal["error"]["type"] == "rate_limit_error"
    sent = [s.sent for s in held()]
    assert sorted(raw for status, raw in results if status == 200) == sorted(sent)
    used = sum(p * IN_PRICE + o * OUT_PRICE for p, o, _, _ in map(usage_in, sent))
    records = [await spend_record(admin_http, gateway, request_id, ADMIN)
               for request_id, (status, _) in zip(ids, results) if status == 200]
    assert sum(r["spend"] for r in records) == pytest.approx(used)
    async with admin_http.post(f"{gateway.url}/v1/messages", json={**body, "metadata": {}, "stream": False},
                               headers={"x-api-key": key}) as r:
        assert r.status == 200
        cost = float(r.headers["x-litellm-response-cost"])
        assert float(r.headers["x-litellm-key-spend"]) == pytest.approx(used + cost)


async def test_health_probes_a_native_deployment_with_a_one_token_message(
        gateway: Gateway, claude: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}/health", params={"model": "claude"}, headers=ADMIN) as r:
        health = await r.json()
    assert (health["healthy_count"], health["unhealthy_count"]) == (1, 0), health
    seen = claude.seen[-1]
    assert seen.path == "/v1/messages" and seen.body["max_tokens"] == 1 and seen.status == 200
    async with http.get(f"{gateway.url}/health", params={"model": "claude-overloaded"}, headers=ADMIN) as r:
        health = await r.json()
    assert health["unhealthy_endpoints"][0]["exception_status"] == 529


async def test_aliases_and_metrics_are_as_for_chat(gateway: Gateway, claude: FakeAnthropic,
                                                   admin_http: aiohttp.ClientSession) -> None:
    key = await new_key(admin_http, gateway, key_alias="messages-bot", aliases={"my-claude": "claude-metered"})
    with anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0) as sdk:
        assert sdk.messages.create(model="sonnet", max_tokens=16, messages=HELLO).content[0].text == "claude says hi"
        assert claude.seen[-1].body["model"] == "claude-sonnet-4-5"
        sdk.messages.create(model="my-claude", max_tokens=16, messages=HELLO)
        first = claude.seen[-1].sent
        with sdk.messages.stream(model="claude-metered", max_tokens=16, messages=HELLO) as stream:
            stream.get_final_message()
        second = claude.seen[-1].sent
    async with admin_http.get(f"{gateway.url}/metrics") as r:
        text = await r.text()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, found), v in samples.items() if n == name and set(labels.items()) <= found)

    mine = {"api_key_alias": "messages-bot", "requested_model": "claude-metered"}
    assert total("litellm_proxy_total_requests_metric_total", status_class="2xx", **mine) == 2
    (p1, o1, _, _), (p2, o2, _, _) = usage_in(first), usage_in(second)
    assert total("litellm_input_tokens_metric_total", model="claude-metered", api_key_alias="messages-bot") == p1 + p2
    assert total("litellm_output_tokens_metric_total", model="claude-metered", api_key_alias="messages-bot") == o1 + o2
    assert total("litellm_llm_api_time_to_first_token_metric_count", model="claude-metered") == 1


async def test_the_reservation_counts_the_system_prompt_and_the_tools(
        gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    """A budget that the messages alone would fit, but not with the system prompt and tools they come with."""
    body: dict[str, Any] = {"model": "claude", "max_tokens": 10, "messages": HELLO, "system": "Be terse. " * 400,
                            "tools": [WEATHER]}
    whole = prompt_tokens(body) * IN_PRICE + 10 * OUT_PRICE
    messages_only = prompt_tokens({"messages": HELLO}) * IN_PRICE + 10 * OUT_PRICE
    key = await new_key(admin_http, gateway, max_budget=(whole + messages_only) / 2)
    async with admin_http.post(f"{gateway.url}/v1/messages", json=body, headers={"x-api-key": key}) as r:
        refusal = await r.json()
    assert r.status == 429 and refusal["error"]["type"] == "rate_limit_error"
    assert f"held to what it may cost, {whole:.6g}" in refusal["error"]["message"]
    async with admin_http.post(f"{gateway.url}/v1/messages", json={**body, "system": "Be terse.", "tools": []},
                               headers={"x-api-key": key}) as r:
        assert r.status == 200


async def test_everything_works_under_a_prefix(gateway: Gateway, claude: FakeAnthropic,
                                               admin_http: aiohttp.ClientSession) -> None:
    with anthropic.Anthropic(base_url=f"{gateway.url}{PREFIX}", api_key=MASTER, max_retries=0) as sdk:
        request_id = uuid.uuid4().hex
        message = sdk.messages.create(model="claude", max_tokens=16, messages=HELLO,
                                      extra_headers={"X-Request-ID": request_id})
        assert message.content[0].text == "claude says hi"
        await assert_charged(admin_http, gateway, request_id, claude.seen[-1].sent)
        with sdk.messages.stream(model="claude", max_tokens=16, messages=HELLO) as stream:
            assert "".join(stream.text_stream) == "claude says hi"
        assert sdk.messages.count_tokens(model="claude", messages=HELLO).input_tokens > 0
        with pytest.raises(anthropic.NotFoundError):
            sdk.messages.create(model="nope", max_tokens=16, messages=HELLO)
