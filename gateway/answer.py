"""What the model answered, read back from the bytes the client got (`ctx.output`), for loggers.

Only ever called off the request path: a stream is decoded here event by event,
which the relay itself never does.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import sse
from gateway.anthropic.answer import answer_of as anthropic_answer

Json = Any


def answer_of(endpoint: str, stream: bool, output: bytes | None) -> Json:
    """Chat: the assistant message; completions: the text; embeddings: how many vectors and their size."""
    if not output:
        return None
    if endpoint == "messages":
        return anthropic_answer(stream, output)
    if stream:
        return _streamed(endpoint, output)
    try:
        body = orjson.loads(output)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    if endpoint == "embeddings":
        return _embeddings(body)
    if endpoint == "moderations":
        return {"results": body.get("results")}
    if endpoint == "images/generations":
        data = body.get("data")
        # The pictures themselves (megabytes of base64) say nothing a reader of the log wants.
        return {"images": len(data) if isinstance(data, list) else None}
    choice = _first_choice(body)
    if choice is None:
        return None
    if endpoint == "completions":
        return choice.get("text")
    return choice.get("message")


def _first_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _embeddings(body: dict[str, Any]) -> Json:
    data = body.get("data")
    if not isinstance(data, list):
        return None
    first = data[0].get("embedding") if data and isinstance(data[0], dict) else None
    # The vectors themselves say nothing a reader of the log wants.
    return {"embeddings": len(data), "dimensions": len(first) if isinstance(first, list) else None}


def events(output: bytes) -> list[dict[str, Any]]:
    """The JSON events of an SSE stream (any framing the grammar allows), `[DONE]`, an event cut off at
    the size limit and anything else unreadable left out."""
    return [event for event in map(sse.json_of, sse.events(output)) if isinstance(event, dict)]


def _streamed(endpoint: str, output: bytes) -> Json:
    texts: list[str] = []
    role = "assistant"
    calls: dict[int, dict[str, Any]] = {}
    for event in events(output):
        choice = _first_choice(event)
        if choice is None or choice.get("index", 0) != 0:
            continue
        if endpoint == "completions":
            if isinstance(choice.get("text"), str):
                texts.append(choice["text"])
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("role"), str):
            role = delta["role"]
        if isinstance(delta.get("content"), str):
            texts.append(delta["content"])
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                _merge_tool_call(calls, call)
    if endpoint == "completions":
        return "".join(texts)
    message: dict[str, Any] = {"role": role, "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def _merge_tool_call(calls: dict[int, dict[str, Any]], part: dict[str, Any]) -> None:
    """A streamed tool call arrives in pieces sharing an index: the id and name once, the arguments in bits."""
    index = part.get("index", 0)
    if not isinstance(index, int):
        return
    call = calls.setdefault(index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    if isinstance(part.get("id"), str):
        call["id"] = part["id"]
    function = part.get("function")
    if isinstance(function, dict):
        if isinstance(function.get("name"), str):
            call["function"]["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]
