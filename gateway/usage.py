"""Token usage of an answer, read without decoding the answer.

A non-streaming body is searched from its end for its `usage` object; a
stream keeps a bounded tail of its last bytes and reads the usage event
from it once the stream is over. When the gateway itself asked the upstream
for usage (`stream_options.include_usage`), `UsageStripper` takes that extra
event out of the client's stream and hands it over instead.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec
import orjson

TAIL_BYTES = 16384
# Past this much without an event boundary the stream is not SSE as we know it: pass it on as is.
MAX_PENDING = 65536
CHARS_PER_TOKEN = 4


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False


def _from_object(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = raw.get("prompt_tokens", raw.get("input_tokens"))
    completion = raw.get("completion_tokens", raw.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = raw.get("total_tokens")
    return Usage(prompt, completion, total if isinstance(total, int) else prompt + completion)


def _object_at(data: bytes, start: int) -> bytes | None:
    """The JSON object starting at data[start] (a `{`), by counting braces outside strings."""
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(data)):
        byte = data[index]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte == 0x7B:
            depth += 1
        elif byte == 0x7D:
            depth -= 1
            if depth == 0:
                return data[start:index + 1]
    return None


def from_json_body(body: bytes) -> Usage | None:
    """Usage from a JSON answer. OpenAI-style bodies end with it, so first try the text from its
    `{` to the body's closing brace: one C-speed parse of a few dozen bytes; else find it by hand."""
    at = body.rfind(b'"usage"')
    if at >= 0:
        brace = body.find(b"{", at + 7, at + 32)
        end = body.rstrip().rfind(b"}")
        if 0 <= brace < end:
            try:
                found = _from_object(orjson.loads(body[brace:end]))
            except orjson.JSONDecodeError:
                found = None
            if found is not None:
                return found
    while at >= 0:
        brace = body.find(b"{", at + 7, at + 32)
        if brace >= 0:
            found = _object_at(body, brace)
            if found is not None:
                try:
                    return _from_object(orjson.loads(found))
                except orjson.JSONDecodeError:
                    pass
        at = body.rfind(b'"usage"', 0, at)
    return None


def from_sse_events(data: bytes) -> Usage | None:
    """Usage from the last SSE event in `data` that carries one."""
    for event in reversed(data.split(b"\n\n")):
        if b'"usage"' not in event:
            continue
        payload = event.strip()
        if not payload.startswith(b"data:"):
            continue
        try:
            parsed = orjson.loads(payload[5:])
        except orjson.JSONDecodeError:
            continue  # the cut-off first event of a tail
        if isinstance(parsed, dict):
            usage = _from_object(parsed.get("usage"))
            if usage is not None:
                return usage
    return None


class Tail:
    """The last TAIL_BYTES or so of a stream, kept as the chunks that hold them."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.chunks[0]) >= TAIL_BYTES:
            self.size -= len(self.chunks.popleft())

    def usage(self) -> Usage | None:
        return from_sse_events(b"".join(self.chunks))


class UsageStripper:
    """Forwards whole SSE events, minus the usage event the client did not ask for.

    Events are passed on as soon as they are complete; only a partial event at
    the end of a chunk waits for the rest. Other events keep their bytes,
    except OpenAI's `"usage":null`, which it adds to every chunk only because
    usage was asked for.
    """

    __slots__ = ("pending", "usage", "passthrough")

    def __init__(self) -> None:
        self.pending = b""
        self.usage: Usage | None = None
        self.passthrough = False

    def feed(self, chunk: bytes) -> bytes:
        if self.passthrough:
            return chunk
        data = self.pending + chunk if self.pending else chunk
        cut = data.rfind(b"\n\n")
        if cut < 0:
            if len(data) > MAX_PENDING:
                self.passthrough = True
                self.pending = b""
                return data
            self.pending = data
            return b""
        complete, self.pending = data[:cut + 2], data[cut + 2:]
        if b'"usage"' not in complete:
            return complete
        kept = []
        for event in complete[:-2].split(b"\n\n"):
            if b'"usage":null' in event:
                kept.append(event.replace(b',"usage":null', b"").replace(b'"usage":null,', b""))
            elif b'"usage"' in event and b'"choices":[]' in event:
                self.usage = from_sse_events(event) or self.usage
            else:
                kept.append(event)
        return b"".join(e + b"\n\n" for e in kept)

    def flush(self) -> bytes:
        rest, self.pending = self.pending, b""
        return rest


def reserved_tokens(body: dict[str, Any], state: dict[str, Any]) -> tuple[int, int]:
    """Prompt tokens at four bytes a token rounded up, and the answer's max_tokens (0 if unset): what
    limits and budgets reserve before the answer is known. Kept in `state` so it is worked out once."""
    found: tuple[int, int] | None = state.get("reserved_tokens")
    if found is None:
        source = body.get("messages") or body.get("prompt") or body.get("input") or ""
        asked = body.get("max_completion_tokens") or body.get("max_tokens")
        found = (len(orjson.dumps(source)) // CHARS_PER_TOKEN + 1,
                 asked if isinstance(asked, int) and asked > 0 else 0)
        state["reserved_tokens"] = found
    return found


def estimate(body: dict[str, Any], completion_chars: int) -> Usage:
    """About four characters a token, when the upstream says nothing."""
    source = body.get("messages") or body.get("prompt") or body.get("input") or ""
    prompt = max(1, len(orjson.dumps(source)) // CHARS_PER_TOKEN)
    completion = completion_chars // CHARS_PER_TOKEN
    return Usage(prompt, completion, prompt + completion, estimated=True)
