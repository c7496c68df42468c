"""Timeouts a client asks for, as LiteLLM takes them: `timeout` (or `request_timeout`) and
`stream_timeout` in the body, or the `x-litellm-timeout` / `x-litellm-stream-timeout` headers.

They override the deployment's for this request and are the gateway's business: taken out of the
body, never sent upstream. For a stream LiteLLM's order holds: the request's `stream_timeout`, the
deployment's (or router_settings'), then the request's `timeout`, then the deployment's.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from aiohttp import ClientTimeout
from multidict import CIMultiDictProxy

from gateway.errors import bad_request
from gateway.router import Deployment


class Asked(NamedTuple):
    total: float | None
    stream: float | None


def asked(headers: CIMultiDictProxy[str], body: dict[str, Any]) -> Asked | None:
    """What this request asks for (taken out of `body`), or None when it asks nothing."""
    total = _seconds(body.pop("timeout", None), "timeout")
    fallback = _seconds(body.pop("request_timeout", None), "request_timeout")
    stream = _seconds(body.pop("stream_timeout", None), "stream_timeout")
    total = total or fallback or _seconds(headers.get("x-litellm-timeout"), "x-litellm-timeout")
    stream = stream or _seconds(headers.get("x-litellm-stream-timeout"), "x-litellm-stream-timeout")
    if total is None and stream is None:
        return None
    return Asked(total, stream)


def for_attempt(deployment: Deployment, stream: bool, wanted: Asked | None) -> ClientTimeout:
    if wanted is None:
        return deployment.stream_timeout if stream else deployment.timeout
    total = wanted.total or deployment.total_seconds
    if not stream:
        return ClientTimeout(total=total, sock_connect=deployment.connect_seconds)
    between_events = wanted.stream or deployment.stream_seconds or total
    return ClientTimeout(total=None, connect=total, sock_connect=deployment.connect_seconds,
                         sock_read=between_events)


def _seconds(value: Any, field: str) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise bad_request(f"'{field}' must be a number of seconds above 0", field)
    return seconds
