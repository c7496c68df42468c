"""Token usage of an answer, read without decoding the answer, and estimates for when it says none.

A non-streaming body is searched from its end for its `usage` object; streams
are metered in gateway/stream_usage.py.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

CHARS_PER_TOKEN = 4


class Usage(msgspec.Struct, frozen=True):
    """OpenAI's accounting, whatever the protocol: `prompt_tokens` counts every input token, those
    read from and written to a prompt cache included (Anthropic's `input_tokens` leaves them out);
    `completion_tokens` counts reasoning tokens too. The parts are priced apart (gateway/pricing.py)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False
    cache_read_tokens: int = 0  # OpenAI's prompt_tokens_details.cached_tokens, Anthropic's cache_read_input_tokens
    cache_creation_tokens: int = 0  # Anthropic's cache_creation_input_tokens
    reasoning_tokens: int = 0  # OpenAI's completion_tokens_details.reasoning_tokens


def from_object(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens", raw.get("input_tokens"))
    completion = raw.get("completion_tokens", raw.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = raw.get("total_tokens")
    return Usage(prompt, completion, total if isinstance(total, int) else prompt + completion)


def _object_at(data: bytes, start: int) -> bytes | None:
    """The JSON object starting at data[start] (a `{`), by counting braces outside strings."""
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(data)):
        byte = data[index]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                return data[start:index + 1]
    return None


def from_json_body(body: bytes) -> Usage | None:
    """Usage from a JSON answer. OpenAI-style bodies end with it, so first try the text from its
    `{` to the body's closing brace: one C-speed parse of a few dozen bytes; else find it by hand."""
    at = body.rfind(b'"usage"')
    if at >= 0:
        brace = body.find(b"{", at + 7, at + 32)
        end = body.rstrip().rfind(b"}")
        if 0 <= brace < end:
            try:
                found = from_object(orjson.loads(body[brace:end]))
            except orjson.JSONDecodeError:
                found = None
            if found is not None:
                return found
    while at >= 0:
        brace = body.find(b"{", at + 7, at + 32)
        if brace >= 0:
            text = _object_at(body, brace)
            if text is not None:
                try:
                    return from_object(orjson.loads(text))
                except orjson.JSONDecodeError:
                    pass
        at = body.rfind(b'"usage"', 0, at)
    return None


def reserved_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """Prompt tokens at four bytes a token rounded up, and the answer's max_tokens (0 if unset): what
    limits and budgets reserve before the answer is known."""
    source = body.get("messages") or body.get("prompt") or body.get("input") or ""
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    return len(orjson.dumps(source)) // CHARS_PER_TOKEN + 1, asked if isinstance(asked, int) and asked > 0 else 0


def estimate(body: dict[str, Any], completion_chars: int) -> Usage:
    """About four characters a token, when the upstream says nothing."""
    source = body.get("messages") or body.get("prompt") or body.get("input") or ""
    prompt = max(1, len(orjson.dumps(source)) // CHARS_PER_TOKEN)
    completion = completion_chars // CHARS_PER_TOKEN
    return Usage(prompt, completion, prompt + completion, estimated=True)


def image_count(body: dict[str, Any]) -> int:
    """The images an /images/generations request asks for (`n`, 1 when left out), as LiteLLM prices them."""
    count = body.get("n")
    return count if isinstance(count, int) and count > 0 else 1
