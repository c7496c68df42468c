"""The models page: every deployment with its provider, state (ready, cooling down, at its rate limit),
requests in flight and latency, as this process's router sees them; a key that is not an admin's sees the
deployments of the models it may use, without their addresses."""

from __future__ import annotations

from aiohttp import web

from gateway.access import may_use
from gateway.ui.base import UI, Visit, page


@page()
async def models_page(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    router = ui.services.router
    now = router.clock()
    shown = [d for d in router.deployments
             if visit.who.is_admin or may_use(visit.who, d.group, router.aliases, router.access_groups)]
    rows = []
    for d in shown:
        if d.cooldown_until > now:
            state, wait = "cooling down", d.cooldown_until - now
        elif d.limited_until > now:
            state, wait = "at its rate limit", d.limited_until - now
        else:
            state, wait = "ready", 0.0
        rows.append({"group": d.group, "id": d.id, "provider": d.provider.name,
                     "model": d.upstream_model(d.group) if not d.is_wildcard else d.model_template,
                     "api_base": d.api_base if visit.who.is_admin else None, "state": state, "wait": wait,
                     "in_flight": d.in_flight, "latency_ms": d.latency * 1000 if d.latency is not None else None,
                     "failures": d.failures, "cooldowns": d.cooldowns, "rpm": d.rpm, "tpm": d.tpm,
                     "source": "store" if d.from_store else "config"})
    return ui.render(request, "models.html", visit=visit, rows=rows)


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/models", models_page)
