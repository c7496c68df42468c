"""The credentials page: named provider settings models use (`litellm_credential_name`), and the forms that
create, change and delete one, through the functions /credentials runs. A secret value is write-only: the
page says it is set and never puts it (or a piece of it) in the HTML; an edit with its box left empty keeps
it. Credentials of config.yaml are listed, read-only. A credential is named by `?name=`."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
from aiohttp import web

from gateway.catalog import CATALOG
from gateway.errors import ApiError, bad_request
from gateway.management.common import validated
from gateway.management.credentials import (
    SENSITIVE,
    CredentialChange,
    NewCredential,
    cards,
    create_credential,
    delete_credential,
    update_credential,
)
from gateway.store.records import CredentialRecord
from gateway.store.store import CREDENTIALS
from gateway.ui import form_values, paging
from gateway.ui.base import UI, AdminUi, Visit, page, see_other

HIDDEN = "********"
FIELDS = ("api_key", "api_base", "api_version")
DONE = {"created": "The credential is created.", "updated": "Saved; models using it connect with the new values.",
        "deleted": "The credential is deleted."}


class CredentialForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected; never a secret."""

    credential_name: str = ""
    display_name: str = ""
    api_key: str = ""
    clear_api_key: bool = False
    api_base: str = ""
    api_version: str = ""
    credential_info: str = ""


class Card(NamedTuple):
    name: str
    display_name: str | None
    settings: dict[str, str]  # secret values replaced by HIDDEN
    provider: str | None
    source: str


def _secret(name: str) -> bool:
    return any(word in name.lower() for word in SENSITIVE)


def _shown(values: dict[str, Any]) -> dict[str, str]:
    return {k: HIDDEN if _secret(k) else str(v) for k, v in values.items()}


def _cards(request: web.Request) -> list[Card]:
    found = []
    for c in cards(request.app[CATALOG]):
        provider = c["credential_info"].get("custom_llm_provider")
        # cards() masks as LiteLLM does (a few characters kept); the page keeps none.
        found.append(Card(c["credential_name"], c["display_name"], _shown(c["credential_values"]),
                          str(provider) if provider else None, c["source"]))
    return found


@page(admin=True)
async def list_credentials(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    query = request.query
    search = paging.typed(query, "q").lower()
    every = [c for c in _cards(request)
             if not search or search in c.name.lower() or search in (c.display_name or "").lower()]
    number, size = paging.asked(query)
    pages = max(1, -(-len(every) // size))
    number = min(number, pages)
    kept = {"q": search, "size": str(size) if size != paging.DEFAULT_SIZE else ""}
    return ui.render(request, "credentials.html", visit=visit, credentials=every[(number - 1) * size:number * size],
                     total=len(every), page=number, pages=pages, size=size, sizes=paging.PAGE_SIZES,
                     search=search, pager=paging.pager("credentials", kept, number, pages), filtered=bool(search),
                     done=DONE.get(query.get("done", "")))


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such credential", "This credential is not in the store: it may have been "
                     "deleted, or it is one of config.yaml's, which is changed in the file.", visit)


def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: CredentialForm,
               record: CredentialRecord | None, error: ApiError | None = None) -> web.Response:
    shown = _shown(record.credential_values) if record is not None else {}
    return ui.render(request, "credential_form.html", status=error.status if error else 200, visit=visit,
                     form=msgspec.structs.replace(form, api_key=""), record=record, error=error, shown=shown)


def _values(form: CredentialForm) -> dict[str, Any]:
    return {name: value for name in FIELDS if (value := getattr(form, name))}


def _info(form: CredentialForm) -> dict[str, Any]:
    return form_values.json_object(form.credential_info, "credential_info")


@page(admin=True)
async def new_form(request: web.Request, visit: Visit) -> web.Response:
    return _form_page(request.app[UI], request, visit, CredentialForm(), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    typed = form_values.posted(await request.post(), CredentialForm)
    try:
        if not _values(typed):
            raise bad_request("Set an API key, an API base or an API version", "api_key")
        asked = {"credential_name": typed.credential_name, "credential_info": _info(typed),
                 "credential_values": _values(typed), **({"display_name": typed.display_name}
                                                         if typed.display_name else {})}
        await create_credential(request.app[CATALOG], ui.services, visit.who, validated(asked, NewCredential))
    except ApiError as error:
        return _form_page(ui, request, visit, typed, None, error)
    return see_other(f"{visit.home}credentials?done=created")


async def _stored(ui: AdminUi, request: web.Request) -> CredentialRecord | None:
    return await ui.services.store.get(CREDENTIALS, request.query.get("name", ""))


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    record = await _stored(ui, request)
    if record is None:
        return _missing(ui, request, visit)
    values = record.credential_values
    form = form_values.shown(record, CredentialForm, api_base=str(values.get("api_base") or ""),
                             api_version=str(values.get("api_version") or ""))
    return _form_page(ui, request, visit, form, record)


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    record = await _stored(ui, request)
    if record is None:
        return _missing(ui, request, visit)
    typed = form_values.posted(await request.post(), CredentialForm)
    # An emptied api_base or api_version is dropped; an empty api_key box keeps the key unless removal is ticked.
    dropped: list[str] = [n for n in ("api_base", "api_version")
                          if not getattr(typed, n) and n in record.credential_values]
    if typed.clear_api_key and not typed.api_key:
        dropped.append("api_key")
    try:
        asked = {"credential_info": _info(typed), "credential_values": _values(typed),
                 "credential_values_to_delete": dropped, "display_name": typed.display_name}
        await update_credential(request.app[CATALOG], ui.services, visit.who, record.credential_name,
                                validated(asked, CredentialChange))
    except ApiError as error:
        return _form_page(ui, request, visit, typed, record, error)
    return see_other(f"{visit.home}credentials?done=updated")


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_credential(request.app[CATALOG], ui.services, request.query.get("name", ""))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}credentials?done=deleted")


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/credentials", list_credentials)
    app.router.add_get(f"{root}/credentials/new", new_form)
    app.router.add_post(f"{root}/credentials/new", create)
    app.router.add_get(f"{root}/credentials/edit", edit_form)
    app.router.add_post(f"{root}/credentials/edit", edit)
    app.router.add_post(f"{root}/credentials/delete", delete)
