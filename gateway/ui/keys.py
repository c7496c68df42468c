"""The keys pages: a searched, filtered listing a page at a time, one key's page, and the forms that
create, edit, block, regenerate and delete keys, all through the management API's own functions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import ApiError
from gateway.management.common import total_pages, validated
from gateway.management.keys import (
    DeleteKeys,
    KeyFilter,
    RegenerateKey,
    delete_keys,
    find_keys,
    generate_key,
    key_details,
    regenerate_named,
    set_blocked,
    update_key,
)
from gateway.store.records import KeyRecord
from gateway.store.store import KEYS, TEAMS, USERS
from gateway.ui import paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other
from gateway.ui.forms import KeyForm, generate_request, posted, shown, update_request

# Teams and users offered as suggestions in a key's form; any other id may still be typed.
SUGGESTED = 200
STATUSES = {"": None, "active": False, "blocked": True}
DONE = {"blocked": "The key is blocked: requests with it are refused.", "unblocked": "The key is unblocked.",
        "updated": "Saved.", "deleted": "The key is deleted."}


@page()
async def list_keys(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search, team, user = paging.typed(query, "q"), paging.typed(query, "team"), paging.typed(query, "user")
    status = query.get("status", "") if query.get("status", "") in STATUSES else ""
    if visit.who.is_admin:
        wanted = KeyFilter(search=search or None, team_id=team or None, user_id=user or None,
                           blocked=STATUSES[status])
    else:
        wanted = KeyFilter(token=visit.who.token)  # a key that is not an admin's sees itself only
    records, total = await find_keys(ui.services, wanted, number, size)
    kept = {"q": search, "team": team, "user": user, "status": status,
            "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    pages = total_pages(total, size)
    previous, following = paging.pager("keys", kept, number, pages)
    return ui.render(request, "keys.html", visit=visit, keys=records, total=total, page=number, pages=pages,
                     size=size, sizes=paging.PAGE_SIZES, search=search, team=team, user=user, state=status,
                     previous=previous, next=following, done=DONE.get(query.get("done", "")),
                     now=ui.services.clock(), filtered=any((search, team, user, status)))


async def _own_or_any(ui: AdminUi, visit: Visit, token: str) -> KeyRecord | None:
    """The key, if this visitor may see it: an admin any key, any other key itself."""
    if not visit.who.is_admin and token != visit.who.token:
        return None
    return await ui.services.store.get(KEYS, token)


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such key", "This key does not exist, or it is not yours to see.", visit)


@page()
async def show_key(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    record = await _own_or_any(ui, visit, request.match_info["token"])
    if record is None:
        return _missing(ui, request, visit)
    return _key_page(ui, request, visit, record, await key_details(ui.services, record),
                     done=DONE.get(request.query.get("done", "")))


def _key_page(ui: AdminUi, request: web.Request, visit: Visit, record: KeyRecord, details: dict[str, Any],
              status: int = 200, done: str | None = None, error: ApiError | None = None) -> web.Response:
    return ui.render(request, "key.html", status=status, visit=visit, key=record, details=details, done=done,
                     error=error, now=ui.services.clock())


async def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: KeyForm, record: KeyRecord | None,
                     error: ApiError | None = None) -> web.Response:
    store = ui.services.store
    teams, _ = await store.find(TEAMS, {}, limit=SUGGESTED)
    users, _ = await store.find(USERS, {}, limit=SUGGESTED)
    models = list(dict.fromkeys([*ui.services.router.public_names(), *form.models]))
    return ui.render(request, "key_form.html", status=error.status if error else 200, visit=visit, form=form,
                     key=record, error=error, models=models, teams=teams, users=users)


@page(admin=True)
async def new_key_form(request: web.Request, visit: Visit) -> web.Response:
    return await _form_page(request.app[UI], request, visit, KeyForm(), None)


@page(admin=True)
async def create_key(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    form = posted(await request.post())
    try:
        record, raw = await generate_key(ui.services, ui.policy, visit.who, generate_request(form))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, None, error)
    # Shown once, on this answer only: the store keeps the key's hash.
    return ui.render(request, "key_created.html", visit=visit, key=record, raw=raw, regenerated=False, user=None)


@page(admin=True)
async def edit_key_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    record = await ui.services.store.get(KEYS, request.match_info["token"])
    if record is None:
        return _missing(ui, request, visit)
    return await _form_page(ui, request, visit, shown(record), record)


@page(admin=True)
async def edit_key(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    token = request.match_info["token"]
    record = await ui.services.store.get(KEYS, token)
    if record is None:
        return _missing(ui, request, visit)
    form = posted(await request.post())
    try:
        await update_key(ui.services, update_request(form, record))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, record, error)
    return see_other(f"{visit.home}keys/{token}?done=updated")


async def _set_blocked(request: web.Request, visit: Visit, blocked: bool) -> web.Response:
    ui = request.app[UI]
    token = request.match_info["token"]
    try:
        await set_blocked(ui.services, token, blocked)
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}keys/{token}?done={'blocked' if blocked else 'unblocked'}")


@page(admin=True)
async def block_key(request: web.Request, visit: Visit) -> web.Response:
    return await _set_blocked(request, visit, True)


@page(admin=True)
async def unblock_key(request: web.Request, visit: Visit) -> web.Response:
    return await _set_blocked(request, visit, False)


@page(admin=True)
async def regenerate_key(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    token = request.match_info["token"]
    grace = (await request.post()).get("grace_period")
    try:
        asked = validated({"grace_period": grace.strip()} if isinstance(grace, str) and grace.strip() else {},
                          RegenerateKey)
        record, raw = await regenerate_named(ui.services, token, asked)
    except ApiError as error:
        old = await ui.services.store.get(KEYS, token)
        if old is None:
            return _missing(ui, request, visit)
        return _key_page(ui, request, visit, old, await key_details(ui.services, old), error.status, error=error)
    return ui.render(request, "key_created.html", visit=visit, key=record, raw=raw, regenerated=True, user=None,
                     grace=grace)


@page(admin=True)
async def delete_key(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_keys(ui.services, DeleteKeys(keys=[request.match_info["token"]]))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}keys?done=deleted")


TOKEN = "{token:[0-9a-f]{64}}"


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/keys", list_keys)
    app.router.add_get(f"{root}/keys/new", new_key_form)
    app.router.add_post(f"{root}/keys/new", create_key)
    app.router.add_get(f"{root}/keys/{TOKEN}", show_key)
    app.router.add_get(f"{root}/keys/{TOKEN}/edit", edit_key_form)
    app.router.add_post(f"{root}/keys/{TOKEN}/edit", edit_key)
    app.router.add_post(f"{root}/keys/{TOKEN}/block", block_key)
    app.router.add_post(f"{root}/keys/{TOKEN}/unblock", unblock_key)
    app.router.add_post(f"{root}/keys/{TOKEN}/regenerate", regenerate_key)
    app.router.add_post(f"{root}/keys/{TOKEN}/delete", delete_key)
