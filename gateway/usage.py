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
    # Of cache_creation_tokens, those written to last an hour (Anthropic's cache_creation.ephemeral_1h_input_tokens),
    # priced at cache_creation_input_token_cost_above_1hr; the rest last five minutes.
    cache_creation_1h_tokens: int = 0


def from_object(raw: Any) -> Usage | None:
    """A decoded usage object as a Usage, or None when it holds no token counts.

    OpenAI's shape, with what vLLM, DeepSeek, z.ai, Azure and LiteLLM add to it, or one counted in
    input and output tokens: Anthropic's (whose `input_tokens` leaves out the cache) or OpenAI's
    Responses and images shape (whose `input_tokens` counts it). Counts of cached and reasoning
    tokens are kept within the totals they are part of, whatever an upstream claims.
    """
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens")
    completion = raw.get("completion_tokens")
    total = raw.get("total_tokens")
    if type(prompt) is int and type(completion) is int and type(total) is int and len(raw) == 3:
        return Usage(prompt, completion, total)  # the plain shape, told apart without looking further
    if prompt is None:
        return _from_input_output(raw)
    return _from_prompt_completion(raw, prompt, completion, total)


def _from_prompt_completion(raw: dict[str, Any], prompt: Any, completion: Any, total: Any) -> Usage | None:
    if completion is None:
        completion = 0  # vLLM may send null; embeddings leave it out
    if type(prompt) is not int or type(completion) is not int:
        return None
    if type(total) is not int:
        total = prompt + completion
    details = raw.get("prompt_tokens_details")  # vLLM sends null unless its server enables the details
    if isinstance(details, dict):
        read = details.get("cached_tokens")
        written = details.get("cache_creation_tokens") or details.get("cache_write_tokens")  # LiteLLM's, OpenRouter's
        by_ttl = details.get("cache_creation_token_details")
    else:
        read = written = by_ttl = None
    if read is None:  # DeepSeek's own name (before it also sent cached_tokens), then the one LiteLLM adds
        read = raw.get("prompt_cache_hit_tokens") or raw.get("cache_read_input_tokens")
    if written is None:
        written = raw.get("cache_creation_input_tokens")
    answer = raw.get("completion_tokens_details")
    reasoning = answer.get("reasoning_tokens") if isinstance(answer, dict) else None
    if not (read or written or reasoning):
        return Usage(prompt, completion, total)  # OpenAI's details, all zero: the common case
    hour = by_ttl.get("ephemeral_1h_input_tokens") if isinstance(by_ttl, dict) else None
    return _bounded(prompt, completion, total, read, written, hour, reasoning)


def _from_input_output(raw: dict[str, Any]) -> Usage | None:
    given = raw.get("input_tokens")
    output = raw.get("output_tokens") or 0
    if type(given) is not int or type(output) is not int:
        return None
    read: Any = raw.get("cache_read_input_tokens")
    written: Any = raw.get("cache_creation_input_tokens")
    read = read if type(read) is int and read > 0 else 0
    written = written if type(written) is int and written > 0 else 0
    hour = None
    if read or written:  # Anthropic: the cache's tokens come on top of input_tokens
        prompt = given + read + written
        by_ttl = raw.get("cache_creation")
        hour = by_ttl.get("ephemeral_1h_input_tokens") if isinstance(by_ttl, dict) else None
    else:
        prompt = given
        details = raw.get("input_tokens_details")
        read = details.get("cached_tokens") if isinstance(details, dict) else None
    # OpenAI's Responses name them reasoning_tokens, Anthropic thinking_tokens: part of the output either way.
    answer = raw.get("output_tokens_details")
    reasoning = (answer.get("reasoning_tokens") or answer.get("thinking_tokens")) if isinstance(answer, dict) else None
    total = raw.get("total_tokens")
    return _bounded(prompt, output, total if type(total) is int else prompt + output, read, written, hour, reasoning)


def _bounded(prompt: int, completion: int, total: int, read: Any, written: Any, hour: Any, reasoning: Any) -> Usage:
    """The parts as counts, each no more than what is left of the total it belongs to: never a negative
    cost. What is not a count of tokens counts none."""
    read = read if type(read) is int and read > 0 else 0
    if read > prompt:
        read = max(prompt, 0)
    written = written if type(written) is int and written > 0 else 0
    if written > prompt - read:
        written = max(prompt - read, 0)
    hour = hour if type(hour) is int and hour > 0 else 0
    if hour > written:
        hour = written
    reasoning = reasoning if type(reasoning) is int and reasoning > 0 else 0
    if reasoning > completion:
        reasoning = max(completion, 0)
    return Usage(prompt, completion, total, cache_read_tokens=read, cache_creation_tokens=written,
                 reasoning_tokens=reasoning, cache_creation_1h_tokens=hour)


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
    asked = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    return len(orjson.dumps(source)) // CHARS_PER_TOKEN + 1, asked if isinstance(asked, int) and asked > 0 else 0


def estimate(body: dict[str, Any], completion_chars: int) -> Usage:
    """About four characters a token, when the upstream says nothing."""
    source = body.get("messages") or body.get("prompt") or body.get("input") or ""
    prompt = max(1, len(orjson.dumps(source)) // CHARS_PER_TOKEN)
    completion = completion_chars // CHARS_PER_TOKEN
    return Usage(prompt, completion, prompt + completion, estimated=True)


def upfront_units(endpoint: str, body: dict[str, Any]) -> tuple[int, int]:
    """What a media request is priced by that is known before it is sent: the characters /audio/speech
    will speak, and the one search unit a rerank costs at least."""
    if endpoint == "audio/speech":
        text = body.get("input")
        return (len(text) if isinstance(text, str) else 0), 0
    return 0, 1 if endpoint == "rerank" else 0
