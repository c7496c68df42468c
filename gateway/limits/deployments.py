"""A deployment's `rpm` / `tpm` from the config: what the gateway may send it a minute.

Checked once a deployment is picked, in one step on the limiter the rate-limit plugin uses (one
Lua script on Redis, so every instance sharing the Redis shares the count); tokens are taken on
the request's estimate and settled with its real usage once it ends. A deployment found full is
passed over by routing until it has refilled (`Router.record_at_limit`), so later requests do
not ask again. If the shared buckets cannot be asked, `gateway_settings.fail_open` decides, as for
callers' limits: this process's own buckets count, or the request gets 503.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.admission import BudgetClaim, Claim, LimitsClaim, run_alone
from gateway.background import Background
from gateway.budget.ledger import Denied
from gateway.errors import shared_state_unreachable
from gateway.limits.buckets import Bucket, Limiter, LocalLimiter, Short, SlotsFull
from gateway.limits.combined import Plan, RedisAdmitter
from gateway.router import Deployment, Router
from gateway.shared_link import reported

if TYPE_CHECKING:
    from gateway.context import Ctx

log = logging.getLogger("gateway.rate_limit")

TOKENS_RECHECK = 1.0  # seconds a deployment short of tokens is passed over before it is asked again


class Admission:
    """What one request holds of one deployment's buckets, and the headers that report it."""

    __slots__ = ("deployment", "tokens", "limiter", "headers")

    def __init__(self, deployment: Deployment, tokens: float, limiter: Limiter, headers: dict[str, str]) -> None:
        self.deployment = deployment
        self.tokens = tokens
        self.limiter = limiter
        self.headers = headers


class DeploymentLimits:
    def __init__(self, limiter: Limiter, router: Router, fail_open: bool,
                 combined: RedisAdmitter | None = None) -> None:
        self.limiter = limiter
        self.combined = combined
        self.fail_open = fail_open
        self.local = LocalLimiter()
        self.router = router
        self.background = Background()

    async def admit(self, deployment: Deployment, tokens: float) -> Admission | None:
        """Take one request and `tokens` from the deployment; None (and routing told) when it is full."""
        buckets = deployment.limits
        assert buckets is not None
        amounts = [1.0 if bucket.name.startswith("rpm") else tokens for bucket in buckets]
        limiter: Limiter = self.limiter
        try:
            taken = await limiter.take_each(buckets, amounts)
        except Exception as exc:
            if not self.fail_open:
                raise shared_state_unreachable("deployment limits") from exc
            if not reported(exc):
                log.warning("deployment limits kept by this process: %s: %s", type(exc).__name__, exc)
            limiter = self.local
            taken = await limiter.take_each(buckets, amounts)
        return self._admitted(deployment, tokens, limiter, taken)

    async def admit_with(self, ctx: Ctx, claims: list[Claim], deployment: Deployment | None,
                         tokens: float) -> Admission | None:
        """The request's claims (gateway/admission.py), then `deployment`'s limits if it has any; None
        (and routing told) only when the deployment is full. With Redis, all of it in one round trip."""
        combined = self.combined
        limited = deployment is not None and deployment.limits is not None
        if combined is None or not claims:
            await run_alone(ctx, claims)
            return await self.admit(deployment, tokens) if deployment is not None and limited else None
        limits = next((c for c in claims if isinstance(c, LimitsClaim)), None)
        budget = next((c for c in claims if isinstance(c, BudgetClaim)), None)
        if len(claims) != (limits is not None) + (budget is not None):
            await run_alone(ctx, claims)
            return await self.admit(deployment, tokens) if deployment is not None and limited else None
        buckets = deployment.limits if deployment is not None and deployment.limits is not None else []
        plan = Plan(limits.buckets if limits else [], limits.amounts if limits else [],
                    limits.slots if limits else [], limits.token if limits else "",
                    budget.counters if budget else [], budget.amount if budget else 0.0,
                    buckets, [1.0 if b.name.startswith("rpm") else tokens for b in buckets])
        try:
            outcome = await combined.admit(plan)
        except Exception:
            # Each part by itself, under its own failure policy; the link is down now, so at no cost.
            await run_alone(ctx, claims)
            return await self.admit(deployment, tokens) if deployment is not None and limited else None
        if limits is not None:
            if isinstance(outcome.limits, (Short, SlotsFull)):
                raise limits.refused(ctx, outcome.limits)
            limits.granted = True
            limits.taken(ctx, outcome.limits, combined.limiter)
        if budget is not None:
            if isinstance(outcome.budget, Denied):
                raise budget.refused(ctx, outcome.budget)
            budget.granted = True
            budget.reserved(ctx, outcome.budget or [], combined.ledger)
        if deployment is None or not limited:
            return None
        assert outcome.deployment is not None
        return self._admitted(deployment, tokens, combined.limiter, outcome.deployment)

    def _admitted(self, deployment: Deployment, tokens: float, limiter: Limiter,
                  taken: Short | list[float]) -> Admission | None:
        if isinstance(taken, Short):
            # Every request needs the same one from rpm, so its wait holds for all; a smaller request
            # than this one may fit in tpm sooner, so it is looked at again soon.
            rpm_short = taken.bucket.name.startswith("rpm")
            self.router.record_at_limit(deployment, taken.retry_after if rpm_short
                                        else min(taken.retry_after, TOKENS_RECHECK))
            return None
        headers = {}
        assert deployment.limits is not None
        for bucket, left in zip(deployment.limits, taken):
            what = "requests" if bucket.name.startswith("rpm") else "tokens"
            headers[f"x-ratelimit-limit-{what}"] = str(int(bucket.capacity))
            headers[f"x-ratelimit-remaining-{what}"] = str(int(max(0.0, left)))
        return Admission(deployment, tokens, limiter, headers)

    async def close(self) -> None:
        await self.background.finish()

    def settle(self, admission: Admission, used: float) -> None:
        """The request is over and used `used` tokens: the estimate's difference goes back (or is owed)."""
        limits = admission.deployment.limits
        if limits is None or admission.deployment.tpm is None or used == admission.tokens:
            return
        owed = admission.tokens - used
        try:
            if admission.limiter.settle_at_once([], "", [limits[-1]], owed):
                return
        except Exception as exc:
            log.warning("could not settle a deployment's tokens: %s: %s", type(exc).__name__, exc)
            return
        self.background.spawn(self._give(admission.limiter, limits[-1], owed))

    async def _give(self, limiter: Limiter, bucket: Bucket, amount: float) -> None:
        try:
            await limiter.give([bucket], amount)
        except Exception as exc:
            log.warning("could not settle a deployment's tokens: %s: %s", type(exc).__name__, exc)
