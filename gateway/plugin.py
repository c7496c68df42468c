"""The plugin contract and the chain that runs it.

Order, written down once and tested: `on_request` runs in chain order and may
answer at once (return a response, or raise `ApiError`); `on_response_headers`
runs in reverse order just before the headers go out; `on_finish` runs in
reverse order once the answer is complete, before its last bytes go out (so
what it records exists before the client has the answer); `on_complete` runs in
reverse order after the last byte is on the wire (or after a short circuit,
an upstream error or a client that left) for every plugin whose
`on_request` was reached, the one that short-circuited included.

A phase a plugin does not override costs nothing: the chain keeps one list
per phase, holding only the plugins that override it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from gateway.context import Ctx

log = logging.getLogger("gateway.plugins")


class Plugin:
    """Defaults pass through. Subclasses override only the phases they need."""

    name: ClassVar[str] = "plugin"
    # True when the plugin reads ctx.usage / ctx.cost: only then does the gateway read usage
    # from answers (and ask streaming upstreams for it).
    needs_usage: ClassVar[bool] = False
    # True when the plugin reads ctx.output: only then does the gateway keep a copy of the answer
    # (the JSON body, or the stream's bytes up to MAX_OUTPUT_BYTES).
    needs_output: ClassVar[bool] = False

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        """Return a response (or raise ApiError) to answer now; None to continue."""
        return None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        """Add or change headers of the response the client is about to get."""

    def on_finish(self, ctx: Ctx) -> None:
        """The answer is complete (ctx.usage and ctx.cost are known) and its last bytes are about
        to go out: for records that must exist before the client has the whole answer."""

    def on_complete(self, ctx: Ctx) -> None:
        """Account for the request. Never blocks: hand I/O to a queue or task of your own."""

    def add_routes(self, app: web.Application, prefix: str) -> None:
        """Serve routes of the plugin's own (e.g. /metrics); called once per path prefix."""

    async def close(self) -> None:
        """Release what the plugin holds; called once at shutdown."""


def takes_no_settings(name: str, settings: dict[str, Any]) -> None:
    """For built-ins without settings: a typo in the config is an error at start, not ignored."""
    if settings:
        raise ValueError(f"{name} takes no settings, got {sorted(settings)}")


def _overrides(plugin: Plugin, phase: str) -> bool:
    return getattr(type(plugin), phase) is not getattr(Plugin, phase)


class Chain:
    __slots__ = ("plugins", "requesting", "heading", "finishing", "completing", "positions", "needs_usage",
                 "needs_output")

    def __init__(self, plugins: list[Plugin]) -> None:
        self.plugins = plugins
        self.positions = {id(p): i for i, p in enumerate(plugins)}
        self.requesting = [p for p in plugins if _overrides(p, "on_request")]
        self.heading = [p for p in reversed(plugins) if _overrides(p, "on_response_headers")]
        self.finishing = [p for p in reversed(plugins) if _overrides(p, "on_finish")]
        self.needs_usage = any(p.needs_usage for p in plugins)
        self.needs_output = any(p.needs_output for p in plugins)
        self.completing = [p for p in reversed(plugins) if _overrides(p, "on_complete")]

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        # Until a plugin answers, every plugin counts as reached.
        ctx.reached = len(self.plugins)
        for plugin in self.requesting:
            try:
                answer = await plugin.on_request(ctx)
            except BaseException:
                ctx.reached = self.positions[id(plugin)] + 1
                raise
            if answer is not None:
                ctx.reached = self.positions[id(plugin)] + 1
                return answer
        return None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        for plugin in self.heading:
            if self.positions[id(plugin)] < ctx.reached:
                plugin.on_response_headers(ctx, headers)

    def on_finish(self, ctx: Ctx) -> None:
        for plugin in self.finishing:
            if self.positions[id(plugin)] < ctx.reached:
                plugin.on_finish(ctx)

    def on_complete(self, ctx: Ctx) -> None:
        for plugin in self.completing:
            if self.positions[id(plugin)] < ctx.reached:
                try:
                    plugin.on_complete(ctx)
                except Exception:
                    # One plugin's bookkeeping must not cost another's.
                    log.exception("plugin %s failed in on_complete for %s", plugin.name, ctx.request_id)

    async def close(self) -> None:
        for plugin in reversed(self.plugins):
            await plugin.close()


def describe(chain: Chain) -> dict[str, Any]:
    """The phase lists, as /health/readiness-style introspection and tests see them."""
    return {
        "order": [p.name for p in chain.plugins],
        "on_request": [p.name for p in chain.requesting],
        "on_response_headers": [p.name for p in chain.heading],
        "on_finish": [p.name for p in chain.finishing],
        "on_complete": [p.name for p in chain.completing],
    }
