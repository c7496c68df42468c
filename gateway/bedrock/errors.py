"""Bedrock's errors, as the gateway's: an error answer's status and message, an exception frame's type.

Bedrock answers an error with its HTTP status, the exception's name in the `x-amzn-ErrorType` header and
`{"message": ...}` as the body (ThrottlingException 429, ValidationException 400, AccessDeniedException
403, ResourceNotFoundException 404, ModelTimeoutException 408, ModelErrorException 424,
InternalServerException 500, ServiceUnavailableException 503; the signature's own UnrecognizedClient-
and InvalidSignatureException 403). The message is kept word for word; the status decides the type and,
in the proxy, whether another attempt is made (429 and 5xx) and whether the deployment rests (429).
"""

from __future__ import annotations

import msgspec

from gateway.bedrock.converse_wire import ErrorIn
from gateway.errors import ApiError

OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 408: "timeout_error", 424: "api_error", 429: "rate_limit_error",
                500: "api_error", 503: "service_unavailable"}
# The status of each exception a stream can end with (botocore's model: its error's httpStatusCode).
EXCEPTION_STATUS = {"throttlingException": 429, "validationException": 400, "modelStreamErrorException": 424,
                    "internalServerException": 500, "serviceUnavailableException": 503,
                    "modelTimeoutException": 408}
_DECODER = msgspec.json.Decoder(ErrorIn)


def message_of(raw: bytes) -> str:
    try:
        return _DECODER.decode(raw).text() or raw[:500].decode("utf-8", "replace")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return raw[:500].decode("utf-8", "replace")


def bedrock_error(status: int, raw: bytes) -> ApiError:
    """An error answer of Bedrock's, in OpenAI's words (the route writes it in its own envelope)."""
    kind = OPENAI_TYPES.get(status) or ("invalid_request_error" if status < 500 else "api_error")
    return ApiError(status, message_of(raw) or f"Bedrock answered {status}", kind, None, str(status))


def exception_error(kind: str, payload: bytes) -> ApiError:
    """An exception frame that ended a stream."""
    status = EXCEPTION_STATUS.get(kind, 500)
    message = message_of(payload) or kind
    return ApiError(status, f"{kind}: {message}" if kind else message, OPENAI_TYPES.get(status, "api_error"), None,
                    str(status))
