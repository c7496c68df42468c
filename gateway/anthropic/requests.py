"""What the gateway reads of an Anthropic Messages request: enough to route, reserve and forward it.

The body is checked only as far as the gateway needs it (a model, messages, max_tokens for an answer);
the rest is the upstream's to judge, so fields and block types Anthropic adds later pass untouched.
"""

from __future__ import annotations

from typing import Any

import orjson
from multidict import CIMultiDictProxy

from gateway.errors import bad_request
from gateway.usage import CHARS_PER_TOKEN, Usage

DEFAULT_VERSION = "2023-06-01"  # what the gateway sends when the client names no anthropic-version
FORWARDED = ("anthropic-version", "anthropic-beta")
COUNT_TOKENS = "messages/count_tokens"


def check_body(endpoint: str, body: dict[str, Any]) -> None:
    model = body.get("model")
    if model is None:
        raise bad_request("model: Field required", "model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: must be a non-empty string", "model")
    messages = body.get("messages")
    if messages is None:
        raise bad_request("messages: Field required", "messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: must be a non-empty array", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(f"messages.{i}: must be an object with a string 'role'", f"messages.{i}")
        content = message.get("content")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise bad_request(f"messages.{i}.content.{j}: must be a content block, an object with a "
                                      "string 'type'", f"messages.{i}.content.{j}")
        elif not isinstance(content, str):
            raise bad_request(f"messages.{i}.content: must be a string or an array of content blocks",
                              f"messages.{i}.content")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise bad_request("system: must be a string or an array of text blocks", "system")
    if endpoint != COUNT_TOKENS:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise bad_request("max_tokens: Field required", "max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise bad_request("max_tokens: must be a whole number, 1 or more", "max_tokens")
        if "stream" in body and not isinstance(body["stream"], bool) and body["stream"] is not None:
            raise bad_request("stream: must be a boolean", "stream")


def check_headers(headers: CIMultiDictProxy[str]) -> None:
    for name in FORWARDED:
        value = headers.get(name)
        if value is not None and not (value.isascii() and value.isprintable()):
            raise bad_request(f"the {name} header must be printable ASCII", name)


def upstream_headers(headers: CIMultiDictProxy[str]) -> bytes:
    """The client's anthropic-version (else the default) and anthropic-beta, as header lines for upstream."""
    lines = b"anthropic-version: %b\r\n" % (headers.get("anthropic-version") or DEFAULT_VERSION).encode()
    beta = headers.get("anthropic-beta")
    if beta:
        lines += b"anthropic-beta: %b\r\n" % beta.encode()
    return lines


def prompt_tokens(body: dict[str, Any]) -> int:
    """The prompt at four bytes a token: the system prompt, every message's content blocks and the tools."""
    size = len(orjson.dumps(body.get("messages") or []))
    for field in ("system", "tools"):
        if body.get(field):
            size += len(orjson.dumps(body[field]))
    return size // CHARS_PER_TOKEN + 1


def reserved_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """What limits and budgets reserve: the prompt and max_tokens (none for count_tokens, which is free)."""
    asked = body.get("max_tokens")
    return prompt_tokens(body), asked if isinstance(asked, int) and asked > 0 else 0


def estimate(body: dict[str, Any], completion_chars: int) -> Usage:
    """When the upstream says nothing: the prompt, and the answer's text at four characters a token."""
    prompt = prompt_tokens(body)
    completion = completion_chars // CHARS_PER_TOKEN
    return Usage(prompt, completion, prompt + completion, estimated=True)
