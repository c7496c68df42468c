"""Signing in to the admin UI over plain HTTP, as a browser would: the sign-in form's token and cookie,
then the session cookie."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


@asynccontextmanager
async def browser_like(**connector: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies (IP hosts too) and does not follow redirects unless asked."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30),
                                     connector=aiohttp.TCPConnector(**connector)) as session:
        yield session


async def sign_in(http: aiohttp.ClientSession, ui: str, password: str, username: str = "") -> aiohttp.ClientResponse:
    """Loads the form, posts it; the answer to the post (303 on success), its body read."""
    async with http.get(f"{ui}/login", allow_redirects=False) as r:
        token = csrf_of(await r.text())
    async with http.post(f"{ui}/login", data={"csrf": token, "username": username, "password": password},
                         allow_redirects=False) as r:
        await r.read()
        return r


async def page(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url, allow_redirects=False) as r:
        return r.status, await r.text()
