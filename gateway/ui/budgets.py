"""The budgets pages: budgets a page at a time with how many end users each holds, and the forms that
create, change and delete one, through the functions /budget/* runs. A budget is named by `?id=`."""

from __future__ import annotations

from urllib.parse import quote

import msgspec
from aiohttp import web

from gateway.errors import ApiError
from gateway.management.budgets import BudgetFields, change_budget, delete_budget, find_budgets, new_budget
from gateway.management.common import total_pages, validated
from gateway.store.records import BudgetRecord
from gateway.store.store import BUDGETS, END_USERS
from gateway.ui import form_values, paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other

NAMES = ("max_budget", "soft_budget", "budget_duration", "tpm_limit", "rpm_limit", "max_parallel_requests")
DONE = {"created": "The budget is created.", "updated": "Saved.",
        "deleted": "The budget is deleted; its end users go on without one."}


class BudgetForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected."""

    budget_id: str = ""
    max_budget: str = ""
    soft_budget: str = ""
    budget_duration: str = ""
    tpm_limit: str = ""
    rpm_limit: str = ""
    max_parallel_requests: str = ""


@page(admin=True)
async def list_budgets(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search = paging.typed(query, "q")
    budgets, total = await find_budgets(ui.services, search or None, number, size)
    holders = await ui.services.store.count_by(END_USERS, "budget_id", [b.budget_id for b in budgets])
    pages = total_pages(total, size)
    kept = {"q": search, "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    return ui.render(request, "budgets.html", visit=visit, budgets=budgets, holders=holders, total=total,
                     page=number, pages=pages, size=size, sizes=paging.PAGE_SIZES, search=search,
                     pager=paging.pager("budgets", kept, number, pages), filtered=bool(search),
                     done=DONE.get(query.get("done", "")))


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such budget", "This budget does not exist; it may have been deleted.",
                     visit)


async def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: BudgetForm,
                     budget: BudgetRecord | None, error: ApiError | None = None, done: str | None = None
                     ) -> web.Response:
    holders = (await ui.services.store.count_by(END_USERS, "budget_id", [budget.budget_id])).get(
        budget.budget_id, 0) if budget is not None else 0
    return ui.render(request, "budget_form.html", status=error.status if error else 200, visit=visit, form=form,
                     budget=budget, error=error, holders=holders, done=done)


@page(admin=True)
async def new_budget_form(request: web.Request, visit: Visit) -> web.Response:
    return await _form_page(request.app[UI], request, visit, BudgetForm(), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    form = form_values.posted(await request.post(), BudgetForm)
    try:
        wanted = form_values.given(form_values.values(form, NAMES))
        if form.budget_id:
            wanted["budget_id"] = form.budget_id
        budget = await new_budget(ui.services, visit.who, validated(wanted, BudgetFields))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, None, error)
    return see_other(f"{visit.home}budgets/edit?id={quote(budget.budget_id, safe='')}&done=created")


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    budget = await ui.services.store.get(BUDGETS, request.query.get("id", ""))
    if budget is None:
        return _missing(ui, request, visit)
    return await _form_page(ui, request, visit, form_values.shown(budget, BudgetForm), budget,
                            done=DONE.get(request.query.get("done", "")))


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    budget = await ui.services.store.get(BUDGETS, request.query.get("id", ""))
    if budget is None:
        return _missing(ui, request, visit)
    form = form_values.posted(await request.post(), BudgetForm)
    try:
        # /budget/update reads a field left out (or null) as unchanged: an emptied field keeps its value.
        changes = form_values.given(form_values.changed(form, budget, NAMES))
        await change_budget(ui.services, visit.who, validated({"budget_id": budget.budget_id, **changes},
                                                              BudgetFields))
    except ApiError as error:
        return await _form_page(ui, request, visit, form, budget, error)
    return see_other(f"{visit.home}budgets/edit?id={quote(budget.budget_id, safe='')}&done=updated")


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_budget(ui.services, request.query.get("id", ""))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}budgets?done=deleted")


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/budgets", list_budgets)
    app.router.add_get(f"{root}/budgets/new", new_budget_form)
    app.router.add_post(f"{root}/budgets/new", create)
    app.router.add_get(f"{root}/budgets/edit", edit_form)
    app.router.add_post(f"{root}/budgets/edit", edit)
    app.router.add_post(f"{root}/budgets/delete", delete)
