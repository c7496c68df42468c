"""The models page: every deployment with its provider, state (ready, cooling down, at its rate limit),
requests in flight and latency, as this process's router sees them; a key that is not an admin's sees the
deployments of the models it may use, without their addresses. An admin may run /health's check of one
deployment, or of all, from the page and see what each answered."""

from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple

from aiohttp import web

from gateway.access import may_use
from gateway.catalog import CATALOG
from gateway.info import INFO, InfoRoutes
from gateway.router import Deployment
from gateway.ui import model_forms
from gateway.ui.base import UI, Visit, page


class Check(NamedTuple):
    """What a deployment answered /health's check."""

    healthy: bool
    error: str | None
    status: int | None
    ms: float


def _rows(request: web.Request, visit: Visit) -> list[dict[str, Any]]:
    router = request.app[UI].services.router
    now = router.clock()
    rows = []
    for d in router.deployments:
        if not visit.who.is_admin and not may_use(visit.who, d.group, router.aliases, router.access_groups):
            continue
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
    return rows


def _render(request: web.Request, visit: Visit, checks: dict[str, Check], checked: float | None) -> web.Response:
    return request.app[UI].render(request, "models.html", visit=visit, rows=_rows(request, visit), checks=checks,
                                  checked=checked, storing=request.app[CATALOG].enabled,
                                  done=model_forms.DONE.get(request.query.get("done", "")))


@page()
async def models_page(request: web.Request, visit: Visit) -> web.Response:
    return _render(request, visit, {}, None)


async def _check(info: InfoRoutes, deployment: Deployment) -> Check:
    started = time.perf_counter()
    _, failed = await info.probe(deployment)
    elapsed = (time.perf_counter() - started) * 1000
    if failed is None:
        return Check(True, None, None, elapsed)
    return Check(False, str(failed.get("error")), int(failed.get("exception_status") or 0) or None, elapsed)


@page(admin=True)
async def check_health(request: web.Request, visit: Visit) -> web.Response:
    """Probes the deployment the form names (every one without a name), as /health does, and shows the page
    with what each answered. A POST: the probes call upstreams, which may cost."""
    ui = request.app[UI]
    wanted = (await request.post()).get("id")
    deployments = [d for d in ui.services.router.deployments if not wanted or d.id == wanted]
    if wanted and not deployments:
        return ui.refuse(request, 404, "No such deployment", "This deployment is gone: the model list may have "
                         "changed since the page was loaded.", visit)
    results = await asyncio.gather(*(_check(request.app[INFO], d) for d in deployments))
    checks = {d.id: result for d, result in zip(deployments, results)}
    return _render(request, visit, checks, ui.services.clock())


def add_routes(app: web.Application, root: str) -> None:
    app.router.add_get(f"{root}/models", models_page)
    app.router.add_post(f"{root}/models/health", check_health)
    model_forms.add_routes(app, root)
