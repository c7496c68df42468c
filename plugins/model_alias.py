"""A key's own `aliases` rename the requested model before routing (`{"gpt-4": "qwen3-30b"}`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Ctx
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services


class ModelAlias(Plugin):
    name = "model_alias"

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("model_alias", settings)

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        caller = ctx.caller
        if caller is not None and caller.key is not None and caller.key.aliases:
            target = caller.key.aliases.get(ctx.requested_model or "")
            if target is not None:
                ctx.requested_model = target
        return None


PLUGIN = ModelAlias
