"""CORS as LiteLLM's proxy answers it (Starlette's CORSMiddleware with every origin, method and
header allowed, credentials too), so browser apps can call the gateway: preflights are answered
here, and answers to an allowed origin carry its Access-Control headers. The origins are
`gateway_settings.cors_allow_origins` (["*"] by default; [] turns CORS off). No route takes
OPTIONS, so the error middleware hands every OPTIONS request to `preflight`. Answers are marked
where their headers are made: the proxy's own, and the error middleware's for every other route;
so a request without Origin costs one header look-up."""

from __future__ import annotations

from collections.abc import MutableMapping

from aiohttp import web

from gateway.errors import ApiError

METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
MAX_AGE = "600"


class Cors:
    __slots__ = ("any_origin", "origins")

    def __init__(self, origins: list[str]) -> None:
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins)

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def mark_headers(self, origin: str, headers: MutableMapping[str, str]) -> None:
        """An answer to an allowed origin says so (the origin itself, since credentials are allowed and a
        browser refuses `*` with them)."""
        if self.allows(origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Vary"] = "Origin"

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        method = request.headers.get("Access-Control-Request-Method")
        if origin is None or method is None:
            return web.Response(status=200, headers={"Allow": METHODS})
        if not self.allows(origin):
            return ApiError(400, f"Disallowed CORS origin {origin!r}", "invalid_request_error").response(
                {"Vary": "Origin"})
        headers = {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                   "Access-Control-Allow-Methods": METHODS, "Access-Control-Max-Age": MAX_AGE, "Vary": "Origin"}
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        return web.Response(status=200, text="OK", headers=headers)
