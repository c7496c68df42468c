"""/end_user/* and /customer/*: new, info, update, delete, list, block, unblock."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway.end_users import MAX_ID_LENGTH, budget_counter
from gateway.errors import ApiError, bad_request
from gateway.management.budgets import (
    BUDGET_COLUMNS,
    BudgetFields,
    budget_changes,
    budget_view,
    create_budget,
    update_budget,
)
from gateway.management.common import Name, admin, body, caller, json, services, set_fields, view
from gateway.openapi import Query, documented
from gateway.services import Services
from gateway.store.records import BudgetRecord, EndUserRecord
from gateway.store.store import BUDGETS, END_USERS, Conflict

EndUserId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
EndUserIds = Annotated[list[EndUserId], msgspec.Meta(max_length=1000)]
Region = Literal["eu", "us"]


class CustomerFields(BudgetFields, kw_only=True, forbid_unknown_fields=True):
    """LiteLLM's NewCustomerRequest and UpdateCustomerRequest: the end user, and its budget's limits."""

    user_id: EndUserId
    alias: Name | UnsetType = UNSET
    blocked: bool | UnsetType = UNSET
    spend: float | UnsetType = UNSET
    allowed_model_region: Region | UnsetType = UNSET
    default_model: Name | UnsetType = UNSET
    # Kept and shown back; not acted on here.
    object_permission: Any = UNSET
    metadata: Any = UNSET


KEPT = ("object_permission", "metadata")


class CustomerIds(msgspec.Struct, forbid_unknown_fields=True):
    user_ids: EndUserIds


def not_found(user_id: str, param: str) -> ApiError:
    return ApiError(404, f"End User Id={user_id} does not exist in db", "not_found", param)


def end_user_view(record: EndUserRecord, budget: BudgetRecord | None) -> dict[str, Any]:
    """LiteLLM's LiteLLM_EndUserTable, with its budget row as `litellm_budget_table`."""
    data = view(record)
    data.pop("created_at", None)
    data.pop("updated_at", None)
    data["litellm_budget_table"] = budget_view(budget) if budget is not None else None
    data.setdefault("object_permission_id", None)
    return data


async def _budget_of(svc: Services, record: EndUserRecord) -> BudgetRecord | None:
    return await svc.store.get(BUDGETS, record.budget_id) if record.budget_id else None


async def _current(svc: Services, record: EndUserRecord, budget: BudgetRecord | None) -> EndUserRecord:
    """The spend as of now: the ledger counts requests the store's total has not caught up with."""
    counter = budget_counter(record.user_id, record.spend, budget, svc.clock())
    if counter is None:
        return record
    try:
        counted = await svc.ledger.spent(counter.name)
    except Exception:  # noqa: BLE001 - the store's total is still an answer
        counted = None
    if counted is None or counted <= record.spend:
        return record
    return msgspec.structs.replace(record, spend=counted)


def _split(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The end user's own columns, and its budget's."""
    budget = {k: fields.pop(k) for k in list(fields) if k in BUDGET_COLUMNS}
    extra = {k: fields.pop(k) for k in KEPT if k in fields}
    if extra:
        fields["extra"] = extra
    return fields, budget


async def _check_budget_id(svc: Services, budget_id: str | None) -> None:
    if budget_id is not None and await svc.store.get(BUDGETS, budget_id) is None:
        raise bad_request(f"Budget not found, passed budget_id={budget_id}", "budget_id")


@documented(summary="Create an end user (a customer), with its budget", body=CustomerFields)
async def new(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    fields = set_fields(await body(request, CustomerFields))
    user_id = fields.pop("user_id")
    if "max_budget" in fields and "budget_id" in fields:
        raise bad_request("Set either 'max_budget' or 'budget_id', not both.", "budget_id")
    default_model = fields.get("default_model")
    if default_model is not None and not svc.router.knows(default_model):
        raise ApiError(422, f"Default Model not on proxy. Configure via `/model/new` or config.yaml. "
                       f"Default_model={default_model}, proxy_model_names={set(svc.router.public_names())}",
                       "invalid_request_error", "default_model")
    own, limits = _split(fields)
    await _check_budget_id(svc, own.get("budget_id"))
    taken = ApiError(400, f"Customer already exists, passed user_id={user_id}. Please pass a new user_id.",
                     "bad_request", "user_id")
    if await svc.store.get(END_USERS, user_id) is not None:
        raise taken
    budget = None
    if limits:
        budget = await create_budget(svc, who, None, budget_changes(limits, svc.clock()))
        own["budget_id"] = budget.budget_id
    try:
        record = await svc.store.insert(END_USERS, EndUserRecord(user_id=user_id, **own))
    except Conflict:
        if budget is not None:
            await svc.store.delete(BUDGETS, [budget.budget_id])
        raise taken from None
    svc.accounts.changed("end_user", user_id)
    return json(end_user_view(record, budget or await _budget_of(svc, record)))


@documented(summary="One end user and its budget", query=[Query("end_user_id")])
async def info(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    user_id = request.query.get("end_user_id")
    if not user_id:
        raise bad_request("pass ?end_user_id= to look up an end user", "end_user_id")
    record = await svc.store.get(END_USERS, user_id)
    if record is None:
        raise not_found(user_id, "end_user_id")
    budget = await _budget_of(svc, record)
    shown = end_user_view(await _current(svc, record, budget), budget)
    return json({k: v for k, v in shown.items() if v is not None})


@documented(summary="Change an end user or its budget", body=CustomerFields)
async def update(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    fields = set_fields(await body(request, CustomerFields))
    user_id = fields.pop("user_id")
    before = await svc.store.get(END_USERS, user_id)
    if before is None:
        raise not_found(user_id, "user_id")
    own, limits = _split(fields)
    if "extra" in own:
        own["extra"] = {**before.extra, **own["extra"]}
    await _check_budget_id(svc, own.get("budget_id"))
    budget_id = own.get("budget_id", before.budget_id)
    if limits:
        changes = budget_changes(limits, svc.clock())
        if budget_id is not None and await svc.store.get(BUDGETS, budget_id) is not None:
            await update_budget(svc, who, budget_id, changes)
        else:
            own["budget_id"] = (await create_budget(svc, who, None, changes)).budget_id
    record = await svc.store.update(END_USERS, user_id, own) if own else before
    if record is None:
        raise not_found(user_id, "user_id")
    svc.accounts.changed("end_user", user_id)
    return json(end_user_view(record, await _budget_of(svc, record)))


@documented(summary="Delete end users", body=CustomerIds)
async def delete(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    user_ids = list(dict.fromkeys((await body(request, CustomerIds)).user_ids))
    if not user_ids:
        raise bad_request(f"user_id is required, passed user_id = {user_ids}", "user_ids")
    found, _ = await svc.store.find(END_USERS, {"user_id": user_ids})
    known = {r.user_id for r in found}
    missing = [u for u in user_ids if u not in known]
    if missing:
        raise ApiError(404, f"End User Id(s)={', '.join(missing)} do not exist in db", "not_found", "user_ids")
    deleted = await svc.store.delete(END_USERS, user_ids)
    for user_id in deleted:
        svc.accounts.changed("end_user", user_id)
    return json({"deleted_customers": len(deleted),
                 "message": "Successfully deleted customers with ids: " + str(user_ids)})


@documented(summary="Every end user")
async def list_end_users(request: web.Request) -> web.Response:
    who = await caller(request)
    if not (who.is_master or who.role in ("proxy_admin", "proxy_admin_viewer")):
        raise ApiError(401, f"Admin-only endpoint. Your user role={who.role}", "auth_error")
    records, _, budgets = await find_end_users(services(request), EndUserFilter())
    return json([end_user_view(r, budgets.get(r.budget_id or "")) for r in records])


class EndUserFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which end users a listing shows: blocked or not, on a budget, and `search`, a piece of the id or alias."""

    blocked: bool | None = None
    budget_id: str | None = None
    search: str | None = None


async def find_end_users(svc: Services, wanted: EndUserFilter, page: int = 1, size: int | None = None
                         ) -> tuple[list[EndUserRecord], int, dict[str, BudgetRecord]]:
    """End users, newest first (a page of `size`, else all), how many match, and their budgets by id:
    /end_user/list's and the admin UI's listing."""
    where: dict[str, Any] = {name: value for name in ("blocked", "budget_id")
                             if (value := getattr(wanted, name)) is not None}
    search = (("user_id", "alias"), wanted.search) if wanted.search else None
    records, total = await svc.store.find(END_USERS, where, offset=(page - 1) * (size or 0), limit=size,
                                          search=search)
    budgets, _ = await svc.store.find(BUDGETS, {"budget_id": sorted({r.budget_id for r in records
                                                                     if r.budget_id})})
    return records, total, {b.budget_id: b for b in budgets}


async def _set_blocked(request: web.Request, blocked: bool) -> web.Response:
    await admin(request)
    changed = await set_blocked(services(request), (await body(request, CustomerIds)).user_ids, blocked)
    return json({"blocked_users": [end_user_view(r, None) for r in changed]})


async def set_blocked(svc: Services, user_ids: list[str], blocked: bool) -> list[EndUserRecord]:
    """/end_user/block's and /end_user/unblock's work: the end users changed (unblocking one never seen
    changes nothing)."""
    changed: list[EndUserRecord] = []
    for user_id in dict.fromkeys(user_ids):
        record = await svc.store.update(END_USERS, user_id, {"blocked": blocked})
        if record is None and blocked:
            # As LiteLLM does: blocking an end user never seen creates it, blocked.
            try:
                record = await svc.store.insert(END_USERS, EndUserRecord(user_id=user_id, blocked=True))
            except Conflict:
                record = await svc.store.update(END_USERS, user_id, {"blocked": True})
        if record is None:
            continue
        svc.accounts.changed("end_user", user_id)
        changed.append(record)
    return changed


@documented(summary="Block end users (one never seen is created, blocked)", body=CustomerIds)
async def block(request: web.Request) -> web.Response:
    return await _set_blocked(request, True)


@documented(summary="Unblock end users", body=CustomerIds)
async def unblock(request: web.Request) -> web.Response:
    return await _set_blocked(request, False)


def add_routes(app: web.Application, prefix: str) -> None:
    for base in ("end_user", "customer"):
        app.router.add_post(f"{prefix}/{base}/new", new)
        app.router.add_get(f"{prefix}/{base}/info", info)
        app.router.add_post(f"{prefix}/{base}/update", update)
        app.router.add_post(f"{prefix}/{base}/delete", delete)
        app.router.add_get(f"{prefix}/{base}/list", list_end_users)
        app.router.add_post(f"{prefix}/{base}/block", block)
        app.router.add_post(f"{prefix}/{base}/unblock", unblock)
