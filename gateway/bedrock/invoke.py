"""Claude on Bedrock's InvokeModel: Anthropic's own Messages body in, its own Message or events out.

The body is the client's Messages request less `model` (the model is in the path) and `stream` (the path
says it: `/invoke` or `/invoke-with-response-stream`), with `anthropic_version: "bedrock-2023-05-31"` and
the client's anthropic-beta header as the body's `anthropic_beta` list, as Bedrock takes them. The JSON
answer is a Messages API message as Anthropic writes it. The stream is event-stream frames whose `chunk`
events carry one Messages API event each, base64 in `bytes`; each goes to the client as the SSE event it
is, its JSON untouched (the last carries Bedrock's `amazon-bedrock-invocationMetrics`, which Anthropic's
SDK skips as an unknown member).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec
import orjson
from multidict import CIMultiDictProxy

from gateway.anthropic.usage import from_body
from gateway.bedrock.errors import exception_error
from gateway.bedrock.eventstream import FrameError, FrameReader
from gateway.errors import ApiError
from gateway.translate import anthropic_wire as a
from gateway.translate.errors import anthropic_type
from gateway.translate.from_chat_response import Translated
from gateway.translate.mapping import AnthropicCount
from gateway.usage import Usage

BEDROCK_VERSION = "bedrock-2023-05-31"
NOT_SENT = ("model", "stream")


class Chunk(msgspec.Struct):
    bytes: str = ""


_CHUNK = msgspec.json.Decoder(Chunk)
_EVENT = msgspec.json.Decoder(a.EventIn)


def invoke_body(body: dict[str, Any], headers: CIMultiDictProxy[str] | None) -> bytes:
    sent = {name: value for name, value in body.items() if name not in NOT_SENT}
    sent["anthropic_version"] = BEDROCK_VERSION
    beta = headers.get("anthropic-beta") if headers is not None else None
    if beta:
        sent["anthropic_beta"] = [name.strip() for name in beta.split(",") if name.strip()]
    return orjson.dumps(sent)


def invoke_answer(raw: bytes) -> Translated:
    """InvokeModel's answer is the Message itself: the caller's answer as it came, with its usage."""
    return Translated(raw, from_body(raw))


class InvokeToMessagesStream:
    """feed() each upstream read of InvokeModelWithResponseStream, flush() at its end; each returns
    Messages API SSE events."""

    __slots__ = ("reader", "count", "answer_chars", "failure", "ended", "finished")

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.count = AnthropicCount()
        self.answer_chars = 0
        self.failure: ApiError | None = None
        self.ended = False
        self.finished = False

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
                    self._fail(out, exception_error(frame.kind, frame.payload))
                elif frame.kind == "chunk":
                    self._chunk(frame.payload, out)
                if self.ended:
                    break
        except FrameError as exc:
            self._fail(out, ApiError(502, f"the upstream's event stream is broken: {exc}", "api_error"))
        return b"".join(out)

    def flush(self) -> bytes:
        if self.ended or self.finished:
            return b""
        out: list[bytes] = []
        self._fail(out, ApiError(502, "the upstream's stream ended before its answer was complete", "api_error"))
        return b"".join(out)

    def _chunk(self, payload: bytes, out: list[bytes]) -> None:
        try:
            data = base64.b64decode(_CHUNK.decode(payload).bytes, validate=True)
            event = _EVENT.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, binascii.Error):
            self._fail(out, ApiError(502, "the upstream sent a chunk that is not a Messages API event: "
                                          f"{payload[:200].decode('utf-8', 'replace')}", "api_error"))
            return
        kind = event.type
        if kind == "message_start" and event.message is not None:
            self.count.update(event.message.usage)
        elif kind == "message_delta":
            self.count.update(event.usage)
        elif kind == "content_block_delta" and event.delta is not None:
            delta = event.delta
            self.answer_chars += len(delta.text or delta.partial_json or delta.thinking or "")
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            error = event.error or a.ErrorIn()
            self.failure = ApiError(500, error.message, "api_error")
            self.ended = True
        out.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _fail(self, out: list[bytes], error: ApiError) -> None:
        self.ended = True
        self.failure = error
        out.append(b"event: error\ndata: "
                   + msgspec.json.encode(a.ErrorEvent(a.ErrorBody(anthropic_type(error.status), error.message)))
                   + b"\n\n")
