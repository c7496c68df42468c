"""May this key use this model? Its own `models`, narrowed by its team's and its organization's
(gateway/access.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.access import check_model_access
from gateway.context import Ctx
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services


class ModelAccess(Plugin):
    name = "model_access"

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("model_access", settings)
        self.group_aliases = services.router.aliases
        self.access_groups = services.router.access_groups

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        if ctx.caller is not None and ctx.requested_model is not None:
            check_model_access(ctx.caller, ctx.requested_model, self.group_aliases, self.access_groups)
        return None


PLUGIN = ModelAccess
