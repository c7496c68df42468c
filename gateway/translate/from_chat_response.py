"""An OpenAI-compatible upstream's chat completion, as the Messages API answers."""

from __future__ import annotations

import msgspec
import orjson

from gateway.errors import ApiError
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.translate.mapping import anthropic_usage, message_id, stop_reason, tool_use_id, usage_of_chat
from gateway.usage import Usage

_DECODER = msgspec.json.Decoder(o.ChatCompletionIn)
_ENCODER = msgspec.json.Encoder()


class Translated(msgspec.Struct):
    body: bytes
    usage: Usage | None


def chat_response_to_messages(chat_json: bytes, requested_model: str) -> bytes:
    return translate_chat_response(chat_json, requested_model).body


def translate_chat_response(chat_json: bytes, requested_model: str) -> Translated:
    """The answer in Anthropic's shape, and the upstream's usage for the settlement (None if it gave none).
    An answer that cannot be read, or whose tool arguments are not a JSON object, is a 502."""
    try:
        completion = _DECODER.decode(chat_json)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _bad_upstream(f"its answer is not a chat completion ({exc})") from None
    if not completion.choices or completion.choices[0].message is None:
        raise _bad_upstream("its answer has no choices")
    choice = completion.choices[0]
    message = choice.message
    assert message is not None
    content: list[a.BlockOut] = []
    reasoning = message.reasoning_content or message.reasoning
    if reasoning:
        content.append(a.ThinkingOut(reasoning))
    text = _text(message.content)
    if text:
        content.append(a.TextOut(text))
    if message.refusal:
        content.append(a.TextOut(message.refusal))
    for at, call in enumerate(message.tool_calls or ()):
        function = call.function or o.FunctionCallIn()
        content.append(a.ToolUseOut(call.id or tool_use_id(), function.name or "",
                                    _arguments(at, function.arguments)))
    stop, sequence = stop_reason(choice.finish_reason, choice.stop_reason, bool(message.tool_calls),
                                 bool(message.refusal))
    answer = a.Message(message_id(completion.id), "assistant", requested_model, content, stop, sequence,
                       anthropic_usage(completion.usage))
    usage = usage_of_chat(completion.usage) if completion.usage is not None else None
    return Translated(_ENCODER.encode(answer), usage)


def _text(content: str | list[o.PartIn] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text or "" for part in content if part.type == "text")


def _arguments(at: int, arguments: str | None) -> object:
    if not arguments:
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad_upstream(f"the arguments of its tool call {at} are not a JSON object: {arguments[:200]!r}")
    return parsed


def _bad_upstream(what: str) -> ApiError:
    return ApiError(502, f"the upstream's answer cannot be given in the Messages API's shape: {what}", "api_error")
