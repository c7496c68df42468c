"""Every error leaves the gateway in its caller's API's shape: OpenAI's envelope, unless the route speaks
Anthropic's (gateway/anthropic/errors.py).

`{"error": {"message", "type", "param", "code"}}` with `code` as a string,
the way LiteLLM's proxy writes it, so clients that parse either keep working.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    __slots__ = ("status", "message", "type", "param", "code", "headers")

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code if code is not None else str(status)
        self.headers = headers

    def body(self) -> bytes:
        return envelope(self.message, self.type, self.param, self.code)

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        merged = {**(self.headers or {}), **(headers or {})}
        return web.Response(
            status=self.status, body=self.body(), content_type="application/json", headers=merged
        )


class ErrorShape:
    """How a route's errors look on the wire: OpenAI's envelope, as a JSON answer or as a stream's last event."""

    __slots__ = ()

    def response(self, error: ApiError, headers: dict[str, str] | None = None,
                 request_id: str | None = None) -> web.Response:
        return error.response(headers)

    def stream_event(self, error: ApiError, request_id: str | None = None, sent: bytes = b"") -> bytes:
        """The stream's last event; `sent` is the end of what the client was sent before it."""
        return b"data: " + error.body() + b"\n\n"


OPENAI_ERRORS = ErrorShape()


def envelope(message: str, type: str, param: str | None, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


# The gateway's own refusals that the same request gets again: the request itself, its key or its model.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 415, 422})


def retry_cannot_help(error: ApiError) -> bool:
    """Whether the gateway's refusal says `x-should-retry: false`, which the anthropic and openai SDKs and
    Claude Code read to give up at once rather than retry with backoff. A refusal that may pass later (a
    rate limit, a deployment cooling down, a budget held by requests in flight) does not; one whose headers
    already say, as a budget that is spent, keeps its own word."""
    return error.status in FINAL_STATUSES and not (error.headers and "x-should-retry" in error.headers)


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param)


def upstream_error(status: int, raw: bytes) -> ApiError:
    """An upstream's own error, in the envelope: its fields kept when it already used one."""
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        inner = parsed.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return ApiError(status, inner["message"], str(inner.get("type") or _type_for(status)),
                            inner.get("param") if isinstance(inner.get("param"), str) else None,
                            str(inner.get("code") if inner.get("code") is not None else status))
        for field in ("message", "detail", "error"):
            if isinstance(parsed.get(field), str):
                return ApiError(status, parsed[field], _type_for(status))
    text = raw.decode("utf-8", "replace").strip()[:2000] or f"upstream answered {status}"
    return ApiError(status, text, _type_for(status))


def _type_for(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    if status < 500:
        return "invalid_request_error"
    return "api_error"


def shared_state_unreachable(what: str) -> ApiError:
    """`fail_open: false` and the shared counters (Redis, or the node's) cannot be asked."""
    return ApiError(503, f"{what} cannot be checked right now (their shared store is unreachable; "
                    "fail_open: false); retry shortly", "service_unavailable", headers={"retry-after": "1"})
