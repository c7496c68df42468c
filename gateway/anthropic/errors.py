"""Errors in Anthropic's shape, for the routes that speak its Messages API.

`{"type": "error", "error": {"type", "message"}, "request_id"}`, the type named by the status as
Anthropic's API reference lists them; in a stream, an `event: error` carrying the same object. An
error an Anthropic upstream wrote in that shape reaches the client as it was written.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.errors import ApiError, ErrorShape, upstream_error

TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
         404: "not_found_error", 408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
         500: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}


def type_for(status: int) -> str:
    """Anthropic's word for a status: its own list, else invalid_request_error for a 4xx (as it says it
    answers other 4xx) and api_error for the rest."""
    return TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


STATUSES = {"invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
            "permission_error": 403, "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
            "api_error": 500, "timeout_error": 504, "overloaded_error": 529}


def status_for(kind: str) -> int:
    """The status an error of this type comes with, for one that arrived in a stream."""
    return STATUSES.get(kind, 500)


class UpstreamError(ApiError):
    """An Anthropic upstream's own error, whose body was already in Anthropic's shape: kept to be relayed."""

    __slots__ = ("raw",)

    def __init__(self, status: int, message: str, type: str, raw: bytes) -> None:
        super().__init__(status, message, type)
        self.raw = raw


def from_upstream(status: int, raw: bytes) -> ApiError:
    """An Anthropic upstream's error answer: its bytes kept when they are Anthropic's shape."""
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    inner = parsed.get("error") if isinstance(parsed, dict) and parsed.get("type") == "error" else None
    if isinstance(inner, dict) and isinstance(inner.get("message"), str) and isinstance(inner.get("type"), str):
        return UpstreamError(status, inner["message"], inner["type"], raw)
    return upstream_error(status, raw)


def body(error: ApiError, request_id: str | None = None) -> bytes:
    if isinstance(error, UpstreamError):
        return error.raw
    return _shaped(error, request_id)


def _shaped(error: ApiError, request_id: str | None) -> bytes:
    kind = error.type if isinstance(error, UpstreamError) else type_for(error.status)
    shaped: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": error.message}}
    if request_id is not None:
        shaped["request_id"] = request_id
    return orjson.dumps(shaped)


class AnthropicErrors(ErrorShape):
    __slots__ = ()

    def response(self, error: ApiError, headers: dict[str, str] | None = None,
                 request_id: str | None = None) -> web.Response:
        return web.Response(status=error.status, body=body(error, request_id), content_type="application/json",
                            headers={**(error.headers or {}), **(headers or {})})

    def stream_event(self, error: ApiError, request_id: str | None = None, sent: bytes = b"") -> bytes:
        # Always one compact line: an upstream's own error body may span several.
        return b"event: error\ndata: " + _shaped(error, request_id) + b"\n\n"


ANTHROPIC_ERRORS = AnthropicErrors()
