"""The settings page (admins only): what this gateway runs with, from its typed config, every secret masked
(gateway/ui/config_view.py), and where the settings that may come from the environment came from."""

from __future__ import annotations

import os

from aiohttp import web

from gateway.config import ConfigError
from gateway.redis_client import redis_target
from gateway.services import database_url, master_key
from gateway.ui.base import UI, Visit, page
from gateway.ui.config_view import MASK, masked_url, sections


@page(admin=True)
async def settings_page(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    config = ui.services.config
    master = master_key(config)
    general = config.general_settings
    references = config.env_references
    if "general_settings.master_key" in references:
        master_from = f"os.environ/{references['general_settings.master_key']}"
    elif general.master_key:
        master_from = "general_settings.master_key"
    else:
        master_from = "LITELLM_MASTER_KEY" if master else "not set"
    url = database_url(config)
    store = masked_url(url) if url else f"SQLite at {config.gateway_settings.database_path}"
    try:
        target = redis_target(config)
        redis = target.describe() if target is not None else "none: limits and budgets are kept by each process"
    except ConfigError as exc:
        redis = str(exc)
    facts = [("Master key", f"{MASK} ({master_from})" if master else master_from),
             ("Store", store),
             ("Redis", redis),
             ("UI sign-in", f"username {ui.ui_username}, password " + (
                 "from UI_PASSWORD" if os.environ.get("UI_PASSWORD") else "the master key")),
             ("Path prefixes", ", ".join(["/", *config.gateway_settings.path_prefixes]))]
    return ui.render(request, "settings.html", visit=visit, facts=facts, sections=sections(config, master))


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/settings", settings_page)
