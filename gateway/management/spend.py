"""/spend/logs and /global/spend/report, in LiteLLM's shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from gateway.durations import iso
from gateway.errors import ApiError, bad_request
from gateway.management.common import admin, body, caller, json, query_int, services
from gateway.management.keys import token_of
from gateway.openapi import Query, documented
from gateway.pricing import FREE, price_for
from gateway.spend.record import SpendRecord
from gateway.store.store import KEYS
from gateway.usage import estimate, from_object

GROUPS = {"team": "team_id", "api_key": "api_key", "user": "user_id", "customer": "end_user", "model": "model_group"}


def log_view(record: SpendRecord) -> dict[str, Any]:
    """A record under LiteLLM's LiteLLM_SpendLogs names."""
    return {
        "request_id": record.request_id, "call_type": record.call_type, "api_key": record.api_key,
        "spend": record.spend, "total_tokens": record.total_tokens, "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens, "startTime": iso(record.start_time),
        "endTime": iso(record.end_time),
        "completionStartTime": iso(record.start_time + record.ttft_ms / 1000) if record.ttft_ms is not None
        else None,
        "model": record.upstream_model or record.model, "model_id": record.model_id,
        "model_group": record.model_group, "custom_llm_provider": record.provider, "api_base": record.api_base,
        "user": record.user_id, "end_user": record.end_user, "team_id": record.team_id, "request_tags": record.tags,
        "requester_ip_address": record.client_ip, "status": record.status,
        "metadata": {"key_alias": record.key_alias, "status_code": record.status_code, "error": record.error,
                     "usage_estimated": record.usage_estimated, "stream": record.stream,
                     "time_to_first_token_ms": record.ttft_ms, "requested_model": record.model,
                     "usage_object": usage_object(record),
                     "additional_usage_values": _parts(record)},
    }


def usage_object(record: SpendRecord) -> dict[str, Any]:
    """The record's usage as LiteLLM keeps it in a spend log's metadata: OpenAI's shape, with the
    cache's tokens also under Anthropic's names."""
    return {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens,
            "total_tokens": record.total_tokens, **_parts(record)}


def _parts(record: SpendRecord) -> dict[str, Any]:
    return {"prompt_tokens_details": {"cached_tokens": record.cache_read_tokens,
                                      "cache_creation_tokens": record.cache_creation_tokens},
            "completion_tokens_details": {"reasoning_tokens": record.reasoning_tokens},
            "cache_read_input_tokens": record.cache_read_tokens,
            "cache_creation_input_tokens": record.cache_creation_tokens}


SPEND_QUERY = [Query("start_date", description="YYYY-MM-DD or ISO 8601"),
               Query("end_date", description="YYYY-MM-DD (the whole day) or ISO 8601"), Query("api_key")]


def _day(request: web.Request, name: str, end: bool = False) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 time", name) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end and len(raw) == 10:
        moment += timedelta(days=1)  # an end date includes that whole day, as LiteLLM reads it
    return moment.timestamp()


@documented(summary="Spend logs, or daily totals with a date range", query=[
    *SPEND_QUERY, Query("user_id"), Query("team_id"), Query("request_id"), Query("summarize", "boolean"),
    Query("limit", "integer")])
async def logs(request: web.Request) -> web.Response:
    who = await caller(request)
    svc = services(request)
    where: dict[str, Any] = {}
    if "api_key" in request.query:
        where["api_key"] = token_of(request.query["api_key"])
    for name, column in (("user_id", "user_id"), ("team_id", "team_id"), ("request_id", "request_id"),
                         ("end_user", "end_user")):
        if name in request.query:
            where[column] = request.query[name]
    if not who.is_admin:
        if who.token is None or where.get("api_key", who.token) != who.token:
            raise ApiError(403, "a key may read only its own spend logs", "auth_error", "api_key")
        where["api_key"] = who.token
    start, end = _day(request, "start_date"), _day(request, "end_date", end=True)
    summarize = request.query.get("summarize", "true").lower() != "false"
    if start is not None and end is not None and summarize:
        rows = await svc.store.spend_by_day(where, start, end, "user_id")
        days: dict[str, dict[str, Any]] = {}
        for row in rows:
            day = days.setdefault(row["day"], {"startTime": row["day"], "spend": 0.0, "models": {}, "users": {}})
            day["spend"] += row["spend"]
            model = row["model_group"] or "unknown"
            day["models"][model] = day["models"].get(model, 0.0) + row["spend"]
            user = row["grp"] or "unknown"
            day["users"][user] = day["users"].get(user, 0.0) + row["spend"]
        return json(list(days.values()))
    limit = query_int(request, "limit", 1000, 1, 10_000)
    records = await svc.store.spend_logs(where, start, end, limit)
    return json([log_view(r) for r in records])


@documented(summary="Daily spend grouped by team, key, user, customer or model",
            query=[*SPEND_QUERY, Query("group_by")])
async def report(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    group_by = request.query.get("group_by", "team")
    if group_by not in GROUPS:
        raise bad_request(f"group_by must be one of {', '.join(GROUPS)}", "group_by")
    start, end = _day(request, "start_date"), _day(request, "end_date", end=True)
    where = {"api_key": token_of(request.query["api_key"])} if "api_key" in request.query else {}
    rows = await svc.store.spend_by_day(where, start, end, GROUPS[group_by])
    label = {"team": "team_name", "api_key": "api_key", "user": "user", "customer": "customer",
             "model": "model"}[group_by]
    days: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        entries = days.setdefault(row["day"], {})
        name = row["grp"] or "Unassigned"
        entry = entries.setdefault(name, {label: name, "total_spend": 0.0, "total_tokens": 0, "requests": 0,
                                          "metadata": []})
        entry["total_spend"] += row["spend"]
        entry["total_tokens"] += int(row["total_tokens"])
        entry["requests"] += int(row["requests"])
        entry["metadata"].append({"model": row["model_group"], "spend": row["spend"],
                                  "total_tokens": int(row["total_tokens"])})
    plural = {"team": "teams", "api_key": "api_keys", "user": "users", "customer": "customers", "model": "models"}
    return json([{"group_by_day": day, plural[group_by]: list(entries.values())} for day, entries in days.items()])


async def _totals(request: web.Request, column: str) -> list[tuple[str, float]]:
    """All-time spend per value of a spend-log column, largest first, at most `?limit=` of them."""
    await admin(request)
    limit = query_int(request, "limit", 10, 1, 10_000)
    rows = await services(request).store.spend_totals({}, None, None, column, limit)
    return [(row["grp"], row["spend"]) for row in rows]


@documented(summary="Top keys by spend", query=[Query("limit", "integer")])
async def global_keys(request: web.Request) -> web.Response:
    """LiteLLM's top keys by spend: `[{"api_key", "total_spend", "key_alias", "key_name"}]`."""
    top = await _totals(request, "api_key")
    found, _ = await services(request).store.find(KEYS, {"token": [token for token, _ in top]})
    named = {k.token: k for k in found}
    return json([{"api_key": token, "total_spend": spend,
                  "key_alias": named[token].key_alias if token in named else None,
                  "key_name": named[token].key_name if token in named else None} for token, spend in top])


@documented(summary="Top models by spend", query=[Query("limit", "integer")])
async def global_models(request: web.Request) -> web.Response:
    """LiteLLM's top models by spend: `[{"model", "total_spend"}]`."""
    return json([{"model": model, "total_spend": spend} for model, spend in await _totals(request, "model")])


@documented(summary="Spend per team per day")
async def global_teams(request: web.Request) -> web.Response:
    """LiteLLM's team spend: per day, the list of teams, and each team's total."""
    await admin(request)
    rows = await services(request).store.spend_by_day({}, None, None, "team_id", by_model=False)
    days: dict[str, dict[str, Any]] = {}
    totals: dict[str, float] = {}
    for row in rows:
        team = row["grp"] or "Unassigned"
        day = days.setdefault(row["day"], {"date": row["day"]})
        day[team] = day.get(team, 0.0) + row["spend"]
        totals[team] = totals.get(team, 0.0) + row["spend"]
    return json({"daily_spend": list(days.values()), "teams": sorted(totals),
                 "total_spend_per_team": [{"team_id": t, "total_spend": v} for t, v in sorted(totals.items())]})


class EndUsersSpend(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """LiteLLM's GlobalEndUsersSpend."""

    api_key: str | None = None
    startTime: str | None = None  # noqa: N815 - LiteLLM's name
    endTime: str | None = None  # noqa: N815


def _moment(raw: str | None, name: str) -> float | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{name} must be an ISO 8601 time", name) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@documented(summary="Top end users by spend", body=EndUsersSpend)
async def global_end_users(request: web.Request) -> web.Response:
    """LiteLLM's top end users by spend over a window (the last 30 days unless given), at most 100:
    `[{"end_user", "total_count", "total_spend"}]`. The window is read in whole UTC days."""
    await admin(request)
    svc = services(request)
    asked = await body(request, EndUsersSpend)
    now = svc.clock()
    start = _moment(asked.startTime, "startTime") or now - 30 * 86400
    end = _moment(asked.endTime, "endTime") or now
    where = {"api_key": token_of(asked.api_key)} if asked.api_key else {}
    top = await svc.store.spend_totals(where, start, end, "end_user", 100)
    return json([{"end_user": row["grp"], "total_count": int(row["requests"]), "total_spend": row["spend"]}
                 for row in top])


@documented(summary="Every end user with spend")
async def all_end_users(request: web.Request) -> web.Response:
    await admin(request)
    rows = await services(request).store.spend_totals({}, None, None, "end_user")
    return json({"end_users": sorted(row["grp"] for row in rows)})


class CostRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model: str | None = None
    messages: list[Any] | None = None
    completion_response: dict[str, Any] | None = None


@documented(summary="What a request or answer would cost", body=CostRequest)
async def calculate(request: web.Request) -> web.Response:
    """LiteLLM's /spend/calculate: what a call would cost, from `model` and `messages` (the prompt, at four
    characters a token), or what one did from its `completion_response` (its model and usage)."""
    await caller(request)
    svc = services(request)
    asked = await body(request, CostRequest)
    answer = asked.completion_response or {}
    model = asked.model or answer.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("pass model and messages, or a completion_response with its model", "model")
    raw_usage = answer.get("usage")
    usage = from_object(raw_usage)
    if usage is None:
        if asked.messages is not None:
            usage = estimate({"messages": asked.messages}, 0)
        elif raw_usage is not None:
            raise bad_request("completion_response.usage must give prompt_tokens (or input_tokens) as an integer",
                              "completion_response")
        else:
            raise bad_request("pass messages, or a completion_response with its usage", "messages")
    candidates = svc.router.candidates(model)
    if candidates:
        price = svc.pricing.price(*candidates[0])
    else:
        price = price_for(model, "openai", {}, {}, svc.pricing.table)
        if price is FREE:
            raise ApiError(404, f"no price known for model {model!r}", "not_found_error", "model")
    return json({"cost": price.cost(usage)})


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/global/spend/keys", global_keys)
    app.router.add_get(f"{prefix}/global/spend/models", global_models)
    app.router.add_get(f"{prefix}/global/spend/teams", global_teams)
    app.router.add_post(f"{prefix}/global/spend/end_users", global_end_users)
    app.router.add_get(f"{prefix}/global/all_end_users", all_end_users)
    app.router.add_post(f"{prefix}/spend/calculate", calculate)
    app.router.add_get(f"{prefix}/spend/logs", logs)
    app.router.add_get(f"{prefix}/global/spend/report", report)
