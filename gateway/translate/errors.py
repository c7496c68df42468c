"""An upstream's error answer in the other API's envelope.

OpenAI: `{"error": {"message", "type", "param", "code"}}` (code a string, as LiteLLM writes it);
Anthropic: `{"type": "error", "error": {"type", "message"}}`, its type named by the status as
Anthropic's API reference lists them. The message is kept word for word either way.
"""

from __future__ import annotations

import msgspec

from gateway.errors import ApiError, envelope, upstream_error
from gateway.translate import anthropic_wire as a

ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 408: "timeout_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 503: "overloaded_error", 504: "timeout_error",
                   529: "overloaded_error"}
# An Anthropic error type's nearest word in OpenAI's (which types by what went wrong, as LiteLLM does).
OPENAI_TYPES = {"invalid_request_error": "invalid_request_error", "authentication_error": "authentication_error",
                "permission_error": "permission_error", "not_found_error": "not_found_error",
                "rate_limit_error": "rate_limit_error", "request_too_large": "invalid_request_error",
                "billing_error": "insufficient_quota", "timeout_error": "timeout_error", "api_error": "api_error",
                "overloaded_error": "service_unavailable"}


ANTHROPIC_KINDS = frozenset(ANTHROPIC_TYPES.values())


class _Envelope(msgspec.Struct):
    type: str
    error: a.ErrorBody


def anthropic_type(status: int) -> str:
    return ANTHROPIC_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")


def anthropic_kind(kind: str | None, code: int | str | None) -> str:
    """Anthropic's type for an OpenAI-style error in a stream: its own type when it is one of Anthropic's
    words, else the one its code (vLLM writes the HTTP status) names, else api_error."""
    if kind in ANTHROPIC_KINDS:
        return kind
    if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
        return anthropic_type(int(code))
    return "api_error"


def openai_kind(kind: str) -> str:
    return OPENAI_TYPES.get(kind, kind)


def anthropic_error(status: int, message: str) -> bytes:
    return msgspec.json.encode(a.ErrorEvent(a.ErrorBody(anthropic_type(status), message)))


def to_anthropic_error(status: int, raw: bytes) -> bytes:
    """An OpenAI-style upstream's error answer (or any other body) in Anthropic's envelope."""
    return anthropic_error(status, upstream_error(status, raw).message)


def to_openai_error(status: int, raw: bytes) -> bytes:
    """An Anthropic upstream's error answer (or any other body) in OpenAI's envelope."""
    error = openai_error_of(status, raw)
    return envelope(error.message, error.type, error.param, error.code)


def openai_error_of(status: int, raw: bytes) -> ApiError:
    """An Anthropic upstream's error answer as an OpenAI-style error: its message, the nearest OpenAI type."""
    try:
        parsed = msgspec.json.decode(raw, type=_Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return upstream_error(status, raw)
    return ApiError(status, parsed.error.message, openai_kind(parsed.error.type), None, str(status))
