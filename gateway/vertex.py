"""Vertex AI (`vertex_ai/<model>`): Gemini through its OpenAI-compatible endpoint, Claude through Anthropic's.

Both live under `https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}`
(`aiplatform.googleapis.com` for the `global` location):
- Gemini and the other models Vertex serves OpenAI-style: `endpoints/openapi/chat/completions`, the model
  named `google/<name>` (a name that already has a publisher, `meta/...`, is sent as it is);
- Claude (`vertex_ai/claude-...`): Anthropic's Messages API at `publishers/anthropic/models/{model}:rawPredict`,
  or `:streamRawPredict` for a stream, the body without `model` and with `anthropic_version`, as Anthropic's
  own Vertex client sends it; token counting at `publishers/anthropic/models/count-tokens:rawPredict`. Such a
  deployment speaks Anthropic's API, so /v1/messages relays it and /v1/chat/completions translates to it.

Requests carry a Google OAuth access token, from `vertex_credentials` (a service-account JSON: its path,
the JSON itself, or a map), else GOOGLE_APPLICATION_CREDENTIALS, else Google's application default
credentials. google-auth signs the JWT and exchanges it at the credentials' `token_uri`; gateway/bearer.py
keeps the token fresh. `api_base` replaces the `https://...googleapis.com` part.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.bearer import Token, TokenSource, TokenUnavailable
from gateway.config import ConfigError, LiteLLMParams
from gateway.protocols import Api
from gateway.upstream_shape import Shape

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_LOCATION = "us-central1"
ANTHROPIC_VERSION = "vertex-2023-10-16"
MAX_PATHS = 256

# One token source per set of credentials, shared by the deployments that use it.
_SOURCES: dict[str, TokenSource] = {}


class VertexOpenAI(Shape):
    """Gemini and the rest of Vertex's OpenAI-compatible models."""

    __slots__ = ()

    async def prepare(self, endpoint: str, payload: bytes, lines: bytes, model: str) -> tuple[str, bytes, bytes]:
        return f"endpoints/openapi/{endpoint}", payload, await self.auth(lines)


class VertexClaude(Shape):
    """Anthropic's Messages API as Vertex serves it."""

    __slots__ = ("_paths",)

    def __init__(self, base_url: str, api_base: str, headers: dict[str, str], model: str,
                 token: TokenSource | None) -> None:
        super().__init__(base_url, api_base, headers, model, token, Api.ANTHROPIC)
        self._paths: dict[tuple[str, bool], str] = {}

    async def prepare(self, endpoint: str, payload: bytes, lines: bytes, model: str) -> tuple[str, bytes, bytes]:
        body = orjson.loads(payload)  # the gateway's own encoding of the request: an object
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        if endpoint == "messages":
            del body["model"]
            stream = body.get("stream") is True
            path = self._paths.get((model, stream))
            if path is None:
                path = f"publishers/anthropic/models/{model}:{'streamRawPredict' if stream else 'rawPredict'}"
                if len(self._paths) < MAX_PATHS:
                    self._paths[model, stream] = path
        else:
            path = "publishers/anthropic/models/count-tokens:rawPredict"
        # The version is in the body; a beta the client asked for goes on as a header.
        betas = b"".join(line + b"\r\n" for line in lines.split(b"\r\n") if line.lower().startswith(b"anthropic-beta:"))
        return path, orjson.dumps(body), await self.auth(betas)


def vertex_shape(model: str, params: LiteLLMParams, headers: dict[str, str], where: str,
                 env: Callable[[str], str | None] = os.environ.get) -> Shape:
    credentials, found_project = _credentials(params, where, env)
    project = params.vertex_project or params.vertex_ai_project or env("VERTEXAI_PROJECT") or found_project
    if not project:
        raise ConfigError(f"{where}vertex_project: a vertex_ai/ deployment needs its Google Cloud project, here, "
                          "in VERTEXAI_PROJECT, or as project_id in its service-account JSON")
    location = params.vertex_location or params.vertex_ai_location or env("VERTEXAI_LOCATION") or DEFAULT_LOCATION
    if params.api_base:
        if not params.api_base.startswith(("http://", "https://")):
            raise ConfigError(f"{where}api_base: {params.api_base!r} is not an http(s) URL")
        root = params.api_base.rstrip("/")
    elif location == "global":
        root = "https://aiplatform.googleapis.com"
    else:
        root = f"https://{location}-aiplatform.googleapis.com"
    base_url = f"{root}/v1/projects/{project}/locations/{location}"
    fixed = dict(headers)
    token: TokenSource | None = None
    if params.api_key:
        fixed["Authorization"] = f"Bearer {params.api_key}"  # an access token minted elsewhere
    else:
        token = _source(credentials)
    if model.startswith("claude"):
        return VertexClaude(base_url, root, fixed, model, token)
    return VertexOpenAI(base_url, root, fixed, model if "/" in model else f"google/{model}", token)


def _credentials(params: LiteLLMParams, where: str, env: Callable[[str], str | None]) -> tuple[Any, str | None]:
    """google-auth credentials and the project they name; (None, None) for the application defaults,
    which are looked up at the first request (they may ask the metadata server of the machine)."""
    given = params.vertex_credentials or params.vertex_ai_credentials or env("VERTEXAI_CREDENTIALS")
    path = env("GOOGLE_APPLICATION_CREDENTIALS") if given is None else None
    if given is None and not path:
        return None, None
    import google.auth
    from google.auth.exceptions import GoogleAuthError

    field = f"{where}vertex_credentials" if given is not None else "GOOGLE_APPLICATION_CREDENTIALS"
    try:
        if isinstance(given, dict):
            info: Any = given
        elif isinstance(given, str) and given.lstrip().startswith("{"):
            info = orjson.loads(given)
        else:
            path = given or path
            assert path is not None
            with open(path, "rb") as file:
                info = orjson.loads(file.read())
        if not isinstance(info, dict):
            raise ConfigError(f"{field}: not a JSON object")
        credentials, project = google.auth.load_credentials_from_dict(info, scopes=[SCOPE])  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path!r}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{field}: not valid JSON ({exc})") from None
    except (GoogleAuthError, ValueError) as exc:
        raise ConfigError(f"{field}: not usable Google credentials: {exc}") from None
    return credentials, project if isinstance(project, str) else None


def _source(credentials: Any) -> TokenSource:
    if credentials is None:
        key = "application-default"
    else:
        info = {name: getattr(credentials, name, None)
                for name in ("service_account_email", "_token_uri", "client_id", "_refresh_token")}
        key = hashlib.sha256(orjson.dumps(info, default=str)).hexdigest()
    source = _SOURCES.get(key)
    if source is None:
        what = getattr(credentials, "service_account_email", None) or "Google application default credentials"
        source = _SOURCES[key] = TokenSource(lambda: _fetch(credentials), f"Google OAuth for {what}")
    return source


async def _fetch(credentials: Any) -> Token:
    """google-auth is synchronous: its refresh runs on a thread, one at a time (gateway/bearer.py)."""
    from google.auth.exceptions import GoogleAuthError

    try:
        value, expiry = await asyncio.to_thread(_refresh, credentials)
    except GoogleAuthError as exc:
        raise TokenUnavailable(str(exc)) from None
    if not isinstance(value, str) or not value.isascii() or not value.isprintable() or " " in value:
        raise TokenUnavailable("the token endpoint answered without a usable access token")
    now = datetime.now(UTC).replace(tzinfo=None)  # google-auth keeps expiry as naive UTC
    return Token(value, (expiry - now).total_seconds() if expiry is not None else 3600.0)


def _refresh(credentials: Any) -> tuple[object, datetime | None]:
    import google.auth
    from google.auth.transport.requests import Request

    if credentials is None:
        credentials, _ = google.auth.default(scopes=[SCOPE])
    credentials.refresh(Request())
    return credentials.token, credentials.expiry
