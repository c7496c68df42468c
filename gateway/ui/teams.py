"""The teams pages: a searched listing a page at a time, a team's page (its members, keys, budget and
spend), and the forms that create, edit, block, delete a team and add or remove its members, all through
the functions /team/* runs. A team is named by `?id=` (ids may hold any character)."""

from __future__ import annotations

from urllib.parse import quote

import msgspec
from aiohttp import web

from gateway.errors import ApiError
from gateway.management.common import total_pages, validated
from gateway.management.keys import KeyFilter, find_keys
from gateway.management.teams import (
    AddMembers,
    DeleteTeams,
    NewTeam,
    RemoveMember,
    TeamFilter,
    UpdateTeam,
    add_members,
    create_team,
    current_team,
    delete_teams,
    find_teams,
    remove_member,
    set_blocked,
    update_team,
)
from gateway.store.records import TeamRecord
from gateway.store.store import KEYS, TEAMS
from gateway.ui import form_values, paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other
from gateway.ui.recent import recent_spend

STATUSES = {"": None, "active": False, "blocked": True}
KEYS_SHOWN = 25
NAMES = ("team_alias", "models", "max_budget", "budget_duration", "tpm_limit", "rpm_limit",
         "max_parallel_requests", "organization_id", "metadata")
DONE = {"created": "The team is created.", "updated": "Saved.", "blocked": "The team is blocked: requests "
        "with its keys are refused.", "unblocked": "The team is unblocked.", "deleted": "The team is deleted, "
        "and its keys with it.", "member_added": "The member is added.", "member_removed": "The member is removed."}


class TeamForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected."""

    team_id: str = ""
    team_alias: str = ""
    models: list[str] = []
    max_budget: str = ""
    budget_duration: str = ""
    tpm_limit: str = ""
    rpm_limit: str = ""
    max_parallel_requests: str = ""
    organization_id: str = ""
    metadata: str = ""


def team_link(home: str, team_id: str, done: str = "") -> str:
    return f"{home}teams/view?id={quote(team_id, safe='')}" + (f"&done={done}" if done else "")


@page(admin=True)
async def list_teams(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search = paging.typed(query, "q")
    status = query.get("status", "") if query.get("status", "") in STATUSES else ""
    teams, total = await find_teams(ui.services, TeamFilter(search=search or None, blocked=STATUSES[status]),
                                    number, size)
    counts = await ui.services.store.count_by(KEYS, "team_id", [t.team_id for t in teams])
    pages = total_pages(total, size)
    kept = {"q": search, "status": status, "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    return ui.render(request, "teams.html", visit=visit, teams=teams, key_counts=counts, total=total,
                     page=number, pages=pages, size=size, sizes=paging.PAGE_SIZES, search=search, state=status,
                     pager=paging.pager("teams", kept, number, pages), filtered=bool(search or status),
                     done=DONE.get(query.get("done", "")))


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such team", "This team does not exist; it may have been deleted.", visit)


@page(admin=True)
async def show_team(request: web.Request, visit: Visit) -> web.Response:
    return await _team_page(request.app[UI], request, visit, request.query.get("id", ""),
                            done=DONE.get(request.query.get("done", "")))


async def _team_page(ui: AdminUi, request: web.Request, visit: Visit, team_id: str, status: int = 200,
                     done: str | None = None, error: ApiError | None = None, member: str = "") -> web.Response:
    try:
        team = await current_team(ui.services, team_id)
    except ApiError:
        return _missing(ui, request, visit)
    keys, key_count = await find_keys(ui.services, KeyFilter(team_id=team_id), 1, KEYS_SHOWN)
    spend = await recent_spend(ui.services, {"team_id": team_id})
    return ui.render(request, "team.html", status=status, visit=visit, team=team, keys=keys, key_count=key_count,
                     spend=spend, done=done, error=error, member=member, now=ui.services.clock())


async def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: TeamForm, team: TeamRecord | None,
                     error: ApiError | None = None) -> web.Response:
    models = list(dict.fromkeys([*ui.services.router.public_names(), *form.models]))
    return ui.render(request, "team_form.html", status=error.status if error else 200, visit=visit, form=form,
                     team=team, error=error, models=models)


@page(admin=True)
async def new_team_form(request: web.Request, visit: Visit) -> web.Response:
    return await _form_page(request.app[UI], request, visit, TeamForm(), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    form = form_values.posted(await request.post(), TeamForm)
    try:
        wanted = form_values.given(form_values.values(form, NAMES))
        if form.team_id:
            wanted["team_id"] = form.team_id
        team = await create_team(ui.services, visit.who, validated(wanted, NewTeam))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, None, error)
    return see_other(team_link(visit.home, team.team_id, "created"))


async def _stored(ui: AdminUi, request: web.Request) -> TeamRecord | None:
    return await ui.services.store.get(TEAMS, request.query.get("id", ""))


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    team = await _stored(ui, request)
    if team is None:
        return _missing(ui, request, visit)
    return await _form_page(ui, request, visit, form_values.shown(team, TeamForm), team)


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    team = await _stored(ui, request)
    if team is None:
        return _missing(ui, request, visit)
    form = form_values.posted(await request.post(), TeamForm)
    try:
        changes = form_values.changed(form, team, NAMES)
        if changes.get("organization_id") is None and "organization_id" in changes:
            changes["organization_id"] = ""  # /team/update's way of taking a team out of its organization
        await update_team(ui.services, validated({"team_id": team.team_id, **changes}, UpdateTeam,
                                                 keep_nulls=True))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, team, error)
    return see_other(team_link(visit.home, team.team_id, "updated"))


async def _blocked(request: web.Request, visit: Visit, blocked: bool) -> web.Response:
    ui = request.app[UI]
    team_id = request.query.get("id", "")
    try:
        await set_blocked(ui.services, team_id, blocked)
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(team_link(visit.home, team_id, "blocked" if blocked else "unblocked"))


@page(admin=True)
async def block(request: web.Request, visit: Visit) -> web.Response:
    return await _blocked(request, visit, True)


@page(admin=True)
async def unblock(request: web.Request, visit: Visit) -> web.Response:
    return await _blocked(request, visit, False)


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_teams(ui.services, validated({"team_ids": [request.query.get("id", "")]}, DeleteTeams))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}teams?done=deleted")


@page(admin=True)
async def add_member(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    team_id = request.query.get("id", "")
    posted = await request.post()
    who = str(posted.get("member") or "").strip()
    role = str(posted.get("role") or "user")
    # One box for either: what has an @ in it is an email, as LiteLLM's UI reads it.
    member = {"role": role, "user_email" if "@" in who else "user_id": who} if who else {"role": role}
    try:
        await add_members(ui.services, validated({"team_id": team_id, "member": member}, AddMembers))
    except ApiError as error:
        if error.status == 404:
            return _missing(ui, request, visit)
        return await _team_page(ui, request, visit, team_id, error.status, error=error, member=who)
    return see_other(team_link(visit.home, team_id, "member_added"))


@page(admin=True)
async def remove(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    team_id = request.query.get("id", "")
    posted = await request.post()
    named = {name: value for name in ("user_id", "user_email") if isinstance(value := posted.get(name), str)
             and value}
    try:
        await remove_member(ui.services, validated({"team_id": team_id, **named}, RemoveMember))
    except ApiError as error:
        if error.status == 404:
            return _missing(ui, request, visit)
        return await _team_page(ui, request, visit, team_id, error.status, error=error)
    return see_other(team_link(visit.home, team_id, "member_removed"))


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/teams", list_teams)
    app.router.add_get(f"{root}/teams/new", new_team_form)
    app.router.add_post(f"{root}/teams/new", create)
    app.router.add_get(f"{root}/teams/view", show_team)
    app.router.add_get(f"{root}/teams/edit", edit_form)
    app.router.add_post(f"{root}/teams/edit", edit)
    app.router.add_post(f"{root}/teams/block", block)
    app.router.add_post(f"{root}/teams/unblock", unblock)
    app.router.add_post(f"{root}/teams/delete", delete)
    app.router.add_post(f"{root}/teams/members/add", add_member)
    app.router.add_post(f"{root}/teams/members/remove", remove)
