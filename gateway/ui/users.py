"""The users pages: a searched listing a page at a time, a user's page (their teams, keys and spend), and
the forms that create (with a key of their own, as /user/new makes one), edit and delete a user, all
through the functions /user/* runs. A user is named by `?id=`."""

from __future__ import annotations

from urllib.parse import quote

import msgspec
from aiohttp import web

from gateway.errors import ApiError
from gateway.management.common import total_pages, validated
from gateway.management.keys import KeyFilter, find_keys
from gateway.management.users import (
    ROLES,
    DeleteUsers,
    NewUser,
    UpdateUser,
    UserFilter,
    create_user,
    current_user,
    delete_users,
    find_users,
    update_user,
)
from gateway.store.records import UserRecord
from gateway.store.store import TEAMS, USERS
from gateway.ui import form_values, paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other
from gateway.ui.recent import recent_spend

KEYS_SHOWN = 25
SUGGESTED_TEAMS = 200
NAMES = ("user_alias", "user_email", "user_role", "teams", "models", "max_budget", "budget_duration",
         "tpm_limit", "rpm_limit", "max_parallel_requests", "metadata")
DONE = {"created": "The user is created.", "updated": "Saved.",
        "deleted": "The user is deleted, and their keys with them."}


class UserForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected."""

    user_id: str = ""
    user_alias: str = ""
    user_email: str = ""
    user_role: str = "internal_user"
    teams: str = ""
    models: list[str] = []
    max_budget: str = ""
    budget_duration: str = ""
    tpm_limit: str = ""
    rpm_limit: str = ""
    max_parallel_requests: str = ""
    metadata: str = ""
    auto_create_key: bool = False
    key_alias: str = ""


def user_link(home: str, user_id: str, done: str = "") -> str:
    return f"{home}users/view?id={quote(user_id, safe='')}" + (f"&done={done}" if done else "")


@page(admin=True)
async def list_users(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search = paging.typed(query, "q")
    role = query.get("role", "") if query.get("role", "") in ROLES else ""
    users, total, counts = await find_users(ui.services, UserFilter(search=search or None, user_role=role or None),
                                            number, size)
    pages = total_pages(total, size)
    kept = {"q": search, "role": role, "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    return ui.render(request, "users.html", visit=visit, users=users, key_counts=counts, total=total,
                     page=number, pages=pages, size=size, sizes=paging.PAGE_SIZES, search=search, role=role,
                     roles=ROLES, pager=paging.pager("users", kept, number, pages), filtered=bool(search or role),
                     done=DONE.get(query.get("done", "")))


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such user", "This user does not exist; they may have been deleted.", visit)


@page(admin=True)
async def show_user(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    user_id = request.query.get("id", "")
    try:
        user = await current_user(ui.services, user_id)
    except ApiError:
        return _missing(ui, request, visit)
    teams, _ = await ui.services.store.find(TEAMS, {"team_id": user.teams})
    keys, key_count = await find_keys(ui.services, KeyFilter(user_id=user_id), 1, KEYS_SHOWN)
    spend = await recent_spend(ui.services, {"user_id": user_id})
    return ui.render(request, "user.html", visit=visit, user=user, teams=teams, keys=keys, key_count=key_count,
                     spend=spend, done=DONE.get(request.query.get("done", "")), now=ui.services.clock())


async def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: UserForm, user: UserRecord | None,
                     error: ApiError | None = None) -> web.Response:
    models = list(dict.fromkeys([*ui.services.router.public_names(), *form.models]))
    teams, _ = await ui.services.store.find(TEAMS, {}, limit=SUGGESTED_TEAMS)
    return ui.render(request, "user_form.html", status=error.status if error else 200, visit=visit, form=form,
                     user=user, error=error, models=models, roles=ROLES, teams=teams)


@page(admin=True)
async def new_user_form(request: web.Request, visit: Visit) -> web.Response:
    return await _form_page(request.app[UI], request, visit, UserForm(auto_create_key=True), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    form = form_values.posted(await request.post(), UserForm)
    try:
        wanted = form_values.given(form_values.values(form, NAMES))
        wanted.update({name: getattr(form, name) for name in ("user_id", "key_alias") if getattr(form, name)})
        wanted["auto_create_key"] = form.auto_create_key
        made = await create_user(ui.services, visit.who, validated(wanted, NewUser))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, None, error)
    if made.key is None:
        return see_other(user_link(visit.home, made.user.user_id, "created"))
    # Shown once, on this answer only: the store keeps the key's hash.
    return ui.render(request, "key_created.html", visit=visit, key=made.key, raw=made.raw_key, regenerated=False,
                     user=made.user)


async def _stored(ui: AdminUi, request: web.Request) -> UserRecord | None:
    return await ui.services.store.get(USERS, request.query.get("id", ""))


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    user = await _stored(ui, request)
    if user is None:
        return _missing(ui, request, visit)
    return await _form_page(ui, request, visit, form_values.shown(user, UserForm), user)


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    user = await _stored(ui, request)
    if user is None:
        return _missing(ui, request, visit)
    form = form_values.posted(await request.post(), UserForm)
    try:
        changes = form_values.changed(form, user, NAMES)
        await update_user(ui.services, validated({"user_id": user.user_id, **changes}, UpdateUser,
                                                 keep_nulls=True))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, user, error)
    return see_other(user_link(visit.home, user.user_id, "updated"))


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_users(ui.services, validated({"user_ids": [request.query.get("id", "")]}, DeleteUsers))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}users?done=deleted")


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/users", list_users)
    app.router.add_get(f"{root}/users/new", new_user_form)
    app.router.add_post(f"{root}/users/new", create)
    app.router.add_get(f"{root}/users/view", show_user)
    app.router.add_get(f"{root}/users/edit", edit_form)
    app.router.add_post(f"{root}/users/edit", edit)
    app.router.add_post(f"{root}/users/delete", delete)
