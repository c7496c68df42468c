"""Claude Code itself (npm `@anthropic-ai/claude-code`, run as `claude -p`) with the gateway as its Anthropic API,
and the requests it was recorded sending (tests/fixtures/claude_code/) replayed through the gateway.

The deployments are native `anthropic/` ones on the fake Anthropic of tests/anthropic_fake.py, which checks every
request as Anthropic's API does; Claude Code asks for its models by Anthropic's names, so the model list carries
those names. Claude Code is pinned (what it sends changes with its version) and installed on first use into a
cache outside the repository (`~/.cache/gateway-tests/claude-code-<version>`; CLAUDE_CODE_PREFIX names another,
CLAUDE_CODE_BIN a binary to use as it is). Without node and npm to install it, the tests that run it are skipped,
except under CI=true.

It runs offline: its telemetry, error reports, auto-update and every other call that is not the API are off, HOME
is a new folder, and no variable of the calling shell reaches it.
"""

from __future__ import annotations

import asyncio
import os
import re
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
from tests.harness import ROOT, Gateway

VERSION = "2.1.197"
PACKAGE = "@anthropic-ai/claude-code"
FIXTURES = ROOT / "tests" / "fixtures" / "claude_code"
MASTER = "sk-claude-code-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PREFIX = "/olla/litellm"
# The models this version asks for: its default, `--model sonnet` and `--model haiku`.
MODELS = ("claude-opus-4-8", "claude-sonnet-5", "claude-haiku-4-5-20251001")
# Cache reads and writes priced as input: the cost is then the same however the gateway splits the prompt.
IN_PRICE, OUT_PRICE = 0.000005, 0.000025
OFFLINE = {"DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
RUN_WITH_BASH = "Run with Bash: "
OPEN_MODEL = "qwen3-coder"  # served by an OpenAI-compatible deployment: Claude Code's requests are translated


class ClaudeCodeUpstream(FakeAnthropic):
    """The fake Anthropic, with a model that calls a tool only when asked: a prompt `Run with Bash: <command>` gets
    a Bash call for that command, any other prompt text (the fake alone calls the first tool offered, which for
    Claude Code is its Agent tool)."""

    def _compose(self, body: dict[str, Any], steer: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                              dict[str, Any]]:
        message, blocks, usage = super()._compose({**body, "tools": []}, steer)
        command = _asked_to_run(next(m for m in reversed(body["messages"]) if m["role"] == "user"))
        if command is not None and any(tool.get("name") == "Bash" for tool in body.get("tools") or []):
            blocks = [{"type": "text", "text": "Running it."},
                      {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": "Bash",
                       "input": {"command": command, "description": "Run what the user asked"}}]
            usage["output_tokens"] = sum(len(orjson.dumps(block)) for block in blocks) // 4 + 1
        usage.update(self._input_usage(body))  # the prompt as sent, tools and all
        return message, blocks, usage


class ClaudeCodeVllm(VllmUpstream):
    """The fake vLLM behind an OpenAI-compatible deployment, with the same model: it calls Bash only when the last
    user turn says `Run with Bash: <command>`."""

    def calls(self, body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        command = _asked_to_run(next(m for m in reversed(body["messages"]) if m["role"] == "user"))
        offered = {tool["function"]["name"] for tool in body.get("tools") or []}
        if command is None or "Bash" not in offered:
            return None
        return "Bash", {"command": command, "description": "Run what the user asked"}


def _asked_to_run(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    texts = [content] if isinstance(content, str) else [
        block.get("text", "") for block in content or [] if isinstance(block, dict) and block.get("type") == "text"]
    for text in texts:
        if text.startswith(RUN_WITH_BASH):
            return str(text[len(RUN_WITH_BASH):])
    return None


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Claude Code is required under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def claude_code() -> Path:
    """The `claude` binary, installed from npm the first time."""
    if explicit := os.environ.get("CLAUDE_CODE_BIN"):
        return Path(explicit)
    prefix = Path(os.environ.get("CLAUDE_CODE_PREFIX")
                  or Path.home() / ".cache" / "gateway-tests" / f"claude-code-{VERSION}")
    package = prefix / "node_modules" / "@anthropic-ai" / "claude-code"
    binary = package / "bin" / "claude.exe"
    stamp = prefix / ".installed"
    if not stamp.exists():
        npm, node = shutil.which("npm"), shutil.which("node")
        if npm is None or node is None:
            unavailable("node and npm are needed to install Claude Code")
        try:
            subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                            f"{PACKAGE}@{VERSION}"], check=True, capture_output=True, timeout=600)
            # npm leaves the package's install script unapproved; it puts this platform's native build (an
            # optional dependency) in place of the stub bin/claude.exe, and does nothing once it is there.
            subprocess.run([node, "install.cjs"], cwd=package, check=True, capture_output=True, timeout=120)
            subprocess.run([str(binary), "--version"], check=True, capture_output=True, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            unavailable(f"cannot install {PACKAGE}@{VERSION}: {exc}")
        stamp.touch()
    return binary


@pytest.fixture(scope="module")
def anthropic_upstream() -> Iterator[ClaudeCodeUpstream]:
    fake = ClaudeCodeUpstream("upstream")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def vllm_upstream() -> Iterator[ClaudeCodeVllm]:
    fake = ClaudeCodeVllm("vllm")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(anthropic_upstream: ClaudeCodeUpstream, vllm_upstream: ClaudeCodeVllm) -> Iterator[Gateway]:
    prices = {"input_cost_per_token": IN_PRICE, "output_cost_per_token": OUT_PRICE,
              "cache_read_input_token_cost": IN_PRICE, "cache_creation_input_token_cost": IN_PRICE}
    with Gateway({
        "model_list": [*({"model_name": name, "litellm_params": {
            "model": f"anthropic/{name}", "api_base": anthropic_upstream.api_base, "api_key": KEY, **prices}}
            for name in MODELS),
            {"model_name": OPEN_MODEL, "litellm_params": {
                "model": "hosted_vllm/Qwen/Qwen3-Coder-30B-A3B-Instruct", "api_base": vllm_upstream.base_url,
                "api_key": "sk-vllm", **prices}}],
        "general_settings": {"master_key": MASTER},
        "gateway_settings": {"path_prefixes": [PREFIX]},
    }) as gw:
        yield gw
        assert "Traceback" not in gw.log(), gw.log()


@pytest.fixture
async def admin() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def new_key(http: aiohttp.ClientSession, gw: Gateway) -> str:
    async with http.post(f"{gw.url}/key/generate", json={"key_alias": f"claude-code-{uuid.uuid4().hex[:8]}"},
                         headers=ADMIN) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["key"])


async def spend_of(http: aiohttp.ClientSession, gw: Gateway, path: str, params: dict[str, str]) -> float:
    """The spend /key/info or /end_user/info shows; 0 for an end user not yet written."""
    async with http.get(f"{gw.url}{path}", params=params, headers=ADMIN) as r:
        found = await r.json()
        assert r.status == 200 or (r.status, path) == (404, "/end_user/info"), found
    return float(found.get("info", found).get("spend") or 0.0) if r.status == 200 else 0.0


async def spend_reaches(http: aiohttp.ClientSession, gw: Gateway, expected: float, key: str | None = None,
                        end_user: str | None = None, patience: float = 15.0) -> float:
    """The key's (or end user's) spend once it is `expected` (spend is written after the answer), or the last seen."""
    path, params = ("/key/info", {"key": key}) if key is not None else \
        ("/end_user/info", {"end_user_id": end_user or ""})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while (spend := await spend_of(http, gw, path, params)) != pytest.approx(expected) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return spend


def cost_of(sent: bytes) -> float:
    """What an answer the fake sent costs at the configured prices, from the usage written in it."""
    usage: dict[str, Any] = {}
    if sent.startswith(b"{"):
        usage = orjson.loads(sent)["usage"]
    else:
        for line in sent.replace(b"\r\n", b"\n").split(b"\n"):
            event = orjson.loads(line[5:]) if line.startswith(b"data:") else {}
            if event.get("type") == "message_start":
                usage.update(event["message"]["usage"])
            elif event.get("type") == "message_delta":
                usage.update({k: v for k, v in event["usage"].items() if v is not None})
    prompt = sum(usage.get(name) or 0 for name in
                 ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
    return float(prompt * IN_PRICE + usage["output_tokens"] * OUT_PRICE)


def run_claude(binary: Path, base_url: str, token: str, *args: str, token_variable: str = "ANTHROPIC_AUTH_TOKEN",
               env: dict[str, str] | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`claude -p ...` in a project folder of its own, HOME a new folder (unless given: one machine's), only these
    variables set."""
    kept = home is not None
    home = home or Path(tempfile.mkdtemp(prefix="claude-code-home-"))
    project = home / "project"
    project.mkdir(exist_ok=True)
    try:
        return subprocess.run(
            [str(binary), "-p", "--no-session-persistence", *args], cwd=project, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=180,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "ANTHROPIC_BASE_URL": base_url,
                 token_variable: token, **OFFLINE, **(env or {})})
    finally:
        if not kept:
            shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize(("base", "token_variable"), [("", "ANTHROPIC_AUTH_TOKEN"), (PREFIX, "ANTHROPIC_API_KEY")],
                         ids=["bearer", "x-api-key-under-prefix"])
async def test_claude_code_answers_through_the_gateway_and_its_key_pays(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream, admin: aiohttp.ClientSession,
        base: str, token_variable: str) -> None:
    key = await new_key(admin, gateway)
    before = len(anthropic_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url + base, key, "say hi",
                                  token_variable=token_variable)
    assert (run.returncode, run.stdout.strip()) == (0, "upstream says hi"), run.stdout + run.stderr
    seen = anthropic_upstream.seen[before:]
    assert seen and all(s.status == 200 and s.path == "/v1/messages" for s in seen)
    first = seen[0]
    assert first.body["model"] == MODELS[0] and first.body["stream"] is True
    assert [m["role"] for m in first.body["messages"]] == ["user", "system"]
    assert "claude-code-20250219" in first.headers["anthropic-beta"].split(",")
    assert first.headers["x-api-key"] == KEY
    spent = sum(cost_of(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)


async def test_a_custom_header_names_the_end_user_who_pays(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream,
        admin: aiohttp.ClientSession) -> None:
    """Without it the end user is the device Claude Code names in metadata.user_id; ANTHROPIC_CUSTOM_HEADERS names
    the person, and wins."""
    key = await new_key(admin, gateway)
    person = f"dev-{uuid.uuid4().hex[:8]}"
    before = len(anthropic_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "say hi",
                                  env={"ANTHROPIC_CUSTOM_HEADERS": f"x-litellm-end-user-id: {person}"})
    assert (run.returncode, run.stdout.strip()) == (0, "upstream says hi"), run.stdout + run.stderr
    spent = sum(cost_of(s.sent) for s in anthropic_upstream.seen[before:])
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)
    assert await spend_reaches(admin, gateway, spent, end_user=person) == pytest.approx(spent)


async def test_sessions_on_one_machine_are_one_end_user(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream,
        admin: aiohttp.ClientSession) -> None:
    """Its metadata.user_id names a new session each run; the gateway takes the device it names (the account, when
    logged in to one), so two runs in one HOME are one end user who paid for both."""
    key = await new_key(admin, gateway)
    home = Path(tempfile.mkdtemp(prefix="claude-code-home-"))
    before = len(anthropic_upstream.seen)
    try:
        for _ in range(2):
            run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "say hi", home=home)
            assert (run.returncode, run.stdout.strip()) == (0, "upstream says hi"), run.stdout + run.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
    seen = anthropic_upstream.seen[before:]
    named = [orjson.loads(s.body["metadata"]["user_id"]) for s in seen]
    assert len({n["session_id"] for n in named}) == 2 and len({n["device_id"] for n in named}) == 1
    assert {n["account_uuid"] for n in named} == {""}
    spent = sum(cost_of(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, spent, end_user=named[0]["device_id"]) == pytest.approx(spent)


async def test_a_tool_runs_and_its_result_goes_back_through_the_gateway(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream,
        admin: aiohttp.ClientSession) -> None:
    """The upstream's Bash call reaches Claude Code from the stream, Claude Code runs it, and its output goes back
    as a tool_result the fake accepts only if it answers that call: the answer quotes the command's output."""
    key = await new_key(admin, gateway)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    before = len(anthropic_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, f"{RUN_WITH_BASH}echo {marker}",
                                  "--allowedTools=Bash")
    assert (run.returncode, run.stdout.strip()) == (0, f"The tool said: {marker}"), run.stdout + run.stderr
    seen = anthropic_upstream.seen[before:]
    assert [s.status for s in seen] == [200, 200]
    result = seen[1].body["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["content"] == marker
    spent = sum(cost_of(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)


@pytest.mark.parametrize(("alias", "model"), [("sonnet", MODELS[1]), ("haiku", MODELS[2])])
async def test_the_other_models_claude_code_names(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream, admin: aiohttp.ClientSession,
        alias: str, model: str) -> None:
    """Haiku is asked with thinking enabled: the fake answers with a thinking block first, which Claude Code
    keeps to itself."""
    key = await new_key(admin, gateway)
    before = len(anthropic_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "say hi", "--model", alias)
    assert (run.returncode, run.stdout.strip()) == (0, "upstream says hi"), run.stdout + run.stderr
    seen = anthropic_upstream.seen[before:]
    assert [s.body["model"] for s in seen] == [model]
    spent = cost_of(seen[0].sent)
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)


async def test_the_context_command_counts_tokens_through_the_gateway_for_free(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream,
        admin: aiohttp.ClientSession) -> None:
    key = await new_key(admin, gateway)
    before = len(anthropic_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "/context")
    assert run.returncode == 0 and "Context Usage" in run.stdout, run.stdout + run.stderr
    seen = anthropic_upstream.seen[before:]
    assert seen and {(s.path, s.status) for s in seen} == {("/v1/messages/count_tokens", 200)}
    assert all("token-counting-2024-11-01" in s.headers["anthropic-beta"] for s in seen)
    # Then one message: the key's spend is what that one cost, so the counts before it cost nothing.
    before = len(anthropic_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "say hi", "--model", "haiku")
    assert run.returncode == 0, run.stdout + run.stderr
    spent = sum(cost_of(s.sent) for s in anthropic_upstream.seen[before:])
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)


async def test_a_refused_key_fails_claude_code_at_once_with_the_gateways_error(
        claude_code: Path, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream,
        admin: aiohttp.ClientSession) -> None:
    """Claude Code retries a 401 ten times with backoff unless the answer says `x-should-retry: false`, which the
    gateway's refusals that no retry can fix do: one attempt each (the access log counts them)."""
    blocked = await new_key(admin, gateway)
    async with admin.post(f"{gateway.url}/key/block", json={"key": blocked}, headers=ADMIN) as r:
        assert r.status == 200, await r.text()
    before = len(anthropic_upstream.seen)
    for key, said in ((f"sk-{uuid.uuid4().hex}", "Authentication Error"), (blocked, "Key is blocked")):
        refused = await logged_refusals(admin, gateway)
        run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "say hi")
        assert run.returncode != 0
        assert re.search(r"API Error: 401\b", run.stdout) and said in run.stdout, run.stdout + run.stderr
        assert await logged_refusals(admin, gateway) == refused + 1
    assert len(anthropic_upstream.seen) == before


async def logged_refusals(http: aiohttp.ClientSession, gw: Gateway) -> int:
    """The 401s on /v1/messages in the gateway's access log so far. A request of the test's own is logged after
    them (the log is written in order), so once its line is there, every earlier one is too."""
    marker = uuid.uuid4().hex
    async with http.post(f"{gw.url}/v1/messages", json={}, headers={"X-Request-ID": marker}) as r:
        assert r.status == 400  # not a 401 itself
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while f": {marker} POST" not in gw.log():
        assert loop.time() < deadline, "the access log was not written"
        await asyncio.sleep(0.05)
    log = gw.log()
    return len(re.findall(r"POST /v1/messages status=401", log[:log.index(f": {marker} POST")]))


def chat_cost(sent: bytes) -> float:
    """What an answer the fake vLLM sent costs at the configured prices, from the usage in it."""
    usage: dict[str, Any] = {}
    for line in sent.split(b"\n") if not sent.startswith(b"{") else [b"data: " + sent]:
        event = orjson.loads(line[6:]) if line.startswith(b"data: {") else {}
        usage = event.get("usage") or usage
    return float(usage["prompt_tokens"] * IN_PRICE + usage["completion_tokens"] * OUT_PRICE)


async def test_claude_code_on_an_openai_compatible_deployment(
        claude_code: Path, gateway: Gateway, vllm_upstream: ClaudeCodeVllm, admin: aiohttp.ClientSession) -> None:
    """A model served by vLLM: every turn is translated (its mid-conversation system message, context_management,
    thinking, 24 tools), the answer streams back as Anthropic's events and the key pays what vLLM reported."""
    key = await new_key(admin, gateway)
    before = len(vllm_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, "say hi", "--model", OPEN_MODEL)
    assert (run.returncode, run.stdout.strip()) == (0, "vllm says hi"), run.stdout + run.stderr
    seen = vllm_upstream.seen[before:]
    assert seen and all(s.path == "/v1/chat/completions" and s.outcome == "completed" for s in seen)
    first = seen[0].body
    assert first["model"] == "Qwen/Qwen3-Coder-30B-A3B-Instruct" and first["stream"] is True
    # Its system prompt, the first turn, and the system message it sends after it, where it was.
    assert [m["role"] for m in first["messages"]] == ["system", "user", "system"] and len(first["tools"]) > 10
    assert first["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}
    spent = sum(chat_cost(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)


async def test_a_tool_runs_through_an_openai_compatible_deployment(
        claude_code: Path, gateway: Gateway, vllm_upstream: ClaudeCodeVllm, admin: aiohttp.ClientSession) -> None:
    """vLLM's Bash call reaches Claude Code as a tool_use block, Claude Code runs it, and its output goes back as a
    tool message, which the fake vLLM takes only if it answers that call."""
    key = await new_key(admin, gateway)
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    before = len(vllm_upstream.seen)
    run = await asyncio.to_thread(run_claude, claude_code, gateway.url, key, f"{RUN_WITH_BASH}echo {marker}",
                                  "--allowedTools=Bash", "--model", OPEN_MODEL)
    assert (run.returncode, run.stdout.strip()) == (0, f"The tool said: {marker}"), run.stdout + run.stderr
    seen = vllm_upstream.seen[before:]
    assert [s.outcome for s in seen] == ["completed", "completed"]
    called = seen[0].sent
    assert b'"name":"Bash"' in called
    result = [m for m in seen[1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in result] == [marker]
    spent = sum(chat_cost(s.sent) for s in seen)
    assert await spend_reaches(admin, gateway, spent, key=key) == pytest.approx(spent)


FIXTURE_FILES = sorted(path.name for path in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("name", FIXTURE_FILES)
async def test_recorded_claude_code_requests_reach_anthropic_intact(
        name: str, gateway: Gateway, anthropic_upstream: ClaudeCodeUpstream, admin: aiohttp.ClientSession) -> None:
    """Each body as Claude Code sent it, with its headers, to the path it used (`?beta=true` and all): the fake,
    which refuses what Anthropic refuses, gets the body unchanged and the betas it names, and the answer comes back
    as the fake wrote it."""
    recorded = orjson.loads((FIXTURES / name).read_bytes())
    key = await new_key(admin, gateway)
    headers = {**recorded["headers"], "x-api-key": key}
    before = len(anthropic_upstream.seen)
    async with admin.post(f"{gateway.url}{PREFIX}{recorded['path']}", data=orjson.dumps(recorded["body"]),
                          headers=headers) as r:
        answer = await r.read()
        status = r.status
    seen = anthropic_upstream.seen[before:]
    assert (status, len(seen)) == (200, 1), answer
    assert seen[0].body == recorded["body"]
    assert seen[0].path == recorded["path"].split("?")[0]
    for header in ("anthropic-beta", "anthropic-version"):
        assert seen[0].headers[header] == recorded["headers"][header]
    assert answer == seen[0].sent


@pytest.mark.parametrize("name", FIXTURE_FILES)
async def test_recorded_claude_code_requests_are_translated_for_an_openai_compatible_deployment(
        name: str, gateway: Gateway, vllm_upstream: ClaudeCodeVllm, admin: aiohttp.ClientSession) -> None:
    """The same bodies, for a model vLLM serves: each is translated (none refused, as every turn was before
    translation took Claude Code's system messages and context_management) and answered as Anthropic's API
    answers; count_tokens is the gateway's estimate."""
    recorded = orjson.loads((FIXTURES / name).read_bytes())
    key = await new_key(admin, gateway)
    before = len(vllm_upstream.seen)
    async with admin.post(f"{gateway.url}{PREFIX}{recorded['path']}",
                          data=orjson.dumps({**recorded["body"], "model": OPEN_MODEL}),
                          headers={**recorded["headers"], "x-api-key": key}) as r:
        answer = await r.read()
        status = r.status
    assert status == 200, answer
    seen = vllm_upstream.seen[before:]
    if recorded["path"].startswith("/v1/messages/count_tokens"):
        assert seen == [] and orjson.loads(answer)["input_tokens"] > 0
        return
    assert [s.outcome for s in seen] == ["completed"]
    assert answer.startswith(b"event: message_start\n") and answer.endswith(b"event: message_stop\n"
                                                                           b'data: {"type":"message_stop"}\n\n')
    sent = seen[0].body
    assert "context_management" not in sent and "cache_control" not in orjson.dumps(sent).decode()
    assert sent["user"] == recorded["body"]["metadata"]["user_id"]
