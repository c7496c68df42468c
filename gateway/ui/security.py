"""What keeps the admin UI's pages safe in a browser: the headers every answer carries, the cookies'
attributes, CSRF tokens, and a brake on guessing the sign-in."""

from __future__ import annotations

import hmac
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from gateway.context import IPNetwork, is_trusted

SESSION_COOKIE = "gw_ui_session"
# The sign-in form's own token, sent back as a cookie and as a form field (double submit): a form posted
# from another site has the field but cannot read or set the cookie.
SIGN_IN_COOKIE = "gw_ui_signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"

# No inline script or style anywhere: the pages load the UI's own files and nothing else, and no other
# site may frame them.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# The error middleware gives an answer CORS headers unless it is marked as for its own origin only: the
# UI's pages carry a CSRF token that another origin must never read.
SAME_ORIGIN_ONLY = ("Cross-Origin-Resource-Policy", "same-origin")
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    SAME_ORIGIN_ONLY[0]: SAME_ORIGIN_ONLY[1],
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def over_tls(request: web.Request, trusted: tuple[IPNetwork, ...]) -> bool:
    """Served over TLS here, or by a trusted proxy that says so (X-Forwarded-Proto)."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto")
    if forwarded is None or not trusted or not is_trusted(request.remote or "", trusted):
        return False
    return forwarded.split(",")[0].strip().lower() == "https"


def set_cookie(response: web.StreamResponse, request: web.Request, trusted: tuple[IPNetwork, ...], name: str,
               value: str, max_age: int) -> None:
    """No Path (an empty one is left out): the browser scopes the cookie to the folder of the page that set
    it (the UI's root, under whatever prefix the browser sees, a stripping proxy's too)."""
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Strict",
                        secure=over_tls(request, trusted), path="")


def drop_cookie(response: web.StreamResponse, request: web.Request, trusted: tuple[IPNetwork, ...],
                name: str) -> None:
    set_cookie(response, request, trusted, name, "", 0)


def same_token(sent: str | None, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent).encode(), expected.encode())


# Failed sign-ins allowed per client address in WINDOW seconds; past that the form refuses until they age out.
FAILURES_ALLOWED = 10
WINDOW = 300.0
MAX_CLIENTS = 10_000


class SignInBrake:
    """Bounds the guesses one address can make at the master key, the UI password or a key: per process,
    which is enough to turn an online guess into a hopeless one."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.failures: dict[str, deque[float]] = {}

    def refused(self, client: str) -> bool:
        recent = self.failures.get(client)
        if recent is None:
            return False
        cutoff = self.clock() - WINDOW
        while recent and recent[0] < cutoff:
            recent.popleft()
        if not recent:
            del self.failures[client]
            return False
        return len(recent) >= FAILURES_ALLOWED

    def failed(self, client: str) -> None:
        if client not in self.failures and len(self.failures) >= MAX_CLIENTS:
            self.failures.clear()
        self.failures.setdefault(client, deque(maxlen=FAILURES_ALLOWED)).append(self.clock())
