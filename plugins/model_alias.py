"""A key's own `aliases` rename the requested model before routing (`{"gpt-4": "qwen3-30b"}`); else its team's
`model_aliases` do, as LiteLLM applies them."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.access import team_alias
from gateway.context import Ctx
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services


class ModelAlias(Plugin):
    name = "model_alias"

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("model_alias", settings)

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        caller = ctx.caller
        if caller is None or caller.key is None or ctx.requested_model is None:
            return None
        target = caller.key.aliases.get(ctx.requested_model) if caller.key.aliases else None
        if target is None and caller.team is not None:
            target = team_alias(caller, ctx.requested_model)
        if target is not None:
            ctx.requested_model = target
        return None


PLUGIN = ModelAlias
