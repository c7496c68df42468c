"""OpenAI's Codex CLI itself (npm `@openai/codex`, run as `codex exec`) with the gateway as its model provider, over
the Responses API: to a deployment that serves it (the fake of tests/responses_fake.py, relayed byte for byte), to
a chat-only vLLM (tests/fakes.py's, translated to chat completions) and to an `anthropic/` deployment (on to the
Messages API). Codex runs a command and applies a patch the model asks for, and the key pays what the upstream
reported.

Codex is pinned (what it sends changes with its version) and installed on first use into a cache outside the
repository (`~/.cache/gateway-tests/codex-<version>`; CODEX_PREFIX names another, CODEX_BIN a launcher to use as
it is). Without node and npm to install it, the tests are skipped, except under CI=true.

It runs offline: CODEX_HOME is a new folder whose config.toml names the gateway as its only provider
(`wire_api = "responses"`, the key in the variable `env_key` names), analytics and the update check off, no
retries; HOME is that folder too and no variable of the calling shell reaches it. For a chat deployment Codex is
told to leave out what a chat server cannot run (`web_search = "disabled"`, `[agents] enabled = false`); without
that, its first request is refused naming the tool, which Codex shows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import orjson
import pytest

from tests.anthropic_fake import KEY, FakeAnthropic
from tests.fakes import VllmUpstream
from tests.harness import Gateway
from tests.responses_fake import USAGE, ResponsesUpstream
from tests.test_claude_code import IN_PRICE, OUT_PRICE, chat_cost, cost_of

VERSION = "0.171.0"
PACKAGE = "@openai/codex"
MASTER = "sk-codex-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
KEY_VARIABLE = "GATEWAY_API_KEY"
# Codex knows gpt-5.5 (it offers that model its apply_patch as a custom tool) and gpt-6-sol; the other two names
# it does not know, and it falls back to plain function tools for them.
NATIVE = "gpt-6-sol"  # a deployment serving the Responses API
CHAT = "gpt-5.5"  # served by vLLM: translated to chat completions
OPEN = "qwen3-coder"  # the same vLLM, under a name Codex does not know
CLAUDE = "claude-sonnet-5"  # an anthropic/ deployment: through chat completions to the Messages API
RUN = "Run: "  # a prompt `Run: <command>` makes the fakes call exec_command with it
ADD = "Add file: "  # `Add file: <name>` makes them call apply_patch adding that file
OFFLINE = """[analytics]
enabled = false
"""
FOR_CHAT = """web_search = "disabled"
[agents]
enabled = false
"""


def _asked(texts: list[str]) -> tuple[str, str] | None:
    for text in reversed(texts):
        for prefix in (RUN, ADD):
            if text.startswith(prefix):
                return prefix, text[len(prefix):].strip()
    return None


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    return [block.get("text", "") for block in content or [] if isinstance(block, dict)]


def _call(asked: tuple[str, str] | None, offered: set[str]) -> tuple[str, dict[str, Any]] | None:
    if asked is None:
        return None
    prefix, what = asked
    if prefix == RUN and "exec_command" in offered:
        return "exec_command", {"cmd": what}
    if prefix == ADD and "apply_patch" in offered:
        return "apply_patch", {"input": f"*** Begin Patch\n*** Add File: {what}\n+hello from the patch\n"
                                        "*** End Patch\n"}
    return None


class CodexVllm(VllmUpstream):
    """The fake vLLM, with a model that calls Codex's tools only when the last user turn asks."""

    def calls(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        last = next(m for m in reversed(body["messages"]) if m["role"] == "user")
        return _call(_asked(_texts(last)), {tool["function"]["name"] for tool in body.get("tools") or []})


class CodexAnthropic(FakeAnthropic):
    """The fake Anthropic, with the same model."""

    def _compose(self, body: dict[str, Any], steer: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                              dict[str, Any]]:
        message, blocks, usage = super()._compose({**body, "tools": []}, steer)
        last = body["messages"][-1]
        answered = any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last.get("content") or [])
        called = None if answered else _call(_asked(_texts(last)), {t.get("name") for t in body.get("tools") or []})
        if called is not None:
            blocks = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": called[0],
                       "input": called[1]}]
            usage["output_tokens"] = len(orjson.dumps(blocks)) // 4 + 1
        return message, blocks, usage


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Codex is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def codex() -> list[str]:
    """The command that runs Codex: its npm launcher under node, installed the first time. The launcher runs the
    native build npm put in place as an optional dependency for this platform."""
    node = shutil.which("node")
    if explicit := os.environ.get("CODEX_BIN"):
        return [explicit]
    prefix = Path(os.environ.get("CODEX_PREFIX") or Path.home() / ".cache" / "gateway-tests" / f"codex-{VERSION}")
    launcher = prefix / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"
    stamp = prefix / ".installed"
    npm = shutil.which("npm")
    if node is None:
        unavailable("node is needed to run Codex")
    if not stamp.exists():
        if npm is None:
            unavailable("npm is needed to install Codex")
        try:
            subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                            f"{PACKAGE}@{VERSION}"], check=True, capture_output=True, timeout=600)
            said = subprocess.run([node, str(launcher), "--version"], check=True, capture_output=True, text=True,
                                  timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            unavailable(f"cannot install {PACKAGE}@{VERSION}: {exc}")
        if VERSION not in said.stdout:
            unavailable(f"{PACKAGE}@{VERSION} says it is {said.stdout.strip()!r}")
        stamp.touch()
    return [node, str(launcher)]


@pytest.fixture(scope="module")
def native() -> Iterator[ResponsesUpstream]:
    fake = ResponsesUpstream("native")
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def vllm() -> Iterator[CodexVllm]:
    fake = CodexVllm("vllm")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def claude() -> Iterator[CodexAnthropic]:
    fake = CodexAnthropic("claude")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(native: ResponsesUpstream, vllm: CodexVllm, claude: CodexAnthropic) -> Iterator[Gateway]:
    prices = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE,
              "cache_read_input_token_cost": IN_PRICE, "cache_creation_input_token_cost": IN_PRICE}

    def entry(name: str, model: str, base: str, key: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {"model": model, "api_base": base, "api_key": key, **prices}}

    with Gateway({
        "model_list": [entry(NATIVE, "openai/gpt-6-sol", native.base_url, "sk-openai"),
                       entry(CHAT, "hosted_vllm/Qwen/Qwen3-Coder-30B-A3B-Instruct", vllm.base_url, "sk-vllm"),
                       entry(OPEN, "hosted_vllm/Qwen/Qwen3-Coder-30B-A3B-Instruct", vllm.base_url, "sk-vllm"),
                       entry(CLAUDE, f"anthropic/{CLAUDE}", claude.api_base, KEY)],
        "general_settings": {"master_key": MASTER},
    }) as gw:
        yield gw
        assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture
async def admin() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def new_key(http: aiohttp.ClientSession, gw: Gateway) -> str:
    async with http.post(f"{gw.url}/key/generate", json={"key_alias": f"codex-{uuid.uuid4().hex[:8]}"},
                         headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


async def spend_reaches(http: aiohttp.ClientSession, gw: Gateway, key: str, expected: float) -> float:
    """The key's spend once it is `expected` (spend is written after the answer), or the last seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
            spend = float((await r.json())["info"].get("spend") or 0.0)
        if spend == pytest.approx(expected) or loop.time() > deadline:
            return spend
        await asyncio.sleep(0.1)


def run_codex(command: list[str], gw: Gateway, key: str, model: str, prompt: str, settings: str = "",
              work: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`codex exec` in a working folder of its own (or `work`), with a new CODEX_HOME naming the gateway."""
    home = Path(tempfile.mkdtemp(prefix="codex-home-"))
    work = work or home / "work"
    work.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "gateway"\napproval_policy = "never"\n'
        f'sandbox_mode = "danger-full-access"\ncheck_for_update_on_startup = false\n{settings}\n{OFFLINE}'
        f'[model_providers.gateway]\nname = "gateway"\nbase_url = "{gw.url}/v1"\nwire_api = "responses"\n'
        f'env_key = "{KEY_VARIABLE}"\nrequest_max_retries = 0\nstream_max_retries = 0\n')
    try:
        return subprocess.run(
            [*command, "exec", "--skip-git-repo-check", "--ephemeral", "--color", "never", prompt], cwd=work,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(home),
                 KEY_VARIABLE: key})
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def test_codex_on_a_deployment_serving_the_responses_api(
        codex: list[str], gateway: Gateway, native: ResponsesUpstream, admin: aiohttp.ClientSession) -> None:
    """Relayed as Codex sent it: for this model its tools come as an `additional_tools` input item of namespaces
    (the custom `exec` of its code mode among them), with reasoning over all turns, `include` of encrypted reasoning
    with store off, prompt_cache_key and client_metadata; all of it reaches the upstream."""
    key = await new_key(admin, gateway)
    before = len(native.seen)
    run = await asyncio.to_thread(run_codex, codex, gateway, key, NATIVE, "say hi")
    assert (run.returncode, run.stdout.strip()) == (0, "Hello from the Responses API. [native]"), run.stderr
    seen = native.seen[before:]
    assert [s.path for s in seen] == ["/v1/responses"]
    body = seen[0].body
    assert body is not None and body["model"] == "gpt-6-sol" and body["stream"] is True
    assert body["store"] is False and body["include"] == ["reasoning.encrypted_content"]
    assert body["prompt_cache_key"] and body["client_metadata"]["session_id"] == body["prompt_cache_key"]
    assert body["input"][0]["type"] == "additional_tools" and body["reasoning"]["context"] == "all_turns"
    spent = (USAGE["input_tokens"] * IN_PRICE + USAGE["output_tokens"] * OUT_PRICE)
    assert await spend_reaches(admin, gateway, key, spent) == pytest.approx(spent)


async def test_a_stream_broken_off_reaches_codex_as_the_responses_apis_error(
        codex: list[str], gateway: Gateway, native: ResponsesUpstream, admin: aiohttp.ClientSession) -> None:
    """The upstream's connection lost mid-answer: the gateway's `response.failed` after its `error` event ends the
    stream and Codex reports its message, rather than a stream that closed without response.completed."""
    key = await new_key(admin, gateway)
    run = await asyncio.to_thread(run_codex, codex, gateway, key, NATIVE, "break")
    said = run.stdout + run.stderr
    assert run.returncode != 0 and "broke off the stream" in said, said


@pytest.mark.parametrize("model", [CHAT, OPEN])
async def test_codex_on_a_chat_deployment_runs_a_command(
        codex: list[str], gateway: Gateway, vllm: CodexVllm, admin: aiohttp.ClientSession, model: str) -> None:
    """The model's exec_command call reaches Codex as a function_call item, Codex runs it, and its output goes
    back as a tool message: the answer quotes it. Each of the two chat completions is paid as vLLM reported."""
    key = await new_key(admin, gateway)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    before = len(vllm.seen)
    run = await asyncio.to_thread(run_codex, codex, gateway, key, model, f"{RUN}echo {marker}", FOR_CHAT)
    assert run.returncode == 0 and run.stdout.startswith("The tool said: "), run.stdout + run.stderr
    assert marker in run.stdout
    seen = vllm.seen[before:]
    assert [s.outcome for s in seen] == ["completed", "completed"]
    first, second = seen[0].body, seen[1].body
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert not {"include", "prompt_cache_key", "client_metadata", "store", "reasoning"} & set(first)
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "exec_command"
    assert orjson.loads(call["function"]["arguments"]) == {"cmd": f"echo {marker}"}
    result = second["messages"][-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["id"] and marker in result["content"]
    spent = sum(chat_cost(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, key, spent) == pytest.approx(spent)


async def test_codex_applies_a_patch_through_chat_completions(
        codex: list[str], gateway: Gateway, vllm: CodexVllm, admin: aiohttp.ClientSession) -> None:
    """apply_patch, a custom (freeform) tool, is offered to vLLM as a function of one string; the call comes back
    to Codex as a custom_tool_call with the raw patch, which Codex applies, and its output goes back up."""
    key = await new_key(admin, gateway)
    work = Path(tempfile.mkdtemp(prefix="codex-work-"))
    before = len(vllm.seen)
    try:
        run = await asyncio.to_thread(run_codex, codex, gateway, key, CHAT, f"{ADD}hello.txt", FOR_CHAT, work)
        assert run.returncode == 0 and run.stdout.startswith("The tool said: "), run.stdout + run.stderr
        assert (work / "hello.txt").read_text() == "hello from the patch\n"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seen = vllm.seen[before:]
    offered = {tool["function"]["name"]: tool["function"] for tool in seen[0].body["tools"]}
    assert offered["apply_patch"]["parameters"]["required"] == ["input"]
    call = seen[1].body["messages"][-2]["tool_calls"][0]
    assert call["function"]["name"] == "apply_patch"
    assert orjson.loads(call["function"]["arguments"])["input"].startswith("*** Begin Patch\n*** Add File: ")
    spent = sum(chat_cost(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, key, spent) == pytest.approx(spent)


async def test_codex_on_an_anthropic_deployment(
        codex: list[str], gateway: Gateway, claude: CodexAnthropic, admin: aiohttp.ClientSession) -> None:
    """Through both translations: Codex's developer messages as Anthropic's system prompt, its exec_command as a
    tool_use, the command's output as the tool_result the fake accepts only if it answers that call."""
    key = await new_key(admin, gateway)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    before = len(claude.seen)
    run = await asyncio.to_thread(run_codex, codex, gateway, key, CLAUDE, f"{RUN}echo {marker}", FOR_CHAT)
    assert run.returncode == 0 and run.stdout.startswith("The tool said: "), run.stdout + run.stderr
    assert marker in run.stdout
    seen = claude.seen[before:]
    assert [s.status for s in seen] == [200, 200]
    assert seen[0].body["system"] and seen[0].headers["x-api-key"] == KEY
    spent = sum(cost_of(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, key, spent) == pytest.approx(spent)


async def test_a_tool_a_chat_deployment_cannot_run_is_refused_by_name_and_codex_says_so(
        codex: list[str], gateway: Gateway, vllm: CodexVllm, admin: aiohttp.ClientSession) -> None:
    """Codex's defaults offer, for a model it does not know, a namespace of agent tools and its web search, which a
    chat server cannot run: the 400 names the first and the settings that leave both out, Codex shows it, and
    nothing reaches vLLM or is charged."""
    key = await new_key(admin, gateway)
    before = len(vllm.seen)
    run = await asyncio.to_thread(run_codex, codex, gateway, key, OPEN, "say hi")
    assert run.returncode != 0
    said = run.stdout + run.stderr
    assert "tools of type 'namespace' are not translated to chat completions" in said, said
    assert 'web_search = \\"disabled\\"' in said and "[agents] enabled = false" in said
    assert len(vllm.seen) == before
    assert await spend_reaches(admin, gateway, key, 0.0) == 0.0
