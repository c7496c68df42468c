"""/key/*: generate, info, update, delete, block, unblock, regenerate, list."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import durations
from gateway.accounts import hash_key, is_hashed, key_name, new_raw_key
from gateway.budget.counters import current_period, spend_counter
from gateway.budget.current import current
from gateway.errors import ApiError, bad_request
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
from gateway.openapi import Query, documented
from gateway.services import Services
from gateway.store.records import KeyRecord
from gateway.store.store import KEYS, TEAMS, Conflict

RawKey = Annotated[str, msgspec.Meta(min_length=4, max_length=256)]
LIMITED = ("max_budget", "soft_budget", "tpm_limit", "rpm_limit", "max_parallel_requests")
LIMITED_DURATIONS = ("duration", "budget_duration")

log = logging.getLogger("gateway.management")


class KeptKeyFields(msgspec.Struct, kw_only=True):
    """Fields of LiteLLM's key requests the gateway keeps and shows back but does not act on."""

    agent_id: Any = UNSET
    budget_limits: Any = UNSET
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
    auto_rotate: Any = UNSET
    rotation_interval: Any = UNSET
    organization_id: Any = UNSET
    project_id: Any = UNSET
    temp_budget_increase: Any = UNSET
    temp_budget_expiry: Any = UNSET


KEPT_KEY_FIELDS = frozenset(KeptKeyFields.__struct_fields__)


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
    metadata: dict[str, Any] | UnsetType = UNSET
    tags: Names | UnsetType = UNSET
    tpm_limit: Count | None | UnsetType = UNSET
    rpm_limit: Count | None | UnsetType = UNSET
    max_parallel_requests: Count | None | UnsetType = UNSET
    model_max_budget: dict[Name, Any] | UnsetType = UNSET
    model_rpm_limit: dict[Name, Count] | UnsetType = UNSET
    model_tpm_limit: dict[Name, Count] | UnsetType = UNSET
    blocked: bool | None | UnsetType = UNSET


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


def record_changes(fields: dict[str, Any], now: float) -> dict[str, Any]:
    """Request fields to record columns: durations become times."""
    changes = {k: v for k, v in fields.items() if k not in ("duration", "key", "new_key", "grace_period")}
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


async def check_team(svc: Services, team_id: str | None) -> None:
    if team_id is not None and await svc.store.get(TEAMS, team_id) is None:
        raise bad_request(f"Team not found, passed team_id={team_id}", "team_id")


def alias_taken(alias: str | None) -> ApiError:
    return ApiError(400, f"Key with alias '{alias}' already exists. Unique key aliases across all keys are "
                    "required.", "bad_request_error", "key_alias")


def generated(record: KeyRecord, raw: str) -> dict[str, Any]:
    return {**view(record), "key": raw, "token_id": record.token}


def not_found(value: str) -> ApiError:
    return ApiError(404, "Key not found in database", "not_found_error", "key")


@documented(summary="Create a virtual key", body=GenerateKey)
async def generate(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    fields = with_extra(apply_key_policy(svc, set_fields(await body(request, GenerateKey))), KEPT_KEY_FIELDS, {})
    raw = fields.pop("key", None) or new_raw_key()
    if not raw.startswith("sk-"):
        raise bad_request("Invalid key format. LiteLLM Virtual Key must start with 'sk-'.", "key")
    await check_team(svc, fields.get("team_id"))
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
    return json(generated(record, raw))


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
        if not who.is_admin and not _owns(who.key, record):
            raise ApiError(403, f"You are not allowed to access this key's info. Your role={who.role}",
                           "auth_error", "key")
    details = view(await current(svc.ledger, "key", record.token, record, svc.clock()))
    details.pop("token", None)
    return json({"key": asked, "info": details})


def _owns(own: KeyRecord | None, record: KeyRecord) -> bool:
    return own is not None and (own.token == record.token or (own.user_id is not None
                                                              and own.user_id == record.user_id))


@documented(summary="Change a key, named by key or key_alias", body=UpdateKey)
async def update(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    fields = set_fields(await body(request, UpdateKey))
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
    if "team_id" in fields:
        await check_team(svc, fields["team_id"])
    if KEPT_KEY_FIELDS.intersection(fields):
        existing = await svc.store.get(KEYS, token)
        if existing is None:
            raise not_found(raw)
        fields = with_extra(fields, KEPT_KEY_FIELDS, existing.extra)
    try:
        record = await svc.store.update(KEYS, token, record_changes(fields, svc.clock()))
    except Conflict:
        raise alias_taken(fields.get("key_alias")) from None
    if record is None:
        raise not_found(raw)
    svc.accounts.changed("key", token)
    return json({**view(record), "key": raw})


@documented(summary="Delete keys by value or alias", body=DeleteKeys)
async def delete(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    asked = await body(request, DeleteKeys)
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
    return json({"deleted_keys": named})


async def _set_blocked(request: web.Request, blocked: bool) -> web.Response:
    await admin(request)
    svc = services(request)
    ref = await body(request, KeyRef)
    token = token_of(ref.key)
    record = await svc.store.update(KEYS, token, {"blocked": blocked})
    if record is None:
        raise not_found(ref.key)
    svc.accounts.changed("key", token)
    return json(view(record))


@documented(summary="Block a key", body=KeyRef)
async def block(request: web.Request) -> web.Response:
    return await _set_blocked(request, True)


@documented(summary="Unblock a key", body=KeyRef)
async def unblock(request: web.Request) -> web.Response:
    return await _set_blocked(request, False)


@documented(summary="Replace a key's value, keeping its settings", body=RegenerateKey)
async def regenerate(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    fields = set_fields(await body(request, RegenerateKey))
    named = request.match_info.get("key") or fields.get("key")
    if not named:
        raise bad_request("No key passed in.", "key")
    new_raw = fields.get("new_key") or new_raw_key()
    if not new_raw.startswith("sk-"):
        raise bad_request("New key must start with 'sk-'.", "new_key")
    old = await svc.store.get(KEYS, token_of(named))
    if old is None:
        raise not_found(named)
    now = svc.clock()
    grace = fields.get("grace_period")
    changes = record_changes(with_extra(fields, KEPT_KEY_FIELDS, old.extra), now)
    if "team_id" in changes:
        await check_team(svc, changes["team_id"])
    new = msgspec.structs.replace(old, token=hash_key(new_raw), key_name=key_name(new_raw), updated_at=now,
                                  **changes)
    try:
        replaced = await svc.store.replace_key(old.token, new, durations.add(now, grace) if grace else None)
    except Conflict:
        raise bad_request("a key with this value already exists", "new_key") from None
    if replaced is None:
        raise not_found(named)
    await _carry_counter(svc, old, replaced, now)
    svc.accounts.changed("key", old.token)
    svc.accounts.changed("key", replaced.token)
    return json(generated(replaced, new_raw))


async def _carry_counter(svc: Services, old: KeyRecord, new: KeyRecord, now: float) -> None:
    """The new key's budget counter starts where the old one's is: requests answered but not yet in the store."""
    source, _ = spend_counter("key", old.token, old.budget_reset_at, old.budget_duration, now)
    target, _ = spend_counter("key", new.token, new.budget_reset_at, new.budget_duration, now)
    end, _ = current_period(new.budget_reset_at, new.budget_duration, now)
    try:
        await svc.ledger.copy(source, target, end)
    except Exception as exc:  # noqa: BLE001 - the store carries the spend; the counter starts from it
        log.warning("regenerate: the budget counter was not carried over: %s: %s", type(exc).__name__, exc)


@documented(summary="Keys, a page at a time", query=[
    Query("page", "integer"), Query("size", "integer"), Query("user_id"), Query("team_id"), Query("key_alias"),
    Query("key_hash"), Query("return_full_object", "boolean")])
async def list_keys(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    page = query_int(request, "page", 1, 1, 1_000_000)
    size = query_int(request, "size", 10, 1, 100)
    where = {name: request.query[name] for name in ("user_id", "team_id", "key_alias") if name in request.query}
    if "key_hash" in request.query:
        where["token"] = token_of(request.query["key_hash"])
    records, total = await svc.store.find(KEYS, where, offset=(page - 1) * size, limit=size)
    full = request.query.get("return_full_object", "false").lower() == "true"
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
