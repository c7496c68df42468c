"""The organizations pages: a searched listing a page at a time, an organization's page (its budget and
spend, members and teams), and the forms that create, edit and delete one and add, change or remove its
members, all through the functions /organization/* runs. An organization is named by `?id=`."""

from __future__ import annotations

from urllib.parse import quote

import msgspec
from aiohttp import web

from gateway.errors import ApiError
from gateway.management.common import total_pages, validated
from gateway.management.organizations import (
    ORG_ROLES,
    AddMembers,
    DeleteOrgs,
    NewOrg,
    OrgFilter,
    RemoveMember,
    UpdateMember,
    UpdateOrg,
    add_org_members,
    create_org,
    current_org,
    delete_orgs,
    find_orgs,
    remove_org_member,
    update_org,
    update_org_member,
)
from gateway.management.teams import TeamFilter, find_teams
from gateway.store.records import OrgRecord
from gateway.store.store import ORGS, TEAMS
from gateway.ui import form_values, paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other

TEAMS_SHOWN = 25
NAMES = ("organization_alias", "models", "max_budget", "budget_duration", "tpm_limit", "rpm_limit",
         "max_parallel_requests", "metadata")
DONE = {"created": "The organization is created.", "updated": "Saved.",
        "deleted": "The organization is deleted, with its teams and their keys.",
        "member_added": "The member is added.", "member_changed": "The member's role is changed.",
        "member_removed": "The member is removed."}


class OrgForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected."""

    organization_id: str = ""
    organization_alias: str = ""
    models: list[str] = []
    max_budget: str = ""
    budget_duration: str = ""
    tpm_limit: str = ""
    rpm_limit: str = ""
    max_parallel_requests: str = ""
    metadata: str = ""


def org_link(home: str, org_id: str, done: str = "") -> str:
    return f"{home}organizations/view?id={quote(org_id, safe='')}" + (f"&done={done}" if done else "")


@page(admin=True)
async def list_orgs(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search = paging.typed(query, "q")
    orgs, total = await find_orgs(ui.services, OrgFilter(search=search or None), number, size)
    team_counts = await ui.services.store.count_by(TEAMS, "organization_id", [o.organization_id for o in orgs])
    pages = total_pages(total, size)
    kept = {"q": search, "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    return ui.render(request, "organizations.html", visit=visit, orgs=orgs, team_counts=team_counts, total=total,
                     page=number, pages=pages, size=size, sizes=paging.PAGE_SIZES, search=search,
                     pager=paging.pager("organizations", kept, number, pages), filtered=bool(search),
                     done=DONE.get(query.get("done", "")))


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such organization",
                     "This organization does not exist; it may have been deleted.", visit)


@page(admin=True)
async def show_org(request: web.Request, visit: Visit) -> web.Response:
    return await _org_page(request.app[UI], request, visit, request.query.get("id", ""),
                           done=DONE.get(request.query.get("done", "")))


async def _org_page(ui: AdminUi, request: web.Request, visit: Visit, org_id: str, status: int = 200,
                    done: str | None = None, error: ApiError | None = None, member: str = "") -> web.Response:
    try:
        org = await current_org(ui.services, org_id)
    except ApiError:
        return _missing(ui, request, visit)
    teams, team_count = await find_teams(ui.services, TeamFilter(organization_id=org_id), 1, TEAMS_SHOWN)
    return ui.render(request, "organization.html", status=status, visit=visit, org=org, teams=teams,
                     team_count=team_count, roles=ORG_ROLES, done=done, error=error, member=member)


async def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: OrgForm, org: OrgRecord | None,
                     error: ApiError | None = None) -> web.Response:
    models = list(dict.fromkeys([*ui.services.router.public_names(), *form.models]))
    return ui.render(request, "organization_form.html", status=error.status if error else 200, visit=visit,
                     form=form, org=org, error=error, models=models)


@page(admin=True)
async def new_org_form(request: web.Request, visit: Visit) -> web.Response:
    return await _form_page(request.app[UI], request, visit, OrgForm(), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    form = form_values.posted(await request.post(), OrgForm)
    try:
        wanted = form_values.given(form_values.values(form, NAMES))
        if form.organization_id:
            wanted["organization_id"] = form.organization_id
        org = await create_org(ui.services, visit.who, validated(wanted, NewOrg))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, None, error)
    return see_other(org_link(visit.home, org.organization_id, "created"))


async def _stored(ui: AdminUi, request: web.Request) -> OrgRecord | None:
    return await ui.services.store.get(ORGS, request.query.get("id", ""))


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    org = await _stored(ui, request)
    if org is None:
        return _missing(ui, request, visit)
    return await _form_page(ui, request, visit, form_values.shown(org, OrgForm), org)


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    org = await _stored(ui, request)
    if org is None:
        return _missing(ui, request, visit)
    form = form_values.posted(await request.post(), OrgForm)
    try:
        changes = form_values.changed(form, org, NAMES)
        await update_org(ui.services, visit.who, validated({"organization_id": org.organization_id, **changes},
                                                           UpdateOrg, keep_nulls=True))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, org, error)
    return see_other(org_link(visit.home, org.organization_id, "updated"))


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_orgs(ui.services, validated({"organization_ids": [request.query.get("id", "")]}, DeleteOrgs))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}organizations?done=deleted")


def _role(posted: str) -> str:
    return posted if posted in ORG_ROLES else "internal_user"


@page(admin=True)
async def add_member(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    org_id = request.query.get("id", "")
    posted = await request.post()
    who = str(posted.get("member") or "").strip()
    # One box for either: what has an @ in it is an email, as LiteLLM's UI reads it.
    member = {"role": _role(str(posted.get("role") or "")), **({"user_email" if "@" in who else "user_id": who}
                                                               if who else {})}
    budget = str(posted.get("max_budget_in_organization") or "").strip()
    try:
        asked = {"organization_id": org_id, "member": member,
                 "max_budget_in_organization": form_values.value("max_budget", budget)}
        await add_org_members(ui.services, validated(asked, AddMembers))
    except ApiError as error:
        if error.status == 404:
            return _missing(ui, request, visit)
        return await _org_page(ui, request, visit, org_id, error.status, error=error, member=who)
    return see_other(org_link(visit.home, org_id, "member_added"))


@page(admin=True)
async def change_member(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    org_id = request.query.get("id", "")
    posted = await request.post()
    try:
        await update_org_member(ui.services, validated(
            {"organization_id": org_id, "user_id": str(posted.get("user_id") or ""),
             "role": _role(str(posted.get("role") or ""))}, UpdateMember))
    except ApiError as error:
        return await _org_page(ui, request, visit, org_id, error.status, error=error)
    return see_other(org_link(visit.home, org_id, "member_changed"))


@page(admin=True)
async def remove_member(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    org_id = request.query.get("id", "")
    posted = await request.post()
    try:
        await remove_org_member(ui.services, validated(
            {"organization_id": org_id, "user_id": str(posted.get("user_id") or "")}, RemoveMember))
    except ApiError as error:
        if error.param == "organization_id":
            return _missing(ui, request, visit)
        return await _org_page(ui, request, visit, org_id, error.status, error=error)
    return see_other(org_link(visit.home, org_id, "member_removed"))


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/organizations", list_orgs)
    app.router.add_get(f"{root}/organizations/new", new_org_form)
    app.router.add_post(f"{root}/organizations/new", create)
    app.router.add_get(f"{root}/organizations/view", show_org)
    app.router.add_get(f"{root}/organizations/edit", edit_form)
    app.router.add_post(f"{root}/organizations/edit", edit)
    app.router.add_post(f"{root}/organizations/delete", delete)
    app.router.add_post(f"{root}/organizations/members/add", add_member)
    app.router.add_post(f"{root}/organizations/members/change", change_member)
    app.router.add_post(f"{root}/organizations/members/remove", remove_member)
