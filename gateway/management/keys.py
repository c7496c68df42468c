"""/key/*: generate, info, update, delete, block, unblock, regenerate, list."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import durations
from gateway.accounts import hash_key, is_hashed, key_name, new_raw_key
from gateway.budget import windows
from gateway.budget.counters import current_period, spend_counter
from gateway.budget.current import current, window_usage
from gateway.durations import DurationError, check
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
from gateway.management.key_policy import KEY_POLICY, KeyPolicy
from gateway.openapi import Query, documented
from gateway.services import Services
from gateway.store.records import BudgetWindow, KeyRecord
from gateway.store.store import KEYS, ORGS, TEAMS, Conflict

RawKey = Annotated[str, msgspec.Meta(min_length=4, max_length=256)]
LIMITED = ("max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests")
LIMITED_DURATIONS = ("duration", "budget_duration")

log = logging.getLogger("gateway.management")


class KeptKeyFields(msgspec.Struct, kw_only=True):
    """Fields of LiteLLM's key requests the gateway keeps and shows back but does not act on."""

    agent_id: Any = UNSET
    allowed_cache_controls: Any = UNSET
    config: Any = UNSET
    permissions: Any = UNSET
    budget_fallbacks: Any = UNSET
    mcp_rpm_limit: Any = UNSET
    tag_rpm_limit: Any = UNSET
    guardrails: Any = UNSET
    policies: Any = UNSET
    prompts: Any = UNSET
    object_permission: Any = UNSET
    default_estimated_output_tokens: Any = UNSET
    default_estimated_output_tokens_per_model: Any = UNSET
    budget_id: Any = UNSET
    disable_global_guardrails: Any = UNSET
    enable_prompt_caching: Any = UNSET
    throttle_on_budget_exceeded: Any = UNSET
    enforced_params: Any = UNSET
    allowed_routes: Any = UNSET
    allowed_passthrough_routes: Any = UNSET
    allowed_vector_store_indexes: Any = UNSET
    rpm_limit_type: Any = UNSET
    tpm_limit_type: Any = UNSET
    router_settings: Any = UNSET
    access_group_ids: Any = UNSET
    send_invite_email: Any = UNSET
    key_type: Any = UNSET
    project_id: Any = UNSET
    temp_budget_increase: Any = UNSET
    temp_budget_expiry: Any = UNSET


KEPT_KEY_FIELDS = frozenset(KeptKeyFields.__struct_fields__)
ROTATION_FIELDS = frozenset({"auto_rotate", "rotation_interval"})


class BudgetLimit(msgspec.Struct, kw_only=True):
    budget_duration: Name
    max_budget: Money
    reset_at: Any = None  # the gateway sets it; one sent is ignored, as LiteLLM does


class KeyFields(KeptKeyFields, kw_only=True, forbid_unknown_fields=True):
    spend: Money | UnsetType = UNSET
    models: Names | UnsetType = UNSET
    aliases: dict[Name, Name] | UnsetType = UNSET
    max_budget: Money | None | UnsetType = UNSET
    soft_budget: Money | None | UnsetType = UNSET
    budget_duration: Name | None | UnsetType = UNSET
    duration: Name | None | UnsetType = UNSET
    key_alias: Name | None | UnsetType = UNSET
    user_id: Name | None | UnsetType = UNSET
    team_id: Name | None | UnsetType = UNSET
    organization_id: Name | None | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    tags: Names | UnsetType = UNSET
    tpm_limit: Count | None | UnsetType = UNSET
    rpm_limit: Count | None | UnsetType = UNSET
    max_parallel_requests: Count | None | UnsetType = UNSET
    model_max_budget: dict[Name, Any] | UnsetType = UNSET
    model_rpm_limit: dict[Name, Count] | UnsetType = UNSET
    model_tpm_limit: dict[Name, Count] | UnsetType = UNSET
    blocked: bool | None | UnsetType = UNSET
    budget_limits: Annotated[list[BudgetLimit], msgspec.Meta(max_length=20)] | UnsetType = UNSET
    auto_rotate: bool | UnsetType = UNSET
    rotation_interval: Name | UnsetType = UNSET


class GenerateKey(KeyFields):
    key: RawKey | UnsetType = UNSET


class UpdateKey(KeyFields):
    key: RawKey | UnsetType = UNSET  # or key_alias alone names the key


class RegenerateKey(KeyFields):
    key: RawKey | UnsetType = UNSET
    new_key: RawKey | UnsetType = UNSET
    grace_period: Name | None | UnsetType = UNSET


class KeyRef(msgspec.Struct, forbid_unknown_fields=True):
    key: RawKey


class DeleteKeys(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    keys: Annotated[list[RawKey], msgspec.Meta(max_length=1000)] | UnsetType = UNSET
    key_aliases: Annotated[list[Name], msgspec.Meta(max_length=1000)] | UnsetType = UNSET


def token_of(value: str) -> str:
    """A key as a client may name it, raw or already hashed, to the hash the store knows."""
    return hash_key(value) if value.startswith("sk-") or not is_hashed(value) else value


def record_changes(fields: dict[str, Any], now: float, existing: KeyRecord | None = None) -> dict[str, Any]:
    """Request fields to record columns: durations become times."""
    changes = {k: v for k, v in fields.items() if k not in ("duration", "key", "new_key", "grace_period")}
    if "budget_limits" in fields:
        changes["budget_limits"] = opened = windows.opened(
            [BudgetWindow(budget_duration=w.budget_duration.strip(), max_budget=w.max_budget)
             for w in fields["budget_limits"]], now)
        changes["budget_limits_reset_at"] = windows.soonest(opened)
    if "auto_rotate" in fields or "rotation_interval" in fields:
        auto = fields.get("auto_rotate", existing.auto_rotate if existing else False)
        interval = fields.get("rotation_interval", existing.rotation_interval if existing else None)
        if auto and not interval:
            raise bad_request("rotation_interval is required when auto_rotate is true", "rotation_interval")
        changes["key_rotation_at"] = durations.add(now, interval) if auto and interval else None
    if "duration" in fields:
        changes["expires"] = durations.add(now, fields["duration"]) if fields["duration"] else None
    if "budget_duration" in fields:
        budget = fields["budget_duration"]
        changes["budget_reset_at"] = durations.add(now, budget) if budget else None
    if changes.get("blocked") is None and "blocked" in changes:
        changes["blocked"] = False
    for column in ("models", "tags"):
        if column in changes and changes[column] is None:
            changes[column] = []
    return changes


def check_key_fields(fields: dict[str, Any]) -> None:
    """What body() cannot see: durations inside budget_limits, and the rotation interval."""
    seen: set[str] = set()
    for window in fields.get("budget_limits") or ():
        try:
            duration = check(window.budget_duration)
        except DurationError as exc:
            raise bad_request(str(exc), "budget_limits") from None
        if duration in seen:
            raise bad_request(f"budget_limits has two windows of budget_duration {duration}", "budget_limits")
        seen.add(duration)
    if "rotation_interval" in fields:
        try:
            check(fields["rotation_interval"])
        except DurationError as exc:
            raise bad_request(str(exc), "rotation_interval") from None


def apply_key_policy(svc: Services, fields: dict[str, Any]) -> dict[str, Any]:
    """litellm_settings.default_key_generate_params fill gaps; upperbound_key_generate_params cap."""
    settings = svc.config.litellm_settings
    merged = {**{k: v for k, v in settings.default_key_generate_params.items() if k in KeyFields.__struct_fields__},
              **fields}
    bounds = settings.upperbound_key_generate_params
    for name in (*LIMITED, *LIMITED_DURATIONS):
        if name not in bounds:
            continue
        value = merged.get(name)
        if value is None:
            # As in LiteLLM, a field left out takes the bound itself.
            merged[name] = bounds[name]
        elif (durations.add(0, value) > durations.add(0, bounds[name]) if name in LIMITED_DURATIONS
              else value > bounds[name]):
            raise bad_request(f"{name} is over max limit set in config - user_value={value}; "
                              f"max_value={bounds[name]}", name)
    return merged


async def check_team(svc: Services, fields: dict[str, Any]) -> None:
    """The key's team and organization must exist; a key of a team in an organization is in it too (LiteLLM
    has the key inherit the team's organization)."""
    team_id = fields.get("team_id")
    team = await svc.store.get(TEAMS, team_id) if team_id is not None else None
    if team_id is not None and team is None:
        raise bad_request(f"Team not found, passed team_id={team_id}", "team_id")
    org_id = fields.get("organization_id")
    if org_id is not None and await svc.store.get(ORGS, org_id) is None:
        raise bad_request(f"Organization not found for organization_id={org_id}", "organization_id")
    if team is not None and team.organization_id:
        if org_id is not None and org_id != team.organization_id:
            raise bad_request(f"organization_id={org_id} is not the organization of team={team_id} "
                              f"({team.organization_id})", "organization_id")
        fields["organization_id"] = team.organization_id


def alias_taken(alias: str | None) -> ApiError:
    return ApiError(400, f"Key with alias '{alias}' already exists. Unique key aliases across all keys are "
                    "required.", "bad_request_error", "key_alias")


def generated(record: KeyRecord, raw: str) -> dict[str, Any]:
    return {**view(record), "key": raw, "token_id": record.token}


def not_found(value: str) -> ApiError:
    return ApiError(404, "Key not found in database", "not_found_error", "key")


# Roles that may not make keys at all. Other users make keys of their own (LiteLLM's internal_user); a key
# with no user behind it makes none.
VIEW_ONLY_ROLES = frozenset({"internal_user_viewer", "proxy_admin_viewer"})


@documented(summary="Create a virtual key", body=GenerateKey)
async def generate(request: web.Request) -> web.Response:
    who = await caller(request)
    if who.role in VIEW_ONLY_ROLES or (not who.is_admin and who.user_id is None):
        await admin(request)  # refused, with the admin check's message
    record, raw = await generate_key(services(request), request.app[KEY_POLICY], who,
                                     await body(request, GenerateKey))
    return json(generated(record, raw))


async def generate_key(svc: Services, policy: KeyPolicy, who: Caller, asked: GenerateKey) -> tuple[KeyRecord, str]:
    """/key/generate's work, for a caller allowed to make keys: the stored record and the raw key."""
    sent = set_fields(asked)
    check_key_fields(sent)
    await policy.check_custom(sent)
    team = await svc.store.get(TEAMS, sent["team_id"]) if "team_id" in sent else None
    policy.check_caller(who, sent, team)
    if not who.is_admin and "user_id" not in sent:
        sent["user_id"] = who.user_id
    fields = with_extra(apply_key_policy(svc, sent), KEPT_KEY_FIELDS, {})
    raw = fields.pop("key", None) or new_raw_key()
    if not raw.startswith("sk-"):
        raise bad_request("Invalid key format. LiteLLM Virtual Key must start with 'sk-'.", "key")
    await check_team(svc, fields)
    now = svc.clock()
    record = KeyRecord(token=hash_key(raw), key_name=key_name(raw), created_by=who.user_id or "master",
                       **record_changes(fields, now))
    if record.key_alias is not None and (await svc.store.find(KEYS, {"key_alias": record.key_alias}))[1]:
        raise alias_taken(record.key_alias)
    try:
        record = await svc.store.insert(KEYS, record)
    except Conflict:
        raise (alias_taken(record.key_alias) if record.key_alias else
               bad_request("a key with this value already exists", "key")) from None
    svc.accounts.changed("key", record.token)
    return record, raw


@documented(summary="A key's record (the caller's own without ?key=)", query=[Query("key")])
async def info(request: web.Request) -> web.Response:
    who = await caller(request)
    svc = services(request)
    asked = request.query.get("key")
    if asked is None:
        if who.key is None:
            raise bad_request("pass ?key= to look up a key; the master key has no key record", "key")
        record = await svc.store.get(KEYS, who.key.token) or who.key
        asked = record.token
    else:
        found = await svc.store.get(KEYS, token_of(asked))
        if found is None:
            raise not_found(asked)
        record = found
        if not who.is_admin and not owns(who.key, record):
            raise ApiError(403, f"You are not allowed to access this key's info. Your role={who.role}",
                           "auth_error", "key")
    return json({"key": asked, "info": await key_details(svc, record)})


async def key_details(svc: Services, record: KeyRecord) -> dict[str, Any]:
    """/key/info's view of a key: its spend as the budget counters have it now, and each budget window's."""
    now = svc.clock()
    details = view(await current(svc.ledger, "key", record.token, record, now))
    details.pop("token", None)
    if record.budget_limits:
        with_spend = await svc.store.key_for_requests(record.token) or record
        usage = await window_usage(svc.ledger, with_spend, now)
        details["budget_limits_usage"] = {d: {"current_spend": round(v, 4)} for d, v in usage.items()}
    return details


def owns(own: KeyRecord | None, record: KeyRecord) -> bool:
    return own is not None and (own.token == record.token or (own.user_id is not None
                                                              and own.user_id == record.user_id))


@documented(summary="Change a key, named by key or key_alias", body=UpdateKey)
async def update(request: web.Request) -> web.Response:
    await admin(request)
    record, named = await update_key(services(request), await body(request, UpdateKey))
    return json({**view(record), "key": named})


async def update_key(svc: Services, asked: UpdateKey) -> tuple[KeyRecord, str]:
    """/key/update's work: the changed record, and the key as the request named it."""
    fields = set_fields(asked)
    check_key_fields(fields)
    raw = fields.pop("key", None)
    if raw is None:
        alias = fields.pop("key_alias", None)
        if alias is None:
            raise bad_request("either key or key_alias must be provided", "key")
        found, _ = await svc.store.find(KEYS, {"key_alias": alias}, limit=1)
        if not found:
            raise not_found(alias)
        token = found[0].token
        raw = alias
    else:
        token = token_of(raw)
    if "team_id" in fields or "organization_id" in fields:
        await check_team(svc, fields)
    existing = None
    if KEPT_KEY_FIELDS.intersection(fields) or ROTATION_FIELDS.intersection(fields):
        existing = await svc.store.get(KEYS, token)
        if existing is None:
            raise not_found(raw)
        fields = with_extra(fields, KEPT_KEY_FIELDS, existing.extra)
    try:
        record = await svc.store.update(KEYS, token, record_changes(fields, svc.clock(), existing))
    except Conflict:
        raise alias_taken(fields.get("key_alias")) from None
    if record is None:
        raise not_found(raw)
    svc.accounts.changed("key", token)
    return record, raw


@documented(summary="Delete keys by value or alias", body=DeleteKeys)
async def delete(request: web.Request) -> web.Response:
    await admin(request)
    return json({"deleted_keys": await delete_keys(services(request), await body(request, DeleteKeys))})


async def delete_keys(svc: Services, asked: DeleteKeys) -> list[str]:
    """/key/delete's work: the keys or aliases named, once at least one of them was deleted."""
    if (asked.keys is UNSET) == (asked.key_aliases is UNSET):
        raise bad_request("pass either keys or key_aliases", "keys")
    if asked.keys is not UNSET:
        named = list(asked.keys)
        tokens = [token_of(k) for k in named]
    else:
        named = list(asked.key_aliases)  # type: ignore[arg-type]
        found, _ = await svc.store.find(KEYS, {"key_alias": named})
        tokens = [r.token for r in found]
    deleted = await svc.store.delete(KEYS, tokens)
    if not deleted:
        raise ApiError(404, "No keys found", "not_found_error", "keys")
    for token in deleted:
        svc.accounts.changed("key", token)
    return named


async def _set_blocked(request: web.Request, blocked: bool) -> web.Response:
    await admin(request)
    ref = await body(request, KeyRef)
    return json(view(await set_blocked(services(request), ref.key, blocked)))


async def set_blocked(svc: Services, key: str, blocked: bool) -> KeyRecord:
    """/key/block's and /key/unblock's work, for a key named raw or by its hash."""
    token = token_of(key)
    record = await svc.store.update(KEYS, token, {"blocked": blocked})
    if record is None:
        raise not_found(key)
    svc.accounts.changed("key", token)
    return record


@documented(summary="Block a key", body=KeyRef)
async def block(request: web.Request) -> web.Response:
    return await _set_blocked(request, True)


@documented(summary="Unblock a key", body=KeyRef)
async def unblock(request: web.Request) -> web.Response:
    return await _set_blocked(request, False)


@documented(summary="Replace a key's value, keeping its settings", body=RegenerateKey)
async def regenerate(request: web.Request) -> web.Response:
    await admin(request)
    asked = await body(request, RegenerateKey)
    replaced, new_raw = await regenerate_named(services(request), request.match_info.get("key"), asked)
    return json(generated(replaced, new_raw))


async def regenerate_named(svc: Services, named: str | None, asked: RegenerateKey) -> tuple[KeyRecord, str]:
    """/key/regenerate's work: the key named (by the path, else the body) replaced; the new record and raw key."""
    fields = set_fields(asked)
    check_key_fields(fields)
    named = named or fields.get("key")
    if not named:
        raise bad_request("No key passed in.", "key")
    new_raw = fields.get("new_key") or new_raw_key()
    if not new_raw.startswith("sk-"):
        raise bad_request("New key must start with 'sk-'.", "new_key")
    old = await svc.store.get(KEYS, token_of(named))
    if old is None:
        raise not_found(named)
    replaced = await regenerate_key(svc, old, fields, new_raw)
    if replaced is None:
        raise not_found(named)
    return replaced, new_raw


async def regenerate_key(svc: Services, old: KeyRecord, fields: dict[str, Any], new_raw: str,
                         overrides: dict[str, Any] | None = None) -> KeyRecord | None:
    """/key/regenerate's work, shared with scheduled rotation: a new key in the old one's place, with
    `fields` changed; the old one goes now, or when `fields`' grace_period ends. None if the old key
    is gone."""
    now = svc.clock()
    grace = fields.get("grace_period")
    changes = {**record_changes(with_extra(dict(fields), KEPT_KEY_FIELDS, old.extra), now, old), **(overrides or {})}
    if "team_id" in changes or "organization_id" in changes:
        await check_team(svc, changes)
    new = msgspec.structs.replace(old, token=hash_key(new_raw), key_name=key_name(new_raw), updated_at=now,
                                  **changes)
    try:
        replaced = await svc.store.replace_key(old.token, new, durations.add(now, grace) if grace else None)
    except Conflict:
        raise bad_request("a key with this value already exists", "new_key") from None
    if replaced is None:
        return None
    await _carry_counter(svc, old, replaced, now)
    svc.accounts.changed("key", old.token)
    svc.accounts.changed("key", replaced.token)
    return replaced


async def _carry_counter(svc: Services, old: KeyRecord, new: KeyRecord, now: float) -> None:
    """The new key's budget counters start where the old one's are: requests answered but not yet in the store."""
    source, _ = spend_counter("key", old.token, old.budget_reset_at, old.budget_duration, now)
    target, _ = spend_counter("key", new.token, new.budget_reset_at, new.budget_duration, now)
    end, _ = current_period(new.budget_reset_at, new.budget_duration, now)
    pairs = [(source, target, end)]
    if old.budget_limits == new.budget_limits:
        for window in new.budget_limits:
            window_end = windows.period(window, now).end
            pairs.append((windows.counter_name(old.token, window.budget_duration, window_end),
                          windows.counter_name(new.token, window.budget_duration, window_end), window_end))
    try:
        for source, target, end in pairs:
            await svc.ledger.copy(source, target, end)
    except Exception as exc:  # noqa: BLE001 - the store carries the spend; the counter starts from it
        log.warning("regenerate: the budget counter was not carried over: %s: %s", type(exc).__name__, exc)


class KeyFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which keys a listing shows: columns that must equal a value, and `search`, a piece of the alias, user
    or team (any case)."""

    user_id: str | None = None
    team_id: str | None = None
    key_alias: str | None = None
    token: str | None = None
    blocked: bool | None = None
    search: str | None = None


SEARCHED = ("key_alias", "user_id", "team_id")


async def find_keys(svc: Services, wanted: KeyFilter, page: int, size: int) -> tuple[list[KeyRecord], int]:
    """One page of keys, newest first, and how many match in all: /key/list's and the admin UI's listing."""
    where: dict[str, Any] = {name: value for name in ("user_id", "team_id", "key_alias", "token", "blocked")
                             if (value := getattr(wanted, name)) is not None}
    search = (SEARCHED, wanted.search) if wanted.search else None
    return await svc.store.find(KEYS, where, offset=(page - 1) * size, limit=size, search=search)


@documented(summary="Keys, a page at a time", query=[
    Query("page", "integer"), Query("size", "integer"), Query("user_id"), Query("team_id"), Query("key_alias"),
    Query("key_hash"), Query("return_full_object", "boolean")])
async def list_keys(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    page = query_int(request, "page", 1, 1, 1_000_000)
    size = query_int(request, "size", 10, 1, 100)
    query = request.query
    wanted = KeyFilter(user_id=query.get("user_id"), team_id=query.get("team_id"), key_alias=query.get("key_alias"),
                       token=token_of(query["key_hash"]) if "key_hash" in query else None)
    records, total = await find_keys(svc, wanted, page, size)
    full = query.get("return_full_object", "false").lower() == "true"
    return json({"keys": [view(r) if full else r.token for r in records], "total_count": total,
                 "current_page": page, "total_pages": total_pages(total, size)})


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/key/generate", generate)
    app.router.add_get(f"{prefix}/key/info", info)
    app.router.add_post(f"{prefix}/key/update", update)
    app.router.add_post(f"{prefix}/key/delete", delete)
    app.router.add_post(f"{prefix}/key/block", block)
    app.router.add_post(f"{prefix}/key/unblock", unblock)
    app.router.add_post(f"{prefix}/key/regenerate", regenerate)
    app.router.add_post(prefix + "/key/{key}/regenerate", regenerate)
    app.router.add_get(f"{prefix}/key/list", list_keys)
