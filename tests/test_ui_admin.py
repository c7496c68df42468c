"""The admin UI's teams, users, end users, budgets, request log, health checks, settings and error pages
over plain HTTP, against a running gateway: each form does what the JSON API's own call does (checked
through that API), refuses what it refuses with the message on the page, and no page is an admin's to a
key that is not. The browser runs are in test_ui_browser.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from gateway.spend.record import SpendRecord
from gateway.store.records import KeyRecord
from gateway.store.store import END_USERS, KEYS, SpendCursor, Store
from gateway.ui.config_view import MASK, masked_url
from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment, spend_record
from tests.ui_session import browser_like, csrf_of, page, sign_in

MASTER = "sk-ui-admin-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
UPSTREAM_KEY = "sk-upstream-from-env-4242"
LITERAL_SECRET = "sk-written-in-the-file-777"
DEAD = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: connections are refused


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {"model_list": [deployment("priced", upstream.base_url, input_cost_per_token=1e-3,
                                        output_cost_per_token=2e-3, api_key="os.environ/UI_TEST_UPSTREAM_KEY"),
                             deployment("down", DEAD, api_key=LITERAL_SECRET,
                                        model_info={"owner": "ops", "billing_token": "tok-in-model-info"}),
                             {"model_name": "echo", "litellm_params": {
                                 "model": "mock/echo", "api_base": "http://ops:hunter2@mock.internal/v1"}}],
              "general_settings": {"master_key": MASTER},
              "environment_variables": {"UI_TEST_PLAIN": "value-of-an-env-var"},
              "credential_list": [{"credential_name": "shared", "credential_values": {
                  "api_key": "sk-credential-secret-55", "api_base": "https://api.example.com/v1"}}],
              "gateway_settings": {"path_prefixes": [PREFIX], "spend_write_interval": 0.1}}
    with Gateway(config, env={"UI_TEST_UPSTREAM_KEY": UPSTREAM_KEY}) as gw:
        yield gw


async def api(http: aiohttp.ClientSession, gw: Gateway, path: str, body: dict[str, Any] | None = None,
              method: str = "POST", params: dict[str, str] | None = None, status: int = 200) -> Any:
    async with http.request(method, f"{gw.url}{path}", json=body, params=params, headers=ADMIN) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def post(http: aiohttp.ClientSession, url: str, form_page: str, data: dict[str, Any]
               ) -> tuple[int, str, str]:
    """Loads `form_page` for its CSRF token, posts `data` to `url`; the status, the body, and where a 303
    sends the browser (its relative Location read against `url`, as a browser reads it)."""
    _, html = await page(http, form_page)
    async with http.post(url, data={"csrf": csrf_of(html), **data}, allow_redirects=False) as r:
        location = r.headers.get("Location", "")
        return r.status, await r.text(), str(URL(url).join(URL(location))) if location else ""


async def follow(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as r:
        assert r.status == 200, url
        return await r.text()


def text_of(html: str) -> str:
    """The page's text: tags out, entities as typed, so a test reads what a person sees."""
    plain = re.sub(r"<[^>]+>", " ", html)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&#34;", '"'), ("&#39;", "'"), ("&amp;", "&")):
        plain = plain.replace(entity, char)
    return re.sub(r"\s+", " ", plain)


async def chat(http: aiohttp.ClientSession, gw: Gateway, key: str, model: str = "priced",
               **extra: Any) -> tuple[int, str]:
    async with http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}) as r:
        await r.read()
        return r.status, r.headers.get("x-litellm-call-id", "")


async def test_a_team_from_creation_to_deletion(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        # A form the API refuses shows its message, with what was typed kept.
        await api(http, gateway, "/team/new", {"team_id": "taken-team"})
        status, html, _ = await post(browser, f"{ui}/teams/new", f"{ui}/teams/new",
                                     {"team_id": "taken-team", "team_alias": "Typed <alias>", "rpm_limit": "5"})
        assert status == 400 and "Team id = taken-team already exists" in html
        assert 'value="Typed &lt;alias&gt;"' in html and 'value="5"' in html
        status, html, _ = await post(browser, f"{ui}/teams/new", f"{ui}/teams/new", {"max_budget": "lots"})
        assert status == 400 and "Max budget must be a number of dollars" in html

        status, _, location = await post(browser, f"{ui}/teams/new", f"{ui}/teams/new", {
            "team_id": "search team/eu", "team_alias": "Search EU", "models": ["priced"], "max_budget": "50",
            "budget_duration": "30d", "rpm_limit": "600", "metadata": '{"cost_centre": "4711"}'})
        assert status == 303 and URL(location).path == "/ui/teams/view"
        assert URL(location).query == {"id": "search team/eu", "done": "created"}
        html = await follow(browser, location)
        assert "The team is created." in html and "Search EU" in html and "$50.00" in html
        info = (await api(http, gateway, "/team/info", method="GET", params={"team_id": "search team/eu"}))
        team = info["team_info"]
        assert team["models"] == ["priced"] and team["rpm_limit"] == 600 and team["metadata"] == {
            "cost_centre": "4711"}
        view = str(URL(location).without_query_params("done"))

        # Members: a new user is made on the way, as /team/member_add does; one already in is refused.
        status, _, location = await post(browser, f"{ui}/teams/members/add?id={quote('search team/eu')}", view,
                                         {"member": "ana@example.com", "role": "admin"})
        assert status == 303 and "done=member_added" in location
        status, _, _ = await post(browser, f"{ui}/teams/members/add?id={quote('search team/eu')}", view,
                                  {"member": "bo", "role": "user"})
        status, html, _ = await post(browser, f"{ui}/teams/members/add?id={quote('search team/eu')}", view,
                                     {"member": "bo", "role": "user"})
        assert status == 400 and "User=bo already in team" in html and 'value="bo"' in html
        members = (await api(http, gateway, "/team/info", method="GET",
                             params={"team_id": "search team/eu"}))["team_info"]["members_with_roles"]
        assert {(m["user_email"] or m["user_id"], m["role"]) for m in members} >= {
            ("ana@example.com", "admin"), ("bo", "user")}
        status, _, _ = await post(browser, f"{ui}/teams/members/remove?id={quote('search team/eu')}", view,
                                  {"user_id": "bo"})
        assert status == 303
        user = await api(http, gateway, "/user/info", method="GET", params={"user_id": "bo"})
        assert "search team/eu" not in user["user_info"]["teams"]

        # Its keys are listed on its page; blocking the team refuses them, unblocking lets them through.
        key = await api(http, gateway, "/key/generate", {"team_id": "search team/eu", "key_alias": "eu-app"})
        html = await follow(browser, view)
        assert "eu-app" in html and "Keys (1)" in html
        assert (await chat(http, gateway, key["key"]))[0] == 200
        status, _, location = await post(browser, f"{ui}/teams/block?id={quote('search team/eu')}", view, {})
        assert status == 303 and "done=blocked" in location
        assert (await chat(http, gateway, key["key"]))[0] in (401, 403)
        await post(browser, f"{ui}/teams/unblock?id={quote('search team/eu')}", view, {})
        assert (await chat(http, gateway, key["key"]))[0] == 200

        # Edited: the alias changes, the budget is cleared, the models untouched.
        status, html = await page(browser, f"{ui}/teams/edit?id={quote('search team/eu')}")
        assert status == 200 and 'value="Search EU"' in html and 'value="50.0"' in html
        status, _, location = await post(browser, f"{ui}/teams/edit?id={quote('search team/eu')}",
                                         f"{ui}/teams/edit?id={quote('search team/eu')}", {
                                             "team_alias": "Search Europe", "models": ["priced"], "max_budget": "",
                                             "budget_duration": "30d", "rpm_limit": "600",
                                             "metadata": '{"cost_centre": "4711"}'})
        assert status == 303 and "done=updated" in location
        team = (await api(http, gateway, "/team/info", method="GET",
                          params={"team_id": "search team/eu"}))["team_info"]
        assert team["team_alias"] == "Search Europe" and team["max_budget"] is None and team["models"] == ["priced"]

        # Listed, searched by a piece of the alias in any case.
        status, html = await page(browser, f"{ui}/teams?q=EUROPE")
        assert status == 200 and "1 team match" in html and "Search Europe" in html

        # Deleted, with its keys.
        status, _, location = await post(browser, f"{ui}/teams/delete?id={quote('search team/eu')}", view, {})
        assert status == 303 and location == f"{ui}/teams?done=deleted"
        await api(http, gateway, "/team/info", method="GET", params={"team_id": "search team/eu"}, status=404)
        assert (await chat(http, gateway, key["key"]))[0] == 401
        status, html = await page(browser, view)
        assert status == 404 and "No such team" in html


async def test_teams_are_listed_a_page_at_a_time(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    for n in range(30):
        await api(http, gateway, "/team/new", {"team_id": f"pager-team-{n:02d}", "team_alias": f"Pager {n:02d}"})
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/teams?q=pager-team&size=25")
        assert "30 teams match" in html and "page 1 of 2" in html and "Pager 29" in html and "Pager 04" not in html
        assert 'href="teams?q=pager-team&amp;size=25&amp;page=2"' in html
        status, html = await page(browser, f"{ui}/teams?q=pager-team&size=25&page=2")
        assert "Pager 04" in html and "Pager 29" not in html


async def test_a_user_with_a_key_of_their_own(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    await api(http, gateway, "/team/new", {"team_id": "user-team"})
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html, _ = await post(browser, f"{ui}/users/new", f"{ui}/users/new",
                                     {"user_id": "u-new", "teams": "no-such-team", "auto_create_key": "on"})
        assert status == 400 and "Team not found, passed team_id=no-such-team" in html
        status, html, _ = await post(browser, f"{ui}/users/new", f"{ui}/users/new", {
            "user_id": "u-new", "user_alias": "New <User>", "user_email": "new@example.com",
            "user_role": "internal_user", "teams": "user-team", "models": ["priced"], "max_budget": "10",
            "auto_create_key": "on", "key_alias": "u-new-key"})
        assert status == 200 and "User created" in html
        raw = re.search(r'id="new-key" value="(sk-[^"]+)"', html)
        assert raw is not None
        assert (await chat(http, gateway, raw.group(1)))[0] == 200
        info = await api(http, gateway, "/user/info", method="GET", params={"user_id": "u-new"})
        assert info["user_info"]["teams"] == ["user-team"] and info["user_info"]["user_alias"] == "New <User>"
        assert [k["key_alias"] for k in info["keys"]] == ["u-new-key"]

        status, html = await page(browser, f"{ui}/users/view?id=u-new")
        assert status == 200 and "u-new-key" in html and "Keys (1)" in html and "New &lt;User&gt;" in html
        status, html = await page(browser, f"{ui}/users?q=EXAMPLE.com")
        assert "new@example.com" in html and re.search(r'<td class="num">1</td>', html)  # its one key

        # Edited: made an admin, out of its team.
        status, _, location = await post(browser, f"{ui}/users/edit?id=u-new", f"{ui}/users/edit?id=u-new", {
            "user_alias": "New <User>", "user_email": "new@example.com", "user_role": "proxy_admin", "teams": "",
            "models": ["priced"], "max_budget": "10"})
        assert status == 303 and "done=updated" in location
        info = await api(http, gateway, "/user/info", method="GET", params={"user_id": "u-new"})
        assert info["user_info"]["user_role"] == "proxy_admin" and info["user_info"]["teams"] == []
        members = (await api(http, gateway, "/team/info", method="GET",
                             params={"team_id": "user-team"}))["team_info"]["members_with_roles"]
        assert "u-new" not in [m["user_id"] for m in members]

        # Without a key: the user's page, no key shown.
        status, _, location = await post(browser, f"{ui}/users/new", f"{ui}/users/new", {"user_id": "u-keyless"})
        assert status == 303 and "users/view?id=u-keyless&done=created" in location

        status, _, location = await post(browser, f"{ui}/users/delete?id=u-new", f"{ui}/users/view?id=u-new", {})
        assert status == 303 and "done=deleted" in location
        await api(http, gateway, "/user/info", method="GET", params={"user_id": "u-new"}, status=404)
        assert (await chat(http, gateway, raw.group(1)))[0] == 401


async def test_end_users_are_listed_and_blocked(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    key = await api(http, gateway, "/key/generate", {"key_alias": "end-user-app"})
    status, call = await chat(http, gateway, key["key"], user="cust-<1>")
    assert status == 200
    await spend_record(http, gateway, call, ADMIN)
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/end-users?q=cust-")
        assert status == 200 and "cust-&lt;1&gt;" in html and "1 end user match" in html
        status, _, location = await post(browser, f"{ui}/end-users/block", f"{ui}/end-users", {"user_id": "cust-<1>"})
        assert status == 303 and URL(location).query == {"q": "cust-<1>", "done": "blocked"}
        html = await follow(browser, location)
        assert "Blocked: requests naming this end user are refused." in html and "Unblock" in html
        assert (await chat(http, gateway, key["key"], user="cust-<1>"))[0] in (400, 403)
        await post(browser, f"{ui}/end-users/unblock", f"{ui}/end-users", {"user_id": "cust-<1>"})
        assert (await chat(http, gateway, key["key"], user="cust-<1>"))[0] == 200
        # One never seen, blocked ahead of time, as /end_user/block does.
        status, _, _ = await post(browser, f"{ui}/end-users/block", f"{ui}/end-users", {"user_id": "cust-future"})
        assert status == 303
        info = await api(http, gateway, "/end_user/info", method="GET", params={"end_user_id": "cust-future"})
        assert info["blocked"] is True
        status, html, _ = await post(browser, f"{ui}/end-users/block", f"{ui}/end-users", {"user_id": ""})
        assert status == 400 and 'role="alert"' in html


async def test_budgets_are_made_changed_and_deleted(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, _, location = await post(browser, f"{ui}/budgets/new", f"{ui}/budgets/new", {
            "budget_id": "starter", "max_budget": "5", "budget_duration": "30d", "rpm_limit": "60"})
        assert status == 303 and location == f"{ui}/budgets/edit?id=starter&done=created"
        status, html, _ = await post(browser, f"{ui}/budgets/new", f"{ui}/budgets/new", {"budget_id": "starter"})
        assert status == 400 and "Budget with id 'starter' already exists." in text_of(html)
        status, html, _ = await post(browser, f"{ui}/budgets/new", f"{ui}/budgets/new", {"budget_duration": "soon"})
        assert status == 400 and 'aria-invalid="true"' in html
        await api(http, gateway, "/end_user/new", {"user_id": "on-starter", "budget_id": "starter"})
        status, html = await page(browser, f"{ui}/budgets?q=START")
        assert "starter" in html and 'href="end-users?budget=starter">1</a>' in html
        status, _, location = await post(browser, f"{ui}/budgets/edit?id=starter", f"{ui}/budgets/edit?id=starter",
                                         {"max_budget": "7.5", "budget_duration": "30d", "rpm_limit": "60"})
        assert status == 303 and "done=updated" in location
        [budget] = await api(http, gateway, "/budget/info", {"budgets": ["starter"]})
        assert budget["max_budget"] == 7.5 and budget["rpm_limit"] == 60
        status, _, location = await post(browser, f"{ui}/budgets/delete?id=starter",
                                         f"{ui}/budgets/edit?id=starter", {})
        assert status == 303 and location == f"{ui}/budgets?done=deleted"
        assert await api(http, gateway, "/budget/info", {"budgets": ["starter"]}) == []
        info = await api(http, gateway, "/end_user/info", method="GET", params={"end_user_id": "on-starter"})
        assert "budget_id" not in info


async def test_a_health_check_from_the_models_page(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html, _ = await post(browser, f"{ui}/models/health", f"{ui}/models", {})
        assert status == 200 and "Checked 3 deployments" in html and "2 healthy, 1 unhealthy" in html
        assert "unreachable: ClientConnectorError" in html
        status, html = await page(browser, f"{ui}/models")
        deployment_id = re.search(r'name="id" value="([^"]+)"', html)
        assert deployment_id is not None
        status, html, _ = await post(browser, f"{ui}/models/health", f"{ui}/models", {"id": deployment_id.group(1)})
        assert status == 200 and "Checked 1 deployment " in html
        status, html, _ = await post(browser, f"{ui}/models/health", f"{ui}/models", {"id": "gone"})
        assert status == 404 and "No such deployment" in html


async def test_the_request_log_filters_pages_and_shows_one_request(gateway: Gateway,
                                                                   http: aiohttp.ClientSession) -> None:
    await api(http, gateway, "/team/new", {"team_id": "log-team"})
    key = await api(http, gateway, "/key/generate", {"key_alias": "log-key", "team_id": "log-team",
                                                      "user_id": "log-user"})
    calls = []
    for _ in range(7):
        calls.append((await chat(http, gateway, key["key"]))[1])
    failed = (await chat(http, gateway, key["key"], fake={"status": 500, "body": "upstream broke"}))[1]
    for call in [*calls, failed]:
        await spend_record(http, gateway, call, ADMIN)
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        status, html = await page(browser, f"{ui}/logs?key=log-key&size=3")
        assert status == 200
        shown = re.findall(r"logs/view\?id=([^&]+)&amp;at=", html)
        assert shown == [failed, *calls[::-1][:2]]  # newest first
        older = re.search(r'href="(logs\?[^"]*older=[^"]+)" rel="next"', html)
        assert older is not None and 'rel="prev"' not in html
        seen = list(shown)
        while older is not None:
            status, html = await page(browser, f"{ui}/{older.group(1).replace('&amp;', '&')}")
            seen += re.findall(r"logs/view\?id=([^&]+)&amp;at=", html)
            assert 'rel="prev"' in html and "Back to the newest" in html
            older = re.search(r'href="(logs\?[^"]*older=[^"]+)" rel="next"', html)
        assert seen == [failed, *calls[::-1]]  # every one once, in order, over three pages
        newer = re.search(r'href="(logs\?[^"]*newer=[^"]+)" rel="prev"', html)
        assert newer is not None
        status, html = await page(browser, f"{ui}/{newer.group(1).replace('&amp;', '&')}")
        assert re.findall(r"logs/view\?id=([^&]+)&amp;at=", html) == calls[::-1][2:5]

        for query, expected in ((f"key={key['token_id']}", 8), (f"key={key['key']}", 8), ("team=log-team", 8),
                                ("user=log-user", 8), ("status=failure&team=log-team", 1),
                                ("model=priced&team=log-team", 8), ("model=echo&team=log-team", 0),
                                ("team=log-team&from=2000-01-01T00:00&to=2000-01-02T00:00", 0)):
            status, html = await page(browser, f"{ui}/logs?{query}&size=100")
            assert len(re.findall(r"logs/view\?id=", html)) == expected, query
        status, html = await page(browser, f"{ui}/logs?key=no-such-alias")
        assert "No key has the alias" in html
        status, html = await page(browser, f"{ui}/logs?from=yesterday")
        assert "is not a time" in html

        link = re.search(rf'href="(logs/view\?id={failed}&amp;at=[^"]+)"',
                         (await page(browser, f"{ui}/logs?team=log-team"))[1])
        assert link is not None
        status, html = await page(browser, f"{ui}/{link.group(1).replace('&amp;', '&')}")
        assert status == 200 and "failure · 500" in html and "upstream broke" in html
        assert '"request_id": "' + failed + '"' in html.replace("&#34;", '"')  # /spend/logs' own view
        status, html = await page(browser, f"{ui}/logs/view?id={calls[0]}")
        record = await spend_record(http, gateway, calls[0], ADMIN)
        plain = text_of(html)
        assert status == 200 and f"Prompt {record['prompt_tokens']}" in plain and "of which cached 0" in plain
        assert f"Completion {record['completion_tokens']}" in plain and "of which reasoning 0" in plain
        assert "log-key" in plain and "First token" in plain
        status, html = await page(browser, f"{ui}/logs/view?id=no-such-request")
        assert status == 404 and "No such request" in html


async def test_a_key_sees_its_own_requests_only(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    mine = await api(http, gateway, "/key/generate", {"key_alias": "own-log"})
    other = await api(http, gateway, "/key/generate", {"key_alias": "other-log"})
    own_call = (await chat(http, gateway, mine["key"]))[1]
    other_call = (await chat(http, gateway, other["key"]))[1]
    for call in (own_call, other_call):
        await spend_record(http, gateway, call, ADMIN)
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, mine["key"])
        for query in ("", f"?key={other['token_id']}", "?team=x&user=y"):
            status, html = await page(browser, f"{ui}/logs{query}")
            assert status == 200 and own_call in html and other_call not in html and 'name="key"' not in html
        assert (await page(browser, f"{ui}/logs/view?id={own_call}"))[0] == 200
        assert (await page(browser, f"{ui}/logs/view?id={other_call}"))[0] == 404


ADMIN_PAGES = ("teams", "teams/new", "teams/view?id=x", "teams/edit?id=x", "users", "users/new", "users/view?id=x",
               "users/edit?id=x", "end-users", "budgets", "budgets/new", "budgets/edit?id=x", "settings")
ADMIN_FORMS = ("teams/new", "teams/edit?id=x", "teams/block?id=x", "teams/unblock?id=x", "teams/delete?id=x",
               "teams/members/add?id=x", "teams/members/remove?id=x", "users/new", "users/edit?id=x",
               "users/delete?id=x", "end-users/block", "end-users/unblock", "budgets/new", "budgets/edit?id=x",
               "budgets/delete?id=x", "models/health")


async def test_no_admin_page_is_a_plain_keys(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    await api(http, gateway, "/team/new", {"team_id": "x"})
    key = await api(http, gateway, "/key/generate", {"key_alias": "plain-key", "team_id": "x"})
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, key["key"])
        status, html = await page(browser, f"{ui}/keys")
        assert status == 200 and 'href="teams"' not in html and 'href="settings"' not in html
        assert "teams/view" not in html and ">x<" in html  # its team named, not linked to a page it may not see
        status, html = await page(browser, f"{ui}/keys/{key['token_id']}")
        assert status == 200 and "teams/view" not in html
        token = csrf_of(html)
        for path in ADMIN_PAGES:
            status, html = await page(browser, f"{ui}/{path}")
            assert status == 403 and "Only a proxy admin may do this" in html, path
        for path in ADMIN_FORMS:
            async with browser.post(f"{ui}/{path}", data={"csrf": token, "user_id": "x", "member": "y"},
                                    allow_redirects=False) as r:
                assert r.status == 403 and "Only a proxy admin" in await r.text(), path
    info = await api(http, gateway, "/team/info", method="GET", params={"team_id": "x"})
    assert info["team_info"]["blocked"] is False and info["team_info"]["members_with_roles"] == [
        {"role": "admin", "user_id": "default_user_id", "user_email": None}]


async def test_the_settings_show_the_config_with_every_secret_masked(gateway: Gateway) -> None:
    async with browser_like() as browser:
        await sign_in(browser, f"{gateway.url}/ui", MASTER)
        status, html = await page(browser, f"{gateway.url}/ui/settings")
    assert status == 200
    for secret in (MASTER, UPSTREAM_KEY, LITERAL_SECRET, "hunter2", "sk-credential-secret-55", "value-of-an-env-var",
                   "tok-in-model-info", "sk-upstream-secret"):
        assert secret not in html, secret
    plain = text_of(html)
    assert "api_key: os.environ/UI_TEST_UPSTREAM_KEY" in plain  # the variable's name, not its value
    assert f"api_key: {MASK}" in plain and f"master_key: {MASK}" in plain
    assert f"api_base: http://ops:{MASK}@mock.internal/v1" in plain
    assert f"billing_token: {MASK}" in plain and "owner: ops" in plain  # model_info masked by name only
    assert f"UI_TEST_PLAIN: {MASK}" in plain and "api_base: https://api.example.com/v1" in plain
    assert "path_prefixes: - /olla/litellm" in plain and "model_name: priced" in plain
    assert f"Master key {MASK} (general_settings.master_key)" in plain


def test_urls_keep_all_but_their_password() -> None:
    assert masked_url("postgresql://gw:s3cret@db:5432/gw?sslmode=require") == \
        f"postgresql://gw:{MASK}@db:5432/gw?sslmode=require"
    assert masked_url("redis://:pw@cache:6379/0") == f"redis://:{MASK}@cache:6379/0"
    assert masked_url("postgresql://db/gw?user=gw&password=s3cret&x=1") == f"postgresql://db/gw?user=gw&password={MASK}&x=1"
    assert masked_url("http://host:8080/v1") == "http://host:8080/v1"


async def test_errors_under_the_ui_are_pages(gateway: Gateway) -> None:
    async def html_error(browser: aiohttp.ClientSession, url: str, status: int) -> str:
        async with browser.get(url, allow_redirects=False) as r:
            body = await r.text()
            assert r.status == status, url
            assert r.headers["Content-Type"].startswith("text/html"), url
            assert '{"error"' not in body and body.startswith("<!doctype html>"), url
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            return body

    async with browser_like() as browser:
        for base in (f"{gateway.url}/ui", f"{gateway.url}{PREFIX}/ui"):
            for path in ("no/such/page", "static/nothing.css", "keys/not-a-token"):
                html = await html_error(browser, f"{base}/{path}", 404)
                assert "Not found" in html and "Sign out" not in html
            await sign_in(browser, base, MASTER)
            html = await html_error(browser, f"{base}/no/such/page", 404)
            assert "Sign out" in html  # signed in: the page has the UI's navigation
            href = re.search(r'class="brand" href="([^"]*)keys"', html)
            assert href is not None and href.group(1) == "../../"
            assert "No such key" in await html_error(browser, f"{base}/keys/{'0' * 64}", 404)
            assert "Not allowed" in await html_error(browser, f"{base}/logout", 405)
            assert "No such team" in await html_error(browser, f"{base}/teams/view?id=nope", 404)
            assert "No such request" in await html_error(browser, f"{base}/logs/view?id=nope", 404)
            assert "Refused" in await html_error(browser, f"{base}/keys?q=%00", 400)
    # The API under the same prefix keeps its envelope.
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}{PREFIX}/no/such/route") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "404"


async def test_pages_under_the_prefix_link_under_it(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    await api(http, gateway, "/team/new", {"team_id": "prefixed-team"})
    await api(http, gateway, "/user/new", {"user_id": "prefixed-user", "auto_create_key": False})
    await api(http, gateway, "/budget/new", {"budget_id": "prefixed-budget"})
    ui = f"{gateway.url}{PREFIX}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        for path in ("teams", "teams/new", "teams/view?id=prefixed-team", "teams/edit?id=prefixed-team", "users",
                     "users/new", "users/view?id=prefixed-user", "end-users", "budgets", "budgets/new",
                     "budgets/edit?id=prefixed-budget", "logs", "settings", "models"):
            status, html = await page(browser, f"{ui}/{path}")
            assert status == 200, path
            assert 'href="/' not in html and 'action="/' not in html and 'src="/' not in html, path


async def test_counting_keys_by_owner(store: Store) -> None:
    now = time.time()
    await store.insert_many(KEYS, [KeyRecord(token=f"{n:064x}", key_name="sk-...c", user_id=f"owner-{n % 3}",
                                             created_at=now) for n in range(10)])
    assert await store.count_by(KEYS, "user_id", ["owner-0", "owner-2", "owner-9", "owner-0"]) == {
        "owner-0": 4, "owner-2": 3}
    assert await store.count_by(END_USERS, "budget_id", []) == {}
    many = [f"owner-{n}" for n in range(1200)]  # past one statement's worth of parameters
    assert await store.count_by(KEYS, "user_id", many) == {"owner-0": 4, "owner-1": 3, "owner-2": 3}


async def test_spend_records_page_by_keyset_through_ties(store: Store) -> None:
    """Records that started at the same moment are told apart by their id: each is on one page, in order,
    paging older and back newer."""
    now = time.time()
    moments = [now - 30, now - 20, now - 20, now - 20, now - 10, now - 10]
    records = [SpendRecord(request_id=f"tie-{n}", api_key="k" * 64, start_time=t, end_time=t + 1)
               for n, t in enumerate(moments)]
    await store.write_spend(records)
    expected = [r.request_id for r in sorted(records, key=lambda r: (-r.start_time, r.request_id))]
    pages, after = [], None
    while True:
        found = await store.spend_logs({"api_key": "k" * 64}, None, None, 2, after=after)
        if not found:
            break
        pages.append([r.request_id for r in found])
        after = SpendCursor(found[-1].start_time, found[-1].request_id)
    assert [rid for p in pages for rid in p] == expected and len(pages) == 3
    last = await store.spend_logs({"api_key": "k" * 64}, None, None, 10, after=SpendCursor(now - 20, "tie-3"))
    back = await store.spend_logs({"api_key": "k" * 64}, None, None, 2, after=SpendCursor(now - 20, "tie-3"),
                                  newer=True)
    assert [r.request_id for r in last] == expected[expected.index("tie-3") + 1:]
    assert [r.request_id for r in back] == expected[expected.index("tie-3") - 2:expected.index("tie-3")]


async def test_a_new_form_without_its_csrf_token_is_refused(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await sign_in(browser, ui, MASTER)
        for path, data in (("teams/new", {"team_id": "forged-team"}), ("users/new", {"user_id": "forged-user"}),
                           ("budgets/new", {"budget_id": "forged-budget"}), ("end-users/block", {"user_id": "f"})):
            async with browser.post(f"{ui}/{path}", data=data, allow_redirects=False) as r:
                assert r.status == 403 and "CSRF token is missing or wrong" in await r.text(), path
    await api(http, gateway, "/team/info", method="GET", params={"team_id": "forged-team"}, status=404)
    await api(http, gateway, "/user/info", method="GET", params={"user_id": "forged-user"}, status=404)
    assert await api(http, gateway, "/budget/info", {"budgets": ["forged-budget"]}) == []
