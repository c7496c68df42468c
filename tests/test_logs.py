"""Structured logs: with --json-logs every line is one JSON object, with one access line per request."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes import FakeUpstream
from tests.harness import Gateway, deployment

MASTER = "sk-logs-master-secret"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
MESSAGES = [{"role": "user", "content": "hi!"}]
UPSTREAM_KEY = "sk-upstream-secret"  # what tests.harness.deployment gives every upstream
PATIENCE = 10.0


def config(upstream: FakeUpstream, **litellm: Any) -> dict[str, Any]:
    return {
        "model_list": [deployment("chat", upstream.base_url, input_cost_per_token=0.001,
                                  output_cost_per_token=0.002)],
        "general_settings": {"master_key": MASTER},
        "teams": [{"team_id": "ops"}],
        "gateway_settings": {"trusted_proxies": ["127.0.0.1/32"]},
        "litellm_settings": litellm,
    }


async def request(http: aiohttp.ClientSession, gw: Gateway, key: str, request_id: str, **extra: Any) -> int:
    body = {"model": "chat", "messages": MESSAGES, **extra}
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id, "X-Forwarded-For": "198.51.100.9"}
    async with http.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as response:
        await response.read()
        return response.status


async def json_lines(gw: Gateway, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Every log line parsed (each must be JSON); the access lines of the wanted request ids."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        lines = [orjson.loads(line) for line in gw.log().splitlines() if line.strip()]
        found = {line["request_id"]: line for line in lines if line.get("request_id") in wanted}
        if set(found) == wanted:
            return found
        assert loop.time() < deadline, f"access lines missing for {wanted - set(found)}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("how", ["flag", "config"])
async def test_json_access_lines_carry_who_what_and_how_long(upstream: FakeUpstream, http: aiohttp.ClientSession,
                                                             how: str) -> None:
    args = ("--json-logs",) if how == "flag" else ()
    settings = config(upstream) if how == "flag" else config(upstream, json_logs=True)
    with Gateway(settings, *args) as gw:
        async with http.post(f"{gw.url}/key/generate", headers=ADMIN,
                             json={"key_alias": "log-bot", "user_id": "ann", "team_id": "ops"}) as response:
            assert response.status == 200, await response.text()
            key = (await response.json())["key"]
        assert await request(http, gw, key, "req-plain") == 200
        assert await request(http, gw, key, "req-stream", stream=True, fake={"chunks": 2}) == 200
        assert await request(http, gw, key, "req-fail", fake={"status": 500, "body": "nope"}) == 500
        assert await request(http, gw, "sk-wrong", "req-denied") == 401
        found = await json_lines(gw, {"req-plain", "req-stream", "req-fail", "req-denied"})

        plain = found["req-plain"]
        assert plain["status"] == 200 and plain["model"] == "chat" and plain["model_group"] == "chat"
        assert plain["key_alias"] == "log-bot" and plain["user"] == "ann" and plain["team"] == "ops"
        assert plain["deployment"] and plain["api_base"] == upstream.base_url
        assert plain["client_ip"] == "198.51.100.9"  # from X-Forwarded-For: the peer is a trusted proxy
        assert (plain["prompt_tokens"], plain["completion_tokens"], plain["total_tokens"]) == (5, 3, 8)
        assert plain["cost"] == pytest.approx(5 * 0.001 + 3 * 0.002)
        assert plain["latency_ms"] > 0 and plain["ttft_ms"] is not None and plain["stream"] is False
        stream = found["req-stream"]
        assert stream["stream"] is True and 0 < stream["ttft_ms"] <= stream["latency_ms"]
        assert stream["completion_tokens"] == 2
        assert found["req-fail"]["status"] == 500 and "nope" in found["req-fail"]["error"]
        denied = found["req-denied"]
        assert denied["status"] == 401 and denied["key_alias"] is None and denied["user"] is None

        log = gw.log()
        for secret in (MASTER, key, UPSTREAM_KEY, "sk-wrong"):
            assert secret not in log
        startup = [orjson.loads(line) for line in log.splitlines() if line.strip()][0]
        assert set(startup) >= {"timestamp", "level", "logger", "message"}


async def test_json_logs_from_the_environment_with_workers(upstream: FakeUpstream,
                                                           http: aiohttp.ClientSession) -> None:
    with Gateway(config(upstream), "--workers", "2", env={"JSON_LOGS": "true"}) as gw:
        ids = {f"req-{i}" for i in range(6)}
        for request_id in sorted(ids):
            assert await request(http, gw, MASTER, request_id) == 200
        found = await json_lines(gw, ids)
        assert all(line["logger"].startswith("gateway.access[") for line in found.values())
        assert all(line["key"] == "master" for line in found.values())


async def test_warning_level_turns_the_access_log_off(upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    with Gateway(config(upstream), "--json-logs", "--log-level", "warning") as gw:
        assert await request(http, gw, MASTER, "req-quiet") == 200
        await asyncio.sleep(0.5)  # past the access log's flush interval
        assert "req-quiet" not in gw.log()


@pytest.mark.parametrize("json_logs", [False, True])
async def test_management_requests_are_in_the_access_log_without_secrets(
        upstream: FakeUpstream, http: aiohttp.ClientSession, json_logs: bool) -> None:
    with Gateway(config(upstream, json_logs=json_logs)) as gw:
        async with http.post(f"{gw.url}/key/generate", headers=ADMIN, json={"key_alias": "mgmt"}) as r:
            key = (await r.json())["key"]
        async with http.get(f"{gw.url}/key/info", params={"key": key}, headers=ADMIN) as r:
            assert r.status == 200
        async with http.post(f"{gw.url}/key/{key}/regenerate", headers=ADMIN) as r:
            assert r.status == 200
        async with http.get(f"{gw.url}/user/list", headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 401  # the old key, regenerated away
        wanted = [("POST", "/key/generate", 200), ("GET", "/key/info", 200),
                  ("POST", f"/key/sk-...{key[-4:]}/regenerate", 200), ("GET", "/user/list", 401)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while True:
            log = gw.log()
            if json_logs:
                lines = [orjson.loads(line) for line in log.splitlines() if line.strip()]
                seen = [(e["method"], e["path"], e["status"]) for e in lines if "method" in e and "model" not in e]
                callers = [e["key"] for e in lines if "method" in e and "model" not in e]
            else:
                found = re.findall(r"gateway\.access: (\w+) (\S+) status=(\d+) ms=[\d.]+ client=\S+ key=(\S+)", log)
                seen = [(m, p, int(s)) for m, p, s, _ in found]
                callers = [c for *_, c in found]
            if seen == wanted:
                break
            assert loop.time() < deadline, (seen, log)
            await asyncio.sleep(0.1)
        assert callers[:3] == ["master"] * 3
        for secret in (MASTER, key):
            assert secret not in log


async def test_a_newline_in_a_path_or_model_cannot_forge_a_log_line(upstream: FakeUpstream,
                                                                    http: aiohttp.ClientSession) -> None:
    # Found by the schemathesis pass (tests/test_openapi_fuzz.py): a decoded %0A went to the log as is.
    with Gateway(config(upstream)) as gw:
        async with http.get(f"{gw.url}/key/info%0AFORGED-path", headers=ADMIN) as r:
            assert r.status == 404
        async with http.post(f"{gw.url}/v1/chat/completions", headers=ADMIN,
                             json={"model": "chat\nFORGED-model\x1b[2J", "messages": MESSAGES}) as r:
            assert r.status == 404  # no such model
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PATIENCE
        while gw.log().count("FORGED") < 2:
            assert loop.time() < deadline, gw.log()
            await asyncio.sleep(0.1)
        lines = [line for line in gw.log().splitlines() if "FORGED" in line]
        assert len(lines) == 2 and all(line.startswith("20") and " INFO gateway.access: " in line for line in lines)
        assert "/key/info\\nFORGED-path status=404" in lines[0]
        assert "model=chat\\nFORGED-model\\x1b[2J group=" in lines[1]
