"""/model/new, /model/update, PATCH /model/{model_id}/update and /model/delete: models kept in the store.

As in LiteLLM, only with `general_settings.store_model_in_db` (or STORE_MODEL_IN_DB=True), for
admins, and only for stored models: those of config.yaml are changed in the file. A model is
checked as a config.yaml entry is before it is stored, and its secrets are never shown back.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway.catalog import CATALOG, Catalog
from gateway.config import ConfigError, LiteLLMParams, ModelEntry
from gateway.errors import ApiError, bad_request
from gateway.identity import Caller
from gateway.management.common import Name, admin, body, json, services, view
from gateway.openapi import documented
from gateway.router import with_credential
from gateway.services import Services
from gateway.store.records import ModelRecord
from gateway.store.store import MODELS, Conflict


class NewModel(msgspec.Struct, kw_only=True):
    model_name: Name
    litellm_params: dict[str, Any]
    model_info: dict[str, Any] = {}


class ModelChange(msgspec.Struct, kw_only=True):
    """LiteLLM's updateDeployment: every field optional. `id` is what LiteLLM's own CLI sends to
    /model/update in place of model_info.id."""

    model_name: Name | UnsetType = UNSET
    litellm_params: dict[str, Any] | UnsetType = UNSET
    model_info: dict[str, Any] | UnsetType = UNSET
    id: Name | UnsetType = UNSET


class ModelDelete(msgspec.Struct, kw_only=True):
    id: Name


def _catalog(request: web.Request) -> Catalog:
    return request.app[CATALOG]


def _storing_off() -> ApiError:
    # LiteLLM answers 500; the server is not at fault, the request asks for what the config turned off.
    return ApiError(400, "models are not stored in the database here: set general_settings.store_model_in_db: true "
                         "(or STORE_MODEL_IN_DB=True) to add, update or delete models through the API",
                    "invalid_request_error")


SECRET_WORDS = ("key", "secret", "password", "token", "credentials", "authorization")
SHOWN_ANYWAY = ("max_tokens", "litellm_credential_name")


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered == "extra_headers" or (lowered not in SHOWN_ANYWAY
                                          and any(word in lowered for word in SECRET_WORDS))


def shown(record: ModelRecord) -> dict[str, Any]:
    """A stored model as LiteLLM's /model/new answers it (its table row), secrets left out."""
    data = view(record)
    data["litellm_params"] = {k: v for k, v in record.litellm_params.items() if not is_secret(k)}
    data["model_info"] = {**record.model_info, "id": record.model_id, "db_model": True}
    return data


def checked(catalog: Catalog, model_id: str, model_name: str, params: dict[str, Any],
            model_info: dict[str, Any]) -> dict[str, Any]:
    """The params as they will be stored (typed fields normalised, the rest kept), once the model
    passes the checks a config.yaml entry passes; 400 naming the field otherwise."""
    params = {k: v for k, v in params.items() if v is not None}
    try:
        typed = msgspec.convert(params, LiteLLMParams, strict=False)
    except msgspec.ValidationError as exc:
        text, sep, at = str(exc).rpartition(" - at `")
        path = at.rstrip("`").removeprefix("$").removeprefix(".") if sep else ""
        field = f"litellm_params.{path}" if path else "litellm_params"
        raise bad_request(f"{field}: {text if sep else exc}", field) from None
    declared = ModelEntry(model_name=model_name, litellm_params=typed, model_info={**model_info, "id": model_id})
    # A credential not made yet is accepted, as LiteLLM accepts it (declarative tools add models before
    # credentials): the model is served from the moment the credential exists.
    resolved = with_credential(declared, catalog.credential_values()) or declared
    try:
        catalog.router.build(resolved, "", declared, from_store=True)
    except ConfigError as exc:
        message = str(exc)
        raise bad_request(message, message.partition(":")[0]) from None
    return {**params, **msgspec.to_builtins(typed)}


@documented(summary="Add a model (store_model_in_db)", body=NewModel)
async def new_model(request: web.Request) -> web.Response:
    who = await admin(request)
    return json(shown(await add_model(_catalog(request), services(request), who, await body(request, NewModel))))


async def add_model(catalog: Catalog, svc: Services, who: Caller, given: NewModel) -> ModelRecord:
    """/model/new's work: the model checked, stored, and served on this instance before it returns."""
    if not catalog.enabled:
        raise _storing_off()
    raw_id = given.model_info.get("id")
    model_id = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) and raw_id != "" \
        else str(uuid.uuid4())
    if model_id in catalog.router.by_id and not catalog.router.by_id[model_id].from_store:
        raise bad_request(f"model id {model_id!r} is already used by a model of the config file", "model_info.id")
    info = {k: v for k, v in given.model_info.items() if k not in ("id", "db_model")}
    params = checked(catalog, model_id, given.model_name, given.litellm_params, info)
    author = who.author
    record = ModelRecord(model_id=model_id, model_name=given.model_name, litellm_params=params, model_info=info,
                         created_by=author, updated_by=author)
    try:
        record = await svc.store.insert(MODELS, record)
    except Conflict:
        raise bad_request(f"model id {model_id!r} already exists", "model_info.id") from None
    await _served(catalog, svc, model_id)
    return record


async def _served(catalog: Catalog, svc: Services, model_id: str) -> None:
    """This instance serves the change before answering; the others read it from the change log."""
    await catalog.load()
    svc.accounts.changed("model", model_id)


def _in_config(catalog: Catalog, model_id: str) -> bool:
    found = catalog.router.by_id.get(model_id)
    return found is not None and not found.from_store


@documented(summary="Change a stored model, named by model_info.id or id", body=ModelChange)
async def update_model(request: web.Request) -> web.Response:
    """LiteLLM's /model/update: litellm_params merged into the stored ones, model_name renamed;
    the model is named by model_info.id (or `id`)."""
    who = await admin(request)
    change = await body(request, ModelChange)
    catalog = _catalog(request)
    if not catalog.enabled:
        raise _storing_off()
    model_id = change.id if not isinstance(change.id, UnsetType) else (
        change.model_info.get("id") if not isinstance(change.model_info, UnsetType) else None)
    if not isinstance(model_id, str) or not model_id:
        raise bad_request("model_info.id: the id of the model to update is required", "model_info.id")
    if isinstance(change.litellm_params, UnsetType):
        raise bad_request("litellm_params: required", "litellm_params")
    return json(shown(await change_model(catalog, services(request), who, model_id, change.model_name,
                                         change.litellm_params, None)))


@documented(summary="Change a stored model", body=ModelChange)
async def patch_model(request: web.Request) -> web.Response:
    """PATCH /model/{model_id}/update: only the fields given change; litellm_params and model_info
    are merged into the stored ones."""
    who = await admin(request)
    change = await body(request, ModelChange)
    catalog = _catalog(request)
    model_id = request.match_info["model_id"]
    if not catalog.enabled:
        raise bad_request("model updates are only for models stored in the database "
                          "(general_settings.store_model_in_db is off)")
    params = None if isinstance(change.litellm_params, UnsetType) else change.litellm_params
    info = None if isinstance(change.model_info, UnsetType) else change.model_info
    return json(shown(await change_model(catalog, services(request), who, model_id, change.model_name, params, info)))


async def change_model(catalog: Catalog, svc: Services, who: Caller, model_id: str, name: str | UnsetType,
                       params: dict[str, Any] | None, info: dict[str, Any] | None) -> ModelRecord:
    """/model/update's work: `params` and `info` merged into the stored ones, checked again, served."""
    store = svc.store
    problem: list[ApiError] = []

    def merge(current: ModelRecord) -> dict[str, Any] | None:
        model_name = current.model_name if isinstance(name, UnsetType) else name
        merged_info = {**current.model_info, **{k: v for k, v in (info or {}).items() if k not in ("id", "db_model")}}
        merged = {**current.litellm_params, **(params or {})}
        try:
            stored = checked(catalog, model_id, model_name, merged, merged_info)
        except ApiError as error:
            problem.append(error)
            return None
        return {"model_name": model_name, "litellm_params": stored, "model_info": merged_info,
                "updated_by": who.author}

    updated = await store.modify(MODELS, model_id, merge)
    if problem:
        raise problem[0]
    if updated is None:
        if _in_config(catalog, model_id):
            raise bad_request(f"model {model_id!r} is from the config file and cannot be changed through the API; "
                              "change it in config.yaml, or add a stored model with /model/new")
        raise ApiError(404, f"Model {model_id} not found on proxy.", "not_found_error")
    await _served(catalog, svc, model_id)
    return updated


@documented(summary="Delete a stored model", body=ModelDelete)
async def delete_model(request: web.Request) -> web.Response:
    await admin(request)
    given = await body(request, ModelDelete)
    await delete_stored_model(_catalog(request), services(request), given.id)
    return json({"message": f"Model: {given.id} deleted successfully"})


async def delete_stored_model(catalog: Catalog, svc: Services, model_id: str) -> None:
    """/model/delete's work."""
    if not catalog.enabled:
        raise _storing_off()
    if not await svc.store.delete(MODELS, [model_id]):
        if _in_config(catalog, model_id):
            raise bad_request(f"model {model_id!r} is from the config file and cannot be deleted through the API; "
                              "remove it from config.yaml", "id")
        # LiteLLM's status for an unknown id here is 400, not 404.
        raise bad_request(f"Model with id={model_id} not found in db", "id")
    await _served(catalog, svc, model_id)


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/model/new", new_model)
    app.router.add_post(f"{prefix}/model/update", update_model)
    app.router.add_patch(prefix + "/model/{model_id}/update", patch_model)
    app.router.add_post(f"{prefix}/model/delete", delete_model)
