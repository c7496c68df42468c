"""The admin UI at /ui (and under every path prefix): server-rendered pages over the management API's own
functions, with the UI's own style and script from the package. Nothing loads from elsewhere."""

from __future__ import annotations

from aiohttp import web

from gateway.openapi import Operation, describe
from gateway.ui import (
    access_groups,
    budgets,
    credentials,
    end_users,
    keys,
    logs,
    models,
    organizations,
    settings,
    signin,
    spend,
    sso,
    teams,
    users,
)
from gateway.ui.base import UI, AdminUi

HIDDEN = Operation(hidden=True, public=True)  # served, but not part of the API /openapi.json describes


async def asset(request: web.Request) -> web.Response:
    return request.app[UI].assets.response(request.match_info["name"])


def add_routes(app: web.Application, prefix: str) -> None:
    """The UI's routes under one prefix ("" for the root)."""
    if UI not in app:
        app[UI] = AdminUi(app)
    ui = app[UI]
    root = f"{prefix}/ui"
    ui.roots = sorted({*ui.roots, root}, key=len, reverse=True)
    before = len(app.router.routes())
    app.router.add_get(root, signin.root)
    app.router.add_get(f"{root}/", signin.root)
    app.router.add_get(f"{root}/login", signin.sign_in_page)
    app.router.add_post(f"{root}/login", signin.sign_in)
    app.router.add_post(f"{root}/logout", signin.sign_out)
    app.router.add_get(root + "/static/{name}", asset)
    sso.add_routes(app, prefix, root)
    keys.add_routes(app, root)
    teams.add_routes(app, root)
    organizations.add_routes(app, root)
    access_groups.add_routes(app, root)
    credentials.add_routes(app, root)
    users.add_routes(app, root)
    end_users.add_routes(app, root)
    budgets.add_routes(app, root)
    spend.add_routes(app, root)
    logs.add_routes(app, root)
    settings.add_routes(app, root)
    models.add_routes(app, root)
    for route in list(app.router.routes())[before:]:
        describe(route.handler, HIDDEN)
