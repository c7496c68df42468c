"""End users: who a request is for (LiteLLM's `user`), refused when blocked, and held to their budget.

The end user and its budget come from memory (gateway.accounts), kept fresh by the change log; the
budget itself is reserved and settled by the budget plugin and its rpm/tpm by the rate_limit plugin,
in the same ledger and limiter as keys', so they hold across instances and workers alike.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import Ctx
from gateway.end_users import MAX_ID_LENGTH, EndUser, default_budget, end_user_id, header_names
from gateway.errors import ApiError, bad_request
from gateway.plugin import Plugin, takes_no_settings
from gateway.services import Services


class EndUsers(Plugin):
    name = "end_user"

    def __init__(self, services: Services, settings: dict[str, Any]) -> None:
        takes_no_settings("end_user", settings)
        self.accounts = services.accounts
        self.headers = header_names(services.config)
        self.default = default_budget(services.config)
        self.default_id = services.config.litellm_settings.max_end_user_budget_id

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        user_id = end_user_id(ctx.request.headers, ctx.body or {}, self.headers)
        if user_id is None:
            return None
        if len(user_id) > MAX_ID_LENGTH:
            raise bad_request(f"the end user id is longer than {MAX_ID_LENGTH} characters", "user")
        if "\x00" in user_id:
            raise bad_request("the end user id holds a NUL character", "user")
        record = await self.accounts.end_users.get(user_id)
        if record is not None and record.blocked:
            ctx.end_user = EndUser(user_id, record, None)
            raise ApiError(400, f"User blocked from making LLM API Calls. User={user_id}")
        budget = await self.accounts.budgets.get(record.budget_id) if record is not None and record.budget_id \
            else None
        if budget is None:
            budget = await self.accounts.budgets.get(self.default_id) if self.default_id else None
            budget = budget or self.default
        ctx.end_user = EndUser(user_id, record, budget)
        return None


PLUGIN = EndUsers
