"""What the model answered on /v1/messages, read back from the bytes the client got, for loggers.

Off the request path only: a stream is decoded here event by event, which the relay never does."""

from __future__ import annotations

from typing import Any

import orjson

from gateway import sse

DELTA_FIELDS = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature",
                "input_json_delta": "partial_json"}


def answer_of(stream: bool, output: bytes) -> Any:
    """The assistant's message: its role and content blocks."""
    if not stream:
        try:
            body = orjson.loads(output)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict):
            return None
        return {"role": body.get("role", "assistant"), "content": body.get("content")}
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, list[str]] = {}
    for event in sse.events(output):
        parsed = sse.json_of(event)
        if not isinstance(parsed, dict) or not isinstance(parsed.get("index"), int):
            continue
        index = parsed["index"]
        if parsed.get("type") == "content_block_start" and isinstance(parsed.get("content_block"), dict):
            blocks[index] = dict(parsed["content_block"])
        elif parsed.get("type") == "content_block_delta" and isinstance(parsed.get("delta"), dict):
            delta = parsed["delta"]
            field = DELTA_FIELDS.get(delta.get("type", ""))
            block = blocks.setdefault(index, {})
            if field == "partial_json":
                partial.setdefault(index, []).append(str(delta.get(field, "")))
            elif field is not None:
                block[field] = str(block.get(field, "")) + str(delta.get(field, ""))
    for index, pieces in partial.items():
        try:
            blocks[index]["input"] = orjson.loads("".join(pieces) or "{}")
        except orjson.JSONDecodeError:
            blocks[index]["input"] = "".join(pieces)
    return {"role": "assistant", "content": [blocks[i] for i in sorted(blocks)]}
