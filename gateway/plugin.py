"""The plugin contract and the chain that runs it.

Order, written down once and tested: `on_request` runs in chain order and may
answer at once (return a response, or raise `ApiError`); `on_response_headers`
runs in reverse order just before the headers go out; `on_settle` runs in
reverse order exactly once per request, for every plugin whose `on_request`
was reached (the one that short-circuited included), with the request's one
Settlement: after the answer is complete and before its last bytes go out, or
as soon as the request ended otherwise (an error, a client that left).

A plugin that fails in `on_response_headers` or `on_settle` is logged and
costs no other plugin its turn and the client nothing: the answer goes on.

A phase a plugin does not override costs nothing: the chain keeps one list
per phase, holding only the plugins that override it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from aiohttp import web

if TYPE_CHECKING:
    from gateway.context import Ctx
    from gateway.settlement import Settlement

log = logging.getLogger("gateway.plugins")

State = TypeVar("State")


class Plugin:
    """Defaults pass through. Subclasses override only the phases they need."""

    name: ClassVar[str] = "plugin"
    # True when the plugin reads usage or cost: only then does the gateway read usage from answers
    # (and ask streaming upstreams for it).
    needs_usage: ClassVar[bool] = False
    # True when the plugin reads ctx.output: only then does the gateway keep a copy of the answer
    # (the JSON body, or the stream's bytes up to MAX_OUTPUT_BYTES).
    needs_output: ClassVar[bool] = False
    slot = -1  # this plugin's place in ctx.plugin_state, set by the chain

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        """Return a response (or raise ApiError) to answer now; None to continue."""
        return None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        """Add or change headers of the response the client is about to get."""

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        """Account for the request, once. Never blocks: hand I/O to a queue or task of your own."""

    def add_routes(self, app: web.Application, prefix: str) -> None:
        """Serve routes of the plugin's own (e.g. /metrics); called once per path prefix."""

    async def close(self) -> None:
        """Release what the plugin holds; called once at shutdown."""

    def hold(self, ctx: Ctx, state: object) -> None:
        """Keep this plugin's own object for this request, for its later phases."""
        ctx.plugin_state[self.slot] = state

    def held(self, ctx: Ctx, kind: type[State]) -> State | None:
        state = ctx.plugin_state[self.slot]
        return state if isinstance(state, kind) else None


def takes_no_settings(name: str, settings: dict[str, Any]) -> None:
    """For built-ins without settings: a typo in the config is an error at start, not ignored."""
    if settings:
        raise ValueError(f"{name} takes no settings, got {sorted(settings)}")


def _overrides(plugin: Plugin, phase: str) -> bool:
    return getattr(type(plugin), phase) is not getattr(Plugin, phase)


class Chain:
    __slots__ = ("plugins", "requesting", "heading", "settling", "needs_usage", "needs_output")

    def __init__(self, plugins: list[Plugin]) -> None:
        self.plugins = plugins
        for slot, plugin in enumerate(plugins):
            plugin.slot = slot
        self.requesting = [p for p in plugins if _overrides(p, "on_request")]
        self.heading = [p for p in reversed(plugins) if _overrides(p, "on_response_headers")]
        self.settling = [p for p in reversed(plugins) if _overrides(p, "on_settle")]
        self.needs_usage = any(p.needs_usage for p in plugins)
        self.needs_output = any(p.needs_output for p in plugins)

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        # Until a plugin answers, every plugin counts as reached.
        ctx.reached = len(self.plugins)
        for plugin in self.requesting:
            try:
                answer = await plugin.on_request(ctx)
            except BaseException:
                ctx.reached = plugin.slot + 1
                raise
            if answer is not None:
                ctx.reached = plugin.slot + 1
                return answer
        return None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        for plugin in self.heading:
            if plugin.slot < ctx.reached:
                try:
                    plugin.on_response_headers(ctx, headers)
                except Exception:
                    log.exception("plugin %s failed in on_response_headers for %s", plugin.name, ctx.request_id)

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        for plugin in self.settling:
            if plugin.slot < ctx.reached:
                try:
                    plugin.on_settle(ctx, settled)
                except Exception:
                    # One plugin's bookkeeping must not cost another's, nor the client its answer.
                    log.exception("plugin %s failed in on_settle for %s", plugin.name, ctx.request_id)

    async def close(self) -> None:
        for plugin in reversed(self.plugins):
            await plugin.close()


def describe(chain: Chain) -> dict[str, Any]:
    """The phase lists, as /health/readiness-style introspection and tests see them."""
    return {
        "order": [p.name for p in chain.plugins],
        "on_request": [p.name for p in chain.requesting],
        "on_response_headers": [p.name for p in chain.heading],
        "on_settle": [p.name for p in chain.settling],
    }
