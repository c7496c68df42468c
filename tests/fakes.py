"""A fake OpenAI-compatible upstream on loopback, run in a thread of its own.

Tests steer it through a `fake` object in the request body, which the gateway
must forward untouched like any other field:
`{"status": 500, "body": "...", "hang": 5, "chunks": 3, "delay": 0.1, "drop_after": 2, "gate": "name",
"no_usage": true, "usage_null": true, "headers": {...}, "answer_usage": {...}}` (`usage_null`: like OpenAI, put
`"usage":null` in every chunk when usage was asked for; `answer_usage`: the usage object a chat answer or its
stream's usage event carries, as given, in place of the plain one).
Raw streams: `{"shape": "<name in tests/stream_corpus.py>"}` or `{"frames": ["data: ...\n\n", ...]}` are written
frame by frame as they are; `"hold": [k, "gate"]` waits for the gate before frame k, `"hold_end": "gate"` after
the last frame, before the body ends.
It records every request it receives and how each stream ended.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.stream_corpus import SHAPES

SHAPES_BY_NAME = {shape.name: shape for shape in SHAPES}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    outcome: str = "pending"  # completed | cancelled | dropped
    ended_at: float = 0.0


@dataclass
class FakeUpstream:
    name: str = "fake"
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._gates: dict[str, asyncio.Event] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"upstream-{self.name}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(10)

    def open_gate(self, name: str) -> None:
        self._loop.call_soon_threadsafe(self._gate(name).set)

    def reset(self) -> None:
        self.seen.clear()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """For synchronous tests; an async test must use `until`, or its own sockets stall."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream {self.name}: condition not met within {timeout}s")
            time.sleep(0.01)

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        """`wait_for` for async tests: the test's own loop keeps running (sockets close, reads go on)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream {self.name}: condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop_event.wait()
        await runner.cleanup()

    async def _record(self, request: web.Request) -> tuple[Seen, dict[str, Any]]:
        raw = await request.read()
        body = orjson.loads(raw)
        seen = Seen(request.path, dict(request.headers), body, raw)
        self.seen.append(seen)
        return seen, body.get("fake") or {}

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        seen, fake = await self._record(request)
        failure = await self._misbehave(seen, fake)
        if failure is not None:
            return failure
        if "shape" in fake or "frames" in fake:
            return await self._frames(request, seen, fake)
        body = seen.body
        text = f"{self.name} says hi"
        if body.get("stream"):
            return await self._stream(request, seen, fake, text)
        seen.outcome = "completed"
        answer: dict[str, Any] = {
            "id": f"chatcmpl-{self.name}", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": fake.get("answer_usage") or {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
        if fake.get("no_usage"):
            del answer["usage"]
        return web.json_response(answer, headers=fake.get("headers"))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        seen, fake = await self._record(request)
        failure = await self._misbehave(seen, fake)
        if failure is not None:
            return failure
        if "shape" in fake or "frames" in fake:
            return await self._frames(request, seen, fake)
        seen.outcome = "completed"
        return web.json_response({
            "id": f"cmpl-{self.name}", "object": "text_completion", "created": 1, "model": seen.body["model"],
            "choices": [{"index": 0, "text": f"{self.name} completes", "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        })

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        seen, fake = await self._record(request)
        failure = await self._misbehave(seen, fake)
        if failure is not None:
            return failure
        inputs = seen.body["input"] if isinstance(seen.body["input"], list) else [seen.body["input"]]
        seen.outcome = "completed"
        return web.json_response({
            "object": "list", "model": seen.body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))],
            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
        })

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        """openai-python's ModerationCreateResponse: id, model, one result per input; no usage."""
        seen, fake = await self._record(request)
        failure = await self._misbehave(seen, fake)
        if failure is not None:
            return failure
        inputs = seen.body["input"] if isinstance(seen.body["input"], list) else [seen.body["input"]]
        seen.outcome = "completed"
        categories = ("harassment", "hate", "self-harm", "sexual", "violence")
        return web.json_response({
            "id": f"modr-{self.name}", "model": seen.body.get("model"),
            "results": [{"flagged": "kill" in str(text), "categories": dict.fromkeys(categories, False),
                         "category_scores": dict.fromkeys(categories, 0.01),
                         "category_applied_input_types": dict.fromkeys(categories, ["text"])} for text in inputs],
        })

    async def _images(self, request: web.Request) -> web.StreamResponse:
        """openai-python's ImagesResponse: created, data (url or b64_json each), and usage for gpt-image-1."""
        seen, fake = await self._record(request)
        failure = await self._misbehave(seen, fake)
        if failure is not None:
            return failure
        seen.outcome = "completed"
        count = seen.body.get("n") or 1
        answer: dict[str, Any] = {"created": 1, "data": [
            {"url": f"https://images.invalid/{self.name}/{i}.png", "revised_prompt": seen.body["prompt"]}
            for i in range(count)]}
        if fake.get("usage"):
            answer["usage"] = {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110,
                               "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}
        return web.json_response(answer)

    async def _misbehave(self, seen: Seen, fake: dict[str, Any]) -> web.Response | None:
        if "hang" in fake:
            try:
                await asyncio.sleep(fake["hang"])
            except asyncio.CancelledError:
                seen.outcome = "cancelled"
                seen.ended_at = time.monotonic()
                raise
        if "status" in fake:
            seen.outcome = "completed"
            body = fake.get("body", "")
            raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
            return web.Response(status=fake["status"], body=raw, content_type=fake.get("type", "application/json"))
        return None

    async def _frames(self, request: web.Request, seen: Seen, fake: dict[str, Any]) -> web.StreamResponse:
        if "shape" in fake:
            frames: list[bytes] = list(SHAPES_BY_NAME[fake["shape"]].frames)
        else:
            frames = [frame.encode("latin-1" if fake.get("latin1") else "utf-8") for frame in fake["frames"]]
        response = web.StreamResponse(headers={"Content-Type": fake.get("content_type", "text/event-stream")})
        hold_at, hold_gate = fake.get("hold") or (-1, "")
        try:
            await response.prepare(request)
            for index, frame in enumerate(frames):
                if index == hold_at:
                    await self._gate(hold_gate).wait()
                await response.write(frame)
            if "hold_end" in fake:
                await self._gate(fake["hold_end"]).wait()
            await response.write_eof()
            seen.outcome = "completed"
        except (asyncio.CancelledError, ConnectionResetError):
            seen.outcome = "cancelled"
            raise
        finally:
            seen.ended_at = time.monotonic()
        return response

    async def _stream(self, request: web.Request, seen: Seen, fake: dict[str, Any], text: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **fake.get("headers", {})})
        await response.prepare(request)
        chunks = int(fake.get("chunks", 3))
        options = seen.body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) and not fake.get("no_usage")
        usage_null = include_usage and fake.get("usage_null")
        try:
            for i in range(chunks):
                if i == fake.get("drop_after"):
                    seen.outcome = "dropped"
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                event = {"id": f"chatcmpl-{self.name}", "object": "chat.completion.chunk", "created": 1,
                         "model": seen.body["model"],
                         "choices": [{"index": 0, "delta": {"content": f"{text} {i}"}, "finish_reason": None}]}
                if usage_null:
                    event["usage"] = None
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
                if i == 0 and "gate" in fake:
                    await self._gate(fake["gate"]).wait()
                if fake.get("delay"):
                    await asyncio.sleep(fake["delay"])
            if include_usage:
                usage = fake.get("answer_usage") or {"prompt_tokens": 5, "completion_tokens": chunks,
                                                     "total_tokens": 5 + chunks}
                await response.write(b"data: " + orjson.dumps({"id": f"chatcmpl-{self.name}", "choices": [],
                                                                 "usage": usage}) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            seen.outcome = "completed"
        except (asyncio.CancelledError, ConnectionResetError):
            seen.outcome = "cancelled"
            raise
        finally:
            seen.ended_at = time.monotonic()
        return response
