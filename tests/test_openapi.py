"""/openapi.json lists every route the gateway serves, with the bodies its handlers decode, and /docs is
Swagger UI from the gateway's own files: under a path prefix too, and in a real browser when Debian's
chromium is installed."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import pytest

from gateway.openapi import TAG_ORDER
from tests.harness import Gateway

MASTER = "sk-openapi-master"
PREFIX = "/olla/litellm"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER},
              "litellm_settings": {"callbacks": ["prometheus"]},  # a plugin that adds routes of its own
              "gateway_settings": {"path_prefixes": [PREFIX]}}
    with Gateway(config) as gw:
        yield gw


async def fetch_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def schema_of(document: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return dict(document["components"]["schemas"][ref.rsplit("/", 1)[1]])


async def test_every_route_the_gateway_serves_is_an_operation(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    assert document["openapi"].startswith("3.1")
    served = {(method, re.sub(r"{(\w+):[^}]*}", r"{\1}", route["path"]))
              for route in (await fetch_json(http, f"{gateway.url}/routes"))["routes"]
              for method in route["methods"]
              # The admin UI, and LiteLLM's SSO addresses that lead to it: pages, not operations.
              if method != "HEAD" and not route["path"].startswith((PREFIX, "/ui", "/sso/"))}
    listed = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    docs_routes = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/{asset}")}
    assert listed == served - docs_routes
    assert ("GET", "/metrics") in listed  # added by a plugin, not by the app
    assert ("POST", "/key/generate") in listed and ("GET", "/spend/logs") in listed
    operation_ids = [op["operationId"] for operations in document["paths"].values() for op in operations.values()]
    assert len(operation_ids) == len(set(operation_ids))
    tags = {op["tags"][0] for operations in document["paths"].values() for op in operations.values()}
    assert {"keys", "users", "teams", "spend", "models", "health", "proxy", "end users", "budgets", "organizations",
            "access groups", "credentials"} <= tags
    assert [tag["name"] for tag in document["tags"]] == [t for t in TAG_ORDER if t in tags]


# Writes that read no body; any other POST, PUT or PATCH must name the Struct its handler decodes.
BODILESS: set[tuple[str, str]] = set()


async def test_every_operation_has_a_summary_and_every_write_its_body(gateway: Gateway,
                                                                      http: aiohttp.ClientSession) -> None:
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    operations = [(method.upper(), path, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    assert len(operations) > 100
    assert [(method, path) for method, path, op in operations if not op.get("summary")] == []
    free_form = [(method, path) for method, path, op in operations
                 if method in ("POST", "PUT", "PATCH") and (method, path) not in BODILESS
                 and "$ref" not in next(iter(op["requestBody"]["content"].values()))["schema"]]
    assert free_form == []
    assert [(method, path) for method, path, op in operations if op["tags"] == ["other"]] == [
        ("GET", path) for path in ("/routes", "/guardrails/list", "/v2/guardrails/list", "/policies/list",
                                   "/policies/attachments/list") if ("GET", path) in {(m, p) for m, p, _ in operations}]


async def test_bodies_are_the_structs_the_handlers_decode(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    generate = schema_of(document, "/key/generate")
    assert {"models", "max_budget", "key_alias", "team_id", "metadata", "duration"} <= set(generate["properties"])
    assert generate["properties"]["max_budget"]["anyOf"][0]["minimum"] == 0
    assert schema_of(document, "/team/member_add")["required"] == ["team_id", "member"]
    chat = schema_of(document, "/v1/chat/completions")
    assert chat["required"] == ["model", "messages"] and "stream" in chat["properties"]
    messages = schema_of(document, "/v1/messages")
    assert messages["required"] == ["model", "max_tokens", "messages"]
    roles = document["components"]["schemas"]["Message"]["properties"]["role"]["enum"]
    assert sorted(roles) == ["assistant", "system", "user"]  # Claude Code's mid-conversation system messages
    # Each route's errors in its own API's envelope.
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        error = document["paths"][path]["post"]["responses"]["default"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/AnthropicError"}
    anthropic = document["components"]["schemas"]["AnthropicError"]
    assert anthropic["properties"]["type"] == {"const": "error"}
    assert "overloaded_error" in anthropic["properties"]["error"]["properties"]["type"]["enum"]
    default = document["paths"]["/v1/chat/completions"]["post"]["responses"]["default"]
    assert default["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert schema_of(document, "/openai/deployments/{model}/embeddings")["required"] == ["model", "input"]
    key_list = document["paths"]["/key/list"]["get"]
    assert {p["name"]: p["schema"]["type"] for p in key_list["parameters"]}["page"] == "integer"
    regenerate = document["paths"]["/key/{key}/regenerate"]["post"]
    assert regenerate["parameters"][0] == {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
    # A route whose handler says nothing still takes a body: the metrics plugin's is a GET, so none.
    assert "requestBody" not in document["paths"]["/metrics"]["get"]
    # The routes merged after the first document: their own Structs, a DELETE's body, a path value.
    assert schema_of(document, "/end_user/new")["required"] == ["user_id"]
    assert schema_of(document, "/customer/block")["required"] == ["user_ids"]
    assert "budget_duration" in schema_of(document, "/budget/new")["properties"]
    assert schema_of(document, "/organization/new")["required"] == ["organization_alias"]
    assert schema_of(document, "/organization/delete", "delete")["required"] == ["organization_ids"]
    assert schema_of(document, "/organization/member_update", "patch")["required"] == ["organization_id"]
    assert schema_of(document, "/v1/access_group")["required"] == ["access_group_name"]
    assert schema_of(document, "/access_group/{access_group}/update", "put")["properties"].keys() == {
        "model_names", "model_ids"}
    assert schema_of(document, "/model/new")["required"] == ["model_name", "litellm_params"]
    assert schema_of(document, "/credentials/{name}", "patch")["required"] == ["credential_info"]
    assert document["paths"]["/budget/settings"]["get"]["parameters"][0]["name"] == "budget_id"
    assert document["paths"]["/public/litellm_model_cost_map"]["get"]["security"] == []
    assert "security" not in document["paths"]["/public/model_hub"]["get"]


async def test_every_reference_resolves_and_namesakes_stay_apart(gateway: Gateway,
                                                                 http: aiohttp.ClientSession) -> None:
    """Teams and organizations each have an AddMembers: msgspec names them apart, and each route points
    at its own."""
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    refs = set(re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs and refs <= set(document["components"]["schemas"])
    team_add = schema_of(document, "/team/member_add")
    org_add = schema_of(document, "/organization/member_add")
    assert team_add["required"] == ["team_id", "member"]
    assert org_add["required"] == ["organization_id", "member"]


async def test_a_body_of_optional_fields_may_be_left_out(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    """The document says a body is required only where the handler refuses one left out."""
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    required = {(method, path): op["requestBody"]["required"] for path, ops in document["paths"].items()
                for method, op in ops.items() if "requestBody" in op}
    assert required[("post", "/global/spend/end_users")] is False
    assert required[("post", "/key/generate")] is False
    assert required[("post", "/end_user/new")] is True and required[("post", "/chat/completions")] is True
    async with http.post(f"{gateway.url}/global/spend/end_users", headers=ADMIN) as r:
        assert r.status == 200 and await r.json() == []
    async with http.post(f"{gateway.url}/end_user/new", headers=ADMIN) as r:
        assert r.status == 400 and (await r.json())["error"]["param"] == "user_id"

async def test_the_keys_headers_and_the_public_probes(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": "A virtual key or the master key"}
    assert schemes["x-litellm-api-key"] == {"type": "apiKey", "in": "header", "name": "x-litellm-api-key"}
    assert schemes["api-key"]["name"] == "api-key"
    assert document["security"] == [{"bearer": []}, {"x-litellm-api-key": []}, {"api-key": []}]
    assert document["paths"]["/health/liveliness"]["get"]["security"] == []
    assert "security" not in document["paths"]["/key/generate"]["post"]
    async with http.get(f"{gateway.url}/openapi.json") as r:  # no key needed to read it
        assert r.status == 200 and r.content_type == "application/json"


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize("prefix", ["", PREFIX])
async def test_docs_load_their_files_from_the_gateway(gateway: Gateway, http: aiohttp.ClientSession,
                                                      prefix: str) -> None:
    page = f"{gateway.url}{prefix}/docs"
    async with http.get(page) as r:
        assert r.status == 200 and r.content_type == "text/html"
        html = await r.text()
    links = Links()
    links.feed(html)
    assert len(links.found) == 3
    for link in links.found:
        url = urljoin(page, link)
        assert urlsplit(url).path.startswith(f"{prefix}/docs/")  # from under the prefix, never a CDN
        async with http.get(url) as r:
            assert r.status == 200 and len(await r.read()) > 500
    assert 'url: "openapi.json"' in html  # read beside the page: the prefixed document under a prefix
    async with http.get(f"{gateway.url}{prefix}/openapi.json") as r:
        assert r.status == 200
    async with http.get(f"{gateway.url}{prefix}/docs/index.html") as r:
        assert r.status == 404  # only the files the page uses
        assert (await r.json())["error"]["code"] == "404"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
async def test_swagger_ui_renders_and_tries_an_operation_under_the_prefix(gateway: Gateway,
                                                                          http: aiohttp.ClientSession) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    document = await fetch_json(http, f"{gateway.url}/openapi.json")
    operations = sum(len(ops) for ops in document["paths"].values())
    requested: list[str] = []
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            await page.goto(f"{gateway.url}{PREFIX}/docs")
            await page.wait_for_selector(".opblock", timeout=20_000)
            assert await page.locator(".opblock").count() == operations
            liveliness = page.locator("#operations-health-get_health_liveliness")
            await liveliness.locator(".opblock-summary").click()
            await liveliness.get_by_role("button", name="Try it out").click()
            await liveliness.get_by_role("button", name="Execute").click()
            await liveliness.locator(".live-responses-table .response-col_status").first.wait_for(timeout=20_000)
            assert "I'm alive!" in await liveliness.locator(".live-responses-table").inner_text()
        finally:
            await browser.close()
    assert all(url.startswith(f"{gateway.url}{PREFIX}/") for url in requested), requested
    assert f"{gateway.url}{PREFIX}/openapi.json" in requested
    assert f"{gateway.url}{PREFIX}/health/liveliness" in requested  # "Try it out" stays under the prefix
