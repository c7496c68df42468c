"""The `data` of each event in an SSE stream read in pieces cut anywhere, for the stream translators.

Event boundaries are found by gateway/sse.py (the WHATWG grammar: LF, CRLF or CR, comments,
several `data:` lines) unless a read has no CR at all: then events end at `\\n\\n`, found in C.
The two layouts upstreams actually write, `data: X` alone and `event: name` then `data: X`, are
read with a few byte comparisons; any other event goes through the general parser.
"""

from __future__ import annotations

from gateway import sse

# Past this many bytes without an event boundary the upstream is not writing SSE: its bytes are dropped.
MAX_PENDING = 1 << 20


class DataReader:
    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that `chunk` completes, in order (events without data left out)."""
        if not self.pending and chunk.endswith(b"\n\n"):
            value = _layout(chunk, 0, len(chunk) - 2)
            if value is not None and chunk.find(b"\r") < 0:
                return [value]  # one whole event, as most upstreams write each
        data = self.pending + chunk if self.pending else chunk
        if b"\r" not in data:
            return self._lf_events(data)
        end = sse.complete_up_to(data)
        if end == 0:
            self._keep(data)
            return []
        if end < len(data):
            self.pending = data[end:]
            data = data[:end]
        else:
            self.pending = b""
        found = []
        for event in sse.events(data):
            value = sse.data_of(event)
            if value is not None:
                found.append(value)
        return found

    def _lf_events(self, data: bytes) -> list[bytes]:
        found = []
        start = 0
        end = data.find(b"\n\n")
        while end >= 0:
            value = _layout(data, start, end)
            if value is None:
                value = sse.data_of(data[start:end])
            if value is not None:
                found.append(value)
            start = end + 2
            end = data.find(b"\n\n", start)
        if start < len(data):
            self._keep(data[start:] if start else data)
        else:
            self.pending = b""
        return found

    def _keep(self, rest: bytes) -> None:
        self.pending = rest if len(rest) <= MAX_PENDING else b""

    def flush(self) -> list[bytes]:
        """The stream ended: the data of a last event that had no blank line after it."""
        rest, self.pending = self.pending, b""
        value = sse.data_of(rest) if rest.strip() else None
        return [value] if value is not None else []


def _layout(data: bytes, start: int, end: int) -> bytes | None:
    """The data of the event data[start:end] (LF lines, its blank line after `end`) when it is exactly
    `data: X` or `event: N` then `data: X`; None for anything else."""
    if data.startswith(b"data: ", start):
        at = start + 6
    elif data.startswith(b"event:", start):
        line_end = data.find(b"\n", start, end)
        if line_end < 0 or not data.startswith(b"data: ", line_end + 1):
            return None
        at = line_end + 7
    else:
        return None
    if data.find(b"\n", at, end) >= 0:
        return None
    return data[at:end]
