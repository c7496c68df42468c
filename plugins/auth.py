"""Who is calling. Rejects a request without a valid key before anything else looks at it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Ctx
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services


class Auth(Plugin):
    name = "auth"

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("auth", settings)
        self.authenticator = services.authenticator

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        ctx.caller = await self.authenticator.authenticate(ctx.request.headers)
        return None


PLUGIN = Auth
