"""Budgets: a request is admitted only if its estimated cost fits every budget it falls under.
Keys, users and teams with no budget get a counter too, one that admits everything, so that their
spend is current wherever it is read (the spend header, /key/info, /user/info, /team/info).

The estimate is reserved at admission and replaced by the real cost when the
answer is complete, atomically, in the ledger (Redis when configured, else
the node's), so concurrent requests cannot together spend past a budget. If
the ledger cannot be asked, `gateway_settings.fail_open` decides: this
process's own counters (from the store's spend) admit, or the request gets 503.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web

from gateway.admission import BudgetClaim
from gateway.background import Background
from gateway.budget import windows
from gateway.budget.counters import counters_for, tracks_only
from gateway.budget.ledger import Counter, Denied, Ledger, LocalLedger
from gateway.context import BudgetStanding, Ctx
from gateway.end_users import end_user_counter, exceeded_message
from gateway.errors import ApiError, shared_state_unreachable
from gateway.image_prices import read_ask
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services
from gateway.settlement import Settlement
from gateway.shared_link import reported
from gateway.usage import upfront_units

log = logging.getLogger("gateway.budget")
NO_TEXT_OUTPUT = frozenset({"embeddings", "moderations", "images/generations", "audio/transcriptions",
                            "audio/translations", "audio/speech", "rerank"})
FREE = frozenset({"messages/count_tokens"})  # never charged: nothing to reserve


class Reservation(BudgetClaim):
    """The budgets one request asks to reserve its estimate under; once granted, on which ledger and
    what each counter had spent before it."""

    __slots__ = ("plugin", "names", "spent_before", "ledger", "key_at", "limited")

    def __init__(self, plugin: Budget, counters: list[Counter], amount: float, limited: bool) -> None:
        super().__init__(counters, amount)
        self.plugin = plugin
        self.ledger: Ledger = plugin.ledger
        self.names = [c.name for c in counters]
        self.spent_before: list[float] = []
        self.limited = limited  # some counter is a budget, not only the spend kept current
        self.key_at = next((i for i, name in enumerate(self.names) if name.startswith("key:")), -1)

    async def alone(self, ctx: Ctx) -> None:
        await self.plugin.reserve(ctx, self)

    def reserved(self, ctx: Ctx, spent_before: list[float], ledger: Ledger) -> None:
        self.ledger = ledger
        self.spent_before = spent_before
        if self.limited:
            ctx.budgets = tuple(BudgetStanding(c.name, c.limit, spent)
                                     for c, spent in zip(self.counters, spent_before) if not tracks_only(c))

    def refused(self, ctx: Ctx, denied: Denied) -> ApiError:
        return self.plugin.exceeded(ctx, denied, self.amount)


class Budget(Plugin):
    name = "budget"
    needs_usage = True

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("budget", settings)
        self.ledger = services.ledger
        self.local = LocalLedger()
        self.fail_open = services.config.gateway_settings.fail_open
        self.router = services.router
        self.pricing = services.pricing
        self.clock = services.clock
        litellm = services.config.litellm_settings
        gateway = services.config.gateway_settings
        self.proxy_budget = litellm.max_budget
        self.proxy_duration = litellm.budget_duration
        self.status = gateway.budget_exceeded_status
        self.reserve_output_tokens = gateway.reserve_output_tokens
        prefix = gateway.tracking_header_prefix
        self.spend_header = f"{prefix}key-spend"
        self.budget_header = f"{prefix}key-max-budget"
        self.soft_header = f"{prefix}soft-budget-exceeded"
        self.background = Background()

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        model = ctx.requested_model or ""
        now = self.clock()
        counters = counters_for(ctx.caller, model, self.proxy_budget, self.proxy_duration, now)
        if (end_user := end_user_counter(ctx.end_user, now)) is not None:
            counters.append(end_user)
        if not counters:
            return None
        limited = False
        for counter in counters:
            if counter.limit != math.inf:
                limited = True
                break
        # A counter that only keeps the spend current admits anything: nothing to estimate for it.
        amount = self.estimate(ctx, model) if limited and ctx.endpoint not in FREE else 0.0
        reservation = Reservation(self, counters, amount, limited)
        self.hold(ctx, reservation)
        ctx.claims.append(reservation)  # taken with the limits and the deployment's: gateway/admission.py
        return None

    async def reserve(self, ctx: Ctx, reservation: Reservation) -> None:
        """The claim by itself, on this process's or the node's ledger (or Redis's, if it failed together)."""
        counters, amount = reservation.counters, reservation.amount
        ledger = self.ledger
        try:
            outcome = ledger.reserve_at_once(counters, amount)
            if outcome is None:
                outcome = await ledger.reserve(counters, amount)
        except Exception as exc:
            if not self.fail_open and reservation.limited:
                raise shared_state_unreachable("budgets") from exc
            if not reported(exc):
                log.warning("budgets kept by this process: %s: %s", type(exc).__name__, exc)
            ledger = self.local
            outcome = await ledger.reserve(counters, amount)
        if isinstance(outcome, Denied):
            raise reservation.refused(ctx, outcome)
        reservation.granted = True
        reservation.reserved(ctx, outcome, ledger)

    def estimate(self, ctx: Ctx, model: str) -> float:
        """An upper bound on what the answer may cost: the priciest deployment it may go to, the
        prompt at four bytes a token, and the answer's max_tokens (or the configured default)."""
        prompt_tokens, asked = ctx.reserved_tokens()
        highest = 0.0
        for deployment, upstream_model in self.router.candidates(model):
            price = self.pricing.price(deployment, upstream_model)
            limit = deployment.entry.model_info.get("max_output_tokens")
            output = asked or (
                limit if isinstance(limit, int) and limit > 0 else self.reserve_output_tokens)
            units = 0.0
            if ctx.endpoint in NO_TEXT_OUTPUT:
                output = 0
                if ctx.endpoint == "images/generations":
                    units = price.image_cost(read_ask(ctx.body or {}))
                elif price.by_units:
                    # Known before the answer: speech's characters, a rerank's first search unit. An
                    # upload's seconds are not: it is held to its tokens' worth only.
                    characters, queries = upfront_units(ctx.endpoint, ctx.body or {})
                    units = price.units_cost(characters=characters, queries=queries)
            highest = max(highest, prompt_tokens * price.input_cost_per_token
                          + output * price.output_cost_per_token + units)
        return highest

    def exceeded(self, ctx: Ctx, denied: Denied, amount: float) -> ApiError:
        kind = denied.counter.name.split(":", 1)[0]
        if kind == "enduser":
            message = exceeded_message(denied.counter, denied.spent)
            if denied.counter.limit > 0 and denied.spent < denied.counter.limit:
                message += self.why_reserved(ctx, denied, amount)
            return ApiError(self.status, message, "budget_exceeded", None, str(self.status), _retry_word(denied))
        caller = ctx.caller
        who = {
            "key": f"Key={caller.label} " if caller is not None else "",
            "keymodel": f"Key={caller.label} Model={ctx.requested_model} " if caller is not None else "",
            windows.KIND: f"Key over {windows.duration_of(denied.counter)} budget. "
                          + (f"Key={caller.label} " if caller is not None else ""),
            "team": f"Team={caller.team.team_id} " if caller is not None and caller.team else "",
            "user": f"User={caller.user.user_id} " if caller is not None and caller.user else "",
            "org": f"Organization={caller.org.organization_id} " if caller is not None and caller.org else "",
            "proxy": "Proxy ",
        }[kind]
        message = f"Budget has been exceeded! {who}Current cost: {denied.spent}, Max budget: {denied.counter.limit}"
        if denied.counter.limit > 0 and denied.spent < denied.counter.limit:
            message += self.why_reserved(ctx, denied, amount)
        return ApiError(self.status, message, "budget_exceeded", None, str(self.status), _retry_word(denied))

    def why_reserved(self, ctx: Ctx, denied: Denied, amount: float) -> str:
        """The budget is not spent: this request's reservation is what does not fit. Say so, with the
        amounts, and how to reserve less."""
        left = max(0.0, denied.counter.limit - denied.spent - denied.reserved)
        in_flight = f" ({denied.reserved:.6g} is held by requests in flight)" if denied.reserved > 0 else ""
        _, asked = ctx.reserved_tokens()
        output = (f"its max_tokens of {asked}" if asked else "as many output tokens as the model's max_output_tokens, "
                  f"else gateway_settings.reserve_output_tokens ({self.reserve_output_tokens}), as it sets no "
                  "max_tokens")
        return (f". Not spent yet: this request is held to what it may cost, {amount:.6g} (its prompt and "
                f"{output}, at the priciest deployment of {ctx.requested_model}), and {left:.6g} is left"
                f"{in_flight}. Set a lower max_tokens to reserve less.")

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        reservation = self.held(ctx, Reservation)
        caller = ctx.caller
        if reservation is None or not reservation.granted or caller is None or caller.key is None \
                or reservation.key_at < 0:
            return
        counter = reservation.counters[reservation.key_at]
        spent = reservation.spent_before[reservation.key_at] + ctx.cost
        headers[self.spend_header] = repr(spent)
        if counter.limit != math.inf:
            headers[self.budget_header] = repr(counter.limit)
        soft = caller.key.soft_budget
        if soft is not None and spent >= soft:
            headers[self.soft_header] = "true"

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        reservation = self.held(ctx, Reservation)
        if reservation is None or not reservation.granted:
            return
        try:
            if reservation.ledger.settle_at_once(reservation.names, reservation.amount, settled.cost):
                return
        except Exception as exc:
            log.error("could not settle %s in the budget ledger: %s: %s", reservation.names, type(exc).__name__,
                      exc)
            return
        self.background.spawn(self._settle_now(reservation, settled.cost))

    async def close(self) -> None:
        await self.background.finish()

    async def _settle_now(self, reservation: Reservation, actual: float) -> None:
        try:
            await reservation.ledger.settle(reservation.names, reservation.amount, actual)
        except Exception as exc:
            log.error("could not settle %s in the budget ledger: %s: %s", reservation.names, type(exc).__name__,
                      exc)


PLUGIN = Budget


def _retry_word(denied: Denied) -> dict[str, str]:
    """`x-should-retry`: a budget held by requests in flight may fit once they settle; one spent, or one this
    request's reservation alone overflows, does not until it resets, so clients that honour the header (the
    SDKs, Claude Code) give up at once instead of retrying with backoff."""
    return {"x-should-retry": "true" if denied.reserved > 0 else "false"}
