"""An OpenID Connect provider on 127.0.0.1 for the admin UI's single sign-on: the authorization endpoint
signs in whoever `next_claims` names and sends the browser back with a code (and the state it was given),
the token endpoint trades the code for an access token as RFC 6749 and RFC 7636 say (client credentials
by HTTP Basic and by nothing else, a client_id in the body only if it is the same client's, the code once,
the same redirect_uri, the PKCE verifier that hashes to the challenge), and the userinfo endpoint answers
the claims for that token. Each token request's form and Authorization header are kept, in order.
`fail_token` makes the token endpoint refuse with invalid_grant, as a provider does for a code it no
longer knows."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.loopback import Loopback


@dataclass
class Grant:
    redirect_uri: str
    challenge: str | None
    claims: dict[str, Any]


@dataclass
class FakeOidc(Loopback):
    client_id: str = "gateway-ui"
    client_secret: str = "oidc-client-secret"
    port: int = 0
    next_claims: dict[str, Any] = field(default_factory=dict)
    fail_token: bool = False
    authorize_queries: list[dict[str, str]] = field(default_factory=list, repr=False)
    token_forms: list[dict[str, str]] = field(default_factory=list, repr=False)
    token_auths: list[str | None] = field(default_factory=list, repr=False)
    codes: dict[str, Grant] = field(default_factory=dict, repr=False)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._loopback("fake-oidc")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """LiteLLM's variables for a generic OIDC provider, pointed here."""
        return {"GENERIC_CLIENT_ID": self.client_id, "GENERIC_CLIENT_SECRET": self.client_secret,
                "GENERIC_AUTHORIZATION_ENDPOINT": f"{self.issuer}/authorize",
                "GENERIC_TOKEN_ENDPOINT": f"{self.issuer}/token",
                "GENERIC_USERINFO_ENDPOINT": f"{self.issuer}/userinfo", "GENERIC_SCOPE": "openid email profile",
                **extra}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/userinfo", self._userinfo)

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.authorize_queries.append(query)
        if query.get("client_id") != self.client_id or query.get("response_type") != "code":
            return web.Response(status=400, text="unknown client or response type")
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(query["redirect_uri"], query.get("code_challenge"), dict(self.next_claims))
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        raise web.HTTPFound(f"{query['redirect_uri']}?{urlencode(back)}")

    @staticmethod
    def _error(error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_forms.append(form)
        self.token_auths.append(request.headers.get("Authorization"))
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return self._error("invalid_client", "client authentication failed", 401)
        if "client_secret" in form:  # RFC 6749 2.3: one authentication method a request, as Okta holds to
            return self._error("invalid_request", "Cannot supply multiple client credentials.")
        if form.get("client_id", self.client_id) != self.client_id:
            return self._error("invalid_client", "client_id differs from the authenticated client", 401)
        if self.fail_token:
            return self._error("invalid_grant", "The authorization code is invalid or has expired.")
        grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if form.get("grant_type") != "authorization_code" or grant is None:
            return self._error("invalid_grant", "unknown or used code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._error("invalid_grant", "redirect_uri differs from the authorization request's")
        if grant.challenge is not None:
            verifier = form.get("code_verifier", "")
            hashed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if hashed != grant.challenge:
                return self._error("invalid_grant", "PKCE verification failed")
        access = secrets.token_urlsafe(24)
        self.tokens[access] = grant.claims
        return web.json_response({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                                  "scope": "openid email profile"})

    async def _userinfo(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        claims = self.tokens.get(token)
        if claims is None:
            return self._error("invalid_token", "unknown access token", 401)
        return web.json_response(claims)
