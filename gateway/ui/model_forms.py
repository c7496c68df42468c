"""The forms that add, change and delete a stored model (store_model_in_db), through the functions /model/new,
/model/update and /model/delete run. The model's api_key is write-only: the form never shows it back (a
stored one is shown as set, masked), and an edit with the box left empty keeps it. Models of config.yaml
are changed in the file; their rows have no form."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
import orjson
from aiohttp import web

from gateway.catalog import CATALOG
from gateway.errors import ApiError, bad_request
from gateway.management.common import validated
from gateway.management.credentials import cards
from gateway.management.models import NewModel, add_model, change_model, delete_stored_model, is_secret
from gateway.store.records import ModelRecord
from gateway.store.store import MODELS
from gateway.ui import form_values
from gateway.ui.base import UI, AdminUi, Visit, page, see_other

DONE = {"added": "The model is added and served.", "updated": "Saved; the model is served as changed.",
        "deleted": "The model is deleted."}


class ModelForm(msgspec.Struct, kw_only=True):
    """The fields as typed, shown back when the form has to be corrected; never the api_key."""

    model_name: str = ""
    model: str = ""
    api_base: str = ""
    api_key: str = ""
    clear_api_key: bool = False
    litellm_credential_name: str = ""
    rpm: str = ""
    tpm: str = ""
    model_info: str = ""


def _whole(text: str, name: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"{name} must be a whole number, not {text!r}", f"litellm_params.{name}") from None


def _params(form: ModelForm) -> dict[str, Any]:
    """litellm_params as the form sets them: an empty box is None (left out of a new model, cleared from a
    stored one), except api_key, which an empty box keeps."""
    params: dict[str, Any] = {"model": form.model or None, "api_base": form.api_base or None,
                              "litellm_credential_name": form.litellm_credential_name or None,
                              "rpm": _whole(form.rpm, "rpm"), "tpm": _whole(form.tpm, "tpm")}
    if form.api_key:
        params["api_key"] = form.api_key
    elif form.clear_api_key:
        params["api_key"] = None
    return params


def _info(form: ModelForm) -> dict[str, Any]:
    return form_values.json_object(form.model_info, "model_info")


def shown(record: ModelRecord) -> ModelForm:
    params = record.litellm_params
    info = {k: v for k, v in record.model_info.items() if not is_secret(k)}
    return ModelForm(model_name=record.model_name, model=str(params.get("model") or ""),
                     api_base=str(params.get("api_base") or ""),
                     litellm_credential_name=str(params.get("litellm_credential_name") or ""),
                     rpm=str(params.get("rpm") or ""), tpm=str(params.get("tpm") or ""),
                     model_info=orjson.dumps(info, option=orjson.OPT_INDENT_2).decode() if info else "")


def _missing(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 404, "No such stored model", "This model is not in the store: it may have been "
                     "deleted, or it is one of config.yaml's, which is changed in the file.", visit)


def _storing_off(ui: AdminUi, request: web.Request, visit: Visit) -> web.Response:
    return ui.refuse(request, 400, "Models are not stored here", "Adding and changing models from the UI needs "
                     "general_settings.store_model_in_db: true (or STORE_MODEL_IN_DB=True).", visit)


def _form_page(ui: AdminUi, request: web.Request, visit: Visit, form: ModelForm, record: ModelRecord | None,
               error: ApiError | None = None) -> web.Response:
    credentials = [c["credential_name"] for c in cards(request.app[CATALOG])]
    has_key = record is not None and bool(record.litellm_params.get("api_key"))
    return ui.render(request, "model_form.html", status=error.status if error else 200, visit=visit, form=form,
                     record=record, error=error, credentials=credentials, has_key=has_key)


@page(admin=True)
async def new_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    if not request.app[CATALOG].enabled:
        return _storing_off(ui, request, visit)
    return _form_page(ui, request, visit, ModelForm(), None)


@page(admin=True)
async def create(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    typed = form_values.posted(await request.post(), ModelForm)
    try:
        params = {k: v for k, v in _params(typed).items() if v is not None}
        asked = validated({"model_name": typed.model_name, "litellm_params": params, "model_info": _info(typed)},
                          NewModel)
        await add_model(request.app[CATALOG], ui.services, visit.who, asked)
    except ApiError as error:
        # What was typed in api_key is used, never shown back.
        return _form_page(ui, request, visit, msgspec.structs.replace(typed, api_key=""), None, error)
    return see_other(f"{visit.home}models?done=added")


async def _stored(ui: AdminUi, request: web.Request) -> ModelRecord | None:
    return await ui.services.store.get(MODELS, request.query.get("id", ""))


@page(admin=True)
async def edit_form(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    record = await _stored(ui, request)
    if record is None:
        return _missing(ui, request, visit)
    return _form_page(ui, request, visit, shown(record), record)


@page(admin=True)
async def edit(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    record = await _stored(ui, request)
    if record is None:
        return _missing(ui, request, visit)
    typed = form_values.posted(await request.post(), ModelForm)
    try:
        if not typed.model_name:
            raise bad_request("Model name is required", "model_name")
        await change_model(request.app[CATALOG], ui.services, visit.who, record.model_id, typed.model_name,
                           _params(typed), _info(typed))
    except ApiError as error:
        return _form_page(ui, request, visit, msgspec.structs.replace(typed, api_key=""), record, error)
    return see_other(f"{visit.home}models?done=updated")


@page(admin=True)
async def delete(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    try:
        await delete_stored_model(request.app[CATALOG], ui.services, request.query.get("id", ""))
    except ApiError:
        return _missing(ui, request, visit)
    return see_other(f"{visit.home}models?done=deleted")


def edit_link(home: str, model_id: str) -> str:
    return f"{home}models/edit?id={quote(model_id, safe='')}"


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/models/new", new_form)
    app.router.add_post(f"{root}/models/new", create)
    app.router.add_get(f"{root}/models/edit", edit_form)
    app.router.add_post(f"{root}/models/edit", edit)
    app.router.add_post(f"{root}/models/delete", delete)
