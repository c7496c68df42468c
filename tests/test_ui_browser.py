"""The admin UI in a real browser: Debian's chromium driven by Playwright (no browser download), over a
running gateway and a fake upstream. Screenshots of the main pages land in test-artifacts/ui/."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.accounts import hash_key
from gateway.spend.record import SpendRecord
from gateway.store.database import open_database
from gateway.store.records import KeyRecord
from gateway.store.store import KEYS, Store
from tests.fakes import FakeUpstream
from tests.harness import ROOT, Gateway, deployment

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")
MASTER = "sk-ui-browser-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
SHOTS = ROOT / "test-artifacts" / "ui"
PATIENCE_MS = 15_000


HISTORY_KEYS = {"search-app": "team-search", "support-bot": "team-support", "nightly-batch": "team-data"}
HISTORY_DAYS = 14


async def seed_history(url: str) -> None:
    """Two weeks of spend by three keys on two models, written through the store as the spend writer writes
    it, so the spend page has days to draw."""
    store = Store(await open_database(url, url.removeprefix("sqlite:///")))
    await store.start()
    await store.insert_many(KEYS, [KeyRecord(token=hash_key(f"sk-history-{alias}"), key_name="sk-...hist",
                                             key_alias=alias, team_id=team) for alias, team in HISTORY_KEYS.items()])
    rng = random.Random(15)
    now = time.time()
    records = []
    for day in range(HISTORY_DAYS):
        for alias, team in HISTORY_KEYS.items():
            for model, price in (("priced", 2e-3), ("cheap", 2e-6)):
                tokens = rng.randrange(2_000, 40_000) * (3 if alias == "search-app" else 1)
                start = now - day * 86400 - rng.uniform(0, 3600)
                records.append(SpendRecord(request_id=uuid.uuid4().hex, api_key=hash_key(f"sk-history-{alias}"),
                                           key_alias=alias, team_id=team, model=model, model_group=model,
                                           prompt_tokens=tokens, total_tokens=tokens, spend=tokens * price,
                                           start_time=start, end_time=start + 1))
    await store.write_spend(records)
    await store.close()


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ui-browser') / 'store.db'}"
    asyncio.run(seed_history(url))
    config = {"model_list": [deployment("priced", upstream.base_url, input_cost_per_token=1e-3,
                                        output_cost_per_token=2e-3),
                             deployment("cheap", upstream.base_url, input_cost_per_token=1e-6,
                                        output_cost_per_token=2e-6)],
              "general_settings": {"master_key": MASTER, "database_url": url},
              "gateway_settings": {"path_prefixes": [PREFIX], "spend_write_interval": 0.1}}
    with Gateway(config) as gw:
        yield gw


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Any, ui: str, password: str) -> None:
    await page.goto(f"{ui}/keys")
    assert page.url == f"{ui}/login"
    await page.get_by_label("Password, master key or virtual key").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{ui}/keys")


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, model: str = "priced") -> int:
    async with http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hello there"}]}) as r:
        await r.read()
        return r.status


async def test_an_admin_manages_a_key_from_creation_to_deletion(gateway: Gateway, browser: Any,
                                                                 http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.accept())))

    # A wrong key is refused, on the sign-in page.
    await page.goto(f"{ui}/login")
    await page.get_by_label("Password, master key or virtual key").fill("sk-wrong-key")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("alert").wait_for()
    assert "Wrong username, password or key." in await page.get_by_role("alert").inner_text()
    await shot(page, "sign-in-refused")

    await sign_in(page, ui, MASTER)
    await page.get_by_role("link", name="Create a key").click()
    await page.get_by_label("Alias").fill("browser-made")
    await page.get_by_label("priced").check()
    await page.get_by_label("Max budget ($)").fill("25")
    await page.get_by_label("Budget resets every").fill("30d")
    await page.get_by_label("Requests a minute (rpm)").fill("600")
    await page.get_by_label("Tokens a minute (tpm)").fill("100000")
    await page.get_by_label("Requests at once").fill("8")
    await page.get_by_label("Metadata (a JSON object)").fill('{"owner": "search team"}')
    await shot(page, "create-key")
    await page.get_by_role("button", name="Create key").click()
    await page.get_by_role("heading", name="Key created").wait_for()
    raw = await page.locator("#new-key").input_value()
    assert raw.startswith("sk-")
    await page.get_by_role("button", name="Copy").click()
    await page.get_by_role("button", name="Copied").wait_for()

    # Listed, with what was set.
    await page.get_by_role("link", name="All keys").click()
    row = page.locator("#keys tbody tr", has_text="browser-made")
    await row.wait_for()
    assert "$25.00" in await row.inner_text() and "600 rpm" in await row.inner_text()

    # Used for a chat, its spend shows on its page.
    assert await chat(http, gateway, raw) == 200
    assert await chat(http, gateway, raw, "cheap") == 401  # only `priced` was ticked
    await row.get_by_role("link", name="browser-made").click()
    spend = page.locator("#key-spend")
    for _ in range(50):
        if await spend.inner_text() != "$0.00":
            break
        await asyncio.sleep(0.1)
        await page.reload()
    assert (await spend.inner_text()).startswith("$0.0") and await spend.inner_text() != "$0.00"
    assert "search team" in await page.locator(".facts").inner_text()
    await shot(page, "key")

    # Blocked: the chat is refused; unblocked: it goes through again.
    await page.get_by_role("button", name="Block").click()
    await page.get_by_text("The key is blocked").wait_for()
    assert any("Block this key?" in d for d in dialogs)
    assert await chat(http, gateway, raw) == 401
    await page.get_by_role("button", name="Unblock").click()
    await page.get_by_text("The key is unblocked.").wait_for()
    assert await chat(http, gateway, raw) == 200

    # Edited: the alias and the limit change, the budget is cleared.
    await page.get_by_role("link", name="Edit").click()
    await page.get_by_label("Alias").fill("browser-renamed")
    await page.get_by_label("Max budget ($)").fill("")
    await page.get_by_label("Requests a minute (rpm)").fill("abc")
    await page.get_by_role("button", name="Save").click()
    assert "RPM limit must be a whole number" in await page.locator("#form-error").inner_text()
    assert await page.get_by_label("Alias").input_value() == "browser-renamed"  # what was typed, kept
    await page.get_by_label("Requests a minute (rpm)").fill("1200")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    async with http.get(f"{gateway.url}/key/info", params={"key": raw}, headers=ADMIN) as r:
        info = (await r.json())["info"]
    assert info["key_alias"] == "browser-renamed" and info["rpm_limit"] == 1200 and info["max_budget"] is None
    assert info["tpm_limit"] == 100000 and info["models"] == ["priced"]  # untouched fields stay

    # Regenerated with a grace period: both values work until it ends.
    await page.get_by_label("Grace period").fill("1h")
    await page.get_by_role("button", name="Regenerate").click()
    await page.get_by_role("heading", name="Key regenerated").wait_for()
    fresh = await page.locator("#new-key").input_value()
    assert fresh != raw and await chat(http, gateway, fresh) == 200 and await chat(http, gateway, raw) == 200
    await page.get_by_role("link", name="Go to the key").click()

    # Deleted: gone from the list, its chat refused.
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The key is deleted.").wait_for()
    assert await page.locator("#keys tbody tr", has_text="browser-renamed").count() == 0
    assert await chat(http, gateway, fresh) == 401
    await context.close()


async def test_an_alias_holding_a_script_shows_as_text(gateway: Gateway, browser: Any,
                                                       http: aiohttp.ClientSession) -> None:
    alias = "<script>alert('xss')</script><img src=x onerror=alert(1)>"
    async with http.post(f"{gateway.url}/key/generate", headers=ADMIN,
                         json={"key_alias": alias, "metadata": {"note": "<b>bold?</b>"}}) as r:
        made = await r.json()
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.dismiss())))
    await sign_in(page, f"{gateway.url}/ui", MASTER)
    await page.goto(f"{gateway.url}/ui/keys?q=xss")
    assert await page.locator("#keys a.alias").inner_text() == alias
    await page.goto(f"{gateway.url}/ui/keys/{made['token_id']}")
    assert await page.locator("h1 .alias").inner_text() == alias
    assert "<b>bold?</b>" in await page.locator("pre.json").inner_text()
    assert dialogs == [] and await page.locator("img[src=x]").count() == 0


async def test_the_ui_under_a_prefix_stays_under_it(gateway: Gateway, browser: Any,
                                                    http: aiohttp.ClientSession) -> None:
    for n in range(3):
        async with http.post(f"{gateway.url}/key/generate", headers=ADMIN, json={"key_alias": f"prefixed-{n}"}) as r:
            raw = (await r.json())["key"]
        assert await chat(http, gateway, raw, "priced" if n else "cheap") == 200
    ui = f"{gateway.url}{PREFIX}/ui"
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(ui)
    assert page.url == f"{ui}/login"
    await sign_in(page, ui, MASTER)
    await page.get_by_role("link", name="Spend").click()
    await page.wait_for_url(f"{ui}/spend")
    await page.locator("#total-spend").wait_for()
    await page.get_by_label("Group by", exact=True).select_option("api_key")  # submits itself
    await page.wait_for_url(f"{ui}/spend?**by=api_key**")
    await page.locator("#top-spenders", has_text="prefixed-").wait_for(timeout=PATIENCE_MS)
    assert await page.locator("#top-spenders tbody tr").first.inner_text() != ""
    assert "search-app" in await page.locator("#top-spenders tbody tr").first.inner_text()  # the biggest first
    assert await page.locator(".chart rect").count() >= HISTORY_DAYS
    await shot(page, "spend")
    await page.get_by_role("link", name="Models").click()
    await page.wait_for_url(f"{ui}/models")
    assert await page.locator("#models tbody tr").count() == 2
    await shot(page, "models")
    await page.get_by_role("link", name="Keys").click()
    await page.wait_for_url(f"{ui}/keys")
    await shot(page, "keys")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{ui}/login?signed_out=1")
    await page.goto(f"{ui}/keys")
    assert page.url == f"{ui}/login"
    assert requested and all(url.startswith(f"{ui}") for url in requested), requested


async def test_a_key_that_is_not_an_admins_sees_its_own_key_spend_and_models(gateway: Gateway, browser: Any,
                                                                            http: aiohttp.ClientSession) -> None:
    async with http.post(f"{gateway.url}/key/generate", headers=ADMIN,
                         json={"key_alias": "mine-only", "models": ["cheap"]}) as r:
        raw = (await r.json())["key"]
    async with http.post(f"{gateway.url}/key/generate", headers=ADMIN, json={"key_alias": "not-mine"}) as r:
        await r.read()
    assert await chat(http, gateway, raw, "cheap") == 200
    ui = f"{gateway.url}/ui"
    page = await browser.new_page()
    await sign_in(page, ui, raw)
    assert await page.locator("#keys tbody tr").count() == 1
    assert await page.locator("#keys a.alias").inner_text() == "mine-only"
    assert await page.get_by_role("link", name="Create a key").count() == 0
    await page.get_by_role("link", name="Models").click()
    assert [await c.inner_text() for c in await page.locator("#models tbody strong").all()] == ["cheap"]
    await page.get_by_role("link", name="Spend").click()
    await page.get_by_role("heading", name="Spend of your key").wait_for()
    await page.locator("#top-spenders", has_text="cheap").wait_for(timeout=PATIENCE_MS)


async def key_state(http: aiohttp.ClientSession, gw: Gateway, alias: str) -> tuple[int, bool]:
    """How many keys carry `alias`, and whether any of them is blocked."""
    async with http.get(f"{gw.url}/key/list", params={"key_alias": alias, "return_full_object": "true"},
                        headers=ADMIN) as r:
        found = await r.json()
    return found["total_count"], any(key.get("blocked") for key in found["keys"])


@asynccontextmanager
async def attacker(block_url: str, create_url: str) -> AsyncIterator[int]:
    """A page on another port that, once loaded, fetches a key's creation then posts a form blocking a key,
    neither with a CSRF token; the port it is served on."""
    html = f"""<!doctype html><title>Elsewhere</title>
        <form method="post" action="{block_url}"><input type="hidden" name="reason" value="forged"></form>
        <script>
          fetch("{create_url}", {{method: "POST", mode: "no-cors", credentials: "include",
                                  body: new URLSearchParams({{key_alias: "csrf-elsewhere"}})}})
            .finally(() => document.forms[0].submit());
        </script>"""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


async def signed_in_page(browser: Any, ui: str) -> tuple[Any, Any]:
    """A context of its own (its own cookies) and a page in it signed in as the admin, accepting every
    confirmation."""
    context = await browser.new_context()
    page = await context.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await sign_in(page, ui, MASTER)
    return context, page


async def new_key(http: aiohttp.ClientSession, gw: Gateway, alias: str) -> str:
    """A key made through the JSON API; its id in the UI's addresses."""
    async with http.post(f"{gw.url}/key/generate", headers=ADMIN, json={"key_alias": alias}) as r:
        return str((await r.json())["token_id"])


async def test_a_form_posted_without_its_csrf_token_changes_nothing(gateway: Gateway, browser: Any,
                                                                    http: aiohttp.ClientSession) -> None:
    target = await new_key(http, gateway, "csrf-target")
    ui = f"{gateway.url}/ui"
    context, page = await signed_in_page(browser, ui)

    # The create form with its hidden token taken out of the page: refused, on the UI's own page.
    await page.goto(f"{ui}/keys/new")
    await page.get_by_label("Alias").fill("csrf-removed")
    create = page.get_by_role("button", name="Create key")
    await create.evaluate("button => button.form.querySelector('input[name=csrf]').remove()")
    async with page.expect_navigation() as refused:
        await create.click()
    assert (await refused.value).status == 403
    assert await page.get_by_role("heading", name="Refused").count() == 1
    assert "CSRF token is missing or wrong" in await page.get_by_role("alert").inner_text()
    assert await key_state(http, gateway, "csrf-removed") == (0, False)

    # The block form with its token altered by one character.
    await page.goto(f"{ui}/keys/{target}")
    block = page.get_by_role("button", name="Block")
    await block.evaluate("button => { const field = button.form.querySelector('input[name=csrf]');"
                         " field.value = field.value.slice(0, -1) + (field.value.endsWith('A') ? 'B' : 'A'); }")
    async with page.expect_navigation() as refused:
        await block.click()
    assert (await refused.value).status == 403
    assert "CSRF token is missing or wrong" in await page.get_by_role("alert").inner_text()
    assert await key_state(http, gateway, "csrf-target") == (1, False)

    # A script on the page posts with the session's cookie but without the token.
    status, text = await page.evaluate(
        "async url => { const r = await fetch(url, {method: 'POST', body: new URLSearchParams("
        "{key_alias: 'csrf-fetched'})}); return [r.status, await r.text()]; }", f"{ui}/keys/new")
    assert status == 403 and "CSRF token is missing or wrong" in text
    assert await key_state(http, gateway, "csrf-fetched") == (0, False)

    # The form, untouched, goes through: the session was not what failed.
    await page.goto(f"{ui}/keys/{target}")
    await page.get_by_role("button", name="Block").click()
    await page.get_by_text("The key is blocked").wait_for()
    assert await key_state(http, gateway, "csrf-target") == (1, True)
    await context.close()


async def test_a_post_from_another_page_changes_nothing(gateway: Gateway, browser: Any,
                                                        http: aiohttp.ClientSession) -> None:
    """Pages elsewhere post a form and a fetch at the gateway while the admin is signed in. From another port
    of the same host (the same site to a browser) the session's cookie goes along and the missing token
    refuses both; from another site (localhost) the cookie stays home (SameSite=Strict) and the form lands on
    the sign-in page. Either way the fetch's answer is withheld from that page (Cross-Origin-Resource-Policy)."""
    target = await new_key(http, gateway, "csrf-cross-target")
    ui = f"{gateway.url}/ui"
    context, page = await signed_in_page(browser, ui)
    answered: list[tuple[str, int]] = []
    withheld: list[tuple[str, str]] = []
    page.on("response", lambda response: answered.append((f"{response.request.method} {response.url}",
                                                           response.status)))
    page.on("requestfailed", lambda request: withheld.append((f"{request.method} {request.url}",
                                                              request.failure or "")))
    block_url, create_url = f"{ui}/keys/{target}/block", f"{ui}/keys/new"
    async with attacker(block_url, create_url) as port:
        for host, status, landing in (("127.0.0.1", 403, "Refused"), ("localhost", 303, "Sign in")):
            answered.clear()
            withheld.clear()
            await page.goto(f"http://{host}:{port}/")
            await page.wait_for_url(block_url if status == 403 else f"{ui}/login")
            await page.get_by_role("heading", name=landing).wait_for()
            assert (f"POST {block_url}", status) in answered, host
            # Chromium names the reason (".NotSameOrigin" today); that it blocked the answer is what counts.
            # (A page's favicon may be aborted by the navigation the form makes: only the posts matter.)
            posts = [(url, reason.startswith("net::ERR_BLOCKED_BY_RESPONSE")) for url, reason in withheld
                     if url.startswith("POST ")]
            assert posts == [(f"POST {create_url}", True)], (host, withheld)
    assert await key_state(http, gateway, "csrf-cross-target") == (1, False)
    assert await key_state(http, gateway, "csrf-elsewhere") == (0, False)
    await page.goto(f"{ui}/keys")  # still signed in
    assert page.url == f"{ui}/keys"
    await context.close()
