"""What an Anthropic Messages answer used, read from its bytes without decoding it event by event.

A stream reports usage twice: `message_start`, its first event, carries the input (`input_tokens`,
`cache_creation_input_tokens`, `cache_read_input_tokens`), and the last `message_delta` carries the
output so far, and any input figure that changed, cumulatively. So the meter keeps the stream's head
until the first event is whole and parses that one event, and at the end looks for the last
`message_delta` in the tail every stream keeps (gateway/stream_usage.py). A JSON answer ends with its
`usage`, found from the end as for OpenAI's.

Anthropic's `input_tokens` leaves out the cached tokens; gateway.usage.Usage counts them in
`prompt_tokens`, as OpenAI does, and names them apart.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import sse
from gateway.anthropic.errors import status_for
from gateway.anthropic.requests import estimate
from gateway.errors import ApiError
from gateway.stream_usage import StreamMeter
from gateway.usage import Usage, from_object

MESSAGE_START = b'"message_start"'
MESSAGE_DELTA = b'"message_delta"'
ERROR = b'"error"'
USAGE = b'"usage"'
# The first event is a few hundred bytes; a head this long without it is not a Messages stream.
MAX_HEAD = 65536
INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def usage_of(raw: Any) -> Usage | None:
    """Anthropic's usage object as the gateway counts it (gateway.usage.from_object, which knows its
    cache fields); None when it is not one."""
    if not isinstance(raw, dict) or type(raw.get("input_tokens")) is not int:
        return None
    return from_object(raw)


def from_body(payload: bytes) -> Usage | None:
    """A Message's usage: its last member, so the text from its `{` to the body's last brace is the usage
    object alone (one small parse); else the whole body is parsed."""
    at = payload.rfind(USAGE)
    if at < 0:
        return None
    brace = payload.find(b"{", at + len(USAGE), at + len(USAGE) + 32)
    end = payload.rstrip().rfind(b"}")
    if 0 <= brace < end:
        try:
            found = usage_of(orjson.loads(payload[brace:end]))
        except orjson.JSONDecodeError:
            found = None
        if found is not None:
            return found
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return usage_of(parsed.get("usage")) if isinstance(parsed, dict) else None


def _event_data(data: bytes, at: int) -> Any:
    start, end = sse.event_around(data, at)
    return sse.json_of(data[start:end])


class MessagesMeter(StreamMeter):
    """A StreamMeter for Anthropic's events: the same tail, plus the head until `message_start` is read."""

    __slots__ = ("head", "started")

    def __init__(self, measure: bool, keep_output: int) -> None:
        super().__init__(False, measure, keep_output)
        self.head: bytes | None = b"" if measure else None
        self.started: dict[str, Any] | None = None  # message_start's usage

    def delivered(self, chunk: bytes) -> None:
        super().delivered(chunk)
        if self.head is not None:
            self._read_head(chunk)

    def _read_head(self, chunk: bytes) -> None:
        head = self.head = (self.head or b"") + chunk
        at = head.find(MESSAGE_START)
        if at >= 0:
            end = sse.complete_up_to(head)
            if end <= at:
                return  # the first event is not whole yet
            found = _event_data(head, at)
            message = found.get("message") if isinstance(found, dict) else None
            usage = message.get("usage") if isinstance(message, dict) else None
            self.started = usage if isinstance(usage, dict) else None
            self.head = None
        elif len(head) > MAX_HEAD:
            self.head = None

    def failure(self) -> ApiError | None:
        """Anthropic's own `event: error`, when the stream ended with one: the request failed, though its
        answer started well. Read from the tail, so only when usage is read at all."""
        tail = self.tail.bytes() if self.tail is not None else b""
        at = tail.rfind(ERROR)
        if at < 0:
            return None
        found = _event_data(tail, at)
        error = found.get("error") if isinstance(found, dict) and found.get("type") == "error" else None
        if not isinstance(error, dict) or not isinstance(error.get("type"), str):
            return None
        return ApiError(status_for(error["type"]), str(error.get("message") or error["type"]), error["type"])

    def reported(self) -> Usage | None:
        """message_start's usage, updated by the last message_delta's; None without a message_delta (the
        stream broke off before its end)."""
        tail = self.tail.bytes() if self.tail is not None else b""
        at = tail.rfind(MESSAGE_DELTA)
        while at >= 0:
            found = _event_data(tail, at)
            final = found.get("usage") if isinstance(found, dict) and found.get("type") == "message_delta" else None
            if isinstance(final, dict):
                merged = dict(self.started or {})
                merged.update((name, value) for name, value in final.items() if value is not None)
                merged.setdefault("input_tokens", 0)
                return usage_of(merged)
            start, _ = sse.event_around(tail, at)
            at = tail.rfind(MESSAGE_DELTA, 0, start)
        return None

    def usage(self, body: dict[str, Any]) -> Usage:
        """The upstream's usage; else its input, if message_start said it, and the answer text the client
        was sent at four characters a token, estimated."""
        found = self.reported()
        if found is not None:
            return found
        chars, measured = answer_chars(self.tail.bytes() if self.tail is not None else b"")
        sent_chars = chars if measured >= self.sent or not measured else chars * self.sent // measured
        guessed = estimate(body, sent_chars)
        started = usage_of({**self.started, "output_tokens": 0}) if self.started is not None else None
        if started is None:
            return guessed
        output = guessed.completion_tokens
        return Usage(started.prompt_tokens, output, started.prompt_tokens + output, estimated=True,
                     cache_read_tokens=started.cache_read_tokens, cache_creation_tokens=started.cache_creation_tokens)


DELTA_TEXT = ("text", "thinking", "partial_json")


def answer_chars(data: bytes) -> tuple[int, int]:
    """(characters of answer text, bytes of the events that held them) in a run of Messages events: text,
    thinking and tool input."""
    chars = measured = 0
    for event in sse.events(data):
        parsed = sse.json_of(event)
        if not isinstance(parsed, dict):
            continue
        measured += len(event)
        delta = parsed.get("delta")
        if parsed.get("type") == "content_block_delta" and isinstance(delta, dict):
            for field in DELTA_TEXT:
                if isinstance(delta.get(field), str):
                    chars += len(delta[field])
    return chars, measured
