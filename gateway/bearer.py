"""A bearer token fetched once, shared by every request of a deployment, and refreshed before it expires.

Azure's Entra ID and Google's OAuth hand out access tokens that last about an hour. A request takes the
cached header line at the cost of a clock read. The first request waits for the first fetch; from
REFRESH_BEFORE seconds before expiry, the next request starts a refresh in the background and goes on
with the token still valid, so no request waits for the token endpoint while it has a valid token.
Concurrent requests share one fetch. A token already expired (the refresh failed, or none was
fetched yet) is waited for. After a failed fetch, the token endpoint is asked again no sooner than
RETRY_AFTER seconds later; meanwhile requests without a valid token fail at once with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from gateway.upstream_http import UpstreamUnreachable

REFRESH_BEFORE = 300.0
RETRY_AFTER = 5.0  # seconds between fetches after one failed

log = logging.getLogger("gateway")


class TokenUnavailable(UpstreamUnreachable):
    """The token endpoint refused or could not be reached: the attempt fails as an unreachable upstream."""


class Token(NamedTuple):
    value: str
    expires_in: float  # seconds from when it was fetched


class TokenSource:
    """`fetch` gets a new token (raising TokenUnavailable); `what` names the source in errors."""

    __slots__ = ("_fetch", "what", "clock", "_line", "_refresh_at", "_expires_at", "_retry_at", "_running",
                 "_error")

    def __init__(self, fetch: Callable[[], Awaitable[Token]], what: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.what = what
        self.clock = clock
        self._line = b""
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._retry_at = 0.0
        self._running: asyncio.Task[None] | None = None
        self._error = ""

    async def header(self) -> bytes:
        """`Authorization: Bearer ...` as a header line."""
        now = self.clock()
        if now < self._refresh_at:
            return self._line
        running = self._running
        if running is None or running.done():
            # After a failed fetch the endpoint is left alone a while, rather than asked once a request.
            running = None if now < self._retry_at else self._start()
        if now < self._expires_at:
            return self._line  # still valid: the refresh goes on in the background
        if running is not None:
            await asyncio.shield(running)  # one waiter leaving does not cancel the fetch the others wait for
        if self.clock() >= self._expires_at:
            raise TokenUnavailable(f"no token from {self.what}: {self._error or 'it expired as it came'}")
        return self._line

    def _start(self) -> asyncio.Task[None]:
        running = self._running = asyncio.get_running_loop().create_task(self._refresh())
        return running

    async def _refresh(self) -> None:
        """Never raises: a background refresh has no one to raise to. A failure is logged, the token in
        hand is kept while valid, and a request RETRY_AFTER seconds later tries again."""
        started = self.clock()
        try:
            token = await self._fetch()
        except Exception as exc:  # noqa: BLE001 - a credentials library's own failure is one more refusal
            self._error = str(exc) if isinstance(exc, TokenUnavailable) else f"{type(exc).__name__}: {exc}"
            self._retry_at = self.clock() + RETRY_AFTER
            log.warning("token refresh from %s failed: %s", self.what, exc)
            return
        self._error = ""
        self._line = b"Authorization: Bearer %b\r\n" % token.value.encode("latin-1")
        self._expires_at = started + token.expires_in
        self._refresh_at = self._expires_at - REFRESH_BEFORE
