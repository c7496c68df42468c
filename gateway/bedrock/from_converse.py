"""Converse's answer and ConverseStream's events, as Anthropic's Messages API answers and streams.

The two describe an answer alike, so Converse is read into the Messages API's shape: on a /v1/messages
route that is the caller's answer, and on chat completions the existing translators
(gateway/translate/from_messages_response.py, from_messages_stream.py) take it on to OpenAI's, as they
do for an `anthropic/` deployment. The cost of the extra step on a stream is one small JSON encoding
and decoding per event; the gain is one tested way from Claude's shape of answer to OpenAI's.

A stream maps event for event: messageStart is message_start; contentBlockStart (a tool call) and the
first delta of a text or reasoning block are content_block_start; text, toolUse input and
reasoningContent (text, signature) deltas are their Messages deltas; contentBlockStop is
content_block_stop. messageStop's stopReason waits for the metadata event, whose usage (inputTokens,
outputTokens, cacheReadInputTokens, cacheWriteInputTokens) goes out with it as message_delta, then
message_stop. An exception frame is an `error` event and ends the stream.
"""

from __future__ import annotations

import secrets

import msgspec

from gateway.bedrock import converse_wire as c
from gateway.bedrock.errors import exception_error
from gateway.bedrock.eventstream import FrameError, FrameReader
from gateway.errors import ApiError
from gateway.translate import anthropic_wire as a
from gateway.translate.errors import anthropic_type
from gateway.translate.from_chat_response import Translated
from gateway.translate.mapping import AnthropicCount
from gateway.usage import Usage

_RESPONSE = msgspec.json.Decoder(c.ConverseResponse)
_EVENT = msgspec.json.Decoder(c.StreamEvent)
_encode = msgspec.json.Encoder().encode
# Converse's stop reasons that the Messages API names otherwise.
STOP_REASONS = {"guardrail_intervened": "refusal", "content_filtered": "refusal",
                "malformed_model_output": "end_turn", "malformed_tool_use": "end_turn"}


def message_id() -> str:
    return "msg_bdrk_" + secrets.token_hex(12)


def anthropic_usage(usage: c.TokenUsage | None) -> a.Usage:
    """Converse's inputTokens, as Anthropic's input_tokens, leave out the tokens read from or written to the
    cache, which it counts apart."""
    if usage is None:
        return a.Usage(0, 0)
    return a.Usage(usage.inputTokens, usage.outputTokens, usage.cacheWriteInputTokens or 0,
                   usage.cacheReadInputTokens or 0)


def stop_reason(given: str | None) -> str:
    given = given or "end_turn"
    return STOP_REASONS.get(given, given)


def converse_to_message(raw: bytes, model: str) -> Translated:
    """Converse's JSON answer as a Messages API message, and its usage; an unreadable answer is a 502."""
    try:
        answer = _RESPONSE.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(502, f"the upstream's answer is not a Converse answer ({exc})", "api_error") from None
    blocks: list[a.BlockOut] = []
    for block in answer.output.message.content if answer.output.message else []:
        if block.text is not None:
            blocks.append(a.TextOut(block.text))
        elif block.toolUse is not None:
            use = block.toolUse
            blocks.append(a.ToolUseOut(use.toolUseId, use.name, use.input if use.input is not None else {}))
        elif block.reasoningContent is not None and block.reasoningContent.reasoningText is not None:
            text = block.reasoningContent.reasoningText
            blocks.append(a.ThinkingOut(text.text, text.signature or ""))
    usage = anthropic_usage(answer.usage)
    message = a.Message(message_id(), "assistant", model, blocks, stop_reason(answer.stopReason), None, usage)
    count = AnthropicCount()
    if answer.usage is not None:
        count.update(a.UsageIn(usage.input_tokens, usage.output_tokens, usage.cache_creation_input_tokens,
                               usage.cache_read_input_tokens))
    return Translated(_encode(message), count.usage())


def sse(event: a.StreamEvent, kind: bytes) -> bytes:
    return b"event: " + kind + b"\ndata: " + _encode(event) + b"\n\n"


class ConverseToMessagesStream:
    """feed() each upstream read of a ConverseStream answer, flush() at its end; each returns Messages API
    SSE events. `usage`, `answer_chars` and `failure` as the other stream translators have them."""

    __slots__ = ("model", "reader", "count", "answer_chars", "failure", "open", "stop", "started", "ended")

    def __init__(self, model: str) -> None:
        self.model = model
        self.reader = FrameReader()
        self.count = AnthropicCount()
        self.answer_chars = 0
        self.failure: ApiError | None = None
        self.open: dict[int, str] = {}  # content block index -> the kind of block started there
        self.stop: str | None = None
        self.started = False
        self.ended = False

    @property
    def usage(self) -> Usage | None:
        return self.count.usage()

    def feed(self, chunk: bytes) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        try:
            for frame in self.reader.feed(chunk):
                if frame.exception:
                    error = exception_error(frame.kind, frame.payload)
                    self._fail(out, error)
                else:
                    self._event(frame.kind, frame.payload, out)
                if self.ended:
                    break
        except FrameError as exc:
            self._fail(out, ApiError(502, f"the upstream's event stream is broken: {exc}", "api_error"))
        return b"".join(out)

    def flush(self) -> bytes:
        if self.ended:
            return b""
        out: list[bytes] = []
        self._fail(out, ApiError(502, "the upstream's stream ended before its answer was complete", "api_error"))
        return b"".join(out)

    def _event(self, kind: str, payload: bytes, out: list[bytes]) -> None:
        try:
            event = _EVENT.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self._fail(out, ApiError(502, f"the upstream sent a {kind} event that is not ConverseStream's: "
                                          f"{payload[:200].decode('utf-8', 'replace')}", "api_error"))
            return
        if kind == "contentBlockDelta":
            self._delta(event, out)
        elif kind == "contentBlockStart":
            self._start_if_needed(out)
            start = event.start
            if start is not None and start.toolUse is not None:
                self._open(event.contentBlockIndex, a.ToolUseOut(start.toolUse.toolUseId, start.toolUse.name, {}),
                           out)
        elif kind == "contentBlockStop":
            if self.open.pop(event.contentBlockIndex, None) is not None:
                out.append(sse(a.ContentBlockStop(event.contentBlockIndex), b"content_block_stop"))
        elif kind == "messageStart":
            self._start_if_needed(out)
        elif kind == "messageStop":
            self.stop = stop_reason(event.stopReason)
        elif kind == "metadata":
            self._finish(event.usage, out)
        # events added later carry nothing the Messages stream says

    def _start_if_needed(self, out: list[bytes]) -> None:
        if not self.started:
            self.started = True
            message = a.Message(message_id(), "assistant", self.model, [], None, None, a.Usage(0, 0))
            out.append(sse(a.MessageStart(message), b"message_start"))

    def _open(self, index: int, block: a.BlockOut, out: list[bytes]) -> None:
        self.open[index] = type(block).__name__
        out.append(sse(a.ContentBlockStart(index, block), b"content_block_start"))

    def _delta(self, event: c.StreamEvent, out: list[bytes]) -> None:
        delta = event.delta
        if delta is None:
            return
        self._start_if_needed(out)
        index = event.contentBlockIndex
        piece: a.TextDelta | a.ThinkingDelta | a.InputJsonDelta | a.SignatureDelta | None = None
        if delta.text is not None:
            if index not in self.open:
                self._open(index, a.TextOut(""), out)
            self.answer_chars += len(delta.text)
            piece = a.TextDelta(delta.text)
        elif delta.toolUse is not None:
            self.answer_chars += len(delta.toolUse.input)
            piece = a.InputJsonDelta(delta.toolUse.input)
        elif delta.reasoningContent is not None:
            reasoning = delta.reasoningContent
            if index not in self.open:
                self._open(index, a.ThinkingOut(""), out)
            if reasoning.text is not None:
                self.answer_chars += len(reasoning.text)
                piece = a.ThinkingDelta(reasoning.text)
            elif reasoning.signature is not None:
                piece = a.SignatureDelta(reasoning.signature)
        if piece is not None:
            out.append(sse(a.ContentBlockDelta(index, piece), b"content_block_delta"))

    def _finish(self, usage: c.TokenUsage | None, out: list[bytes]) -> None:
        self._start_if_needed(out)
        for index in list(self.open):
            out.append(sse(a.ContentBlockStop(index), b"content_block_stop"))
        self.open.clear()
        counted = anthropic_usage(usage)
        if usage is not None:
            self.count.update(a.UsageIn(counted.input_tokens, counted.output_tokens,
                                        counted.cache_creation_input_tokens, counted.cache_read_input_tokens))
        out.append(sse(a.MessageDelta(a.StopDelta(self.stop or "end_turn", None), counted), b"message_delta"))
        out.append(sse(a.MessageStop(), b"message_stop"))
        self.ended = True

    def _fail(self, out: list[bytes], error: ApiError) -> None:
        self.ended = True
        self.failure = error
        out.append(sse(a.ErrorEvent(a.ErrorBody(anthropic_type(error.status), error.message)), b"error"))
