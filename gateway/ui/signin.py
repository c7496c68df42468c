"""Signing in and out: with the master key, LiteLLM's UI_USERNAME / UI_PASSWORD, or a virtual key (a
proxy_admin user's key sees everything, any other key only itself)."""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from gateway.accounts import hash_key
from gateway.context import client_ip
from gateway.errors import ApiError
from gateway.ui.base import UI, AdminUi, Visit, page, see_other
from gateway.ui.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    drop_cookie,
    same_token,
    set_cookie,
)
from gateway.ui.sessions import SESSION_SECONDS, Role
from gateway.ui.sso import NAMES as SSO_NAMES

SIGN_IN_FORM_SECONDS = 3600
WRONG = "Wrong username, password or key."
NO_MASTER_KEY = ("The admin UI needs a master key: set general_settings.master_key (or LITELLM_MASTER_KEY). "
                 "Without one the gateway is open to anyone and has no admin to sign in.")
FORM_EXPIRED = ("The sign-in form expired or did not come from this page (its CSRF token is missing). "
                "Reload the page and sign in again.")
TOO_MANY = "Too many failed sign-ins from this address; wait a few minutes and try again."


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def root(request: web.Request) -> web.Response:
    """/ui and /ui/ go to the keys, from wherever the browser thinks it is."""
    return see_other("keys" if request.path.endswith("/") else "ui/keys")


async def sign_in_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    if await ui.visit(request) is not None:
        return see_other(ui.home(request) + "keys")
    return _form(ui, request)


def _form(ui: AdminUi, request: web.Request, status: int = 200, error: str = "", username: str = "") -> web.Response:
    token = request.cookies.get(SIGN_IN_COOKIE) or secrets.token_urlsafe(32)
    response = ui.render(request, "login.html", status=status, sign_in_token=token, error=error, username=username,
                         no_master_key=ui.master_digest is None, signed_out="signed_out" in request.query,
                         sso=SSO_NAMES[ui.sso.provider] if ui.sso is not None else None)
    set_cookie(response, request, ui.trusted, SIGN_IN_COOKIE, token, SIGN_IN_FORM_SECONDS)
    return response


async def sign_in(request: web.Request) -> web.Response:
    ui = request.app[UI]
    form = await request.post()
    sent = form.get(CSRF_FIELD)
    if not same_token(sent if isinstance(sent, str) else None, request.cookies.get(SIGN_IN_COOKIE, "")):
        return ui.refuse(request, 403, "Refused", FORM_EXPIRED)
    if ui.master_digest is None:
        return _form(ui, request, 403, NO_MASTER_KEY)
    client = client_ip(request, ui.trusted)
    if ui.brake.refused(client):
        return _form(ui, request, 429, TOO_MANY)
    username = str(form.get("username") or "").strip()
    password = str(form.get("password") or "").strip()
    found = await _credential(ui, username, password)
    if isinstance(found, str):
        ui.brake.failed(client)
        return _form(ui, request, 401, found, username)
    session_id, _ = await ui.sessions.open(*found)
    response = see_other("keys")
    set_cookie(response, request, ui.trusted, SESSION_COOKIE, session_id, SESSION_SECONDS)
    drop_cookie(response, request, ui.trusted, SIGN_IN_COOKIE)
    return response


async def _credential(ui: AdminUi, username: str, password: str) -> tuple[Role, str] | str:
    """What the form's fields sign in as (role, subject), or why not. A username means LiteLLM's UI login;
    none, a key in the password field."""
    if not password:
        return "Enter the master key, a virtual key, or a username and password."
    if username:
        if ui.ui_password is not None and _same(username, ui.ui_username) and _same(password, ui.ui_password):
            assert ui.password_digest is not None
            return "password", ui.password_digest
        return WRONG
    master = ui.services.authenticator.master_key
    if master is not None and _same(password, master):
        assert ui.master_digest is not None
        return "master", ui.master_digest
    if not password.startswith("sk-"):
        return WRONG
    token = hash_key(password)
    try:
        await ui.services.authenticator.by_token(token)
    except ApiError as exc:
        # The holder of a real key may learn that it is blocked or expired; a made-up one learns nothing.
        return WRONG if exc.type == "token_not_found_in_db" else exc.message
    return "key", token


@page()
async def sign_out(request: web.Request, visit: Visit) -> web.Response:
    ui = request.app[UI]
    await ui.sessions.close(visit.session.session_hash)
    response = see_other(visit.home + "login?signed_out=1")
    drop_cookie(response, request, ui.trusted, SESSION_COOKIE)
    return response

