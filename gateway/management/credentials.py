"""/credentials: named provider settings (api_key, api_base, api_version) that models use through
`litellm_params.litellm_credential_name`, as LiteLLM's credential endpoints keep them.

Values are never shown whole: a secret-looking one keeps its first and last two characters, as
LiteLLM masks them. Credentials of config.yaml's `credential_list` are listed but not changed here.
A change reaches every model using the credential, on every instance (gateway.catalog).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from msgspec import UNSET, UnsetType

from gateway.catalog import CATALOG, Catalog
from gateway.errors import ApiError, bad_request
from gateway.identity import Caller
from gateway.management.common import Name, admin, body, json, services
from gateway.openapi import documented
from gateway.router import CREDENTIAL_FIELDS
from gateway.services import Services
from gateway.store.records import CredentialRecord
from gateway.store.store import CREDENTIALS, Conflict

SENSITIVE = ("authorization", "token", "key", "secret", "vertex_credentials", "credentials", "password", "passwd")


class NewCredential(msgspec.Struct, kw_only=True):
    credential_name: Name
    credential_info: dict[str, Any]
    credential_values: dict[str, Any] | UnsetType = UNSET
    model_id: Name | UnsetType = UNSET
    display_name: Name | UnsetType = UNSET


class CredentialChange(msgspec.Struct, kw_only=True):
    credential_info: dict[str, Any]
    credential_name: Name | UnsetType = UNSET
    credential_values: dict[str, Any] | UnsetType = UNSET
    model_id: Name | UnsetType = UNSET
    display_name: Name | UnsetType = UNSET
    credential_values_to_delete: list[str] | UnsetType = UNSET


def masked(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _mask(v) if any(word in k.lower() for word in SENSITIVE) else v for k, v in values.items()}


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return masked(value)
    if not isinstance(value, str):
        return value
    return "*****" if len(value) <= 4 else f"{value[:2]}****{value[-2:]}"


def _catalog(request: web.Request) -> Catalog:
    return request.app[CATALOG]


def _card(name: str, display_name: str | None, values: dict[str, Any], info: dict[str, Any],
          source: str) -> dict[str, Any]:
    return {"credential_name": name, "display_name": display_name, "credential_values": masked(values),
            "credential_info": info, "source": source}


def cards(catalog: Catalog) -> list[dict[str, Any]]:
    cards = [_card(c.credential_name, c.display_name, c.credential_values, c.credential_info, "db")
             for c in catalog.credentials.values() if c.credential_name not in catalog.router.config_credentials]
    cards += [_card(c.credential_name, None, c.credential_values, c.credential_info, "config")
              for c in catalog.config.credential_list]
    return cards


def _from_model(catalog: Catalog, model_id: str) -> dict[str, Any]:
    """What a served model connects with: its api_key, api_base and api_version."""
    deployment = catalog.router.by_id.get(model_id)
    if deployment is None:
        raise ApiError(404, "Model not found", "not_found_error")
    params = deployment.entry.litellm_params
    return {field: getattr(params, field) for field in CREDENTIAL_FIELDS if getattr(params, field) is not None}


def _refuse_config(catalog: Catalog, name: str, status: int) -> None:
    if name in catalog.router.config_credentials:
        raise ApiError(status, f"credential {name!r} is defined in config.yaml; change it there",
                       "invalid_request_error", "credential_name", headers={"Allow": "GET"} if status == 405 else None)


async def _changed(catalog: Catalog, svc: Services, name: str) -> None:
    await catalog.load()
    svc.accounts.changed("credential", name)


@documented(summary="Create a credential", body=NewCredential)
async def create(request: web.Request) -> web.Response:
    who = await admin(request)
    await create_credential(_catalog(request), services(request), who, await body(request, NewCredential))
    return json({"success": True, "message": "Credential created successfully"})


async def create_credential(catalog: Catalog, svc: Services, who: Caller, given: NewCredential) -> None:
    """POST /credentials' work: stored, and used by this instance's models before it returns."""
    if not isinstance(given.model_id, UnsetType):
        values = _from_model(catalog, given.model_id)
    elif not isinstance(given.credential_values, UnsetType) and given.credential_values:
        values = {k: v for k, v in given.credential_values.items() if v is not None}
    else:
        raise bad_request("either credential_values or model_id must be set", "credential_values")
    _refuse_config(catalog, given.credential_name, 409)
    author = who.author
    record = CredentialRecord(
        credential_name=given.credential_name, credential_values=values, credential_info=given.credential_info,
        display_name=None if isinstance(given.display_name, UnsetType) else given.display_name.strip() or None,
        created_by=author, updated_by=author)
    try:
        await svc.store.insert(CREDENTIALS, record)
    except Conflict:
        raise ApiError(409, f"credential {given.credential_name!r} already exists; change it with PATCH "
                            f"/credentials/{given.credential_name}, or delete it first", "invalid_request_error",
                       "credential_name") from None
    await _changed(catalog, svc, given.credential_name)


@documented(summary="Every credential, its values masked")
async def list_credentials(request: web.Request) -> web.Response:
    await admin(request)
    return json({"success": True, "credentials": cards(_catalog(request))})


@documented(summary="One credential by name")
async def by_name(request: web.Request) -> web.Response:
    await admin(request)
    name = request.match_info["name"]
    for card in cards(_catalog(request)):
        if card["credential_name"] == name:
            return json(card)
    raise ApiError(404, f"Credential not found. Got credential name: {name}", "not_found_error")


@documented(summary="The credential a model uses")
async def by_model(request: web.Request) -> web.Response:
    await admin(request)
    catalog = _catalog(request)
    model_id = request.match_info["model_id"]
    values = _from_model(catalog, model_id)
    group = catalog.router.by_id[model_id].group
    return json({"credential_name": f"{group}-credential-{model_id}", "credential_values": masked(values),
                 "credential_info": {}})


@documented(summary="Change a credential", body=CredentialChange)
async def update(request: web.Request) -> web.Response:
    who = await admin(request)
    await update_credential(_catalog(request), services(request), who, request.match_info["name"],
                            await body(request, CredentialChange))
    return json({"success": True, "message": "Credential updated successfully"})


async def update_credential(catalog: Catalog, svc: Services, who: Caller, name: str, given: CredentialChange
                            ) -> None:
    """PATCH /credentials/{name}'s work: values sent merged over the stored ones, those named dropped."""
    if not isinstance(given.credential_name, UnsetType) and given.credential_name != name:
        raise bad_request("credential_name cannot be changed; set display_name to relabel the credential",
                          "credential_name")
    incoming = (_from_model(catalog, given.model_id) if not isinstance(given.model_id, UnsetType)
                else {} if isinstance(given.credential_values, UnsetType) else given.credential_values)
    dropped = () if isinstance(given.credential_values_to_delete, UnsetType) else given.credential_values_to_delete

    def change(current: CredentialRecord) -> dict[str, Any]:
        values = {**current.credential_values, **{k: v for k, v in incoming.items() if v is not None}}
        for key in dropped:
            values.pop(key, None)
        fields: dict[str, Any] = {"credential_values": values,
                                  "credential_info": {**current.credential_info, **given.credential_info},
                                  "updated_by": who.author}
        if not isinstance(given.display_name, UnsetType):
            fields["display_name"] = given.display_name.strip() or None
        return fields

    if await svc.store.modify(CREDENTIALS, name, change) is None:
        _refuse_config(catalog, name, 405)
        raise ApiError(404, "Credential not found in DB.", "not_found_error")
    await _changed(catalog, svc, name)


@documented(summary="Delete a credential")
async def delete(request: web.Request) -> web.Response:
    await admin(request)
    name = request.match_info["name"]
    await delete_credential(_catalog(request), services(request), name)
    return json({"success": True, "message": "Credential deleted successfully"})


async def delete_credential(catalog: Catalog, svc: Services, name: str) -> None:
    """DELETE /credentials/{name}'s work."""
    if not await svc.store.delete(CREDENTIALS, [name]):
        _refuse_config(catalog, name, 405)
        raise ApiError(404, f"Credential not found. Got credential name: {name}", "not_found_error")
    await _changed(catalog, svc, name)


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_post(f"{prefix}/credentials", create)
    app.router.add_get(f"{prefix}/credentials", list_credentials)
    app.router.add_get(prefix + "/credentials/by_name/{name:.+}", by_name)
    app.router.add_get(prefix + "/credentials/by_model/{model_id:.+}", by_model)
    app.router.add_patch(prefix + "/credentials/{name:.+}", update)
    app.router.add_delete(prefix + "/credentials/{name:.+}", delete)
