"""The stream translators over real HTTP, read by the official SDKs: a tiny relay on 127.0.0.1 translates a
fake upstream's answers (the corpus' bytes, written as the upstream wrote them) for the `anthropic` SDK
(an OpenAI-compatible upstream behind /v1/messages) and for the `openai` SDK (an Anthropic upstream
behind /v1/chat/completions). The relay does what the gateway's routes do (tests/test_translation_routes.py
runs them); here, over the corpus' every shape, it proves the SDKs parse what the translators write."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anthropic
import msgspec
import openai
import pytest
import pytest_asyncio
from aiohttp import web

from gateway.errors import ApiError
from gateway.translate import (
    VLLM,
    ChatToMessagesStream,
    MessagesToChatStream,
    anthropic_error,
    chat_request_to_messages,
    decode_chat_request,
    decode_messages_request,
    messages_request_to_chat,
    to_anthropic_error,
    to_openai_error,
    translate_chat_response,
    translate_messages_response,
)
from tests import translate_corpus
from tests.test_translate_streams import CHAT
from tests.translate_corpus import Stream
from tests.translate_oracle import answer_of_anthropic, answer_of_openai

SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
BY_NAME = {stream.name: stream for stream in (*CHAT, *translate_corpus.ANTHROPIC_STREAMS)}


@dataclass
class Upstream:
    """Answers /v1/chat/completions and /v1/messages with the corpus stream the request's model names."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        if body["model"] == "refuse":
            return web.json_response({"error": {"message": "model 'refuse' does not exist", "type": "NotFoundError",
                                                "param": None, "code": 404}}, status=404)
        if not body.get("stream"):
            return web.Response(body=translate_corpus.VLLM_ANSWER, content_type="application/json")
        return await self._write(request, BY_NAME[body["model"]])

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append(body)
        if body["model"] == "busy":
            return web.json_response({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                                     status=529)
        if not body.get("stream"):
            return web.Response(body=translate_corpus.ANTHROPIC_ANSWER, content_type="application/json")
        return await self._write(request, BY_NAME[body["model"]])

    async def _write(self, request: web.Request, stream: Stream) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE)
        await response.prepare(request)
        for frame in stream.frames:
            await response.write(frame)
            await asyncio.sleep(0)  # one write a frame, as an upstream flushes them
        await response.write_eof()
        return response


class Relay:
    """A route of each direction, the way the gateway serves them: translate, send, translate back."""

    def __init__(self, upstream: str, session: aiohttp.ClientSession) -> None:
        self.upstream = upstream
        self.session = session

    async def messages(self, request: web.Request) -> web.StreamResponse:
        try:
            asked = decode_messages_request(await request.read())
            sent = messages_request_to_chat(asked, VLLM)
        except ApiError as error:
            return web.Response(status=error.status, body=anthropic_error(error.status, error.message),
                                content_type="application/json")
        async with self.session.post(f"{self.upstream}/v1/chat/completions", data=_json(sent)) as answer:
            if answer.status >= 400:
                return web.Response(status=answer.status, body=to_anthropic_error(answer.status, await answer.read()),
                                    content_type="application/json")
            if not asked.stream:
                translated = translate_chat_response(await answer.read(), asked.model)
                return web.Response(body=translated.body, content_type="application/json")
            translator = ChatToMessagesStream(asked.model)
            return await _relay(request, answer, translator.feed, translator.flush)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            asked = decode_chat_request(await request.read())
            sent = chat_request_to_messages(asked)
        except ApiError as error:
            return error.response()
        async with self.session.post(f"{self.upstream}/v1/messages", data=_json(sent)) as answer:
            if answer.status >= 400:
                return web.Response(status=answer.status, body=to_openai_error(answer.status, await answer.read()),
                                    content_type="application/json")
            if not asked.stream:
                translated = translate_messages_response(await answer.read(), asked.model)
                return web.Response(body=translated.body, content_type="application/json")
            include_usage = asked.stream_options is not None and bool(asked.stream_options.include_usage)
            translator = MessagesToChatStream(asked.model, include_usage)
            return await _relay(request, answer, translator.feed, translator.flush)


def _json(struct: Any) -> bytes:
    return msgspec.json.encode(struct)


async def _relay(request: web.Request, answer: aiohttp.ClientResponse, feed: Any, flush: Any) -> web.StreamResponse:
    response = web.StreamResponse(headers=SSE)
    await response.prepare(request)
    async for chunk in answer.content.iter_any():
        out = feed(chunk)
        if out:
            await response.write(out)
    await response.write(flush())
    await response.write_eof()
    return response


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@dataclass
class Servers:
    upstream: Upstream
    url: str


@pytest_asyncio.fixture(loop_scope="session")
async def servers() -> AsyncIterator[Servers]:
    upstream = Upstream()
    upstream_app = web.Application()
    upstream_app.router.add_post("/v1/chat/completions", upstream.chat)
    upstream_app.router.add_post("/v1/messages", upstream.messages)
    upstream_runner, upstream_url = await _serve(upstream_app)
    async with aiohttp.ClientSession() as session:
        relay = Relay(upstream_url, session)
        relay_app = web.Application()
        relay_app.router.add_post("/v1/messages", relay.messages)
        relay_app.router.add_post("/v1/chat/completions", relay.chat)
        relay_runner, relay_url = await _serve(relay_app)
        try:
            yield Servers(upstream, relay_url)
        finally:
            await relay_runner.cleanup()
            await upstream_runner.cleanup()


def claude(servers: Servers) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=servers.url, api_key="sk-ant-test", max_retries=0, timeout=20)


def gpt(servers: Servers) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{servers.url}/v1", api_key="sk-test", max_retries=0, timeout=20)


TOOLS: list[Any] = [{"name": "get_weather", "description": "Weather now",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
STREAMS = [s for s in CHAT if s is not translate_corpus.VLLM_ERROR]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("stream", STREAMS, ids=lambda s: s.name)
async def test_anthropic_sdk_streams_an_openai_upstream(servers: Servers, stream: Stream) -> None:
    expected = answer_of_openai(b"".join(stream.frames))
    async with claude(servers) as client:
        async with client.messages.stream(model=stream.name, max_tokens=512, tools=TOOLS, system="Be brief.",
                                          thinking={"type": "enabled", "budget_tokens": 1024},
                                          messages=[{"role": "user", "content": "Weather in Oslo?"}]) as events:
            texts = [text async for text in events.text_stream]
            message = await events.get_final_message()
    assert "".join(texts) == expected.text
    thinking = "".join(block.thinking for block in message.content if block.type == "thinking")
    tools = [(block.id, block.name, block.input) for block in message.content if block.type == "tool_use"]
    assert (thinking, tools) == (expected.thinking, expected.tools)
    assert message.model == stream.name and message.id.startswith("msg_")
    assert message.usage.output_tokens == expected.completion_tokens
    sent = servers.upstream.seen[-1]
    assert sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 512
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Weather in Oslo?"}]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}


@pytest.mark.asyncio(loop_scope="session")
async def test_anthropic_sdk_reads_an_openai_answer(servers: Servers) -> None:
    async with claude(servers) as client:
        message = await client.messages.create(model="any", max_tokens=64, messages=[{"role": "user", "content": "x"}])
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.stop_reason == "tool_use" and message.usage.cache_read_input_tokens == 96


@pytest.mark.asyncio(loop_scope="session")
async def test_anthropic_sdk_sees_an_error_in_the_stream(servers: Servers) -> None:
    async with claude(servers) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            async with client.messages.stream(model=translate_corpus.VLLM_ERROR.name, max_tokens=64,
                                              messages=[{"role": "user", "content": "x"}]) as events:
                async for _ in events:
                    pass
    assert "The engine died while generating." in str(caught.value)


@pytest.mark.asyncio(loop_scope="session")
async def test_anthropic_sdk_gets_refusals_and_upstream_errors_in_its_shape(servers: Servers) -> None:
    async with claude(servers) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(model="any", max_tokens=64, messages=[{"role": "user", "content": "x"}],
                                         tools=[{"type": "web_search_20250305", "name": "web_search"}])
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.create(model="refuse", max_tokens=64, messages=[{"role": "user", "content": "x"}])
    assert refused.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                             "message": refused.value.body["error"]["message"]}}
    assert "tools[0]" in refused.value.message
    assert missing.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                             "message": "model 'refuse' does not exist"}}


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("stream", [s for s in translate_corpus.ANTHROPIC_STREAMS
                                    if s is not translate_corpus.ANTHROPIC_ERROR], ids=lambda s: s.name)
async def test_openai_sdk_streams_an_anthropic_upstream(servers: Servers, stream: Stream) -> None:
    expected = answer_of_anthropic(b"".join(stream.frames))
    async with gpt(servers) as client:
        chunks = await client.chat.completions.create(
            model=stream.name, stream=True, stream_options={"include_usage": True}, reasoning_effort="low",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
            tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
        text, arguments, names, finish, usage = "", {}, {}, None, None
        async for chunk in chunks:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or ():
                    if call.function and call.function.name:
                        names[call.index] = (call.id, call.function.name)
                    arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
                finish = choice.finish_reason or finish
    assert text == expected.text and finish == expected.stop
    assert [(*names[i], json.loads(arguments[i])) for i in sorted(names)] == expected.tools
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == \
        (expected.prompt_tokens, expected.completion_tokens)
    sent = servers.upstream.seen[-1]
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and sent["max_tokens"] == 4096


@pytest.mark.asyncio(loop_scope="session")
async def test_openai_sdk_stream_helper_accumulates_an_anthropic_upstream(servers: Servers) -> None:
    async with gpt(servers) as client:
        async with client.chat.completions.stream(
                model=translate_corpus.ANTHROPIC_THINKING.name, messages=[{"role": "user", "content": "27*453?"}],
                stream_options={"include_usage": True}) as events:
            completion = await events.get_final_completion()
    message = completion.choices[0].message
    assert message.content == "27 * 453 = 12,231"
    assert (message.model_extra or {})["reasoning_content"].startswith("27 * 453:")
    assert completion.usage is not None and completion.usage.completion_tokens == 124


@pytest.mark.asyncio(loop_scope="session")
async def test_openai_sdk_reads_an_anthropic_answer_and_errors(servers: Servers) -> None:
    async with gpt(servers) as client:
        completion = await client.chat.completions.create(model="any", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.APIError) as in_stream:
            chunks = await client.chat.completions.create(model=translate_corpus.ANTHROPIC_ERROR.name, stream=True,
                                                          messages=[{"role": "user", "content": "x"}])
            async for _ in chunks:
                pass
        with pytest.raises(openai.APIStatusError) as busy:
            await client.chat.completions.create(model="busy", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="any", n=2, messages=[{"role": "user", "content": "x"}])
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.prompt_tokens == 2095 + 1800
    assert in_stream.value.message == "Overloaded"
    assert busy.value.status_code == 529 and busy.value.body == {
        "message": "Overloaded", "type": "service_unavailable", "param": None, "code": "529"}
    assert refused.value.body is not None and "n cannot be sent" in str(refused.value.body)
