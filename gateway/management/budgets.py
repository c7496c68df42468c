"""/budget/*: new, update, info, settings, list, delete. A budget is the limits end users point to."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import durations
from gateway.errors import ApiError, bad_request
from gateway.identity import Caller
from gateway.management.common import Count, Name, Names, admin, body, caller, json, services, set_fields, view
from gateway.openapi import Query, documented
from gateway.services import Services
from gateway.store.records import BudgetRecord
from gateway.store.store import BUDGETS, END_USERS, Conflict

# LiteLLM's own wording for a caller who may not read budgets.
NOT_ALLOWED = "Admin-only endpoint. Not allowed to access this."
ADMIN_VIEW_ROLES = ("proxy_admin", "proxy_admin_viewer")


class BudgetFields(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """LiteLLM's BudgetNewRequest."""

    budget_id: Name | UnsetType = UNSET
    max_budget: float | UnsetType = UNSET
    soft_budget: float | UnsetType = UNSET
    max_parallel_requests: Count | UnsetType = UNSET
    tpm_limit: Count | UnsetType = UNSET
    rpm_limit: Count | UnsetType = UNSET
    budget_duration: Name | UnsetType = UNSET
    model_max_budget: dict[str, Any] | UnsetType = UNSET
    budget_reset_at: str | UnsetType = UNSET


BUDGET_COLUMNS = ("max_budget", "soft_budget", "max_parallel_requests", "tpm_limit", "rpm_limit",
                  "budget_duration", "model_max_budget", "budget_reset_at")


class BudgetIds(msgspec.Struct, forbid_unknown_fields=True):
    budgets: Names


class BudgetDelete(msgspec.Struct, forbid_unknown_fields=True):
    id: Name


# /budget/settings: the fields an admin may set, their type as LiteLLM's UI reads it, and what they do.
SETTINGS = (
    ("max_budget", "Float", "Spend (USD) past which requests are refused."),
    ("soft_budget", "Float", "Spend (USD) past which an alert is due; requests go on."),
    ("max_parallel_requests", "Integer", "Requests in flight at once."),
    ("tpm_limit", "Integer", "Tokens a minute."),
    ("rpm_limit", "Integer", "Requests a minute."),
    ("budget_duration", "String", "How often the spend starts again from zero (30s, 1h, 1d, 1mo)."),
    ("model_max_budget", "Object", "A budget for each model."),
)


def budget_view(budget: BudgetRecord) -> dict[str, Any]:
    data = view(budget)
    data["model_max_budget"] = budget.model_max_budget or None
    return data


def check_amounts(fields: dict[str, Any]) -> None:
    for name in ("max_budget", "soft_budget"):
        value = fields.get(name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise bad_request(f"{name} must be a non-negative finite number. Received: {value}", name)


def budget_changes(fields: dict[str, Any], now: float) -> dict[str, Any]:
    """Request fields to columns: a duration with no reset time given starts its first period now."""
    check_amounts(fields)
    changes = {k: v for k, v in fields.items() if k in BUDGET_COLUMNS}
    if "budget_reset_at" in changes:
        changes["budget_reset_at"] = _moment(changes["budget_reset_at"])
    elif changes.get("budget_duration"):
        changes["budget_reset_at"] = durations.add(now, changes["budget_duration"])
    return changes


def _moment(raw: str) -> float:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("budget_reset_at must be an ISO 8601 time", "budget_reset_at") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def not_found(budget_id: str) -> ApiError:
    return ApiError(404, f"Budget not found, passed budget_id={budget_id}", "not_found_error", "budget_id")


async def create_budget(svc: Services, who: Caller, budget_id: str | None, changes: dict[str, Any]) -> BudgetRecord:
    by = who.user_id or "litellm-proxy-admin"
    budget_id = budget_id or str(uuid.uuid4())
    try:
        budget = await svc.store.insert(BUDGETS, BudgetRecord(budget_id=budget_id, created_by=by, updated_by=by,
                                                              **changes))
    except Conflict:
        raise bad_request(f"Budget with id '{budget_id}' already exists.", "budget_id") from None
    svc.accounts.changed("budget", budget_id)
    return budget


async def update_budget(svc: Services, who: Caller, budget_id: str, changes: dict[str, Any]) -> BudgetRecord:
    budget = await svc.store.update(BUDGETS, budget_id, {**changes,
                                                         "updated_by": who.user_id or "litellm-proxy-admin"})
    if budget is None:
        raise not_found(budget_id)
    svc.accounts.changed("budget", budget_id)
    return budget


@documented(summary="Create a budget", body=BudgetFields)
async def new(request: web.Request) -> web.Response:
    who = await admin(request)
    return json(budget_view(await new_budget(services(request), who, await body(request, BudgetFields))))


async def new_budget(svc: Services, who: Caller, asked: BudgetFields) -> BudgetRecord:
    """/budget/new's work."""
    fields = set_fields(asked)
    return await create_budget(svc, who, fields.get("budget_id"), budget_changes(fields, svc.clock()))


@documented(summary="Change a budget", body=BudgetFields)
async def update(request: web.Request) -> web.Response:
    who = await admin(request)
    return json(budget_view(await change_budget(services(request), who, await body(request, BudgetFields))))


async def change_budget(svc: Services, who: Caller, asked: BudgetFields) -> BudgetRecord:
    """/budget/update's work: the fields sent changed on the budget `budget_id` names."""
    fields = set_fields(asked)
    budget_id = fields.pop("budget_id", None)
    if budget_id is None:
        raise bad_request("budget_id is required", "budget_id")
    return await update_budget(svc, who, budget_id, budget_changes(fields, svc.clock()))


@documented(summary="Budgets by id", body=BudgetIds)
async def info(request: web.Request) -> web.Response:
    await admin(request)
    ids = (await body(request, BudgetIds)).budgets
    if not ids:
        raise bad_request(f"Specify list of budget id's to query. Passed in={ids}", "budgets")
    found, _ = await services(request).store.find(BUDGETS, {"budget_id": ids})
    return json([budget_view(b) for b in found])


async def _admin_view(request: web.Request) -> Caller:
    who = await caller(request)
    if not (who.is_master or who.role in ADMIN_VIEW_ROLES):
        raise ApiError(400, f"{NOT_ALLOWED}, your role={who.role}", "auth_error")
    return who


@documented(summary="A budget's fields, as LiteLLM's UI reads them", query=[Query("budget_id")])
async def settings(request: web.Request) -> web.Response:
    await _admin_view(request)
    budget_id = request.query.get("budget_id")
    if not budget_id:
        raise bad_request("pass ?budget_id= to read a budget's settings", "budget_id")
    budget = await services(request).store.get(BUDGETS, budget_id)
    stored = {k: v for k, v in budget_view(budget).items() if v is not None} if budget is not None else {}
    return json([{"field_name": name, "field_type": kind, "field_description": description,
                  "field_value": stored.get(name), "stored_in_db": True, "field_default_value": None}
                 for name, kind, description in SETTINGS])


@documented(summary="Every budget")
async def list_budgets(request: web.Request) -> web.Response:
    await _admin_view(request)
    found, _ = await find_budgets(services(request))
    return json([budget_view(b) for b in found])


async def find_budgets(svc: Services, search: str | None = None, page: int = 1,
                       size: int | None = None) -> tuple[list[BudgetRecord], int]:
    """Budgets, newest first (a page of `size`, else all), and how many match `search` (a piece of the id):
    /budget/list's and the admin UI's listing."""
    return await svc.store.find(BUDGETS, {}, offset=(page - 1) * (size or 0), limit=size,
                                search=(("budget_id",), search) if search else None)


@documented(summary="Delete a budget (its end users keep going without one)", body=BudgetDelete)
async def delete(request: web.Request) -> web.Response:
    who = await caller(request)
    if not who.is_admin:
        raise ApiError(400, f"{NOT_ALLOWED}, your role={who.role}", "auth_error")
    return json(budget_view(await delete_budget(services(request), (await body(request, BudgetDelete)).id)))


async def delete_budget(svc: Services, budget_id: str) -> BudgetRecord:
    """/budget/delete's work: the budget gone, its end users left without one; the budget as it was."""
    budget = await svc.store.get(BUDGETS, budget_id)
    if budget is None:
        raise not_found(budget_id)
    # As LiteLLM's foreign key does: end users on this budget keep going, with no budget of their own.
    users, _ = await svc.store.find(END_USERS, {"budget_id": budget_id})
    for user in users:
        await svc.store.update(END_USERS, user.user_id, {"budget_id": None})
        svc.accounts.changed("end_user", user.user_id)
    await svc.store.delete(BUDGETS, [budget_id])
    svc.accounts.changed("budget", budget_id)
    return budget


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/budget/new", new)
    app.router.add_post(f"{prefix}/budget/update", update)
    app.router.add_post(f"{prefix}/budget/info", info)
    app.router.add_get(f"{prefix}/budget/settings", settings)
    app.router.add_get(f"{prefix}/budget/list", list_budgets)
    app.router.add_post(f"{prefix}/budget/delete", delete)
