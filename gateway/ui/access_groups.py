"""The access groups page: the groups made through the API a page at a time, with the models each holds,
and the forms that create, change and delete one, through the functions /v1/access_group runs. Groups
config.yaml declares (`model_info.access_groups`) are listed, read-only. A group is named by `?id=`."""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway.errors import ApiError
from gateway.management.access_groups import (
    NewAccessGroup,
    UpdateAccessGroup,
    by_id,
    create_group,
    delete_group,
    find_groups,
    groups_of,
    update_group,
)
from gateway.management.common import total_pages, validated
from gateway.store.records import AccessGroupRecord
from gateway.ui import form_values, paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other

DONE = {"created": "The access group is created.", "updated": "Saved.", "deleted": "The access group is deleted."}


class GroupForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected."""

    access_group_name: str = ""
    description: str = ""
    access_model_names: list[str] = []
    assigned_team_ids: str = ""
    assigned_key_ids: str = ""


def _listed(text: str) -> list[str]:
    return list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))


def _request(form: GroupForm) -> dict[str, object]:
    return {"access_group_name": form.access_group_name, "description": form.description or None,
            "access_model_names": form.access_model_names, "assigned_team_ids": _listed(form.assigned_team_ids),
            "assigned_key_ids": _listed(form.assigned_key_ids)}


@page(admin=True)
async def list_groups(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search = paging.typed(query, "q")
    groups, total = await find_groups(ui.services, search or None, number, size)
    pages = total_pages(total, size)
    kept = {"q": search, "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    config = sorted(groups_of(ui.services).config.items())
    return ui.render(request, "access_groups.html", visit=visit, groups=groups, total=total, page=number,
                     pages=pages, size=size, sizes=paging.PAGE_SIZES, search=search, config=config,
                     pager=paging.pager("access-groups", kept, number, pages), filtered=bool(search),
                     done=DONE.get(query.get("done", "")))


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such access group", "This access group does not exist; it may have been "
                     "deleted.", visit)


async def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: GroupForm,
                     group: AccessGroupRecord | None, error: ApiError | None = None) -> web.Response:
    models = list(dict.fromkeys([*ui.services.router.public_names(), *form.access_model_names]))
    return ui.render(request, "access_group_form.html", status=error.status if error else 200, visit=visit,
                     form=form, group=group, error=error, models=models)


@page(admin=True)
async def new_form(request: web.Request, visit: Visit) -> web.Response:
    return await _form_page(request.app[UI], request, visit, GroupForm(), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    form = form_values.posted(await request.post(), GroupForm)
    try:
        await create_group(ui.services, visit.who, validated(_request(form), NewAccessGroup))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, None, error)
    return see_other(f"{visit.home}access-groups?done=created")


async def _stored(ui: AdminUi, request: web.Request) -> AccessGroupRecord | None:
    try:
        return await by_id(ui.services, request.query.get("id", ""))
    except ApiError:
        return None


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    group = await _stored(ui, request)
    if group is None:
        return _missing(ui, request, visit)
    form = form_values.shown(group, GroupForm)
    return await _form_page(ui, request, visit, form, group)


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    group = await _stored(ui, request)
    if group is None:
        return _missing(ui, request, visit)
    form = form_values.posted(await request.post(), GroupForm)
    try:
        await update_group(ui.services, visit.who, group.access_group_id,
                           validated(_request(form), UpdateAccessGroup, keep_nulls=True))
    except ApiError as error:
        if error.status == 404:
            return _missing(ui, request, visit)
        return await _form_page(ui, request, visit, form, group, error)
    return see_other(f"{visit.home}access-groups?done=updated")


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_group(ui.services, request.query.get("id", ""))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}access-groups?done=deleted")


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/access-groups", list_groups)
    app.router.add_get(f"{root}/access-groups/new", new_form)
    app.router.add_post(f"{root}/access-groups/new", create)
    app.router.add_get(f"{root}/access-groups/edit", edit_form)
    app.router.add_post(f"{root}/access-groups/edit", edit)
    app.router.add_post(f"{root}/access-groups/delete", delete)
