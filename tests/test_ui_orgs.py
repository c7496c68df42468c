"""The admin UI's organizations, access groups, stored models and credentials pages over plain HTTP, against
a running gateway: each form does what the JSON API's own call does (checked through that API), a name
holding markup is shown as text, a secret typed into a form is never in a page, a post without its CSRF
token is refused, and no page here is a plain key's. The browser runs are in test_ui_browser_orgs.py."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment
from tests.test_ui_admin import ADMIN, MASTER, api, follow, post, text_of
from tests.ui_session import browser_like, csrf_of, page, sign_in

PREFIX = "/olla/litellm"
MODEL_SECRET = "sk-typed-into-the-model-form-9137"
CREDENTIAL_SECRET = "sk-typed-into-the-credential-form-2468"
CONFIG_SECRET = "sk-config-credential-secret-55"
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("priced", upstream.base_url),
                             deployment("cheap", upstream.base_url, model_info={"access_groups": ["cfg-group"]})],
              "general_settings": {"master_key": MASTER, "store_model_in_db": True},
              "credential_list": [{"credential_name": "from-config", "credential_values": {
                  "api_key": CONFIG_SECRET, "api_base": "https://api.example.com/v1"}}],
              "gateway_settings": {"path_prefixes": [PREFIX]}}
    with Gateway(config) as gw:
        yield gw


async def test_an_organization_from_creation_to_deletion(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html, _ = await post(browser, f"{ui}/organizations/new", f"{ui}/organizations/new",
                                     {"organization_alias": XSS, "max_budget": "lots"})
        assert status == 400 and "Max budget must be a number of dollars" in html
        assert XSS not in html and "&lt;script&gt;" in html
        status, _, location = await post(browser, f"{ui}/organizations/new", f"{ui}/organizations/new", {
            "organization_id": "org/eu 1", "organization_alias": XSS, "models": ["priced"], "max_budget": "75",
            "budget_duration": "30d", "rpm_limit": "100", "metadata": '{"region": "eu"}'})
        assert status == 303 and URL(location).path == "/ui/organizations/view"
        assert URL(location).query == {"id": "org/eu 1", "done": "created"}
        html = await follow(browser, location)
        assert "The organization is created." in html and "$75.00" in html
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        info = await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "org/eu 1"})
        assert info["organization_alias"] == XSS and info["models"] == ["priced"]
        assert info["litellm_budget_table"]["max_budget"] == 75 and info["litellm_budget_table"]["rpm_limit"] == 100
        assert info["metadata"] == {"region": "eu"}
        view = str(URL(location).without_query_params("done"))
        ref = quote("org/eu 1", safe="")

        # A team joins by its organization id and is listed on the organization's page.
        await api(http, gateway, "/team/new", {"team_id": "eu-search", "team_alias": "EU search",
                                               "organization_id": "org/eu 1", "models": ["priced"]})
        html = await follow(browser, view)
        assert "EU search" in html and "Teams (1)" in html

        # Members: made a user on the way, as /organization/member_add does; a role changed; removed.
        status, _, location = await post(browser, f"{ui}/organizations/members/add?id={ref}", view,
                                         {"member": "ana@example.com", "role": "org_admin",
                                          "max_budget_in_organization": "12.5"})
        assert status == 303 and "done=member_added" in location
        status, html, _ = await post(browser, f"{ui}/organizations/members/add?id={ref}", view,
                                     {"member": "bo@example.com", "max_budget_in_organization": "plenty"})
        assert status == 400 and "Max budget must be a number of dollars" in html
        status, html, _ = await post(browser, f"{ui}/organizations/members/add?id={ref}", view,
                                     {"member": "ana@example.com", "role": "org_admin"})
        assert status == 400 and "is already a member" in html
        info = await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "org/eu 1"})
        [member] = info["members"]
        assert member["user_role"] == "org_admin"
        assert member["litellm_budget_table"]["max_budget"] == 12.5
        status, _, location = await post(browser, f"{ui}/organizations/members/change?id={ref}", view,
                                         {"user_id": member["user_id"], "role": "internal_user_viewer"})
        assert status == 303 and "done=member_changed" in location
        info = await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "org/eu 1"})
        assert info["members"][0]["user_role"] == "internal_user_viewer"
        status, _, location = await post(browser, f"{ui}/organizations/members/remove?id={ref}", view,
                                         {"user_id": member["user_id"]})
        assert status == 303 and "done=member_removed" in location
        info = await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "org/eu 1"})
        assert info["members"] == []

        # Edit: only what changed; a field emptied is cleared.
        edit = f"{ui}/organizations/edit?id={ref}"
        status, html = await page(browser, edit)
        assert status == 200 and 'value="75.0"' in html
        status, _, location = await post(browser, edit, edit, {
            "organization_alias": "EU", "models": ["priced", "cheap"], "max_budget": "", "budget_duration": "30d",
            "rpm_limit": "100", "metadata": '{"region": "eu"}'})
        assert status == 303 and "done=updated" in location
        info = await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "org/eu 1"})
        assert info["organization_alias"] == "EU" and info["models"] == ["priced", "cheap"]
        assert info["litellm_budget_table"]["max_budget"] is None

        # Listed, searched, and deleted with its team.
        status, html = await page(browser, f"{ui}/organizations?q=eu")
        assert status == 200 and "1 organization match" in text_of(html)
        status, html = await page(browser, f"{ui}/organizations?q=nothing-like-it")
        assert "No organizations match." in html
        status, _, location = await post(browser, f"{ui}/organizations/delete?id={ref}", view, {})
        assert status == 303 and location.endswith("/ui/organizations?done=deleted")
    await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "org/eu 1"}, status=404)
    await api(http, gateway, "/team/info", method="GET", params={"team_id": "eu-search"}, status=404)


async def test_organizations_are_listed_a_page_at_a_time(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for n in range(30):
        await api(http, gateway, "/organization/new", {"organization_id": f"paged-{n:02}",
                                                       "organization_alias": f"Paged {n:02}"})
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/organizations?q=paged-&size=25")
        assert status == 200 and "30 organizations match · page 1 of 2" in text_of(html)
        assert "Paged 29" in html and "Paged 04" not in html and 'rel="next"' in html
        status, html = await page(browser, f"{ui}/organizations?q=paged-&size=25&page=2")
        assert "Paged 04" in html and "Paged 05" not in html and 'rel="prev"' in html


async def test_an_access_group_made_changed_and_deleted(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/access-groups")
        assert status == 200 and "cfg-group" in html  # config.yaml's, read-only
        status, html, _ = await post(browser, f"{ui}/access-groups/new", f"{ui}/access-groups/new", {
            "access_group_name": "cfg-group", "access_model_names": ["priced"]})
        assert status == 409 and "already exists" in html
        await api(http, gateway, "/team/new", {"team_id": "ag-team"})
        status, _, location = await post(browser, f"{ui}/access-groups/new", f"{ui}/access-groups/new", {
            "access_group_name": XSS, "description": "for search", "access_model_names": ["priced"],
            "assigned_team_ids": "ag-team"})
        assert status == 303 and location.endswith("/ui/access-groups?done=created")
        html = await follow(browser, location)
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        [group] = [g for g in await api(http, gateway, "/v1/unified_access_group", method="GET")
                   if g["access_group_name"] == XSS]
        assert group["access_model_names"] == ["priced"] and group["assigned_team_ids"] == ["ag-team"]
        listed = await api(http, gateway, "/access_group/list", method="GET")
        assert {"access_group": XSS, "model_names": ["priced"], "deployment_count": 1} in listed["access_groups"]

        edit = f"{ui}/access-groups/edit?id={group['access_group_id']}"
        status, html = await page(browser, edit)
        assert status == 200 and ">ag-team</textarea>" in html
        status, html, _ = await post(browser, edit, edit, {"access_group_name": "search-models",
                                                           "assigned_team_ids": "no-such-team"})
        assert status == 400 and "Unknown team ids: no-such-team" in html
        status, _, location = await post(browser, edit, edit, {"access_group_name": "search-models",
                                                               "access_model_names": ["priced", "cheap"]})
        assert status == 303 and "done=updated" in location
        changed = await api(http, gateway, f"/v1/unified_access_group/{group['access_group_id']}", method="GET")
        assert changed["access_group_name"] == "search-models"
        assert changed["access_model_names"] == ["priced", "cheap"] and changed["assigned_team_ids"] == []

        status, _, location = await post(browser, f"{ui}/access-groups/delete?id={group['access_group_id']}",
                                         edit, {})
        assert status == 303 and "done=deleted" in location
    await api(http, gateway, f"/v1/unified_access_group/{group['access_group_id']}", method="GET", status=404)


async def test_a_stored_model_added_edited_and_deleted(gateway: Gateway, http: aiohttp.ClientSession,
                                                       upstream: FakeUpstream) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/models")
        assert status == 200 and "Add a model" in html and "models/edit?id=" not in html  # config models: no form
        status, html, _ = await post(browser, f"{ui}/models/new", f"{ui}/models/new", {
            "model_name": "ui-model", "model": "openai/gpt-4o-mini", "api_base": upstream.base_url,
            "api_key": MODEL_SECRET, "rpm": "many"})
        assert status == 400 and "rpm must be a whole number" in html and MODEL_SECRET not in html
        status, html, _ = await post(browser, f"{ui}/models/new", f"{ui}/models/new", {
            "model_name": "ui-model", "model": "openai/gpt-4o-mini", "api_base": upstream.base_url,
            "api_key": MODEL_SECRET, "model_info": "[1]"})
        assert status == 400 and "model_info must be a JSON object" in html and MODEL_SECRET not in html
        status, _, location = await post(browser, f"{ui}/models/new", f"{ui}/models/new", {
            "model_name": "ui-model", "model": "openai/gpt-4o-mini", "api_base": upstream.base_url,
            "api_key": MODEL_SECRET, "rpm": "60", "model_info": '{"team": "search"}'})
        assert status == 303 and location.endswith("/ui/models?done=added")
        html = await follow(browser, location)
        assert "The model is added and served." in html and MODEL_SECRET not in html
        # Served at once, with the key typed into the form.
        async with http.post(f"{gateway.url}/v1/chat/completions", headers=ADMIN, json={
                "model": "ui-model", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
        assert upstream.seen[-1].headers["Authorization"] == f"Bearer {MODEL_SECRET}"

        info = await api(http, gateway, "/model/info", method="GET")
        [stored] = [m for m in info["data"] if m["model_name"] == "ui-model"]
        model_id = stored["model_info"]["id"]
        edit = f"{ui}/models/edit?id={model_id}"
        status, html = await page(browser, edit)
        assert status == 200 and MODEL_SECRET not in html and 'id="key-set"' in html
        assert '"team": "search"' in text_of(html)
        # Left empty, the key is kept; the rest changes.
        status, _, location = await post(browser, edit, edit, {
            "model_name": "ui-model-2", "model": "openai/gpt-4o-mini", "api_base": upstream.base_url, "api_key": "",
            "rpm": "", "model_info": '{"team": "search"}'})
        assert status == 303 and location.endswith("/ui/models?done=updated")
        async with http.post(f"{gateway.url}/v1/chat/completions", headers=ADMIN, json={
                "model": "ui-model-2", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
        assert upstream.seen[-1].headers["Authorization"] == f"Bearer {MODEL_SECRET}"
        status, html = await page(browser, f"{ui}/models")
        assert "ui-model-2" in html and f"models/edit?id={model_id}" in html

        status, _, location = await post(browser, f"{ui}/models/delete?id={model_id}", edit, {})
        assert status == 303 and location.endswith("/ui/models?done=deleted")
        status, html = await page(browser, edit)
        assert status == 404
        info = await api(http, gateway, "/model/info", method="GET")
        assert not [m for m in info["data"] if m["model_name"] == "ui-model-2"]


async def test_credentials_never_show_a_secret(gateway: Gateway, http: aiohttp.ClientSession,
                                               upstream: FakeUpstream) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/credentials")
        assert status == 200 and "from-config" in html and "config.yaml (read-only)" in html
        assert CONFIG_SECRET not in html and CONFIG_SECRET[:2] + "****" not in html
        assert "https://api.example.com/v1" in html
        status, html, _ = await post(browser, f"{ui}/credentials/new", f"{ui}/credentials/new", {
            "credential_name": "from-config", "api_key": CREDENTIAL_SECRET})
        assert status == 409 and "defined in config.yaml" in html and CREDENTIAL_SECRET not in html
        status, _, location = await post(browser, f"{ui}/credentials/new", f"{ui}/credentials/new", {
            "credential_name": "ui-cred", "display_name": XSS, "api_key": CREDENTIAL_SECRET,
            "api_base": upstream.base_url, "credential_info": '{"custom_llm_provider": "openai"}'})
        assert status == 303 and location.endswith("/ui/credentials?done=created")
        html = await follow(browser, location)
        assert CREDENTIAL_SECRET not in html and "********" in html and XSS not in html
        assert CREDENTIAL_SECRET[:2] + "****" not in html
        listed = await api(http, gateway, "/credentials", method="GET")
        [card] = [c for c in listed["credentials"] if c["credential_name"] == "ui-cred"]
        assert card["display_name"] == XSS and card["credential_info"] == {"custom_llm_provider": "openai"}

        # A model through the credential connects with its key.
        await api(http, gateway, "/model/new", {"model_name": "via-cred", "litellm_params": {
            "model": "openai/gpt-4o-mini", "litellm_credential_name": "ui-cred"}})
        async with http.post(f"{gateway.url}/v1/chat/completions", headers=ADMIN, json={
                "model": "via-cred", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
        assert upstream.seen[-1].headers["Authorization"] == f"Bearer {CREDENTIAL_SECRET}"

        edit = f"{ui}/credentials/edit?name=ui-cred"
        status, html = await page(browser, edit)
        assert status == 200 and CREDENTIAL_SECRET not in html and 'id="key-set"' in html
        status, _, location = await post(browser, edit, edit, {"display_name": "UI credential", "api_key": "",
                                                               "api_base": upstream.base_url})
        assert status == 303 and "done=updated" in location
        async with http.post(f"{gateway.url}/v1/chat/completions", headers=ADMIN, json={
                "model": "via-cred", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
        assert upstream.seen[-1].headers["Authorization"] == f"Bearer {CREDENTIAL_SECRET}"
        status, _, location = await post(browser, f"{ui}/credentials/delete?name=ui-cred", edit, {})
        assert status == 303 and "done=deleted" in location
    listed = await api(http, gateway, "/credentials", method="GET")
    assert "ui-cred" not in [c["credential_name"] for c in listed["credentials"]]


ADMIN_PAGES = ("organizations", "organizations/new", "access-groups", "access-groups/new", "credentials",
               "credentials/new", "models/new")
ADMIN_FORMS = ("organizations/new", "organizations/delete?id=kept-org", "organizations/members/add?id=kept-org",
               "access-groups/new", "credentials/new", "credentials/delete?name=x", "models/new",
               "models/delete?id=x")


async def test_no_page_here_is_a_plain_keys(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    await api(http, gateway, "/organization/new", {"organization_id": "kept-org", "organization_alias": "Kept"})
    key = await api(http, gateway, "/key/generate", {"key_alias": "plain"})
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, key["key"])
        status, html = await page(browser, f"{ui}/keys")
        assert status == 200 and "organizations" not in html and "credentials" not in html
        token = csrf_of(html)
        for path in ADMIN_PAGES:
            status, html = await page(browser, f"{ui}/{path}")
            assert status == 403 and "Only a proxy admin may do this" in html, path
        for path in ADMIN_FORMS:
            async with browser.post(f"{ui}/{path}", data={"csrf": token, "organization_alias": "x", "member": "y",
                                                          "credential_name": "x", "api_key": "k",
                                                          "model_name": "m", "model": "openai/x"},
                                    allow_redirects=False) as r:
                assert r.status == 403 and "Only a proxy admin" in await r.text(), path
        status, html = await page(browser, f"{ui}/models")
        assert status == 200 and "Add a model" not in html
    await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "kept-org"})


async def test_a_form_without_its_csrf_token_is_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        for path, data in (("organizations/new", {"organization_id": "forged-org", "organization_alias": "f"}),
                           ("access-groups/new", {"access_group_name": "forged-group"}),
                           ("credentials/new", {"credential_name": "forged-cred", "api_key": "k"}),
                           ("models/new", {"model_name": "forged-model", "model": "openai/x"})):
            async with browser.post(f"{ui}/{path}", data=data, allow_redirects=False) as r:
                assert r.status == 403 and "CSRF token is missing or wrong" in await r.text(), path
    await api(http, gateway, "/organization/info", method="GET", params={"organization_id": "forged-org"},
              status=404)
    groups = await api(http, gateway, "/v1/unified_access_group", method="GET")
    assert "forged-group" not in [g["access_group_name"] for g in groups]
    listed = await api(http, gateway, "/credentials", method="GET")
    assert "forged-cred" not in [c["credential_name"] for c in listed["credentials"]]


async def test_the_pages_work_under_the_prefix(gateway: Gateway) -> None:
    ui = f"{gateway.url}{PREFIX}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, _, location = await post(browser, f"{ui}/organizations/new", f"{ui}/organizations/new",
                                         {"organization_id": "prefixed-org", "organization_alias": "Prefixed"})
        assert status == 303 and URL(location).path == f"{PREFIX}/ui/organizations/view"
        for path in ("organizations", "access-groups", "credentials", "models/new",
                     "organizations/view?id=prefixed-org"):
            status, html = await page(browser, f"{ui}/{path}")
            assert status == 200, path
            assert 'href="/ui' not in html and 'action="/ui' not in html
