"""The request shapes the harness sends: one fixed body per workload."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

CHAT_MODEL = "bench-chat"
PACED_CHAT_MODEL = "bench-chat-paced"
HELD_CHAT_MODEL = "bench-chat-held"
EMBED_MODEL = "bench-embed"
# An anthropic/ deployment: Anthropic's Messages API in, the same API out, relayed byte for byte.
MESSAGES_MODEL = "bench-claude"
# An OpenAI-compatible deployment asked in Anthropic's Messages API: the request and every event translated.
TRANSLATED_MODEL = "bench-claude-on-chat"
MESSAGES = [
    {"role": "system", "content": "You are a benchmark."},
    {"role": "user", "content": "Say something short about reverse proxies."},
]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    label: str
    path: str
    body: bytes
    stream: bool


def _chat(stream: bool, model: str = CHAT_MODEL) -> bytes:
    payload: dict[str, object] = {"model": model, "messages": MESSAGES, "max_tokens": 32}
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return orjson.dumps(payload)


def _messages(stream: bool, model: str = MESSAGES_MODEL) -> bytes:
    """The chat workload's prompt as Anthropic's Messages API writes it: the system prompt apart."""
    payload: dict[str, object] = {"model": model, "max_tokens": 32, "system": MESSAGES[0]["content"],
                                  "messages": MESSAGES[1:]}
    if stream:
        payload["stream"] = True
    return orjson.dumps(payload)


def all_workloads() -> dict[str, Workload]:
    """Keyed by name, in the order tables list them.

    "chat-stream" streams flat out (proxy throughput); "chat-stream-paced"
    streams one chunk per --paced-delay-ms, like a model emitting tokens.
    """
    items = [
        Workload("chat", "chat (non-stream)", "/v1/chat/completions", _chat(False), False),
        Workload("chat-stream", "chat (stream)", "/v1/chat/completions", _chat(True), True),
        Workload(
            "chat-stream-paced",
            "chat (stream, paced)",
            "/v1/chat/completions",
            _chat(True, PACED_CHAT_MODEL),
            True,
        ),
        Workload(
            "embeddings",
            "embeddings",
            "/v1/embeddings",
            orjson.dumps({"model": EMBED_MODEL, "input": "reverse proxies are fun"}),
            False,
        ),
        Workload("messages", "messages (non-stream)", "/v1/messages", _messages(False), False),
        Workload("messages-stream", "messages (stream)", "/v1/messages", _messages(True), True),
        # Direct and the floor get the fake upstream's own Messages stream for it: the same answer, untranslated.
        Workload("messages-translated-stream", "messages -> chat (stream, translated)", "/v1/messages",
                 _messages(True, TRANSLATED_MODEL), True),
    ]
    return {w.name: w for w in items}
