"""What every page of the admin UI shares: who is signed in, the templates, answers with the UI's headers,
and the checks a page makes before it runs (a session, the CSRF token of a form, the admin role)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import orjson
from aiohttp import web

from gateway.context import IPNetwork, parse_networks
from gateway.errors import ApiError
from gateway.identity import Caller
from gateway.management.common import SERVICES
from gateway.management.key_policy import KEY_POLICY, KeyPolicy
from gateway.services import Services
from gateway.ui.assets import Assets
from gateway.ui.security import (
    CSRF_FIELD,
    CSRF_HEADER,
    NO_STORE,
    PAGE_HEADERS,
    SESSION_COOKIE,
    SignInBrake,
    same_token,
)
from gateway.ui.sessions import Session, Sessions, digest
from gateway.ui.sso_config import SsoConfig, SsoMisconfigured
from gateway.ui.sso_config import read as read_sso

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_UI_USERNAME = "admin"  # LiteLLM's, when UI_USERNAME is not set


class Visit(NamedTuple):
    """One signed-in page view."""

    session: Session
    who: Caller
    home: str  # the way back to the UI's root from this page, as a relative link ("", "../", ...)


Page = Callable[[web.Request, Visit], Awaitable[web.StreamResponse]]


class AdminUi:
    """Built once per app; its routes are added under every path prefix."""

    def __init__(self, app: web.Application) -> None:
        self.services: Services = app[SERVICES]
        self.policy: KeyPolicy = app[KEY_POLICY]
        settings = self.services.config.gateway_settings
        self.trusted: tuple[IPNetwork, ...] = parse_networks(settings.trusted_proxies)
        self.sessions = Sessions(self.services.store.db, self.services.clock)
        self.assets = Assets()
        self.brake = SignInBrake()
        self.roots: list[str] = []  # the UI's root under each prefix, longest first
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(money=money, when=when, instant=instant, number=number, pretty=pretty)
        master = self.services.authenticator.master_key
        self.master_digest = digest(master) if master else None
        self.ui_username = os.environ.get("UI_USERNAME") or DEFAULT_UI_USERNAME
        # As LiteLLM: without UI_PASSWORD the master key is the password.
        self.ui_password = os.environ.get("UI_PASSWORD") or master
        self.password_digest = digest(f"{self.ui_username}\n{self.ui_password}") if self.ui_password else None
        self.sso: SsoConfig | SsoMisconfigured | None = read_sso()

    def home(self, request: web.Request) -> str:
        """A relative way back to the UI's root, so every link and redirect works under any prefix the browser
        sees, a prefix a proxy strips included."""
        for root in self.roots:
            if request.path == root or request.path.startswith(root + "/"):
                return "../" * max(request.path[len(root):].count("/") - 1, 0)
        return ""

    def serves(self, path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in self.roots)

    async def failure(self, request: web.Request, error: ApiError, headers: dict[str, str] | None = None
                      ) -> web.Response:
        """An error under the UI (no such page, a method a page does not take, a failure) as a page of the
        UI's own, with its navigation when the browser is signed in."""
        try:
            visit = await self.visit(request)
        except Exception:  # noqa: BLE001 - the store may be what failed; the page is shown without a session
            visit = None
        title, message = FAILURES.get(error.status, ("Refused" if error.status < 500 else "Failed", error.message))
        response = self.refuse(request, error.status, title, message, visit)
        response.headers.update(headers or {})
        return response

    async def visit(self, request: web.Request) -> Visit | None:
        session = await self.sessions.find(request.cookies.get(SESSION_COOKIE, ""))
        if session is None:
            return None
        who = await self.caller_of(session)
        return Visit(session, who, self.home(request)) if who is not None else None

    async def caller_of(self, session: Session) -> Caller | None:
        """Who the session stands for now: a changed master key or password, or a key that would no longer be
        let through (blocked, expired, deleted), ends it."""
        if session.role == "master":
            return Caller(is_master=True) if session.subject == self.master_digest else None
        if session.role == "password":
            return Caller(is_master=True) if session.subject == self.password_digest else None
        try:
            return await self.services.authenticator.by_token(session.subject)
        except ApiError:
            return None

    def render(self, request: web.Request, template: str, status: int = 200, visit: Visit | None = None,
               **context: Any) -> web.Response:
        home = visit.home if visit is not None else self.home(request)
        html = self.env.get_template(template).render(
            home=home, visit=visit, csrf=visit.session.csrf if visit is not None else "",
            asset=lambda name: self.assets.link(home, name), **context)
        return web.Response(text=html, status=status, content_type="text/html", headers={**PAGE_HEADERS, **NO_STORE})

    def refuse(self, request: web.Request, status: int, title: str, message: str,
               visit: Visit | None = None) -> web.Response:
        return self.render(request, "error.html", status=status, visit=visit, title=title, message=message)


UI = web.AppKey("admin_ui", AdminUi)

# What an error page says for the statuses the UI's routes answer on their own.
FAILURES = {
    404: ("Not found", "There is no page at this address. It may have been a link to something since deleted."),
    405: ("Not allowed", "This page does not take that method: an action is a form posted from its page."),
    500: ("Something went wrong", "The gateway failed to answer this page; its log has the details."),
}


def see_other(location: str) -> web.Response:
    """After a form: the browser goes to `location` (relative to the page the form was posted to)."""
    return web.Response(status=303, headers={"Location": location, **PAGE_HEADERS, **NO_STORE})


CSRF_REFUSED = ("This form did not come from the gateway's own page: its CSRF token is missing or wrong. "
                "Reload the page and try again.")


def page(admin: bool = False) -> Callable[[Page], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """A page for whoever is signed in (`admin`: a proxy admin only). A POST must carry the session's CSRF
    token, as a form field or a header."""

    def wrap(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            ui = request.app[UI]
            visit = await ui.visit(request)
            if visit is None:
                return see_other(ui.home(request) + "login")
            if request.method == "POST":
                form = await request.post()
                sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
                if not same_token(sent if isinstance(sent, str) else None, visit.session.csrf):
                    return ui.refuse(request, 403, "Refused", CSRF_REFUSED, visit)
            if admin and not visit.who.is_admin:
                return ui.refuse(request, 403, "Admins only",
                                 f"Only a proxy admin may do this; this key's role is {visit.who.role}.", visit)
            return await handler(request, visit)

        run.__name__ = handler.__name__
        return run

    return wrap


def money(value: float | None) -> str:
    if value is None:
        return "—"
    if value and abs(value) < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.2f}"


def number(value: float | int | None) -> str:
    return "—" if value is None else f"{value:,}"


def pretty(value: Any) -> str:
    """JSON as typed, indented; escaped like any other text when the page is rendered."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def when(moment: float | None) -> str:
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")


def instant(moment: float | None) -> str:
    """A request's time, to the second."""
    if moment is None:
        return "—"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")
