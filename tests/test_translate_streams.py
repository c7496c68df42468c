"""The stream translators (gateway/translate/): each upstream stream of the corpora, read back by the
other API's official SDK, says what the upstream said; any framing and any cut gives the same bytes."""

from __future__ import annotations

import json
import re

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import sse
from gateway.translate import ChatToMessagesStream, MessagesToChatStream
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from tests import stream_corpus, translate_corpus
from tests.translate_corpus import Stream
from tests.translate_oracle import Answer, answer_of_anthropic, answer_of_openai, anthropic_events

CREATED = 1731000000
PLAIN_CHAT = tuple(Stream(shape.name, shape.source, shape.frames) for shape in stream_corpus.SHAPES
                   if shape.endpoint == "chat/completions")
CHAT = translate_corpus.CHAT_STREAMS + PLAIN_CHAT
ANTHROPIC = translate_corpus.ANTHROPIC_STREAMS


def to_messages(frames: tuple[bytes, ...] | list[bytes]) -> tuple[bytes, ChatToMessagesStream]:
    translator = ChatToMessagesStream("claude-via-vllm")
    return b"".join(translator.feed(frame) for frame in frames) + translator.flush(), translator


def to_chat(frames: tuple[bytes, ...] | list[bytes], include_usage: bool = True) -> tuple[bytes, MessagesToChatStream]:
    translator = MessagesToChatStream("gpt-via-claude", include_usage, created=CREATED)
    return b"".join(translator.feed(frame) for frame in frames) + translator.flush(), translator


def openai_answer_of_upstream(stream: Stream) -> Answer:
    """What the openai SDK makes of the upstream's own stream: the answer a translation must keep."""
    return answer_of_openai(b"".join(stream.frames))


@pytest.mark.parametrize("stream", CHAT, ids=lambda s: s.name)
def test_an_openai_stream_reads_the_same_through_the_anthropic_sdk(stream: Stream) -> None:
    expected = openai_answer_of_upstream(stream)
    output, translator = to_messages(stream.frames)
    got = answer_of_anthropic(output)
    if expected.error is not None:
        assert got.error is not None and "died" in got.error
        assert got.text == expected.text  # what arrived before the error was still sent
        return
    assert got.error is None
    assert (got.thinking, got.text, got.tools) == (expected.thinking, expected.text, expected.tools)
    assert got.stop == expected.stop or (stream is translate_corpus.OPENAI_REFUSAL and got.stop == "content_filter")
    assert (got.prompt_tokens, got.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert got.cached_tokens == (expected.cached_tokens or 0)
    usage = translator.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == \
        (expected.prompt_tokens, expected.completion_tokens)
    assert usage.cache_read_tokens == (expected.cached_tokens or 0)


@pytest.mark.parametrize("stream", ANTHROPIC, ids=lambda s: s.name)
def test_an_anthropic_stream_reads_the_same_through_the_openai_sdk(stream: Stream) -> None:
    expected = answer_of_anthropic(b"".join(stream.frames))
    output, translator = to_chat(stream.frames)
    got = answer_of_openai(output)
    if expected.error is not None:
        assert got.error == "service_unavailable: Overloaded"
        return
    assert (got.thinking, got.text, got.tools, got.stop) == \
        (expected.thinking, expected.text, expected.tools, expected.stop)
    assert (got.prompt_tokens, got.completion_tokens, got.cached_tokens) == \
        (expected.prompt_tokens, expected.completion_tokens, expected.cached_tokens)
    usage = translator.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == \
        (expected.prompt_tokens, expected.completion_tokens)


def test_an_anthropic_stream_without_usage_reports_none() -> None:
    frames = [b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","content":[]}}\n\n',
              b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
              b'{"type":"text","text":"abc"}}\n\n',
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"}}\n\n',
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    output, translator = to_chat(frames)
    got = answer_of_openai(output)
    assert (got.text, got.stop, got.prompt_tokens, got.completion_tokens) == ("abc", "length", 0, 0)
    assert translator.usage is None and translator.answer_chars == 3


def test_event_order_and_block_indexes_follow_anthropic() -> None:
    output, _ = to_messages(translate_corpus.VLLM_REASONING_TOOLS.frames)
    events = anthropic_events(output)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    starts = [(payload["index"], payload["content_block"]["type"]) for name, payload in events
              if name == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "text"), (2, "tool_use"), (3, "tool_use")]
    open_blocks: set[int] = set()
    for name, payload in events:  # every delta lands in the one block open; each block closes before the next
        if name == "content_block_start":
            assert not open_blocks
            open_blocks.add(payload["index"])
        elif name == "content_block_delta":
            assert open_blocks == {payload["index"]}
        elif name == "content_block_stop":
            open_blocks.remove(payload["index"])
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"] == {"input_tokens": 212 - 128, "output_tokens": 69, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 128}
    assert events[0][1]["message"]["id"] == "msg_3c5e1f0a9d7b4e2c8f6a1b0c9d8e7f6a"
    assert events[0][1]["message"]["model"] == "claude-via-vllm"


def test_a_stop_string_is_a_stop_sequence() -> None:
    output, _ = to_messages(translate_corpus.VLLM_STOP_STRING.frames)
    name, payload = anthropic_events(output)[-2]
    assert name == "message_delta"
    assert payload["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "three"}


def test_a_refusal_is_a_refusal() -> None:
    output, _ = to_messages(translate_corpus.OPENAI_REFUSAL.frames)
    _, payload = anthropic_events(output)[-2]
    assert payload["delta"]["stop_reason"] == "refusal"
    assert answer_of_anthropic(output).text == "I cannot help with that."


def test_a_tool_call_finished_with_stop_is_still_tool_use() -> None:
    frames = [b'data: {"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":'
              b'"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}]}\n\n',
              b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"]
    message = answer_of_anthropic(to_messages(frames)[0])
    assert message.stop == "tool_calls" and message.tools == [("call_1", "f", {})]


def test_tool_calls_without_an_index_are_told_apart_by_id() -> None:
    def call(fields: str) -> bytes:
        return (b'data: {"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{' + fields.encode()
                + b'}]},"finish_reason":null}]}\n\n')
    frames = [call('"id":"call_a","type":"function","function":{"name":"f","arguments":"{\\"a\\":"}'),
              call('"function":{"arguments":"1}"}'),
              call('"id":"call_b","type":"function","function":{"name":"g","arguments":"{}"}'),
              b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n']
    message = answer_of_anthropic(to_messages(frames)[0])
    assert message.tools == [("call_a", "f", {"a": 1}), ("call_b", "g", {})]


def test_interleaved_tool_calls_each_keep_their_arguments() -> None:
    def call(index: int, arguments: str, name: str | None = None) -> bytes:
        head = f'"id":"call_{index}","type":"function",' if name else ""
        function = {"arguments": arguments, **({"name": name} if name else {})}
        return (b'data: {"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{' + head.encode()
                + f'"index":{index},"function":{json.dumps(function)}'.encode() + b'}]},"finish_reason":null}]}\n\n')
    frames = [call(0, '{"a":', "f"), call(1, '{"b":', "g"), call(0, "1}"), call(1, "2}"),
              b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n']
    message = answer_of_anthropic(to_messages(frames)[0])
    assert message.tools == [("call_0", "f", {"a": 1}), ("call_1", "g", {"b": 2})]


@pytest.mark.parametrize(("frames", "why"), [
    ([b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"cut"},"finish_reason":null}]}\n\n'], "ended before"),
    ([b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n', b"data: {not json\n\n"], "not a chat"),
    ([b'data: {"object":"error","message":"model is loading","type":"ServiceUnavailable","code":503}\n\n'],
     "model is loading"),
])
def test_an_upstream_that_fails_mid_stream_ends_with_an_error_event(frames: list[bytes], why: str) -> None:
    output, translator = to_messages(frames)
    name, payload = anthropic_events(output)[-1]
    assert name == "error" and payload["type"] == "error"
    assert why in payload["error"]["message"]
    assert payload["error"]["type"] == ("overloaded_error" if "loading" in why else "api_error")
    assert translator.feed(b'data: {"choices":[]}\n\n') == b"" and translator.flush() == b""


def test_no_usage_reported_is_none_and_the_answer_is_measured() -> None:
    frames = [b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"four"},"finish_reason":null}]}\n\n',
              b'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"]
    output, translator = to_messages(frames)
    assert translator.usage is None and translator.answer_chars == 4
    assert anthropic_events(output)[-2][1]["usage"]["output_tokens"] == 0


def test_anthropic_stream_cut_before_its_end() -> None:
    frames = translate_corpus.ANTHROPIC_TEXT.frames[:4]
    output, _ = to_chat(frames)
    assert json.loads(output.split(b"\n\n")[-2][6:])["error"]["message"].startswith("the upstream's stream ended")
    finished = translate_corpus.ANTHROPIC_TEXT.frames[:7]  # message_delta came: only message_stop is missing
    assert to_chat(finished)[0].endswith(b"data: [DONE]\n\n")


def test_several_message_deltas_make_one_finish() -> None:
    frames = [*translate_corpus.ANTHROPIC_TEXT.frames[:6],
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":null},'
              b'"usage":{"output_tokens":3}}\n\n',
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},'
              b'"usage":{"output_tokens":9}}\n\n',
              b'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    output, translator = to_chat(frames)
    finishes = [json.loads(part[6:])["choices"][0]["finish_reason"] for part in output.split(b"\n\n")
                if part.startswith(b"data: {") and b'"finish_reason":"' in part]
    assert finishes == ["length"]
    assert translator.usage is not None and translator.usage.completion_tokens == 9


def test_usage_chunk_only_when_asked() -> None:
    with_usage, _ = to_chat(translate_corpus.ANTHROPIC_CACHED.frames, include_usage=True)
    without, translator = to_chat(translate_corpus.ANTHROPIC_CACHED.frames, include_usage=False)
    assert b'"usage"' in with_usage and b'"usage"' not in without
    usage_chunk = json.loads(with_usage.split(b"\n\n")[-3][6:])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] == 49 + 300 + 1200
    assert usage_chunk["usage"]["prompt_tokens_details"] == {"cached_tokens": 1200}
    assert translator.usage is not None and translator.usage.cache_creation_tokens == 300


def test_thinking_signature_reaches_the_client_as_a_thinking_block() -> None:
    output, _ = to_chat(translate_corpus.ANTHROPIC_THINKING.frames)
    signed = [json.loads(part[6:])["choices"][0]["delta"] for part in output.split(b"\n\n")
              if b"thinking_blocks" in part]
    assert signed == [{"thinking_blocks": [{"type": "thinking", "thinking": "",
                                            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds..."}]}]


# The hot paths write bytes by hand: they must be exactly what the typed events encode to.

def test_hand_made_anthropic_deltas_are_the_typed_events() -> None:
    output, _ = to_messages(translate_corpus.VLLM_REASONING_TOOLS.frames)
    decoder = msgspec.json.Decoder(a.StreamEvent)
    for name, payload in anthropic_events(output):
        typed = decoder.decode(json.dumps(payload))
        assert msgspec.json.encode(typed) == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        assert name == payload["type"]
    for line in output.split(b"\n\n")[:-1]:
        data = line.split(b"\ndata: ", 1)[1]
        assert msgspec.json.encode(decoder.decode(data)) == data


def test_hand_made_openai_chunks_are_the_typed_chunks() -> None:
    output, _ = to_chat(translate_corpus.ANTHROPIC_TOOL.frames + translate_corpus.ANTHROPIC_THINKING.frames[1:])
    for line in output.split(b"\n\n")[:-2]:
        data = line[6:]
        kind: type[o.Chunk] | type[o.UsageChunk] = o.UsageChunk if b'"usage"' in data else o.Chunk
        assert msgspec.json.encode(msgspec.json.decode(data, type=kind)) == data


# Any framing, any cut: the same output as the stream read whole.

def events_of(stream: Stream) -> list[tuple[str | None, str]]:
    """(event name, data) of each event of the stream, read by the gateway's SSE grammar."""
    found = []
    for event in sse.events(b"".join(stream.frames)):
        data = sse.data_of(event)
        if data is None:
            continue
        name = re.search(rb"^event: ?([^\r\n]*)", event, re.MULTILINE)
        found.append((name[1].decode() if name else None, data.decode()))
    return found


@st.composite
def reframed(draw: st.DrawFn, stream: Stream) -> list[bytes]:
    line_end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    rendered: list[str] = []
    for name, data in events_of(stream):
        lines: list[str] = []
        if draw(st.booleans()):
            lines.append(": keep-alive")
        if name is not None and draw(st.booleans()):
            lines.append(f"event: {name}")
        elif name is None and draw(st.booleans()):
            lines.append("event: chunk")
        if draw(st.booleans()):
            lines.append("id: 7")
        if data != "[DONE]" and draw(st.booleans()):
            pretty = json.dumps(json.loads(data), indent=draw(st.sampled_from([None, 1])),
                                separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])), ensure_ascii=False)
            lines.extend(("data: " if draw(st.booleans()) else "data:") + line for line in pretty.split("\n"))
        else:
            lines.extend(f"data: {line}" for line in data.split("\n"))
        rendered.append(line_end.join(lines) + line_end + line_end)
    whole = "".join(rendered).encode()
    cuts = sorted(set(draw(st.lists(st.integers(0, len(whole)), max_size=24))))
    return [whole[start:end] for start, end in zip([0, *cuts], [*cuts, len(whole)]) if end > start]


@pytest.mark.parametrize("stream", CHAT, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_openai_stream_framing_and_cuts_do_not_change_the_output(stream: Stream, data: st.DataObject) -> None:
    expected, _ = to_messages(stream.frames)
    got, _ = to_messages(data.draw(reframed(stream)))
    assert got == expected


@pytest.mark.parametrize("stream", ANTHROPIC, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_anthropic_stream_framing_and_cuts_do_not_change_the_output(stream: Stream, data: st.DataObject) -> None:
    expected, _ = to_chat(stream.frames)
    got, _ = to_chat(data.draw(reframed(stream)))
    assert got == expected


# Round trips: through the other API and back, the client's SDK sees the same answer.

@pytest.mark.parametrize("stream", [s for s in CHAT if s is not translate_corpus.VLLM_ERROR], ids=lambda s: s.name)
def test_openai_stream_through_anthropic_and_back(stream: Stream) -> None:
    anthropic, _ = to_messages(stream.frames)
    back, _ = to_chat([anthropic])
    expected = openai_answer_of_upstream(stream)
    got = answer_of_openai(back)
    assert (got.thinking, got.text, got.tools) == (expected.thinking, expected.text, expected.tools)
    assert (got.prompt_tokens, got.completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert got.stop == expected.stop or (stream is translate_corpus.OPENAI_REFUSAL and got.stop == "content_filter")


@pytest.mark.parametrize("stream", ANTHROPIC, ids=lambda s: s.name)
def test_anthropic_stream_through_openai_and_back(stream: Stream) -> None:
    chat, _ = to_chat(stream.frames)
    back, _ = to_messages([chat])
    expected = answer_of_anthropic(b"".join(stream.frames))
    got = answer_of_anthropic(back)
    if expected.error is not None:
        assert got.error is not None and "Overloaded" in got.error
        return
    assert (got.thinking, got.text, got.tools, got.stop) == \
        (expected.thinking, expected.text, expected.tools, expected.stop)
