"""The SSE grammar (WHATWG event-stream) as the relay reads it: framing, cuts anywhere, usage stripped exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import sse
from gateway.stream_usage import StreamMeter, UsageStripper, answer_chars, usage_in
from gateway.usage import Usage


@pytest.mark.parametrize(("data", "complete"), [
    (b"data: a\n\n", 9),
    (b"data: a\r\n\r\n", 11),
    (b"data: a\r\r", 9),
    (b"data: a\r\n\r", 10),  # the LF that may follow belongs to this event
    (b"data: a\n\r\n", 10),
    (b"data: a\r\n", 0),
    (b"data: a\n\ndata: b", 9),
    (b": keep-alive\n\ndata: b\r\n\r\nda", 25),
    (b"data: a", 0),
])
def test_where_complete_events_end(data: bytes, complete: int) -> None:
    assert sse.complete_up_to(data) == complete


def test_events_split_on_every_legal_blank_line() -> None:
    stream = b"data: 1\n\ndata: 2\r\n\r\ndata: 3\r\rdata: 4\n\r\nid: 5\r\n\n"
    assert list(sse.events(stream)) == [b"data: 1\n\n", b"data: 2\r\n\r\n", b"data: 3\r\r", b"data: 4\n\r\n",
                                        b"id: 5\r\n\n"]


def test_data_lines_join_with_lf_and_other_fields_are_not_data() -> None:
    event = b": comment\r\nevent: chunk\r\ndata:{\"a\":\r\ndata: 1}\r\nid: 7\r\ndatabase: no\r\n\r\n"
    assert sse.data_of(event) == b'{"a":\n1}'
    assert sse.json_of(event) == {"a": 1}


def test_a_member_is_cut_with_its_comma_and_nothing_else() -> None:
    event = b'data: {"id": "x", "usage": null, "choices": []}\n\n'
    assert sse.without_member(event, "usage", {"id": "x", "usage": None, "choices": []}) == \
        b'data: {"id": "x", "choices": []}\n\n'
    first = b'data: {"usage":{"total_tokens":3},"choices":[{"delta":{}}]}\r\n\r\n'
    assert sse.without_member(first, "usage", json.loads(sse.data_of(first) or b"")) == \
        b'data: {"choices":[{"delta":{}}]}\r\n\r\n'


def test_a_member_split_over_data_lines_is_cut_across_them() -> None:
    event = b'data: {"a": 1,\ndata:  "usage": null}\n\n'
    assert sse.without_member(event, "usage", {"a": 1, "usage": None}) == b'data: {"a": 1}\n\n'


def test_a_nested_member_of_the_same_name_is_left_alone() -> None:
    event = b'data: {"choices": [{"usage": 1}], "usage": null}\n\n'
    parsed = {"choices": [{"usage": 1}], "usage": None}
    assert sse.without_member(event, "usage", parsed) == b'data: {"choices": [{"usage": 1}]}\n\n'


# A generated stream: the bytes an upstream sends once asked for usage, and what a client that did
# not ask must get, rendered from the same events with the usage left out.

@dataclass
class Stream:
    upstream: bytes
    client: bytes
    usage: Usage
    event_ends: list[tuple[int, int]]  # (end in upstream bytes, end in client bytes) of each event


def render(fields: list[tuple[str, str]], line_end: str) -> bytes:
    return "".join(f"{name}: {value}{line_end}" if name else f":{value}{line_end}" for name, value in fields).encode() \
        + line_end.encode()


def data_fields(payload: Any, indent: int | None, separators: tuple[str, str]) -> list[tuple[str, str]]:
    text = json.dumps(payload, indent=indent, separators=separators, ensure_ascii=False)
    return [("data", line) for line in text.split("\n")]


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    indent = draw(st.sampled_from([None, None, 1]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (",", ": ")]))
    where = draw(st.sampled_from(["event", "finish"]))
    usage_null = draw(st.booleans())
    usage_first = draw(st.booleans())
    prompt, completion = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    upstream: list[bytes] = []
    client: list[bytes] = []

    def chunk(choices: list[Any], usage_value: Any, with_usage: bool) -> dict[str, Any]:
        base: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": choices}
        if not with_usage:
            return base
        return {"usage": usage_value, **base} if usage_first else {**base, "usage": usage_value}

    def add(payload_up: Any, payload_client: Any | None, extra: list[tuple[str, str]]) -> None:
        up = render(extra + data_fields(payload_up, indent, separators), line_end)
        upstream.append(up)
        if payload_client is not None:
            client.append(render(extra + data_fields(payload_client, indent, separators), line_end))
        else:
            client.append(b"")

    for text in draw(st.lists(texts, min_size=1, max_size=5)):
        extra: list[tuple[str, str]] = []
        if draw(st.booleans()):
            extra.append(("event", "chunk"))
        if draw(st.booleans()):
            upstream.append(render([("", " keep-alive")], line_end))
            client.append(upstream[-1])
        choices = [{"index": 0, "delta": {"content": text}, "finish_reason": None}]
        add(chunk(choices, None, usage_null), chunk(choices, None, False), extra)
    finish = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    if where == "finish":
        add(chunk(finish, usage, True), chunk(finish, None, False), [])
    else:
        add(chunk(finish, None, usage_null), chunk(finish, None, False), [])
        add(chunk([], usage, True), None, [])
    upstream.append(render([("data", "[DONE]")], line_end))
    client.append(upstream[-1])
    ends, up_at, client_at = [], 0, 0
    for up, cl in zip(upstream, client):
        up_at += len(up)
        client_at += len(cl)
        ends.append((up_at, client_at))
    return Stream(b"".join(upstream), b"".join(client), Usage(**usage), ends)


def cut(data: bytes, positions: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in positions} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


@settings(max_examples=400, deadline=None)
@given(streams(), st.lists(st.integers(0, 10**6), max_size=12))
def test_stripping_is_exact_and_timely_at_any_cut(stream: Stream, positions: list[int]) -> None:
    stripper = UsageStripper()
    out = b""
    fed = 0
    for piece in cut(stream.upstream, positions):
        out += stripper.feed(piece)
        fed += len(piece)
        assert stream.client.startswith(out)
        due = max((client_end for up_end, client_end in stream.event_ends if up_end <= fed), default=0)
        # Every event complete in what was read is out, bar an LF that may yet turn out to be a CR's.
        assert len(out) >= due - 1
    out += stripper.flush()
    assert out == stream.client
    assert stripper.usage == stream.usage


@settings(max_examples=200, deadline=None)
@given(streams(), st.lists(st.integers(0, 10**6), max_size=8))
def test_usage_is_read_from_the_tail_when_the_client_asked(stream: Stream, positions: list[int]) -> None:
    meter = StreamMeter(strip_usage=False, measure=True, keep_output=0)
    for piece in cut(stream.upstream, positions):
        out = meter.feed(piece)
        assert out == piece
        meter.delivered(out)
    assert meter.reported() == stream.usage == usage_in(stream.upstream)


def test_a_client_that_left_is_charged_for_the_text_it_was_sent() -> None:
    events = b"".join(b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\r\n\r\n' % (b"x" * 40)
                      for _ in range(3))
    meter = StreamMeter(strip_usage=True, measure=True, keep_output=0)
    meter.delivered(meter.feed(events))
    used = meter.usage({"messages": [{"role": "user", "content": "y" * 400}]})
    assert used.estimated and used.completion_tokens == 30 and used.prompt_tokens >= 100
    assert answer_chars(events) == (120, len(events))


def test_text_that_is_not_sse_passes_untouched() -> None:
    stripper = UsageStripper()
    blob = b'{"usage": 1}' + b"x" * 70000
    assert stripper.feed(blob) == blob
    assert stripper.feed(b"more") == b"more"


@pytest.mark.parametrize("stream", [
    b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\r\n\r\ndata: [DONE]\r\n\r\n',
    b'data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}\r\rdata: x\r\r',
    b'event: u\ndata: {"choices": [],\ndata:  "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n',
    b'tokens": 9}}\n\ndata: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\ndata: {"usage": null}\n\n',
    b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\ndata: {"usage": {"prompt_t',
])
def test_the_last_usage_is_found_whatever_the_framing(stream: bytes) -> None:
    assert usage_in(stream) == Usage(1, 2, 3)
