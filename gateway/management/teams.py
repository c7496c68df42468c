"""/team/*: new, info, update, delete, list, member_add, member_delete, block, unblock.

A membership is written twice, as LiteLLM keeps it: in the team's
`members_with_roles` and in the user's `teams`. The helpers here keep the two
in step; /user/* uses them too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import durations
from gateway.access import EVERY_MODEL, allows
from gateway.budget.current import current
from gateway.errors import ApiError, bad_request
from gateway.identity import PROXY_ADMIN_USER, Caller
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
from gateway.store.records import TeamMember, TeamRecord, UserRecord
from gateway.store.store import KEYS, ORGS, TEAMS, USERS, Conflict

MAX_MEMBERS = 1000


class Member(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Literal["admin", "user"] = "user"
    user_id: Name | None = None
    user_email: Name | None = None


Members = Annotated[list[Member], msgspec.Meta(max_length=MAX_MEMBERS)]
TeamIds = Annotated[list[Name], msgspec.Meta(min_length=1, max_length=1000)]


class KeptTeamFields(msgspec.Struct, kw_only=True):
    """Fields of LiteLLM's team requests the gateway keeps and shows back but does not act on."""

    admins: Any = UNSET
    members: Any = UNSET
    team_member_permissions: Any = UNSET
    model_aliases: Any = UNSET
    tags: Any = UNSET
    guardrails: Any = UNSET
    policies: Any = UNSET
    prompts: Any = UNSET
    object_permission: Any = UNSET
    allowed_passthrough_routes: Any = UNSET
    disable_global_guardrails: Any = UNSET
    secret_manager_settings: Any = UNSET
    model_rpm_limit: Any = UNSET
    rpm_limit_type: Any = UNSET
    tpm_limit_type: Any = UNSET
    model_tpm_limit: Any = UNSET
    default_estimated_output_tokens: Any = UNSET
    default_estimated_output_tokens_per_model: Any = UNSET
    mcp_rpm_limit: Any = UNSET
    team_member_budget: Any = UNSET
    team_member_rpm_limit: Any = UNSET
    team_member_tpm_limit: Any = UNSET
    team_member_key_duration: Any = UNSET
    team_member_budget_duration: Any = UNSET
    allowed_vector_store_indexes: Any = UNSET
    enforced_batch_output_expires_after: Any = UNSET
    enforced_file_expires_after: Any = UNSET
    soft_budget: Any = UNSET
    router_settings: Any = UNSET
    access_group_ids: Any = UNSET
    budget_limits: Any = UNSET
    default_team_member_models: Any = UNSET


KEPT_TEAM_FIELDS = frozenset(KeptTeamFields.__struct_fields__)


class TeamFields(KeptTeamFields, kw_only=True, forbid_unknown_fields=True):
    team_alias: Name | None | UnsetType = UNSET
    models: Names | UnsetType = UNSET
    max_budget: Money | None | UnsetType = UNSET
    budget_duration: Name | None | UnsetType = UNSET
    tpm_limit: Count | None | UnsetType = UNSET
    rpm_limit: Count | None | UnsetType = UNSET
    max_parallel_requests: Count | None | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    blocked: bool | None | UnsetType = UNSET
    # "" takes a team out of its organization (LiteLLM's /team/update).
    organization_id: Annotated[str, msgspec.Meta(max_length=256)] | None | UnsetType = UNSET


class NewTeam(TeamFields):
    team_id: Name | UnsetType = UNSET
    members_with_roles: Members | UnsetType = UNSET


class UpdateTeam(TeamFields):
    team_id: Name


class TeamRef(msgspec.Struct, forbid_unknown_fields=True):
    team_id: Name


class DeleteTeams(msgspec.Struct, forbid_unknown_fields=True):
    team_ids: TeamIds


class AddMembers(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    team_id: Name
    member: Member | Members


class TeamModels(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    team_id: Name
    models: Names


class UpdateMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    team_id: Name
    user_id: Name | None = None
    user_email: Name | None = None
    role: Literal["admin", "user"] | None = None


class RemoveMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    team_id: Name
    user_id: Name | None = None
    user_email: Name | None = None


def member_view(member: TeamMember) -> dict[str, Any]:
    # TeamMember omits its defaults when stored; LiteLLM always shows all three fields.
    return {"role": member.role, "user_id": member.user_id, "user_email": member.user_email}


def team_view(record: TeamRecord) -> dict[str, Any]:
    data = view(record)
    data["members_with_roles"] = [member_view(m) for m in record.members_with_roles]
    return data


def not_found(team_id: str) -> ApiError:
    return ApiError(404, f"Team not found, passed team_id={team_id}", "not_found_error", "team_id")


async def check_organization(svc: Services, team: TeamRecord, moving: bool) -> None:
    """A team in an organization stays within it, as LiteLLM checks when a team joins one: its models among
    the organization's (unless the organization has every model), its budget and rate limits no larger."""
    org_id = team.organization_id
    if not org_id:
        return
    org = await svc.store.get(ORGS, org_id)
    if org is None:
        raise ApiError(400 if not moving else 404, f"Organization not found for organization_id={org_id}",
                       "bad_request_error" if not moving else "not_found_error", "organization_id")
    verb = "move team to" if moving else "create team in"
    groups = svc.router.access_groups.by_name
    if org.models and not any(m in EVERY_MODEL for m in org.models):
        if not team.models:
            raise ApiError(403, f"Cannot {verb} organization. Team has access to all proxy models, but the "
                           "organization does not.", "auth_error", "models")
        for model in team.models:
            if not allows(org.models, model, groups):
                raise ApiError(403, f"Cannot {verb} organization. org not allowed to access model. This org can "
                               f"only access models={org.models!r}. Tried to access {model}", "auth_error", "models")
    for field in ("max_budget", "tpm_limit", "rpm_limit"):
        mine, theirs = getattr(team, field), getattr(org, field)
        if mine and theirs and mine > theirs:
            raise ApiError(403, f"Cannot {verb} organization. Team has {field} {mine} that is greater than the "
                           f"organization's {field} {theirs}.", "auth_error", field)


def team_changes(fields: dict[str, Any], now: float) -> dict[str, Any]:
    """Request fields to record columns: a budget duration also sets when the budget next resets."""
    changes = {k: v for k, v in fields.items() if k not in ("team_id", "members_with_roles")}
    if "budget_duration" in fields:
        budget = fields["budget_duration"]
        changes["budget_reset_at"] = durations.add(now, budget) if budget else None
    if "blocked" in changes and changes["blocked"] is None:
        changes["blocked"] = False
    if changes.get("organization_id") == "":
        changes["organization_id"] = None
    return changes


async def existing(svc: Services, team_id: str) -> TeamRecord:
    team = await svc.store.get(TEAMS, team_id)
    if team is None:
        raise not_found(team_id)
    return team


async def find_user(svc: Services, user_id: str | None, user_email: str | None) -> UserRecord | None:
    """The user a member names: by id when it has one, else by email."""
    if user_id is not None:
        return await svc.store.get(USERS, user_id)
    if user_email is not None:
        found, _ = await svc.store.find(USERS, {"user_email": user_email}, limit=1)
        return found[0] if found else None
    return None


def named(member: TeamMember, user_id: str | None, user_email: str | None) -> bool:
    """Whether the member is the one named: by user_id when given, else by user_email."""
    if user_id is not None:
        return member.user_id == user_id
    return user_email is not None and member.user_email == user_email


def is_member(team: TeamRecord, user_id: str | None, user_email: str | None) -> bool:
    return any(named(m, user_id, user_email) for m in team.members_with_roles)


async def enrol(svc: Services, team_id: str, member: Member, user: UserRecord | None) -> UserRecord:
    """The member's user, created when missing, with `team_id` among its teams."""
    if user is None:
        fresh = UserRecord(user_id=member.user_id or uuid.uuid4().hex, user_email=member.user_email,
                           teams=[team_id])
        try:
            user = await svc.store.insert(USERS, fresh)
        except Conflict:
            # Created by someone else since we looked: join that one instead.
            user = await svc.store.get(USERS, fresh.user_id)
            if user is None:
                raise bad_request(f"user {fresh.user_id} could not be created; try again", "member") from None
    if team_id not in user.teams:
        user = await svc.store.modify(
            USERS, user.user_id, lambda u: None if team_id in u.teams else {"teams": [*u.teams, team_id]}) or user
    svc.accounts.changed("user", user.user_id)
    return user


async def leave(svc: Services, user_id: str, team_ids: list[str]) -> None:
    """Take a user out of these teams' members; the caller sees to the user's own `teams`."""
    def without(team: TeamRecord) -> dict[str, Any] | None:
        kept = [m for m in team.members_with_roles if m.user_id != user_id]
        return {"members_with_roles": kept} if len(kept) != len(team.members_with_roles) else None

    for team_id in team_ids:
        await svc.store.modify(TEAMS, team_id, without)
        svc.accounts.changed("team", team_id)


async def join(svc: Services, team_id: str, user: UserRecord, role: str = "user") -> None:
    """Put a user among an existing team's members, unless already there; the caller sees to `teams`."""
    member = TeamMember(role=role, user_id=user.user_id, user_email=user.user_email)
    await svc.store.modify(TEAMS, team_id, lambda team: None if is_member(team, user.user_id, None)
                           else {"members_with_roles": [*team.members_with_roles, member]})
    svc.accounts.changed("team", team_id)


def _admitted(who: Caller, members: list[Member], svc: Services) -> list[Member]:
    """As in LiteLLM, whoever makes a team is its admin: a key's user, or for the master key the proxy
    admin's user `default_user_id` (unless general_settings.disable_auto_add_proxy_admin_to_teams)."""
    maker = who.user_id
    if maker is None and who.is_master and not svc.config.general_settings.disable_auto_add_proxy_admin_to_teams:
        maker = PROXY_ADMIN_USER
    if maker is None or any(m.user_id == maker for m in members):
        return members
    return [*members, Member(role="admin", user_id=maker)]


def _check_members(members: list[Member]) -> None:
    seen: set[tuple[str, str]] = set()
    for member in members:
        if member.user_id is None and member.user_email is None:
            raise bad_request("a team member needs a user_id or a user_email", "member")
        ref = ("id", member.user_id) if member.user_id is not None else ("email", member.user_email or "")
        if ref in seen:
            raise bad_request(f"user {ref[1]} is listed more than once", "member")
        seen.add(ref)


@documented(summary="Create a team", body=NewTeam)
async def new_team(request: web.Request) -> web.Response:
    who = await admin(request)
    return json(team_view(await create_team(services(request), who, await body(request, NewTeam))))


async def create_team(svc: Services, who: Caller, asked: NewTeam) -> TeamRecord:
    """/team/new's work: the team, with its members enrolled (each made a user when missing)."""
    fields = with_extra(set_fields(asked), KEPT_TEAM_FIELDS, {})
    team_id = fields.get("team_id") or uuid.uuid4().hex
    members = _admitted(who, list(fields.get("members_with_roles", [])), svc)
    _check_members(members)
    taken = ApiError(400, f"Team id = {team_id} already exists. Please use a different team id.",
                     "bad_request_error", "team_id")
    if await svc.store.get(TEAMS, team_id) is not None:
        raise taken
    fresh = TeamRecord(team_id=team_id, **team_changes(fields, svc.clock()))
    await check_organization(svc, fresh, moving=False)
    users = [await find_user(svc, m.user_id, m.user_email) for m in members]
    try:
        team = await svc.store.insert(TEAMS, fresh)
    except Conflict:
        raise taken from None
    enrolled = [await enrol(svc, team_id, m, u) for m, u in zip(members, users)]
    if enrolled:
        roster = [TeamMember(role=m.role, user_id=u.user_id, user_email=m.user_email or u.user_email)
                  for m, u in zip(members, enrolled)]
        team = await svc.store.update(TEAMS, team_id, {"members_with_roles": roster}) or team
    svc.accounts.changed("team", team_id)
    return team


@documented(summary="A team and its members", query=[Query("team_id")])
async def info(request: web.Request) -> web.Response:
    who = await caller(request)
    svc = services(request)
    own = who.key.team_id if who.key is not None else None
    team_id = request.query.get("team_id") or own
    if not team_id:
        raise bad_request("Malformed request. No team id passed in.", "team_id")
    if not who.is_admin and team_id != own:
        raise ApiError(403, f"User={who.user_id or who.label} not authorized to access this team={team_id}",
                       "auth_error", "team_id")
    team = await current_team(svc, team_id)
    keys, _ = await svc.store.find(KEYS, {"team_id": team_id})
    now = svc.clock()
    keys = [await current(svc.ledger, "key", k.token, k, now) for k in keys]
    return json({"team_id": team_id, "team_info": team_view(team), "keys": [view(k) for k in keys],
                 "team_memberships": []})


async def current_team(svc: Services, team_id: str) -> TeamRecord:
    """/team/info's team: its spend as the budget counters have it now."""
    return await current(svc.ledger, "team", team_id, await existing(svc, team_id), svc.clock())


@documented(summary="Change a team", body=UpdateTeam)
async def update(request: web.Request) -> web.Response:
    await admin(request)
    team = await update_team(services(request), await body(request, UpdateTeam))
    return json({"team_id": team.team_id, "data": team_view(team)})


async def update_team(svc: Services, asked: UpdateTeam) -> TeamRecord:
    """/team/update's work: the fields sent changed, checked against the team's organization."""
    fields = set_fields(asked)
    team_id = fields["team_id"]
    before = await existing(svc, team_id)
    if KEPT_TEAM_FIELDS.intersection(fields):
        fields = with_extra(fields, KEPT_TEAM_FIELDS, before.extra)
    changes = team_changes(fields, svc.clock())
    after = msgspec.structs.replace(before, **changes)
    if after.organization_id and (after.organization_id != before.organization_id
                                  or {"models", "max_budget", "tpm_limit", "rpm_limit"} & set(changes)):
        await check_organization(svc, after, moving=True)
    team = await svc.store.update(TEAMS, team_id, changes)
    if team is None:
        raise not_found(team_id)
    svc.accounts.changed("team", team_id)
    return team


@documented(summary="Delete teams", body=DeleteTeams)
async def delete(request: web.Request) -> web.Response:
    await admin(request)
    return json({"deleted_teams": await delete_teams(services(request), await body(request, DeleteTeams))})


async def delete_teams(svc: Services, asked: DeleteTeams) -> list[str]:
    """/team/delete's work: the teams, their keys, and their place in their members' `teams`."""
    team_ids = list(dict.fromkeys(asked.team_ids))
    teams, _ = await svc.store.find(TEAMS, {"team_id": team_ids})
    missing = [t for t in team_ids if t not in {team.team_id for team in teams}]
    if missing:
        raise not_found(missing[0])
    for token in await svc.store.delete_where(KEYS, "team_id", team_ids):
        svc.accounts.changed("key", token)
    member_ids = {m.user_id for team in teams for m in team.members_with_roles if m.user_id is not None}
    users, _ = await svc.store.find(USERS, {"user_id": sorted(member_ids)})
    for user in users:
        kept = [t for t in user.teams if t not in team_ids]
        if kept != user.teams:
            await svc.store.update(USERS, user.user_id, {"teams": kept})
            svc.accounts.changed("user", user.user_id)
    for team_id in await svc.store.delete(TEAMS, team_ids):
        svc.accounts.changed("team", team_id)
    return team_ids


@documented(summary="Every team (or a user's)", query=[Query("user_id")])
async def list_teams(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    user_id = request.query.get("user_id")
    if user_id is None:
        teams, _ = await svc.store.find(TEAMS, {})
    else:
        user = await svc.store.get(USERS, user_id)
        teams = (await svc.store.find(TEAMS, {"team_id": user.teams}))[0] if user is not None else []
    teams.sort(key=lambda t: (t.team_alias is None, t.team_alias or "", t.team_id))
    return json([team_view(t) for t in teams])


@documented(summary="Add members to a team", body=AddMembers)
async def member_add(request: web.Request) -> web.Response:
    await admin(request)
    team, enrolled = await add_members(services(request), await body(request, AddMembers))
    return json({**team_view(team), "updated_users": [view(u) for u in enrolled],
                 "updated_team_memberships": []})


async def add_members(svc: Services, asked: AddMembers) -> tuple[TeamRecord, list[UserRecord]]:
    """/team/member_add's work: the team with its new members, and their users (made when missing)."""
    members = asked.member if isinstance(asked.member, list) else [asked.member]
    if not members:
        raise bad_request("No member/members passed in", "member")
    _check_members(members)
    team = await svc.store.get(TEAMS, asked.team_id)
    if team is None:
        raise ApiError(404, f"Team not found for team_id={asked.team_id}", "not_found_error", "team_id")
    users = []
    for member in members:
        user = await find_user(svc, member.user_id, member.user_email)
        if is_member(team, user.user_id if user else member.user_id, member.user_email):
            existing_ids = [m.user_id or m.user_email for m in team.members_with_roles]
            raise ApiError(400, f"User={member.user_id or member.user_email} already in team. "
                           f"Existing members={existing_ids}", "team_member_already_in_team", "member")
        users.append(user)
    enrolled = [await enrol(svc, team.team_id, m, u) for m, u in zip(members, users)]
    added = [TeamMember(role=m.role, user_id=u.user_id, user_email=m.user_email or u.user_email)
             for m, u in zip(members, enrolled)]

    def with_added(current: TeamRecord) -> dict[str, Any]:
        fresh = [m for m in added if not is_member(current, m.user_id, m.user_email)]
        return {"members_with_roles": [*current.members_with_roles, *fresh]}

    team = await svc.store.modify(TEAMS, team.team_id, with_added) or team
    svc.accounts.changed("team", team.team_id)
    return team, enrolled


@documented(summary="Remove a member from a team", body=RemoveMember)
async def member_delete(request: web.Request) -> web.Response:
    await admin(request)
    return json(team_view(await remove_member(services(request), await body(request, RemoveMember))))


async def remove_member(svc: Services, asked: RemoveMember) -> TeamRecord:
    """/team/member_delete's work: the member gone from the team, and the team from the member's user."""
    if asked.user_id is None and asked.user_email is None:
        raise bad_request("Either user_id or user_email needs to be passed in", "user_id")
    team = await existing(svc, asked.team_id)
    gone = [m for m in team.members_with_roles if named(m, asked.user_id, asked.user_email)]
    if not gone:
        raise bad_request("User not found in team", "user_id")
    team = await svc.store.modify(
        TEAMS, team.team_id, lambda t: {"members_with_roles": [m for m in t.members_with_roles if m not in gone]}
    ) or team
    svc.accounts.changed("team", team.team_id)
    for member in gone:
        user = await find_user(svc, member.user_id, member.user_email)
        if user is not None and team.team_id in user.teams:
            await svc.store.modify(USERS, user.user_id,
                                   lambda u: {"teams": [t for t in u.teams if t != team.team_id]})
            svc.accounts.changed("user", user.user_id)
    return team


async def _set_blocked(request: web.Request, blocked: bool) -> web.Response:
    await admin(request)
    ref = await body(request, TeamRef)
    return json(team_view(await set_blocked(services(request), ref.team_id, blocked)))


async def set_blocked(svc: Services, team_id: str, blocked: bool) -> TeamRecord:
    """/team/block's and /team/unblock's work."""
    team = await svc.store.update(TEAMS, team_id, {"blocked": blocked})
    if team is None:
        raise not_found(team_id)
    svc.accounts.changed("team", team_id)
    return team


@documented(summary="Block a team", body=TeamRef)
async def block(request: web.Request) -> web.Response:
    return await _set_blocked(request, True)


@documented(summary="Unblock a team", body=TeamRef)
async def unblock(request: web.Request) -> web.Response:
    return await _set_blocked(request, False)


@documented(summary="Teams, a page at a time", query=[Query("page", "integer"), Query("page_size", "integer")])
async def list_teams_v2(request: web.Request) -> web.Response:
    """LiteLLM's paged team list: `{"teams": [...], "total", "page", "page_size", "total_pages"}`."""
    await admin(request)
    page = query_int(request, "page", 1, 1, 1_000_000)
    size = query_int(request, "page_size", 10, 1, 100)
    teams, total = await find_teams(services(request), TeamFilter(), page, size)
    return json({"teams": [team_view(t) for t in teams], "total": total, "page": page, "page_size": size,
                 "total_pages": total_pages(total, size)})


class TeamFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which teams a listing shows: blocked or not, and `search`, a piece of the id or alias (any case)."""

    blocked: bool | None = None
    organization_id: str | None = None
    search: str | None = None


async def find_teams(svc: Services, wanted: TeamFilter, page: int, size: int) -> tuple[list[TeamRecord], int]:
    """One page of teams, newest first, and how many match: /v2/team/list's and the admin UI's listing."""
    where: dict[str, Any] = {name: value for name in ("blocked", "organization_id")
                             if (value := getattr(wanted, name)) is not None}
    search = (("team_id", "team_alias"), wanted.search) if wanted.search else None
    return await svc.store.find(TEAMS, where, offset=(page - 1) * size, limit=size, search=search)


async def _change_models(request: web.Request, adding: bool) -> web.Response:
    await admin(request)
    svc = services(request)
    asked = await body(request, TeamModels)
    await existing(svc, asked.team_id)

    def changed(current: TeamRecord) -> dict[str, Any]:
        if adding:
            return {"models": list(dict.fromkeys([*current.models, *asked.models]))}
        return {"models": [m for m in current.models if m not in asked.models]}

    team = await svc.store.modify(TEAMS, asked.team_id, changed)
    if team is None:
        raise not_found(asked.team_id)
    svc.accounts.changed("team", asked.team_id)
    return json(team_view(team))


@documented(summary="Allow a team more models", body=TeamModels)
async def model_add(request: web.Request) -> web.Response:
    return await _change_models(request, adding=True)


@documented(summary="Take models from a team", body=TeamModels)
async def model_delete(request: web.Request) -> web.Response:
    return await _change_models(request, adding=False)


@documented(summary="Change a member's role or budget", body=UpdateMember)
async def member_update(request: web.Request) -> web.Response:
    await admin(request)
    svc = services(request)
    asked = await body(request, UpdateMember)
    if asked.user_id is None and asked.user_email is None:
        raise bad_request("Either user_id or user_email needs to be passed in", "user_id")
    await existing(svc, asked.team_id)
    found: list[TeamMember] = []

    def changed(current: TeamRecord) -> dict[str, Any] | None:
        members = []
        for member in current.members_with_roles:
            if named(member, asked.user_id, asked.user_email):
                member = msgspec.structs.replace(member, role=asked.role or member.role)
                found.append(member)
            members.append(member)
        return {"members_with_roles": members} if found else None

    await svc.store.modify(TEAMS, asked.team_id, changed)
    if not found:
        raise ApiError(404, f"User={asked.user_id or asked.user_email} is not a member of team={asked.team_id}",
                       "not_found_error", "user_id")
    svc.accounts.changed("team", asked.team_id)
    member = found[0]
    return json({"team_id": asked.team_id, "user_id": member.user_id, "user_email": member.user_email,
                 "role": member.role})


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/v2/team/list", list_teams_v2)
    app.router.add_post(f"{prefix}/team/model/add", model_add)
    app.router.add_post(f"{prefix}/team/model/delete", model_delete)
    app.router.add_post(f"{prefix}/team/member_update", member_update)
    app.router.add_post(f"{prefix}/team/new", new_team)
    app.router.add_get(f"{prefix}/team/info", info)
    app.router.add_post(f"{prefix}/team/update", update)
    app.router.add_post(f"{prefix}/team/delete", delete)
    app.router.add_get(f"{prefix}/team/list", list_teams)
    app.router.add_post(f"{prefix}/team/member_add", member_add)
    app.router.add_post(f"{prefix}/team/member_delete", member_delete)
    app.router.add_post(f"{prefix}/team/block", block)
    app.router.add_post(f"{prefix}/team/unblock", unblock)
