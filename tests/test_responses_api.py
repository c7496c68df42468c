"""OpenAI's Responses API through a running gateway, driven by the `openai` SDK: relayed byte for byte to
deployments that serve it (create, stream, retrieve, delete, input items, previous_response_id routed to
the deployment holding it, also from a second gateway sharing the database), translated to chat
completions for one that does not (text, a tool round trip, streams) and on to Anthropic's Messages API;
charged with the upstream's exact usage, and refused by budgets and rate limits in OpenAI's shape."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import openai
import pytest
import pytest_asyncio
from openai.types.responses import ResponseCustomToolCall, ResponseErrorEvent, ResponseFailedEvent

from gateway.providers import PROVIDERS
from gateway.responses_errors import last_seen
from gateway.responses_store import ResponseRoutes
from gateway.router import serves_responses
from gateway.store.store import Store
from gateway.translate.responses_stream import ChatToResponsesStream
from gateway.translate.responses_to_chat import Shell
from gateway.translate.responses_wire import ResponsesRequest
from tests.anthropic_fake import KEY as ANTHROPIC_KEY
from tests.anthropic_fake import FakeAnthropic
from tests.harness import Gateway, spend_record
from tests.responses_fake import BREAK_AT, CHAT_USAGE, PATCH, USAGE, ChatOnlyUpstream, ResponsesUpstream

MASTER = "sk-responses-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PRICES = {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002}
CODEX_REQUEST = Path(__file__).parent / "fixtures" / "codex" / "request.json"  # Codex 0.171.0's first turn
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files. This is a FREEFORM tool.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def alpha() -> Iterator[ResponsesUpstream]:
    fake = ResponsesUpstream("alpha")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def beta() -> Iterator[ResponsesUpstream]:
    fake = ResponsesUpstream("beta")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def chat_only() -> Iterator[ChatOnlyUpstream]:
    fake = ChatOnlyUpstream("vllm")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


def config(alpha: ResponsesUpstream, beta: ResponsesUpstream, chat_only: ChatOnlyUpstream, claude: FakeAnthropic,
           database: Path) -> dict[str, Any]:
    def entry(name: str, model: str, base: str, key: str = "sk-upstream", **extra: Any) -> dict[str, Any]:
        found: dict[str, Any] = {"model_name": name, "litellm_params": {
            "model": model, "api_base": base, "api_key": key, **PRICES}}
        if extra:
            found["model_info"] = extra
        return found

    return {
        "model_list": [
            entry("solo", "openai/gpt-4o", alpha.base_url),
            entry("pair", "openai/gpt-4o", alpha.base_url),
            entry("pair", "openai/gpt-4o", beta.base_url),
            # Not `openai/`, but says it serves /v1/responses (LiteLLM's model_info.supported_endpoints).
            entry("vllm-native", "hosted_vllm/Qwen/Qwen3-8B", beta.base_url,
                  supported_endpoints=["/v1/chat/completions", "/v1/responses"]),
            entry("vllm-chat", "hosted_vllm/Qwen/Qwen3-8B", chat_only.base_url),
            entry("claude", "anthropic/claude-sonnet-4-5", claude.api_base, ANTHROPIC_KEY),
            {"model_name": "mocked", "litellm_params": {"model": "mock/m", "mock_response": "A mocked answer"}},
        ],
        "general_settings": {"master_key": MASTER},
        "gateway_settings": {"database_path": str(database), "path_prefixes": ["/llm"]},
    }


@pytest.fixture(scope="module")
def gateways(alpha: ResponsesUpstream, beta: ResponsesUpstream, chat_only: ChatOnlyUpstream, claude: FakeAnthropic,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, Gateway]]:
    """Two instances sharing one database."""
    database = tmp_path_factory.mktemp("responses") / "shared.db"
    settings = config(alpha, beta, chat_only, claude, database)
    with Gateway(settings) as first:
        with Gateway(settings) as second:
            yield first, second


@pytest.fixture(scope="module")
def gateway(gateways: tuple[Gateway, Gateway]) -> Gateway:
    return gateways[0]


@pytest_asyncio.fixture
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key=MASTER, base_url=f"{gateway.url}/v1", max_retries=0) as found:
        yield found


async def new_key(http: aiohttp.ClientSession, gw: Gateway, **fields: Any) -> str:
    async with http.post(f"{gw.url}/key/generate", json=fields, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


def usage_of(record: dict[str, Any]) -> tuple[int, int, int, int, int]:
    usage = record["metadata"]["usage_object"]
    return (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"],
            usage["prompt_tokens_details"]["cached_tokens"], usage["completion_tokens_details"]["reasoning_tokens"])


# Relayed to deployments that serve the Responses API

async def test_create_is_relayed_byte_for_byte_and_charged_its_usage(
        gateway: Gateway, client: openai.AsyncOpenAI, alpha: ResponsesUpstream, http: aiohttp.ClientSession) -> None:
    raw = await client.responses.with_raw_response.create(model="solo", input="Say hello", instructions="Be brief")
    response = raw.parse()
    assert response.output_text == "Hello from the Responses API. [alpha]"
    sent = alpha.seen[-1]
    assert sent.body == {"model": "gpt-4o", "input": "Say hello", "instructions": "Be brief"}
    assert raw.http_response.content == sent.sent  # OpenAI's indented JSON, as it was written
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert usage_of(record) == (11, 7, 18, 3, 2)
    assert record["metadata"]["usage_estimated"] is False and record["model_group"] == "solo"


async def test_stream_is_relayed_byte_for_byte_and_charged_from_response_completed(
        gateway: Gateway, client: openai.AsyncOpenAI, alpha: ResponsesUpstream, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/v1/responses", headers=ADMIN,
                         json={"model": "solo", "input": "Say hello", "stream": True}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        body = await r.read()
        request_id = r.headers["x-request-id"]
    assert body == alpha.seen[-1].sent
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert usage_of(record) == (11, 7, 18, 3, 2) and record["metadata"]["stream"] is True

    # An answer whose response.completed event alone is larger than the tail the gateway keeps of a stream.
    async with http.post(f"{gateway.url}/v1/responses", headers=ADMIN,
                         json={"model": "solo", "input": "long", "stream": True}) as r:
        body = await r.read()
        request_id = r.headers["x-request-id"]
    assert body == alpha.seen[-1].sent and len(body.rsplit(b"event: ", 1)[1]) > 8000
    assert usage_of(await spend_record(http, gateway, request_id, ADMIN)) == (11, 7, 18, 3, 2)

    stream = await client.responses.create(model="solo", input="Say hello", stream=True)
    events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from the Responses API. [alpha]"
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    assert completed.response.usage.input_tokens_details.cached_tokens == USAGE["input_tokens_details"]["cached_tokens"]


async def test_retrieve_input_items_and_delete_go_to_the_deployment_that_holds_it(
        gateways: tuple[Gateway, Gateway], client: openai.AsyncOpenAI, beta: ResponsesUpstream) -> None:
    created = await client.responses.create(model="vllm-native", input="Remember me")
    assert beta.seen[-1].body["model"] == "Qwen/Qwen3-8B"  # hosted_vllm/, relayed as it is: it serves /responses
    found = await client.responses.retrieve(created.id)
    assert found.id == created.id and found.output_text == created.output_text
    items = await client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    # The other instance learns the holder from the shared database.
    async with openai.AsyncOpenAI(api_key=MASTER, base_url=f"{gateways[1].url}/llm/v1", max_retries=0) as other:
        assert (await other.responses.retrieve(created.id)).id == created.id
    await client.responses.delete(created.id)
    assert beta.seen[-1].method == "DELETE" and beta.seen[-1].path == f"/v1/responses/{created.id}"
    with pytest.raises(openai.NotFoundError) as refused:
        await client.responses.retrieve(created.id)
    assert "not found" in refused.value.message


async def test_a_streamed_response_is_found_though_its_first_event_came_in_pieces(
        client: openai.AsyncOpenAI, alpha: ResponsesUpstream) -> None:
    events = [event async for event in await client.responses.create(model="solo", input="split", stream=True)]
    assert events[0].type == "response.created"
    found = await client.responses.retrieve(events[0].response.id)
    assert found.output_text == "Hello from the Responses API. [alpha]"


async def test_a_stream_broken_off_ends_with_the_responses_apis_error_events(
        gateway: Gateway, client: openai.AsyncOpenAI, http: aiohttp.ClientSession) -> None:
    """Relayed as it came until the upstream's connection is lost; then an `error` event numbered after the last
    event sent, which the SDK gives as a ResponseErrorEvent (not the chat stream's `data: {"error": ...}`), and
    `response.failed` with that error in the response, as Codex reads it."""
    events = [event async for event in await client.responses.create(model="solo", input="break", stream=True)]
    assert [e.sequence_number for e in events] == list(range(BREAK_AT + 2))
    error, failed = events[-2:]
    assert isinstance(error, ResponseErrorEvent) and isinstance(failed, ResponseFailedEvent)
    assert error.code == "api_connection_error" and "broke off the stream" in error.message and error.param is None
    assert failed.response.status == "failed" and failed.response.error is not None
    assert (failed.response.error.code, failed.response.error.message) == (error.code, error.message)
    assert failed.response.id == events[0].response.id  # the stream is short: its first event is in the tail
    async with http.post(f"{gateway.url}/v1/responses", headers=ADMIN,
                         json={"model": "solo", "input": "break", "stream": True}) as r:
        said, ended = (await r.read()).rstrip(b"\n").rsplit(b"\n\n", 2)[1:]
    kind, data = said.split(b"\n")
    assert kind == b"event: error" and data.startswith(b"data: ")
    assert list(json.loads(data[6:])) == ["type", "code", "message", "param", "sequence_number"]
    assert ended.startswith(b"event: response.failed\ndata: {")


async def test_a_translated_stream_broken_off_ends_the_same_way(client: openai.AsyncOpenAI) -> None:
    """The chat upstream's connection lost after its first text: the events translated so far, then `error` and
    `response.failed` numbered after them, the failed response the one created."""
    events = [event async for event in await client.responses.create(model="vllm-chat", input="break", stream=True)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events][-3:] == ["response.output_text.delta", "error", "response.failed"]
    failed = events[-1]
    assert isinstance(failed, ResponseFailedEvent) and failed.response.id == events[0].response.id
    assert failed.response.error is not None and failed.response.error.code == "api_connection_error"


def test_the_next_sequence_number_is_read_from_the_tail_however_it_was_cut() -> None:
    frames = b"".join(b"event: e\ndata: %b\n\n" % json.dumps({"type": "e", "sequence_number": n}).encode()
                      for n in range(40, 43))
    assert last_seen(frames[7:]) == (43, None)  # the first event cut: the others say
    assert last_seen(b"") == (0, None)
    assert last_seen(b'data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1"}}\n\n') \
        == (1, "resp_1")


async def test_unknown_ids_are_refused_in_openai_shape(gateway: Gateway, http: aiohttp.ClientSession,
                                                       client: openai.AsyncOpenAI) -> None:
    held = await client.responses.create(model="pair", input="Mine")
    only_solo = await new_key(http, gateway, models=["solo"])
    async with http.get(f"{gateway.url}/v1/responses/{held.id}",
                        headers={"Authorization": f"Bearer {only_solo}"}) as r:
        assert r.status in (401, 403) and "pair" in (await r.json())["error"]["message"]
    async with http.get(f"{gateway.url}/responses/resp_nothing_here", headers=ADMIN) as r:
        assert r.status == 404
        error = (await r.json())["error"]
    assert error["type"] == "invalid_request_error" and "resp_nothing_here" in error["message"]
    async with http.get(f"{gateway.url}/v1/responses/resp_x", headers={"Authorization": "Bearer sk-wrong"}) as r:
        assert r.status == 401 and "error" in await r.json()


async def test_previous_response_id_goes_to_the_deployment_that_made_it(
        gateways: tuple[Gateway, Gateway], client: openai.AsyncOpenAI, alpha: ResponsesUpstream,
        beta: ResponsesUpstream) -> None:
    """Two deployments in one group, each holding only its own responses (and refusing any other id, as
    OpenAI does): every follow-up lands where its first turn did, also through the second instance."""
    held: dict[str, str] = {}
    for _ in range(8):
        first = await client.responses.create(model="pair", input="Start")
        held[first.id] = "alpha" if first.id in alpha.stored else "beta"
    assert set(held.values()) == {"alpha", "beta"}  # both took some: the test can tell them apart
    async with openai.AsyncOpenAI(api_key=MASTER, base_url=f"{gateways[1].url}/v1", max_retries=0) as other:
        for index, (response_id, holder) in enumerate(held.items()):
            via = other if index % 2 else client
            follow = await via.responses.create(model="pair", input="Go on", previous_response_id=response_id)
            assert follow.output_text.endswith(f"(after {response_id}) [{holder}]")
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="pair", input="Go on", previous_response_id="resp_unknown")
    with pytest.raises(openai.BadRequestError) as other_model:
        await client.responses.create(model="solo", input="Go on", previous_response_id=next(iter(held)))
    assert "'pair'" in other_model.value.message


async def test_store_false_is_not_routed_back(client: openai.AsyncOpenAI) -> None:
    created = await client.responses.create(model="solo", input="Forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(created.id)


# Translated to a deployment that speaks chat completions only

async def test_translated_text_answer(gateway: Gateway, client: openai.AsyncOpenAI, chat_only: ChatOnlyUpstream,
                                      http: aiohttp.ClientSession) -> None:
    raw = await client.responses.with_raw_response.create(model="vllm-chat", instructions="Be brief",
                                                          input="Say hello", max_output_tokens=50)
    response = raw.parse()
    assert response.output_text == "Hello from chat." and response.status == "completed"
    assert response.id.startswith("resp_") and response.store is False
    assert chat_only.seen[-1].body == {"messages": [{"role": "system", "content": "Be brief"},
                                                    {"role": "user", "content": "Say hello"}],
                                       "model": "Qwen/Qwen3-8B", "max_tokens": 50}
    assert response.usage is not None and (response.usage.input_tokens, response.usage.output_tokens) == (13, 6)
    record = await spend_record(http, gateway, raw.headers["x-request-id"], ADMIN)
    assert usage_of(record) == (13, 6, 19, 4, 0)
    with pytest.raises(openai.NotFoundError):  # translated answers are not stored
        await client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as refused:
        await client.responses.create(model="vllm-chat", input="more", previous_response_id=response.id)
    assert "chat completions, whose answers are not stored" in refused.value.message


async def test_translated_items_roles_parts_and_formats(client: openai.AsyncOpenAI,
                                                         chat_only: ChatOnlyUpstream) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    answer = await client.responses.create(
        model="vllm-chat", temperature=0.2, top_p=0.9, reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema, "strict": True}},
        input=[{"type": "message", "role": "developer", "content": "Answer in JSON"},
               {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                            {"type": "input_image", "image_url": "https://img.invalid/a.png",
                                             "detail": "low"}]},
               {"role": "assistant", "content": [{"type": "output_text", "text": "A picture."}]},
               {"type": "reasoning", "id": "rs_1", "summary": []},
               {"role": "user", "content": "Which?"}])
    assert answer.text.format.type == "json_schema"
    assert chat_only.seen[-1].body == {
        "messages": [
            {"role": "system", "content": "Answer in JSON"},
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "https://img.invalid/a.png",
                                                                             "detail": "low"}}]},
            {"role": "assistant", "content": "A picture."},
            {"role": "user", "content": "Which?"}],
        "model": "Qwen/Qwen3-8B", "temperature": 0.2, "top_p": 0.9, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema,
                                                                    "strict": True}}}


async def test_translated_tool_round_trip(client: openai.AsyncOpenAI, chat_only: ChatOnlyUpstream) -> None:
    first = await client.responses.create(model="vllm-chat", input="Weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].arguments == '{"city": "Paris"}'
    assert chat_only.seen[-1].body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city", "parameters": WEATHER["parameters"]}}]
    call = calls[0]
    second = await client.responses.create(model="vllm-chat", tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}])
    assert second.output_text == "The tool said: 18C and sunny"
    assert chat_only.seen[-1].body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": call.call_id, "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}, "type": "function"}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "18C and sunny"}]


async def test_translated_streams(gateway: Gateway, client: openai.AsyncOpenAI, chat_only: ChatOnlyUpstream,
                                  http: aiohttp.ClientSession) -> None:
    stream = await client.responses.create(model="vllm-chat", input="Say hello", stream=True)
    events = [event async for event in stream]
    assert chat_only.seen[-1].body["stream_options"] == {"include_usage": True}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello from chat."
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == "Hello from chat."
    assert done.response.usage is not None and done.response.usage.total_tokens == CHAT_USAGE["total_tokens"]

    async with client.responses.stream(model="vllm-chat", input="Weather?", tools=[WEATHER]) as tools:
        kinds = [event.type async for event in tools]
        final = await tools.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call" and call.arguments == '{"city": "Paris"}' and call.name == "get_weather"

    async with http.post(f"{gateway.url}/llm/responses", headers=ADMIN,
                         json={"model": "vllm-chat", "input": "Say hello", "stream": True}) as r:
        assert r.status == 200
        await r.read()
        request_id = r.headers["x-request-id"]
    record = await spend_record(http, gateway, request_id, ADMIN)
    assert usage_of(record) == (13, 6, 19, 4, 0) and record["metadata"]["usage_estimated"] is False


async def test_translated_to_anthropic_through_chat(client: openai.AsyncOpenAI, claude: FakeAnthropic) -> None:
    answer = await client.responses.create(model="claude", input="Weather in Paris?", tools=[WEATHER],
                                           max_output_tokens=200)
    call = next(item for item in answer.output if item.type == "function_call")
    assert claude.seen[-1].body["tools"][0]["name"] == "get_weather"
    final = await client.responses.create(model="claude", tools=[WEATHER], max_output_tokens=200, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "18C"}])
    assert "18C" in final.output_text
    stream = await client.responses.create(model="claude", input="Hi", max_output_tokens=200, stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.completed" and events[-1].response.usage is not None
    assert events[-1].response.output_text


async def test_the_built_in_mock_answers_through_the_translation(client: openai.AsyncOpenAI) -> None:
    assert (await client.responses.create(model="mocked", input="hi")).output_text == "A mocked answer"
    events = [event async for event in await client.responses.create(model="mocked", input="hi", stream=True)]
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "A mocked answer"


async def test_untranslatable_requests_are_refused_naming_what(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="vllm-chat", input="find it", tools=[{"type": "web_search"}])
    assert "web_search" in refused.value.message
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(model="vllm-chat", input=123)  # type: ignore[arg-type]


async def test_a_custom_tool_is_a_function_of_one_string_and_its_call_comes_back_raw(
        client: openai.AsyncOpenAI, chat_only: ChatOnlyUpstream) -> None:
    """Codex's apply_patch: offered as a function taking `input` (its grammar in that argument's description),
    called with the patch as that string, given back as a custom_tool_call holding the patch as it is; the call
    and its output go up again as the assistant's tool call and a tool message."""
    first = await client.responses.create(model="vllm-chat", input="Add hello.txt", tools=[APPLY_PATCH])
    offered = chat_only.seen[-1].body["tools"][0]["function"]
    assert offered["name"] == "apply_patch" and offered["parameters"]["required"] == ["input"]
    assert "start: begin_patch hunk+ end_patch" in offered["parameters"]["properties"]["input"]["description"]
    call = first.output[0]
    assert isinstance(call, ResponseCustomToolCall) and (call.name, call.input) == ("apply_patch", PATCH)
    second = await client.responses.create(model="vllm-chat", tools=[APPLY_PATCH], input=[
        {"role": "user", "content": "Add hello.txt"},
        {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch", "input": call.input},
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}])
    assert second.output_text == "The tool said: Done!"
    assert chat_only.seen[-1].body["messages"][1:] == [
        {"role": "assistant", "tool_calls": [{"id": call.call_id, "type": "function", "function": {
            "name": "apply_patch", "arguments": json.dumps({"input": PATCH}, separators=(",", ":"))}}]},
        {"role": "tool", "tool_call_id": call.call_id, "content": "Done!"}]

    stream = await client.responses.create(model="vllm-chat", input="Add hello.txt", tools=[APPLY_PATCH],
                                           stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds[-4:] == ["response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
                          "response.output_item.done", "response.completed"]
    done = events[-1]
    assert done.type == "response.completed"
    item = done.response.output[0]
    assert isinstance(item, ResponseCustomToolCall) and item.input == PATCH


async def test_codexs_request_is_translated_and_what_a_chat_server_cannot_use_is_left_out(
        client: openai.AsyncOpenAI, chat_only: ChatOnlyUpstream, http: aiohttp.ClientSession,
        gateway: Gateway) -> None:
    """The request Codex 0.171.0 sends (recorded): developer messages, function tools and apply_patch,
    reasoning, include of encrypted reasoning with store off, prompt_cache_key, client_metadata,
    text.verbosity. The chat server gets what it can use."""
    body = {**json.loads(CODEX_REQUEST.read_bytes()), "model": "vllm-chat"}
    async with http.post(f"{gateway.url}/v1/responses", headers=ADMIN, json=body) as r:
        assert r.status == 200, await r.text()
        await r.read()
    sent = chat_only.seen[-1].body
    assert sorted(sent) == ["messages", "model", "parallel_tool_calls", "reasoning_effort", "stream",
                            "stream_options", "tool_choice", "tools"]
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user", "user"]
    assert [t["function"]["name"] for t in sent["tools"]] == [t["name"] for t in body["tools"]]
    for kind, setting in (({"type": "web_search", "external_web_access": True}, "web_search"),
                          ({"type": "tool_search", "execution": "client"}, "[agents] enabled = false")):
        async with http.post(f"{gateway.url}/v1/responses", headers=ADMIN,
                             json={**body, "tools": [*body["tools"], kind]}) as r:
            refused = await r.json()
        assert r.status == 400 and refused["error"]["param"] == f"tools[{len(body['tools'])}]"
        assert repr(kind["type"]) in refused["error"]["message"] and setting in refused["error"]["message"]
    with pytest.raises(openai.BadRequestError) as refused_include:
        await client.responses.create(model="vllm-chat", input="hi", include=["file_search_call.results"])
    assert refused_include.value.param == "include[0]"


# Budgets and rate limits

async def test_budgets_and_rate_limits_refuse_in_openai_shape(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await new_key(http, gateway, max_budget=0.03)  # room for one answer of 0.025
    async with openai.AsyncOpenAI(api_key=key, base_url=f"{gateway.url}/v1", max_retries=0) as budgeted:
        await budgeted.responses.create(model="solo", input="hi", max_output_tokens=8)
        with pytest.raises(openai.RateLimitError) as over:
            await budgeted.responses.create(model="solo", input="hi", max_output_tokens=8)
    assert over.value.body["type"] == "budget_exceeded"  # type: ignore[index]
    assert "Budget has been exceeded! Key=" in over.value.message and "Current cost: 0.0249999" in over.value.message
    key = await new_key(http, gateway, rpm_limit=1)
    async with openai.AsyncOpenAI(api_key=key, base_url=f"{gateway.url}/v1", max_retries=0) as limited:
        await limited.responses.create(model="vllm-chat", input="hi")
        with pytest.raises(openai.RateLimitError):
            await limited.responses.create(model="vllm-chat", input="hi")
        with pytest.raises(openai.RateLimitError):
            async for _ in await limited.responses.create(model="solo", input="hi", stream=True):
                pass



# The pieces, without a gateway

def test_which_deployments_serve_the_responses_api_as_litellm_decides() -> None:
    openai_provider, vllm, claude_provider = PROVIDERS["openai"], PROVIDERS["hosted_vllm"], PROVIDERS["anthropic"]
    assert serves_responses(openai_provider, {}) and not serves_responses(vllm, {})
    assert serves_responses(vllm, {"supported_endpoints": ["/v1/chat/completions", "/v1/responses"]})
    assert serves_responses(vllm, {"supported_endpoints": ["/responses"]})
    assert not serves_responses(openai_provider, {"supported_endpoints": ["/v1/chat/completions"]})
    assert not serves_responses(claude_provider, {"supported_endpoints": ["/v1/responses"]})


def _stream(frames: list[bytes], cut: int | None) -> bytes:
    request = msgspec.convert({"model": "m", "input": "hi", "tools": [WEATHER]}, ResponsesRequest)
    translator = ChatToResponsesStream(Shell(request, "m"))
    whole = b"".join(frames)
    pieces = [whole[at:at + cut] for at in range(0, len(whole), cut)] if cut else frames
    out = b"".join(translator.feed(piece) for piece in pieces) + translator.flush()
    return re.sub(rb'"(resp|msg|fc)_[0-9a-f]{48}"', rb'"\1_x"', re.sub(rb'"created_at":\d+', b'"created_at":0', out))


CHAT_FRAMES = [
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"Let me look."},"finish_reason":null}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
    b'{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},'
    b'"finish_reason":null}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
    b'{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": \\"Oslo\\"}"}}]},"finish_reason":null}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"tool_calls"}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}\n\n',
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("cut", [1, 7, 64])
def test_the_stream_translation_does_not_depend_on_how_reads_cut_it(cut: int) -> None:
    assert _stream(CHAT_FRAMES, cut) == _stream(CHAT_FRAMES, None)


def test_a_translated_stream_in_order_with_sequence_numbers() -> None:
    events = [json.loads(line[6:]) for line in _stream(CHAT_FRAMES, None).split(b"\n") if line.startswith(b"data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    done = events[-1]["response"]
    assert [item["type"] for item in done["output"]] == ["message", "function_call"]
    assert done["output"][1]["call_id"] == "call_1" and done["output"][1]["arguments"] == '{"city": "Oslo"}'
    assert done["usage"] == {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
                             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13}


def test_a_chat_stream_cut_short_ends_with_an_error_event_and_the_response_failed() -> None:
    said, ended = _stream(CHAT_FRAMES[:2], None).rstrip().rsplit(b"\n\n", 2)[1:]
    assert said.startswith(b"event: error\ndata: {\"type\":\"error\"")
    assert ended.startswith(b"event: response.failed\ndata: {\"type\":\"response.failed\"")
    failed = json.loads(ended.split(b"data: ", 1)[1])
    assert failed["response"]["status"] == "failed" and failed["response"]["error"]["code"] == "api_error"
    assert failed["sequence_number"] == json.loads(said.split(b"data: ", 1)[1])["sequence_number"] + 1


async def test_the_routes_of_stored_responses_on_each_store(store: Store) -> None:
    """Kept at once in the process, written to the database for every other instance, forgotten on delete,
    pruned by age."""
    routes = ResponseRoutes(store.db)
    routes.remember("resp_a", "deployment-1")
    routes.remember("resp_b", "deployment-2")
    assert await routes.deployment_of("resp_a") == "deployment-1"  # before the write is in
    await routes.background.finish()
    other = ResponseRoutes(store.db)  # another instance: nothing in its process
    assert await other.deployment_of("resp_b") == "deployment-2"
    assert await other.deployment_of("resp_unknown") is None
    await other.forget("resp_b")
    assert await ResponseRoutes(store.db).deployment_of("resp_b") is None
    await other.prune(time.time() + 1)
    assert await ResponseRoutes(store.db).deployment_of("resp_a") is None
    await routes.close()
