"""Configs through the real CLI: the ones that must not start, and the ones that start with warnings."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.config import ConfigError, load_config
from tests.fakes import FakeUpstream
from tests.harness import ROOT, Gateway, deployment, free_port, run_cli

HELLO = [{"role": "user", "content": "hello"}]
LOOPBACK = "http://127.0.0.1:9/v1"  # nothing listens there, and nothing is sent at start
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))


def mock(name: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": f"mock/{name}", **params}}


def openai(name: str, **params: Any) -> dict[str, Any]:
    return deployment(name, LOOPBACK, **params)


@contextmanager
def running(config: dict[str, Any] | str, env: dict[str, str] | None = None) -> Iterator[Gateway]:
    """`with Gateway(...)`, except that a start that fails still closes the process and its log."""
    gateway = Gateway(config, env=env)
    try:
        yield gateway.start()
    finally:
        gateway.stop()


def refused(config: dict[str, Any] | str, *args: str) -> str:
    """Run the CLI on a config that must not start; return its one line on stderr."""
    result = run_cli(config, *args, timeout=10)  # a hang guard: a config that wrongly starts never exits
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("gateway: config error: "), lines[0]
    return lines[0]


REFUSED = [
    pytest.param(
        {"model_list": [openai("a", rpm="lots")]},
        ["model_list[0].litellm_params.rpm", "int", "str"], id="wrong-type"),
    pytest.param(
        {"model_list": [openai("a", tpm=[1])]},
        ["model_list[0].litellm_params.tpm"], id="wrong-type-list"),
    pytest.param(
        {"model_list": [mock("a"), {"model_name": "b", "litellm_params": {"model": "nosuch/x"}}]},
        ["model_list[1].litellm_params.model", "nosuch"], id="unknown-provider"),
    pytest.param(
        {"model_list": [openai("a", api_key="os.environ/DEFINITELY_NOT_SET_X")]},
        ["DEFINITELY_NOT_SET_X", "model_list[0].litellm_params.api_key"], id="missing-env-var"),
    pytest.param(
        {"model_list": [mock("a")], "router_settings": {"redis_password": "os.environ/DEFINITELY_NOT_SET_Y"}},
        ["DEFINITELY_NOT_SET_Y", "router_settings.redis_password"], id="missing-env-var-in-settings"),
    pytest.param(
        {"model_list": [{**mock("a"), "model_info": {"id": "same"}}, mock("b"),
                        {**mock("c"), "model_info": {"id": "same"}}]},
        ["model_list[2].model_info.id", "model_list[0]", "same"], id="duplicate-id"),
    pytest.param(
        {"model_list": [mock("a")], "router_settings": {"model_group_alias": {"gpt-4": "nope"}}},
        ["router_settings.model_group_alias.gpt-4", "nope"], id="alias-to-nothing"),
    pytest.param(
        {"model_list": [mock("a")],
         "router_settings": {"model_group_alias": {"internal": {"model": "nope", "hidden": True}}}},
        ["router_settings.model_group_alias.internal", "nope"], id="hidden-alias-to-nothing"),
    pytest.param(
        {"model_list": [mock("a")], "router_settings": {"routing_strategy": "fastest"}},
        ["router_settings.routing_strategy", "fastest"], id="unknown-routing-strategy"),
    pytest.param(
        {"model_list": [mock("a"), {**mock("b"), "model_info": {"mode": "banana"}}]},
        ["model_list[1].model_info.mode", "banana"], id="unknown-mode"),
    pytest.param(
        {"model_list": [openai("a"), deployment("b", "127.0.0.1:8000/v1")]},
        ["model_list[1].litellm_params.api_base", "127.0.0.1:8000/v1"], id="api-base-without-scheme"),
    pytest.param(
        {"model_list": [deployment("a", "ftp://127.0.0.1/v1")]},
        ["model_list[0].litellm_params.api_base", "ftp://127.0.0.1/v1"], id="api-base-not-http"),
    pytest.param(
        {"model_list": [{"model_name": "q", "litellm_params": {"model": "hosted_vllm/Qwen/Qwen3-8B"}}]},
        ["model_list[0].litellm_params.api_base", "hosted_vllm"], id="hosted-vllm-without-api-base"),
    pytest.param(
        "model_list:\n  - model_name: a\n   litellm_params: [\n",
        ["config.yaml", "not valid YAML", "line 3"], id="invalid-yaml"),
    pytest.param("- model_name: a\n- model_name: b\n", ["mapping", "top level"], id="top-level-list"),
    pytest.param(
        {"model_list": [mock("a"), {"model_name": "b"}]},
        ["model_list[1]", "litellm_params"], id="entry-without-litellm-params"),
    pytest.param(
        {"model_list": [{"litellm_params": {"model": "mock/a"}}]},
        ["model_list[0]", "model_name"], id="entry-without-model-name"),
    pytest.param("", ["model_list is empty", "store_model_in_db"], id="empty-file"),
    pytest.param({"general_settings": {"master_key": "sk-x"}}, ["model_list is empty"], id="no-models"),
    pytest.param({"model_lists": [mock("a")]}, ["model_list is empty", "model_lists; a typo?"], id="typo-top-level"),
    pytest.param({"model_list": [mock("a")], "include": "missing.yaml"}, ["cannot read config", "missing.yaml"],
                 id="include-missing"),
    pytest.param({"model_list": [mock("a")], "general_settings": {"maximum_spend_logs_retention_period": "a month"}},
                 ["general_settings.maximum_spend_logs_retention_period", "a month", "7d"], id="retention-period"),
]


@pytest.mark.parametrize("config, named", REFUSED)
def test_config_that_must_not_start(monkeypatch: pytest.MonkeyPatch, config: dict[str, Any] | str,
                                    named: list[str]) -> None:
    # The gateway takes a missing api_base from these; the test must not depend on the caller's shell.
    monkeypatch.delenv("HOSTED_VLLM_API_BASE", raising=False)
    line = refused(config)
    missing = [part for part in named if part not in line]
    assert missing == [], line


def test_missing_config_file() -> None:
    # argparse keeps the last --config, so this replaces the file run_cli wrote.
    path = f"/nonexistent-{free_port()}/config.yaml"
    line = refused({}, "--config", path)
    assert "cannot read config" in line and path in line and "No such file" in line


# One gateway for every config below that must start: unknown keys, environment_variables,
# and each provider's way of building the upstream URL, all against the fake upstream.
GREETING = "hello from environment_variables"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstream) -> Iterator[Gateway]:
    root = f"http://127.0.0.1:{upstream.port}"
    config = {
        "model_list": [
            deployment("chat", upstream.base_url, not_a_real_param=1),
            mock("greeting", mock_response="os.environ/GREETING_FROM_CONFIG"),
            deployment("keyed", upstream.base_url, api_key="os.environ/KEY_FROM_CONFIG"),
            deployment("vllm", upstream.base_url, model="hosted_vllm/Qwen/Qwen3-8B"),
            deployment("vllm-slash", upstream.base_url + "/", model="hosted_vllm/Qwen/Qwen3-8B"),
            deployment("ollama-chat", root, model="ollama_chat/llama3.1:8b"),
            deployment("ollama", root + "/", model="ollama/llama3"),
            deployment("ollama-v1", upstream.base_url, model="ollama_chat/qwen2.5"),
            # Anthropic's OpenAI-compatible API (anthropic/ speaks its Messages API: tests/test_anthropic_messages.py).
            deployment("anthropic", root, model="anthropic_openai/claude-sonnet-4-5"),
            # Keys from the provider's environment variable: no api_key in the config.
            {"model_name": "env-openai",
             "litellm_params": {"model": "openai/env-openai-upstream", "api_base": upstream.base_url}},
            {"model_name": "env-vllm", "litellm_params": {"model": "hosted_vllm/m", "api_base": upstream.base_url}},
            {"model_name": "env-anthropic", "litellm_params": {"model": "anthropic_openai/claude", "api_base": root}},
        ],
        "environment_variables": {"GREETING_FROM_CONFIG": GREETING, "KEY_FROM_CONFIG": "sk-set-by-config"},
        "general_settings": {"max_request_size_mb": 8, "not_a_real_setting": True},
        "litellm_settings": {"drop_params": True},
        "router_settings": {"routing_strategy": "least-busy"},
        "foo_setting": 1,
    }
    env = {"OPENAI_API_KEY": "sk-openai-from-env", "HOSTED_VLLM_API_KEY": "sk-vllm-from-env",
           "ANTHROPIC_API_KEY": "sk-anthropic-from-env"}
    with running(config, env) as gw:
        yield gw


async def chat(http: aiohttp.ClientSession, gateway: Gateway, model: str) -> dict[str, Any]:
    async with http.post(f"{gateway.url}/v1/chat/completions", json={"model": model, "messages": HELLO}) as r:
        body = await r.json()
        assert r.status == 200, body
        return dict(body)


def test_unknown_keys_are_warnings_naming_the_path(gateway: Gateway) -> None:
    warnings = [line for line in gateway.log().splitlines() if "unknown key" in line]
    assert all("WARNING" in line for line in warnings), warnings
    named = sorted(m.group(1) for m in (re.search(r"unknown key (\S+) is ignored", line) for line in warnings) if m)
    assert named == ["foo_setting", "general_settings.not_a_real_setting",
                     "model_list[0].litellm_params.not_a_real_param"]


async def test_gateway_with_unknown_keys_serves(gateway: Gateway, upstream: FakeUpstream,
                                                http: aiohttp.ClientSession) -> None:
    body = await chat(http, gateway, "chat")
    assert body["choices"][0]["message"]["content"] == "alpha says hi"
    assert "not_a_real_param" not in upstream.seen[-1].body


async def test_environment_variables_feed_os_environ_references(gateway: Gateway, upstream: FakeUpstream,
                                                               http: aiohttp.ClientSession) -> None:
    body = await chat(http, gateway, "greeting")
    assert body["choices"][0]["message"]["content"] == GREETING
    await chat(http, gateway, "keyed")
    assert upstream.seen[-1].headers["Authorization"] == "Bearer sk-set-by-config"


@pytest.mark.parametrize("model, upstream_model", [
    ("vllm", "Qwen/Qwen3-8B"),
    ("vllm-slash", "Qwen/Qwen3-8B"),
    ("ollama-chat", "llama3.1:8b"),
    ("ollama", "llama3"),
    ("ollama-v1", "qwen2.5"),
    ("anthropic", "claude-sonnet-4-5"),
])
async def test_upstream_url_and_model_per_provider(gateway: Gateway, upstream: FakeUpstream,
                                                   http: aiohttp.ClientSession, model: str,
                                                   upstream_model: str) -> None:
    upstream.reset()
    body = await chat(http, gateway, model)
    assert body["choices"][0]["message"]["content"] == "alpha says hi"
    seen = upstream.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == upstream_model
    assert seen.headers["Authorization"] == "Bearer sk-upstream-secret"


@pytest.mark.parametrize("model, key", [
    ("env-openai", "sk-openai-from-env"),
    ("env-vllm", "sk-vllm-from-env"),
    ("env-anthropic", "sk-anthropic-from-env"),
])
async def test_provider_key_from_the_environment(gateway: Gateway, upstream: FakeUpstream,
                                                 http: aiohttp.ClientSession, model: str, key: str) -> None:
    await chat(http, gateway, model)
    seen = upstream.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {key}"


async def test_a_configured_key_wins_over_the_environment(gateway: Gateway, upstream: FakeUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    await chat(http, gateway, "chat")
    assert upstream.seen[-1].headers["Authorization"] == "Bearer sk-upstream-secret"


# LiteLLM configs often keep a section whose every line is commented out.
EMPTY_SECTIONS = """\
model_list:
  - model_name: a
    litellm_params:
      model: mock/a
general_settings:
  # master_key: sk-1234
litellm_settings:
router_settings:
environment_variables:
"""


async def test_include_joins_model_lists_and_merges_settings(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """LiteLLM's `include:`: files beside the config, their model_list joined to the config's own,
    their settings merged under the config's (which win), and includes within includes."""
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({
        "include": ["more-models.yaml"], "model_list": [mock("included")],
        "router_settings": {"num_retries": 5, "allowed_fails": 9}}))
    (tmp_path / "more-models.yaml").write_text(yaml.safe_dump({"model_list": [mock("nested")]}))
    config = tmp_path / "main.yaml"
    config.write_text(yaml.safe_dump({"include": "models.yaml", "model_list": [mock("own")],
                                      "router_settings": {"num_retries": 1}}))
    loaded = load_config(config)
    assert [m.model_name for m in loaded.model_list] == ["nested", "included", "own"]
    assert (loaded.router_settings.num_retries, loaded.router_settings.allowed_fails) == (1, 9)
    gateway = Gateway("")
    gateway.config_path = config
    with gateway:
        async with http.get(f"{gateway.url}/v1/models") as r:
            assert sorted(m["id"] for m in (await r.json())["data"]) == ["included", "nested", "own"]
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump({"include": "loop.yaml", "model_list": [mock("x")]}))
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")


def test_settings_accepted_but_not_acted_on_are_named_at_start() -> None:
    config = {"model_list": [mock("a")], "litellm_settings": {"drop_params": True, "set_verbose": False},
              "router_settings": {"enable_pre_call_checks": True}}
    with running(config) as gw:
        warnings = [line for line in gw.log().splitlines() if "does not act on" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        "litellm_settings.drop_params, router_settings.enable_pre_call_checks"), warnings


def test_store_model_in_db_allows_starting_without_models() -> None:
    with running({"general_settings": {"store_model_in_db": True}}) as gw:
        assert "serving 0 deployments" in gw.log()


def test_sections_left_empty_start() -> None:
    with running(EMPTY_SECTIONS) as gw:
        assert "unknown key" not in gw.log()


def test_environment_variables_may_be_numbers() -> None:
    config = {"model_list": [mock("a", mock_response="os.environ/NUMBER_FROM_CONFIG")],
              "environment_variables": {"NUMBER_FROM_CONFIG": 6379}}
    with running(config) as gw:
        assert gw.process is not None and gw.process.poll() is None


def example_env(text: str) -> dict[str, str]:
    """Dummy loopback values for every variable an example config references."""
    env = {}
    for i, name in enumerate(sorted(set(re.findall(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)", text)))):
        env[name] = f"http://127.0.0.1:{9000 + i}/v1" if "BASE" in name or "URL" in name else f"sk-dummy-{i}"
    return env


def listed_names(config: dict[str, Any]) -> list[str]:
    groups = list(dict.fromkeys(e["model_name"] for e in config.get("model_list") or []))
    aliases = [alias for alias, target in ((config.get("router_settings") or {}).get("model_group_alias") or {}).items()
               if not (isinstance(target, dict) and target.get("hidden")) and alias not in groups]
    return [name for name in groups + aliases if "*" not in name]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
async def test_example_config_starts_and_lists_its_models(path: Path, http: aiohttp.ClientSession) -> None:
    text = path.read_text()
    config = yaml.safe_load(text)
    expected = listed_names(config)
    assert expected, "an example config with no model to list tests nothing"
    prefixes = ["", *((config.get("gateway_settings") or {}).get("path_prefixes") or [])]
    with running(text, example_env(text)) as gw:
        assert "unknown key" not in gw.log()
        for prefix in prefixes:
            async with http.get(f"{gw.url}{prefix.rstrip('/')}/v1/models") as r:
                assert r.status == 200
                listed = [m["id"] for m in (await r.json())["data"]]
            assert sorted(listed) == sorted(expected), prefix
            for name in listed:
                async with http.get(f"{gw.url}{prefix.rstrip('/')}/v1/models/{name}") as r:
                    assert r.status == 200, name
