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
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.anthropic_fake import SCRIPTS
from tests.loopback import Loopback
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
    sent: bytes = b""  # the answer's body, byte for byte (VllmUpstream's)


@dataclass
class FakeUpstream(Loopback):
    name: str = "fake"
    seen: list[Seen] = field(default_factory=list, repr=False)
    port: int = 0
    handler_cancellation = True

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints a test's fixtures with every dataclass field, what was seen too (tens of kB)."""
        printer.text(repr(self))

    def __post_init__(self) -> None:
        self._loopback(f"upstream-{self.name}")
        self._gates: dict[str, asyncio.Event] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

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

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/moderations", self._moderations)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_get("/v1/models", self._models)

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


THOUGHT = "The user greets me; a short answer will do."


class VllmUpstream(FakeUpstream):
    """A fake vLLM serving a reasoning model with tool calling: it answers as vLLM's OpenAI server writes its chat
    completions (`reasoning_content`, hermes-style tool calls: id, type, index and name first, then argument
    pieces, `stop_reason`, `prompt_tokens_details.cached_tokens`), byte shapes as tests/translate_corpus.py
    records them. It checks what an OpenAI-compatible server checks of the fields the gateway sends: `model`,
    `messages` with known roles, a tool message only answering a tool call of the assistant message before it,
    tools as functions with parameters.

    Thinking (`chat_template_kwargs.enable_thinking`, or `reasoning_effort`) puts reasoning first. Tools given and
    no tool result yet: it calls `calls(body)` (the first tool); after tool messages, it says what the tools said.
    vLLM's prefix cache: the prompt up to the last system message is cached once seen (its tokens come back as
    cached_tokens). Tests steer it through `user` (the Messages API's metadata.user_id), made by
    tests.anthropic_fake.steer: `status`/`body` (answer that error), `text`, `drop_after`, `error_after` (a
    stream's chunk k is vLLM's error event), `no_usage`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._prefixes: set[bytes] = set()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        seen, _ = await self._record(request)
        body = seen.body
        steer = _steering(body.get("user"))
        failure = await self._misbehave(seen, steer)
        if failure is not None:
            return failure
        problem = _invalid(body)
        if problem is not None:
            seen.outcome = "refused"
            return web.json_response({"object": "error", "message": problem, "type": "BadRequestError",
                                      "param": None, "code": 400}, status=400)
        reasoning, text, calls = self._compose(body, steer)
        usage = self._usage(body, reasoning, text, calls)
        finish = "tool_calls" if calls else "stop"
        if body.get("stream"):
            return await self._vllm_stream(request, seen, steer, reasoning, text, calls, finish, usage)
        message: dict[str, Any] = {"role": "assistant", "reasoning_content": reasoning or None, "content": text}
        if calls:
            message["tool_calls"] = [{"id": call_id, "type": "function",
                                      "function": {"name": name, "arguments": arguments}}
                                     for call_id, name, arguments in calls]
        answer = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                  "model": body["model"], "choices": [{"index": 0, "message": message, "logprobs": None,
                                                       "finish_reason": finish, "stop_reason": None}],
                  "usage": usage, "prompt_logprobs": None}
        seen.outcome = "completed"
        seen.sent = orjson.dumps(answer)
        return web.Response(body=seen.sent, content_type="application/json")

    def calls(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The tool the model calls, and its arguments: the first tool offered, with an argument for each
        parameter."""
        tool = body["tools"][0]["function"]
        values = {"string": "Paris", "number": 21.5, "integer": 3, "boolean": True}
        properties = (tool.get("parameters") or {}).get("properties") or {}
        return tool["name"], {name: values.get(spec.get("type"), "Paris") for name, spec in properties.items()}

    def _compose(self, body: dict[str, Any], steer: dict[str, Any]) -> tuple[str, str, list[tuple[str, str, str]]]:
        kwargs = body.get("chat_template_kwargs") or {}
        thinking = kwargs.get("enable_thinking") is True or body.get("reasoning_effort") not in (None, "none")
        reasoning = THOUGHT if thinking else ""
        messages = body["messages"]
        answered = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
        results = [m["content"] if isinstance(m["content"], str) else "".join(p.get("text", "") for p in m["content"])
                   for m in messages[answered + 1:] if m["role"] == "tool"]
        if results:
            return reasoning, "The tool said: " + " ".join(results), []
        if body.get("tools") and body.get("tool_choice") != "none":
            called = self.calls(body)
            if called is not None:
                name, arguments = called
                return reasoning, f"I'll ask {name}.", [(f"chatcmpl-tool-{uuid.uuid4().hex[:10]}", name,
                                                        orjson.dumps(arguments).decode())]
        return reasoning, steer.get("text", f"{self.name} says hi"), []

    def _usage(self, body: dict[str, Any], reasoning: str, text: str,
               calls: list[tuple[str, str, str]]) -> dict[str, Any]:
        messages = body["messages"]
        prompt = len(orjson.dumps([messages, body.get("tools")])) // 4 + 1
        last_system = max((i for i, m in enumerate(messages) if m["role"] == "system"), default=-1)
        cached = 0
        if last_system >= 0:
            prefix = orjson.dumps(messages[:last_system + 1])
            if prefix in self._prefixes:
                cached = min(len(prefix) // 4, prompt)
            self._prefixes.add(prefix)
        completion = (len(reasoning) + len(text) + sum(len(a) + len(n) for _, n, a in calls)) // 4 + 1
        return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": cached}}

    async def _vllm_stream(self, request: web.Request, seen: Seen, steer: dict[str, Any], reasoning: str, text: str,
                           calls: list[tuple[str, str, str]], finish: str, usage: dict[str, Any]) -> web.StreamResponse:
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": seen.body["model"]}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason, **extra}
            return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

        frames = [chunk({"role": "assistant", "content": ""})]
        frames += [chunk({"reasoning_content": piece}) for piece in _pieces(reasoning, 9) if reasoning]
        frames += [chunk({"content": piece}) for piece in _pieces(text, 5)]
        for index, (call_id, name, arguments) in enumerate(calls):
            frames.append(chunk({"tool_calls": [{"id": call_id, "type": "function", "index": index,
                                                 "function": {"name": name}}]}))
            frames += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                       for piece in _pieces(arguments, 6)]
        frames.append(chunk({"content": ""}, finish, stop_reason=None))
        options = seen.body.get("stream_options") or {}
        if options.get("include_usage") and not steer.get("no_usage"):
            frames.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        try:
            await response.prepare(request)
            for index, frame in enumerate(frames):
                if index == steer.get("drop_after"):
                    seen.outcome = "dropped"
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if index == steer.get("error_after"):
                    error = {"error": {"object": "error", "message": "The engine died while generating.",
                                       "type": "InternalServerError", "param": None, "code": 500}}
                    frame = b"data: " + orjson.dumps(error) + b"\n\ndata: [DONE]\n\n"
                    seen.sent += frame  # before the write: the client may read it first
                    await response.write(frame)
                    break
                seen.sent += frame  # before the write: the client may read it first
                await response.write(frame)
            await response.write_eof()
            seen.outcome = "completed"
        except (asyncio.CancelledError, ConnectionResetError):
            seen.outcome = "cancelled"
            raise
        finally:
            seen.ended_at = time.monotonic()
        return response


def _steering(user: Any) -> dict[str, Any]:
    if isinstance(user, str) and user.startswith("fake:"):
        return dict(SCRIPTS[user[len("fake:"):]])
    return {}


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def _invalid(body: dict[str, Any]) -> str | None:
    """What an OpenAI-compatible server refuses in a chat request, as its message says it; None when valid."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    called: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            return f"messages.{i}.role: Input tag {role!r} does not match any of the expected tags"
        if role == "tool":
            if message.get("tool_call_id") not in called:
                return f"messages.{i}: a tool message must answer a tool call of the assistant message before it"
        elif role == "assistant":
            called = {call["id"] for call in message.get("tool_calls") or []}
        else:
            called = set()
            content = message.get("content")
            if not isinstance(content, (str, list)):
                return f"messages.{i}.content: Input should be a valid string or list"
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type") != "function" or not isinstance((tool.get("function") or {}).get("name"), str):
            return f"tools.{i}: a function tool with a name is required"
    return None
