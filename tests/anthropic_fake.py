"""A fake Anthropic Messages API on loopback, in a thread of its own, built from Anthropic's documented shapes.

It checks every request as Anthropic's API does and answers 400 in Anthropic's error shape otherwise: the
`x-api-key` (401 when it is not the deployment's), `anthropic-version` present, no field Anthropic does not
define, `model`, `max_tokens` (not for count_tokens), `messages` alternating from the user's, every content
block of a type Anthropic defines with the fields that type requires, each `tool_result` answering a
`tool_use` of the turn before, each `thinking` block passed back with the signature this fake gave it,
`system` a string or text blocks, tools with a name and an input_schema, `thinking` with a budget of at
least 1024 below max_tokens, a `role: "system"` message (Claude Opus 4.8's mid-conversation system message,
which Claude Code sends) only right after a user turn and with text only.

It answers as Anthropic does: a Message (usage last, as the API writes it), or the documented stream
(message_start, content_block_start, ping, content_block_delta with text_delta / input_json_delta /
thinking_delta / signature_delta, content_block_stop, message_delta with stop_reason and usage,
message_stop), compact JSON and the ping's `{"type": "ping"}` as the API writes them (read from the
anthropic-sdk-python stream fixtures). Tools given and no tool result yet: it calls the first tool; a tool
result: it says what the tool said. `thinking` enabled: a thinking block first. Blocks marked
`cache_control` make the prompt up to the last of them a cached prefix: written the first time, read after.

Tests steer it through `metadata.user_id` (a field Anthropic defines, so the body stays valid), made by
`steer(...)` with `line_end` ("lf", "crlf"), `space` (false: `event:x` / `data:{...}`), `writes`
("event", "split": each event cut across writes, "batched": three events a write), `text`, `status`
(answer that error, with `retry_after`), `error_after` (after k writes, Anthropic's `event: error` with
overloaded_error), `drop_after` (after k writes, the connection is cut), `gate` (hold after the first write,
message_start, until the test opens it), `frames` (write these strings, latin-1, as they are). Every request
is recorded, with the exact bytes of the answer body sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.loopback import Loopback

KEY = "sk-ant-upstream-secret"
MESSAGE_FIELDS = frozenset({
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
    "output_config", "inference_geo", "speed", "cache_control", "diagnostics", "user_profile_id", "workspace_id"})
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
                          "context_management", "output_config", "speed", "cache_control"})
# The block types a request may carry, and the fields each requires (Anthropic's ContentBlockParam union).
BLOCKS: dict[str, tuple[str, ...]] = {
    "text": ("text",), "image": ("source",), "document": ("source",), "search_result": ("source", "title", "content"),
    "thinking": ("thinking", "signature"), "redacted_thinking": ("data",), "tool_use": ("id", "name", "input"),
    "tool_result": ("tool_use_id",), "server_tool_use": ("id", "name", "input"),
    "web_search_tool_result": ("tool_use_id", "content"), "web_fetch_tool_result": ("tool_use_id", "content"),
    "code_execution_tool_result": ("tool_use_id", "content"), "container_upload": ("file_id",),
    "bash_code_execution_tool_result": ("tool_use_id", "content"),
    "text_editor_code_execution_tool_result": ("tool_use_id", "content"),
    "tool_search_tool_result": ("tool_use_id", "content")}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}
THOUGHT = "The user greets me; a short answer will do."
# What Anthropic's API says of the organization's limits on every answer (a few of its anthropic-ratelimit-*).
RATE_LIMITS = {"anthropic-ratelimit-requests-limit": "4000", "anthropic-ratelimit-requests-remaining": "3999",
               "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:00Z"}


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Seen:
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    status: int = 0
    sent: bytes = b""  # the answer's body, byte for byte
    outcome: str = "pending"  # completed | cancelled | dropped | refused


@dataclass
class FakeAnthropic(Loopback):
    name: str = "claude"
    key: str = KEY
    always_status: int | None = None  # answer every message with this error (an upstream that is down)
    seen: list[Seen] = field(default_factory=list, repr=False)
    port: int = 0
    handler_cancellation = True
    client_max_size = 64 * 1024 * 1024

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis prints a test's fixtures with every dataclass field, what was seen too (tens of kB)."""
        printer.text(repr(self))

    def __post_init__(self) -> None:
        self._loopback(f"anthropic-{self.name}")
        self._gates: dict[str, asyncio.Event] = {}
        self._cached: set[bytes] = set()
        self._signatures: set[str] = set()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open_gate(self, name: str) -> None:
        self._loop.call_soon_threadsafe(self._gate(name).set)

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"fake Anthropic {self.name}: condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)

    # requests

    async def _record(self, request: web.Request) -> Seen:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        seen = Seen(request.path, request.query_string, dict(request.headers), body if isinstance(body, dict) else {},
                    raw)
        self.seen.append(seen)
        if not isinstance(body, dict):
            raise Invalid("The request body is not valid JSON.")
        return seen

    def _check_headers(self, request: web.Request) -> None:
        if request.headers.get("x-api-key") != self.key:
            raise Invalid("invalid x-api-key", 401)
        if "authorization" in {name.lower() for name in request.headers}:
            raise Invalid("authorization: the gateway must not send a bearer token to Anthropic")
        if not request.headers.get("anthropic-version"):
            raise Invalid("anthropic-version: header is required")
        if request.content_type != "application/json":
            raise Invalid("content-type: must be application/json")

    def _check_body(self, body: dict[str, Any], allowed: frozenset[str], needs_max_tokens: bool) -> None:
        for name in body:
            if name not in allowed:
                raise Invalid(f"{name}: Extra inputs are not permitted")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise Invalid("model: Field required")
        if needs_max_tokens:
            max_tokens = body.get("max_tokens")
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
                raise Invalid("max_tokens: Field required")
            if max_tokens < 1:
                raise Invalid("max_tokens: Input should be greater than or equal to 1")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise Invalid("stream: Input should be a valid boolean")
        system = body.get("system")
        if system is not None and not isinstance(system, str):
            if not isinstance(system, list):
                raise Invalid("system: Input should be a valid string or list of text blocks")
            for i, block in enumerate(system):
                if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                    raise Invalid(f"system.{i}: Input should be a text block")
        for i, tool in enumerate(body.get("tools") or []):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise Invalid(f"tools.{i}.name: Field required")
            if "type" not in tool and not isinstance(tool.get("input_schema"), dict):
                raise Invalid(f"tools.{i}.input_schema: Field required")
        thinking = body.get("thinking")
        if thinking is not None:
            if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
                raise Invalid("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
            if thinking["type"] == "enabled":
                budget = thinking.get("budget_tokens")
                if not isinstance(budget, int) or budget < 1024:
                    raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
                if needs_max_tokens and budget >= body["max_tokens"]:
                    raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`")
        self._check_messages(body.get("messages"))

    def _check_messages(self, messages: Any) -> None:
        if not isinstance(messages, list) or not messages:
            raise Invalid("messages: at least one message is required")
        previous_role, offered = None, set()
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system"):
                raise Invalid(f"messages.{i}.role: Input should be 'user', 'assistant' or 'system'")
            role = message["role"]
            if role == "system":
                self._check_system_message(i, message, messages[i - 1] if i else None)
                continue
            if i == 0 and role != "user":
                raise Invalid("messages: the first message must use the \"user\" role")
            if role == previous_role:
                raise Invalid(f"messages.{i}: roles must alternate between \"user\" and \"assistant\"")
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if not isinstance(blocks, list):
                raise Invalid(f"messages.{i}.content: Input should be a valid string or list of content blocks")
            called = set()
            for j, block in enumerate(blocks):
                kind = block.get("type") if isinstance(block, dict) else None
                if kind not in BLOCKS:
                    raise Invalid(f"messages.{i}.content.{j}.type: Input tag {kind!r} does not match any of the "
                                  "expected tags")
                for required in BLOCKS[kind]:
                    if required not in block:
                        raise Invalid(f"messages.{i}.content.{j}.{kind}.{required}: Field required")
                if kind == "tool_use":
                    called.add(block["id"])
                elif kind == "tool_result" and block["tool_use_id"] not in offered:
                    raise Invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                                  "blocks; each tool_result must answer a tool_use of the previous message")
                elif kind == "thinking" and block["signature"] not in self._signatures:
                    raise Invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            offered, previous_role = called, role

    @staticmethod
    def _check_system_message(i: int, message: dict[str, Any], before: Any) -> None:
        """A mid-conversation system message (Claude Opus 4.8 on): right after a user turn, text only; it takes no
        part in the turns' alternation."""
        if not isinstance(before, dict) or before.get("role") != "user":
            raise Invalid(f"messages.{i}: a system message must come immediately after a user message")
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not all(
                isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
                for block in blocks):
            raise Invalid(f"messages.{i}.content: Input should be a valid string or list of text blocks")

    # answers

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        try:
            seen = await self._record(request)
            self._check_headers(request)
            self._check_body(seen.body, MESSAGE_FIELDS, True)
        except Invalid as exc:
            return self._refuse(exc)
        steer = _steering(seen.body)
        if self.always_status is not None:
            steer = {"status": self.always_status}
        if "status" in steer:
            return self._error_answer(seen, int(steer["status"]), steer)
        message, blocks, usage = self._compose(seen.body, steer)
        if seen.body.get("stream"):
            return await self._stream(request, seen, steer, message, blocks, usage)
        message["content"] = blocks
        message["stop_reason"] = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        message["usage"] = usage
        return self._json(seen, message)

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        try:
            seen = await self._record(request)
            self._check_headers(request)
            self._check_body(seen.body, COUNT_FIELDS, False)
        except Invalid as exc:
            return self._refuse(exc)
        return self._json(seen, {"input_tokens": _prompt_tokens(seen.body)})

    def _json(self, seen: Seen, answer: dict[str, Any], status: int = 200,
              headers: dict[str, str] | None = None) -> web.Response:
        seen.sent, seen.status, seen.outcome = orjson.dumps(answer), status, "completed"
        return web.Response(status=status, body=seen.sent, content_type="application/json",
                            headers={"request-id": f"req_{self.name}_{len(self.seen)}", **RATE_LIMITS,
                                     **(headers or {})})

    def _refuse(self, exc: Invalid) -> web.Response:
        seen = self.seen[-1] if self.seen else Seen("", "", {}, {}, b"")
        response = self._json(seen, _error(exc.status, str(exc)), exc.status)
        seen.outcome = "refused"
        return response

    def _error_answer(self, seen: Seen, status: int, steer: dict[str, Any]) -> web.Response:
        headers = {"retry-after": str(steer["retry_after"])} if "retry_after" in steer else None
        return self._json(seen, _error(status, steer.get("message", f"{ERROR_TYPES.get(status, 'api_error')} "
                                                                     f"from {self.name}")), status, headers)

    def _compose(self, body: dict[str, Any], steer: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                              dict[str, Any]]:
        digest = hashlib.sha256(orjson.dumps(body.get("messages"))).hexdigest()[:24]
        message = {"id": f"msg_{digest}", "type": "message", "role": "assistant", "model": body["model"],
                   "content": [], "stop_reason": None, "stop_sequence": None}
        blocks: list[dict[str, Any]] = []
        thinking = body.get("thinking")
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            signature = "sig_" + hashlib.sha256((digest + THOUGHT).encode()).hexdigest()
            self._signatures.add(signature)
            blocks.append({"type": "thinking", "thinking": THOUGHT, "signature": signature})
        last = next(m for m in reversed(body["messages"]) if m["role"] != "system")
        results = [b for b in last["content"] if b.get("type") == "tool_result"] \
            if isinstance(last.get("content"), list) else []
        tools = body.get("tools") or []
        if results:
            said = results[0].get("content")
            said = said if isinstance(said, str) else "".join(b.get("text", "") for b in said or [])
            blocks.append({"type": "text", "text": f"The tool said: {said}"})
        elif tools and (body.get("tool_choice") or {}).get("type") != "none":
            tool = tools[0]
            blocks.append({"type": "text", "text": f"I'll ask {tool['name']}."})
            blocks.append({"type": "tool_use", "id": f"toolu_{digest}", "name": tool["name"],
                           "input": _arguments(tool.get("input_schema") or {})})
        else:
            blocks.append({"type": "text", "text": steer.get("text", f"{self.name} says hi")})
        output = sum(len(orjson.dumps(b)) for b in blocks) // 4 + 1
        usage = {**self._input_usage(body), "output_tokens": output, "service_tier": "standard"}
        if any(b["type"] == "thinking" for b in blocks):
            usage["output_tokens_details"] = {"thinking_tokens": len(THOUGHT) // 4}
        return message, blocks, usage

    def _input_usage(self, body: dict[str, Any]) -> dict[str, Any]:
        """The prompt's tokens, the prefix up to the last block marked cache_control counted apart: written
        to the cache the first time this fake sees it, read from it after; a write is kept an hour where
        that block's cache_control says `"ttl": "1h"`, else five minutes, and `cache_creation` splits it."""
        parts: list[Any] = list(body.get("tools") or [])
        system = body.get("system")
        parts += [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
        for message in body["messages"]:
            content = message["content"]
            parts += [{"type": "text", "text": content}] if isinstance(content, str) else content
        marked = [i for i, part in enumerate(parts) if isinstance(part, dict) and "cache_control" in part]
        total = _prompt_tokens(body)
        written = read = 0
        hour = False
        if marked:
            prefix = orjson.dumps(parts[:marked[-1] + 1])
            cached = len(prefix) // 4
            hour = parts[marked[-1]]["cache_control"].get("ttl") == "1h"
            if prefix in self._cached:
                read = cached
            else:
                self._cached.add(prefix)
                written = cached
        return {"input_tokens": max(1, total - written - read), "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read,
                "cache_creation": {"ephemeral_5m_input_tokens": 0 if hour else written,
                                   "ephemeral_1h_input_tokens": written if hour else 0}}

    async def _stream(self, request: web.Request, seen: Seen, steer: dict[str, Any], message: dict[str, Any],
                      blocks: list[dict[str, Any]], usage: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                               "Cache-Control": "no-cache", "request-id": f"req_{self.name}",
                                               **RATE_LIMITS})
        frames = [frame.encode("latin-1") for frame in steer["frames"]] if "frames" in steer \
            else _framed(_events(message, blocks, usage), steer)
        gate_after = 1 if "gate" in steer else -1
        try:
            await response.prepare(request)
            seen.status = 200
            for index, frame in enumerate(frames):
                if index == steer.get("drop_after"):
                    seen.outcome = "dropped"
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                if index == steer.get("error_after"):
                    frame = _event_bytes("error", _error(529, "Overloaded"), steer)
                    seen.sent += frame  # before the write: the client may read it first
                    await response.write(frame)
                    break
                if index == gate_after:
                    await self._gate(steer["gate"]).wait()
                seen.sent += frame  # before the write: the client may read it first
                await response.write(frame)
                if steer.get("writes") == "split":
                    await asyncio.sleep(0.002)  # each piece its own TCP segment
            if "end_gate" in steer:  # every event sent, the end of the body held back
                await self._gate(steer["end_gate"]).wait()
            await response.write_eof()
            seen.outcome = "completed"
        except (asyncio.CancelledError, ConnectionResetError):
            seen.outcome = "cancelled"
            raise
        return response


def _error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": "req_fake_error"}


# What each steering token asks for: the fake runs in the tests' own process, so a short token in the request
# stands for options of any size (a whole stream's frames), and the gateway sees an ordinary end user id.
SCRIPTS: dict[str, dict[str, Any]] = {}


def _steering(body: dict[str, Any]) -> dict[str, Any]:
    user_id = (body.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str) and user_id.startswith("fake:"):
        return SCRIPTS[user_id[len("fake:"):]]
    return {}


def steer(**options: Any) -> dict[str, str]:
    """The `metadata` that steers the fake: `client.messages.create(..., metadata=steer(line_end="crlf"))`."""
    token = uuid.uuid4().hex
    SCRIPTS[token] = options
    return {"user_id": f"fake:{token}"}


def _prompt_tokens(body: dict[str, Any]) -> int:
    size = sum(len(orjson.dumps(body.get(name))) for name in ("system", "messages", "tools") if body.get(name))
    return size // 4 + 1


def _arguments(schema: dict[str, Any]) -> dict[str, Any]:
    values = {"string": "Paris", "number": 21.5, "integer": 3, "boolean": True}
    properties = schema.get("properties") or {}
    return {name: values.get(spec.get("type"), "Paris") for name, spec in properties.items()}


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _events(message: dict[str, Any], blocks: list[dict[str, Any]], usage: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The documented sequence, as (event name, data) with the API's compact JSON."""
    start_usage = {name: usage[name] for name in ("input_tokens", "cache_creation_input_tokens",
                                                  "cache_read_input_tokens", "cache_creation")}
    found = [("message_start", {"type": "message_start",
                                "message": {**message, "usage": {**start_usage, "output_tokens": 1,
                                                                 "service_tier": "standard"}}})]
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "thinking":
            opened, deltas = {"type": "thinking", "thinking": ""}, [
                {"type": "thinking_delta", "thinking": piece} for piece in _pieces(block["thinking"], 12)]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            opened = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = orjson.dumps(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                {"type": "input_json_delta", "partial_json": piece} for piece in _pieces(arguments, 7)]
        else:
            opened = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"], 5)]
        found.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened}))
        if index == 0:
            found.append(("ping", {"type": "ping"}))
        found += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                  for delta in deltas]
        found.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    final = {name: usage[name] for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                                            "output_tokens", "output_tokens_details") if name in usage}
    found.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                    "usage": final}))
    found.append(("message_stop", {"type": "message_stop"}))
    return [(name, b'{"type": "ping"}' if name == "ping" else orjson.dumps(data)) for name, data in found]


def _event_bytes(name: str, data: Any, steer: dict[str, Any]) -> bytes:
    end = b"\r\n" if steer.get("line_end") == "crlf" else b"\n"
    gap = b" " if steer.get("space", True) else b""
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    return b"event:" + gap + name.encode() + end + b"data:" + gap + payload + end + end


def _framed(events: list[tuple[str, bytes]], steer: dict[str, Any]) -> list[bytes]:
    """The events as the writes that carry them."""
    whole = [_event_bytes(name, data, steer) for name, data in events]
    writes = steer.get("writes", "event")
    if writes == "batched":
        return [b"".join(whole[i:i + 3]) for i in range(0, len(whole), 3)]
    if writes == "split":
        return [piece for event in whole for piece in (event[:7], event[7:len(event) // 2], event[len(event) // 2:])
                if piece]
    return whole
