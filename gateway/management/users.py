"""/user/*: new, info, update, delete, list."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, NamedTuple

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import durations
from gateway.accounts import hash_key, key_name, new_raw_key
from gateway.budget.current import current
from gateway.errors import ApiError, bad_request
from gateway.identity import Caller
from gateway.management.common import (
    Count,
    Money,
    Name,
    Names,
    admin,
    body,
    caller,
    json,
    query_int,
    services,
    set_fields,
    total_pages,
    view,
    with_extra,
)
from gateway.management.keys import alias_taken, record_changes
from gateway.management.teams import join, leave, team_view
from gateway.openapi import Query, documented
from gateway.services import Services
from gateway.store.records import KeyRecord, UserRecord
from gateway.store.store import KEYS, TEAMS, USERS, Conflict

ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer")
# What the key made along with a user takes from the user, as LiteLLM's /user/new does; budgets stay the user's.
KEY_INHERITS = ("models", "tpm_limit", "rpm_limit", "max_parallel_requests", "metadata")


class KeptUserFields(msgspec.Struct, kw_only=True):
    """Fields of LiteLLM's user requests the gateway keeps and shows back but does not act on."""

    agent_id: Any = UNSET
    budget_limits: Any = UNSET
    allowed_cache_controls: Any = UNSET
    config: Any = UNSET
    permissions: Any = UNSET
    model_max_budget: Any = UNSET
    budget_fallbacks: Any = UNSET
    model_rpm_limit: Any = UNSET
    model_tpm_limit: Any = UNSET
    mcp_rpm_limit: Any = UNSET
    tag_rpm_limit: Any = UNSET
    guardrails: Any = UNSET
    policies: Any = UNSET
    prompts: Any = UNSET
    blocked: Any = UNSET
    aliases: Any = UNSET
    object_permission: Any = UNSET
    sso_user_id: Any = UNSET
    organizations: Any = UNSET
    password: Any = UNSET


KEPT_USER_FIELDS = frozenset(KeptUserFields.__struct_fields__)


class UserFields(KeptUserFields, kw_only=True, forbid_unknown_fields=True):
    spend: Money | UnsetType = UNSET
    user_alias: Name | None | UnsetType = UNSET
    user_email: Name | None | UnsetType = UNSET
    user_role: Name | UnsetType = UNSET
    teams: Names | UnsetType = UNSET
    models: Names | UnsetType = UNSET
    max_budget: Money | None | UnsetType = UNSET
    budget_duration: Name | None | UnsetType = UNSET
    tpm_limit: Count | None | UnsetType = UNSET
    rpm_limit: Count | None | UnsetType = UNSET
    max_parallel_requests: Count | None | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET


class NewUser(UserFields):
    user_id: Name | UnsetType = UNSET
    auto_create_key: bool = True
    key_alias: Name | None | UnsetType = UNSET  # for the key made with the user
    duration: Name | None | UnsetType = UNSET  # likewise
    team_id: Name | None | UnsetType = UNSET  # LiteLLM's older way: the user joins it, the key is the team's
    # Accepted so LiteLLM's UI can post its form; there is no mail to send.
    send_invite_email: bool | None | UnsetType = UNSET


class UpdateUser(UserFields):
    user_id: Name | UnsetType = UNSET
    auto_create_key: bool | UnsetType = UNSET  # LiteLLM's clients send it here too; a user's key is made once


class DeleteUsers(msgspec.Struct, forbid_unknown_fields=True):
    user_ids: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=1000)]


def not_found(user_id: str) -> ApiError:
    return ApiError(404, f"User not found, passed user_id={user_id}", "not_found_error", "user_id")


def check_role(role: str | None) -> None:
    if role is not None and role not in ROLES:
        raise bad_request(f"user_role must be one of {', '.join(ROLES)}; got {role!r}", "user_role")


def user_changes(fields: dict[str, Any], now: float) -> dict[str, Any]:
    """Request fields to record columns: a budget duration also sets when the budget next resets."""
    changes = {k: v for k, v in fields.items() if k in UserFields.__struct_fields__ or k == "extra"}
    if "budget_duration" in fields:
        budget = fields["budget_duration"]
        changes["budget_reset_at"] = durations.add(now, budget) if budget else None
    if "teams" in changes:
        changes["teams"] = list(dict.fromkeys(changes["teams"]))
    return changes


async def check_teams(svc: Services, team_ids: list[str]) -> None:
    found, _ = await svc.store.find(TEAMS, {"team_id": team_ids})
    known = {t.team_id for t in found}
    for team_id in team_ids:
        if team_id not in known:
            raise bad_request(f"Team not found, passed team_id={team_id}", "teams")


async def check_email(svc: Services, email: str | None, user_id: str | None = None) -> None:
    """An email names one user: /team/member_add finds users by it."""
    if email is None:
        return
    found, _ = await svc.store.find(USERS, {"user_email": email}, limit=2)
    if any(u.user_id != user_id for u in found):
        raise ApiError(409, f"User with email {email} already exists", "conflict_error", "user_email")


@documented(summary="Create a user (and a key for them)", body=NewUser)
async def new_user(request: web.Request) -> web.Response:
    who = await admin(request)
    made = await create_user(services(request), who, await body(request, NewUser))
    if made.key is None:
        return json({**view(made.user), "key": ""})
    key = view(made.key)
    key.pop("token", None)
    return json({**key, **view(made.user), "key": made.raw_key})


class NewUserMade(NamedTuple):
    user: UserRecord
    key: KeyRecord | None  # the key made with the user, unless auto_create_key was false
    raw_key: str  # shown once; "" without a key


async def create_user(svc: Services, who: Caller, asked: NewUser) -> NewUserMade:
    """/user/new's work: the user, in its teams, and the key made for it."""
    fields = with_extra(set_fields(asked), KEPT_USER_FIELDS, {})
    make_key = fields.pop("auto_create_key")
    key_fields: dict[str, Any] = {k: fields.pop(k) for k in ("key_alias", "duration") if k in fields}
    fields.pop("send_invite_email", None)
    team_id = fields.pop("team_id", None)
    if team_id is not None:
        fields["teams"] = [*fields.get("teams", []), team_id]
    user_id = fields.pop("user_id", None) or uuid.uuid4().hex
    check_role(fields.get("user_role"))
    now = svc.clock()
    changes = user_changes(fields, now)
    await check_teams(svc, changes.get("teams", []))
    taken = ApiError(409, f"User with id {user_id} already exists", "conflict_error", "user_id")
    if await svc.store.get(USERS, user_id) is not None:
        raise taken
    await check_email(svc, changes.get("user_email"))
    alias = key_fields.get("key_alias")
    if make_key and alias is not None and (await svc.store.find(KEYS, {"key_alias": alias}, limit=1))[1]:
        raise alias_taken(alias)
    try:
        user = await svc.store.insert(USERS, UserRecord(user_id=user_id, **changes))
    except Conflict:
        raise taken from None
    svc.accounts.changed("user", user_id)
    for team_id in user.teams:
        await join(svc, team_id, user)
    if not make_key:
        return NewUserMade(user, None, "")
    raw = new_raw_key()
    inherited = {k: getattr(user, k) for k in KEY_INHERITS}
    record = KeyRecord(token=hash_key(raw), key_name=key_name(raw), user_id=user_id, team_id=team_id,
                       created_by=who.user_id or "master", **inherited, **record_changes(key_fields, now))
    try:
        record = await svc.store.insert(KEYS, record)
    except Conflict:
        # The alias was taken since we looked: undo the user rather than leave it half made.
        await leave(svc, user_id, user.teams)
        await svc.store.delete(USERS, [user_id])
        svc.accounts.changed("user", user_id)
        raise alias_taken(alias) from None
    svc.accounts.changed("key", record.token)
    return NewUserMade(user, record, raw)


@documented(summary="A user, their keys and teams", query=[Query("user_id")])
async def info(request: web.Request) -> web.Response:
    who = await caller(request)
    svc = services(request)
    user_id = request.query.get("user_id") or who.user_id
    if not user_id:
        raise bad_request("pass ?user_id= to look up a user; this key belongs to no user", "user_id")
    if not who.is_admin and user_id != who.user_id:
        raise ApiError(403, f"You are not allowed to access this user's info. Your role={who.role}", "auth_error",
                       "user_id")
    user = await current_user(svc, user_id)
    keys, _ = await svc.store.find(KEYS, {"user_id": user_id})
    teams, _ = await svc.store.find(TEAMS, {"team_id": user.teams})
    teams.sort(key=lambda t: (t.team_alias is None, t.team_alias or "", t.team_id))
    now = svc.clock()
    keys = [await current(svc.ledger, "key", k.token, k, now) for k in keys]
    return json({"user_id": user_id, "user_info": view(user), "keys": [view(k) for k in keys],
                 "teams": [team_view(t) for t in teams]})


async def current_user(svc: Services, user_id: str) -> UserRecord:
    """/user/info's user: its spend as the budget counters have it now."""
    user = await svc.store.get(USERS, user_id)
    if user is None:
        raise ApiError(404, f"User {user_id} not found", "not_found_error", "user_id")
    return await current(svc.ledger, "user", user_id, user, svc.clock())


@documented(summary="Change a user", body=UpdateUser)
async def update(request: web.Request) -> web.Response:
    await admin(request)
    user = await update_user(services(request), await body(request, UpdateUser))
    return json({"user_id": user.user_id, "data": view(user)})


async def update_user(svc: Services, asked: UpdateUser) -> UserRecord:
    """/user/update's work: the user changed (made, for one that does not exist, as LiteLLM does), and its
    teams' members kept in step."""
    fields = set_fields(asked)
    user_id = fields.pop("user_id", None)
    if user_id is None:
        email = fields.get("user_email")
        if email is None:
            raise bad_request("Either user_id or user_email must be provided", "user_id")
        found, _ = await svc.store.find(USERS, {"user_email": email}, limit=1)
        user_id = found[0].user_id if found else uuid.uuid4().hex
    check_role(fields.get("user_role"))
    fields.pop("auto_create_key", None)
    before = await svc.store.get(USERS, user_id)
    if before is None:
        return await upsert(svc, user_id, fields)
    changes = user_changes(with_extra(fields, KEPT_USER_FIELDS, before.extra), svc.clock())
    if "teams" in changes:
        await check_teams(svc, changes["teams"])
    if changes.get("user_email") not in (None, before.user_email):
        await check_email(svc, changes["user_email"], user_id)
    user = await svc.store.update(USERS, user_id, changes)
    if user is None:
        raise not_found(user_id)
    svc.accounts.changed("user", user_id)
    if "teams" in changes:
        await leave(svc, user_id, [t for t in before.teams if t not in user.teams])
        for team_id in user.teams:
            if team_id not in before.teams:
                await join(svc, team_id, user)
    return user


async def upsert(svc: Services, user_id: str, fields: dict[str, Any]) -> UserRecord:
    """LiteLLM's /user/update for a user that does not exist: the admin's update makes it, with no key."""
    changes = user_changes(with_extra(fields, KEPT_USER_FIELDS, {}), svc.clock())
    await check_teams(svc, changes.get("teams", []))
    await check_email(svc, changes.get("user_email"))
    try:
        user = await svc.store.insert(USERS, UserRecord(user_id=user_id, **changes))
    except Conflict:
        raise ApiError(409, f"User with id {user_id} already exists", "conflict_error", "user_id") from None
    svc.accounts.changed("user", user_id)
    for team_id in user.teams:
        await join(svc, team_id, user)
    return user


@documented(summary="Delete users", body=DeleteUsers)
async def delete(request: web.Request) -> web.Response:
    await admin(request)
    return json(len(await delete_users(services(request), await body(request, DeleteUsers))))


async def delete_users(svc: Services, asked: DeleteUsers) -> list[str]:
    """/user/delete's work: the users, their keys, and their place in their teams; the ids deleted."""
    user_ids = list(dict.fromkeys(asked.user_ids))
    users, _ = await svc.store.find(USERS, {"user_id": user_ids})
    known = {u.user_id for u in users}
    for user_id in user_ids:
        if user_id not in known:
            raise not_found(user_id)
    # Keys first: whatever happens after, a deleted user's keys must stop working.
    for token in await svc.store.delete_where(KEYS, "user_id", user_ids):
        svc.accounts.changed("key", token)
    for user in users:
        await leave(svc, user.user_id, user.teams)
    deleted = await svc.store.delete(USERS, user_ids)
    for user_id in deleted:
        svc.accounts.changed("user", user_id)
    return deleted


@documented(summary="Users, a page at a time", query=[
    Query("page", "integer"), Query("page_size", "integer"), Query("role"),
    Query("user_ids", description="comma-separated")])
async def list_users(request: web.Request) -> web.Response:
    await admin(request)
    page = query_int(request, "page", 1, 1, 1_000_000)
    size = query_int(request, "page_size", 25, 1, 100)
    role = request.query.get("role")
    if role is not None:
        check_role(role)
    ids = [u for u in request.query["user_ids"].split(",") if u][:1000] if request.query.get("user_ids") else None
    users, total, counts = await find_users(services(request), UserFilter(user_role=role, user_ids=ids), page, size)
    return json({"users": [{**view(u), "key_count": counts.get(u.user_id, 0)} for u in users], "total": total,
                 "page": page, "page_size": size, "total_pages": total_pages(total, size)})


class UserFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which users a listing shows: a role, some ids, and `search`, a piece of the id, alias or email."""

    user_role: str | None = None
    user_ids: list[str] | None = None
    search: str | None = None


async def find_users(svc: Services, wanted: UserFilter, page: int,
                     size: int) -> tuple[list[UserRecord], int, dict[str, int]]:
    """One page of users, newest first, how many match, and each one's number of keys: /user/list's and the
    admin UI's listing."""
    where: dict[str, Any] = {}
    if wanted.user_role is not None:
        where["user_role"] = wanted.user_role
    if wanted.user_ids is not None:
        where["user_id"] = wanted.user_ids
    search = (("user_id", "user_alias", "user_email"), wanted.search) if wanted.search else None
    users, total = await svc.store.find(USERS, where, offset=(page - 1) * size, limit=size, search=search)
    counts = await svc.store.count_by(KEYS, "user_id", [u.user_id for u in users])
    return users, total, counts


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/user/new", new_user)
    app.router.add_get(f"{prefix}/user/info", info)
    app.router.add_post(f"{prefix}/user/update", update)
    app.router.add_post(f"{prefix}/user/delete", delete)
    app.router.add_get(f"{prefix}/user/list", list_users)
