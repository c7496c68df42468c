"""The admin UI's teams, users, end users, budgets, request log, health checks, settings and error pages in a
real browser: Debian's chromium driven by Playwright (no browser download), over a running gateway and a fake
upstream, each page used as a person would and its result checked through the JSON API or a chat. Screenshots
land in test-artifacts/ui/."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeUpstream
from tests.harness import ROOT, Gateway, deployment, spend_record

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")
MASTER = "sk-ui-browser-admin-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
SHOTS = ROOT / "test-artifacts" / "ui"
PATIENCE_MS = 15_000


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("priced", upstream.base_url, input_cost_per_token=1e-3,
                                        output_cost_per_token=2e-3),
                             deployment("offline", "http://127.0.0.1:9/v1")],
              "general_settings": {"master_key": MASTER},
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


async def new_page(browser: Any) -> Any:
    """A page that accepts every confirmation, as a person clicking OK."""
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    return page


async def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Any, ui: str, password: str) -> None:
    await page.goto(f"{ui}/keys")
    await page.get_by_label("Password, master key or virtual key").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{ui}/keys")


async def nav(page: Any, name: str) -> None:
    await page.locator("header nav").get_by_role("link", name=name, exact=True).click()


async def api(http: aiohttp.ClientSession, gw: Gateway, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> Any:
    async with http.request("GET" if body is None else "POST", f"{gw.url}{path}", json=body, params=params,
                            headers=ADMIN) as r:
        return r.status, await r.json()


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, **extra: Any) -> tuple[int, str]:
    async with http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": "priced", "messages": [{"role": "user", "content": "hello"}], **extra}) as r:
        await r.read()
        return r.status, r.headers.get("x-litellm-call-id", "")


async def test_a_team_is_made_staffed_blocked_edited_and_deleted(gateway: Gateway, browser: Any,
                                                                 http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    page = await new_page(browser)
    await sign_in(page, ui, MASTER)
    await nav(page, "Teams")
    await page.get_by_role("link", name="Create a team").click()
    await page.get_by_label("Team id").fill("browser-team")
    await page.get_by_label("Alias").fill("Browser <Team>")
    await page.get_by_label("priced").check()
    await page.get_by_label("Max budget ($)").fill("40")
    await page.get_by_label("Requests a minute (rpm)").fill("300")
    await page.get_by_role("button", name="Create team").click()
    await page.get_by_text("The team is created.").wait_for()
    assert await page.locator("h1 span.alias").inner_text() == "Browser <Team>"

    await page.get_by_label("User id or email").fill("member@example.com")
    await page.get_by_label("as").select_option("admin")
    await page.get_by_role("button", name="Add member").click()
    await page.get_by_text("The member is added.").wait_for()
    row = page.locator("#members tbody tr", has_text="member@example.com")
    assert "admin" in await row.inner_text()

    status, key = await api(http, gateway, "/key/generate", {"team_id": "browser-team", "key_alias": "team-app"})
    assert (await chat(http, gateway, key["key"]))[0] == 200
    await page.reload()
    assert await page.locator("#keys tbody tr", has_text="team-app").count() == 1
    await shot(page, "team")
    await page.get_by_role("button", name="Block").click()
    await page.get_by_text("The team is blocked").wait_for()
    assert (await chat(http, gateway, key["key"]))[0] in (401, 403)
    await page.get_by_role("button", name="Unblock").click()
    await page.get_by_text("The team is unblocked.").wait_for()
    assert (await chat(http, gateway, key["key"]))[0] == 200

    await page.get_by_role("link", name="Edit").click()
    await page.get_by_label("Alias").fill("Browser Team, renamed")
    await page.get_by_label("Requests a minute (rpm)").fill("many")
    await page.get_by_role("button", name="Save").click()
    assert "RPM limit must be a whole number" in await page.locator("#form-error").inner_text()
    await page.get_by_label("Requests a minute (rpm)").fill("")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    _, info = await api(http, gateway, "/team/info", params={"team_id": "browser-team"})
    assert info["team_info"]["team_alias"] == "Browser Team, renamed" and info["team_info"]["rpm_limit"] is None

    await nav(page, "Teams")
    await page.get_by_label("Search teams").fill("RENAMED")
    await page.get_by_role("button", name="Search").click()
    await page.locator("#teams tbody tr", has_text="Browser Team, renamed").wait_for()
    await shot(page, "teams")
    await page.get_by_role("link", name="Browser Team, renamed").click()
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The team is deleted").wait_for()
    status, _ = await api(http, gateway, "/team/info", params={"team_id": "browser-team"})
    assert status == 404 and (await chat(http, gateway, key["key"]))[0] == 401


async def test_a_user_is_made_with_a_key_edited_and_deleted(gateway: Gateway, browser: Any,
                                                            http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    page = await new_page(browser)
    await sign_in(page, ui, MASTER)
    await nav(page, "Users")
    await page.get_by_role("link", name="Create a user").click()
    await page.get_by_label("User id").fill("browser-user")
    await page.get_by_label("Email").fill("browser-user@example.com")
    await page.get_by_label("Max budget ($)").fill("12")
    await page.get_by_label("The key’s alias").fill("browser-user-key")
    await page.get_by_role("button", name="Create user").click()
    await page.get_by_role("heading", name="User created").wait_for()
    raw = await page.locator("#new-key").input_value()
    assert (await chat(http, gateway, raw))[0] == 200
    await page.get_by_role("link", name="browser-user", exact=True).click()
    assert await page.locator("#keys tbody tr", has_text="browser-user-key").count() == 1
    await shot(page, "user")

    await page.get_by_role("link", name="Edit").click()
    await page.get_by_label("Role").select_option("proxy_admin")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    _, info = await api(http, gateway, "/user/info", params={"user_id": "browser-user"})
    assert info["user_info"]["user_role"] == "proxy_admin" and info["user_info"]["max_budget"] == 12

    await nav(page, "Users")
    row = page.locator("#users tbody tr", has_text="browser-user@example.com")
    assert "proxy_admin" in await row.inner_text()
    await shot(page, "users")
    await row.get_by_role("link", name="browser-user", exact=True).click()
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The user is deleted").wait_for()
    assert (await chat(http, gateway, raw))[0] == 401


async def test_an_end_user_is_blocked_and_a_budget_made(gateway: Gateway, browser: Any,
                                                        http: aiohttp.ClientSession) -> None:
    _, key = await api(http, gateway, "/key/generate", {"key_alias": "customer-app"})
    status, call = await chat(http, gateway, key["key"], user="browser-customer")
    assert status == 200
    await spend_record(http, gateway, call, ADMIN)
    ui = f"{gateway.url}/ui"
    page = await new_page(browser)
    await sign_in(page, ui, MASTER)
    await nav(page, "End users")
    await page.get_by_label("Search end users").fill("browser-cust")
    await page.get_by_role("button", name="Search").click()
    row = page.locator("#end-users tbody tr", has_text="browser-customer")
    await row.get_by_role("button", name="Block").click()
    await page.get_by_text("Blocked: requests naming this end user are refused.").wait_for()
    assert "blocked" in await page.locator("#end-users tbody tr", has_text="browser-customer").inner_text()
    assert (await chat(http, gateway, key["key"], user="browser-customer"))[0] in (400, 403)
    await shot(page, "end-users")
    await page.locator("#end-users tbody tr", has_text="browser-customer").get_by_role("button",
                                                                                      name="Unblock").click()
    await page.get_by_text("Unblocked.").wait_for()
    assert (await chat(http, gateway, key["key"], user="browser-customer"))[0] == 200

    await nav(page, "Budgets")
    await page.get_by_role("link", name="Create a budget").click()
    await page.get_by_label("Budget id").fill("browser-budget")
    await page.get_by_label("Max budget ($)").fill("9.5")
    await page.get_by_label("Resets every").fill("7d")
    await page.get_by_role("button", name="Create budget").click()
    await page.get_by_text("The budget is created.").wait_for()
    await page.get_by_label("Requests a minute (rpm)").fill("30")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    _, found = await api(http, gateway, "/budget/info", {"budgets": ["browser-budget"]})
    assert found[0]["max_budget"] == 9.5 and found[0]["rpm_limit"] == 30 and found[0]["budget_duration"] == "7d"
    await nav(page, "Budgets")
    assert "$9.50" in await page.locator("#budgets tbody tr", has_text="browser-budget").inner_text()
    await shot(page, "budgets")


async def test_the_request_log_and_a_requests_page(gateway: Gateway, browser: Any,
                                                   http: aiohttp.ClientSession) -> None:
    _, key = await api(http, gateway, "/key/generate", {"key_alias": "logged-app"})
    calls = [(await chat(http, gateway, key["key"]))[1] for _ in range(3)]
    failed = (await chat(http, gateway, key["key"], fake={"status": 500, "body": "the upstream fell over"}))[1]
    for call in [*calls, failed]:
        await spend_record(http, gateway, call, ADMIN)
    ui = f"{gateway.url}{PREFIX}/ui"  # under the prefix, as behind Traefik
    page = await new_page(browser)
    await sign_in(page, ui, MASTER)
    await nav(page, "Requests")
    await page.get_by_label("Key").fill("logged-app")
    await page.get_by_role("button", name="Show").click()
    rows = page.locator("#logs tbody tr")
    await rows.first.wait_for()
    assert await rows.count() == 4 and "failure" in await rows.first.inner_text()
    await page.get_by_label("Status").select_option("failure")  # submits itself
    await page.wait_for_url("**status=failure**")
    assert await rows.count() == 1
    await shot(page, "logs")
    await rows.first.get_by_role("link").last.click()
    await page.locator("#log-error").wait_for()
    assert "the upstream fell over" in await page.locator("#log-error").inner_text()
    assert page.url.startswith(f"{ui}/logs/view?id={failed}")
    await page.go_back()
    await page.get_by_label("Status").select_option("success")
    await page.wait_for_url("**status=success**")
    await rows.first.get_by_role("link").last.click()
    await page.locator("#log-tokens").wait_for()
    record = await spend_record(http, gateway, calls[-1], ADMIN)
    tokens = await page.locator("#log-tokens").inner_text()
    assert f"Prompt\n{record['prompt_tokens']}" in tokens and "of which reasoning" in tokens
    assert (await page.locator("#log-cost").inner_text()).startswith("$0.0")
    await shot(page, "log")


async def test_a_health_check_from_the_models_page(gateway: Gateway, browser: Any) -> None:
    ui = f"{gateway.url}/ui"
    page = await new_page(browser)
    await sign_in(page, ui, MASTER)
    await nav(page, "Models")
    await page.get_by_role("button", name="Check every deployment").click()
    summary = page.locator("#health-summary")
    await summary.wait_for(timeout=PATIENCE_MS)
    assert "1 healthy, 1 unhealthy" in await summary.inner_text()
    offline = page.locator("#models tbody tr", has_text="offline")
    assert "unreachable" in await offline.inner_text()
    await page.locator("#models tbody tr", has_text="priced").get_by_role("button", name="Check").click()
    await page.get_by_text("Checked 1 deployment").wait_for()
    assert "healthy" in await page.locator("#models tbody tr", has_text="priced").inner_text()
    await shot(page, "models-health")


async def test_settings_show_no_secret(gateway: Gateway, browser: Any) -> None:
    ui = f"{gateway.url}/ui"
    page = await new_page(browser)
    await sign_in(page, ui, MASTER)
    await nav(page, "Settings")
    await page.locator("#section-model_list").wait_for()
    text = await page.locator("main").inner_text()
    assert MASTER not in text and "sk-upstream-secret" not in text
    assert "master_key: ••••••••" in text and "model_name: offline" in text
    await shot(page, "settings")


async def test_a_plain_key_reaches_no_admin_page_and_errors_are_pages(gateway: Gateway, browser: Any,
                                                                      http: aiohttp.ClientSession) -> None:
    _, key = await api(http, gateway, "/key/generate", {"key_alias": "not-an-admin"})
    ui = f"{gateway.url}{PREFIX}/ui"
    page = await new_page(browser)
    await page.goto(f"{ui}/no/such/page")
    assert await page.get_by_role("heading", name="Not found").count() == 1
    await sign_in(page, ui, key["key"])
    nav = await page.locator("header nav").inner_text()
    assert "Teams" not in nav and "Settings" not in nav and "Requests" in nav
    for path in ("teams", "users", "end-users", "budgets", "settings", "teams/new"):
        response = await page.goto(f"{ui}/{path}")
        assert response.status == 403, path
        assert await page.get_by_role("heading", name="Admins only").count() == 1, path
    response = await page.goto(f"{ui}/keys/{'0' * 64}")
    assert response.status == 404 and await page.get_by_role("heading", name="No such key").count() == 1
    await page.get_by_role("link", name="Back to the keys").click()
    await page.wait_for_url(f"{ui}/keys")
