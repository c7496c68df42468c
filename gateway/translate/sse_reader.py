"""The `data` of each event in an SSE stream read in pieces cut anywhere, for the stream translators.

Event boundaries are found by gateway/sse.py (the WHATWG grammar: LF, CRLF or CR, comments,
several `data:` lines). The two layouts upstreams actually write, `data: X` alone and
`event: name` then `data: X`, each with LF line ends, are read with two byte comparisons;
anything else goes through the general parser.
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
        data = self.pending + chunk if self.pending else chunk
        end = sse.complete_up_to(data)
        if end == 0:
            self.pending = data if len(data) <= MAX_PENDING else b""
            return []
        if end < len(data):
            self.pending = data[end:]
            data = data[:end]
        else:
            self.pending = b""
        found = []
        for event in sse.events(data):
            value = data_of(event)
            if value is not None:
                found.append(value)
        return found

    def flush(self) -> list[bytes]:
        """The stream ended: the data of a last event that had no blank line after it."""
        rest, self.pending = self.pending, b""
        value = data_of(rest) if rest.strip() else None
        return [value] if value is not None else []


def data_of(event: bytes) -> bytes | None:
    if event.endswith(b"\n\n"):
        last = len(event) - 2
        if event.startswith(b"data: "):
            if event.find(b"\n", 6) == last and b"\r" not in event:
                return event[6:last]
        elif event.startswith(b"event:"):
            line_end = event.find(b"\n")
            if event.startswith(b"data: ", line_end + 1) and event.find(b"\n", line_end + 7) == last \
                    and b"\r" not in event:
                return event[line_end + 7:last]
    return sse.data_of(event)
