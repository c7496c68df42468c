"""The admin UI's organizations, access groups, stored models, credentials and single sign-on in a real
browser: Debian's chromium driven by Playwright (no browser download), over a running gateway, a fake
upstream and a fake OpenID Connect provider on 127.0.0.1. Screenshots land in test-artifacts/ui/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.fake_oidc import FakeOidc
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment
from tests.test_ui_browser import ADMIN, CHROMIUM, MASTER, PREFIX, shot, sign_in

pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="Debian's chromium is not installed (apt-get install chromium)")
SECRET = "sk-browser-typed-secret-31337"
XSS = "<script>alert('xss')</script><img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def oidc() -> Iterator[FakeOidc]:
    fake = FakeOidc().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream, oidc: FakeOidc) -> Iterator[Gateway]:
    config = {"model_list": [deployment("priced", upstream.base_url), deployment("cheap", upstream.base_url)],
              "general_settings": {"master_key": MASTER, "store_model_in_db": True},
              "gateway_settings": {"path_prefixes": [PREFIX]}}
    with Gateway(config, env=oidc.env(PROXY_ADMIN_ID="grace")) as gw:
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


async def admin_page(browser: Any, ui: str) -> tuple[Any, Any, list[str]]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.accept())))
    await sign_in(page, ui, MASTER)
    return context, page, dialogs


async def get(http: aiohttp.ClientSession, gw: Gateway, path: str, **params: str) -> Any:
    async with http.get(f"{gw.url}{path}", params=params, headers=ADMIN) as r:
        return r.status, await r.json()


async def test_an_organization_made_filled_and_deleted(gateway: Gateway, browser: Any,
                                                       http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    context, page, dialogs = await admin_page(browser, ui)
    await page.get_by_role("link", name="Organizations").click()
    await page.get_by_role("link", name="Create an organization").click()
    await page.get_by_label("Organization id").fill("org-browser")
    await page.get_by_label("Alias").fill(XSS)
    await page.get_by_label("priced").check()
    await page.get_by_label("Max budget ($)").fill("120")
    await page.get_by_label("Budget resets every").fill("30d")
    await shot(page, "create-organization")
    await page.get_by_role("button", name="Create organization").click()
    await page.get_by_text("The organization is created.").wait_for()
    assert await page.locator("h1 span.alias").inner_text() == XSS  # shown as text, never run
    assert "$120.00" in await page.locator("#org-spend + p").inner_text()

    await page.get_by_label("User id or email").fill("lin@example.com")
    await page.locator("#add-member select[name=role]").select_option("org_admin")
    await page.get_by_role("button", name="Add member").click()
    await page.get_by_text("The member is added.").wait_for()
    row = page.locator("#members tbody tr").first
    await row.locator("select[name=role]").select_option("internal_user")  # submits itself
    await page.get_by_text("The member's role is changed.").wait_for()
    status, org = await get(http, gateway, "/organization/info", organization_id="org-browser")
    assert status == 200 and org["members"][0]["user_role"] == "internal_user"
    assert org["litellm_budget_table"]["max_budget"] == 120
    await shot(page, "organization")

    await page.get_by_role("link", name="Edit").click()
    await page.get_by_label("Alias").fill("Browser org")
    await page.get_by_label("Requests a minute (rpm)").fill("many")
    await page.get_by_role("button", name="Save").click()
    assert "RPM limit must be a whole number" in await page.locator("#form-error").inner_text()
    await page.get_by_label("Requests a minute (rpm)").fill("90")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    status, org = await get(http, gateway, "/organization/info", organization_id="org-browser")
    assert org["organization_alias"] == "Browser org" and org["litellm_budget_table"]["rpm_limit"] == 90

    await page.get_by_role("navigation").get_by_role("link", name="Organizations").click()
    await page.get_by_placeholder("Search id or alias").fill("browser")
    await page.get_by_role("button", name="Search").click()
    await page.locator("#organizations tbody tr", has_text="Browser org").wait_for()
    await shot(page, "organizations")
    await page.get_by_role("link", name="Browser org").click()
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The organization is deleted").wait_for()
    assert any("Delete this organization" in d for d in dialogs) and not any("xss" in d for d in dialogs)
    status, _ = await get(http, gateway, "/organization/info", organization_id="org-browser")
    assert status == 404
    await context.close()


async def test_an_access_group_made_changed_and_deleted(gateway: Gateway, browser: Any,
                                                        http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    context, page, dialogs = await admin_page(browser, ui)
    await page.get_by_role("link", name="Access groups").click()
    await page.get_by_role("link", name="Create an access group").click()
    await page.get_by_label("Name", exact=True).fill("browser-group")
    await page.get_by_label("Description").fill(XSS)
    await page.get_by_placeholder("Filter models").fill("pri")
    assert not await page.get_by_label("cheap").is_visible()
    await page.get_by_label("priced").check()
    await page.get_by_role("button", name="Create access group").click()
    await page.get_by_text("The access group is created.").wait_for()
    row = page.locator("#access-groups tbody tr", has_text="browser-group")
    assert XSS in await row.inner_text() and "priced" in await row.inner_text()
    await shot(page, "access-groups")
    await row.get_by_role("link", name="Edit").click()
    await page.get_by_label("cheap").check()
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()
    status, groups = await get(http, gateway, "/v1/unified_access_group")
    [group] = [g for g in groups if g["access_group_name"] == "browser-group"]
    assert group["access_model_names"] == ["priced", "cheap"] and group["description"] == XSS
    await page.locator("#access-groups tbody tr", has_text="browser-group").get_by_role("link", name="Edit").click()
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The access group is deleted.").wait_for()
    assert any("Delete the access group browser-group" in d for d in dialogs)
    await context.close()


async def test_a_model_and_a_credential_keep_their_secrets(gateway: Gateway, browser: Any, upstream: FakeUpstream,
                                                           http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    context, page, _ = await admin_page(browser, ui)
    await page.get_by_role("link", name="Credentials").click()
    await page.get_by_role("link", name="Create a credential").click()
    await page.get_by_label("Name", exact=True).fill("browser-cred")
    await page.get_by_label("API key").fill(SECRET)
    await page.get_by_label("API base").fill(upstream.base_url)
    await page.get_by_role("button", name="Create credential").click()
    await page.get_by_text("The credential is created.").wait_for()
    assert SECRET not in await page.content()
    assert "********" in await page.locator("#credentials tbody tr", has_text="browser-cred").inner_text()
    await shot(page, "credentials")

    await page.get_by_role("link", name="Models").click()
    await page.get_by_role("link", name="Add a model").click()
    await page.get_by_label("Model name").fill("browser-model")
    await page.get_by_label("Provider/model").fill("openai/gpt-4o-mini")
    await page.locator("select[name=litellm_credential_name]").select_option("browser-cred")
    await page.get_by_label("Requests a minute (rpm)").fill("60")
    await page.get_by_label("model_info (a JSON object)").fill('{"owner": "browser"}')
    await shot(page, "add-model")
    await page.get_by_role("button", name="Add model").click()
    await page.get_by_text("The model is added and served.").wait_for()
    async with http.post(f"{gateway.url}/v1/chat/completions", headers=ADMIN, json={
            "model": "browser-model", "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 200, await r.text()
    assert upstream.seen[-1].headers["Authorization"] == f"Bearer {SECRET}"
    await shot(page, "models-with-stored")

    await page.locator("#models tbody tr", has_text="browser-model").get_by_role("link", name="store · edit").click()
    assert await page.locator("input[name=api_key]").input_value() == ""
    await page.locator("input[name=api_key]").fill("sk-model-own-key-777")
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved; the model is served as changed.").wait_for()
    assert "sk-model-own-key-777" not in await page.content()
    await page.locator("#models tbody tr", has_text="browser-model").get_by_role("link", name="store · edit").click()
    assert await page.locator("#key-set").is_visible() and "sk-model-own-key-777" not in await page.content()
    await page.get_by_role("button", name="Delete").click()
    await page.get_by_text("The model is deleted.").wait_for()
    assert await page.locator("#models tbody tr", has_text="browser-model").count() == 0
    await context.close()


async def test_sso_sign_in_end_to_end(gateway: Gateway, browser: Any, oidc: FakeOidc,
                                      http: aiohttp.ClientSession) -> None:
    for ui, who, admin in ((f"{gateway.url}/ui", "hal", False), (f"{gateway.url}{PREFIX}/ui", "grace", True)):
        oidc.next_claims = {"preferred_username": who, "email": f"{who}@example.com"}
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await page.goto(f"{ui}/keys")
        assert page.url == f"{ui}/login"
        await shot(page, "sign-in-with-sso")
        await page.get_by_role("link", name="Sign in with single sign-on").click()
        await page.wait_for_url(f"{ui}/keys")  # to the provider, back through /sso/callback, to the keys
        assert oidc.authorize_queries[-1]["code_challenge_method"] == "S256"
        nav = await page.locator("header nav").inner_text()
        assert ("Organizations" in nav) is admin
        assert ("proxy_admin" if admin else "internal_user_viewer") in await page.locator(".who").inner_text()
        await shot(page, f"signed-in-by-sso-{'admin' if admin else 'user'}")
        await page.goto(f"{ui}/organizations")
        assert (await page.locator("h1").inner_text()) == ("Organizations" if admin else "Admins only")
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{ui}/login?signed_out=1")
        await context.close()
    status, user = await get(http, gateway, "/user/info", user_id="grace")
    assert status == 200 and user["user_info"]["user_role"] == "proxy_admin"


async def test_a_forged_sso_answer_is_a_page_not_a_session(gateway: Gateway, browser: Any, oidc: FakeOidc) -> None:
    ui = f"{gateway.url}/ui"
    oidc.next_claims = {"preferred_username": "ivan"}
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/sso/callback?code=made-up&state=made-up")
    assert await page.locator("h1").inner_text() == "Sign-in not recognised"
    await shot(page, "sso-refused")
    await page.goto(f"{ui}/keys")
    assert page.url == f"{ui}/login"
    await page.close()
