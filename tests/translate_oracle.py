"""The official SDKs as the judges of the translators' output: each stream is read the way the SDK reads
it (its SSE decoder, its accumulator), so a test compares answers as a client would see them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from anthropic._models import construct_type as construct_anthropic
from anthropic._streaming import SSEDecoder as AnthropicSSEDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai._models import construct_type
from openai._streaming import SSEDecoder as OpenAISSEDecoder
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk


@dataclass
class Answer:
    """What a client ends up with, in one shape for both APIs."""

    thinking: str = ""
    text: str = ""
    tools: list[tuple[str, str, Any]] = field(default_factory=list)  # (id, name, arguments as parsed)
    stop: str | None = None  # OpenAI's finish_reason words
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    error: str | None = None


def anthropic_events(data: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each event, as the anthropic SDK's SSE decoder splits them."""
    decoder = AnthropicSSEDecoder()
    return [(sse.event, json.loads(sse.data)) for sse in decoder.iter_bytes(iter([data])) if sse.data]


def openai_events(data: bytes) -> list[str]:
    return [sse.data for sse in OpenAISSEDecoder().iter_bytes(iter([data]))]


def anthropic_message(data: bytes) -> tuple[Message | None, str | None]:
    """The SDK's accumulated Message, and the error an `event: error` carried (the SDK raises there)."""
    snapshot: Any = None
    buffers: dict[int, bytes] = {}
    for name, payload in anthropic_events(data):
        if name == "error":
            return snapshot, payload["error"]["type"] + ": " + payload["error"]["message"]
        if name == "ping":
            continue
        assert name == payload["type"], (name, payload)
        # As the SDK reads events: constructed without validation.
        event: Any = construct_anthropic(type_=RawMessageStreamEvent, value=payload)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    return snapshot, None


FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "refusal": "content_filter"}


def answer_of_anthropic(data: bytes) -> Answer:
    message, error = anthropic_message(data)
    answer = Answer(error=error)
    if message is None:
        return answer
    for block in message.content:
        if block.type == "thinking":
            answer.thinking += block.thinking
        elif block.type == "text":
            answer.text += block.text
        elif block.type == "tool_use":
            answer.tools.append((block.id, block.name, block.input))
    answer.stop = FINISH.get(message.stop_reason or "") if message.stop_reason else None
    usage = message.usage  # None when the stream never said (Anthropic's extended-thinking example)
    if usage is not None and (usage.output_tokens or usage.input_tokens):
        cached = usage.cache_read_input_tokens or 0
        answer.prompt_tokens = usage.input_tokens + cached + (usage.cache_creation_input_tokens or 0)
        answer.completion_tokens = usage.output_tokens
        answer.cached_tokens = cached
    return answer


def answer_of_openai(data: bytes) -> Answer:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    answer = Answer()
    seen = False
    for text in openai_events(data):
        if text.startswith("[DONE]"):
            break
        payload = json.loads(text)
        if "error" in payload:
            answer.error = f"{payload['error'].get('type')}: {payload['error'].get('message')}"
            break
        seen = True
        # As the SDK reads chunks: constructed without validation (Azure's first chunk has an empty `object`).
        state.handle_chunk(construct_type(type_=ChatCompletionChunk, value=payload))
    if not seen:
        return answer
    completion = state.current_completion_snapshot
    message = completion.choices[0].message if completion.choices else None
    if message is not None:
        extra = message.model_extra or {}
        answer.thinking = extra.get("reasoning_content") or extra.get("reasoning") or ""
        answer.text = (message.content or "") + (message.refusal or "")
        for call in message.tool_calls or ():
            answer.tools.append((call.id, call.function.name, json.loads(call.function.arguments or "{}")))
        answer.stop = completion.choices[0].finish_reason
    if completion.usage is not None:
        answer.prompt_tokens = completion.usage.prompt_tokens
        answer.completion_tokens = completion.usage.completion_tokens
        details = completion.usage.prompt_tokens_details
        answer.cached_tokens = (details.cached_tokens or 0) if details is not None else 0
    return answer
