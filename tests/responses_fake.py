"""Fake upstreams for the Responses API on loopback, each in a thread of its own.

`ResponsesUpstream` serves OpenAI's Responses API as OpenAI does: the Response object with its members in
the order the API writes them (read from recorded OpenAI answers and openai-python's types/responses), a
stream of `event: <type>` / `data: {...}` events with sequence numbers from 0 and no `[DONE]`, stored
responses it can retrieve, delete and list the input items of, and `previous_response_id` refused with
OpenAI's 400 when it does not hold that response. Usage is `usage_of()`: 11 input tokens (3 cached), 7
output (2 reasoning).

`ChatOnlyUpstream` serves chat completions only (as vLLM does), answering as OpenAI's chat API writes: with
tools given and no tool result in the conversation, it calls the first tool (a function of one string
`input`, as a custom tool is offered, with PATCH); after a tool result it says
what the tool returned; else it says hello. Streams send usage last when asked
(`stream_options.include_usage`). Both record every request and the exact bytes they answered.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.loopback import Loopback

CREATED_AT = 1751642570
TEXT_PIECES = ["Hello", " from", " the", " Responses", " API."]
USAGE = {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 7,
         "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 18}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"  # what a custom tool is called with
BREAK_AT = 6  # `input: "break"`: the stream's connection is cut before this event
CHAT_USAGE = {"prompt_tokens": 13, "completion_tokens": 6, "total_tokens": 19,
              "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 0}}


@dataclass
class Seen:
    method: str
    path: str
    body: dict[str, Any] | None
    sent: bytes = b""


class _Threaded(Loopback):
    """A fake that serves as soon as it is made."""

    name: str
    seen: list[Seen]
    handler_cancellation = True

    def _start(self) -> None:
        self._loopback(f"upstream-{self.name}")
        self.start()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


def _last_said(body: dict[str, Any]) -> str | None:
    """The input when it is text, else the text of its last item (how Codex sends its prompt)."""
    given = body.get("input")
    if isinstance(given, str) or not given:
        return given
    content = given[-1].get("content") if isinstance(given[-1], dict) else None
    return "".join(part.get("text", "") for part in content if isinstance(part, dict)) \
        if isinstance(content, list) else content if isinstance(content, str) else None


def _error(status: int, message: str, param: str | None, code: str | None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body, option=orjson.OPT_INDENT_2),
                        content_type="application/json")


@dataclass
class ResponsesUpstream(_Threaded):
    name: str = "responses"
    seen: list[Seen] = field(default_factory=list, repr=False)
    port: int = 0
    stored: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._start()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/responses", self._create)
        app.router.add_get("/v1/responses/{id}", self._retrieve)
        app.router.add_delete("/v1/responses/{id}", self._delete)
        app.router.add_get("/v1/responses/{id}/input_items", self._input_items)

    def response(self, body: dict[str, Any], status: str, output: list[dict[str, Any]],
                 usage: dict[str, Any] | None, response_id: str) -> dict[str, Any]:
        """OpenAI's Response object, its members in the API's order."""
        return {
            "id": response_id, "object": "response", "created_at": CREATED_AT, "status": status,
            "background": False, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": None, "model": body["model"], "output": output, "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"), "reasoning": {"effort": None, "summary": None},
            "service_tier": "default", "store": body.get("store", True), "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto",
            "tools": body.get("tools", []), "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": None, "metadata": {},
        }

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen = Seen("POST", request.path, body)
        self.seen.append(seen)
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            return _error(400, f"Previous response with id '{previous}' not found.", "previous_response_id",
                          "previous_response_not_found")
        response_id = f"resp_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"
        message_id = f"msg_{uuid.uuid4().hex}"
        # `input: "long"`: an answer whose response.completed event is larger than the gateway's stream tail.
        text = "".join(TEXT_PIECES) * (300 if body.get("input") == "long" else 1) \
            + (f" (after {previous})" if previous else "") + f" [{self.name}]"
        message = {"id": message_id, "type": "message", "status": "completed",
                   "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
                   "role": "assistant"}
        done = self.response(body, "completed", [message], USAGE, response_id)
        if body.get("store", True):
            self.stored[response_id] = done
            given = body.get("input")
            self.inputs[response_id] = [{"id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "user",
                                         "status": "completed",
                                         "content": [{"type": "input_text", "text": given}]}] \
                if isinstance(given, str) else list(given or [])
        if not body.get("stream"):
            raw = orjson.dumps(done, option=orjson.OPT_INDENT_2)  # OpenAI's answers are indented
            seen.sent = raw
            return web.Response(body=raw, content_type="application/json")
        started = self.response(body, "in_progress", [], None, response_id)
        pieces = [text[at:at + 8] for at in range(0, len(text), 8)]
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"response": started}),
            ("response.in_progress", {"response": started}),
            ("response.output_item.added", {"output_index": 0, "item": {
                "id": message_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
            ("response.content_part.added", {"item_id": message_id, "output_index": 0, "content_index": 0,
                                             "part": empty}),
            *[("response.output_text.delta", {"item_id": message_id, "output_index": 0, "content_index": 0,
                                              "delta": piece, "logprobs": [], "obfuscation": "a1b2"})
              for piece in pieces],
            ("response.output_text.done", {"item_id": message_id, "output_index": 0, "content_index": 0,
                                           "text": text, "logprobs": []}),
            ("response.content_part.done", {"item_id": message_id, "output_index": 0, "content_index": 0,
                                            "part": message["content"][0]}),
            ("response.output_item.done", {"output_index": 0, "item": message}),
            ("response.completed", {"response": done}),
        ]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for number, (kind, data) in enumerate(events):
            frame = b"event: %b\ndata: %b\n\n" % (kind.encode(), orjson.dumps(
                {"type": kind, "sequence_number": number, **data}))
            seen.sent += frame
            if number == BREAK_AT and _last_said(body) == "break":  # the connection lost mid-answer
                assert request.transport is not None
                request.transport.abort()
                return response
            if number == 0 and body.get("input") == "split":  # the first event cut inside its id
                cut = frame.index(b"resp_") + 7
                await response.write(frame[:cut])
                await asyncio.sleep(0.05)
                frame = frame[cut:]
            await response.write(frame)
        await response.write_eof()
        return response

    async def _retrieve(self, request: web.Request) -> web.Response:
        self.seen.append(Seen("GET", request.path_qs, None))
        found = self.stored.get(request.match_info["id"])
        if found is None:
            return _error(404, f"Response with id '{request.match_info['id']}' not found.", None, None)
        return web.json_response(found)

    async def _delete(self, request: web.Request) -> web.Response:
        self.seen.append(Seen("DELETE", request.path, None))
        response_id = request.match_info["id"]
        if self.stored.pop(response_id, None) is None:
            return _error(404, f"Response with id '{response_id}' not found.", None, None)
        return web.json_response({"id": response_id, "object": "response.deleted", "deleted": True})

    async def _input_items(self, request: web.Request) -> web.Response:
        self.seen.append(Seen("GET", request.path_qs, None))
        items = self.inputs.get(request.match_info["id"])
        if items is None:
            return _error(404, f"Response with id '{request.match_info['id']}' not found.", None, None)
        return web.json_response({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                                  "last_id": items[-1]["id"] if items else None, "has_more": False})


@dataclass
class ChatOnlyUpstream(_Threaded):
    name: str = "vllm"
    seen: list[Seen] = field(default_factory=list, repr=False)
    port: int = 0

    def __post_init__(self) -> None:
        self._start()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen = Seen("POST", request.path, body)
        self.seen.append(seen)
        messages = body["messages"]
        tools = body.get("tools") or []
        results = [m for m in messages if m["role"] == "tool"]
        call: dict[str, Any] | None = None
        if results:
            text: str | None = f"The tool said: {results[-1]['content']}"
        elif tools:
            text = None
            function = tools[0]["function"]
            # A custom tool, offered as a function of one string: its raw input.
            one_string = list((function.get("parameters") or {}).get("properties") or {}) == ["input"]
            call = {"id": f"call_{uuid.uuid4().hex[:24]}", "name": function["name"],
                    "arguments": orjson.dumps({"input": PATCH}).decode() if one_string else '{"city": "Paris"}'}
        else:
            text = "Hello from chat."
        finish = "tool_calls" if call else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            if call is not None:
                message["tool_calls"] = [{"id": call["id"], "type": "function", "function": {
                    "name": call["name"], "arguments": call["arguments"]}}]
            answer = {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion",
                      "created": 1741569952, "model": body["model"],
                      "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                      "usage": CHAT_USAGE, "service_tier": "default", "system_fingerprint": None}
            raw = orjson.dumps(answer)
            seen.sent = raw
            return web.Response(body=raw, content_type="application/json")
        head = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
                "model": body["model"], "system_fingerprint": "fp_44709d6fcb"}
        chunks: list[dict[str, Any]] = [
            {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                  "finish_reason": None}]}]
        if text is not None:
            for piece in (text[:5], text[5:12], text[12:]):
                chunks.append({**head, "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                                    "finish_reason": None}]})
        if call is not None:
            opening = {"index": 0, "id": call["id"], "type": "function",
                       "function": {"name": call["name"], "arguments": ""}}
            chunks.append({**head, "choices": [{"index": 0, "delta": {"tool_calls": [opening]}, "logprobs": None,
                                                "finish_reason": None}]})
            arguments = call["arguments"]
            third = len(arguments) // 3
            for piece in (arguments[:third], arguments[third:2 * third], arguments[2 * third:]):
                chunks.append({**head, "choices": [{"index": 0, "delta": {"tool_calls": [{
                    "index": 0, "function": {"arguments": piece}}]}, "logprobs": None, "finish_reason": None}]})
        chunks.append({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**head, "choices": [], "usage": CHAT_USAGE})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        cut = messages[-1]["content"] == "break"  # the connection lost after the first text
        for at, chunk in enumerate(chunks):
            if cut and at == 2:
                assert request.transport is not None
                request.transport.abort()
                return response
            frame = b"data: " + orjson.dumps(chunk) + b"\n\n"
            seen.sent += frame
            await response.write(frame)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
