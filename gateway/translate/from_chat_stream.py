"""An OpenAI-compatible upstream's chat stream, as the Messages API streams: one object per stream.

Each chunk's JSON is decoded into a Struct; the events written for it are bytes put together from
parts made once per content block, so the common event (a piece of text) costs one string
encoding. Anthropic's stream ends with message_delta (stop reason, usage) and message_stop; an
OpenAI stream sends its usage after its finish_reason, so both are written when `[DONE]` or the
end of the stream says nothing more is coming. An upstream error in the stream, or a stream that
ends before its finish_reason, ends the translated stream with an `event: error`.
"""

from __future__ import annotations

import msgspec

from gateway.anthropic.errors import status_for
from gateway.errors import ApiError
from gateway.translate import anthropic_wire as a
from gateway.translate import openai_wire as o
from gateway.translate.errors import anthropic_kind
from gateway.translate.mapping import anthropic_usage, message_id, stop_reason, tool_use_id, usage_of_chat
from gateway.translate.sse_reader import DataReader
from gateway.usage import Usage

_DECODER = msgspec.json.Decoder(o.ChunkIn)
_ENCODER = msgspec.json.Encoder()
_encode = _ENCODER.encode

NONE, TEXT, THINKING, TOOL = 0, 1, 2, 3
DONE = b"[DONE]"
DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
DELTA_KIND = {TEXT: b',"delta":{"type":"text_delta","text":',
              THINKING: b',"delta":{"type":"thinking_delta","thinking":',
              TOOL: b',"delta":{"type":"input_json_delta","partial_json":'}
DELTA_TAIL = b"}}\n\n"
EMPTY_OBJECT: dict[str, object] = {}


def event(name: bytes, payload: a.StreamEvent) -> bytes:
    return b"event: " + name + b"\ndata: " + _encode(payload) + b"\n\n"


class ChatToMessagesStream:
    """feed() each upstream read, flush() at its end; each returns the bytes to send the client."""

    __slots__ = ("model", "reader", "started", "ended", "next_index", "open", "open_index", "delta_prefix",
                 "tools", "tool_prefixes", "tool_ids", "last_tool", "finish", "matched", "refused", "reported",
                 "answer_chars", "failure")

    def __init__(self, requested_model: str) -> None:
        self.model = requested_model
        self.reader = DataReader()
        self.started = False
        self.ended = False
        self.next_index = 0
        self.open = NONE
        self.open_index = -1
        self.delta_prefix = b""
        self.tools: dict[int, int] = {}  # the upstream's tool-call index -> its content block's index
        self.tool_prefixes: dict[int, bytes] = {}
        self.tool_ids: dict[str, int] = {}  # the calls that came without an index, by id
        self.last_tool = 0
        self.finish: str | None = None
        self.matched: int | str | None = None
        self.refused = False
        self.reported: o.ChatUsageIn | None = None
        self.answer_chars = 0  # text, thinking and tool arguments sent: for an estimate when no usage is reported
        self.failure: ApiError | None = None  # why the stream ended with an error event, if it did

    @property
    def usage(self) -> Usage | None:
        """The upstream's own usage report, if it sent one."""
        return usage_of_chat(self.reported) if self.reported is not None else None

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
            self._end(out)
        return b"".join(out)

    def _data(self, data: bytes, out: list[bytes]) -> None:
        if data == DONE:
            self._end(out)
            return
        try:
            chunk = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._error(out, "api_error", f"the upstream sent an event that is not a chat completion chunk: "
                                          f"{data[:200].decode('utf-8', 'replace')}")
            return
        if chunk.error is not None or chunk.object == "error":
            error = chunk.error or o.ErrorIn(chunk.message or "", chunk.type, None, chunk.code)
            self._error(out, anthropic_kind(error.type, error.code), error.message or "the upstream failed")
            return
        if not self.started:
            if not chunk.choices and chunk.usage is None:
                return  # Azure's prompt_filter_results come first, with no id: the message starts with the answer
            self._start(chunk, out)
        if chunk.usage is not None:
            self.reported = chunk.usage
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue  # one answer is asked for; a server that sends more is not followed
            delta = choice.delta
            if delta is not None:
                self._delta(delta, out)
            if choice.finish_reason is not None:
                self._close(out)
                self.finish = choice.finish_reason
                self.matched = choice.stop_reason

    def _start(self, chunk: o.ChunkIn, out: list[bytes]) -> None:
        self.started = True
        start = a.Message(message_id(chunk.id), "assistant", self.model, [], None, None,
                          anthropic_usage(chunk.usage))
        out.append(event(b"message_start", a.MessageStart(start)))

    def _delta(self, delta: o.DeltaIn, out: list[bytes]) -> None:
        reasoning = delta.reasoning_content or delta.reasoning
        if reasoning:
            if self.open != THINKING:
                self._open(THINKING, a.ThinkingOut(""), out)
            self._piece(reasoning, out)
        text = delta.content
        if text:
            if self.open != TEXT:
                self._open(TEXT, a.TextOut(""), out)
            self._piece(text, out)
        if delta.refusal:
            self.refused = True
            if self.open != TEXT:
                self._open(TEXT, a.TextOut(""), out)
            self._piece(delta.refusal, out)
        if delta.tool_calls:
            for call in delta.tool_calls:
                self._tool_call(self._key(call), call, out)

    def _key(self, call: o.ToolCallIn) -> int:
        """Which call a piece belongs to: its index; without one (some servers leave it out), the call its
        id names, a new call for a new id, else the last call."""
        if call.index is not None:
            return call.index
        if call.id is not None:
            return self.tool_ids.setdefault(call.id, -1 - len(self.tool_ids))  # below every index: no clash
        return self.last_tool

    def _tool_call(self, key: int, call: o.ToolCallIn, out: list[bytes]) -> None:
        self.last_tool = key
        function = call.function
        block = self.tools.get(key)
        if block is None:
            name = function.name if function is not None and function.name else ""
            block = self._open(TOOL, a.ToolUseOut(call.id or tool_use_id(), name, EMPTY_OBJECT), out)
            self.tools[key] = block
            self.tool_prefixes[key] = self.delta_prefix
        arguments = function.arguments if function is not None else None
        if arguments:
            # A server that interleaves its calls' arguments has them sent to each call's own block.
            prefix = self.delta_prefix if block == self.open_index else self.tool_prefixes[key]
            self.answer_chars += len(arguments)
            out.append(prefix + _encode(arguments) + DELTA_TAIL)

    def _piece(self, text: str, out: list[bytes]) -> None:
        self.answer_chars += len(text)
        out.append(self.delta_prefix + _encode(text) + DELTA_TAIL)

    def _open(self, kind: int, block: a.BlockOut, out: list[bytes]) -> int:
        self._close(out)
        index = self.next_index
        self.next_index += 1
        self.open = kind
        self.open_index = index
        self.delta_prefix = DELTA_HEAD + str(index).encode() + DELTA_KIND[kind]
        out.append(event(b"content_block_start", a.ContentBlockStart(index, block)))
        return index

    def _close(self, out: list[bytes]) -> None:
        if self.open != NONE:
            out.append(event(b"content_block_stop", a.ContentBlockStop(self.open_index)))
            self.open = NONE

    def _end(self, out: list[bytes]) -> None:
        """Nothing more is coming: the message's end, or an error if it never finished."""
        self.ended = True
        if self.finish is None:
            self._error(out, "api_error", "the upstream's stream ended before its answer was complete")
            return
        self._close(out)
        stop, sequence = stop_reason(self.finish, self.matched, bool(self.tools), self.refused)
        out.append(event(b"message_delta", a.MessageDelta(a.StopDelta(stop, sequence),
                                                          anthropic_usage(self.reported))))
        out.append(event(b"message_stop", a.MessageStop()))

    def _error(self, out: list[bytes], kind: str, message: str) -> None:
        self.ended = True
        self.failure = ApiError(status_for(kind), message, kind)
        out.append(event(b"error", a.ErrorEvent(a.ErrorBody(kind, message))))

