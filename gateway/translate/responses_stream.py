"""A chat-only deployment's chat stream, as the Responses API streams: one object per stream.

The response is created and in progress at the first chunk; text opens a message item (its content part,
then `response.output_text.delta` per piece), each tool call a function_call item
(`response.function_call_arguments.delta` per piece of its arguments); a call of a custom tool is a
custom_tool_call item whose raw input, read from the whole arguments at the end, comes as one
`response.custom_tool_call_input.delta`. When `[DONE]` or the stream's end
says nothing more is coming, every open item is closed and `response.completed` (or `response.incomplete`,
for an answer cut at its token limit) carries the whole response and its usage: the chat stream's last
chunk, asked for with stream_options.include_usage. Every event has its sequence number, from 0. An
upstream error in the stream, or a stream that ends before its finish_reason, ends it with an `error` event and
`response.failed` (the response with its error: Codex reads that one, the SDK either).
"""

from __future__ import annotations

import msgspec

from gateway.errors import ApiError
from gateway.translate import openai_wire as o
from gateway.translate import responses_wire as r
from gateway.translate.responses_to_chat import (
    Shell,
    custom_input,
    incomplete_reason,
    new_id,
    responses_usage,
    settled_usage,
)
from gateway.translate.sse_reader import DataReader
from gateway.usage import Usage

_DECODER = msgspec.json.Decoder(o.ChunkIn)
_encode = msgspec.json.Encoder().encode
DONE = b"[DONE]"
# Each event's first bytes, `event: <type>` then the start of its data line.
NAMES = {kind: b"event: %b\ndata: " % str(kind.__struct_config__.tag).encode()
         for kind in (r.Created, r.InProgress, r.Completed, r.Incomplete, r.Failed, r.ItemAdded, r.ItemDone,
                      r.PartAdded, r.PartDone, r.TextDelta, r.TextDone, r.ArgumentsDelta, r.ArgumentsDone,
                      r.CustomInputDelta, r.CustomInputDone, r.ErrorEvent)}


class ToolState:
    __slots__ = ("index", "item", "arguments")

    def __init__(self, index: int, item: r.FunctionCallOut | r.CustomToolCallOut) -> None:
        self.index = index
        self.item = item
        self.arguments: list[str] = []


class ChatToResponsesStream:
    """feed() each upstream read, flush() at its end; each returns the bytes to send the client."""

    __slots__ = ("shell", "reader", "sequence", "started", "ended", "output", "message", "message_index",
                 "text", "tools", "finish", "reported", "answer_chars", "failure")

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.reader = DataReader()
        self.sequence = 0
        self.started = False
        self.ended = False
        self.output: list[r.OutputItem] = []  # items in order, each put in place when it is added
        self.message: r.MessageOut | None = None  # the message item open now
        self.message_index = -1
        self.text: list[str] = []
        self.tools: dict[int, ToolState] = {}  # the upstream's tool-call index -> its item
        self.finish: str | None = None
        self.reported: o.ChatUsageIn | None = None
        self.answer_chars = 0
        self.failure: ApiError | None = None

    @property
    def usage(self) -> Usage | None:
        return settled_usage(responses_usage(self.reported))

    def feed(self, chunk: bytes) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        for data in self.reader.feed(chunk):
            self._data(data, out)
            if self.ended:
                break
        return b"".join(out)

    def flush(self) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        for data in self.reader.flush():
            self._data(data, out)
        if not self.ended:
            self._end(out)
        return b"".join(out)

    def _event(self, out: list[bytes], make: type[r.StreamEvent], **fields: object) -> None:
        event = make(sequence_number=self.sequence, **fields)  # type: ignore[arg-type]
        self.sequence += 1
        out.append(NAMES[make] + _encode(event) + b"\n\n")

    def _data(self, data: bytes, out: list[bytes]) -> None:
        if data == DONE:
            self._end(out)
            return
        try:
            chunk = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._error(out, "the upstream sent an event that is not a chat completion chunk: "
                             + data[:200].decode("utf-8", "replace"))
            return
        if chunk.error is not None or chunk.object == "error":
            error = chunk.error or o.ErrorIn(chunk.message or "", chunk.type, None, chunk.code)
            self._error(out, error.message or "the upstream failed", str(error.code) if error.code else None)
            return
        if not self.started:
            self.started = True
            self._event(out, r.Created, response=self.shell.response("in_progress", [], None))
            self._event(out, r.InProgress, response=self.shell.response("in_progress", [], None))
        if chunk.usage is not None:
            self.reported = chunk.usage
        for choice in chunk.choices or ():
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta is not None:
                if delta.content:
                    self._text(delta.content, out)
                if delta.refusal:
                    self._text(delta.refusal, out)
                if delta.reasoning_content or delta.reasoning:
                    self.answer_chars += len(delta.reasoning_content or delta.reasoning or "")
                for call in delta.tool_calls or ():
                    self._tool_call(call, out)
            if choice.finish_reason is not None:
                self.finish = choice.finish_reason

    def _text(self, text: str, out: list[bytes]) -> None:
        self.answer_chars += len(text)
        message = self.message
        if message is None:
            message = self.message = r.MessageOut(id=new_id("msg"), status="in_progress", content=[])
            self.message_index = len(self.output)
            self.output.append(message)
            self._event(out, r.ItemAdded, output_index=self.message_index, item=message)
            self._event(out, r.PartAdded, item_id=message.id, output_index=self.message_index, content_index=0,
                        part=r.OutputText(""))
        self.text.append(text)
        self._event(out, r.TextDelta, item_id=message.id, output_index=self.message_index, content_index=0,
                    delta=text)

    def _close_message(self, out: list[bytes]) -> None:
        message = self.message
        if message is None:
            return
        self.message = None
        text = "".join(self.text)
        self.text = []
        part = r.OutputText(text)
        self._event(out, r.TextDone, item_id=message.id, output_index=self.message_index, content_index=0, text=text)
        self._event(out, r.PartDone, item_id=message.id, output_index=self.message_index, content_index=0, part=part)
        message.content = [part]
        message.status = "completed"
        self._event(out, r.ItemDone, output_index=self.message_index, item=message)

    def _tool_call(self, call: o.ToolCallIn, out: list[bytes]) -> None:
        key = call.index if call.index is not None else len(self.tools) - (0 if call.id else 1)
        function = call.function
        state = self.tools.get(key)
        if state is None:
            self._close_message(out)  # a message item ends before the calls that follow it start
            item = self.shell.call(call.id or new_id("call"), function.name or "" if function is not None else "",
                                   "", "in_progress")
            state = self.tools[key] = ToolState(len(self.output), item)
            self.output.append(item)
            self._event(out, r.ItemAdded, output_index=state.index, item=item)
        arguments = function.arguments if function is not None else None
        if arguments:
            self.answer_chars += len(arguments)
            state.arguments.append(arguments)
            if isinstance(state.item, r.FunctionCallOut):  # a custom tool's input is read whole at the end
                self._event(out, r.ArgumentsDelta, item_id=state.item.id, output_index=state.index,
                            delta=arguments)

    def _end(self, out: list[bytes]) -> None:
        self.ended = True
        if self.finish is None:
            self._error(out, "the upstream's stream ended before its answer was complete")
            return
        self._close_message(out)
        for state in self.tools.values():
            item = state.item
            item.status = "completed"
            if isinstance(item, r.FunctionCallOut):
                item.arguments = "".join(state.arguments)
                self._event(out, r.ArgumentsDone, item_id=item.id, output_index=state.index, name=item.name,
                            arguments=item.arguments)
            else:
                item.input = custom_input("".join(state.arguments))
                self._event(out, r.CustomInputDelta, item_id=item.id, output_index=state.index, delta=item.input)
                self._event(out, r.CustomInputDone, item_id=item.id, output_index=state.index, input=item.input)
            self._event(out, r.ItemDone, output_index=state.index, item=item)
        reason = incomplete_reason(self.finish)
        response = self.shell.response("incomplete" if reason else "completed", self.output,
                                       responses_usage(self.reported), reason)
        self._event(out, r.Incomplete if reason else r.Completed, response=response)

    def _error(self, out: list[bytes], message: str, code: str | None = None) -> None:
        self.ended = True
        self.failure = ApiError(502, message, "api_error")
        code = code or "api_error"
        self._event(out, r.ErrorEvent, code=code, message=message)
        failed = self.shell.response("failed", self.output, responses_usage(self.reported))
        failed.error = r.ResponseError(code, message)
        self._event(out, r.Failed, response=failed)
