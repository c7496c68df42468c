"""The request shapes the harness sends: one fixed body per workload."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

CHAT_MODEL = "bench-chat"
PACED_CHAT_MODEL = "bench-chat-paced"
HELD_CHAT_MODEL = "bench-chat-held"
EMBED_MODEL = "bench-embed"
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
    ]
    return {w.name: w for w in items}
