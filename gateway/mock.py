"""The built-in `mock/...` provider: OpenAI-shaped answers with no upstream and no key.

It answers `litellm_params.mock_response` when set, else echoes the last user
message, streamed word by word when asked, with usage counted the rough way
(four characters a token) so that every later stage has numbers to work on.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from typing import Any

import orjson

from gateway.router import Deployment
from gateway.usage import Usage

EMBEDDING_DIMENSIONS = 16


def tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def answer_text(deployment: Deployment, body: dict[str, Any], given: str | None = None) -> str:
    fixed = given if given is not None else deployment.entry.litellm_params.mock_response
    if fixed is not None:
        return fixed
    if "messages" in body:
        for message in reversed(body["messages"]):
            if message.get("role") == "user":
                return _text_of(message.get("content"))
        return ""
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else _text_of(prompt)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    source = body.get("messages") or body.get("prompt") or body.get("input") or ""
    return tokens(orjson.dumps(source).decode())


class MockAnswer:
    """What the mock answers: a JSON body, or the SSE events of a stream, with the usage it reports."""

    __slots__ = ("usage", "body", "events")

    def __init__(self, usage: Usage, body: bytes | None = None, events: list[bytes] | None = None) -> None:
        self.usage = usage
        self.body = body
        self.events = events


def answer(deployment: Deployment, endpoint: str, body: dict[str, Any], model: str,
           given: str | None = None) -> MockAnswer:
    """`given`: the text to answer with (a request's own mock_response), over the deployment's."""
    if endpoint == "embeddings":
        payload = _embeddings(body, model)
        return MockAnswer(Usage(payload["usage"]["prompt_tokens"], 0, payload["usage"]["total_tokens"]),
                          orjson.dumps(payload))
    if endpoint == "moderations":
        return MockAnswer(Usage(), orjson.dumps(_moderation(body, model)))
    if endpoint == "images/generations":
        return MockAnswer(Usage(), orjson.dumps(_images(body)))
    text = answer_text(deployment, body, given)
    usage = _usage(prompt_tokens(body), tokens(text) if text else 0)
    chat = endpoint == "chat/completions"
    if not body.get("stream"):
        return MockAnswer(_as_usage(usage), orjson.dumps(_chat(text, model, usage) if chat
                                                      else _completion(text, model, usage)))
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    events = [b"data: " + orjson.dumps(event) + b"\n\n" for event in _events(text, model, usage, chat, include_usage)]
    return MockAnswer(_as_usage(usage), events=[*events, b"data: [DONE]\n\n"])


def _as_usage(usage: dict[str, int]) -> Usage:
    return Usage(usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _ids(kind: str) -> tuple[str, int]:
    return f"{kind}-mock-{uuid.uuid4().hex}", int(time.time())


def _chat(text: str, model: str, usage: dict[str, int]) -> dict[str, Any]:
    id_, created = _ids("chatcmpl")
    return {
        "id": id_, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": usage,
    }


def _completion(text: str, model: str, usage: dict[str, int]) -> dict[str, Any]:
    id_, created = _ids("cmpl")
    return {
        "id": id_, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage,
    }


def _events(text: str, model: str, usage: dict[str, int], chat: bool, include_usage: bool) -> list[dict[str, Any]]:
    id_, created = _ids("chatcmpl" if chat else "cmpl")
    obj = "chat.completion.chunk" if chat else "text_completion"
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []

    def event(choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": id_, "object": obj, "created": created, "model": model, "choices": [choice]}

    if chat:
        events = [event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})]
        events += [event({"index": 0, "delta": {"content": p}, "finish_reason": None}) for p in pieces]
        events.append(event({"index": 0, "delta": {}, "finish_reason": "stop"}))
    else:
        events = [event({"index": 0, "text": p, "logprobs": None, "finish_reason": None}) for p in pieces]
        events.append(event({"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}))
    if include_usage:
        events.append({"id": id_, "object": obj, "created": created, "model": model, "choices": [],
                       "usage": usage})
    return events


def _embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    raw = body["input"]
    inputs = raw if isinstance(raw, list) else [raw]
    data = [{"object": "embedding", "index": i, "embedding": _vector(orjson.dumps(item))}
            for i, item in enumerate(inputs)]
    used = sum(tokens(orjson.dumps(i).decode()) for i in inputs)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": used, "total_tokens": used}}


def _vector(seed: bytes) -> list[float]:
    # Deterministic, so that equal inputs embed equally, and unit length.
    digest = hashlib.sha256(seed).digest() + hashlib.sha256(seed + b"\x01").digest()
    raw = [v / 2**31 - 1.0 for v in struct.unpack(f"<{EMBEDDING_DIMENSIONS}I", digest[: 4 * EMBEDDING_DIMENSIONS])]
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    return [v / norm for v in raw]


MODERATION_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
                         "sexual/minors", "violence", "violence/graphic")


def _moderation(body: dict[str, Any], model: str) -> dict[str, Any]:
    """OpenAI's moderation object, nothing flagged, one result per input."""
    raw = body["input"]
    inputs = raw if isinstance(raw, list) else [raw]
    result = {"flagged": False, "categories": dict.fromkeys(MODERATION_CATEGORIES, False),
              "category_scores": dict.fromkeys(MODERATION_CATEGORIES, 0.0)}
    return {"id": f"modr-mock-{uuid.uuid4().hex}", "model": model, "results": [result for _ in inputs]}


# A 1x1 transparent PNG: the smallest picture a client can decode.
MOCK_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def _images(body: dict[str, Any]) -> dict[str, Any]:
    count = body.get("n") or 1
    item = {"b64_json": MOCK_PNG} if body.get("response_format") == "b64_json" \
        else {"url": "data:image/png;base64," + MOCK_PNG}
    return {"created": int(time.time()), "data": [{**item, "revised_prompt": body["prompt"]} for _ in range(count)]}
