"""Server-sent events as the WHATWG event-stream grammar defines them, read only as far as the relay needs.

A line ends with CRLF, LF or CR; an empty line ends an event; a line starting
with `:` is a comment; `data:` lines join with LF. Nothing here decodes an
event on the relay's path: `complete_up_to` finds where the last complete
event ends with three searches in C, and the rest runs only for events that
mention `"usage"`, or once at the end of a stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import orjson

# Every empty line contains one of these: a line end that is LF or a lone CR, followed by a CR or LF.
_EMPTY_LINE_MARKS = (b"\n\n", b"\n\r", b"\r\r")
# One line end, then another: the end of an event. `\r(?!\n)` keeps a CRLF from counting as two.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DECODER = json.JSONDecoder()


def complete_up_to(data: bytes) -> int:
    """How many bytes of `data` are complete events (0 if none). A CR that ends `data` counts as a
    whole line end: if an LF follows in the next read, it belongs to the event before it."""
    end = -1
    for mark in _EMPTY_LINE_MARKS:
        at = data.rfind(mark)
        if at > end:
            end = at
    if end < 0:
        return 0
    end += 2
    if data[end - 1:end] == b"\r" and data[end:end + 1] == b"\n":
        end += 1
    return end


def event_around(data: bytes, at: int) -> tuple[int, int]:
    """Where the event that holds byte `at` starts and ends (its blank line included, if there)."""
    start = max(data.rfind(mark, 0, at) for mark in _EMPTY_LINE_MARKS)
    start = start + 2 if start >= 0 else 0
    ends = [found for found in (data.find(mark, at) for mark in _EMPTY_LINE_MARKS) if found >= 0]
    return start, min(ends) + 2 if ends else len(data)


def events(block: bytes) -> Iterator[bytes]:
    """The events of a run of complete events, each with the blank line that ends it."""
    start = 0
    for found in _EVENT_END.finditer(block):
        end = found.end()
        yield block[start:end]
        start = end
    if start < len(block):
        yield block[start:]


class DataLine:
    """Where one `data:` line's value sits in the event's bytes."""

    __slots__ = ("start", "end")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end


def data_lines(event: bytes) -> list[DataLine]:
    found: list[DataLine] = []
    start = 0
    for line_end in _LINE_END.finditer(event):
        _data_value(event, start, line_end.start(), found)
        start = line_end.end()
    _data_value(event, start, len(event), found)
    return found


def _data_value(event: bytes, start: int, end: int, found: list[DataLine]) -> None:
    if event.startswith(b"data", start) and (end == start + 4 or event[start + 4:start + 5] == b":"):
        value = start + 5 if end > start + 4 else end
        if event[value:value + 1] == b" ":
            value += 1
        found.append(DataLine(min(value, end), end))


def data_of(event: bytes, lines: list[DataLine] | None = None) -> bytes | None:
    """The event's data, its `data:` lines joined with LF; None when it has none."""
    lines = data_lines(event) if lines is None else lines
    if not lines:
        return None
    if len(lines) == 1:
        return event[lines[0].start:lines[0].end]
    return b"\n".join(event[line.start:line.end] for line in lines)


def json_of(event: bytes) -> Any:
    """The event's data as JSON, or None when it has no data or the data is not JSON."""
    data = data_of(event)
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def without_member(event: bytes, name: str, expected: dict[str, Any]) -> bytes | None:
    """The event with one top-level member of its JSON data taken out, and the comma that joined it
    to a neighbour; every other byte kept. `expected` is the data as parsed, for the check that the
    member removed was the top-level one. None if it cannot be done exactly."""
    lines = data_lines(event)
    data = data_of(event, lines)
    if data is None:
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    wanted = {k: v for k, v in expected.items() if k != name}
    for found in re.finditer(rf'"{re.escape(name)}"\s*:\s*', text):
        try:
            _, value_end = _DECODER.raw_decode(text, found.end())
        except ValueError:
            continue
        start, end = _with_joining_comma(text, found.start(), value_end)
        candidate = text[:start] + text[end:]
        try:
            if orjson.loads(candidate) != wanted:
                continue
        except orjson.JSONDecodeError:
            continue
        cut_from = _event_offset(lines, len(text[:start].encode()))
        cut_to = _event_offset(lines, len(text[:end].encode()))
        return event[:cut_from] + event[cut_to:]
    return None


def _with_joining_comma(text: str, start: int, end: int) -> tuple[int, int]:
    before = start
    while before > 0 and text[before - 1] in " \t\r\n":
        before -= 1
    if before > 0 and text[before - 1] == ",":
        return before - 1, end
    after = end
    while after < len(text) and text[after] in " \t\r\n":
        after += 1
    if after < len(text) and text[after] == ",":
        after += 1
        while after < len(text) and text[after] in " \t\r\n":
            after += 1
        return start, after
    return start, end


def _event_offset(lines: list[DataLine], offset: int) -> int:
    """Where byte `offset` of the joined data is in the event. An offset on a joining LF maps to the
    end of the line before it, so a cut that stops there keeps the line break and the next `data:`."""
    for line in lines:
        length = line.end - line.start
        if offset <= length:
            return line.start + offset
        offset -= length + 1
    return lines[-1].end
