"""Access groups made through the API, as LiteLLM has them twice over:

- `/access_group/new`, `/access_group/list`, `/access_group/{name}/info`, `PUT /access_group/{name}/update`,
  `DELETE /access_group/{name}/delete`: a name for a list of model groups (LiteLLM tags its database
  deployments with the name; here the group is a record, and config deployments keep their own
  `model_info.access_groups`, which these routes list but do not change).
- `/v1/access_group` and its alias `/v1/unified_access_group` (POST, GET, GET/PUT/DELETE `/{id}`): the
  same record with an id, MCP servers and agents (kept, not acted on) and the keys and teams it is
  assigned to.

Either way the group grants its models to keys and teams on every instance: a write here is
recorded in the change log under the kind `access_group`, and each instance rebuilds its maps
(gateway/access_groups.py) from the store.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway.access_groups import AccessGroups
from gateway.durations import iso
from gateway.errors import ApiError, bad_request
from gateway.identity import Caller
from gateway.management.common import Name, Names, admin, body, json, services, set_fields
from gateway.openapi import documented
from gateway.services import Services
from gateway.store.records import AccessGroupRecord
from gateway.store.store import ACCESS_GROUPS, TEAMS, Conflict

Ids = Annotated[list[Name], msgspec.Meta(max_length=1000)]


class NewModelGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    access_group: Annotated[str, msgspec.Meta(max_length=256)]
    model_names: Names | None = None
    model_ids: Names | None = None


class UpdateModelGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    model_names: Names | None = None
    model_ids: Names | None = None


class NewAccessGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    access_group_name: Name
    description: str | None = None
    access_model_names: Names | None = None
    access_mcp_server_ids: Ids | None = None
    access_agent_ids: Ids | None = None
    assigned_team_ids: Ids | None = None
    assigned_key_ids: Ids | None = None


class UpdateAccessGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    access_group_name: Name | UnsetType = UNSET
    description: str | None | UnsetType = UNSET
    access_model_names: Names | UnsetType = UNSET
    access_mcp_server_ids: Ids | UnsetType = UNSET
    access_agent_ids: Ids | UnsetType = UNSET
    assigned_team_ids: Ids | UnsetType = UNSET
    assigned_key_ids: Ids | UnsetType = UNSET


def groups_of(svc: Services) -> AccessGroups:
    return svc.router.access_groups


async def changed(svc: Services, group_id: str) -> None:
    """This instance sees the change before answering; the change log carries it to the others."""
    await groups_of(svc).reload()
    svc.accounts.changed("access_group", group_id)


def resolve_models(svc: Services, model_names: list[str] | None, model_ids: list[str] | None) -> list[str]:
    """Model group names for the request: names must be groups the gateway serves, ids its deployments."""
    router = svc.router
    names = list(model_names or [])
    if not names and not model_ids:
        raise bad_request("model_names list is required and cannot be empty", "model_names")
    missing = [m for m in names if m not in router.groups and not router.knows(m)]
    if missing:
        raise bad_request(f"Model(s) not found: {', '.join(missing)}", "model_names")
    for model_id in model_ids or []:
        deployment = router.by_id.get(model_id)
        if deployment is None:
            raise bad_request(f"Model id(s) not found: {model_id}", "model_ids")
        names.append(deployment.group)
    return list(dict.fromkeys(names))


def info_of(svc: Services, name: str) -> dict[str, Any] | None:
    """LiteLLM's AccessGroupInfo: the group's model names and how many deployments serve them."""
    groups = groups_of(svc)
    models = groups.by_name.get(name)
    if models is None:
        return None
    stored = groups.stored_named(name)
    count = groups.config_deployments.get(name, 0)
    if stored is not None:
        count += sum(len(svc.router.groups.get(m, [])) for m in stored.access_model_names)
    return {"access_group": name, "model_names": sorted(models), "deployment_count": count}


def taken(name: str) -> ApiError:
    return ApiError(409, f"Access group '{name}' already exists", "conflict_error", "access_group")


async def _insert(svc: Services, record: AccessGroupRecord) -> AccessGroupRecord:
    if record.access_group_name in groups_of(svc).config:
        raise taken(record.access_group_name)
    try:
        record = await svc.store.insert(ACCESS_GROUPS, record)
    except Conflict:
        raise taken(record.access_group_name) from None
    await changed(svc, record.access_group_id)
    return record


@documented(summary="Create an access group of model groups", body=NewModelGroup)
async def new_model_group(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    asked = await body(request, NewModelGroup)
    if not asked.access_group.strip():
        raise bad_request("access_group is required and cannot be empty", "access_group")
    models = resolve_models(svc, asked.model_names, asked.model_ids)
    if asked.access_group in groups_of(svc).by_name:
        raise ApiError(409, f"Access group '{asked.access_group}' already exists. Use PUT "
                       f"/access_group/{asked.access_group}/update to modify it.", "conflict_error", "access_group")
    await _insert(svc, AccessGroupRecord(access_group_id=str(uuid.uuid4()), access_group_name=asked.access_group,
                                         access_model_names=models, created_by=_by(who), updated_by=_by(who)))
    return json({"access_group": asked.access_group, "model_names": asked.model_names,
                 "model_ids": asked.model_ids, "models_updated": _deployments(svc, models)})


@documented(summary="Every access group and its models")
async def list_model_groups(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    found = [info_of(svc, name) for name in sorted(groups_of(svc).by_name)]
    return json({"access_groups": [f for f in found if f is not None]})


def _name(request: web.Request) -> str:
    return request.match_info["access_group"]


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"Access group '{name}' not found", "not_found_error", "access_group")


def _stored(svc: Services, name: str) -> AccessGroupRecord:
    """A group made through the API; one only in config.yaml is changed there."""
    record = groups_of(svc).stored_named(name)
    if record is None:
        if name in groups_of(svc).config:
            raise bad_request(f"Access group '{name}' is defined by model_info.access_groups in config.yaml; "
                              "change it there", "access_group")
        raise _not_found(name)
    return record


@documented(summary="One access group and its models")
async def model_group_info(request: web.Request) -> web.Response:
    await admin(request)
    found = info_of(services(request), _name(request))
    if found is None:
        raise _not_found(_name(request))
    return json(found)


@documented(summary="Change an access group's models", body=UpdateModelGroup)
async def update_model_group(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    record = _stored(svc, _name(request))
    asked = await body(request, UpdateModelGroup)
    models = resolve_models(svc, asked.model_names, asked.model_ids)
    await svc.store.update(ACCESS_GROUPS, record.access_group_id,
                           {"access_model_names": models, "updated_by": _by(who)})
    await changed(svc, record.access_group_id)
    return json({"access_group": record.access_group_name, "model_names": asked.model_names,
                 "model_ids": asked.model_ids, "models_updated": _deployments(svc, models)})


@documented(summary="Delete an access group")
async def delete_model_group(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    record = _stored(svc, _name(request))
    await svc.store.delete(ACCESS_GROUPS, [record.access_group_id])
    await changed(svc, record.access_group_id)
    name = record.access_group_name
    return json({"access_group": name, "models_updated": _deployments(svc, record.access_model_names),
                 "message": f"Access group '{name}' deleted successfully"})


def _deployments(svc: Services, models: list[str]) -> int:
    return sum(len(svc.router.groups.get(m, [])) for m in models)


def _by(who: Caller) -> str | None:
    return who.user_id


def unified_view(record: AccessGroupRecord) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(record)
    data["created_at"] = iso(record.created_at)
    data["updated_at"] = iso(record.updated_at)
    return data


async def _check_teams(svc: Services, team_ids: list[str] | None) -> None:
    if not team_ids:
        return
    teams, _ = await svc.store.find(TEAMS, {"team_id": team_ids})
    missing = sorted(set(team_ids) - {t.team_id for t in teams})
    if missing:
        raise bad_request(f"Unknown team ids: {', '.join(missing)}", "assigned_team_ids")


@documented(summary="Create an access group (models, MCP servers, agents, keys, teams)", body=NewAccessGroup)
async def create(request: web.Request) -> web.Response:
    who = await admin(request)
    return json(unified_view(await create_group(services(request), who, await body(request, NewAccessGroup))),
                status=201)


async def create_group(svc: Services, who: Caller, asked: NewAccessGroup) -> AccessGroupRecord:
    """/v1/access_group's work: the group, served on this instance before it returns."""
    await _check_teams(svc, asked.assigned_team_ids)
    return await _insert(svc, AccessGroupRecord(
        access_group_id=str(uuid.uuid4()), access_group_name=asked.access_group_name,
        description=asked.description, access_model_names=asked.access_model_names or [],
        access_mcp_server_ids=asked.access_mcp_server_ids or [], access_agent_ids=asked.access_agent_ids or [],
        assigned_team_ids=asked.assigned_team_ids or [], assigned_key_ids=asked.assigned_key_ids or [],
        created_by=_by(who), updated_by=_by(who)))


@documented(summary="Every access group made through the API")
async def list_all(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    records = sorted(groups_of(svc).stored, key=lambda r: r.created_at, reverse=True)
    return json([unified_view(r) for r in records])


async def by_id(svc: Services, group_id: str) -> AccessGroupRecord:
    record = await svc.store.get(ACCESS_GROUPS, group_id)
    if record is None:
        raise _not_found(group_id)
    return record


@documented(summary="One access group by id")
async def get(request: web.Request) -> web.Response:
    await admin(request)
    return json(unified_view(await by_id(services(request), request.match_info["access_group_id"])))


@documented(summary="Change an access group", body=UpdateAccessGroup)
async def put(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    group_id = request.match_info["access_group_id"]
    await by_id(svc, group_id)
    return json(unified_view(await update_group(svc, who, group_id, await body(request, UpdateAccessGroup))))


async def update_group(svc: Services, who: Caller, group_id: str, asked: UpdateAccessGroup) -> AccessGroupRecord:
    """PUT /v1/access_group/{id}'s work: the fields sent changed."""
    fields = set_fields(asked)
    await _check_teams(svc, fields.get("assigned_team_ids"))
    name = fields.get("access_group_name")
    if name is not None and name in groups_of(svc).config:
        raise taken(name)
    try:
        record = await svc.store.update(ACCESS_GROUPS, group_id, {**fields, "updated_by": _by(who)})
    except Conflict:
        raise taken(str(name)) from None
    if record is None:
        raise _not_found(group_id)
    await changed(svc, group_id)
    return record


@documented(summary="Delete an access group")
async def remove(request: web.Request) -> web.Response:
    await admin(request)
    await delete_group(services(request), request.match_info["access_group_id"])
    return web.Response(status=204)


async def delete_group(svc: Services, group_id: str) -> None:
    """DELETE /v1/access_group/{id}'s work."""
    if not await svc.store.delete(ACCESS_GROUPS, [group_id]):
        raise _not_found(group_id)
    await changed(svc, group_id)


async def find_groups(svc: Services, search: str | None, page: int, size: int
                      ) -> tuple[list[AccessGroupRecord], int]:
    """One page of the groups made through the API, newest first, and how many match: the admin UI's listing."""
    found = (("access_group_name", "access_group_id"), search) if search else None
    return await svc.store.find(ACCESS_GROUPS, {}, offset=(page - 1) * size, limit=size, search=found)


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/access_group/new", new_model_group)
    app.router.add_get(f"{prefix}/access_group/list", list_model_groups)
    app.router.add_get(prefix + "/access_group/{access_group}/info", model_group_info)
    app.router.add_put(prefix + "/access_group/{access_group}/update", update_model_group)
    app.router.add_delete(prefix + "/access_group/{access_group}/delete", delete_model_group)
    for base in ("/v1/access_group", "/v1/unified_access_group"):
        app.router.add_post(prefix + base, create)
        app.router.add_get(prefix + base, list_all)
        app.router.add_get(prefix + base + "/{access_group_id}", get)
        app.router.add_put(prefix + base + "/{access_group_id}", put)
        app.router.add_delete(prefix + base + "/{access_group_id}", remove)
