"""Single sign-on to the admin UI over plain HTTP, against a running gateway and a fake OpenID Connect
provider on 127.0.0.1 (tests/fake_oidc.py): the authorization-code flow with state and PKCE, the user
made or found as LiteLLM makes it, PROXY_ADMIN_ID's user an admin, and each way the sign-in can fail
answered with a page saying why (never a traceback, never a session). The browser run is in
test_ui_browser_orgs.py."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from yarl import URL

from gateway.ui.security import SESSION_COOKIE
from gateway.ui.sso_config import SsoConfig, SsoMisconfigured, read
from tests.fake_oidc import FakeOidc
from tests.harness import Gateway
from tests.test_ui_admin import MASTER, api, text_of
from tests.ui_session import browser_like, page

PREFIX = "/olla/litellm"


@pytest.fixture(scope="module")
def oidc() -> Iterator[FakeOidc]:
    fake = FakeOidc().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(oidc: FakeOidc) -> Iterator[Gateway]:
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER},
              "gateway_settings": {"path_prefixes": [PREFIX]}}
    with Gateway(config, env=oidc.env(PROXY_ADMIN_ID="ada")) as gw:
        yield gw


@pytest.fixture(scope="module")
def restricted(oidc: FakeOidc) -> Iterator[Gateway]:
    """Two domains in LiteLLM's comma list, and the client id in the token request's body ("True": LiteLLM
    lowers the value before it compares it with "true")."""
    config = {"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
              "general_settings": {"master_key": MASTER}}
    with Gateway(config, env=oidc.env(ALLOWED_EMAIL_DOMAINS="example.com,corp.example.org",
                                      GENERIC_INCLUDE_CLIENT_ID="True")) as gw:
        yield gw


def basic(oidc: FakeOidc) -> str:
    return "Basic " + base64.b64encode(f"{oidc.client_id}:{oidc.client_secret}".encode()).decode()


async def to_provider(browser: aiohttp.ClientSession, ui: str) -> str:
    """Starts a sign-in: where the gateway sends the browser (the provider's authorization endpoint)."""
    async with browser.get(f"{ui}/sso-login", allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        return r.headers["Location"]


async def back_from_provider(browser: aiohttp.ClientSession, authorize: str) -> str:
    """The provider signs the person in and sends the browser back: the callback address it gives."""
    async with browser.get(authorize, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        return r.headers["Location"]


async def finish(browser: aiohttp.ClientSession, callback: str) -> tuple[int, str, str]:
    """Follows the callback through LiteLLM's /sso/callback to the UI's; the status, page, and final URL."""
    async with browser.get(callback) as r:
        return r.status, await r.text(), str(r.url)


async def test_a_generic_oidc_sign_in_from_start_to_pages(gateway: Gateway, oidc: FakeOidc,
                                                          http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        status, html = await page(browser, f"{ui}/login")
        assert status == 200 and "Sign in with single sign-on" in html
        oidc.next_claims = {"preferred_username": "bob", "sub": "b-1", "email": "bob@example.com",
                            "name": "Bob"}
        authorize = await to_provider(browser, ui)
        sent = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        assert authorize.startswith(f"{oidc.issuer}/authorize?")
        assert sent["client_id"] == oidc.client_id and sent["response_type"] == "code"
        assert sent["redirect_uri"] == f"{gateway.url}/sso/callback" and sent["scope"] == "openid email profile"
        assert sent["code_challenge_method"] == "S256" and len(sent["state"]) >= 32
        callback = await back_from_provider(browser, authorize)
        status, html, landed = await finish(browser, callback)
        assert status == 200 and URL(landed).path == "/ui/sso-callback"
        assert 'http-equiv="refresh" content="0;url=keys"' in html
        form = oidc.token_forms[-1]
        assert form["grant_type"] == "authorization_code" and form["redirect_uri"] == sent["redirect_uri"]
        # Without GENERIC_INCLUDE_CLIENT_ID, LiteLLM (fastapi-sso with include_client_id=False) sends the
        # client by HTTP Basic alone: neither its id nor its secret in the body.
        assert sorted(form) == ["code", "code_verifier", "grant_type", "redirect_uri"]
        assert len(form["code_verifier"]) >= 43 and oidc.token_auths[-1] == basic(oidc)
        # Signed in as a new internal_user_viewer: their own pages, not an admin's.
        status, html = await page(browser, f"{ui}/keys")
        assert status == 200 and "internal_user_viewer" in html
        status, html = await page(browser, f"{ui}/organizations")
        assert status == 403 and "Only a proxy admin may do this" in html
    user = await api(http, gateway, "/user/info", method="GET", params={"user_id": "bob"})
    assert user["user_info"]["user_email"] == "bob@example.com"
    assert user["user_info"]["user_role"] == "internal_user_viewer"
    assert user["user_info"]["metadata"] == {"auth_provider": "generic"}
    [key] = user["keys"]
    assert key["metadata"]["login_method"] == "sso" and key["expires"] is not None

    # The second sign-in finds the same user, by id.
    async with browser_like() as browser:
        callback = await back_from_provider(browser, await to_provider(browser, ui))
        assert (await finish(browser, callback))[0] == 200
    user = await api(http, gateway, "/user/info", method="GET", params={"user_id": "bob"})
    assert len(user["keys"]) == 2


async def test_proxy_admin_id_makes_the_user_an_admin(gateway: Gateway, oidc: FakeOidc,
                                                      http: aiohttp.ClientSession) -> None:
    oidc.next_claims = {"preferred_username": "ada", "email": "ada@example.com"}
    ui = f"{gateway.url}{PREFIX}/ui"
    async with browser_like() as browser:
        authorize = await to_provider(browser, ui)
        sent = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
        assert sent["redirect_uri"] == f"{gateway.url}{PREFIX}/sso/callback"
        status, _, landed = await finish(browser, await back_from_provider(browser, authorize))
        assert status == 200 and URL(landed).path == f"{PREFIX}/ui/sso-callback"
        status, html = await page(browser, f"{ui}/organizations")
        assert status == 200 and "proxy_admin" in html
    user = await api(http, gateway, "/user/info", method="GET", params={"user_id": "ada"})
    assert user["user_info"]["user_role"] == "proxy_admin"


async def test_a_role_the_provider_names_is_taken_and_an_unknown_one_is_not(gateway: Gateway, oidc: FakeOidc,
                                                                          http: aiohttp.ClientSession) -> None:
    ui = f"{gateway.url}/ui"
    for user_id, role, expected in (("cy", "internal_user", "internal_user"),
                                    ("dee", "superuser", "internal_user_viewer")):
        oidc.next_claims = {"preferred_username": user_id, "role": role}
        async with browser_like() as browser:
            assert (await finish(browser, await back_from_provider(browser, await to_provider(browser, ui))))[0] == 200
        user = await api(http, gateway, "/user/info", method="GET", params={"user_id": user_id})
        assert user["user_info"]["user_role"] == expected


async def test_a_state_that_does_not_match_is_refused(gateway: Gateway, oidc: FakeOidc,
                                                      http: aiohttp.ClientSession) -> None:
    oidc.next_claims = {"preferred_username": "mallory"}
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        callback = await back_from_provider(browser, await to_provider(browser, ui))
        forged = str(URL(callback).update_query(state="not-the-state-this-browser-was-given"))
        status, html, _ = await finish(browser, forged)
        assert status == 403 and "does not belong to a sign-in this browser started" in html
        assert "Traceback" not in html
        status, _ = await page(browser, f"{ui}/keys")
        assert status == 303  # no session: back to the sign-in page
    # A browser that never started a sign-in (a code posted to someone else's browser) is refused too.
    async with browser_like() as starter, browser_like() as victim:
        callback = await back_from_provider(starter, await to_provider(starter, ui))
        status, html, _ = await finish(victim, callback)
        assert status == 403 and "does not match" in html
    await api(http, gateway, "/user/info", method="GET", params={"user_id": "mallory"}, status=404)


async def test_a_token_endpoint_error_is_a_page_saying_so(gateway: Gateway, oidc: FakeOidc) -> None:
    oidc.next_claims = {"preferred_username": "eve"}
    ui = f"{gateway.url}/ui"
    oidc.fail_token = True
    try:
        async with browser_like() as browser:
            status, html, _ = await finish(browser, await back_from_provider(browser, await to_provider(browser, ui)))
            assert status == 502 and "Sign-in failed" in html
            assert "token endpoint answered 400: invalid_grant - The authorization code is invalid or has " \
                "expired. " in text_of(html) + " "  # one full stop, not the provider's and another
            assert "Traceback" not in html
            status, _ = await page(browser, f"{ui}/keys")
            assert status == 303
    finally:
        oidc.fail_token = False
    assert "Traceback" not in gateway.log()


async def test_the_provider_refusing_and_a_missing_code_are_pages(gateway: Gateway) -> None:
    ui = f"{gateway.url}/ui"
    async with browser_like() as browser:
        await to_provider(browser, ui)
        status, html = await page(browser, f"{ui}/sso-callback?error=access_denied&error_description=<b>no</b>")
        assert status == 401 and "It answered: &lt;b&gt;no&lt;/b&gt;" in html
        status, html = await page(browser, f"{gateway.url}/sso/callback")
        assert status == 303
        async with browser.get(f"{gateway.url}/sso/callback") as r:
            assert r.status == 403 and "does not match" in await r.text()


async def test_litellm_start_address_leads_to_the_provider(gateway: Gateway, oidc: FakeOidc) -> None:
    async with browser_like() as browser:
        async with browser.get(f"{gateway.url}/sso/key/generate", allow_redirects=False) as r:
            assert r.status == 303 and URL(gateway.url).join(URL(r.headers["Location"])).path == "/ui/sso-login"


async def sign_in_as(gateway: Gateway, oidc: FakeOidc, browser: aiohttp.ClientSession,
                     claims: dict[str, str]) -> tuple[int, str]:
    oidc.next_claims = claims
    status, html, _ = await finish(browser, await back_from_provider(browser, await to_provider(
        browser, f"{gateway.url}/ui")))
    return status, html


async def test_a_user_of_an_allowed_domain_signs_in(restricted: Gateway, oidc: FakeOidc,
                                                    http: aiohttp.ClientSession) -> None:
    # Each domain of the list; the email's domain in another case is the same domain (LiteLLM compares
    # them as typed, which refuses Amy@EXAMPLE.com; domain names have no case).
    for user_id, email in (("amy", "amy@example.com"), ("zed", "Zed@Corp.Example.ORG")):
        async with browser_like() as browser:
            status, html = await sign_in_as(restricted, oidc, browser, {"preferred_username": user_id,
                                                                        "email": email})
            assert status == 200, text_of(html)
            assert (await page(browser, f"{restricted.url}/ui/keys"))[0] == 200
        user = await api(http, restricted, "/user/info", method="GET", params={"user_id": user_id})
        assert user["user_info"]["user_email"] == email and len(user["keys"]) == 1


async def test_a_user_of_another_domain_is_refused_and_nothing_is_made(restricted: Gateway, oidc: FakeOidc,
                                                                       http: aiohttp.ClientSession) -> None:
    keys = (await api(http, restricted, "/key/list", method="GET"))["total_count"]
    # Another domain, a subdomain of an allowed one (LiteLLM matches the whole domain), a name that only
    # ends like one.
    for user_id, email in (("mal", "mal@other.com"), ("sub", "sub@mail.example.com"),
                           ("ends", "ends@notexample.com")):
        async with browser_like() as browser:
            status, html = await sign_in_as(restricted, oidc, browser, {"preferred_username": user_id,
                                                                        "email": email})
            domain = email.partition("@")[2]
            assert status == 401 and "Not allowed" in html, text_of(html)
            assert f"The email domain {domain} is not one allowed to sign in here" in text_of(html)
            assert "Traceback" not in html
            assert SESSION_COOKIE not in {cookie.key for cookie in browser.cookie_jar}
            assert (await page(browser, f"{restricted.url}/ui/keys"))[0] == 303
        await api(http, restricted, "/user/info", method="GET", params={"user_id": user_id}, status=404)
    assert (await api(http, restricted, "/key/list", method="GET"))["total_count"] == keys


async def test_include_client_id_sends_the_id_in_the_body_beside_basic(restricted: Gateway,
                                                                       oidc: FakeOidc) -> None:
    async with browser_like() as browser:
        status, html = await sign_in_as(restricted, oidc, browser, {"preferred_username": "ivy",
                                                                    "email": "ivy@example.com"})
        assert status == 200, text_of(html)
    # fastapi-sso's token request as LiteLLM makes it: HTTP Basic always, include_client_id adds the id to
    # the body, never the secret (two ways of authenticating in one request, which RFC 6749 forbids).
    form = oidc.token_forms[-1]
    assert sorted(form) == ["client_id", "code", "code_verifier", "grant_type", "redirect_uri"]
    assert form["client_id"] == oidc.client_id and oidc.token_auths[-1] == basic(oidc)


def test_the_environment_read_as_litellm_reads_it() -> None:
    assert read({}) is None
    assert read({"GENERIC_CLIENT_ID": "x"}) == SsoMisconfigured("generic", (
        "GENERIC_CLIENT_SECRET", "GENERIC_AUTHORIZATION_ENDPOINT", "GENERIC_TOKEN_ENDPOINT",
        "GENERIC_USERINFO_ENDPOINT"))
    google = read({"GOOGLE_CLIENT_ID": "g", "GOOGLE_CLIENT_SECRET": "s", "GENERIC_CLIENT_ID": "x",
                   "PROXY_BASE_URL": "https://llm.example.com/", "PROXY_ADMIN_ID": "1, 2"})
    assert isinstance(google, SsoConfig) and google.provider == "google" and google.id_attribute == "sub"
    assert google.base_url == "https://llm.example.com" and google.admin_ids == {"1", "2"}
    microsoft = read({"MICROSOFT_CLIENT_ID": "m", "MICROSOFT_CLIENT_SECRET": "s", "MICROSOFT_TENANT": "t1"})
    assert isinstance(microsoft, SsoConfig)
    assert microsoft.authorization_endpoint == "https://login.microsoftonline.com/t1/oauth2/v2.0/authorize"
    generic = read({**FakeOidc(port=1).env(), "GENERIC_USER_ID_ATTRIBUTE": "sub", "GENERIC_CLIENT_USE_PKCE": "false"})
    assert isinstance(generic, SsoConfig) and generic.id_attribute == "sub" and not generic.pkce
    assert not generic.include_client_id and generic.allowed_domains is None
    for flag, included in (("true", True), ("TRUE", True), ("false", False), ("", False)):
        config = read(FakeOidc(port=1).env(GENERIC_INCLUDE_CLIENT_ID=flag))
        assert isinstance(config, SsoConfig) and config.include_client_id is included
    restricted = read(FakeOidc(port=1).env(ALLOWED_EMAIL_DOMAINS="example.com, corp.example.org,"))
    assert isinstance(restricted, SsoConfig) and restricted.allowed_domains == {"example.com", "corp.example.org"}


async def test_sso_off_is_a_page_saying_so() -> None:
    with Gateway({"model_list": [{"model_name": "echo", "litellm_params": {"model": "mock/echo"}}],
                  "general_settings": {"master_key": MASTER}}) as gw:
        async with browser_like() as browser:
            status, html = await page(browser, f"{gw.url}/ui/login")
            assert status == 200 and "sso-login" not in html
            status, html = await page(browser, f"{gw.url}/ui/sso-login")
            assert status == 404 and "Single sign-on is off" in html
