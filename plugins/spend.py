"""One spend record per request (failed and cancelled ones too), spooled when it settles: before the
last bytes of a complete answer go out, so a client that has its whole answer has its record."""

from __future__ import annotations

import time
from typing import Any

from gateway.context import Ctx
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services
from gateway.settlement import Settlement
from gateway.spend.record import SpendRecord


def request_tags(ctx: Ctx) -> list[str]:
    tags: list[str] = []
    caller = ctx.caller
    if caller is not None and caller.key is not None:
        tags.extend(caller.key.tags)
    metadata = (ctx.body or {}).get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("tags"), list):
        tags.extend(t for t in metadata["tags"] if isinstance(t, str) and len(t) <= 256)
    return tags[:64]


def record_of(ctx: Ctx, settled: Settlement) -> SpendRecord:
    caller = ctx.caller
    key = caller.key if caller is not None else None
    deployment = ctx.deployment
    usage = settled.usage
    now = time.time()
    return SpendRecord(
        request_id=ctx.request_id,
        api_key=caller.token if caller is not None else None,
        key_alias=key.key_alias if key is not None else None,
        user_id=key.user_id if key is not None else None,
        team_id=key.team_id if key is not None else None,
        model=ctx.requested_model,
        model_group=ctx.model_group,
        model_id=deployment.id if deployment is not None else None,
        upstream_model=ctx.upstream_model,
        provider=deployment.provider.name if deployment is not None else None,
        api_base=deployment.api_base or None if deployment is not None else None,
        call_type=ctx.endpoint,
        stream=ctx.stream,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        total_tokens=usage.total_tokens if usage else 0,
        usage_estimated=usage.estimated if usage else False,
        spend=settled.cost,
        start_time=ctx.started_wall,
        end_time=now,
        ttft_ms=(ctx.first_byte_at - ctx.started) * 1000 if ctx.first_byte_at is not None else None,
        status=settled.outcome,
        status_code=settled.status,
        error=settled.error.message[:2000] if settled.error is not None else None,
        tags=request_tags(ctx),
        client_ip=ctx.client_ip,
        end_user=ctx.end_user.user_id if ctx.end_user is not None else None,
        cache_read_tokens=usage.cache_read_tokens if usage else 0,
        cache_creation_tokens=usage.cache_creation_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
    )


class Spend(Plugin):
    name = "spend"
    needs_usage = True

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("spend", settings)
        self.spool = services.spool
        prefix = services.config.gateway_settings.tracking_header_prefix
        self.cost_header = f"{prefix}response-cost"
        self.key_spend_header = f"{prefix}key-spend"

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        self.spool.append(record_of(ctx, settled))

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        if ctx.usage is not None:
            headers[self.cost_header] = repr(ctx.cost)
        caller = ctx.caller
        if caller is not None and caller.key is not None and self.key_spend_header not in headers:
            # Keys with a budget get the ledger's live figure from the budget plugin; others the
            # store's total as last read, which trails by the spend writer's batch.
            headers[self.key_spend_header] = repr(caller.key.spend + ctx.cost)


PLUGIN = Spend
