"""Plugins that write down every phase they run in, for the chain-order tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.context import Ctx
from gateway.errors import ApiError
from gateway.plugin import Plugin
from gateway.settlement import Settlement


class Recorder(Plugin):
    """Settings: `name`, `log` (a file it appends `name phase status` lines to), and
    `answer` / `fail` (short-circuit with a 418 / raise a 403 when the request's user field says so)."""

    def __init__(self, services: Any, settings: dict[str, Any]) -> None:
        self.name = settings["name"]  # type: ignore[misc]
        self.log = Path(settings["log"])

    def _write(self, ctx: Ctx, phase: str) -> None:
        with self.log.open("a") as out:
            out.write(f"{ctx.request_id} {self.name} {phase} {ctx.status}\n")

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        self._write(ctx, "request")
        if ctx.body and ctx.body.get("user") == f"answer:{self.name}":
            return web.json_response({"answered_by": self.name}, status=418)
        if ctx.body and ctx.body.get("user") == f"fail:{self.name}":
            raise ApiError(403, f"{self.name} says no", "permission_error")
        return None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        headers["x-trace"] = (headers.get("x-trace", "") + f" {self.name}").strip()

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        self._write(ctx, "settle")


class RequestOnly(Plugin):
    name = "request-only"

    def __init__(self, services: Any, settings: dict[str, Any]) -> None:
        pass

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        return None


class Raiser(Plugin):
    """Raises RuntimeError in the phase the request's `user` field names: `raise:request`, `raise:headers`
    or `raise:settle`."""

    name = "raiser"

    def __init__(self, services: Any, settings: dict[str, Any]) -> None:
        pass

    @staticmethod
    def _wants(ctx: Ctx, phase: str) -> bool:
        return bool(ctx.body) and ctx.body is not None and ctx.body.get("user") == f"raise:{phase}"

    async def on_request(self, ctx: Ctx) -> web.StreamResponse | None:
        if self._wants(ctx, "request"):
            raise RuntimeError("raiser fails on_request on purpose")
        return None

    def on_response_headers(self, ctx: Ctx, headers: dict[str, str]) -> None:
        if self._wants(ctx, "headers"):
            raise RuntimeError("raiser fails on_response_headers on purpose")

    def on_settle(self, ctx: Ctx, settled: Settlement) -> None:
        if self._wants(ctx, "settle"):
            raise RuntimeError("raiser fails on_settle on purpose")
