"""AWS Bedrock deployments through the gateway: the `openai` SDK's chat completions become Converse, the
`anthropic` SDK's Messages go to Claude on InvokeModel (or to Converse for the others), each request signed
with SigV4 and checked by a fake Bedrock that recomputes the signature with botocore's signer
(tests/bedrock_fake.py). Streams come back as AWS event-stream frames cut across reads at odd places.
Usage and cost are settled from what Bedrock reported, budgets apply, and Bedrock's errors reach the client
in its API's shape with Bedrock's status, retried and cooled down as any upstream's.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from botocore.eventstream import EventStreamBuffer, ParserError
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.bedrock.auth import Signer
from gateway.bedrock.eventstream import Frame, FrameError, FrameReader
from gateway.bedrock.from_converse import ConverseToMessagesStream
from gateway.bedrock.invoke import InvokeToMessagesStream
from tests.bedrock_fake import (
    ACCESS_KEY,
    BEARER,
    REGION,
    SECRET_KEY,
    SESSION_TOKEN,
    TEXT,
    FakeBedrock,
    event,
    frame,
)
from tests.harness import Gateway, run_cli, spend_record

MASTER = "sk-bedrock-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
IN_PRICE, OUT_PRICE = 0.000002, 0.00001
PRICES = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE,
          "cache_read_input_token_cost": IN_PRICE, "cache_creation_input_token_cost": IN_PRICE}
NOVA = "amazon.nova-pro-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HELLO: Any = [{"role": "user", "content": "hello"}]
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


def bedrock(name: str, model: str, fake: FakeBedrock, priced: bool = True, **params: Any) -> dict[str, Any]:
    keys = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}
    return {"model_name": name, "litellm_params": {
        "model": f"bedrock/{model}", "aws_region_name": REGION, "aws_bedrock_runtime_endpoint": fake.endpoint,
        **keys, **(PRICES if priced else {}), **params}}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    found = FakeBedrock("bedrock", bearer=BEARER).start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def sts() -> Iterator[FakeBedrock]:
    found = FakeBedrock("sts", session_token=SESSION_TOKEN, cut=3).start()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def gateway(fake: FakeBedrock, sts: FakeBedrock) -> Iterator[Gateway]:
    config = {
        "model_list": [
            bedrock("nova", NOVA, fake),
            # The bundled price table's Bedrock entry, and api_base as the other way to reach the fake.
            {"model_name": "nova-table", "litellm_params": {
                "model": f"bedrock/{NOVA}", "aws_region_name": REGION, "api_base": fake.endpoint,
                "aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}},
            bedrock("claude", CLAUDE, fake),
            bedrock("claude-converse", f"converse/{CLAUDE}", fake),
            bedrock("claude-invoke", f"invoke/{CLAUDE}", fake),
            bedrock("nova-sts", NOVA, sts, aws_session_token=SESSION_TOKEN),
            bedrock("nova-wrong-secret", NOVA, fake, aws_secret_access_key="not-the-secret"),
            {"model_name": "nova-bearer", "litellm_params": {
                "model": f"bedrock/{NOVA}", "aws_region_name": REGION, "api_key": BEARER,
                "aws_bedrock_runtime_endpoint": fake.endpoint, **PRICES}},
            # No keys in the config: botocore's chain finds them in the environment.
            {"model_name": "nova-env", "litellm_params": {
                "model": f"bedrock/{NOVA}", "aws_bedrock_runtime_endpoint": fake.endpoint, **PRICES}},
            bedrock("throttled", "fake.throttled", fake, num_retries=2),
            bedrock("invalid", "fake.invalid", fake, num_retries=2),
            bedrock("stream-throttled", "fake.stream-throttled", fake),
            bedrock("too-long", "fake.too-long", fake),
            bedrock("profile-arn", ARN, fake),
            bedrock("pair", "fake.throttled", fake, weight=1000),
            bedrock("pair", "amazon.nova-lite-v1:0", fake, weight=1),
        ],
        "router_settings": {"num_retries": 1, "cooldown_time": 600,
                            "context_window_fallbacks": [{"too-long": ["nova"]}]},
        "general_settings": {"master_key": MASTER},
    }
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
           "AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-creds",
           "AWS_EC2_METADATA_DISABLED": "true"}
    gw = Gateway(config, env=env)
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture
def chat(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
def messages(gateway: Gateway) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=20) as sdk:
        yield sdk


@pytest.fixture
async def admin_http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def converse_usage(usage: dict[str, int]) -> tuple[int, int, int]:
    """(prompt tokens as OpenAI counts them, output, cache read) from a Converse usage the fake reported."""
    read = usage["cacheReadInputTokens"]
    return usage["inputTokens"] + read + usage["cacheWriteInputTokens"], usage["outputTokens"], read


async def assert_charged(http: aiohttp.ClientSession, gw: Gateway, request_id: str, prompt: int, output: int,
                         in_price: float = IN_PRICE, out_price: float = OUT_PRICE) -> dict[str, Any]:
    record = await spend_record(http, gw, request_id, ADMIN)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (prompt, output)
    assert record["metadata"]["usage_estimated"] is False
    assert record["spend"] == pytest.approx(prompt * in_price + output * out_price)
    assert record["status"] == "success"
    return record


# Chat completions to Converse

async def test_chat_becomes_a_signed_converse_call_and_is_charged_what_bedrock_reported(
        chat: openai.OpenAI, fake: FakeBedrock, gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    answer = chat.chat.completions.create(model="nova", messages=[{"role": "system", "content": "Be brief."},
                                                                  *HELLO], max_tokens=50, temperature=0.2,
                                          stop=["END"], extra_headers={"X-Request-ID": request_id})
    seen = fake.seen[-1]
    assert seen.path == "/model/amazon.nova-pro-v1:0/converse" and seen.model == NOVA
    assert seen.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert seen.body == {"messages": [{"role": "user", "content": [{"text": "hello"}]}],
                         "system": [{"text": "Be brief."}],
                         "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"]}}
    assert answer.choices[0].message.content == TEXT and answer.choices[0].finish_reason == "stop"
    assert answer.model == NOVA
    prompt, output, _ = converse_usage(seen.usage)
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (prompt,
                                                                                                       output)
    await assert_charged(admin_http, gateway, request_id, prompt, output)


async def test_a_stream_of_event_stream_frames_becomes_chat_chunks_with_usage(
        chat: openai.OpenAI, fake: FakeBedrock, gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    stream = chat.chat.completions.create(model="nova", messages=HELLO, stream=True,
                                          stream_options={"include_usage": True},
                                          extra_headers={"X-Request-ID": request_id})
    chunks = list(stream)
    seen = fake.seen[-1]
    assert seen.path.endswith("/converse-stream")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    prompt, output, _ = converse_usage(seen.usage)
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (prompt, output)
    await assert_charged(admin_http, gateway, request_id, prompt, output)


async def test_the_responses_api_reaches_converse_through_chat_completions(
        chat: openai.OpenAI, fake: FakeBedrock, gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    response = chat.responses.create(model="nova", instructions="Be brief.", input="hello", max_output_tokens=50,
                                     extra_headers={"X-Request-ID": request_id})
    seen = fake.seen[-1]
    assert seen.path == "/model/amazon.nova-pro-v1:0/converse"
    assert seen.body["system"] == [{"text": "Be brief."}] and seen.body["inferenceConfig"]["maxTokens"] == 50
    assert response.output_text == TEXT and response.status == "completed"
    prompt, output, _ = converse_usage(seen.usage)
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (prompt,
                                                                                                         output)
    await assert_charged(admin_http, gateway, request_id, prompt, output)

    request_id = uuid.uuid4().hex
    with chat.responses.stream(model="nova", input="hello", extra_headers={"X-Request-ID": request_id}) as stream:
        final = stream.get_final_response()
    assert fake.seen[-1].path.endswith("/converse-stream") and final.output_text == TEXT
    prompt, output, _ = converse_usage(fake.seen[-1].usage)
    await assert_charged(admin_http, gateway, request_id, prompt, output)


def test_tools_round_trip_through_converse(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    asked: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = chat.chat.completions.create(model="claude", messages=asked, tools=[WEATHER], tool_choice="auto")
    sent = fake.seen[-1].body
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "get_weather", "inputSchema": {"json": WEATHER["function"]["parameters"]},
        "description": "The weather in a city"}}], "toolChoice": {"auto": {}}}
    call = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls" and call is not None and len(call) == 1
    assert call[0].function.name == "get_weather" and json.loads(call[0].function.arguments) == {"location": "Paris"}
    second = chat.chat.completions.create(model="claude", tools=[WEATHER], messages=[
        *asked, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call[0].id, "content": "18C and sunny"}])
    turns = fake.seen[-1].body["messages"]
    assert turns[1]["content"][-1] == {"toolUse": {"toolUseId": call[0].id, "name": "get_weather",
                                                   "input": {"location": "Paris"}}}
    assert turns[2] == {"role": "user", "content": [{"toolResult": {"toolUseId": call[0].id,
                                                                    "content": [{"text": "18C and sunny"}]}}]}
    assert second.choices[0].message.content == "the tool said: 18C and sunny"


def test_a_streamed_tool_call_and_reasoning_arrive_as_chat_deltas(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    chunks = list(chat.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
        reasoning_effort="low", stream=True))
    assert fake.seen[-1].body["additionalModelRequestFields"] == {"thinking": {"type": "enabled",
                                                                               "budget_tokens": 1024}}
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == "Let me think about this."
    calls = [t for d in deltas for t in d.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "get_weather" and calls[0].id
    assert json.loads("".join(t.function.arguments or "" for t in calls if t.function)) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_prompt_caching_marks_a_cache_point_and_reports_cached_tokens(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    system = {"role": "system", "content": [{"type": "text", "text": "A long shared preamble. " * 20,
                                             "cache_control": {"type": "ephemeral"}}]}
    answer = chat.chat.completions.create(model="nova", messages=[system, *HELLO])  # type: ignore[list-item]
    seen = fake.seen[-1]
    assert seen.body["system"][-1] == {"cachePoint": {"type": "default"}}
    prompt, _, read = converse_usage(seen.usage)
    assert read > 0 and answer.usage is not None and answer.usage.prompt_tokens == prompt
    assert answer.usage.prompt_tokens_details is not None and answer.usage.prompt_tokens_details.cached_tokens == read


async def test_the_bundled_price_table_prices_a_bedrock_model(
        chat: openai.OpenAI, fake: FakeBedrock, gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    chat.chat.completions.create(model="nova-table", messages=HELLO, extra_headers={"X-Request-ID": request_id})
    prompt, output, _ = converse_usage(fake.seen[-1].usage)
    # amazon.nova-pro-v1:0 in gateway/data/model_prices.json: $0.80 in, $3.20 out per million tokens.
    await assert_charged(admin_http, gateway, request_id, prompt, output, 8e-07, 3.2e-06)


def test_an_inference_profile_arn_is_the_model_id_in_the_path(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    answer = chat.chat.completions.create(model="profile-arn", messages=HELLO)
    assert answer.choices[0].message.content == TEXT
    assert fake.seen[-1].model == ARN
    assert fake.seen[-1].headers["Authorization"].startswith("AWS4-HMAC-SHA256")  # signed over the encoded path


# Credentials

def test_each_way_of_giving_credentials_signs_what_bedrock_accepts(
        chat: openai.OpenAI, fake: FakeBedrock, sts: FakeBedrock) -> None:
    for model, found_in in (("nova-env", fake), ("nova-bearer", fake), ("nova-sts", sts)):
        answer = chat.chat.completions.create(model=model, messages=HELLO)
        assert answer.choices[0].message.content == TEXT, model
        assert found_in.seen[-1].status == 200
    assert fake.seen[-2].headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert fake.seen[-1].headers["Authorization"] == f"Bearer {BEARER}" and "X-Amz-Date" not in fake.seen[-1].headers
    assert sts.seen[-1].headers["X-Amz-Security-Token"] == SESSION_TOKEN
    assert "x-amz-security-token" in sts.seen[-1].headers["Authorization"]


def test_a_profile_and_the_bedrock_api_key_variable_sign_what_bedrock_accepts(
        fake: FakeBedrock, tmp_path: Path) -> None:
    """A named profile in the shared files (its keys and its region), and AWS_BEARER_TOKEN_BEDROCK in the
    environment, each a gateway of its own: with that variable set, any deployment without keys of its own
    sends the Bedrock API key."""
    (tmp_path / "credentials").write_text(
        f"[work]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    (tmp_path / "config").write_text(f"[profile work]\nregion = {REGION}\n")
    isolated = {"AWS_CONFIG_FILE": str(tmp_path / "config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"), "AWS_EC2_METADATA_DISABLED": "true"}
    deployment = {"model_name": "nova", "litellm_params": {
        "model": f"bedrock/{NOVA}", "aws_bedrock_runtime_endpoint": fake.endpoint, **PRICES}}
    profiled = {**deployment, "litellm_params": {**deployment["litellm_params"], "aws_profile_name": "work"}}
    for config, env, authorization in (
            ({"model_list": [profiled]}, isolated, f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/"),
            ({"model_list": [deployment]}, {**isolated, "AWS_BEARER_TOKEN_BEDROCK": BEARER,
                                            "AWS_REGION": REGION}, f"Bearer {BEARER}")):
        with Gateway({**config, "general_settings": {"master_key": MASTER}}, env=env) as gw, \
                openai.OpenAI(base_url=f"{gw.url}/v1", api_key=MASTER, max_retries=0) as client:
            answer = client.chat.completions.create(model="nova", messages=HELLO)
            assert answer.choices[0].message.content == TEXT
            seen = fake.seen[-1]
            assert seen.status == 200 and seen.headers["Authorization"].startswith(authorization)
            if authorization.startswith("AWS4"):
                assert f"/{REGION}/bedrock/aws4_request" in seen.headers["Authorization"]


def test_a_wrong_secret_is_bedrocks_403_and_is_not_retried(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    before = len(fake.seen)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat.chat.completions.create(model="nova-wrong-secret", messages=HELLO)
    assert denied.value.status_code == 403
    assert "signature we calculated does not match" in denied.value.message
    assert len(fake.seen) == before + 1 and fake.seen[-1].status == 403


def test_signing_is_cheap_enough_to_do_on_the_event_loop() -> None:
    """Measured, not asserted (no timed assertions): the number README.md quotes comes from here."""
    signer = Signer(REGION, ACCESS_KEY, SECRET_KEY, None, None, None, "test")
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "hello " * 200}]}]})
    url = f"https://bedrock-runtime.{REGION}.amazonaws.com/model/{NOVA.replace(':', '%3A')}/converse"
    count = 2000
    started = time.perf_counter()
    for _ in range(count):
        signed = signer.headers(url, body)
    print(f"SigV4 signing: {(time.perf_counter() - started) / count * 1e6:.0f} µs a request")
    assert signed.startswith(b"X-Amz-Date: ") and b"Signature=" in signed


# Anthropic's Messages API

async def test_messages_to_claude_go_to_invoke_model_with_bedrocks_body(
        messages: anthropic.Anthropic, fake: FakeBedrock, gateway: Gateway,
        admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    answer = messages.messages.create(model="claude", max_tokens=64, messages=HELLO, system="Be brief.",
                                      extra_headers={"X-Request-ID": request_id,
                                                     "anthropic-beta": "context-1m-2025-08-07"})
    seen = fake.seen[-1]
    assert seen.path == f"/model/{CLAUDE}/invoke"
    assert seen.body == {"max_tokens": 64, "messages": HELLO, "system": "Be brief.",
                         "anthropic_version": "bedrock-2023-05-31", "anthropic_beta": ["context-1m-2025-08-07"]}
    assert answer.content[0].type == "text" and answer.content[0].text == TEXT
    usage = seen.usage
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    await assert_charged(admin_http, gateway, request_id, usage["input_tokens"], usage["output_tokens"])


async def test_a_claude_stream_from_invoke_model_reaches_the_anthropic_sdk(
        messages: anthropic.Anthropic, fake: FakeBedrock, gateway: Gateway,
        admin_http: aiohttp.ClientSession) -> None:
    request_id = uuid.uuid4().hex
    tools: Any = [{"name": "get_weather", "description": "The weather in a city",
                   "input_schema": WEATHER["function"]["parameters"]}]
    with messages.messages.stream(model="claude", max_tokens=64, tools=tools,
                                  messages=[{"role": "user", "content": "Weather in Paris?"}],
                                  extra_headers={"X-Request-ID": request_id}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    seen = fake.seen[-1]
    assert seen.path.endswith("/invoke-with-response-stream") and "stream" not in seen.body
    assert text == "I will call the tool."
    use = final.content[-1]
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"location": "Paris"}
    assert final.stop_reason == "tool_use"
    usage = seen.usage
    assert (final.usage.input_tokens, final.usage.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
    await assert_charged(admin_http, gateway, request_id, usage["input_tokens"], usage["output_tokens"])


def test_messages_to_a_converse_model_stream_through_converse(
        messages: anthropic.Anthropic, fake: FakeBedrock) -> None:
    with messages.messages.stream(model="claude-converse", max_tokens=2048, messages=HELLO,
                                  thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        final = stream.get_final_message()
    seen = fake.seen[-1]
    assert seen.path == f"/model/{CLAUDE}/converse-stream"
    assert seen.body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    thinking, said = final.content
    assert thinking.type == "thinking" and thinking.thinking == "Let me think about this."
    assert thinking.signature == "sig-1"
    assert said.type == "text" and said.text == TEXT
    assert final.usage.output_tokens == seen.usage["outputTokens"]
    answer = messages.messages.create(model="nova", max_tokens=32, messages=HELLO)
    assert fake.seen[-1].path.endswith("/converse") and answer.content[0].type == "text"
    assert answer.usage.input_tokens == fake.seen[-1].usage["inputTokens"]


def test_chat_to_an_invoke_deployment_takes_claudes_own_body(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    answer = chat.chat.completions.create(model="claude-invoke", messages=HELLO, max_tokens=40)
    seen = fake.seen[-1]
    assert seen.path == f"/model/{CLAUDE}/invoke" and seen.body["anthropic_version"] == "bedrock-2023-05-31"
    assert answer.choices[0].message.content == TEXT
    chunks = list(chat.chat.completions.create(model="claude-invoke", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT


# Errors, retries, cooldowns, budgets

def test_throttling_is_a_429_retried_as_configured(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    before = len([s for s in fake.seen if s.model == "fake.throttled"])
    with pytest.raises(openai.RateLimitError) as throttled:
        chat.chat.completions.create(model="throttled", messages=HELLO)
    assert throttled.value.status_code == 429
    assert "Too many requests, please wait before trying again." in throttled.value.message
    body = throttled.value.body
    assert isinstance(body, dict) and body["type"] == "rate_limit_error"
    assert len([s for s in fake.seen if s.model == "fake.throttled"]) == before + 3  # num_retries: 2


def test_a_server_error_is_retried_and_the_retry_answers(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    before = len(fake.seen)
    fake.fail_next.append(503)
    answer = chat.chat.completions.create(model="nova", messages=HELLO)  # router_settings.num_retries: 1
    assert answer.choices[0].message.content == TEXT
    assert [s.status for s in fake.seen[before:]] == [503, 200]


def test_a_validation_error_is_a_400_and_is_not_retried(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    before = len(fake.seen)
    with pytest.raises(openai.BadRequestError) as invalid:
        chat.chat.completions.create(model="invalid", messages=HELLO)
    assert "Malformed input request" in invalid.value.message
    assert len(fake.seen) == before + 1


def test_a_throttled_deployment_rests_while_its_pair_answers(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    def throttled() -> int:
        return len([s for s in fake.seen if s.model == "fake.throttled"])

    before = throttled()
    for _ in range(30):
        assert chat.chat.completions.create(model="pair", messages=HELLO).choices[0].message.content == TEXT
        if throttled() > before:
            break
    assert throttled() == before + 1  # tried once (weight 1000 to 1), then the other answered
    for _ in range(5):
        assert chat.chat.completions.create(model="pair", messages=HELLO).choices[0].message.content == TEXT
    assert throttled() == before + 1  # cooling down: not tried again


def test_an_exception_frame_mid_stream_ends_it_with_an_error(chat: openai.OpenAI) -> None:
    stream = chat.chat.completions.create(model="stream-throttled", messages=HELLO, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == TEXT[:11]
    assert "throttlingException" in failed.value.message


async def test_budgets_apply_to_bedrock_models(chat: openai.OpenAI, fake: FakeBedrock, gateway: Gateway,
                                               admin_http: aiohttp.ClientSession) -> None:
    async with admin_http.post(f"{gateway.url}/key/generate", json={"max_budget": 0.000001}, headers=ADMIN) as r:
        broke = str((await r.json())["key"])
    before = len(fake.seen)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=broke, max_retries=0) as sdk, \
            pytest.raises(openai.RateLimitError) as over:
        sdk.chat.completions.create(model="nova", messages=HELLO)
    assert "Budget has been exceeded!" in over.value.message
    assert len(fake.seen) == before  # refused before anything was sent
    async with admin_http.post(f"{gateway.url}/key/generate", json={"max_budget": 10}, headers=ADMIN) as r:
        funded = str((await r.json())["key"])
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=funded, max_retries=0) as sdk:
        sdk.chat.completions.create(model="nova", messages=HELLO)
    prompt, output, _ = converse_usage(fake.seen[-1].usage)
    deadline = time.monotonic() + 10
    while True:
        async with admin_http.get(f"{gateway.url}/key/info", params={"key": funded}, headers=ADMIN) as r:
            spent = (await r.json())["info"]["spend"]
        if spent or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert spent == pytest.approx(prompt * IN_PRICE + output * OUT_PRICE)



def test_a_prompt_over_the_context_window_falls_back_as_configured(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    answer = chat.chat.completions.create(model="too-long", messages=HELLO)
    assert answer.choices[0].message.content == TEXT
    assert [s.model for s in fake.seen[-2:]] == ["fake.too-long", NOVA]


async def test_health_probes_bedrock_with_a_signed_converse_call(
        gateway: Gateway, fake: FakeBedrock, admin_http: aiohttp.ClientSession) -> None:
    for model, healthy in (("nova", True), ("nova-wrong-secret", False)):
        async with admin_http.get(f"{gateway.url}/health", params={"model": model}, headers=ADMIN) as r:
            found = await r.json()
        assert found["healthy_count"] == int(healthy), found
        assert fake.seen[-1].path == "/model/amazon.nova-pro-v1:0/converse"
        assert fake.seen[-1].body["inferenceConfig"] == {"maxTokens": 1}
        if not healthy:
            assert "signature we calculated does not match" in found["unhealthy_endpoints"][0]["error"]


async def test_model_info_never_shows_the_aws_secrets(gateway: Gateway, admin_http: aiohttp.ClientSession) -> None:
    async with admin_http.get(f"{gateway.url}/model/info", headers=ADMIN) as r:
        shown = orjson.dumps(await r.json())
    assert ACCESS_KEY.encode() in shown and SECRET_KEY.encode() not in shown and SESSION_TOKEN.encode() not in shown
    assert b"not-the-secret" not in shown and BEARER.encode() not in shown


def test_a_route_bedrock_does_not_serve_is_refused_naming_the_deployment(chat: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        chat.embeddings.create(model="nova", input="hello")
    assert "AWS Bedrock's Converse and InvokeModel APIs" in refused.value.message


def test_a_profile_that_is_not_there_stops_the_start_naming_the_deployment() -> None:
    config = {"model_list": [{"model_name": "x", "litellm_params": {
        "model": f"bedrock/{NOVA}", "aws_profile_name": "no-such-profile", "aws_region_name": REGION}}]}
    done = run_cli(config, env={"AWS_CONFIG_FILE": "/nonexistent/aws-config",
                                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-creds"})
    assert done.returncode != 0
    assert "model_list[0].litellm_params: AWS credentials for Bedrock: The config profile (no-such-profile) could " \
           "not be found" in done.stderr


def test_an_image_goes_to_converse_as_bytes(chat: openai.OpenAI, fake: FakeBedrock) -> None:
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    content: Any = [{"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}}]
    answer = chat.chat.completions.create(model="nova", messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == TEXT
    assert fake.seen[-1].body["messages"][0]["content"] == [
        {"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": pixel}}}]


# The event-stream reading, read by read

STREAM = [
    event("messageStart", {"role": "assistant"}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm, "}}}),
    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}}),
    event("contentBlockStop", {"contentBlockIndex": 0}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Hello ✓ "}}),
    event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "there"}}),
    event("contentBlockStop", {"contentBlockIndex": 1}),
    event("contentBlockStart", {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"a": '}}}),
    event("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}}),
    event("contentBlockStop", {"contentBlockIndex": 2}),
    event("messageStop", {"stopReason": "tool_use"}),
    event("metadata", {"usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 25, "cacheReadInputTokens": 5,
                                 "cacheWriteInputTokens": 2}, "metrics": {"latencyMs": 9}}),
]


def sse_events(sent: bytes) -> list[dict[str, Any]]:
    """The events' JSON, message ids left out (each translator makes its own)."""
    found = []
    for line in sent.split(b"\n"):
        if line.startswith(b"data: "):
            parsed = orjson.loads(line[6:])
            if parsed.get("type") == "message_start":
                parsed["message"].pop("id")
            found.append(parsed)
    return found


def translate_in_pieces(cuts: list[int]) -> tuple[bytes, ConverseToMessagesStream]:
    data = b"".join(STREAM)
    translator = ConverseToMessagesStream("m")
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    sent = b"".join(translator.feed(data[a:b]) for a, b in zip(points, points[1:])) + translator.flush()
    return sent, translator


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_a_converse_stream_reads_the_same_however_it_is_cut(cuts: list[int]) -> None:
    whole, _ = translate_in_pieces([])
    sent, translator = translate_in_pieces(cuts)
    assert sse_events(sent) == sse_events(whole)
    assert translator.failure is None and translator.usage is not None
    assert (translator.usage.prompt_tokens, translator.usage.completion_tokens) == (18, 7)
    assert translator.usage.cache_read_tokens == 5 and translator.usage.cache_creation_tokens == 2
    kinds = [e["type"] for e in sse_events(whole)]
    assert kinds == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    assert sse_events(whole)[-2] == {"type": "message_delta", "delta": {"stop_reason": "tool_use",
                                                                         "stop_sequence": None},
                                     "usage": {"input_tokens": 11, "output_tokens": 7,
                                               "cache_creation_input_tokens": 2, "cache_read_input_tokens": 5}}


def test_a_frame_whose_checksum_is_wrong_ends_the_stream_as_the_upstreams_failure() -> None:
    good = frame({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"assistant"}')
    broken = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}))
    broken[-6] ^= 0x01  # a payload byte: the message's CRC32 no longer matches
    for translator in (ConverseToMessagesStream("m"), InvokeToMessagesStream()):
        sent = translator.feed(good + bytes(broken))
        assert sent.startswith(b"event: message_start\n") if isinstance(translator, ConverseToMessagesStream) \
            else sent.startswith(b"event: error\n")  # the good frame is not a `chunk`: InvokeModel's stream skips it
        assert sent.endswith(b"\n\n") and b"event: error" in sent
        assert b"the upstream's event stream is broken: message checksum mismatch" in sent
        assert translator.failure is not None and translator.failure.status == 502
        assert translator.feed(b"more") == b"" and translator.flush() == b""


def test_a_stream_cut_before_its_end_is_a_failure_not_a_made_up_end() -> None:
    translator = ConverseToMessagesStream("m")
    translator.feed(b"".join(STREAM[:6]))
    tail = translator.flush()
    assert b"event: error" in tail and b"ended before its answer was complete" in tail
    assert translator.failure is not None and translator.usage is None


# The frame reader, against botocore's parser

HEADER_VALUES = st.one_of(
    st.tuples(st.just(0), st.just(b"")), st.tuples(st.just(1), st.just(b"")),
    st.tuples(st.just(2), st.binary(min_size=1, max_size=1)), st.tuples(st.just(3), st.binary(min_size=2, max_size=2)),
    st.tuples(st.just(4), st.binary(min_size=4, max_size=4)), st.tuples(st.just(5), st.binary(min_size=8, max_size=8)),
    st.tuples(st.just(6), st.binary(max_size=40)), st.tuples(st.just(7), st.text(max_size=30).map(str.encode)),
    st.tuples(st.just(8), st.binary(min_size=8, max_size=8)),
    st.tuples(st.just(9), st.binary(min_size=16, max_size=16)))
MESSAGE_TYPES = st.sampled_from([("event", ":event-type"), ("exception", ":exception-type"), ("error", ":error-code")])


def encoded(headers: list[tuple[str, int, bytes]], payload: bytes) -> bytes:
    head = b""
    for name, kind, value in headers:
        length = struct.pack(">H", len(value)) if kind in (6, 7) else b""
        head += bytes([len(name.encode())]) + name.encode() + bytes([kind]) + length + value
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + payload
    return message + struct.pack(">I", binascii.crc32(message))


@st.composite
def messages_of_any_shape(draw: st.DrawFn) -> bytes:
    message_type, kind_header = draw(MESSAGE_TYPES)
    others = draw(st.lists(st.tuples(st.text(min_size=1, max_size=12).filter(lambda n: not n.startswith(":")),
                                     HEADER_VALUES), max_size=4, unique_by=lambda header: header[0]))
    headers = [(name, kind, value) for name, (kind, value) in others]
    headers.insert(draw(st.integers(0, len(headers))), (":message-type", 7, message_type.encode()))
    headers.insert(draw(st.integers(0, len(headers))), (kind_header, 7, draw(st.text(max_size=20)).encode()))
    return encoded(headers, draw(st.binary(max_size=200)))


def botocores(data: bytes) -> list[Frame]:
    parser = EventStreamBuffer()
    parser.add_data(data)
    found = []
    for message in parser:
        headers = message.headers
        kind = {"exception": ":exception-type", "error": ":error-code"}.get(headers[":message-type"], ":event-type")
        found.append(Frame(headers[kind], headers[":message-type"] != "event", message.payload))
    return found


@settings(max_examples=300, deadline=None)
@given(st.lists(messages_of_any_shape(), min_size=1, max_size=5), st.lists(st.integers(0, 5000), max_size=20))
def test_the_frame_reader_reads_what_botocores_parser_reads(messages: list[bytes], cuts: list[int]) -> None:
    data = b"".join(messages)
    reader = FrameReader()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    found = [frame for a, b in zip(points, points[1:]) for frame in reader.feed(data[a:b])]
    assert found == botocores(data)
    assert reader.rest == b""


@settings(max_examples=300, deadline=None)
@given(messages_of_any_shape(), st.data())
def test_a_corrupted_byte_fails_the_reader_as_it_fails_botocores(message: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(message) - 1))
    corrupted = bytearray(message)
    corrupted[at] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(ParserError):
        botocores(bytes(corrupted) + b"\x00" * 64)
    with pytest.raises(FrameError):
        list(FrameReader().feed(bytes(corrupted) + b"\x00" * 64))


def test_the_endpoint_derives_from_the_region_as_litellm_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import parse_config
    from gateway.router import Router

    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_BEDROCK_RUNTIME_ENDPOINT", raising=False)
    keys = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY}

    def base_url(**params: Any) -> str:
        config = parse_config({"model_list": [{"model_name": "m", "litellm_params": {
            "model": f"bedrock/{NOVA}", **keys, **params}}]})
        return Router(config).deployments[0].base_url

    monkeypatch.delenv("AWS_REGION", raising=False)
    assert base_url() == "https://bedrock-runtime.us-west-2.amazonaws.com"  # LiteLLM's default
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert base_url() == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert base_url(aws_region_name="ap-northeast-1") == "https://bedrock-runtime.ap-northeast-1.amazonaws.com"
    assert base_url(aws_bedrock_runtime_endpoint="https://vpce-1.bedrock-runtime.example/") == \
        "https://vpce-1.bedrock-runtime.example"
    monkeypatch.setenv("AWS_BEDROCK_RUNTIME_ENDPOINT", "http://127.0.0.1:9")
    assert base_url() == "http://127.0.0.1:9"
