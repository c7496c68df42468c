"""The models the router serves: the config's, and those added through /model/new, kept in the store.

Stored models and credentials are read whole (they are few) at start and again whenever the
store's change log names a model or a credential, on any instance; so a model added, changed or
deleted through one instance is served, changed or dropped by every instance, and every worker,
within one poll of the change log. The router takes the new set at once; requests under way keep
the deployment they picked.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import msgspec
from aiohttp import web

from gateway.config import Config, ConfigError, LiteLLMParams, ModelEntry
from gateway.pricing import Pricing
from gateway.router import Deployment, Router, with_credential
from gateway.store.records import CredentialRecord, ModelRecord
from gateway.store.store import CREDENTIALS, MODELS, Store
from gateway.upstreams import Pools

log = logging.getLogger("gateway.catalog")


def store_model_in_db(config: Config) -> bool:
    """general_settings.store_model_in_db, or LiteLLM's STORE_MODEL_IN_DB variable."""
    if config.general_settings.store_model_in_db is not None:
        return config.general_settings.store_model_in_db
    return os.environ.get("STORE_MODEL_IN_DB", "").strip().lower() in ("true", "1", "yes")


def stored_entry(record: ModelRecord) -> ModelEntry:
    """A stored model as a model_list entry; ConfigError naming the field when its params do not fit."""
    try:
        params = msgspec.convert(record.litellm_params, LiteLLMParams, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_readable(str(exc), "litellm_params")) from None
    return ModelEntry(model_name=record.model_name, litellm_params=params,
                      model_info={**record.model_info, "id": record.model_id})


def _readable(message: str, under: str) -> str:
    text, sep, at = message.rpartition(" - at `")
    if not sep:
        return f"{under}: {message}"
    path = at.rstrip("`").removeprefix("$").removeprefix(".")
    return f"{under}.{path}: {text}" if path else f"{under}: {text}"


class Catalog:
    """Brings the router in line with the config plus the store; one reload at a time."""

    def __init__(self, config: Config, router: Router, pools: Pools, pricing: Pricing, store: Store) -> None:
        self.config = config
        self.router = router
        self.pools = pools
        self.pricing = pricing
        self.store = store
        self.enabled = store_model_in_db(config)
        self.credentials: dict[str, CredentialRecord] = {}
        self._lock = asyncio.Lock()
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def changed(self, ref: str) -> None:
        """The change log named a model or a credential: read them again, soon and once."""
        self._again = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._reload_while_changed(), name="catalog-reload")

    async def _reload_while_changed(self) -> None:
        while self._again:
            self._again = False
            try:
                await self.load()
            except Exception as exc:
                log.warning("models: could not read the store (%s: %s); serving the last set", type(exc).__name__, exc)
                return

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def load(self) -> None:
        async with self._lock:
            credentials, _ = await self.store.find(CREDENTIALS, {})
            models: list[ModelRecord] = []
            if self.enabled:
                models, _ = await self.store.find(MODELS, {})
            self.credentials = {c.credential_name: c for c in credentials}
            self._apply(models)

    def credential_values(self) -> dict[str, dict[str, Any]]:
        """Stored credentials, then the config's (which win, as LiteLLM refuses to store over them)."""
        values = {name: record.credential_values for name, record in self.credentials.items()}
        values.update(self.router.config_credentials)
        return values

    def _apply(self, models: list[ModelRecord]) -> None:
        credentials = self.credential_values()
        wanted: list[Deployment] = []
        for index, entry in enumerate(self.config.model_list):
            deployment = self._build(entry, index, credentials, False)
            if deployment is not None:
                wanted.append(deployment)
        config_ids = {d.id for d in wanted}
        for record in sorted(models, key=lambda r: (r.created_at, r.model_id)):
            where = f"stored model {record.model_id}"
            try:
                entry = stored_entry(record)
            except ConfigError as exc:
                log.warning("%s is not served: %s", where, exc)
                continue
            deployment = self._build(entry, where, credentials, True)
            if deployment is None:
                continue
            if deployment.id in config_ids:
                log.warning("%s is not served: the config has a model with that id", where)
                continue
            wanted.append(deployment)
        added, removed = self.router.replace(wanted)
        for deployment in added:
            self.pools.attach(deployment)
            price = self.pricing.price(deployment, deployment.model_template)
            deployment.unit_cost = price.input_cost_per_token + price.output_cost_per_token
        for deployment in removed:
            self.pools.retire(deployment)
        if added or removed:
            log.info("models: %d served (%d added or changed, %d removed or changed)",
                     len(wanted), len(added), len(removed))

    def _build(self, entry: ModelEntry, where: int | str, credentials: dict[str, dict[str, Any]],
               from_store: bool) -> Deployment | None:
        resolved = with_credential(entry, credentials)
        name = f"model_list[{where}]" if isinstance(where, int) else where
        if resolved is None:
            log.warning("%s (%s) is not served: credential %r does not exist", name, entry.model_name,
                        entry.litellm_params.litellm_credential_name)
            return None
        try:
            return self.router.build(resolved, where, entry, from_store)
        except ConfigError as exc:
            log.warning("%s (%s) is not served: %s", name, entry.model_name, exc)
            return None


CATALOG = web.AppKey("catalog", Catalog)
