"""/organization/*: new, update, delete, info, list, member_add, member_update, member_delete.

An organization owns teams (and keys): their models are narrowed to its `models` and their spend
counts against its budget (gateway/access.py, gateway/budget/counters.py). LiteLLM keeps the budget
in a budget table and shows it as `litellm_budget_table`; the gateway keeps it on the record and
shows it the same way. Memberships live on the organization record.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway import durations
from gateway.budget.current import current
from gateway.durations import iso
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
    services,
    set_fields,
    view,
    with_extra,
)
from gateway.management.teams import find_user, team_view
from gateway.openapi import Query, documented
from gateway.services import Services
from gateway.store.records import OrgMember, OrgRecord, UserRecord
from gateway.store.store import KEYS, ORGS, TEAMS, USERS, Conflict

ORG_ROLES = ("org_admin", "internal_user", "internal_user_viewer")
Role = Literal["org_admin", "internal_user", "internal_user_viewer"]
BUDGET_FIELDS = ("max_budget", "budget_duration", "tpm_limit", "rpm_limit", "max_parallel_requests")
KEPT_BUDGET_FIELDS = ("soft_budget", "model_max_budget")


class KeptOrgFields(msgspec.Struct, kw_only=True):
    """Fields of LiteLLM's organization requests the gateway keeps and shows back but does not act on."""

    soft_budget: Any = UNSET
    model_max_budget: Any = UNSET
    object_permission: Any = UNSET
    tags: Any = UNSET
    model_aliases: Any = UNSET
    updated_by: Any = UNSET
    spend: Any = UNSET


KEPT_ORG_FIELDS = frozenset(KeptOrgFields.__struct_fields__)


class OrgFields(KeptOrgFields, kw_only=True, forbid_unknown_fields=True):
    organization_alias: Name | UnsetType = UNSET
    models: Names | UnsetType = UNSET
    budget_id: Name | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    max_budget: Money | None | UnsetType = UNSET
    budget_duration: Name | None | UnsetType = UNSET
    tpm_limit: Count | None | UnsetType = UNSET
    rpm_limit: Count | None | UnsetType = UNSET
    max_parallel_requests: Count | None | UnsetType = UNSET
    blocked: bool | UnsetType = UNSET


class NewOrg(OrgFields, kw_only=True):
    organization_id: Name | UnsetType = UNSET
    organization_alias: Name  # required, as in LiteLLM's NewOrganizationRequest


class UpdateOrg(OrgFields, kw_only=True):
    organization_id: Name


class DeleteOrgs(msgspec.Struct, forbid_unknown_fields=True):
    organization_ids: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=1000)]


class OrgsRef(msgspec.Struct, forbid_unknown_fields=True):
    organizations: Annotated[list[Name], msgspec.Meta(max_length=1000)]


class Member(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    role: Role
    user_id: Name | None = None
    user_email: Name | None = None


class AddMembers(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    organization_id: Name
    member: Member | Annotated[list[Member], msgspec.Meta(min_length=1, max_length=1000)]
    max_budget_in_organization: Money | None = None


class UpdateMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    organization_id: Name
    user_id: Name | None = None
    user_email: Name | None = None
    role: Role | None = None
    max_budget_in_organization: Money | None = None


class RemoveMember(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    organization_id: Name
    user_id: Name | None = None
    user_email: Name | None = None


def not_found(org_id: str, status: int = 404) -> ApiError:
    return ApiError(status, f"Organization not found for organization_id={org_id}", "not_found_error",
                    "organization_id")


def member_view(org_id: str, member: OrgMember) -> dict[str, Any]:
    budget = ({"budget_id": member.budget_id, "max_budget": member.max_budget_in_organization}
              if member.budget_id is not None else None)
    return {"user_id": member.user_id, "organization_id": org_id, "user_role": member.user_role,
            "spend": member.spend, "budget_id": member.budget_id, "created_at": iso(member.created_at),
            "updated_at": iso(member.updated_at), "user": None, "litellm_budget_table": budget}


def org_view(org: OrgRecord) -> dict[str, Any]:
    """LiteLLM's organization row: the budget under `litellm_budget_table`, not at the top."""
    data = view(org)
    budget = {"budget_id": org.budget_id, **{f: data.pop(f, None) for f in BUDGET_FIELDS},
              **{f: data.pop(f, None) for f in KEPT_BUDGET_FIELDS}, "budget_reset_at": data.pop("budget_reset_at")}
    data["litellm_budget_table"] = budget
    data["members"] = [member_view(org.organization_id, m) for m in org.members]
    data["object_permission_id"] = None
    data.setdefault("object_permission", None)
    return data


async def with_members(svc: Services, org: OrgRecord) -> dict[str, Any]:
    """LiteLLM_OrganizationTableWithMembers: the row, its members and its teams, spend as of now."""
    org = await current(svc.ledger, "org", org.organization_id, org, svc.clock())
    teams, _ = await svc.store.find(TEAMS, {"organization_id": org.organization_id})
    return {**org_view(org), "teams": [team_view(t) for t in teams]}


def org_changes(fields: dict[str, Any], now: float) -> dict[str, Any]:
    changes = {k: v for k, v in fields.items() if k != "organization_id"}
    if "budget_duration" in fields:
        budget = fields["budget_duration"]
        changes["budget_reset_at"] = durations.add(now, budget) if budget else None
    return changes


async def existing(svc: Services, org_id: str, status: int = 404) -> OrgRecord:
    org = await svc.store.get(ORGS, org_id)
    if org is None:
        raise not_found(org_id, status)
    return org


@documented(summary="Create an organization", body=NewOrg)
async def new_org(request: web.Request) -> web.Response:
    who = await caller(request)
    if not who.is_admin:
        raise ApiError(401, f"Only admins can create orgs. Your role is = {who.role}", "auth_error")
    return json(org_view(await create_org(services(request), who, await body(request, NewOrg))))


async def create_org(svc: Services, who: Caller, asked: NewOrg) -> OrgRecord:
    """/organization/new's work."""
    fields = with_extra(set_fields(asked), KEPT_ORG_FIELDS, {})
    org_id = fields.pop("organization_id", None) or str(uuid.uuid4())
    fields.setdefault("budget_id", str(uuid.uuid4()))
    creator = who.author
    record = OrgRecord(organization_id=org_id, created_by=creator, updated_by=creator,
                       **org_changes(fields, svc.clock()))
    try:
        record = await svc.store.insert(ORGS, record)
    except Conflict:
        raise bad_request(f"Organization id = {org_id} already exists. Please use a different organization id.",
                          "organization_id") from None
    svc.accounts.changed("organization", org_id)
    return record


@documented(summary="Change an organization", body=UpdateOrg)
async def update(request: web.Request) -> web.Response:
    who = await admin(request)
    svc = services(request)
    return json(await with_members(svc, await update_org(svc, who, await body(request, UpdateOrg))))


async def update_org(svc: Services, who: Caller, asked: UpdateOrg) -> OrgRecord:
    """/organization/update's work: the fields sent changed."""
    fields = set_fields(asked)
    org_id = fields["organization_id"]
    before = await existing(svc, org_id)
    if KEPT_ORG_FIELDS.intersection(fields):
        fields = with_extra(fields, KEPT_ORG_FIELDS, before.extra)
    changes = {**org_changes(fields, svc.clock()), "updated_by": who.author}
    org = await svc.store.update(ORGS, org_id, changes)
    if org is None:
        raise not_found(org_id)
    svc.accounts.changed("organization", org_id)
    return org


@documented(summary="Delete organizations, with their teams and keys", body=DeleteOrgs)
async def delete(request: web.Request) -> web.Response:
    """As LiteLLM: the organizations go with their teams, their memberships and their keys."""
    who = await caller(request)
    if not who.is_admin:
        raise ApiError(401, "Only proxy admins can delete organizations", "auth_error")
    return json(await delete_orgs(services(request), await body(request, DeleteOrgs)))


async def delete_orgs(svc: Services, asked: DeleteOrgs) -> list[dict[str, Any]]:
    """/organization/delete's work; what it answers: the organizations as they were."""
    org_ids = list(dict.fromkeys(asked.organization_ids))
    orgs, _ = await svc.store.find(ORGS, {"organization_id": org_ids})
    missing = [o for o in org_ids if o not in {org.organization_id for org in orgs}]
    if missing:
        raise ApiError(404, f"Organization={missing[0]} not found", "not_found_error", "organization_ids")
    shown = [await with_members(svc, org) for org in orgs]
    teams, _ = await svc.store.find(TEAMS, {"organization_id": org_ids})
    team_ids = [t.team_id for t in teams]
    for token in await svc.store.delete_where(KEYS, "organization_id", org_ids):
        svc.accounts.changed("key", token)
    for token in await svc.store.delete_where(KEYS, "team_id", team_ids):
        svc.accounts.changed("key", token)
    for team_id in await svc.store.delete(TEAMS, team_ids):
        svc.accounts.changed("team", team_id)
    for org_id in await svc.store.delete(ORGS, org_ids):
        svc.accounts.changed("organization", org_id)
    return shown


@documented(summary="Organizations (all for an admin, one's own otherwise)")
async def list_orgs(request: web.Request) -> web.Response:
    """Every organization for an admin; for anyone else, those they are a member of."""
    who = await caller(request)
    svc = services(request)
    orgs, _ = await svc.store.find(ORGS, {})
    if not who.is_admin:
        orgs = [o for o in orgs if any(m.user_id == who.user_id for m in o.members)]
    return json([await with_members(svc, o) for o in orgs])


@documented(summary="One organization, its members and teams", query=[Query("organization_id")])
async def info(request: web.Request) -> web.Response:
    who = await caller(request)
    svc = services(request)
    org_id = request.query.get("organization_id")
    if not org_id:
        raise bad_request("pass ?organization_id=", "organization_id")
    org = await svc.store.get(ORGS, org_id)
    if org is None:
        raise ApiError(404, "Organization not found", "not_found_error", "organization_id")
    if not who.is_admin and not any(m.user_id == who.user_id for m in org.members):
        raise ApiError(403, f"User={who.user_id or who.label} is not a member of organization={org_id}",
                       "auth_error", "organization_id")
    return json(await with_members(svc, org))


@documented(summary="Organizations by id", body=OrgsRef)
async def info_many(request: web.Request) -> web.Response:
    """LiteLLM's older POST /organization/info: a list of organizations by id."""
    await admin(request)
    svc = services(request)
    wanted = (await body(request, OrgsRef)).organizations
    if not wanted:
        raise bad_request(f"Specify list of organization id's to query. Passed in={wanted}", "organizations")
    orgs, _ = await svc.store.find(ORGS, {"organization_id": wanted})
    return json([org_view(o) for o in orgs])


@documented(summary="Add members to an organization", body=AddMembers)
async def member_add(request: web.Request) -> web.Response:
    await admin(request)
    asked = await body(request, AddMembers)
    users, added = await add_org_members(services(request), asked)
    return json({"organization_id": asked.organization_id, "updated_users": [view(u) for u in users],
                 "updated_organization_memberships": [member_view(asked.organization_id, m) for m in added]})


async def add_org_members(svc: Services, asked: AddMembers) -> tuple[list[UserRecord], list[OrgMember]]:
    """/organization/member_add's work: each member made a user when missing; the users and memberships."""
    members = asked.member if isinstance(asked.member, list) else [asked.member]
    org = await existing(svc, asked.organization_id)
    now = svc.clock()
    users: list[UserRecord] = []
    added: list[OrgMember] = []
    for member in members:
        if member.user_id is None and member.user_email is None:
            raise bad_request("an organization member needs a user_id or a user_email", "member")
        user = await find_user(svc, member.user_id, member.user_email)
        if user is None:
            fresh = UserRecord(user_id=member.user_id or str(uuid.uuid4()), user_email=member.user_email)
            try:
                user = await svc.store.insert(USERS, fresh)
            except Conflict:
                user = await svc.store.get(USERS, fresh.user_id)
                if user is None:
                    raise bad_request(f"user {fresh.user_id} could not be created; try again", "member") from None
        if any(m.user_id == user.user_id for m in [*org.members, *added]):
            raise bad_request(f"User={user.user_id} is already a member of organization={org.organization_id}",
                              "member")
        budget_id = str(uuid.uuid4()) if asked.max_budget_in_organization is not None else None
        users.append(user)
        added.append(OrgMember(user_id=user.user_id, user_role=member.role, budget_id=budget_id,
                               max_budget_in_organization=asked.max_budget_in_organization, created_at=now,
                               updated_at=now))

    def joined(current_org: OrgRecord) -> dict[str, Any]:
        have = {m.user_id for m in current_org.members}
        return {"members": [*current_org.members, *(m for m in added if m.user_id not in have)]}

    await svc.store.modify(ORGS, org.organization_id, joined)
    svc.accounts.changed("organization", org.organization_id)
    return users, added


async def _member_id(svc: Services, user_id: str | None, user_email: str | None) -> str:
    if user_id is not None:
        return user_id
    if user_email is None:
        raise bad_request("Either user id or user email must be provided", "user_id")
    user = await find_user(svc, None, user_email)
    if user is None:
        raise bad_request(f"Unique user not found for user_email={user_email}. Use 'user_id' instead.",
                          "user_email")
    return user.user_id


@documented(summary="Change a member's role or budget", body=UpdateMember)
async def member_update(request: web.Request) -> web.Response:
    await admin(request)
    asked = await body(request, UpdateMember)
    return json(member_view(asked.organization_id, await update_org_member(services(request), asked)))


async def update_org_member(svc: Services, asked: UpdateMember) -> OrgMember:
    """/organization/member_update's work: the member as changed."""
    await existing(svc, asked.organization_id, status=400)
    user_id = await _member_id(svc, asked.user_id, asked.user_email)
    found: list[OrgMember] = []

    def changed(org: OrgRecord) -> dict[str, Any] | None:
        members = []
        for member in org.members:
            if member.user_id == user_id:
                budget = asked.max_budget_in_organization
                member = msgspec.structs.replace(
                    member, user_role=asked.role or member.user_role, updated_at=svc.clock(),
                    budget_id=member.budget_id or (str(uuid.uuid4()) if budget is not None else None),
                    max_budget_in_organization=budget if budget is not None else member.max_budget_in_organization)
                found.append(member)
            members.append(member)
        return {"members": members} if found else None

    await svc.store.modify(ORGS, asked.organization_id, changed)
    if not found:
        raise ApiError(404, f"Member not found in organization for user_id={user_id}", "not_found_error", "user_id")
    svc.accounts.changed("organization", asked.organization_id)
    return found[0]


@documented(summary="Remove a member from an organization", body=RemoveMember)
async def member_delete(request: web.Request) -> web.Response:
    await admin(request)
    asked = await body(request, RemoveMember)
    return json(member_view(asked.organization_id, await remove_org_member(services(request), asked)))


async def remove_org_member(svc: Services, asked: RemoveMember) -> OrgMember:
    """/organization/member_delete's work: the membership removed."""
    await existing(svc, asked.organization_id)
    user_id = await _member_id(svc, asked.user_id, asked.user_email)
    gone: list[OrgMember] = []

    def without(org: OrgRecord) -> dict[str, Any] | None:
        gone.extend(m for m in org.members if m.user_id == user_id)
        return {"members": [m for m in org.members if m.user_id != user_id]} if gone else None

    await svc.store.modify(ORGS, asked.organization_id, without)
    if not gone:
        raise ApiError(404, f"Member not found in organization for user_id={user_id}", "not_found_error", "user_id")
    svc.accounts.changed("organization", asked.organization_id)
    return gone[0]


class OrgFilter(msgspec.Struct, kw_only=True, frozen=True):
    """Which organizations a listing shows: `search`, a piece of the id or alias (any case)."""

    search: str | None = None


async def find_orgs(svc: Services, wanted: OrgFilter, page: int, size: int) -> tuple[list[OrgRecord], int]:
    """One page of organizations, newest first, and how many match: the admin UI's listing."""
    search = (("organization_id", "organization_alias"), wanted.search) if wanted.search else None
    return await svc.store.find(ORGS, {}, offset=(page - 1) * size, limit=size, search=search)


async def current_org(svc: Services, org_id: str) -> OrgRecord:
    """/organization/info's organization: its spend as the budget counters have it now."""
    return await current(svc.ledger, "org", org_id, await existing(svc, org_id), svc.clock())


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/organization/new", new_org)
    app.router.add_patch(f"{prefix}/organization/update", update)
    app.router.add_delete(f"{prefix}/organization/delete", delete)
    app.router.add_get(f"{prefix}/organization/list", list_orgs)
    app.router.add_get(f"{prefix}/organization/info", info)
    app.router.add_post(f"{prefix}/organization/info", info_many)
    app.router.add_post(f"{prefix}/organization/member_add", member_add)
    app.router.add_patch(f"{prefix}/organization/member_update", member_update)
    app.router.add_delete(f"{prefix}/organization/member_delete", member_delete)
