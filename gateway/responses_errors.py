"""Errors on /v1/responses: OpenAI's envelope for a JSON answer, as on every OpenAI route, and in a stream the
Responses API's own `error` event (openai-python's ResponseErrorEvent), which the SDK raises and Codex reports:

    event: error
    data: {"type":"error","code":...,"message":...,"param":null,"sequence_number":N}

N follows the last event the client was sent, read from the stream's tail; 0 when none is known.
"""

from __future__ import annotations

import msgspec
import orjson

from gateway.errors import ApiError, ErrorShape
from gateway.translate.responses_wire import ErrorEvent
from gateway.translate.sse_reader import DataReader

_encode = msgspec.json.Encoder().encode


def next_sequence(sent: bytes) -> int:
    """One past the last sequence_number in `sent`, the end of a Responses stream (its first event may be cut)."""
    found = -1
    for data in DataReader().feed(sent):
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        number = event.get("sequence_number") if isinstance(event, dict) else None
        if isinstance(number, int):
            found = number
    return found + 1


def code_of(error: ApiError) -> str:
    """The error's own code, else its type: a bare status says less."""
    return error.code if error.code is not None and error.code != str(error.status) else error.type


class ResponsesErrors(ErrorShape):
    __slots__ = ()

    def stream_event(self, error: ApiError, request_id: str | None = None, sent: bytes = b"") -> bytes:
        event = ErrorEvent(sequence_number=next_sequence(sent), code=code_of(error), message=error.message)
        return b"event: error\ndata: " + _encode(event) + b"\n\n"


RESPONSES_ERRORS = ResponsesErrors()
