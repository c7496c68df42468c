"""A fake OpenAI-compatible upstream, and Anthropic's Messages API, fast enough never to be the bottleneck.

Every response body is serialised once per model name and reused; a request
costs one small JSON parse (to learn the model and the stream flags) and a
write of bytes that already exist.

    python -m benchmarks.fake_upstream --port P [--stream-chunks N] [--chunk-delay-ms D]

Models whose name ends in "-paced" stream with --paced-delay-ms between chunks
instead, so one upstream serves both a flat-out stream (proxy throughput) and a
token-paced one (time to first byte is then distinct from total time, and a
proxy that buffers the stream shows up as TTFB close to total).

POST /v1/messages answers as Anthropic's API does: a Message, or with `stream` its documented events
(message_start, content_block_start, ping, --stream-chunks text deltas, content_block_stop, message_delta,
message_stop), one write per event, with the usage Anthropic reports in message_start and message_delta.

Models whose name ends in "-held" stream --held-events events, one every
--held-interval-ms, each stamped with the time it was written (`"sent_at"`,
time.monotonic(), the same clock in every process on the machine): the
held-streams benchmark holds thousands of these open at once. With --held-wait
they send their first event and then wait for `POST /held/go`, after which each
starts at a random phase of the interval: N streams open without paying for the
events of those opened first, then all run at once.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from benchmarks.eventloop import run, serve_until_signal

CREATED = 1_700_000_000
PROMPT_TOKENS = 12
VECTOR = (0.0123, -0.0456, 0.0789, -0.1011, 0.1213, -0.1415, 0.1617, -0.1819)
MODELS = ("bench-chat", "bench-chat-paced", "bench-chat-held", "bench-embed", "bench-claude")
PACED_SUFFIX = "-paced"
HELD_SUFFIX = "-held"
# Past this many distinct model names, bodies are built per request instead of
# cached, so a client sending random names cannot grow memory without bound.
MAX_CACHED_MODELS = 32
MAX_CACHED_BATCH = 64

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class StreamShape:
    chunks: int
    delay_s: float
    paced_delay_s: float
    held_events: int = 300
    held_interval_s: float = 0.1
    held_wait: bool = False

    def delay_for(self, model: str) -> float:
        return self.paced_delay_s if model.endswith(PACED_SUFFIX) else self.delay_s


@dataclass(frozen=True, slots=True)
class StreamParts:
    """Pre-framed SSE events of one stream; only their order is decided per request."""

    first: bytes
    content: bytes
    finish: bytes
    usage: bytes


@dataclass(frozen=True, slots=True)
class MessagesStream:
    """Anthropic's events, framed once: the opening ones, one text delta, and the closing ones."""

    first: bytes
    content: bytes
    tail: bytes


@dataclass(frozen=True, slots=True)
class ModelBodies:
    chat: bytes
    chat_stream: StreamParts
    completion: bytes
    completion_stream: StreamParts
    message: bytes
    message_stream: MessagesStream


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _usage(completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
    }


def _build_model_bodies(model: str, chunks: int) -> ModelBodies:
    text = "tok " * chunks
    usage = _usage(chunks)
    chat = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    chunk_base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": model}

    def chat_chunk(delta: dict[str, str], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**chunk_base, "choices": [choice]})

    chat_stream = StreamParts(
        first=chat_chunk({"role": "assistant", "content": ""}, None),
        content=chat_chunk({"content": "tok "}, None),
        finish=chat_chunk({}, "stop"),
        usage=_sse({**chunk_base, "choices": [], "usage": usage}),
    )

    cmpl_base = {"id": "cmpl-bench", "object": "text_completion", "created": CREATED, "model": model}

    def cmpl_chunk(piece: str, finish: str | None) -> bytes:
        choice = {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish}
        return _sse({**cmpl_base, "choices": [choice]})

    completion = {
        **cmpl_base,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage,
    }
    completion_stream = StreamParts(
        first=cmpl_chunk("", None),
        content=cmpl_chunk("tok ", None),
        finish=cmpl_chunk("", "stop"),
        usage=_sse({**cmpl_base, "choices": [], "usage": usage}),
    )
    return ModelBodies(
        chat=orjson.dumps(chat),
        chat_stream=chat_stream,
        completion=orjson.dumps(completion),
        completion_stream=completion_stream,
        message=orjson.dumps(_message(model, text, chunks)),
        message_stream=_message_stream(model, chunks),
    )


def _anthropic_event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _message(model: str, text: str, chunks: int) -> dict[str, Any]:
    return {"id": "msg_bench", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                      "output_tokens": chunks}}


def _message_stream(model: str, chunks: int) -> MessagesStream:
    opened = {**_message(model, "", 1), "content": [], "stop_reason": None}
    first = (_anthropic_event("message_start", {"type": "message_start", "message": opened})
             + _anthropic_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                        "content_block": {"type": "text", "text": ""}})
             + b'event: ping\ndata: {"type": "ping"}\n\n')
    content = _anthropic_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                       "delta": {"type": "text_delta", "text": "tok "}})
    tail = (_anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _anthropic_event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                                   "stop_sequence": None},
                                                 "usage": {"output_tokens": chunks}})
            + _anthropic_event("message_stop", {"type": "message_stop"}))
    return MessagesStream(first, content, tail)


def _embedding_count(value: object) -> int:
    # A list of token ids is one input; a list of strings or of token lists is many.
    if isinstance(value, list) and value and not isinstance(value[0], int):
        return len(value)
    return 1


def _build_embeddings(model: str, count: int, as_base64: bool) -> bytes:
    vector: object = list(VECTOR)
    if as_base64:
        vector = base64.b64encode(struct.pack(f"<{len(VECTOR)}f", *VECTOR)).decode()
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": PROMPT_TOKENS * count, "total_tokens": PROMPT_TOKENS * count},
        }
    )


def _build_models() -> bytes:
    data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "bench"} for m in MODELS]
    return orjson.dumps({"object": "list", "data": data})


def _error(status: int, message: str) -> web.Response:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error"}})
    return web.Response(status=status, body=body, headers=JSON_HEADERS)


class FakeUpstream:
    """Low-level aiohttp handler: no router, no middlewares, just a path switch."""

    __slots__ = ("_bodies", "_embeddings", "_go", "_models", "_shape")

    def __init__(self, shape: StreamShape) -> None:
        self._shape = shape
        self._go = asyncio.Event()
        self._bodies: dict[str, ModelBodies] = {}
        self._embeddings: dict[tuple[str, int, bool], bytes] = {}
        self._models = _build_models()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path in ("/v1/models", "/models"):
            return web.Response(body=self._models, headers=JSON_HEADERS)
        if request.method == "GET" and path == "/health":
            return web.Response(body=b'{"status":"ok"}', headers=JSON_HEADERS)
        if request.method != "POST":
            return _error(404, f"no route for {request.method} {path}")
        if path == "/held/go":
            self._go.set()
            return web.Response(body=b'{"status":"ok"}', headers=JSON_HEADERS)
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "request body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "request body must be a JSON object")
        model = str(payload.get("model") or "bench")
        if path in ("/v1/chat/completions", "/chat/completions"):
            return await self._generate(request, payload, model, chat=True)
        if path in ("/v1/completions", "/completions"):
            return await self._generate(request, payload, model, chat=False)
        if path in ("/v1/embeddings", "/embeddings"):
            return self._embed(payload, model)
        if path == "/v1/messages":
            return await self._messages(request, payload, model)
        return _error(404, f"no route for POST {path}")

    def _model_bodies(self, model: str) -> ModelBodies:
        bodies = self._bodies.get(model)
        if bodies is None:
            bodies = _build_model_bodies(model, self._shape.chunks)
            if len(self._bodies) < MAX_CACHED_MODELS:
                self._bodies[model] = bodies
        return bodies

    async def _generate(
        self, request: web.BaseRequest, payload: dict[str, Any], model: str, chat: bool
    ) -> web.StreamResponse:
        bodies = self._model_bodies(model)
        if payload.get("stream") is not True:
            return web.Response(body=bodies.chat if chat else bodies.completion, headers=JSON_HEADERS)
        options = payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        parts = bodies.chat_stream if chat else bodies.completion_stream
        if model.endswith(HELD_SUFFIX):
            return await self._held(request, parts, include_usage)
        return await self._stream(request, parts, include_usage, self._shape.delay_for(model))

    async def _stream(
        self, request: web.BaseRequest, parts: StreamParts, include_usage: bool, delay: float
    ) -> web.StreamResponse:
        tail = parts.finish + parts.usage + DONE if include_usage else parts.finish + DONE
        return await self._write_stream(request, parts.first, parts.content, tail, delay)

    async def _messages(self, request: web.BaseRequest, payload: dict[str, Any], model: str) -> web.StreamResponse:
        bodies = self._model_bodies(model)
        if payload.get("stream") is not True:
            return web.Response(body=bodies.message, headers=JSON_HEADERS)
        parts = bodies.message_stream
        return await self._write_stream(request, parts.first, parts.content, parts.tail, self._shape.delay_for(model))

    async def _write_stream(
        self, request: web.BaseRequest, first: bytes, content: bytes, tail: bytes, delay: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        # One write per event, like a real model server emitting tokens, so a
        # proxy under test sees a stream of small reads rather than one blob.
        await response.write(first)
        for _ in range(self._shape.chunks):
            if delay:
                await asyncio.sleep(delay)
            await response.write(content)
        await response.write(tail)
        await response.write_eof()
        return response

    async def _held(self, request: web.BaseRequest, parts: StreamParts, include_usage: bool) -> web.StreamResponse:
        """A long stream at a steady pace: each event is due at start + k * interval, so a late
        wake-up does not push the rest back, and carries the time it was written."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        await response.write(parts.first)
        content = parts.content[: -len(b"}\n\n")] + b',"sent_at":'
        interval = self._shape.held_interval_s
        due = time.monotonic()
        if self._shape.held_wait:
            await self._go.wait()
            due = time.monotonic() + random.random() * interval - interval
        for _ in range(self._shape.held_events):
            due += interval
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await response.write(b"%b%.6f}\n\n" % (content, time.monotonic()))
        tail = parts.finish + parts.usage + DONE if include_usage else parts.finish + DONE
        await response.write(tail)
        await response.write_eof()
        return response

    def _embed(self, payload: dict[str, Any], model: str) -> web.Response:
        count = _embedding_count(payload.get("input"))
        as_base64 = payload.get("encoding_format") == "base64"
        key = (model, count, as_base64)
        body = self._embeddings.get(key)
        if body is None:
            body = _build_embeddings(model, count, as_base64)
            if count <= MAX_CACHED_BATCH and len(self._embeddings) < MAX_CACHED_MODELS * 4:
                self._embeddings[key] = body
        return web.Response(body=body, headers=JSON_HEADERS)


async def serve(host: str, port: int, shape: StreamShape) -> None:
    upstream = FakeUpstream(shape)

    async def start() -> web.BaseRunner:
        runner = web.ServerRunner(web.Server(upstream.handle, access_log=None))
        await runner.setup()
        return runner

    await serve_until_signal(start, host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stream-chunks", type=int, default=20, help="content chunks per streamed response")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause between streamed chunks")
    parser.add_argument(
        "--paced-delay-ms", type=float, default=1.0, help="pause between chunks for models named *-paced"
    )
    parser.add_argument("--held-events", type=int, default=300, help="events per stream for models named *-held")
    parser.add_argument("--held-interval-ms", type=float, default=100.0, help="pause between held-stream events")
    parser.add_argument("--held-wait", action="store_true", help="held streams wait for POST /held/go")
    args = parser.parse_args(argv)
    shape = StreamShape(
        chunks=max(0, args.stream_chunks),
        delay_s=max(0.0, args.chunk_delay_ms) / 1000,
        paced_delay_s=max(0.0, args.paced_delay_ms) / 1000,
        held_events=max(1, args.held_events),
        held_interval_s=max(0.001, args.held_interval_ms) / 1000,
        held_wait=args.held_wait,
    )
    run(serve(args.host, args.port, shape))


if __name__ == "__main__":
    main()
