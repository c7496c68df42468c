"""One finished LLM call as Langfuse ingestion events: a `trace-create` and a `generation-create`.

Names, ids and metadata follow LiteLLM's Langfuse logger so that dashboards and
queries built on it keep working: the trace is `litellm-<call type>` with the
request id as its id; the generation is `litellm:<key alias>`; the client's
`metadata` (or `langfuse_*` request headers) may set `trace_id`,
`existing_trace_id`, `trace_name`, `trace_user_id`, `session_id`,
`generation_name`, `generation_id`, `tags`, `version`, `mask_input` and
`mask_output`; the rest of it is kept under `requester_metadata`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.answer import answer_of
from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.router import Deployment
from gateway.settlement import CLIENT_LEFT
from gateway.usage import Usage

REDACTED = "redacted-by-litellm"
CALL_TYPES = {"chat/completions": "acompletion", "completions": "atext_completion", "embeddings": "aembedding",
              "moderations": "amoderation", "images/generations": "aimage_generation",
              "messages": "anthropic_messages", "responses": "aresponses", "audio/transcriptions": "atranscription",
              "audio/speech": "aspeech", "rerank": "arerank"}
# Request fields that are the prompt, who is asking or how to log: not model parameters.
NOT_PARAMETERS = frozenset({"model", "messages", "prompt", "input", "metadata", "tools", "functions", "user",
                            "stream_options", "system"})
INPUT_FIELDS = {"chat/completions": ("messages", "tools", "functions"), "completions": ("prompt",),
                "embeddings": ("input",), "moderations": ("input",), "images/generations": ("prompt",),
                "messages": ("system", "messages", "tools"), "messages/count_tokens": ("system", "messages", "tools"),
                "audio/speech": ("input",), "rerank": ("query", "documents")}
HEADER_PREFIX = "langfuse_"
MAX_TAGS = 64


class Pending:
    """What on_settle keeps of a request: references only, read once the sender gets to them."""

    __slots__ = ("request_id", "endpoint", "body", "headers", "requested_model", "model_group", "deployment",
                 "upstream_model",
                 "stream", "status", "error", "started_wall", "started", "first_byte_at", "ended", "usage",
                 "cost", "caller", "output", "client_ip")

    def __init__(self, request_id: str, endpoint: str, body: dict[str, Any] | None, headers: Mapping[str, str],
                 requested_model: str | None, model_group: str | None, deployment: Deployment | None,
                 upstream_model: str | None, stream: bool,
                 status: int, error: ApiError | None, started_wall: float, started: float,
                 first_byte_at: float | None, ended: float | None, usage: Usage | None, cost: float,
                 caller: Caller | None,
                 output: bytes | None, client_ip: str) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.body = body
        self.headers = headers
        self.requested_model = requested_model
        self.model_group = model_group
        self.deployment = deployment
        self.upstream_model = upstream_model
        self.stream = stream
        self.status = status
        self.error = error
        self.started_wall = started_wall
        self.started = started
        self.first_byte_at = first_byte_at
        self.ended = ended
        self.usage = usage
        self.cost = cost
        self.caller = caller
        self.output = output
        self.client_ip = client_ip

    def event_count(self) -> int:
        """Events this request becomes: its generation, and its trace unless it joins an existing one."""
        return 1 if "existing_trace_id" in logging_metadata(self.body, self.headers) else 2

    def wall(self, moment: float | None) -> float:
        return self.started_wall + ((moment if moment is not None else self.started) - self.started)


def logging_metadata(body: dict[str, Any] | None, headers: Mapping[str, str]) -> dict[str, Any]:
    """The request's `metadata`, with `langfuse_<name>` headers over it (LiteLLM reads both)."""
    given = (body or {}).get("metadata")
    metadata = dict(given) if isinstance(given, dict) else {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered.startswith(HEADER_PREFIX) and len(lowered) > len(HEADER_PREFIX):
            metadata[lowered[len(HEADER_PREFIX):]] = value
    return metadata


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str | None:
    return str(value) if value is not None and value != "" else None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _tags(caller: Any, given: Any) -> list[str]:
    tags: list[str] = []
    key = caller.key if caller is not None else None
    if key is not None:
        tags.extend(key.tags)
    if isinstance(given, list):
        tags.extend(t for t in given if isinstance(t, str) and len(t) <= 256)
    return list(dict.fromkeys(tags))[:MAX_TAGS]


def _input(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    return {name: body[name] for name in INPUT_FIELDS.get(endpoint, ()) if name in body}


def _parameters(body: dict[str, Any]) -> dict[str, Any]:
    """Langfuse takes strings, numbers and booleans only; anything else goes as its JSON-ish text."""
    found: dict[str, Any] = {}
    for name, value in body.items():
        if name in NOT_PARAMETERS or value is None:
            continue
        found[name] = value if isinstance(value, (str, int, float, bool)) else str(value)[:1000]
    return found


def _outcome(pending: Pending) -> tuple[str, str, str | None]:
    """(status, Langfuse level, status message)."""
    if pending.error is not None:
        return "failure", "ERROR", pending.error.message
    if pending.status == CLIENT_LEFT:
        return "cancelled", "WARNING", "the client disconnected before the answer was complete"
    if pending.status >= 400:
        return "failure", "ERROR", f"HTTP {pending.status}"
    return "success", "DEFAULT", None


def _usage(usage: Usage, cost: float) -> dict[str, Any]:
    tokens = {"input": usage.prompt_tokens, "output": usage.completion_tokens, "total": usage.total_tokens}
    # `usageDetails`/`costDetails` for Langfuse 3, `usage` for servers that predate them.
    return {"usage": {**tokens, "unit": "TOKENS", "totalCost": cost}, "usageDetails": tokens,
            "costDetails": {"total": cost}}


def _caller_metadata(caller: Any) -> dict[str, Any]:
    if caller is None:
        return {}
    key = caller.key
    team = caller.team
    return {
        "user_api_key_alias": key.key_alias if key is not None else ("master" if caller.is_master else None),
        "user_api_key_user_id": key.user_id if key is not None else None,
        "user_api_key_team_id": key.team_id if key is not None else None,
        "user_api_key_team_alias": team.team_alias if team is not None else None,
    }


def events_of(pending: Pending, redact: bool, release: str | None = None) -> list[dict[str, Any]]:
    body = pending.body or {}
    metadata = logging_metadata(pending.body, pending.headers)
    caller = pending.caller
    key = caller.key if caller is not None else None
    call_type = CALL_TYPES.get(pending.endpoint, pending.endpoint)
    existing_trace = _text(metadata.pop("existing_trace_id", None))
    trace_id = existing_trace or _text(metadata.pop("trace_id", None)) or pending.request_id
    mask_input = redact or _truthy(metadata.pop("mask_input", False))
    mask_output = redact or _truthy(metadata.pop("mask_output", False))
    status, level, message = _outcome(pending)
    prompt: Any = REDACTED if mask_input else _input(pending.endpoint, body)
    answer: Any = REDACTED if mask_output else answer_of(pending.endpoint, pending.stream, pending.output)
    end = pending.wall(pending.ended)
    found: list[dict[str, Any]] = []
    trace_user = _text(metadata.pop("trace_user_id", None)) or _text(body.get("user")) or (
        key.user_id if key is not None else None)
    trace = {
        "id": trace_id,
        "timestamp": iso(pending.started_wall),
        "name": _text(metadata.pop("trace_name", None)) or f"litellm-{call_type}",
        "userId": trace_user,
        "sessionId": _text(metadata.pop("session_id", None)),
        "input": prompt,
        "output": answer,
        "tags": _tags(caller, metadata.pop("tags", None)),
        "release": _text(metadata.pop("trace_release", None)) or release,
        "version": _text(metadata.pop("trace_version", None)),
        "metadata": metadata.pop("trace_metadata", None),
    }
    if existing_trace is None:
        # Joining an existing trace adds a generation to it and leaves the trace as it was.
        found.append(_event("trace-create", {k: v for k, v in trace.items() if v is not None}))
    alias = key.key_alias if key is not None else None
    generation: dict[str, Any] = {
        "id": _text(metadata.pop("generation_id", None)) or f"generation-{pending.request_id}",
        "traceId": trace_id,
        "name": _text(metadata.pop("generation_name", None)) or (
            f"litellm:{alias}" if alias else f"litellm-{call_type}"),
        "startTime": iso(pending.started_wall),
        "endTime": iso(end),
        "model": pending.upstream_model or body.get("model"),
        "modelParameters": _parameters(body),
        "input": prompt,
        "output": answer,
        "level": level,
        "statusMessage": message,
        "version": _text(metadata.pop("version", None)),
    }
    if pending.stream and pending.first_byte_at is not None:
        generation["completionStartTime"] = iso(pending.wall(pending.first_byte_at))
    if pending.usage is not None:
        generation.update(_usage(pending.usage, pending.cost))
    generation["metadata"] = _generation_metadata(pending, metadata, status, end)
    found.append(_event("generation-create", {k: v for k, v in generation.items() if v is not None}))
    return found


def _generation_metadata(pending: Pending, requester: dict[str, Any], status: str, end: float) -> dict[str, Any]:
    deployment = pending.deployment
    ttft = pending.first_byte_at - pending.started if pending.first_byte_at is not None else None
    found = {
        **_caller_metadata(pending.caller),
        "user_api_key_end_user_id": _text((pending.body or {}).get("user")),
        "requester_ip_address": pending.client_ip or None,
        "requester_metadata": requester or None,
        "litellm_call_id": pending.request_id,
        "requested_model": pending.requested_model,
        "model_group": pending.model_group,
        "model_id": deployment.id if deployment is not None else None,
        "api_base": deployment.api_base.split("?")[0] if deployment is not None and deployment.api_base else None,
        "provider": deployment.provider.name if deployment is not None else None,
        "call_type": CALL_TYPES.get(pending.endpoint, pending.endpoint),
        "stream": pending.stream,
        "status": status,
        "status_code": pending.status,
        "litellm_response_cost": pending.cost if pending.usage is not None else None,
        "usage_estimated": pending.usage.estimated if pending.usage is not None else None,
        "latency_ms": round((end - pending.started_wall) * 1000, 3),
        "time_to_first_token_ms": round(ttft * 1000, 3) if ttft is not None and pending.stream else None,
    }
    return {k: v for k, v in found.items() if v is not None}


def _event(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "type": kind, "timestamp": iso(datetime.now(UTC).timestamp()),
            "body": body}
