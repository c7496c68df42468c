"""The end users page: the customers requests named (`user`, or LiteLLM's headers), searched a page at a
time with their spend and budget, and blocked or unblocked through the functions /end_user/* runs. An
end user never seen may be blocked ahead of time, as /end_user/block allows."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from gateway.errors import ApiError
from gateway.management.common import total_pages, validated
from gateway.management.end_users import CustomerIds, EndUserFilter, find_end_users, set_blocked
from gateway.ui import paging
from gateway.ui.base import UI, Visit, page, see_other

STATUSES = {"": None, "active": False, "blocked": True}
DONE = {"blocked": "Blocked: requests naming this end user are refused.", "unblocked": "Unblocked."}


@page(admin=True)
async def list_end_users(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    number, size = paging.asked(query)
    search, budget = paging.typed(query, "q"), paging.typed(query, "budget")
    status = query.get("status", "") if query.get("status", "") in STATUSES else ""
    wanted = EndUserFilter(search=search or None, budget_id=budget or None, blocked=STATUSES[status])
    records, total, budgets = await find_end_users(ui.services, wanted, number, size)
    pages = total_pages(total, size)
    kept = {"q": search, "budget": budget, "status": status,
            "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    return ui.render(request, "end_users.html", visit=visit, end_users=records, budgets=budgets, total=total,
                     page=number, pages=pages, size=size, sizes=paging.PAGE_SIZES, search=search, budget=budget,
                     state=status, pager=paging.pager("end-users", kept, number, pages),
                     filtered=bool(search or budget or status), done=DONE.get(query.get("done", "")),
                     error=None, typed="")


async def _blocked(request: web.Request, visit: Visit, blocked: bool) -> web.Response:
    ui = request.app[UI]
    posted = await request.post()
    user_id = str(posted.get("user_id") or "").strip()
    try:
        await set_blocked(ui.services, validated({"user_ids": [user_id]}, CustomerIds).user_ids, blocked)
    except ApiError as error:
        records, total, budgets = await find_end_users(ui.services, EndUserFilter(), 1, paging.DEFAULT_SIZE)
        return ui.render(request, "end_users.html", status=error.status, visit=visit, end_users=records,
                         budgets=budgets, total=total, page=1, pages=total_pages(total, paging.DEFAULT_SIZE),
                         size=paging.DEFAULT_SIZE, sizes=paging.PAGE_SIZES, search="", budget="", state="",
                         pager=paging.Pager(None, None), filtered=False, done=None, error=error, typed=user_id)
    # Back to the list, narrowed to the one changed, so the change is in sight.
    return see_other(f"{visit.home}end-users?" + urlencode({"q": user_id,
                                                            "done": "blocked" if blocked else "unblocked"}))


@page(admin=True)
async def block(request: web.Request, visit: Visit) -> web.Response:
    return await _blocked(request, visit, True)


@page(admin=True)
async def unblock(request: web.Request, visit: Visit) -> web.Response:
    return await _blocked(request, visit, False)


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/end-users", list_end_users)
    app.router.add_post(f"{root}/end-users/block", block)
    app.router.add_post(f"{root}/end-users/unblock", unblock)
