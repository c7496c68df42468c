"""A request's admission in one step: the caller's limits, its budgets and its deployment's limits.

The rate-limit and budget plugins do not take anything in `on_request`: each puts a `Claim` on the
request (`ctx.claims`), in chain order, and the proxy runs the claims once it has picked a
deployment, together with that deployment's rpm/tpm. With Redis that is one Lua script, one
round trip (`gateway.limits.combined`); in this process or on the node's counters each claim
runs by itself, as before, since a call there costs next to nothing.

Either way the claims run in order and stop at the first refusal, and what was taken before it
stays taken, as when each plugin took its share in turn: a budget refusal still counts against
the caller's rpm, and a full deployment keeps the caller's limits and budget taken while routing
tries the next one. A refusal raises the refusing plugin's own error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.budget.ledger import Counter, Denied, Ledger
    from gateway.context import Ctx
    from gateway.errors import ApiError
    from gateway.limits.buckets import Bucket, Limiter, Short, SlotsFull


class Claim:
    """One plugin's share of a request's admission. `granted` is set once it is taken; the plugin
    settles only a granted claim."""

    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = False

    async def alone(self, ctx: Ctx) -> None:
        """Take it by itself on the plugin's own backend, with its failure policy; raise its refusal."""
        raise NotImplementedError


class LimitsClaim(Claim):
    """The caller's rpm and tpm buckets and parallel-request slots."""

    __slots__ = ("buckets", "amounts", "slots", "token")

    def __init__(self, buckets: list[Bucket], amounts: list[float], slots: list[tuple[str, int]],
                 token: str) -> None:
        super().__init__()
        self.buckets = buckets
        self.amounts = amounts
        self.slots = slots
        self.token = token

    def taken(self, ctx: Ctx, levels: list[float], limiter: Limiter) -> None:
        """Granted on `limiter`, with what each bucket holds now."""
        raise NotImplementedError

    def refused(self, ctx: Ctx, outcome: Short | SlotsFull) -> ApiError:
        raise NotImplementedError


class BudgetClaim(Claim):
    """The budget counters the request falls under, and its estimated cost."""

    __slots__ = ("counters", "amount")

    def __init__(self, counters: list[Counter], amount: float) -> None:
        super().__init__()
        self.counters = counters
        self.amount = amount

    def reserved(self, ctx: Ctx, spent_before: list[float], ledger: Ledger) -> None:
        """Granted on `ledger`, with what each counter had spent before."""
        raise NotImplementedError

    def refused(self, ctx: Ctx, denied: Denied) -> ApiError:
        raise NotImplementedError


def pending(ctx: Ctx) -> list[Claim]:
    """The claims not run yet, taken off the request: each runs once."""
    claims = ctx.claims
    if claims:
        ctx.claims = []
    return claims


async def run_alone(ctx: Ctx, claims: list[Claim]) -> None:
    for claim in claims:
        await claim.alone(ctx)
