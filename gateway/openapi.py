"""/openapi.json, made once at start from the routes the app serves, and the Swagger UI at /docs.

A handler says what it reads with `@documented(...)` (or `describe(...)` for one bound to an
instance); a route whose handler says nothing is still listed, with a free-form body for a POST."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar

import msgspec
import orjson
from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from gateway import __version__

# A handler, or a method that becomes one once bound.
H = TypeVar("H", bound=Callable[..., Awaitable[web.StreamResponse]])


class Query(msgspec.Struct, frozen=True):
    name: str
    kind: Literal["string", "integer", "boolean"] = "string"
    description: str = ""


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    summary: str = ""
    body: type | None = None
    query: tuple[Query, ...] = ()
    public: bool = False  # answered without a key
    hidden: bool = False  # served, but not part of the API (these docs themselves)
    errors: Literal["openai", "anthropic"] = "openai"  # the envelope its errors come in
    media_type: str = "application/json"  # of the body: an upload's is multipart/form-data


# Keyed by the function, or by the bound method for handlers that differ per instance (the proxy's).
_OPERATIONS: dict[object, Operation] = {}


def documented(summary: str = "", body: type | None = None, query: Iterable[Query] = (), public: bool = False,
               hidden: bool = False) -> Callable[[H], H]:
    def mark(handler: H) -> H:
        return describe(handler, Operation(summary=summary, body=body, query=tuple(query), public=public,
                                           hidden=hidden))

    return mark


def describe(handler: H, operation: Operation) -> H:
    _OPERATIONS[handler] = operation
    return handler


def operation_of(handler: object) -> Operation:
    found = _OPERATIONS.get(handler)
    if found is None:
        found = _OPERATIONS.get(getattr(handler, "__func__", None))
    return found if found is not None else Operation()


# The first path segments that name an area; the rest fall under "other".
TAGS = {"key": "keys", "user": "users", "team": "teams", "spend": "spend", "global": "spend",
        "models": "models", "model": "models", "model_group": "models", "public": "models", "router": "models",
        "health": "health", "metrics": "health",
        "chat": "proxy", "completions": "proxy", "embeddings": "proxy", "openai": "proxy", "moderations": "proxy",
        "images": "proxy", "messages": "proxy", "responses": "proxy", "audio": "proxy", "rerank": "proxy",
        "end_user": "end users", "customer": "end users", "budget": "budgets", "organization": "organizations",
        "access_group": "access groups", "unified_access_group": "access groups", "credentials": "credentials"}
TAG_ORDER = ("proxy", "models", "credentials", "keys", "users", "teams", "organizations", "end users", "budgets",
             "access groups", "spend", "health", "other")

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
ERROR_RESPONSE = {"description": "An error, in OpenAI's envelope",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
ANTHROPIC_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {"type": "object", "required": ["type", "message"], "properties": {
            "type": {"type": "string", "enum": ["invalid_request_error", "authentication_error", "billing_error",
                                                "permission_error", "not_found_error", "request_too_large",
                                                "rate_limit_error", "api_error", "timeout_error",
                                                "overloaded_error"]},
            "message": {"type": "string"}}},
        "request_id": {"type": "string"}},
}
ANTHROPIC_ERROR_RESPONSE = {"description": "An error, in Anthropic's envelope (its type named by the status)",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/AnthropicError"}}}}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "A virtual key or the master key"},
    "x-litellm-api-key": {"type": "apiKey", "in": "header", "name": "x-litellm-api-key"},
    "api-key": {"type": "apiKey", "in": "header", "name": "api-key"},
}
FREE_FORM: dict[str, Any] = {"type": "object", "additionalProperties": True}


def tag_of(path: str) -> str:
    segments = [s for s in path.split("/") if s]
    if segments and re.fullmatch(r"v\d+", segments[0]):
        segments = segments[1:]
    return TAGS.get(segments[0], "other") if segments else "other"


def unprefixed(path: str, prefixes: list[str]) -> str | None:
    """The path as served at the root, or None when it lives under a prefix (the root copy is listed)."""
    for prefix in prefixes:
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            return None
    return path


def build_document(app: web.Application, prefixes: list[str]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    bodies: list[tuple[dict[str, Any], type]] = []
    taken: set[str] = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*") or route.resource is None:
            continue
        info = route.resource.get_info()
        raw = info.get("path") or info.get("formatter")
        path = unprefixed(raw, prefixes) if raw is not None else None
        operation = operation_of(route.handler)
        if path is None or operation.hidden:
            continue
        spec: dict[str, Any] = {
            "tags": [tag_of(path)],
            "operationId": _unique(f"{route.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}".rstrip("_"),
                                   taken),
            "responses": {"200": {"description": "OK"},
                          "default": ANTHROPIC_ERROR_RESPONSE if operation.errors == "anthropic" else ERROR_RESPONSE},
        }
        if operation.summary:
            spec["summary"] = operation.summary
        parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in re.findall(r"{(\w+)", path)]
        parameters += [{"name": q.name, "in": "query", "required": False, "schema": {"type": q.kind},
                        **({"description": q.description} if q.description else {})} for q in operation.query]
        if parameters:
            spec["parameters"] = parameters
        if operation.body is not None:
            # A management body whose fields are all optional may be left out: it reads as {}.
            needed = any(field.required for field in msgspec.structs.fields(operation.body))
            spec["requestBody"] = {"required": needed, "content": {operation.media_type: {}}}
            bodies.append((spec["requestBody"]["content"][operation.media_type], operation.body))
        elif route.method in ("POST", "PUT", "PATCH"):
            spec["requestBody"] = {"required": False, "content": {"application/json": {"schema": FREE_FORM}}}
        if operation.public:
            spec["security"] = []
        paths.setdefault(re.sub(r"{(\w+):[^}]*}", r"{\1}", path), {})[route.method.lower()] = spec
    # msgspec names two Structs of one name by their modules (teams' and organizations' AddMembers):
    # its own references, not __name__, point at the right one.
    kinds = list(dict.fromkeys(kind for _, kind in bodies))
    refs, schemas = msgspec.json.schema_components(kinds, ref_template="#/components/schemas/{name}")
    ref_of = dict(zip(kinds, refs, strict=True))
    for content, kind in bodies:
        content["schema"] = ref_of[kind]
    used = {tag for operations in paths.values() for spec in operations.values() for tag in spec["tags"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM gateway", "version": __version__,
                 "description": "An OpenAI-compatible gateway with LiteLLM's management API."},
        # Relative, so "Try it out" goes where this document was read from, under any prefix.
        "servers": [{"url": ".", "description": "where this document was read from"}],
        "tags": [{"name": tag} for tag in TAG_ORDER if tag in used],
        "paths": paths,
        "components": {"schemas": {**schemas, "Error": ERROR_SCHEMA, "AnthropicError": ANTHROPIC_ERROR_SCHEMA},
                       "securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    }


def _unique(name: str, taken: set[str]) -> str:
    """/metrics and /metrics/ read alike once made an identifier."""
    found, count = name, 1
    while found in taken:
        count += 1
        found = f"{name}_{count}"
    taken.add(found)
    return found


OPENAPI = web.AppKey("openapi", bytes)

# Relative links: /olla/litellm/docs loads /olla/litellm/docs/... and /olla/litellm/openapi.json.
DOCS_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>LLM gateway API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                            persistAuthorization: true, presets: [SwaggerUIBundle.presets.apis]});
</script>
</body>
</html>
"""
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})


@documented(hidden=True, public=True)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@documented(hidden=True, public=True)
async def docs(request: web.Request) -> web.Response:
    return web.Response(body=DOCS_PAGE, content_type="text/html")


@documented(hidden=True, public=True)
async def asset(request: web.Request) -> web.StreamResponse:
    name = request.match_info["asset"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(swagger_ui_path / name, headers={"Cache-Control": "public, max-age=86400"})


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/openapi.json", openapi_json)
    app.router.add_get(f"{prefix}/docs", docs)
    app.router.add_get(prefix + "/docs/{asset}", asset)


def publish(app: web.Application, prefixes: list[str]) -> None:
    """Made once every route is added: the routes other modules add are part of it too."""
    app[OPENAPI] = orjson.dumps(build_document(app, prefixes))
