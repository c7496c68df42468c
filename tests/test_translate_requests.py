"""Requests across the two APIs (gateway/translate/): every content type both ways, what each upstream
dialect is sent for thinking, and a 400 naming the field for what cannot be said."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.errors import ApiError
from gateway.translate import (
    GENERIC,
    OLLAMA,
    OPENAI,
    VLLM,
    ZAI,
    Dialect,
    chat_request_to_messages,
    decode_chat_request,
    decode_messages_request,
    dialect_for,
    messages_request_to_chat,
)

PNG = "iVBORw0KGgoAAAANSUhEUg=="
PDF = "JVBERi0xLjQK"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def to_chat(body: dict[str, Any], dialect: Dialect = GENERIC) -> dict[str, Any]:
    """The chat request as the upstream receives it: encoded, then read back as JSON."""
    request = decode_messages_request(msgspec.json.encode(body))
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(messages_request_to_chat(request, dialect)))
    return result


def to_messages(body: dict[str, Any]) -> dict[str, Any]:
    request = decode_chat_request(msgspec.json.encode(body))
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(chat_request_to_messages(request)))
    return result


def anthropic(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages, **fields}


def chat(messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": messages, **fields}


def refused(call: Any, body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(body)
    assert caught.value.status == 400 and caught.value.type == "invalid_request_error"
    return caught.value


# ---- Messages in, OpenAI-compatible upstream -----------------------------------------------------

def test_system_and_a_conversation_in_text() -> None:
    two_texts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    sent = to_chat(anthropic([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                              {"role": "user", "content": two_texts}],
                             system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "Use metric."}]))
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief.\n\nUse metric."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert sent["model"] == "claude-sonnet-4-5" and sent["max_tokens"] == 1024
    assert to_chat(anthropic([{"role": "user", "content": "x"}], system="S"))["messages"][0] == \
        {"role": "system", "content": "S"}


def test_images_and_documents() -> None:
    sent = to_chat(anthropic([{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
         "title": "report.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "text", "text": "Describe them."},
    ]}]))
    assert sent["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "report.pdf"}},
        {"type": "text", "text": "plain words"},
        {"type": "text", "text": "Describe them."},
    ]
    error = refused(to_chat, anthropic([{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "file_011"}}]}]))
    assert error.param == "messages[0].content[0].source" and "Files API" in error.message


def test_tools_and_tool_choice() -> None:
    tools = [{"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA}]
    sent = to_chat(anthropic([{"role": "user", "content": "Oslo?"}], tools=tools,
                             tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert sent["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                                               "parameters": WEATHER_SCHEMA}}]
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    for choice, expected in (({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
                             ({"type": "tool", "name": "get_weather"},
                              {"type": "function", "function": {"name": "get_weather"}})):
        sent = to_chat(anthropic([{"role": "user", "content": "Oslo?"}], tools=tools, tool_choice=choice))
        assert sent["tool_choice"] == expected and "parallel_tool_calls" not in sent
    server_tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    error = refused(to_chat, anthropic([{"role": "user", "content": "news?"}], tools=[*tools, server_tool]))
    assert error.param == "tools[1].type" and "web_search_20250305" in error.message


def test_a_tool_loop() -> None:
    sent = to_chat(anthropic([
        {"role": "user", "content": "Weather in Oslo and a photo?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two tools.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Calling."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "photo", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4°C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "camera offline"},
                         {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
            {"type": "text", "text": "Go on."}]},
    ]))
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": "Calling.", "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "photo", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "4°C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: camera offline"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                     {"type": "text", "text": "Go on."}]},
    ]
    assistant = to_chat(anthropic([{"role": "user", "content": "x"}, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Two tools.", "signature": "sig"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}]), VLLM)["messages"][1]
    assert assistant == {"role": "assistant", "reasoning_content": "Two tools.", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}


def test_sampling_stop_user_and_stream() -> None:
    sent = to_chat(anthropic([{"role": "user", "content": "x"}], temperature=0.2, top_p=0.9, top_k=40,
                             stop_sequences=["END", "STOP"], metadata={"user_id": "u-42"}, stream=True,
                             service_tier="standard_only", cache_control={"type": "ephemeral"}))
    assert {k: sent[k] for k in ("temperature", "top_p", "top_k", "stop", "user", "stream", "stream_options")} == {
        "temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop": ["END", "STOP"], "user": "u-42", "stream": True,
        "stream_options": {"include_usage": True}}
    assert "service_tier" not in sent and "cache_control" not in sent
    assert to_chat(anthropic([{"role": "user", "content": "x"}]), OPENAI)["max_completion_tokens"] == 1024


@pytest.mark.parametrize(("dialect", "thinking", "effort", "expected"), [
    (OPENAI, {"type": "enabled", "budget_tokens": 1024}, None, {"reasoning_effort": "low"}),
    (OPENAI, {"type": "enabled", "budget_tokens": 16000}, None, {"reasoning_effort": "high"}),
    (OPENAI, {"type": "enabled", "budget_tokens": 16000}, "medium", {"reasoning_effort": "medium"}),
    (OPENAI, {"type": "disabled"}, None, {}),
    (OPENAI, {"type": "adaptive"}, "max", {"reasoning_effort": "high"}),
    (VLLM, {"type": "enabled", "budget_tokens": 2048}, None,
     {"reasoning_effort": "medium", "chat_template_kwargs": {"enable_thinking": True, "thinking": True}}),
    (VLLM, {"type": "disabled"}, None, {"chat_template_kwargs": {"enable_thinking": False, "thinking": False}}),
    (OLLAMA, {"type": "disabled"}, None, {"reasoning_effort": "none"}),
    (OLLAMA, {"type": "adaptive"}, None, {"reasoning_effort": "medium"}),
    (ZAI, {"type": "enabled", "budget_tokens": 4096}, None, {"thinking": {"type": "enabled"}}),
    (ZAI, {"type": "disabled"}, None, {"thinking": {"type": "disabled"}}),
    (GENERIC, None, "low", {"reasoning_effort": "low"}),
])
def test_thinking_in_each_dialect(dialect: Dialect, thinking: dict[str, Any] | None, effort: str | None,
                                  expected: dict[str, Any]) -> None:
    fields: dict[str, Any] = {}
    if thinking is not None:
        fields["thinking"] = thinking
    if effort is not None:
        fields["output_config"] = {"effort": effort}
    sent = to_chat(anthropic([{"role": "user", "content": "x"}], **fields), dialect)
    assert {k: sent[k] for k in ("reasoning_effort", "chat_template_kwargs", "thinking") if k in sent} == expected


def test_dialects_by_provider_and_prefill() -> None:
    assert (dialect_for("hosted_vllm"), dialect_for("ollama_chat"), dialect_for("zai"), dialect_for("openai"),
            dialect_for("groq")) == (VLLM, OLLAMA, ZAI, OPENAI, GENERIC)
    prefill = anthropic([{"role": "user", "content": "Name a color."},
                         {"role": "assistant", "content": "The color is"}])
    vllm = to_chat(prefill, VLLM)
    assert (vllm["continue_final_message"], vllm["add_generation_prompt"]) == (True, False)
    assert "continue_final_message" not in to_chat(prefill, OPENAI)


def test_structured_output() -> None:
    sent = to_chat(anthropic([{"role": "user", "content": "x"}],
                             output_config={"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}}))
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": WEATHER_SCHEMA, "strict": True}}


@pytest.mark.parametrize(("field", "value", "param"), [
    ("container", "container_011", "container"),
    ("mcp_servers", [{"type": "url", "url": "https://mcp.example.com", "name": "m"}], "mcp_servers"),
    ("context_management", {"edits": [{"type": "clear_tool_uses_20250919", "keep": {"type": "tool_uses", "value": 3}}]},
     "context_management"),
    ("context_management", {"edits": [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns",
                                                                                  "value": 1}}]},
     "context_management"),
    ("inference_geo", "eu", "inference_geo"),
    ("speed", "fast", "speed"),
    ("frequency_penalty", 0.5, "frequency_penalty"),
    ("max_tokens", "many", "max_tokens"),
])
def test_what_an_openai_upstream_cannot_do_is_refused_by_name(field: str, value: Any, param: str) -> None:
    error = refused(to_chat, anthropic([{"role": "user", "content": "x"}], **{field: value}))
    assert error.param == param and field in error.message


def test_claude_codes_system_messages_and_context_management() -> None:
    """A system message after a user turn stays where it is; clearing thinking while keeping all of it edits
    nothing and is left out, as is a context_management with no edits."""
    keep_all = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    sent = to_chat(anthropic([{"role": "user", "content": "hi"},
                              {"role": "system", "content": "Agents: general-purpose."},
                              {"role": "assistant", "content": "Hello"},
                              {"role": "user", "content": "more"},
                              {"role": "system", "content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}]}],
                             system="Be brief.", context_management=keep_all))
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "system", "content": "Agents: general-purpose."}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "more"}, {"role": "system", "content": "a\n\nb"}]
    assert "context_management" not in sent
    assert "context_management" not in to_chat(anthropic([{"role": "user", "content": "x"}],
                                                         context_management={"edits": []}))
    error = refused(to_chat, anthropic([{"role": "user", "content": "x"}, {"role": "system", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]))
    assert error.param == "messages[1].content[0].type"
    unknown = refused(to_chat, anthropic([{"role": "user", "content": "x"}],
                                         context_management={"edits": [], "later": True}))
    assert unknown.param == "context_management.later"


def test_blocks_that_do_not_belong_are_refused_by_path() -> None:
    error = refused(to_chat, anthropic([{"role": "user", "content": [
        {"type": "text", "text": "x"}, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"}]}]))
    assert error.param == "messages[0].content[1].type"
    error = refused(to_chat, anthropic([{"role": "assistant", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]}]))
    assert error.param == "messages[0].content[0].type" and "assistant" in error.message
    error = refused(decode_messages_request, b"{not json")
    assert "not JSON" in error.message


def test_a_body_already_parsed_decodes_as_its_bytes_do() -> None:
    body = anthropic([{"role": "user", "content": [{"type": "text", "text": "x"}]}], tools=[
        {"name": "f", "input_schema": {"type": "object"}}], tool_choice={"type": "auto"}, thinking={"type": "disabled"})
    assert decode_messages_request(body) == decode_messages_request(msgspec.json.encode(body))
    asked = chat([{"role": "user", "content": "x"}], tool_choice="auto", stop="END")
    assert decode_chat_request(asked) == decode_chat_request(msgspec.json.encode(asked))
    assert refused(decode_chat_request, {"messages": [{"role": "narrator", "content": "x"}]}).param == \
        "messages[0].role"
    missing = refused(decode_messages_request, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert missing.param == "max_tokens" and "max_tokens" in missing.message
    assert refused(decode_chat_request, {"messages": [{"role": "tool", "content": "x"}]}).param == \
        "messages[0].tool_call_id"


# ---- OpenAI chat in, Anthropic upstream ----------------------------------------------------------

def test_system_developer_and_merged_turns() -> None:
    sent = to_messages(chat([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric.",
                                           "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]))
    assert sent["system"] == [{"type": "text", "text": "Be brief."},
                              {"type": "text", "text": "Use metric.", "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
    ]
    assert sent["max_tokens"] == 4096 and sent["model"] == "gpt-4o"


def test_images_files_and_cache_control() -> None:
    sent = to_messages(chat([{"role": "user", "cache_control": {"type": "ephemeral", "ttl": "1h"}, "content": [
        {"type": "text", "text": "Look:", "cache_control": {"type": "ephemeral"}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "r.pdf"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGVsbG8=", "filename": "n.txt"}},
    ]}]))
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Look:", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
         "title": "r.pdf"},
        {"type": "document", "source": {"type": "text", "data": "hello", "media_type": "text/plain"},
         "title": "n.txt", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    error = refused(to_messages, chat([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}]}]))
    assert error.param == "messages[0].content[0].image_url"
    error = refused(to_messages, chat([{"role": "user", "content": [{"type": "file", "file": {"file_id": "f-1"}}]}]))
    assert error.param == "messages[0].content[0].file.file_id"


def test_a_tool_loop_becomes_tool_use_and_tool_results() -> None:
    sent = to_messages(chat([
        {"role": "user", "content": "Weather in Oslo and Bergen?"},
        {"role": "assistant", "content": None, "reasoning_content": "Two calls.",
         "thinking_blocks": [{"type": "thinking", "thinking": "Two calls.", "signature": "c2ln"}],
         "tool_calls": [
             {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
             {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "7°C"}],
         "cache_control": {"type": "ephemeral"}},
        {"role": "user", "content": "And tomorrow?"},
    ], tools=[{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA, "strict": True}},
              {"type": "function", "function": {"name": "now"}}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, parallel_tool_calls=False))
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Two calls.", "signature": "c2ln"},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "4°C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "7°C"}],
             "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "And tomorrow?"}]},
    ]
    assert sent["tools"] == [{"name": "get_weather", "input_schema": WEATHER_SCHEMA, "strict": True},
                             {"name": "now", "input_schema": {"type": "object", "properties": {}}}]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    error = refused(to_messages, chat([{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2]"}}]}]))
    assert error.param == "messages[0].tool_calls[0].function.arguments"


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ("none", None, {"type": "none"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_tool_choice(choice: str | None, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    fields: dict[str, Any] = {"tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        fields["tool_choice"] = choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    assert to_messages(chat([{"role": "user", "content": "x"}], **fields)).get("tool_choice") == expected


def test_limits_sampling_stop_and_user() -> None:
    sent = to_messages(chat([{"role": "user", "content": "x"}], max_completion_tokens=300, max_tokens=99,
                            temperature=0.5, top_p=0.8, top_k=20, stop="END", user="u-7", stream=True,
                            stream_options={"include_usage": True}, seed=3, store=False, metadata={"tag": "a"}))
    assert {k: sent[k] for k in ("max_tokens", "temperature", "top_p", "top_k", "stop_sequences", "metadata",
                                 "stream")} == {"max_tokens": 300, "temperature": 0.5, "top_p": 0.8, "top_k": 20,
                                                "stop_sequences": ["END"], "metadata": {"user_id": "u-7"},
                                                "stream": True}
    assert set(sent) == {"model", "max_tokens", "messages", "temperature", "top_p", "top_k", "stop_sequences",
                         "metadata", "stream"}


@pytest.mark.parametrize(("fields", "max_tokens", "thinking"), [
    ({"reasoning_effort": "medium"}, 4096, {"type": "enabled", "budget_tokens": 2048}),
    ({"reasoning_effort": "high"}, 4096 + 4096, {"type": "enabled", "budget_tokens": 4096}),
    ({"reasoning_effort": "max", "max_tokens": 5000}, 5000, {"type": "enabled", "budget_tokens": 4999}),
    ({"reasoning_effort": "none"}, 4096, {"type": "disabled"}),
    ({"thinking": {"type": "enabled", "budget_tokens": 3000}, "reasoning_effort": "low"}, 4096,
     {"type": "enabled", "budget_tokens": 3000}),
    ({"thinking": {"type": "adaptive"}}, 4096, {"type": "adaptive"}),
])
def test_reasoning_effort_becomes_a_thinking_budget(fields: dict[str, Any], max_tokens: int,
                                                     thinking: dict[str, Any]) -> None:
    sent = to_messages(chat([{"role": "user", "content": "x"}], **fields))
    assert (sent["max_tokens"], sent["thinking"]) == (max_tokens, thinking)


def test_structured_output_and_what_anthropic_cannot_do() -> None:
    sent = to_messages(chat([{"role": "user", "content": "x"}], response_format={
        "type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True}}))
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}}
    assert "output_config" not in to_messages(chat([{"role": "user", "content": "x"}],
                                                   response_format={"type": "text"}))
    for field, value in (("n", 2), ("logprobs", True), ("presence_penalty", 0.3), ("logit_bias", {"50256": -100}),
                         ("functions", [{"name": "f"}]), ("modalities", ["text", "audio"]),
                         ("response_format", {"type": "json_object"}), ("reasoning_effort", "extreme"),
                         ("max_tokens", 900)):
        extra = {"reasoning_effort": "high"} if field == "max_tokens" else {}
        error = refused(to_messages, chat([{"role": "user", "content": "x"}], **{field: value, **extra}))
        assert error.param == field, field
    error = refused(to_messages, chat([{"role": "user", "content": "x"}], frobnicate=True))
    assert "frobnicate" in error.message
    assert to_messages(chat([{"role": "user", "content": "x"}], n=1, presence_penalty=0.0))["max_tokens"] == 4096


# ---- Both ways: what goes through one translation and back is what was sent ---------------------

def test_a_messages_request_through_openai_and_back() -> None:
    original = anthropic([
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "4°C"},
                                     {"type": "text", "text": "Thanks"}]},
    ], system=[{"type": "text", "text": "Be brief."}], temperature=0.3, top_k=5, stop_sequences=["END"],
        metadata={"user_id": "u-1"}, tools=[{"name": "w", "input_schema": WEATHER_SCHEMA}],
        tool_choice={"type": "auto"}, stream=True, thinking={"type": "disabled"})
    assert to_messages(to_chat(original, OLLAMA)) == original  # Ollama's reasoning_effort "none" is disabled


def test_a_chat_request_through_anthropic_and_back() -> None:
    original = chat([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"c":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4°C"},
        {"role": "user", "content": "Thanks"},
    ], max_tokens=500, temperature=0.3, top_p=0.5, stop=["END"], user="u-1", tool_choice="required",
        tools=[{"type": "function", "function": {"name": "w", "description": "weather", "parameters": WEATHER_SCHEMA}}])
    back = to_chat(to_messages(original))
    assert back == original
