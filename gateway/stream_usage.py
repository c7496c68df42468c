"""What a relayed stream used, read without decoding it event by event.

`StreamMeter` sits between the upstream and the client. It counts the bytes
the client was sent and keeps a bounded tail of them; when the gateway itself
asked the upstream for usage (`stream_options.include_usage`), its
`UsageStripper` takes out what the client did not ask for and keeps the usage
it carried. At the end, `usage()` is the upstream's own report if there was
one, else an estimate from the prompt and from the answer text in what the
client was actually sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway import sse
from gateway.errors import ApiError
from gateway.usage import Usage, estimate, from_json_body, from_object

# Enough for the last events (where usage is) and a sample of the answer's text; held for as long as a
# stream is open, so it is most of what a long stream costs the gateway beyond its sockets.
TAIL_BYTES = 2048
TAIL_SLACK = 1024  # trimmed once this much over, not on every chunk
# Past this many bytes without an event boundary the stream is not SSE as we know it: pass it on as is.
MAX_PENDING = 65536
USAGE = b'"usage"'
# OpenAI's own spelling of the `usage` it adds to every chunk once asked for it: cut without parsing.
COMPACT_NULLS = (b',"usage":null', b'"usage":null,')


class Tail:
    """The last TAIL_BYTES or so of a stream, kept as the chunks that hold them."""

    __slots__ = ("chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []  # a list, not a deque: an empty deque alone is 600 bytes
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size >= TAIL_BYTES + TAIL_SLACK:
            self._trim()

    def _trim(self) -> None:
        chunks, size, drop = self.chunks, self.size, 0
        while drop < len(chunks) and size - len(chunks[drop]) >= TAIL_BYTES:
            size -= len(chunks[drop])
            drop += 1
        if drop:
            del chunks[:drop]
            self.size = size

    def bytes(self) -> bytes:
        self._trim()
        return b"".join(self.chunks)


def usage_in(data: bytes) -> Usage | None:
    """The usage of the last event in `data` that carries one (a cut-off first event is skipped).
    Searched from the end for `"usage"`, so only the events that mention it are looked at."""
    at = data.rfind(USAGE)
    while at >= 0:
        start, end = sse.event_around(data, at)
        parsed = sse.json_of(data[start:end])
        if isinstance(parsed, dict):
            found = from_object(parsed.get("usage"))
            if found is not None:
                return found
        at = data.rfind(USAGE, 0, start)
    return None


def answer_chars(data: bytes) -> tuple[int, int]:
    """(characters of answer text, bytes of the events that held them) in a run of SSE events:
    content, reasoning, tool-call arguments and completion text."""
    chars = measured = 0
    for event in sse.events(data):
        parsed = sse.json_of(event)
        if not isinstance(parsed, dict):
            continue
        measured += len(event)
        choices = parsed.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict):
                chars += _text_length(choice)
    return chars, measured


def _text_length(choice: dict[str, Any]) -> int:
    length = len(choice["text"]) if isinstance(choice.get("text"), str) else 0
    delta = choice.get("delta")
    if isinstance(delta, dict):
        for field in ("content", "reasoning_content", "reasoning"):
            if isinstance(delta.get(field), str):
                length += len(delta[field])
        for call in delta.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                length += len(function["arguments"])
    return length


class UsageStripper:
    """Forwards whole SSE events, minus the usage the gateway asked for and the client did not.

    Each event goes on as soon as its blank line arrives; only a partial event
    at the end of a read waits for the rest. A usage-only event (no `choices`,
    or empty ones) is dropped and its usage kept; a `usage` member on any other
    event (`null`, or the usage riding on a finish chunk) is cut out of its
    JSON with the comma that joined it, every other byte kept.
    """

    __slots__ = ("pending", "usage", "passthrough", "after_cr", "dropped_last")

    def __init__(self) -> None:
        self.pending = b""
        self.usage: Usage | None = None
        self.passthrough = False
        self.after_cr = False  # the last complete event ended in CR: an LF next belongs to it
        self.dropped_last = False

    def feed(self, chunk: bytes) -> bytes:
        if not self.pending and not self.after_cr and chunk.endswith(b"\n\n") and USAGE not in chunk:
            self.dropped_last = False
            return chunk  # whole events with nothing to take out: the common case, decided in C
        if self.passthrough:
            return chunk
        data = self.pending + chunk if self.pending else chunk
        owed = b""
        if self.after_cr and data[:1] == b"\n":
            owed = b"" if self.dropped_last else b"\n"
            data = data[1:]
        self.after_cr = False
        end = sse.complete_up_to(data)
        if end == 0:
            if len(data) > MAX_PENDING:
                self.passthrough = True
                self.pending = b""
                return owed + data
            self.pending = data
            return owed
        complete, self.pending = (data[:end], data[end:]) if end < len(data) else (data, b"")
        self.after_cr = complete.endswith(b"\r")
        if USAGE not in complete:
            self.dropped_last = False
            return owed + complete if owed else complete
        return owed + b"".join(self._kept(complete))

    def _kept(self, complete: bytes) -> list[bytes]:
        kept = []
        for event in sse.events(complete):
            dropped = False
            if USAGE in event:
                event, dropped = self._strip(event)
            if not dropped:
                kept.append(event)
            self.dropped_last = dropped
        return kept

    def _strip(self, event: bytes) -> tuple[bytes, bool]:
        """The event as the client gets it, and whether it is dropped whole."""
        if event.count(USAGE) == 1 and _one_line(event):
            for null in COMPACT_NULLS:
                if null in event:
                    return event.replace(null, b"", 1), False
        parsed = sse.json_of(event)
        if not isinstance(parsed, dict) or "usage" not in parsed:
            return event, False
        value = parsed["usage"]
        if value is not None:
            self.usage = from_object(value) or self.usage
            if not parsed.get("choices"):
                return event, True
        return sse.without_member(event, "usage", parsed) or event, False

    def flush(self) -> bytes:
        """The stream ended: what is left of it, as the client gets it."""
        rest, self.pending = self.pending, b""
        if rest and USAGE in rest and not self.passthrough:
            return b"".join(self._kept(rest))
        return rest


def _unchanged(chunk: bytes) -> bytes:
    return chunk


def _one_line(event: bytes) -> bool:
    body = event.rstrip(b"\r\n")
    return b"\n" not in body and b"\r" not in body


class StreamMeter:
    """One relayed stream's bytes: what goes to the client, and what it used."""

    __slots__ = ("stripper", "tail", "sent", "kept", "keep_up_to", "feed")

    def __init__(self, strip_usage: bool, measure: bool, keep_output: int) -> None:
        self.stripper = UsageStripper() if strip_usage else None
        self.tail = Tail() if measure else None
        self.sent = 0
        self.kept: list[bytes] | None = [] if keep_output else None
        self.keep_up_to = keep_output
        # What of an upstream read goes to the client now.
        self.feed: Callable[[bytes], bytes] = self.stripper.feed if self.stripper is not None else _unchanged

    def flush(self) -> bytes:
        return self.stripper.flush() if self.stripper is not None else b""

    def broken(self) -> bytes:
        """The upstream broke off: what is still owed the client before the gateway's error event."""
        return self.flush()

    def failure(self) -> ApiError | None:
        """An error the stream itself ended with, though its answer started well (none, in OpenAI's streams)."""
        return None

    def delivered(self, chunk: bytes) -> None:
        """`chunk` was written to the client."""
        self.sent += len(chunk)
        if self.tail is not None:
            self.tail.feed(chunk)
        if self.kept is not None and self.sent <= self.keep_up_to:
            self.kept.append(chunk)

    def output(self) -> bytes | None:
        return b"".join(self.kept) if self.kept is not None else None

    def sent_tail(self) -> bytes:
        """The end of what the client was sent, when it is measured."""
        return self.tail.bytes() if self.tail is not None else b""

    def reported(self) -> Usage | None:
        """The upstream's own usage, if it sent one (to the gateway, or to the client that asked)."""
        if self.stripper is not None and self.stripper.usage is not None:
            return self.stripper.usage
        tail = self.tail.bytes() if self.tail is not None else b""
        return usage_in(tail) or from_json_body(tail)

    def usage(self, body: dict[str, Any]) -> Usage:
        """The upstream's usage, else the prompt and the answer text the client was sent, at four
        characters a token: the tail's share of text applied to every byte sent."""
        found = self.reported()
        if found is not None:
            return found
        chars, measured = answer_chars(self.tail.bytes() if self.tail is not None else b"")
        sent_chars = chars if measured >= self.sent or not measured else chars * self.sent // measured
        return estimate(body, sent_chars)
