"""The admin UI over plain HTTP: sign-in and its cookies, CSRF, escaping, the security headers, what a key
that is not an admin's may see, and the pages under a path prefix. The browser runs are in test_ui_browser.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.store.records import KeyRecord
from gateway.store.store import KEYS, Conflict, Store
from gateway.ui.sessions import SESSION_SECONDS, Sessions
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment
from tests.ui_session import browser_like, csrf_of, page, sign_in

MASTER = "sk-ui-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
UI_USERNAME, UI_PASSWORD = "ops", "ui-secret-pass"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("priced", upstream.base_url, input_cost_per_token=1e-3,
                                        output_cost_per_token=2e-3),
                             {"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER},
              "gateway_settings": {"path_prefixes": [PREFIX], "trusted_proxies": ["127.0.0.1/32"]}}
    with Gateway(config, env={"UI_USERNAME": UI_USERNAME, "UI_PASSWORD": UI_PASSWORD}) as gw:
        yield gw


async def api(http: aiohttp.ClientSession, gw: Gateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(f"{gw.url}{path}", json=body, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


def cookie_header(response: aiohttp.ClientResponse, name: str) -> str:
    found = [v for v in response.headers.getall("Set-Cookie", []) if v.startswith(f"{name}=")]
    assert found, f"no {name} cookie in {response.headers.getall('Set-Cookie', [])}"
    return found[0]


async def test_master_key_signs_in_with_a_strict_http_only_cookie(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as http:
        async with http.get(f"{ui}/keys", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "login"
        answer = await sign_in(http, ui, MASTER)
        assert answer.status == 303 and answer.headers["Location"] == "keys"
        cookie = cookie_header(answer, "gw_ui_session")
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite", "max-age"} <= attributes and "secure" not in attributes
        assert "SameSite=Strict" in cookie and f"Max-Age={SESSION_SECONDS}" in cookie
        assert "path" not in attributes  # scoped by the browser to the folder of the sign-in page
        async with http.get(f"{ui}/keys", allow_redirects=False) as r:
            assert r.status == 200 and "Virtual keys" in await r.text()
            assert r.headers["Cache-Control"] == "no-store"
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_wrong_key_or_password_is_refused(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as http:
        for password, username in (("sk-not-a-key", ""), ("not-even-sk", ""), (UI_PASSWORD, "admin"),
                                   (MASTER, UI_USERNAME)):
            answer = await sign_in(http, ui, password, username)
            assert answer.status == 401
            assert not [c for c in answer.headers.getall("Set-Cookie", []) if c.startswith("gw_ui_session=")]
        status, html = await page(http, f"{ui}/keys")
        assert status == 303


async def test_ui_username_and_password_sign_in_as_admin(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as http:
        answer = await sign_in(http, ui, UI_PASSWORD, UI_USERNAME)
        assert answer.status == 303
        status, html = await page(http, f"{ui}/keys")
        assert status == 200 and "Create a key" in html and ">admin<" in html


async def test_a_form_without_its_csrf_token_is_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        for sent in ({}, {"csrf": "forged"}):
            async with browser.post(f"{ui}/keys/new", data={**sent, "key_alias": "csrf-victim"},
                                    allow_redirects=False) as r:
                assert r.status == 403
                assert "CSRF token is missing or wrong" in await r.text()
        status, html = await page(browser, f"{ui}/keys/new")
        async with browser.post(f"{ui}/keys/new", data={"csrf": csrf_of(html), "key_alias": "csrf-made"},
                                allow_redirects=False) as r:
            assert r.status == 200 and "Key created" in await r.text()
    async with http.get(f"{gateway.url}/key/list", params={"key_alias": "csrf-victim"}, headers=ADMIN) as r:
        assert (await r.json())["total_count"] == 0
    async with http.get(f"{gateway.url}/key/list", params={"key_alias": "csrf-made"}, headers=ADMIN) as r:
        assert (await r.json())["total_count"] == 1


async def test_the_sign_in_form_needs_its_own_token(gateway: Gateway) -> None:
    async with browser_like() as http:
        async with http.post(f"{gateway.url}/ui/login", data={"password": MASTER}, allow_redirects=False) as r:
            assert r.status == 403 and "CSRF token is missing" in await r.text()
            assert not r.headers.getall("Set-Cookie", [])


async def test_sign_out_ends_the_session_in_the_store(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as http:
        answer = await sign_in(http, ui, MASTER)
        session = cookie_header(answer, "gw_ui_session").split(";")[0]
        status, html = await page(http, f"{ui}/keys")
        async with http.post(f"{ui}/logout", data={"csrf": csrf_of(html)}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "login?signed_out=1"
            assert "Max-Age=0" in cookie_header(r, "gw_ui_session")
    async with browser_like() as stale:  # the old cookie, sent again after signing out
        async with stale.get(f"{ui}/keys", headers={"Cookie": session}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "login"


def session_cookie(answer: aiohttp.ClientResponse) -> str:
    return cookie_header(answer, "gw_ui_session").split(";")[0]


async def sessions_kept(gw: Gateway, cookies: dict[str, str]) -> dict[str, bool]:
    """Which of these session cookies `gw` still lets in; one it does not goes to the sign-in page."""
    kept = {}
    async with browser_like() as http:
        for name, cookie in cookies.items():
            async with http.get(f"{gw.url}/ui/keys", headers={"Cookie": cookie}, allow_redirects=False) as r:
                assert r.status in (200, 303), name
                assert r.status == 200 or r.headers["Location"] == "login", name
                kept[name] = r.status == 200
    return kept


async def test_a_changed_master_key_or_ui_password_ends_the_sessions_it_made(tmp_path: Path) -> None:
    """Sessions live in the store and outlast a restart; one made with the master key ends when the gateway
    comes back with another, one made with UI_PASSWORD when that changes."""
    database = {"database_url": f"sqlite:///{tmp_path / 'store.db'}"}

    def gateway(master: str, password: str) -> Gateway:
        return Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
                        "general_settings": {"master_key": master, **database}},
                       env={"UI_USERNAME": UI_USERNAME, "UI_PASSWORD": password})

    cookies = {}
    with gateway(MASTER, UI_PASSWORD) as gw:
        async with browser_like() as http:
            cookies["master"] = session_cookie(await sign_in(http, f"{gw.url}/ui", MASTER))
        async with browser_like() as http:
            cookies["password"] = session_cookie(await sign_in(http, f"{gw.url}/ui", UI_PASSWORD, UI_USERNAME))
        assert await sessions_kept(gw, cookies) == {"master": True, "password": True}
    with gateway(MASTER, UI_PASSWORD) as gw:
        assert await sessions_kept(gw, cookies) == {"master": True, "password": True}
    with gateway("sk-ui-master-rotated", UI_PASSWORD) as gw:
        assert await sessions_kept(gw, cookies) == {"master": False, "password": True}
        async with browser_like() as http:
            assert (await sign_in(http, f"{gw.url}/ui", MASTER)).status == 401
            cookies["rotated"] = session_cookie(await sign_in(http, f"{gw.url}/ui", "sk-ui-master-rotated"))
    with gateway("sk-ui-master-rotated", "ui-secret-pass-2") as gw:
        assert await sessions_kept(gw, cookies) == {"master": False, "password": False, "rotated": True}


async def secure_sign_in(http: aiohttp.ClientSession, ui: str) -> aiohttp.ClientResponse:
    """A sign-in claiming TLS: the sign-in cookie may come back Secure, which a client on plain HTTP keeps
    to itself, so it is sent back by hand."""
    forwarded = {"X-Forwarded-Proto": "https"}
    async with http.get(f"{ui}/login", headers=forwarded) as r:
        token = csrf_of(await r.text())
        sign_in_cookie = cookie_header(r, "gw_ui_signin")
    async with http.post(f"{ui}/login", data={"csrf": token, "password": MASTER}, allow_redirects=False,
                         headers={**forwarded, "Cookie": sign_in_cookie.split(";")[0]}) as r:
        assert r.status == 303
        assert ("Secure" in sign_in_cookie) == ("Secure" in cookie_header(r, "gw_ui_session"))
        return r


async def test_the_cookie_is_secure_over_tls_a_trusted_proxy_reports(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as http:
        assert "Secure" in cookie_header(await secure_sign_in(http, ui), "gw_ui_session")
    # From 127.0.0.2, which trusted_proxies does not name, the header is the client's own claim: ignored.
    async with browser_like(local_addr=("127.0.0.2", 0)) as http:
        assert "Secure" not in cookie_header(await secure_sign_in(http, ui), "gw_ui_session")


async def test_what_users_typed_is_shown_escaped(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    alias = '<script>alert("alias")</script>'
    made = await api(http, gateway, "/key/generate", {"key_alias": alias, "metadata": {"<b>": "<img src=x>"}})
    async with browser_like() as browser:
        await sign_in(browser, f"{gateway.url}/ui", MASTER)
        for url in (f"{gateway.url}/ui/keys", f"{gateway.url}/ui/keys/{made['token_id']}"):
            status, html = await page(browser, url)
            assert status == 200
            assert "<script>alert" not in html and "&lt;script&gt;alert(&#34;alias&#34;)&lt;/script&gt;" in html
            assert "<img src=x>" not in html and "<b>" not in html


async def test_a_key_that_is_not_an_admins_sees_itself_only(gateway: Gateway, http: aiohttp.ClientSession,
                                                           upstream: FakeUpstream) -> None:
    own = await api(http, gateway, "/key/generate", {"key_alias": "just-me", "user_id": "plain-user"})
    other = await api(http, gateway, "/key/generate", {"key_alias": "someone-else"})
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        assert (await sign_in(browser, ui, own["key"])).status == 303
        status, html = await page(browser, f"{ui}/keys")
        assert status == 200 and "just-me" in html and "someone-else" not in html and "Create a key" not in html
        assert "1 key" in html
        status, html = await page(browser, f"{ui}/keys/{other['token_id']}")
        assert status == 404
        status, html = await page(browser, f"{ui}/keys/{own['token_id']}")
        assert status == 200 and "just-me" in html and "Regenerate" not in html
        async with browser.post(f"{ui}/keys/{own['token_id']}/block", data={"csrf": csrf_of(html)},
                                allow_redirects=False) as r:
            assert r.status == 403 and "Only a proxy admin" in await r.text()
        status, html = await page(browser, f"{ui}/spend?key={other['token_id']}")
        assert status == 200 and "Spend of your key" in html and 'name="key"' not in html
        status, html = await page(browser, f"{ui}/models")
        assert status == 200 and "Models your key may use" in html and "priced" in html
        assert upstream.base_url not in html  # where a deployment lives is for admins
        # Blocking the key ends its session at once.
        await api(http, gateway, "/key/block", {"key": own["key"]})
        status, _ = await page(browser, f"{ui}/keys")
        assert status == 303
        answer = await sign_in(browser, ui, own["key"])
        assert answer.status == 401


async def test_a_proxy_admin_users_key_is_an_admin(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    await api(http, gateway, "/user/new", {"user_id": "ui-admin-user", "user_role": "proxy_admin"})
    key = await api(http, gateway, "/key/generate", {"user_id": "ui-admin-user", "key_alias": "admins-own"})
    await api(http, gateway, "/key/generate", {"key_alias": "visible-to-admin"})
    async with browser_like() as browser:
        assert (await sign_in(browser, f"{gateway.url}/ui", key["key"])).status == 303
        status, html = await page(browser, f"{gateway.url}/ui/keys?q=visible-to")
        assert status == 200 and "visible-to-admin" in html and "Create a key" in html and "proxy_admin" in html


async def test_the_pages_under_a_prefix_link_under_it(gateway: Gateway) -> None:
    ui = f"{gateway.url}{PREFIX}/ui"
    async with browser_like() as http:
        async with http.get(ui, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "ui/keys"
        assert (await sign_in(http, ui, MASTER)).status == 303
        for path in ("keys", "keys/new", "spend", "models"):
            status, html = await page(http, f"{ui}/{path}")
            assert status == 200, path
            assert 'href="/' not in html and 'action="/' not in html and 'src="/' not in html  # relative only
        status, html = await page(http, f"{ui}/keys")
        for asset in ("ui.css", "ui.js", "favicon.svg"):
            link = html.split(f"static/{asset}?v=")[1].split('"')[0]
            async with http.get(f"{ui}/static/{asset}?v={link}") as r:
                assert r.status == 200 and r.headers["Cache-Control"].startswith("public")
        for name in ("%2e%2e%2fsecurity.py", "..%2F__init__.py", "ui.css.bak"):  # only the files shipped
            async with http.get(URL(f"{ui}/static/{name}", encoded=True)) as r:
                assert r.status == 404, name


async def test_ui_pages_carry_no_cors_headers(gateway: Gateway) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    async with browser_like() as http:
        await sign_in(http, f"{gateway.url}/ui", MASTER)
        async with http.get(f"{gateway.url}/ui/keys", headers=origin) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        async with http.get(f"{gateway.url}/v1/models", headers={**origin, **ADMIN}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == origin["Origin"]


async def test_sign_in_guesses_are_braked_per_address(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like(local_addr=("127.0.0.3", 0)) as http:
        statuses = [(await sign_in(http, ui, f"sk-guess-{n}")).status for n in range(11)]
        assert statuses == [401] * 10 + [429]
        assert (await sign_in(http, ui, MASTER)).status == 429
    async with browser_like() as http:  # another address is not held back
        assert (await sign_in(http, ui, MASTER)).status == 303


async def test_key_search_filters_and_pages(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    await api(http, gateway, "/team/new", {"team_id": "team-pager"})
    for n in range(30):
        await api(http, gateway, "/key/generate", {"key_alias": f"pager-{n:02d}", "team_id": "team-pager",
                                                    "user_id": f"pager-user-{n % 3}"})
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/keys?q=PAGER-&size=25")
        assert status == 200 and "30 keys match" in html and "page 1 of 2" in html
        assert "pager-29" in html and "pager-04" not in html and 'href="keys?q=PAGER-&amp;size=25&amp;page=2"' in html
        status, html = await page(browser, f"{ui}/keys?q=PAGER-&size=25&page=2")
        assert "pager-04" in html and "pager-29" not in html
        status, html = await page(browser, f"{ui}/keys?team=team-pager&user=pager-user-1")
        assert "10 keys match" in html
        status, html = await page(browser, f"{ui}/keys?q=pager_&status=blocked")
        assert "0 keys match" in html  # `_` is a letter here, not LIKE's wildcard


async def test_sessions_expire_in_the_store(store: Store) -> None:
    now = [1_000_000.0]
    sessions = Sessions(store.db, clock=lambda: now[0])
    session_id, opened = await sessions.open("master", "fingerprint")
    assert await sessions.find(session_id) == opened
    now[0] += SESSION_SECONDS - 1
    assert await sessions.find(session_id) is not None
    now[0] += 1
    assert await sessions.find(session_id) is None
    assert await sessions.find("") is None and await sessions.find("x" * 500) is None


async def test_key_search_is_literal_and_any_case(store: Store) -> None:
    for alias in ("Pct%Off", "pct-off", "under_score", "underXscore"):
        await store.insert(KEYS, KeyRecord(token=f"{hash(alias) & 0xffff:064x}", key_name="sk-...x", key_alias=alias,
                                           created_at=time.time()))
    found = {r.key_alias for r in (await store.find(KEYS, {}, search=(("key_alias",), "%"), limit=10))[0]}
    assert found == {"Pct%Off"}
    found = {r.key_alias for r in (await store.find(KEYS, {}, search=(("key_alias",), "R_S"), limit=10))[0]}
    assert found == {"under_score"}
    records, total = await store.find(KEYS, {}, search=(("key_alias", "user_id"), "PCT"), limit=1)
    assert total == 2 and len(records) == 1


async def test_a_bulk_import_is_all_or_nothing(store: Store) -> None:
    made = [KeyRecord(token=f"{n:064x}", key_name="sk-...bulk", key_alias=f"bulk-{n}") for n in range(3)]
    assert await store.insert_many(KEYS, made) == 3
    clashing = [KeyRecord(token=f"{n + 10:064x}", key_name="sk-...bulk", key_alias=f"bulk-{n}") for n in (5, 2)]
    with pytest.raises(Conflict):
        await store.insert_many(KEYS, clashing)  # bulk-2 is taken: bulk-5 is not kept either
    records, total = await store.find(KEYS, {}, search=(("key_alias",), "bulk-"), limit=10)
    assert total == 3 and {r.key_alias for r in records} == {"bulk-0", "bulk-1", "bulk-2"}
    assert await store.latest_change() >= 3  # every record imported is in the change log
