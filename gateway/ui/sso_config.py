"""Single sign-on as LiteLLM's environment sets it up: Google (GOOGLE_CLIENT_ID), Microsoft
(MICROSOFT_CLIENT_ID) or any OpenID Connect provider (GENERIC_CLIENT_ID and its endpoints), in that order
of precedence, as LiteLLM checks them. Read once, when the UI is built."""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

GENERIC_NEEDS = ("GENERIC_CLIENT_SECRET", "GENERIC_AUTHORIZATION_ENDPOINT", "GENERIC_TOKEN_ENDPOINT",
                 "GENERIC_USERINFO_ENDPOINT")


class SsoConfig(msgspec.Struct, frozen=True, kw_only=True):
    provider: str  # "google" | "microsoft" | "generic"
    client_id: str
    client_secret: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    scope: str
    pkce: bool
    include_client_id: bool  # the client id in the token request's body too (GENERIC_INCLUDE_CLIENT_ID)
    id_attribute: str
    email_attribute: str
    role_attribute: str | None
    first_name_attribute: str
    last_name_attribute: str
    base_url: str | None  # PROXY_BASE_URL: where the provider sends the browser back to (+ /sso/callback)
    admin_ids: frozenset[str]  # PROXY_ADMIN_ID: whoever signs in with this id is made a proxy_admin
    allowed_domains: frozenset[str] | None  # ALLOWED_EMAIL_DOMAINS


class SsoMisconfigured(msgspec.Struct, frozen=True):
    """A provider is named, but a setting it needs is missing: the sign-in page says which."""

    provider: str
    missing: tuple[str, ...]


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    return default if raw is None else raw.strip().lower() in ("1", "true", "yes", "on")


def _list(raw: str | None) -> frozenset[str]:
    return frozenset(p.strip() for p in (raw or "").split(",") if p.strip())


def read(env: Mapping[str, str] = os.environ) -> SsoConfig | SsoMisconfigured | None:
    """The SSO provider the environment sets up, None when it sets up none."""
    base_url = (env.get("PROXY_BASE_URL") or "").rstrip("/") or None
    admin_ids = _list(env.get("PROXY_ADMIN_ID"))
    allowed = _list(env.get("ALLOWED_EMAIL_DOMAINS")) or None
    if env.get("GOOGLE_CLIENT_ID"):
        if not env.get("GOOGLE_CLIENT_SECRET"):
            return SsoMisconfigured("google", ("GOOGLE_CLIENT_SECRET",))
        return SsoConfig(provider="google", client_id=env["GOOGLE_CLIENT_ID"],
                         client_secret=env["GOOGLE_CLIENT_SECRET"],
                         authorization_endpoint="https://accounts.google.com/o/oauth2/v2/auth",
                         token_endpoint="https://oauth2.googleapis.com/token",
                         userinfo_endpoint="https://openidconnect.googleapis.com/v1/userinfo",
                         scope="openid email profile", pkce=True, include_client_id=True, id_attribute="sub",
                         email_attribute="email", role_attribute=None, first_name_attribute="given_name",
                         last_name_attribute="family_name", base_url=base_url, admin_ids=admin_ids,
                         allowed_domains=allowed)
    if env.get("MICROSOFT_CLIENT_ID"):
        if not env.get("MICROSOFT_CLIENT_SECRET"):
            return SsoMisconfigured("microsoft", ("MICROSOFT_CLIENT_SECRET",))
        tenant = env.get("MICROSOFT_TENANT") or "common"
        base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
        return SsoConfig(provider="microsoft", client_id=env["MICROSOFT_CLIENT_ID"],
                         client_secret=env["MICROSOFT_CLIENT_SECRET"], authorization_endpoint=f"{base}/authorize",
                         token_endpoint=f"{base}/token", userinfo_endpoint="https://graph.microsoft.com/v1.0/me",
                         scope="openid email User.Read", pkce=True, include_client_id=True, id_attribute="id",
                         email_attribute="mail", role_attribute=None, first_name_attribute="givenName",
                         last_name_attribute="surname", base_url=base_url, admin_ids=admin_ids,
                         allowed_domains=allowed)
    if env.get("GENERIC_CLIENT_ID"):
        missing = tuple(name for name in GENERIC_NEEDS if not env.get(name))
        if missing:
            return SsoMisconfigured("generic", missing)
        return SsoConfig(provider="generic", client_id=env["GENERIC_CLIENT_ID"],
                         client_secret=env["GENERIC_CLIENT_SECRET"],
                         authorization_endpoint=env["GENERIC_AUTHORIZATION_ENDPOINT"],
                         token_endpoint=env["GENERIC_TOKEN_ENDPOINT"],
                         userinfo_endpoint=env["GENERIC_USERINFO_ENDPOINT"],
                         scope=env.get("GENERIC_SCOPE") or "openid email profile",
                         # LiteLLM sends PKCE only with GENERIC_CLIENT_USE_PKCE; here it is on unless turned off:
                         # a provider that does not know it ignores it.
                         pkce=_flag(env, "GENERIC_CLIENT_USE_PKCE", True),
                         include_client_id=_flag(env, "GENERIC_INCLUDE_CLIENT_ID", False),
                         id_attribute=env.get("GENERIC_USER_ID_ATTRIBUTE") or "preferred_username",
                         email_attribute=env.get("GENERIC_USER_EMAIL_ATTRIBUTE") or "email",
                         role_attribute=env.get("GENERIC_USER_ROLE_ATTRIBUTE") or "role",
                         first_name_attribute=env.get("GENERIC_USER_FIRST_NAME_ATTRIBUTE") or "first_name",
                         last_name_attribute=env.get("GENERIC_USER_LAST_NAME_ATTRIBUTE") or "last_name",
                         base_url=base_url, admin_ids=admin_ids, allowed_domains=allowed)
    return None
