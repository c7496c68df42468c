"""Prometheus metrics under LiteLLM's names, served at /metrics.

Turned on as in LiteLLM (`litellm_settings.callbacks: ["prometheus"]`) or by
listing `metrics` in `gateway_settings.plugins`. It sits first in the chain,
so every request is counted, those turned away by auth included. A request
costs a few dict updates in `on_settle`, once its answer is complete;
deployment states, in-flight counts and cooldowns are read when scraped.
With `gateway --workers N` each worker's numbers reach whichever worker
answers the scrape (see gateway/metrics/shared.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.context import Ctx
from gateway.errors import ApiError
from gateway.metrics.exposition import GAUGE_COMBINE, library_counters, merge_library_counters, render
from gateway.metrics.shared import DIRECTORY_VARIABLE, SharedTallies
from gateway.metrics.tallies import Labels, merge
from gateway.openapi import Operation, describe
from gateway.plugin import Plugin
from gateway.proxy import IN_FLIGHT
from gateway.services import Services
from gateway.settlement import Settlement

log = logging.getLogger("gateway.metrics")

NO_CALLER: Labels = ("", "", "", "")


class MetricsSettings(msgspec.Struct, forbid_unknown_fields=True):
    # None: as litellm_settings.require_auth_for_metrics_endpoint says (LiteLLM's default: open).
    require_auth: bool | None = None
    # How often a worker shares its numbers with the others when it runs as one of several.
    share_interval: float = 0.5


class Metrics(Plugin):
    name = "metrics"
    needs_usage = True

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        options = msgspec.convert(settings, MetricsSettings)  # a ValidationError is a ValueError: a start error
        litellm = services.config.litellm_settings
        self.require_auth = options.require_auth if options.require_auth is not None else bool(
            litellm.require_auth_for_metrics_endpoint)
        self.share_interval = options.share_interval
        self.tallies = services.tallies
        self.router = services.router
        self.authenticator = services.authenticator
        directory = os.environ.get(DIRECTORY_VARIABLE)
        self.shared = SharedTallies(directory) if directory else None
        self.sharing: asyncio.TimerHandle | None = None
        self.writing: asyncio.Future[None] | None = None
        self.in_flight: Any = None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        deployment = ctx.deployment
        if deployment is None:
            return
        requests = headers.get("llm_provider-x-ratelimit-remaining-requests")
        tokens = headers.get("llm_provider-x-ratelimit-remaining-tokens")
        if requests is None and tokens is None:
            return
        labels = (deployment.group, deployment.id, deployment.api_base)
        for name, value in (("litellm_remaining_requests_metric", requests),
                            ("litellm_remaining_tokens_metric", tokens)):
            if value is not None:
                try:
                    self.tallies.set(name, labels, float(value))
                except ValueError:
                    pass  # not a number: nothing to report

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        tallies = self.tallies
        caller_labels = self._caller_labels(ctx)
        deployment = ctx.deployment
        group = deployment.group if deployment is not None and deployment.is_wildcard else ctx.model_group
        if group is None:
            requested = ctx.requested_model
            known = requested is not None and (requested in self.router.groups or requested in self.router.aliases)
            group = requested if known and requested is not None else ""
        status = settled.status
        error = settled.error
        requests = (group, *caller_labels)
        tallies.add("litellm_proxy_total_requests_metric", (*requests, f"{status // 100}xx"))
        if settled.failed:
            tallies.add("litellm_proxy_failed_requests_metric",
                        (*requests, str(error.status if error is not None else status),
                         error.type if error is not None else "error"))
        ended = settled.ended
        total = ended - ctx.started
        tallies.observe("litellm_request_total_latency_metric", requests, total)
        if deployment is not None:
            self._deployment(ctx, settled, (group, deployment.id, *caller_labels), total, ended)
        if ctx.budgets:
            self._budgets(ctx, settled.cost, caller_labels)
        if self.shared is not None and self.sharing is None:
            self.sharing = asyncio.get_running_loop().call_later(self.share_interval, self._share)

    def _caller_labels(self, ctx: Ctx) -> Labels:
        caller = ctx.caller
        if caller is None:
            return NO_CALLER
        key = caller.key
        hashed = "master" if caller.is_master else (caller.token or "")[:16]
        if key is None:
            return ("", hashed, "", "")
        return (key.key_alias or "", hashed, key.team_id or "", key.user_id or "")

    def _deployment(self, ctx: Ctx, settled: Settlement, labels: Labels, total: float, ended: float) -> None:
        tallies = self.tallies
        usage = settled.usage
        if usage is not None:
            tallies.add("litellm_input_tokens_metric", labels, usage.prompt_tokens)
            tallies.add("litellm_output_tokens_metric", labels, usage.completion_tokens)
            tallies.add("litellm_total_tokens_metric", labels, usage.total_tokens)
            tallies.add("litellm_spend_metric", labels, settled.cost)
        sent = ctx.sent_at
        if sent is None:
            return  # answered by the built-in mock: there was no upstream call
        first = ctx.first_byte_at
        if ctx.stream:
            upstream = ended - sent
            if first is not None:
                tallies.observe("litellm_llm_api_time_to_first_token_metric", labels, first - sent)
        else:
            upstream = (first or ended) - sent
        tallies.observe("litellm_llm_api_latency_metric", labels, upstream)
        tallies.observe("litellm_overhead_latency_metric", labels, max(0.0, total - upstream))

    def _budgets(self, ctx: Ctx, cost: float, caller_labels: Labels) -> None:
        caller = ctx.caller
        for standing in ctx.budgets:
            left = standing.limit - standing.spent_before - cost
            if standing.counter.startswith("key:"):
                self.tallies.set("litellm_remaining_api_key_budget_metric", (caller_labels[1], caller_labels[0]),
                                 left)
            elif standing.counter.startswith("team:") and caller is not None and caller.team is not None:
                self.tallies.set("litellm_remaining_team_budget_metric",
                                 (caller.team.team_id, caller.team.team_alias or ""), left)

    def _read_live(self) -> None:
        """What is a state rather than an event: read from the router and the server when needed."""
        tallies = self.tallies
        if self.in_flight is not None:
            tallies.set("litellm_in_flight_requests", (), float(self.in_flight.count))
        tallies.set("gateway_asyncio_tasks", (), float(len(asyncio.all_tasks())))
        now = self.router.clock()
        for deployment in self.router.deployments:
            labels = (deployment.group, deployment.id, deployment.api_base)
            state = 2 if deployment.cooldown_until > now else 1 if deployment.failures else 0
            tallies.set("litellm_deployment_state", labels, float(state))
            if deployment.cooldowns:
                tallies.counters.setdefault("litellm_deployment_cooled_down", {})[labels] = float(
                    deployment.cooldowns)

    def _snapshot(self) -> dict[str, Any]:
        self._read_live()
        return {**self.tallies.snapshot(), "library": library_counters()}

    def _share(self) -> None:
        self.sharing = None
        if self.shared is None or (self.writing is not None and not self.writing.done()):
            return
        self.writing = asyncio.get_running_loop().run_in_executor(None, self.shared.write, self._snapshot())

    def add_routes(self, app: web.Application, prefix: str) -> None:
        self.in_flight = app.get(IN_FLIGHT)
        serve = describe(self.serve, Operation(summary="Prometheus metrics", public=not self.require_auth))
        app.router.add_get(f"{prefix}/metrics", serve)
        app.router.add_get(f"{prefix}/metrics/", serve)

    async def serve(self, request: web.Request) -> web.Response:
        if self.require_auth:
            caller = await self.authenticator.authenticate(request.headers)
            if not caller.is_admin:
                raise ApiError(403, "/metrics needs the master key or a proxy admin's key", "auth_error")
        own = self._snapshot()
        if self.shared is None:
            body = render(self.tallies, merge_library_counters([own["library"]]), with_process=True)
        else:
            others, live = await asyncio.get_running_loop().run_in_executor(None, self.shared.others)
            merged = merge([own, *others], [True, *live], GAUGE_COMBINE)
            library = merge_library_counters([own["library"], *(s.get("library", {}) for s in others)])
            body = render(merged, library, with_process=False)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def close(self) -> None:
        if self.sharing is not None:
            self.sharing.cancel()
        if self.writing is not None:
            await self.writing
        if self.shared is not None:
            self.shared.write(self._snapshot())


PLUGIN = Metrics
