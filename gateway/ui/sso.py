"""Signing in to the admin UI through an identity provider: OAuth 2.0's authorization-code flow with a
`state` bound to the browser (a cookie, checked on the way back) and PKCE, then the provider's userinfo.

The user is looked up, or created, as LiteLLM's /sso/callback does: by the id the provider gives
(GENERIC_USER_ID_ATTRIBUTE), else by email; a new user takes the role the provider names
(GENERIC_USER_ROLE_ATTRIBUTE) when it is one of LiteLLM's, else internal_user_viewer, and PROXY_ADMIN_ID
makes its user a proxy_admin. As LiteLLM, the sign-in makes the user a key that lives a day (its raw value
is never kept, here not even shown); the UI session stands on that key like any key's session, so a
blocked user or a deleted key ends it.

Routes: /ui/sso-login starts, /ui/sso-callback finishes; LiteLLM's /sso/key/generate and /sso/callback
(the address an identity provider is registered with) lead to them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import aiohttp
import msgspec
from aiohttp import web

from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.management.common import validated
from gateway.management.keys import GenerateKey, generate_key
from gateway.management.teams import find_user
from gateway.management.users import ROLES, NewUser, UpdateUser, create_user, update_user
from gateway.store.records import UserRecord
from gateway.ui.base import UI, AdminUi, see_other
from gateway.ui.security import SESSION_COOKIE, over_tls, set_cookie
from gateway.ui.sessions import SESSION_SECONDS
from gateway.ui.sso_config import SsoConfig, SsoMisconfigured

log = logging.getLogger(__name__)

SSO_COOKIE = "gw_ui_sso"
SSO_COOKIE_SECONDS = 600  # the time a person has at the provider's sign-in page
PROVIDER_SECONDS = 15.0
NEW_USER_ROLE = "internal_user_viewer"  # LiteLLM's for an SSO user it makes without a role
SSO_KEY_DURATION = "24h"  # LiteLLM's UI key after an SSO sign-in
MAX_ANSWER = 1 << 20
NAMES = {"google": "Google", "microsoft": "Microsoft", "generic": "single sign-on"}


class Refused(Exception):
    """Why the sign-in stops: shown on the error page as the title and text."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    email: str | None
    role: str | None


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _ui_root(ui: AdminUi, request: web.Request) -> str:
    """The UI's root path under the prefix this request came by: /ui or /olla/litellm/ui."""
    for root in ui.roots:
        if request.path == root or request.path.startswith(root + "/"):
            return root
    prefix = request.path.removesuffix("/sso/key/generate").removesuffix("/sso/callback")
    return f"{prefix}/ui"


def redirect_uri(config: SsoConfig, ui: AdminUi, request: web.Request) -> str:
    """Where the provider sends the browser back: PROXY_BASE_URL/sso/callback as LiteLLM registers it, or
    this request's own origin and prefix when PROXY_BASE_URL is not set."""
    if config.base_url:
        return f"{config.base_url}/sso/callback"
    scheme = "https" if over_tls(request, ui.trusted) else "http"
    return f"{scheme}://{request.host}{_ui_root(ui, request).removesuffix('/ui')}/sso/callback"


def _configured(ui: AdminUi) -> SsoConfig:
    config = ui.sso
    if config is None:
        raise Refused(404, "Single sign-on is off", "No identity provider is set up: set GENERIC_CLIENT_ID and "
                      "its endpoints (or GOOGLE_CLIENT_ID, MICROSOFT_CLIENT_ID) to sign in through one.")
    if isinstance(config, SsoMisconfigured):
        raise Refused(500, "Single sign-on is not set up fully", f"Sign-in through {NAMES[config.provider]} "
                      f"needs {', '.join(config.missing)}; set it in the gateway's environment.")
    return config


async def start(request: web.Request) -> web.StreamResponse:
    """Sends the browser to the provider with a fresh state and PKCE challenge, kept in a cookie."""
    ui = request.app[UI]
    try:
        config = _configured(ui)
    except Refused as refused:
        return ui.refuse(request, refused.status, refused.title, refused.message)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    query = {"response_type": "code", "client_id": config.client_id, "redirect_uri": redirect_uri(config, ui, request),
             "scope": config.scope, "state": state}
    if config.pkce:
        query.update(code_challenge=_challenge(verifier), code_challenge_method="S256")
    separator = "&" if "?" in config.authorization_endpoint else "?"
    response = see_other(f"{config.authorization_endpoint}{separator}{urlencode(query)}")
    # Lax, not Strict: the provider's redirect back is a navigation from another site, which a Strict
    # cookie would not go with.
    response.set_cookie(SSO_COOKIE, f"{state}.{verifier}", max_age=SSO_COOKIE_SECONDS, httponly=True,
                        samesite="Lax", secure=over_tls(request, ui.trusted), path="")
    return response


async def litellm_start(request: web.Request) -> web.Response:
    """LiteLLM's /sso/key/generate: the UI's own start, under the same prefix."""
    return see_other("../../ui/sso-login")


async def litellm_callback(request: web.Request) -> web.Response:
    """LiteLLM's /sso/callback, where providers are registered to send the browser: the UI's own callback
    (where its cookies are), with the provider's answer as it came."""
    return see_other("../ui/sso-callback" + (f"?{request.query_string}" if request.query_string else ""))


async def callback(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    try:
        config = _configured(ui)
        verifier = _checked_state(request)
        identity = await _identity(config, ui, request, verifier)
        token = await _signed_in(ui, config, identity)
    except Refused as refused:
        response = ui.refuse(request, refused.status, refused.title, refused.message)
        response.del_cookie(SSO_COOKIE, path="")
        return response
    session_id, _ = await ui.sessions.open("key", token)
    # A page rather than a redirect: the browser came here from the provider's site, and a redirect would
    # carry that on, so the Strict session cookie would not go with the next page. This page's own
    # navigation is from the gateway's site.
    response = ui.render(request, "signed_in.html")
    set_cookie(response, request, ui.trusted, SESSION_COOKIE, session_id, SESSION_SECONDS)
    response.del_cookie(SSO_COOKIE, path="")
    return response


def _checked_state(request: web.Request) -> str:
    """The PKCE verifier, once the state the provider sent back is the one this browser was given."""
    if "error" in request.query:
        detail = request.query.get("error_description") or request.query["error"]
        raise Refused(401, "The identity provider refused the sign-in", f"It answered: {detail[:300]}")
    kept = request.cookies.get(SSO_COOKIE, "")
    state, _, verifier = kept.partition(".")
    sent = request.query.get("state", "")
    if not state or not sent or not hmac.compare_digest(state.encode(), sent.encode()):
        raise Refused(403, "Sign-in not recognised", "This answer from the identity provider does not belong to a "
                      "sign-in this browser started (its state does not match, or the sign-in took more than "
                      "ten minutes). Start again from the sign-in page.")
    if not request.query.get("code"):
        raise Refused(400, "Sign-in not finished", "The identity provider sent the browser back without a code.")
    return verifier


async def _identity(config: SsoConfig, ui: AdminUi, request: web.Request, verifier: str) -> Identity:
    form = {"grant_type": "authorization_code", "code": request.query["code"],
            "redirect_uri": redirect_uri(config, ui, request)}
    if config.pkce:
        form["code_verifier"] = verifier
    # As fastapi-sso under LiteLLM: the client authenticates by HTTP Basic alone (RFC 6749 2.3 allows one
    # method a request), and include_client_id names it in the body as well.
    if config.include_client_id:
        form["client_id"] = config.client_id
    auth = aiohttp.BasicAuth(config.client_id, config.client_secret)
    timeout = aiohttp.ClientTimeout(total=PROVIDER_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        tokens = await _answer(http.post(config.token_endpoint, data=form, auth=auth,
                                         headers={"Accept": "application/json"}), "token endpoint")
        access = tokens.get("access_token")
        if not isinstance(access, str) or not access:
            raise Refused(502, "Sign-in failed", "The identity provider's token endpoint answered without an "
                          "access_token.")
        claims = await _answer(http.get(config.userinfo_endpoint, headers={
            "Authorization": f"Bearer {access}", "Accept": "application/json"}), "userinfo endpoint")
    return _mapped(config, claims)


async def _answer(call: Any, what: str) -> dict[str, Any]:
    """A provider's JSON object, or why not (its error and description, never a traceback)."""
    try:
        async with call as response:
            body = await response.content.read(MAX_ANSWER)
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("SSO %s unreachable: %s", what, exc)
        raise Refused(502, "Sign-in failed", f"The identity provider's {what} could not be reached "
                      f"({type(exc).__name__}).") from None
    try:
        parsed = msgspec.json.decode(body)
    except msgspec.DecodeError:
        parsed = None
    if status >= 400 or not isinstance(parsed, dict):
        detail = ""
        if isinstance(parsed, dict):
            detail = ": " + " - ".join(str(parsed[k])[:200] for k in ("error", "error_description") if parsed.get(k))
        log.warning("SSO %s answered %s%s", what, status, detail)
        said = f"The identity provider's {what} answered {status}{detail}"
        raise Refused(502, "Sign-in failed", said if said.endswith(".") else said + ".")
    return parsed


def _text(claims: dict[str, Any], name: str | None) -> str | None:
    value = claims.get(name) if name else None
    return str(value).strip() or None if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _mapped(config: SsoConfig, claims: dict[str, Any]) -> Identity:
    """LiteLLM's reading of the claims: the id attribute, else first and last name, else the email."""
    email = _text(claims, config.email_attribute)
    if config.provider == "microsoft" and email is None:
        email = _text(claims, "userPrincipalName")
    user_id = _text(claims, config.id_attribute) or (
        f"{_text(claims, config.first_name_attribute) or ''}{_text(claims, config.last_name_attribute) or ''}"
        or None) or email
    if user_id is None:
        raise Refused(401, "Sign-in failed", f"The identity provider named no user: its answer has no "
                      f"{config.id_attribute!r} and no email.")
    if email is not None and config.allowed_domains is not None:
        domain = email.rpartition("@")[2].lower()
        if domain not in {d.lower() for d in config.allowed_domains}:
            raise Refused(401, "Not allowed", f"The email domain {domain} is not one allowed to sign in here "
                          "(ALLOWED_EMAIL_DOMAINS). Contact your admin to change this.")
    return Identity(user_id=user_id[:256], email=email[:256] if email else None,
                    role=_text(claims, config.role_attribute))


async def _signed_in(ui: AdminUi, config: SsoConfig, identity: Identity) -> str:
    """The user, found or made, and the hash of the key the session stands on."""
    svc = ui.services
    admin = Caller(is_master=True)
    try:
        user = await find_user(svc, identity.user_id, None) or (
            await find_user(svc, None, identity.email) if identity.email else None)
        if user is None:
            role = identity.role if identity.role in ROLES else NEW_USER_ROLE
            made = await create_user(svc, admin, validated(
                {"user_id": identity.user_id, "user_email": identity.email, "user_role": role,
                 "auto_create_key": False, "metadata": {"auth_provider": config.provider}}, NewUser))
            user = made.user
        user = await _promoted(ui, config, user)
        key, _ = await generate_key(svc, ui.policy, admin, validated(
            {"user_id": user.user_id, "duration": SSO_KEY_DURATION,
             "metadata": {"login_method": "sso", "auth_provider": config.provider}}, GenerateKey))
    except ApiError as error:
        raise Refused(error.status if error.status < 500 else 500, "Sign-in failed",
                      f"The user could not be signed in: {error.message}") from None
    return key.token


async def _promoted(ui: AdminUi, config: SsoConfig, user: UserRecord) -> UserRecord:
    """PROXY_ADMIN_ID's user is a proxy_admin, as LiteLLM makes it on sign-in."""
    if user.user_id not in config.admin_ids or user.user_role == "proxy_admin":
        return user
    return await update_user(ui.services, validated({"user_id": user.user_id, "user_role": "proxy_admin"},
                                                    UpdateUser))


def add_routes(app: web.Application, prefix: str, root: str) -> None:
    app.router.add_get(f"{root}/sso-login", start)
    app.router.add_get(f"{root}/sso-callback", callback)
    app.router.add_get(f"{prefix}/sso/key/generate", litellm_start)
    app.router.add_get(f"{prefix}/sso/callback", litellm_callback)
