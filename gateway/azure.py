"""Azure OpenAI (`azure/<deployment>`) and Azure AI Foundry (`azure_ai/<model>`), as LiteLLM configures them.

Azure OpenAI serves a deployment at `{api_base}/openai/deployments/{deployment}/{endpoint}?api-version=V`
(the Responses API at `{api_base}/openai/responses?api-version=V`, naming the deployment in the body).
It takes the key in an `api-key` header, or an Entra ID token as `Authorization: Bearer`: a fixed one
(`azure_ad_token`), or one fetched with a service principal's client credentials from
`{authority}/{tenant}/oauth2/v2.0/token` and kept fresh by gateway/bearer.py. Its answers (with their
content-filter fields, and the first stream chunk with no choices) are relayed as they come.

Azure AI Foundry's models speak OpenAI's API at `{api_base}/chat/completions` with an `api-key` header.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import aiohttp
import orjson

from gateway.bearer import Token, TokenSource, TokenUnavailable
from gateway.config import ConfigError, LiteLLMParams
from gateway.upstream_shape import Shape

DEFAULT_API_VERSION = "2024-10-21"  # Azure OpenAI's latest GA data-plane version
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://cognitiveservices.azure.com/.default"
# Azure serves these at /openai/{endpoint} (and a stored response at /openai/responses/{id}), model in the body
NOT_UNDER_DEPLOYMENT = frozenset({"responses"})
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=30)
MAX_PATHS = 256  # a wildcard deployment's paths are per model a client names: kept bounded

# One token source per service principal and scope, shared by the deployments that use it, and kept
# when deployments are rebuilt (a config reload, a model added at runtime).
_SOURCES: dict[tuple[str, str, str, str], TokenSource] = {}


class Azure(Shape):
    __slots__ = ("query", "_paths")

    def __init__(self, base_url: str, api_base: str, headers: dict[str, str], model: str,
                 token: TokenSource | None, api_version: str) -> None:
        super().__init__(base_url, api_base, headers, model, token)
        self.query = f"?api-version={api_version}"
        self._paths: dict[tuple[str, str], str] = {}

    async def prepare(self, endpoint: str, payload: bytes, lines: bytes, model: str) -> tuple[str, bytes, bytes]:
        path = self._paths.get((endpoint, model))
        if path is None:
            path = self.path(endpoint, model)
            if len(self._paths) < MAX_PATHS:
                self._paths[endpoint, model] = path
        if self.token is None:
            return path, payload, lines
        return path, payload, lines + await self.token.header()

    def path(self, endpoint: str, model: str) -> str:
        """Under `{api_base}/openai`; `endpoint` may carry a query of the client's (`responses/{id}?...`)."""
        query = self.query if "?" not in endpoint else "&" + self.query[1:]
        if endpoint.partition("?")[0].partition("/")[0] in NOT_UNDER_DEPLOYMENT:
            return f"{endpoint}{query}"
        return f"deployments/{model}/{endpoint}{query}"


class AzureAI(Shape):
    """Azure AI Foundry: OpenAI's paths under api_base, with `api-version` when one is set."""

    __slots__ = ("query",)

    def __init__(self, base_url: str, api_base: str, headers: dict[str, str], model: str,
                 api_version: str | None) -> None:
        super().__init__(base_url, api_base, headers, model, None)
        self.query = f"?api-version={api_version}" if api_version else ""

    async def prepare(self, endpoint: str, payload: bytes, lines: bytes, model: str) -> tuple[str, bytes, bytes]:
        return (f"{endpoint}{self.query}" if self.query else endpoint), payload, lines


def azure_shape(model: str, params: LiteLLMParams, headers: dict[str, str], where: str,
                env: Callable[[str], str | None] = os.environ.get) -> Azure:
    """`headers`: the deployment's fixed headers (content type, extra_headers) to add the key to."""
    api_base = params.api_base or env("AZURE_API_BASE")
    if not api_base:
        raise ConfigError(f"{where}api_base: an azure/ deployment needs its resource's endpoint "
                          "(https://<resource>.openai.azure.com), here or in AZURE_API_BASE")
    _check_url(api_base, f"{where}api_base")
    root = api_base.rstrip("/").removesuffix("/openai")
    api_version = params.api_version or env("AZURE_API_VERSION") or DEFAULT_API_VERSION
    token: TokenSource | None = None
    fixed = dict(headers)
    tenant, client, secret = params.tenant_id, params.client_id, params.client_secret
    if params.api_key:
        fixed["api-key"] = params.api_key
    elif params.azure_ad_token:
        fixed["Authorization"] = f"Bearer {params.azure_ad_token}"
    elif tenant or client or secret:
        token = _entra(tenant, client, secret, params, where, env)
    elif key := env("AZURE_API_KEY"):
        fixed["api-key"] = key
    elif ad_token := env("AZURE_AD_TOKEN"):
        fixed["Authorization"] = f"Bearer {ad_token}"
    elif env("AZURE_TENANT_ID") or env("AZURE_CLIENT_ID") or env("AZURE_CLIENT_SECRET"):
        token = _entra(env("AZURE_TENANT_ID"), env("AZURE_CLIENT_ID"), env("AZURE_CLIENT_SECRET"), params, where,
                       env)
    else:
        raise ConfigError(f"{where}api_key: an azure/ deployment needs api_key (or AZURE_API_KEY), azure_ad_token "
                          "(or AZURE_AD_TOKEN), or tenant_id, client_id and client_secret for an Entra ID token")
    return Azure(f"{root}/openai", api_base, fixed, model, token, api_version)


def azure_ai_shape(model: str, params: LiteLLMParams, headers: dict[str, str], where: str,
                   env: Callable[[str], str | None] = os.environ.get) -> AzureAI:
    api_base = params.api_base or env("AZURE_AI_API_BASE")
    if not api_base:
        raise ConfigError(f"{where}api_base: an azure_ai/ deployment needs its endpoint "
                          "(https://<resource>.services.ai.azure.com/models), here or in AZURE_AI_API_BASE")
    _check_url(api_base, f"{where}api_base")
    fixed = dict(headers)
    key = params.api_key or env("AZURE_AI_API_KEY")
    if key:
        fixed["api-key"] = key
    return AzureAI(api_base.rstrip("/"), api_base, fixed, model, params.api_version)


def _entra(tenant: str | None, client: str | None, secret: str | None, params: LiteLLMParams, where: str,
           env: Callable[[str], str | None]) -> TokenSource:
    missing = [name for name, value in (("tenant_id", tenant), ("client_id", client), ("client_secret", secret))
               if not value]
    if missing:
        raise ConfigError(f"{where}{missing[0]}: an Entra ID token needs tenant_id, client_id and client_secret; "
                          f"{', '.join(missing)} missing")
    assert tenant and client and secret
    authority = (params.azure_authority_host or env("AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY).rstrip("/")
    _check_url(authority, f"{where}azure_authority_host")
    scope = params.azure_scope or env("AZURE_SCOPE") or DEFAULT_SCOPE
    url = f"{authority}/{tenant}/oauth2/v2.0/token"
    key = (url, client, hashlib.sha256(secret.encode()).hexdigest(), scope)
    source = _SOURCES.get(key)
    if source is None:
        form = {"grant_type": "client_credentials", "client_id": client, "client_secret": secret, "scope": scope}
        source = _SOURCES[key] = TokenSource(lambda: fetch_token(url, form), f"Entra ID ({url})")
    return source


async def fetch_token(url: str, form: dict[str, str]) -> Token:
    """An OAuth 2.0 token endpoint's answer to a client-credentials grant (RFC 6749 5.1, 5.2)."""
    try:
        async with aiohttp.ClientSession(timeout=TOKEN_TIMEOUT) as session, session.post(url, data=form) as answer:
            status, raw = answer.status, await answer.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TokenUnavailable(f"cannot reach {url}: {exc or type(exc).__name__}") from None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise TokenUnavailable(f"{url} answered {status} with no JSON object")
    if status != 200:
        reason = parsed.get("error_description") or parsed.get("error") or "no reason given"
        raise TokenUnavailable(f"{url} refused the token ({status}): {reason}")
    value, expires_in = parsed.get("access_token"), parsed.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # older Azure AD endpoints send it as a string
    if not _header_safe(value) or not isinstance(expires_in, int) or isinstance(expires_in, bool):
        raise TokenUnavailable(f"{url} answered 200 without a usable access_token and expires_in")
    assert isinstance(value, str)
    return Token(value, float(expires_in))


def _header_safe(value: object) -> bool:
    return isinstance(value, str) and bool(value) and value.isascii() and value.isprintable() and " " not in value


def _check_url(url: str, where: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: {url!r} is not an http(s) URL")
