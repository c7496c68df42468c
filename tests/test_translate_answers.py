"""Whole answers and error answers across the two APIs (gateway/translate/), checked against the official
SDKs' own models of each API's answer."""

from __future__ import annotations

import json
from typing import Any

import anthropic.types
import openai.types.chat
import pytest

from gateway.errors import ApiError
from gateway.translate import (
    anthropic_error,
    chat_response_to_messages,
    messages_response_to_chat,
    to_anthropic_error,
    to_openai_error,
    translate_chat_response,
    translate_messages_response,
)
from tests import translate_corpus


def chat_answer(message: dict[str, object], finish: str = "stop", **extra: object) -> bytes:
    return json.dumps({"id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish,
                                    **extra}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}).encode()


def test_a_vllm_answer_with_reasoning_and_a_tool_call() -> None:
    translated = translate_chat_response(translate_corpus.VLLM_ANSWER, "claude-local")
    message = anthropic.types.Message.model_validate_json(translated.body)
    assert message.id == "msg_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d" and message.model == "claude-local"
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    thinking, text, tool = message.content
    assert thinking.type == "thinking" and thinking.thinking == "Need the weather."
    assert text.type == "text" and text.text == "Let me check."
    assert tool.type == "tool_use" and (tool.id, tool.name, tool.input) == \
        ("chatcmpl-tool-1f2e3d4c5b", "get_weather", {"city": "Oslo"})
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == \
        (150 - 96, 96, 40)
    assert translated.usage is not None
    assert (translated.usage.prompt_tokens, translated.usage.cache_read_tokens) == (150, 96)


@pytest.mark.parametrize(("message", "finish", "extra", "stop", "sequence"), [
    ({"content": "done"}, "stop", {}, "end_turn", None),
    ({"content": "cut"}, "length", {}, "max_tokens", None),
    ({"content": "one, two"}, "stop", {"stop_reason": "three"}, "stop_sequence", "three"),
    ({"content": "x"}, "stop", {"stop_reason": 151645}, "end_turn", None),  # a stop token, not a string
    ({"content": None, "refusal": "I can't."}, "stop", {}, "refusal", None),
    ({"content": None}, "content_filter", {}, "refusal", None),
])
def test_finish_reasons(message: dict[str, object], finish: str, extra: dict[str, object], stop: str,
                        sequence: str | None) -> None:
    answer = json.loads(chat_response_to_messages(chat_answer(message, finish, **extra), "c"))
    assert (answer["stop_reason"], answer["stop_sequence"]) == (stop, sequence)
    anthropic.types.Message.model_validate(answer)


def test_an_answer_that_cannot_be_given_is_a_502() -> None:
    for body in (b"not json", b'{"choices": []}',
                 chat_answer({"tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "f", "arguments": "{broken"}}]}, "tool_calls")):
        with pytest.raises(ApiError) as caught:
            chat_response_to_messages(body, "c")
        assert caught.value.status == 502


def test_an_anthropic_answer_with_thinking_and_a_tool_call() -> None:
    translated = translate_messages_response(translate_corpus.ANTHROPIC_ANSWER, "gpt-claude")
    completion = openai.types.chat.ChatCompletion.model_validate_json(translated.body)
    assert completion.id == "chatcmpl-msg_01Aq9w938a90dw8q" and completion.model == "gpt-claude"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "I will look it up."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("toolu_01A09q90qw90lq917835lq9", "get_weather", {"location": "San Francisco, CA"})
    extra = choice.message.model_extra or {}
    assert extra["reasoning_content"] == "The user wants the weather."
    assert extra["thinking_blocks"] == [{"type": "thinking", "thinking": "The user wants the weather.",
                                         "signature": "WaUjzkypQ2mUEVM36O2T"}]
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == \
        (2095 + 1800, 503, 2095 + 1800 + 503)
    assert usage.prompt_tokens_details is not None and usage.prompt_tokens_details.cached_tokens == 1800
    assert translated.usage is not None and translated.usage.cache_read_tokens == 1800


def test_an_answer_through_the_other_api_and_back() -> None:
    there = chat_response_to_messages(translate_corpus.VLLM_ANSWER, "c")
    back = json.loads(messages_response_to_chat(there, "m"))
    original = json.loads(translate_corpus.VLLM_ANSWER)
    got, sent = back["choices"][0], original["choices"][0]
    assert got["message"]["content"] == sent["message"]["content"]
    assert got["message"]["reasoning_content"] == sent["message"]["reasoning_content"]
    def calls(message: dict[str, Any]) -> list[tuple[str, str, Any]]:
        return [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in message["tool_calls"]]
    assert calls(got["message"]) == calls(sent["message"])
    assert got["finish_reason"] == sent["finish_reason"]
    assert {k: back["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == \
        {k: original["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert back["usage"]["prompt_tokens_details"] == original["usage"]["prompt_tokens_details"]


@pytest.mark.parametrize(("status", "raw", "kind", "message"), [
    (400, b'{"error":{"message":"max_tokens is too large","type":"invalid_request_error","param":"max_tokens",'
          b'"code":null}}', "invalid_request_error", "max_tokens is too large"),
    (400, b'{"object":"error","message":"context too long","type":"BadRequestError","param":null,"code":400}',
     "invalid_request_error", "context too long"),  # vLLM's ErrorResponse, unwrapped in older versions
    (429, b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}',
     "rate_limit_error", "Rate limit reached"),
    (503, b"upstream connect error", "overloaded_error", "upstream connect error"),
    (500, b"", "api_error", "upstream answered 500"),
])
def test_openai_errors_in_anthropic_shape(status: int, raw: bytes, kind: str, message: str) -> None:
    body = json.loads(to_anthropic_error(status, raw))
    assert body == {"type": "error", "error": {"type": kind, "message": message}}
    assert json.loads(anthropic_error(404, "no such model")) == \
        {"type": "error", "error": {"type": "not_found_error", "message": "no such model"}}


@pytest.mark.parametrize(("status", "raw", "kind", "message"), [
    (529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
     "service_unavailable", "Overloaded"),
    (400, b'{"type":"error","error":{"type":"invalid_request_error","message":"messages: field required"}}',
     "invalid_request_error", "messages: field required"),
    (401, b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
     "authentication_error", "invalid x-api-key"),
    (502, b"<html>Bad Gateway</html>", "api_error", "<html>Bad Gateway</html>"),
])
def test_anthropic_errors_in_openai_shape(status: int, raw: bytes, kind: str, message: str) -> None:
    body = json.loads(to_openai_error(status, raw))
    assert body == {"error": {"message": message, "type": kind, "param": None, "code": str(status)}}


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "prompt_tokens_details": {"cached_tokens": 64}},
    # DeepSeek's own names, sent before it also sent OpenAI's
    {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "prompt_cache_hit_tokens": 64,
     "prompt_cache_miss_tokens": 36},
    # LiteLLM's, when the upstream is another LiteLLM proxy
    {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "cache_read_input_tokens": 64,
     "prompt_tokens_details": None},
], ids=["openai", "deepseek", "litellm"])
def test_cache_reads_are_read_under_every_upstreams_name(usage: dict[str, object]) -> None:
    answer = json.loads(chat_answer({"content": "hi"}))
    answer["usage"] = usage
    translated = translate_chat_response(json.dumps(answer).encode(), "claude-local")
    message = anthropic.types.Message.model_validate_json(translated.body)
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == \
        (36, 64, 7)
    assert translated.usage is not None and translated.usage.cache_read_tokens == 64
