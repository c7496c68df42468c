"""What translating a stream costs the gateway, per upstream event, against relaying it untranslated.

    python -m benchmarks.translate_cost [--events N] [--rounds R]

In-process, no sockets: each stream is fed to its translator the way upstream reads arrive, once one
event a read and once in 16 KiB reads, round after round; the round of least CPU time (this
thread's, so that other processes on a shared machine count as little as they can) gives
microseconds an event. The bare relay is what the gateway does to every read of a stream it
relays untranslated: its StreamMeter's feed (usage stripped, as when a plugin needs usage the
client did not ask for) and delivered (the tail kept for the settlement).

- chat -> messages: a vLLM-shaped stream (role chunk, text chunks, a tool call whose arguments come
  in pieces, the finish and usage chunks) through ChatToMessagesStream.
- messages -> chat: an Anthropic stream (text deltas, a tool_use block with input_json_delta pieces,
  message_delta, message_stop) through MessagesToChatStream.
- converse -> messages: a Bedrock ConverseStream in AWS event-stream frames (text deltas, a toolUse block
  with its input in pieces, messageStop, metadata) through ConverseToMessagesStream: CRC checks, frame
  parsing and one JSON decoding and encoding an event.
- converse -> chat: the same stream on through MessagesToChatStream, as chat completions to a Bedrock
  deployment take it (gateway/crossing.py's Chained): the second step's cost is the messages -> chat row's.
"""

from __future__ import annotations

import argparse
import binascii
import json
import struct
import time
from collections.abc import Callable

from gateway.bedrock.from_converse import ConverseToMessagesStream
from gateway.crossing import Chained
from gateway.stream_usage import StreamMeter
from gateway.translate import ChatToMessagesStream, MessagesToChatStream

WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".")
READ_SIZE = 16384


def chat_stream(events: int) -> list[bytes]:
    head = ('"id":"chatcmpl-3c5e1f0a9d7b4e2c8f6a1b0c9d8e7f6a","object":"chat.completion.chunk",'
            '"created":1731002000,"model":"Qwen/Qwen3-8B"')

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f'data: {{{head},"choices":[{json.dumps(choice, separators=(",", ":"))}]}}\n\n'.encode()

    frames = [chunk({"role": "assistant", "content": ""})]
    texts = events - 8
    frames += [chunk({"content": WORDS[i % len(WORDS)]}) for i in range(texts)]
    frames.append(chunk({"tool_calls": [{"id": "chatcmpl-tool-5b1e9c3f2a", "type": "function", "index": 0,
                                         "function": {"name": "get_weather"}}]}))
    for piece in ('{"city": "', "Os", "lo", '", "unit": "', 'celsius"}'):
        frames.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    frames.append(chunk({"content": ""}, "tool_calls"))
    frames.append(f'data: {{{head},"choices":[],"usage":{{"prompt_tokens":212,"total_tokens":'
                  f'{212 + events},"completion_tokens":{events}}}}}\n\n'.encode())
    frames.append(b"data: [DONE]\n\n")
    return frames


def messages_stream(events: int) -> list[bytes]:
    def event(payload: dict[str, object]) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

    frames = [event({"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "output_tokens": 2}}}),
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    texts = events - 13
    frames += [event({"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": WORDS[i % len(WORDS)]}}) for i in range(texts)]
    frames.append(event({"type": "content_block_stop", "index": 0}))
    frames.append(event({"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}}))
    for piece in ("", '{"location":', ' "San', " Francisco", ', CA"', ', "unit"', ': "celsius"}'):
        frames.append(event({"type": "content_block_delta", "index": 1,
                             "delta": {"type": "input_json_delta", "partial_json": piece}}))
    frames.append(event({"type": "content_block_stop", "index": 1}))
    frames.append(event({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                         "usage": {"output_tokens": events}}))
    frames.append(event({"type": "message_stop"}))
    return frames


def converse_stream(events: int) -> list[bytes]:
    def frame(kind: str, payload: dict[str, object]) -> bytes:
        body = json.dumps({**payload, "p": "abcdefgh"}, separators=(",", ":")).encode()
        head = b"".join(bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
                        for name, value in ((":event-type", kind), (":content-type", "application/json"),
                                            (":message-type", "event")))
        prelude = struct.pack(">II", 16 + len(head) + len(body), len(head))
        message = prelude + struct.pack(">I", binascii.crc32(prelude)) + head + body
        return message + struct.pack(">I", binascii.crc32(message))

    frames = [frame("messageStart", {"role": "assistant"})]
    texts = events - 11
    frames += [frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": WORDS[i % len(WORDS)]}})
               for i in range(texts)]
    frames.append(frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(frame("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
        "toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather"}}}))
    for piece in ('{"location":', ' "San', " Francisco", ', CA"', ', "unit"', ': "celsius"}'):
        frames.append(frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}}))
    frames.append(frame("contentBlockStop", {"contentBlockIndex": 1}))
    frames.append(frame("messageStop", {"stopReason": "tool_use"}))
    frames.append(frame("metadata", {"usage": {"inputTokens": 472, "outputTokens": events, "totalTokens": 472 + events},
                                     "metrics": {"latencyMs": 812}}))
    return frames


def reads(frames: list[bytes], one_event_a_read: bool) -> list[bytes]:
    if one_event_a_read:
        return frames
    whole = b"".join(frames)
    return [whole[at:at + READ_SIZE] for at in range(0, len(whole), READ_SIZE)]


def per_event_us(run: Callable[[list[bytes]], object], chunks: list[bytes], events: int, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.thread_time()
        run(chunks)
        timings.append(time.thread_time() - started)
    return min(timings) / events * 1e6


def relay(chunks: list[bytes]) -> None:
    meter = StreamMeter(strip_usage=True, measure=True, keep_output=0)
    for chunk in chunks:
        out = meter.feed(chunk)
        meter.delivered(out)
    meter.delivered(meter.flush())


def to_messages(chunks: list[bytes]) -> None:
    translator = ChatToMessagesStream("claude-local")
    for chunk in chunks:
        translator.feed(chunk)
    translator.flush()
    assert translator.usage is not None


def to_chat(chunks: list[bytes]) -> None:
    translator = MessagesToChatStream("gpt-claude", include_usage=True)
    for chunk in chunks:
        translator.feed(chunk)
    translator.flush()
    assert translator.usage is not None


def converse_to_messages(chunks: list[bytes]) -> None:
    translator = ConverseToMessagesStream("amazon.nova-pro-v1:0")
    for chunk in chunks:
        translator.feed(chunk)
    translator.flush()
    assert translator.usage is not None and translator.failure is None


def converse_to_chat(chunks: list[bytes]) -> None:
    translator = Chained(ConverseToMessagesStream("amazon.nova-pro-v1:0"),
                         MessagesToChatStream("amazon.nova-pro-v1:0", include_usage=True))
    for chunk in chunks:
        translator.feed(chunk)
    translator.flush()
    assert translator.usage is not None and translator.failure is None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400, help="upstream events a stream")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    streams = {"chat -> messages": (chat_stream(args.events), to_messages),
               "messages -> chat": (messages_stream(args.events), to_chat),
               "converse -> messages": (converse_stream(args.events), converse_to_messages),
               "converse -> chat": (converse_stream(args.events), converse_to_chat)}
    print(f"{args.events} upstream events a stream, the least of {args.rounds} rounds, CPU µs an event\n")
    print("| stream | reads | bare relay | translated | translation's own cost |")
    print("|---|---|---|---|---|")
    for name, (frames, translate) in streams.items():
        events = len(frames)
        for label, one in (("one event a read", True), (f"{READ_SIZE // 1024} KiB reads", False)):
            chunks = reads(frames, one)
            translated = per_event_us(translate, chunks, events, args.rounds)
            if name.startswith("converse"):  # binary frames: never relayed untranslated, no bare relay to compare
                print(f"| {name} | {label} | - | {translated:.2f} | {translated:.2f} |")
                continue
            bare = per_event_us(relay, chunks, events, args.rounds)
            print(f"| {name} | {label} | {bare:.2f} | {translated:.2f} | {translated - bare:+.2f} |")


if __name__ == "__main__":
    main()
