"""Rate limits: rpm and tpm token buckets and parallel-request slots for keys, users and teams,
and rpm/tpm per model for a key. Checked when a request arrives; tokens settled when it ends.

With Redis the buckets are shared by every instance (one Lua script per check); without it the
node's processes share them. If the shared buckets cannot be asked, `gateway_settings.fail_open`
(true by default) decides: this process's own buckets count, or the request gets 503.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
from aiohttp import web

from gateway.admission import LimitsClaim
from gateway.background import Background
from gateway.context import Ctx
from gateway.end_users import end_user_limits
from gateway.errors import ApiError, shared_state_unreachable
from gateway.limits.buckets import Bucket, Limiter, LocalLimiter, Short, SlotsFull
from gateway.plugin import Plugin
from gateway.services import Services
from gateway.settlement import Settlement
from gateway.shared_link import reported
from gateway.store.records import KeyRecord, OrgRecord, TeamRecord, UserRecord

log = logging.getLogger("gateway.rate_limit")


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    fail_open: bool | None = None  # the earlier, plugin-only place of gateway_settings.fail_open


class Held(LimitsClaim):
    """What one request asks of its caller's limits; once granted, what it holds and the headers that
    report it."""

    __slots__ = ("plugin", "requests", "token_buckets", "estimate", "limiter", "headers")

    def __init__(self, plugin: RateLimit, requests: list[Bucket], tokens: list[Bucket], slots: list[tuple[str, int]],
                 estimate: float, token: str) -> None:
        super().__init__(requests + tokens, [1.0] * len(requests) + [estimate] * len(tokens), slots, token)
        self.plugin = plugin
        self.requests = requests
        self.token_buckets = tokens
        self.estimate = estimate
        self.limiter: Limiter = plugin.limiter
        self.headers: dict[str, str] = {}

    async def alone(self, ctx: Ctx) -> None:
        await self.plugin.take(ctx, self)

    def taken(self, ctx: Ctx, levels: list[float], limiter: Limiter) -> None:
        self.limiter = limiter
        headers = self.headers
        count = len(self.requests)
        for what, buckets, left in (("requests", self.requests, levels[:count]),
                                    ("tokens", self.token_buckets, levels[count:])):
            if buckets:
                headers[f"x-ratelimit-limit-{what}"] = str(int(min(b.capacity for b in buckets)))
                headers[f"x-ratelimit-remaining-{what}"] = str(int(max(0.0, min(left))))

    def refused(self, ctx: Ctx, outcome: Short | SlotsFull) -> ApiError:
        if isinstance(outcome, Short):
            return RateLimit.limited(outcome, "requests" if outcome.bucket.name.startswith("rpm:") else "tokens")
        return ApiError(429, f"Max parallel request limit reached: {outcome.limit} in flight for "
                        f"{outcome.name.split(':')[1]}", "rate_limit_error", None, "429",
                        headers={"retry-after": "1"})


def limits_of(ctx: Ctx) -> tuple[list[Bucket], list[Bucket], list[tuple[str, int]]]:
    """The request, token and parallel limits that apply to this caller and model."""
    requests: list[Bucket] = []
    tokens: list[Bucket] = []
    slots: list[tuple[str, int]] = []
    caller = ctx.caller
    if caller is None:
        return requests, tokens, slots
    model = ctx.requested_model or ""
    owners: list[tuple[str, str, KeyRecord | UserRecord | TeamRecord | OrgRecord]] = []
    if caller.key is not None:
        owners.append(("key", caller.key.token, caller.key))
    if caller.user is not None:
        owners.append(("user", caller.user.user_id, caller.user))
    if caller.team is not None:
        owners.append(("team", caller.team.team_id, caller.team))
    if caller.org is not None:
        owners.append(("org", caller.org.organization_id, caller.org))
    for kind, ref, record in owners:
        if record.rpm_limit is not None:
            requests.append(Bucket(f"rpm:{kind}:{ref}", float(record.rpm_limit)))
        if record.tpm_limit is not None:
            tokens.append(Bucket(f"tpm:{kind}:{ref}", float(record.tpm_limit)))
        if record.max_parallel_requests is not None:
            slots.append((f"par:{kind}:{ref}", record.max_parallel_requests))
    key = caller.key
    if key is not None:
        if model in key.model_rpm_limit:
            requests.append(Bucket(f"rpm:keymodel:{key.token}:{model}", float(key.model_rpm_limit[model])))
        if model in key.model_tpm_limit:
            tokens.append(Bucket(f"tpm:keymodel:{key.token}:{model}", float(key.model_tpm_limit[model])))
    if ctx.end_user is not None:
        more_requests, more_tokens, more_slots = end_user_limits(ctx.end_user)
        requests += more_requests
        tokens += more_tokens
        slots += more_slots
    return requests, tokens, slots


class RateLimit(Plugin):
    name = "rate_limit"
    needs_usage = True

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        own = msgspec.convert(settings, Settings)
        self.fail_open = services.config.gateway_settings.fail_open
        if own.fail_open is not None:
            log.warning("rate_limit: settings.fail_open is now gateway_settings.fail_open, one policy for rate "
                        "limits, budgets and deployment limits; the plugin's own value still applies to it")
            self.fail_open = own.fail_open
        self.limiter = services.limiter
        self.local = LocalLimiter()
        self.background = Background()

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        requests, tokens, slots = limits_of(ctx)
        if not (requests or tokens or slots):
            return None
        held = Held(self, requests, tokens, slots, self.estimate(ctx) if tokens else 0.0, ctx.request_id)
        self.hold(ctx, held)
        ctx.claims.append(held)  # taken with the budget and the deployment's limits: gateway/admission.py
        return None

    async def take(self, ctx: Ctx, held: Held) -> None:
        """The claim by itself: requests, tokens and slots in one step (one call to the node's counters)."""
        limiter = self.limiter
        try:
            taken = await limiter.admit(held.buckets, held.amounts, held.slots, held.token)
        except Exception as exc:
            if not self.fail_open:
                raise shared_state_unreachable("rate limits") from exc
            if not reported(exc):
                log.warning("rate limits kept by this process: %s: %s", type(exc).__name__, exc)
            limiter = self.local
            taken = await limiter.admit(held.buckets, held.amounts, held.slots, held.token)
        if isinstance(taken, (Short, SlotsFull)):
            raise held.refused(ctx, taken)
        held.granted = True
        held.taken(ctx, taken, limiter)

    @staticmethod
    def limited(short: Short, what: str) -> ApiError:
        kind = short.bucket.name.split(":")[1]
        wait = max(1, math.ceil(short.retry_after))
        return ApiError(429, f"Rate limit reached for {kind}: {int(short.bucket.capacity)} {what} per minute. "
                        f"Retry after {wait}s.", "rate_limit_error", None, "429",
                        headers={"retry-after": str(wait),
                                 f"x-ratelimit-limit-{what}": str(int(short.bucket.capacity)),
                                 f"x-ratelimit-remaining-{what}": str(int(short.remaining))})

    @staticmethod
    def estimate(ctx: Ctx) -> float:
        prompt_tokens, asked = ctx.reserved_tokens()
        return float(prompt_tokens + asked)

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        held = self.held(ctx, Held)
        if held is not None and held.granted and held.headers:
            headers.update(held.headers)

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        held = self.held(ctx, Held)
        if held is None or not held.granted:
            return
        used = float(settled.usage.total_tokens) if settled.usage is not None else 0.0
        # Admitted on an estimate: give back what was not used, or take what was used beyond it.
        owed = held.estimate - used if held.token_buckets else 0.0
        buckets = held.token_buckets if owed else []
        slots = [name for name, _ in held.slots]
        try:
            if held.limiter.settle_at_once(slots, ctx.request_id, buckets, owed):
                return
        except Exception as exc:
            log.warning("could not settle rate limits (slots expire by themselves): %s: %s",
                        type(exc).__name__, exc)
            return
        self.background.spawn(self._settle_now(held.limiter, slots, ctx.request_id, buckets, owed))

    async def close(self) -> None:
        await self.background.finish()

    async def _settle_now(self, limiter: Limiter, slots: list[str], request_id: str, buckets: list[Bucket],
                          owed: float) -> None:
        try:
            if slots:
                await limiter.release(slots, request_id)
            if buckets:
                await limiter.give(buckets, owed)
        except Exception as exc:
            log.warning("could not settle rate limits (slots expire by themselves): %s: %s",
                        type(exc).__name__, exc)


PLUGIN = RateLimit
