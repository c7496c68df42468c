"""An Anthropic upstream's Messages stream, as OpenAI's chat completions API streams: one object per stream.

Each event's JSON is decoded into one lenient Struct; each chunk written is the bytes every chunk
of this answer starts with (made at message_start), its delta, and the bytes it ends with, so the
common chunk (a piece of text) costs one string encoding. A tool_use block becomes a tool call
numbered in the order the calls came; its input_json_delta pieces stream as its arguments. The
finish chunk, the usage chunk (when the client asked for stream_options.include_usage) and
`data: [DONE]` follow message_stop. An `event: error` becomes OpenAI's `data: {"error": ...}` and ends the stream, as
does a stream cut before its message_delta.
"""

from __future__ import annotations

import time

import msgspec

from gateway.anthropic.errors import status_for
from gateway.errors import ApiError
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.translate.errors import openai_kind
from gateway.translate.mapping import AnthropicCount, completion_id, finish_reason
from gateway.translate.sse_reader import DataReader
from gateway.usage import Usage

_DECODER = msgspec.json.Decoder(a.EventIn)
_ENCODER = msgspec.json.Encoder()
_encode = _ENCODER.encode

CHOICE_TAIL = b',"finish_reason":null,"logprobs":null}]}\n\n'
CONTENT = b'{"content":'
REASONING = b'{"reasoning_content":'
ARGUMENTS_HEAD = b'{"tool_calls":[{"index":'
ARGUMENTS_MID = b',"function":{"arguments":'
ARGUMENTS_TAIL = b"}}]}"
DONE = b"data: [DONE]\n\n"


def chunk_bytes(payload: o.Chunk | o.UsageChunk | o.ErrorEnvelope) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


class MessagesToChatStream:
    """feed() each upstream read, flush() at its end; each returns the bytes to send the client."""

    __slots__ = ("model", "include_usage", "reader", "created", "id", "head", "started", "ended", "finished",
                 "stop", "tool_calls", "count", "answer_chars", "failure")

    def __init__(self, requested_model: str, include_usage: bool = False, created: int | None = None) -> None:
        self.model = requested_model
        self.include_usage = include_usage
        self.reader = DataReader()
        self.created = int(time.time()) if created is None else created
        self.id = ""
        self.head = b""  # every chunk's bytes up to its delta
        self.started = False
        self.ended = False
        self.finished = False
        self.stop: str | None = None
        self.tool_calls: dict[int, bytes] = {}  # content block index -> the tool call's arguments chunk head
        self.count = AnthropicCount()
        self.answer_chars = 0  # text, thinking and tool arguments sent: for an estimate when no usage is reported
        self.failure: ApiError | None = None  # why the stream ended with an error chunk, if it did

    @property
    def usage(self) -> Usage | None:
        """The upstream's own usage report, if it sent one."""
        return self.count.usage()

    def feed(self, chunk: bytes) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        for data in self.reader.feed(chunk):
            self._data(data, out)
            if self.ended:
                break
        return out[0] if len(out) == 1 else b"".join(out)

    def flush(self) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        for data in self.reader.flush():
            self._data(data, out)
        if not self.ended:
            if self.finished:
                self._end(out)
            else:
                self._error(out, "the upstream's stream ended before its answer was complete", "api_error")
        return b"".join(out)

    def _data(self, data: bytes, out: list[bytes]) -> None:
        try:
            event = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._error(out, f"the upstream sent an event that is not a Messages stream event: "
                             f"{data[:200].decode('utf-8', 'replace')}", "api_error")
            return
        kind = event.type
        if kind == "content_block_delta":
            self._delta(event, out)
        elif kind == "content_block_start":
            self._block(event, out)
        elif kind == "message_start":
            self._start(event, out)
        elif kind == "message_delta":
            # One or more may come: the last stop reason and the cumulative usage are what the end says.
            self.count.update(event.usage)
            if event.delta is not None and event.delta.stop_reason is not None:
                self.stop = event.delta.stop_reason
            self._start_if_needed(out)
            self.finished = True
        elif kind == "message_stop":
            self._end(out)
        elif kind == "error":
            error = event.error or a.ErrorIn()
            self._error(out, error.message or "the upstream failed", openai_kind(error.type), status_for(error.type))
        # ping, content_block_stop and event types added later carry nothing OpenAI's stream says

    def _start(self, event: a.EventIn, out: list[bytes]) -> None:
        message = event.message
        if message is not None:
            self.count.update(message.usage)
            self.id = completion_id(message.id)
        self._start_if_needed(out)

    def _start_if_needed(self, out: list[bytes]) -> None:
        if self.started:
            return
        self.started = True
        if not self.id:
            self.id = completion_id("")
        self.head = (b'data: {"id":' + _encode(self.id) + b',"object":"chat.completion.chunk","created":'
                     + str(self.created).encode() + b',"model":' + _encode(self.model)
                     + b',"choices":[{"index":0,"delta":')
        out.append(chunk_bytes(self._chunk(o.Delta(role="assistant", content=""), None)))

    def _block(self, event: a.EventIn, out: list[bytes]) -> None:
        block = event.content_block
        if block is None:
            return
        self._start_if_needed(out)
        if block.type == "tool_use":
            number = len(self.tool_calls)
            self.tool_calls[event.index] = self.head + ARGUMENTS_HEAD + str(number).encode() + ARGUMENTS_MID
            call = o.ToolCallDelta(number, block.id or "", "function", o.FunctionDelta(block.name or "", ""))
            out.append(chunk_bytes(self._chunk(o.Delta(tool_calls=[call]), None)))
        elif block.type == "text" and block.text:
            self._piece(CONTENT, block.text, out)
        elif block.type == "thinking" and block.thinking:
            self._piece(REASONING, block.thinking, out)
        elif block.type == "redacted_thinking":
            redacted = o.ThinkingBlockParam("redacted_thinking", data=block.data or "")
            out.append(chunk_bytes(self._chunk(o.Delta(thinking_blocks=[redacted]), None)))

    def _delta(self, event: a.EventIn, out: list[bytes]) -> None:
        delta = event.delta
        if delta is None:
            return
        if not self.started:
            self._start_if_needed(out)
        kind = delta.type
        if kind == "text_delta":
            if delta.text:
                self._piece(CONTENT, delta.text, out)
        elif kind == "input_json_delta":
            head = self.tool_calls.get(event.index)
            if head is not None and delta.partial_json:
                self.answer_chars += len(delta.partial_json)
                out.append(head + _encode(delta.partial_json) + ARGUMENTS_TAIL + CHOICE_TAIL)
        elif kind == "thinking_delta":
            if delta.thinking:
                self._piece(REASONING, delta.thinking, out)
        elif kind == "signature_delta" and delta.signature:
            signed = o.ThinkingBlockParam("thinking", "", delta.signature)
            out.append(chunk_bytes(self._chunk(o.Delta(thinking_blocks=[signed]), None)))

    def _piece(self, field: bytes, text: str, out: list[bytes]) -> None:
        self.answer_chars += len(text)
        out.append(self.head + field + _encode(text) + b"}" + CHOICE_TAIL)

    def _chunk(self, delta: o.Delta, finish: str | None) -> o.Chunk:
        return o.Chunk(id=self.id, created=self.created, model=self.model,
                       choices=[o.ChunkChoice(0, delta, finish)])

    def _end(self, out: list[bytes]) -> None:
        self.ended = True
        if not self.finished:
            self._error(out, "the upstream's stream stopped without saying why", "api_error")
            return
        out.append(chunk_bytes(self._chunk(o.Delta(), finish_reason(self.stop))))
        if self.include_usage:
            out.append(chunk_bytes(o.UsageChunk(id=self.id, created=self.created, model=self.model, choices=[],
                                                usage=self.count.chat_usage())))
        out.append(DONE)

    def _error(self, out: list[bytes], message: str, kind: str, status: int = 500) -> None:
        self.ended = True
        self.failure = ApiError(status, message, kind)
        out.append(chunk_bytes(o.ErrorEnvelope(o.Error(message, kind, None, None))))
