"""Errors on /v1/responses: OpenAI's envelope for a JSON answer, as on every OpenAI route. A stream cut short ends
with the Responses API's own events: `error` (openai-python's ResponseErrorEvent, which the SDK yields) and then
`response.failed` carrying the error in the response (what Codex reads; it ignores `error`):

    event: error
    data: {"type":"error","code":...,"message":...,"param":null,"sequence_number":N}

    event: response.failed
    data: {"type":"response.failed","response":{"id":...,"object":"response","status":"failed",
           "error":{"code":...,"message":...}},"sequence_number":N+1}

N follows the last event the client was sent, read from the stream's tail (0 when none is in it); the response's
id is there when the tail still holds an event that carries the response.
"""

from __future__ import annotations

import msgspec
import orjson

from gateway.errors import ApiError, ErrorShape
from gateway.translate.responses_wire import ErrorEvent, FailedResponse, RelayFailed, ResponseError
from gateway.translate.sse_reader import DataReader

_encode = msgspec.json.Encoder().encode


def last_seen(sent: bytes) -> tuple[int, str | None]:
    """One past the last sequence_number in `sent` (the end of a Responses stream, its first event perhaps cut),
    and the response id the events in it name."""
    number, response_id = -1, None
    for data in DataReader().feed(sent):
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if isinstance(event.get("sequence_number"), int):
            number = event["sequence_number"]
        response = event.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            response_id = response["id"]
    return number + 1, response_id


def code_of(error: ApiError) -> str:
    """The error's own code, else its type: a bare status says less."""
    return error.code if error.code is not None and error.code != str(error.status) else error.type


class ResponsesErrors(ErrorShape):
    __slots__ = ()

    def stream_event(self, error: ApiError, request_id: str | None = None, sent: bytes = b"") -> bytes:
        sequence, response_id = last_seen(sent)
        code = code_of(error)
        said = ErrorEvent(sequence_number=sequence, code=code, message=error.message)
        failed = RelayFailed(sequence_number=sequence + 1,
                             response=FailedResponse(id=response_id, object="response", status="failed",
                                                     error=ResponseError(code, error.message)))
        return b"event: error\ndata: " + _encode(said) + b"\n\nevent: response.failed\ndata: " + _encode(failed) \
            + b"\n\n"


RESPONSES_ERRORS = ResponsesErrors()
