"""An Anthropic upstream's Message, as OpenAI's chat completions API answers.

Text blocks join into `content`; thinking goes to `reasoning_content` and, with its signature, to
LiteLLM's `thinking_blocks`, which a client sends back for Claude to continue a tool loop with
thinking on; tool_use blocks become `tool_calls`. Usage is OpenAI's: prompt_tokens counts the
cached and cache-written tokens too, cached_tokens says how many were read from the cache.
"""

from __future__ import annotations

import time

import msgspec
import orjson

from gateway.errors import ApiError
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.translate.from_chat_response import Translated
from gateway.translate.mapping import AnthropicCount, completion_id, finish_reason

_DECODER = msgspec.json.Decoder(a.MessageIn)
_ENCODER = msgspec.json.Encoder()


def messages_response_to_chat(body: bytes, requested_model: str) -> bytes:
    return translate_messages_response(body, requested_model).body


def translate_messages_response(body: bytes, requested_model: str) -> Translated:
    """The answer in OpenAI's shape, and the usage for the settlement; an unreadable answer is a 502."""
    try:
        message = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(502, f"the upstream's answer is not a Messages API message ({exc})", "api_error") from None
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[o.ThinkingBlockParam] = []
    calls: list[o.ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "thinking":
            reasoning.append(block.thinking or "")
            thinking_blocks.append(o.ThinkingBlockParam("thinking", block.thinking or "", block.signature or ""))
        elif block.type == "redacted_thinking":
            thinking_blocks.append(o.ThinkingBlockParam("redacted_thinking", data=block.data or ""))
        elif block.type == "tool_use":
            arguments = orjson.dumps(block.input if block.input is not None else {}).decode()
            calls.append(o.ToolCall(block.id or "", o.FunctionCall(block.name or "", arguments)))
    count = AnthropicCount()
    count.update(message.usage)
    reply = o.ResponseMessage("assistant", "".join(texts) if texts or not calls else None, tool_calls=calls or None,
                              reasoning_content="".join(reasoning) if reasoning else None,
                              thinking_blocks=thinking_blocks or None)
    completion = o.ChatCompletion(id=completion_id(message.id), created=int(time.time()), model=requested_model,
                                  choices=[o.Choice(0, reply, finish_reason(message.stop_reason))],
                                  usage=count.chat_usage())
    return Translated(_ENCODER.encode(completion), count.usage())
